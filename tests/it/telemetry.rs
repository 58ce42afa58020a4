//! Telemetry end to end: the real binary exports to a loopback OTLP/HTTP receiver, which decodes
//! what it got with the OpenTelemetry project's own protobuf definitions (`opentelemetry-proto`)
//! and its JSON mapping.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as Any, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;
use sha2::Digest as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const OWNER: &str = "Codertocat";
const REPO: &str = "Hello-World";
const PR: u64 = 2;
const GITHUB_TOKEN: &str = "ghs_fakeinstallationtoken0123456789abcdefABCD";
const OPENAI_KEY: &str = "sk-test-FAKEkey0123456789abcdefXYZ";
const OTLP_SECRET: &str = "otlp-collector-secret-4f9d2c";

fn repo_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A receiver taking `/v1/traces` and `/v1/metrics`; anything else fails the test.
async fn collector() -> MockServer {
    let server = MockServer::builder().start().await;
    for signal in ["/v1/traces", "/v1/metrics"] {
        Mock::given(method("POST")).and(path(signal)).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    }
    mount_catch_all(&server, "collector").await;
    server
}

/// Every span the receiver got, decoded from protobuf, with the resource attributes.
async fn received_spans(server: &MockServer) -> (Vec<Span>, Vec<BTreeMap<String, String>>) {
    let mut spans = vec![];
    let mut resources = vec![];
    for r in server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/v1/traces") {
        assert_eq!(r.headers.get("content-type").unwrap(), "application/x-protobuf");
        let req = ExportTraceServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            resources.push(attrs(&rs.resource.unwrap_or_default().attributes));
            spans.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    (spans, resources)
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::ArrayValue(a)) => a
                    .values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(Any::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// The trace id of a workflow run, computed independently of agentctl (SHA-256 over the
/// length-prefixed repository, run id and attempt, first 16 bytes).
fn expected_trace_id(repo: &str, run_id: &str, attempt: &str) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    h.update(b"agentctl-trace-v1");
    for part in [repo, run_id, attempt] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()[..16].to_vec()
}

fn run_env(collector: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri()),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{OTLP_SECRET}")),
        ("GITHUB_RUN_ID", "9876543210".into()),
        ("GITHUB_RUN_ATTEMPT", "2".into()),
        ("GITHUB_WORKFLOW", "agentctl review".into()),
        ("GITHUB_JOB", "review".into()),
        ("RUNNER_NAME", "runner-7".into()),
        ("GITHUB_SHA", "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into()),
        ("GITHUB_SERVER_URL", "https://github.com".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_exports_one_task_span_with_its_model_and_github_spans_and_no_secret() {
    let otlp = collector().await;
    let answer = json!({"summary": "ok", "findings": [
        {"path": "README.md", "line": 226, "severity": "medium", "category": "docs", "title": "t", "body": "b"}]});
    let openai = fake_openai(answer, Duration::ZERO).await;
    let diff = std::fs::read(repo_path("examples/diffs/agentctl-findings.diff")).unwrap();
    let budget = "budgets:\n  - {scope: all, period: day, limit_usd: 100}\n";
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff, Some(config_for(&openai.uri(), budget))).await;
    let mut cmd = agentctl();
    cmd.arg("review")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", GITHUB_TOKEN)
        .env("GITHUB_API_URL", gh.api_url())
        .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", repo_path("examples/events/pull_request.opened.json"))
        .env("OPENAI_API_KEY", OPENAI_KEY);
    for (k, v) in run_env(&otlp) {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("::add-mask::Bearer {OTLP_SECRET}")), "the header is masked: {stderr}");

    let (spans, resources) = received_spans(&otlp).await;
    let run = spans.iter().find(|s| s.name == "agentctl review").expect("the task-run span");
    assert!(run.parent_span_id.is_empty(), "no TRACEPARENT: the task span is a root");
    assert_eq!(run.trace_id, expected_trace_id(&format!("{OWNER}/{REPO}"), "9876543210", "2"));
    let run_attrs = attrs(&run.attributes);
    assert_eq!(run_attrs["cicd.pipeline.task.name"], "review");
    assert_eq!(run_attrs["cicd.pipeline.task.run.result"], "success");
    assert_eq!(run_attrs["cicd.pipeline.task.run.id"], "9876543210/2/review/review");
    assert_eq!(
        run_attrs["cicd.pipeline.task.run.url.full"],
        format!("https://github.com/{OWNER}/{REPO}/actions/runs/9876543210/attempts/2")
    );
    for s in &spans {
        assert_eq!(s.trace_id, run.trace_id, "{} is in another trace", s.name);
        if s.span_id != run.span_id {
            assert_eq!(s.parent_span_id, run.span_id, "{} is not a child of the task span", s.name);
        }
    }
    let chats: Vec<&Span> = spans.iter().filter(|s| s.name == "chat gpt-4o-mini").collect();
    assert!(!chats.is_empty(), "no chat span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert_eq!(chats.len(), openai.received_requests().await.unwrap().len(), "one chat span per provider request");
    let chat = attrs(&chats[0].attributes);
    assert_eq!(chats[0].kind, 3, "CLIENT");
    assert_eq!(chat["gen_ai.operation.name"], "chat");
    assert_eq!(chat["gen_ai.provider.name"], "openai");
    assert_eq!(chat["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(chat["gen_ai.response.model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(chat["gen_ai.response.id"], "chatcmpl-test");
    assert_eq!(chat["gen_ai.response.finish_reasons"], "stop");
    assert_eq!(chat["gen_ai.usage.input_tokens"], "1200", "cached input counted in");
    assert_eq!(chat["gen_ai.usage.output_tokens"], "150");
    assert_eq!(chat["gen_ai.usage.cache_read.input_tokens"], "200");
    assert!(chat["agentctl.cost.usd"].parse::<f64>().unwrap() > 0.0, "{chat:?}");
    assert!(
        !chat.contains_key("gen_ai.input.messages") && !chat.contains_key("gen_ai.output.messages"),
        "content is not exported unless telemetry.capture_content: true"
    );
    let http: Vec<BTreeMap<String, String>> = spans
        .iter()
        .filter(|s| s.name.starts_with("GET ") || s.name.starts_with("POST "))
        .map(|s| attrs(&s.attributes))
        .collect();
    assert!(
        http.iter().any(|a| a["url.template"]
            == format!("{API_PREFIX}/repos/{{owner}}/{{repo}}/pulls/{{pull_number}}/reviews")
            && a["http.request.method"] == "POST"
            && a["http.response.status_code"] == "200"),
        "{http:#?}"
    );
    for a in &http {
        assert!(!a["url.template"].contains(OWNER) && !a["url.template"].contains('?'), "a value in a route: {a:?}");
    }
    let resource = &resources[0];
    assert_eq!(resource["service.name"], "agentctl");
    assert_eq!(resource["cicd.pipeline.run.id"], "9876543210");
    assert_eq!(resource["cicd.pipeline.name"], "agentctl review");
    assert_eq!(resource["cicd.worker.name"], "runner-7");
    assert_eq!(resource["vcs.repository.url.full"], format!("https://github.com/{OWNER}/{REPO}"));
    assert_eq!(resource["vcs.ref.head.revision"], "ec26c3e57ca3a959ca5aad62de7213c562f8c821");

    // Metrics: tokens by type, and the finding counted by severity.
    let metrics: Vec<ExportMetricsServiceRequest> = otlp
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/metrics")
        .map(|r| ExportMetricsServiceRequest::decode(r.body.as_slice()).unwrap())
        .collect();
    let names: Vec<String> = metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.clone())
        .collect();
    for name in
        ["gen_ai.client.token.usage", "gen_ai.client.operation.duration", "agentctl.findings", "agentctl.budget.checks"]
    {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }

    // The collector got its header; no secret is in any body, and none is printed.
    for r in otlp.received_requests().await.unwrap() {
        assert_eq!(r.headers.get("authorization").unwrap(), &format!("Bearer {OTLP_SECRET}"));
        let body = String::from_utf8_lossy(&r.body);
        for secret in [GITHUB_TOKEN, OPENAI_KEY, OTLP_SECRET] {
            assert!(!body.contains(secret), "{secret} in an export to {}", r.url.path());
        }
    }
    let stderr_without_masks: String = stderr.lines().filter(|l| !l.starts_with("::add-mask::")).collect();
    for secret in [GITHUB_TOKEN, OPENAI_KEY, OTLP_SECRET] {
        assert!(!stdout.contains(secret) && !stderr_without_masks.contains(secret), "{secret} printed");
    }
}

/// `agentctl route` on a pull-request event, with `env` and the config text.
fn route(env: &[(&str, String)], config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("agentctl.yml");
    std::fs::write(&config_path, config).unwrap();
    let mut cmd = agentctl();
    cmd.current_dir(dir.path())
        .args(["route", "--event-name", "pull_request", "--event"])
        .arg(repo_path("examples/events/pull_request.opened.json"))
        .arg("--config")
        .arg(&config_path)
        .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_run_share_a_trace_and_traceparent_is_the_parent() {
    let otlp = collector().await;
    let env = run_env(&otlp);
    for _ in 0..2 {
        let out = route(&env, "");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (spans, _) = received_spans(&otlp).await;
    let runs: Vec<&Span> = spans.iter().filter(|s| s.name == "agentctl route").collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].trace_id, runs[1].trace_id, "one run, one trace");
    assert_ne!(runs[0].span_id, runs[1].span_id);
    assert_eq!(runs[0].trace_id, expected_trace_id(&format!("{OWNER}/{REPO}"), "9876543210", "2"));

    let traced = collector().await;
    let mut env = run_env(&traced);
    env.push(("TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()));
    assert_eq!(route(&env, "").status.code(), Some(0));
    let (spans, _) = received_spans(&traced).await;
    let run = spans.iter().find(|s| s.name == "agentctl route").unwrap();
    assert_eq!(hex::encode(&run.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(&run.parent_span_id), "00f067aa0ba902b7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_is_the_otlp_json_mapping_and_the_config_alone_can_turn_telemetry_on() {
    let otlp = collector().await;
    let config = format!("telemetry:\n  endpoint: {}\n  protocol: http/json\n  service_name: ci-agent\n", otlp.uri());
    let out = route(&[("GITHUB_RUN_ID", "5".into())], &config);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = otlp.received_requests().await.unwrap();
    let traces = requests.iter().find(|r| r.url.path() == "/v1/traces").expect("spans sent");
    assert_eq!(traces.headers.get("content-type").unwrap(), "application/json");
    let req: ExportTraceServiceRequest = serde_json::from_slice(&traces.body).expect("OTLP JSON");
    let rs = &req.resource_spans[0];
    assert_eq!(attrs(&rs.resource.as_ref().unwrap().attributes)["service.name"], "ci-agent");
    assert_eq!(rs.scope_spans[0].spans[0].name, "agentctl route");

    // Off: OTEL_SDK_DISABLED wins over the config; nothing is sent.
    let off = collector().await;
    let config = format!("telemetry:\n  endpoint: {}\n", off.uri());
    assert_eq!(route(&[("OTEL_SDK_DISABLED", "true".into())], &config).status.code(), Some(0));
    assert!(off.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hanging_collector_costs_one_warning_and_leaves_the_exit_code() {
    // Refused: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", refused),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("x-api-key={OTLP_SECRET}")),
    ];
    let out = route(&env, "telemetry:\n  flush_timeout: 1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("telemetry:").count(), 1, "one warning: {stderr}");
    assert!(!stderr.lines().filter(|l| !l.starts_with("::add-mask::")).any(|l| l.contains(OTLP_SECRET)), "{stderr}");

    // Hanging: the collector answers after 30 s; the run gives up at its 1 s deadline.
    let hanging = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&hanging)
        .await;
    let started = std::time::Instant::now();
    let out = route(&[("OTEL_EXPORTER_OTLP_ENDPOINT", hanging.uri())], "telemetry:\n  flush_timeout: 1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("did not answer within 1.0 s"), "{stderr}");
    // Not the collector's 30 s: the deadline bounded the wait (generous margin for a busy CI).
    assert!(started.elapsed() < Duration::from_secs(20), "waited {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_exports_its_rounds_and_verify_runs_under_one_task_span_and_verify_joins_the_trace() {
    use crate::fix::{answer, comment_event, fake_model, fix_cmd, fix_hub, git, repo};
    let otlp = collector().await;
    let (model, _) = fake_model(
        answer("Add instead of subtract.", "echo $(($1 - $2))", "echo $(($1 + $3))"),
        answer("Use the second argument.", "echo $(($1 + $3))", "echo $(($1 + $2))"),
    )
    .await;
    let dir = repo(&model.uri(), "");
    // verify writes the TRACEPARENT it was given next to the checkout.
    let seen = tempfile::tempdir().unwrap();
    let log = seen.path().join("traceparent");
    let check = std::fs::read_to_string(dir.path().join("check.sh")).unwrap();
    let check = check.replacen("#!/bin/sh\n", &format!("#!/bin/sh\necho \"$TRACEPARENT\" >> {}\n", log.display()), 1);
    std::fs::write(dir.path().join("check.sh"), check).unwrap();
    git(dir.path(), &["commit", "-q", "-am", "log the trace context"]);
    let hub = fix_hub("`add.sh 2 3` prints -1; it should print 5.", "write").await;
    let scratch = tempfile::tempdir().unwrap();
    let event = comment_event(scratch.path());
    let mut cmd = fix_cmd(dir.path(), &hub, &event, &scratch.path().join("out"));
    for (k, v) in run_env(&otlp) {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let (spans, _) = received_spans(&otlp).await;
    let run = spans.iter().find(|s| s.name == "agentctl fix").expect("the task-run span");
    assert_eq!(attrs(&run.attributes)["cicd.pipeline.task.run.result"], "success");
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let (chats, verifies) = (named("chat gpt-4o-mini"), named("execute_tool verify"));
    assert_eq!((chats.len(), verifies.len()), (2, 2), "two rounds, each asked and verified");
    for s in chats.iter().chain(&verifies) {
        assert_eq!((&s.trace_id, &s.parent_span_id), (&run.trace_id, &run.span_id), "{}", s.name);
    }
    let first = attrs(&verifies[0].attributes);
    assert_eq!(
        (first["gen_ai.operation.name"].as_str(), first["gen_ai.tool.name"].as_str()),
        ("execute_tool", "verify")
    );
    let statuses: Vec<i32> = verifies.iter().map(|s| s.status.as_ref().map_or(0, |st| st.code)).collect();
    assert_eq!(statuses, [2, 0], "round 1's verify failed (ERROR), round 2's passed (UNSET)");
    let given = std::fs::read_to_string(&log).unwrap();
    let expected = format!("00-{}-{}-01", hex::encode(&run.trace_id), hex::encode(&run.span_id));
    assert_eq!(given.lines().collect::<Vec<_>>(), [expected.as_str(), expected.as_str()], "verify joined the trace");
}

/// A ledger of `n` records a minute apart from a known time (one in three without a price),
/// and the records.
fn backfill_ledger(n: usize) -> (std::path::PathBuf, Vec<agentctl::usage::UsageRecord>) {
    let state = unique_state_path();
    let records: Vec<agentctl::usage::UsageRecord> = (0..n)
        .map(|i| {
            let cost = (i % 3 != 2).then_some(0.25 * (i + 1) as f64);
            let mut r =
                crate::cost::record(1_764_000_000_000 + 60_000 * i as i64, "octo/r", "ci", "gpt-4o", cost, "ok");
            r.usage.cache_write_1h_tokens = 7;
            r
        })
        .collect();
    let store = agentctl::store::Store::open(&state).unwrap();
    let with_ids: Vec<(String, _)> = records.iter().enumerate().map(|(i, r)| (format!("id-{i}"), r.clone())).collect();
    assert_eq!(store.import_usage(&with_ids).unwrap(), (n, 0));
    (state, records)
}

/// `cost export --format otlp` of `state` with `env` added to the telemetry variables, run
/// outside any repository (so no `.github/agentctl.yml` is picked up unless `env` names one).
fn backfill(state: &std::path::Path, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = agentctl();
    cmd.current_dir(std::env::temp_dir()).env("AGENTCTL_STATE", state).args(["cost", "export", "--format", "otlp"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The data points of the delta Sums `name` in every metrics request the receiver got.
fn sum_points(
    requests: &[ExportMetricsServiceRequest],
    name: &str,
) -> Vec<opentelemetry_proto::tonic::metrics::v1::NumberDataPoint> {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, AggregationTemporality};
    let mut out = vec![];
    for m in requests.iter().flat_map(|r| &r.resource_metrics).flat_map(|rm| &rm.scope_metrics).flat_map(|s| &s.metrics)
    {
        if let (true, Some(Data::Sum(sum))) = (m.name == name, &m.data) {
            assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32);
            assert!(sum.is_monotonic);
            out.extend(sum.data_points.iter().cloned());
        }
    }
    out
}

fn point_value(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match p.value {
        Some(Value::AsInt(i)) => i as f64,
        Some(Value::AsDouble(d)) => d,
        None => f64::NAN,
    }
}

/// Issue #19: the ledger's history as OTLP metrics, each point at its record's own time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_export_otlp_sends_every_record_at_its_own_time_and_the_sums_match_the_ledger() {
    let (state, records) = backfill_ledger(1001);
    let otlp = collector().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.uri()),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{OTLP_SECRET}")),
        ("OTEL_SERVICE_NAME", "backfill-test".to_owned()),
    ];
    let out = backfill(&state, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("sent 1001 usage record(s)") && stderr.contains("in 2 batch(es)"), "{stderr}");
    assert!(stderr.contains("333 record(s) without a known cost"), "{stderr}");
    let printed = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!printed.lines().filter(|l| !l.starts_with("::add-mask::")).any(|l| l.contains(OTLP_SECRET)), "{printed}");

    let received = otlp.received_requests().await.unwrap();
    let metrics: Vec<_> = received.iter().filter(|r| r.url.path() == "/v1/metrics").collect();
    for r in &metrics {
        assert_eq!(r.headers.get("authorization").unwrap(), &format!("Bearer {OTLP_SECRET}"), "the header arrived");
        assert_eq!(r.headers.get("content-type").unwrap(), "application/x-protobuf");
    }
    let decoded: Vec<ExportMetricsServiceRequest> =
        metrics.iter().map(|r| ExportMetricsServiceRequest::decode(r.body.as_slice()).unwrap()).collect();
    let resource = attrs(&decoded[0].resource_metrics[0].resource.clone().unwrap_or_default().attributes);
    assert_eq!(resource["service.name"], "backfill-test");
    let tokens = sum_points(&decoded, "gen_ai.client.token.usage");
    assert_eq!(tokens.len(), 4 * records.len());
    let times: std::collections::BTreeSet<u64> = records.iter().map(|r| r.ts_ms as u64 * 1_000_000).collect();
    for p in &tokens {
        assert!(times.contains(&p.time_unix_nano), "{}", p.time_unix_nano);
        assert_eq!(p.start_time_unix_nano, p.time_unix_nano);
        let a = attrs(&p.attributes);
        assert_eq!((a["gen_ai.response.model"].as_str(), a["vcs.repository.name"].as_str()), ("gpt-4o", "octo/r"));
    }
    let by_type = |kind: &str| -> f64 {
        tokens.iter().filter(|p| attrs(&p.attributes)["gen_ai.token.type"] == kind).map(point_value).sum()
    };
    let ledger = |f: &dyn Fn(&agentctl::usage::Usage) -> u64| records.iter().map(|r| f(&r.usage) as f64).sum::<f64>();
    assert_eq!(by_type("input"), ledger(&|u| u.total_input()));
    assert_eq!(by_type("output"), ledger(&|u| u.output_tokens));
    assert_eq!(by_type("cache_read"), ledger(&|u| u.cached_input_tokens));
    assert_eq!(by_type("cache_creation"), ledger(&|u| u.cache_write_tokens + u.cache_write_1h_tokens));
    let cost = sum_points(&decoded, "agentctl.cost.usd");
    assert_eq!(cost.len(), 668, "unpriced records are left out");
    let spent: f64 = records.iter().filter_map(|r| r.cost_usd).sum();
    assert!((cost.iter().map(point_value).sum::<f64>() - spent).abs() < 1e-6);
    // The first point of the cost metric is the first record's, at its time.
    assert_eq!(cost[0].time_unix_nano, records[0].ts_ms as u64 * 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_export_otlp_speaks_http_json_and_needs_an_endpoint() {
    let (state, records) = backfill_ledger(3);
    let otlp = collector().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", format!("{}/v1/metrics", otlp.uri())),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
    ];
    let out = backfill(&state, &env);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let received = otlp.received_requests().await.unwrap();
    let metrics: Vec<_> = received.iter().filter(|r| r.url.path() == "/v1/metrics").collect();
    assert_eq!(metrics[0].headers.get("content-type").unwrap(), "application/json");
    let decoded: Vec<ExportMetricsServiceRequest> =
        metrics.iter().map(|r| serde_json::from_slice(&r.body).expect("OTLP JSON")).collect();
    let tokens = sum_points(&decoded, "gen_ai.client.token.usage");
    assert_eq!(tokens.len(), 4 * records.len());
    assert_eq!(tokens[0].time_unix_nano, records[0].ts_ms as u64 * 1_000_000);
    // Without a config the ledger's entry `main` has no known kind: no provider name is guessed.
    assert!(tokens.iter().all(|p| !attrs(&p.attributes).contains_key("gen_ai.provider.name")));

    // With the config, the entry's kind names the provider on every point.
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::write(
        dir.path(),
        "agentctl.yml",
        "provider: main\nproviders:\n  main: {kind: bedrock, model: anthropic.claude-sonnet-4-6}\n",
    );
    let otlp = collector().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", format!("{}/v1/metrics", otlp.uri())),
        ("AGENTCTL_CONFIG", config.display().to_string()),
    ];
    let out = backfill(&state, &env);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let received = otlp.received_requests().await.unwrap();
    let decoded: Vec<ExportMetricsServiceRequest> = received
        .iter()
        .filter(|r| r.url.path() == "/v1/metrics")
        .map(|r| ExportMetricsServiceRequest::decode(r.body.as_slice()).unwrap())
        .collect();
    let points =
        [sum_points(&decoded, "gen_ai.client.token.usage"), sum_points(&decoded, "agentctl.cost.usd")].concat();
    assert!(!points.is_empty());
    for p in &points {
        assert_eq!(attrs(&p.attributes)["gen_ai.provider.name"], "aws.bedrock");
    }

    // No endpoint anywhere: a usage error, nothing sent.
    let out = backfill(&state, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no OTLP endpoint configured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_export_otlp_refused_by_the_collector_exits_1_naming_it_and_the_batches_sent_and_no_secret() {
    let (state, _) = backfill_ledger(2500);
    let otlp = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .and(path("/v1/metrics"))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&otlp)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&otlp).await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.uri()),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("x-api-key={OTLP_SECRET}")),
    ];
    let out = backfill(&state, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&otlp.uri()) && stderr.contains("HTTP 503"), "{stderr}");
    assert!(stderr.contains("sent 1 of 3 batches"), "{stderr}");
    let printed = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!printed.lines().filter(|l| !l.starts_with("::add-mask::")).any(|l| l.contains(OTLP_SECRET)), "{printed}");
}

/// The GenAI agent-span convention: an agent CLI's span is named after the agent (the provider
/// entry), not the model, and carries `gen_ai.agent.name`; the configured model stays as
/// `gen_ai.request.model`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cli_span_is_named_invoke_agent_and_the_agent_with_its_model_kept() {
    let otlp = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let answer = json!({"summary": "ok", "findings": []});
    let script = write(dir.path(), "agent.sh", format!("#!/bin/sh\ncat >/dev/null\ncat <<'EOF'\n{answer}\nEOF\n"));
    let config = write(
        dir.path(),
        "agentctl.yml",
        format!(
            "provider: reviewer\nproviders:\n  reviewer:\n    kind: command\n    model: fake-agent-1\n    command: [/bin/sh, {}]\n",
            script.display()
        ),
    );
    let mut cmd = agentctl();
    cmd.args(["review", "--no-cache", "--format", "json", "--diff"])
        .arg(repo_path("examples/diffs/agentctl-findings.diff"))
        .arg("--config")
        .arg(&config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.uri());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (spans, _) = received_spans(&otlp).await;
    let agents: Vec<&Span> = spans
        .iter()
        .filter(|s| attrs(&s.attributes).get("gen_ai.operation.name").map(String::as_str) == Some("invoke_agent"))
        .collect();
    assert!(!agents.is_empty(), "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    for span in agents {
        assert_eq!(span.name, "invoke_agent reviewer");
        let a = attrs(&span.attributes);
        assert_eq!(a["gen_ai.agent.name"], "reviewer");
        assert_eq!(a["gen_ai.request.model"], "fake-agent-1");
    }
}

/// A keyless provider's request is a `chat` span of its cloud (`gcp.vertex_ai`), and its OAuth
/// token is in no export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vertex_request_is_a_chat_span_of_gcp_vertex_ai_and_its_token_is_in_no_export() {
    const TOKEN: &str = "ya29.a0-vertex-token-not-for-telemetry";
    let otlp = collector().await;
    let vertex = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/agentctl-ci/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": json!({"summary": "ok", "findings": []}).to_string()}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 5, "totalTokenCount": 55},
            "modelVersion": "gemini-2.5-flash"
        })))
        .mount(&vertex)
        .await;
    mount_catch_all(&vertex, "Vertex").await;
    let config = format!(
        "provider: v\nproviders:\n  v:\n    kind: vertex\n    model: gemini-2.5-flash\n    project: agentctl-ci\n    base_url: {}\n",
        vertex.uri()
    );
    let mut env = run_env(&otlp);
    env.push(("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stdout, stderr) = dry_run_review(&config, &env);
    assert_eq!(code, Some(0), "{stderr}");
    let (spans, _) = received_spans(&otlp).await;
    let chat = spans
        .iter()
        .find(|s| s.name == "chat gemini-2.5-flash")
        .unwrap_or_else(|| panic!("no chat span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    let a = attrs(&chat.attributes);
    assert_eq!(a["gen_ai.provider.name"], "gcp.vertex_ai");
    assert_eq!(a["gen_ai.usage.output_tokens"], "5");
    for r in otlp.received_requests().await.unwrap() {
        assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN), "the token was exported");
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
}
