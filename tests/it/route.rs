//! `agentctl route` end to end: every corpus webhook gets a catalog name, slash-command guards,
//! rule matchers, breaker and budget effects, runner selection against a fake runners API, and
//! bad input. GitHub is a strict wiremock fake: any request not expected fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agentctl::resilience::{BreakerRecord, BreakerState};
use agentctl::store::Store;
use agentctl::usage::{Usage, UsageRecord};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{agentctl, corpora, mount_catch_all, parse_github_output, write};

/// A route run: `--format json` parsed, the outputs file parsed, stderr, exit code.
struct Routed {
    json: Value,
    /// Stdout as printed.
    stdout: String,
    outputs: BTreeMap<String, String>,
    stderr: String,
    code: i32,
}

/// Runs `agentctl route` in a fresh folder (so no repository config is picked up) with the
/// payload, the event name, the config text, and extra env.
fn route(event_name: &str, payload: &Value, config: &str, env: &[(&str, &str)]) -> Routed {
    let dir = tempfile::tempdir().unwrap();
    let event = write(dir.path(), "event.json", payload.to_string());
    route_file(dir.path(), event_name, &event, config, env)
}

fn route_file(dir: &Path, event_name: &str, event: &Path, config: &str, env: &[(&str, &str)]) -> Routed {
    let config_path = write(dir, "agentctl.yml", config);
    let out_path = dir.join("out.txt");
    std::fs::write(&out_path, "").unwrap();
    let mut cmd = agentctl();
    cmd.current_dir(dir)
        .args(["route", "--format", "json", "--explain", "--event-name", event_name, "--event"])
        .arg(event)
        .arg("--config")
        .arg(&config_path)
        .env("GITHUB_OUTPUT", &out_path)
        .env("GITHUB_REPOSITORY", "octo/hello");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Routed {
        json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        outputs: parse_github_output(&std::fs::read_to_string(&out_path).unwrap()),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

fn pr_event(action: &str) -> Value {
    json!({
        "action": action, "number": 7,
        "pull_request": {
            "number": 7, "draft": false, "additions": 30, "deletions": 10, "author_association": "CONTRIBUTOR",
            "labels": [{"name": "bug"}, {"name": "backend"}],
            "head": {"ref": "feature/x", "sha": "1111111111111111111111111111111111111111"},
            "base": {"ref": "main", "sha": "2222222222222222222222222222222222222222"}
        },
        "repository": {"full_name": "octo/hello"}
    })
}

fn comment_event(body: &str, association: &str, user_type: &str, on_pr: bool) -> Value {
    json!({
        "action": "created",
        "issue": {"number": 12, "pull_request": if on_pr { json!({"url": "u"}) } else { Value::Null }, "labels": []},
        "comment": {"body": body, "author_association": association, "user": {"login": "someone", "type": user_type}},
        "repository": {"full_name": "octo/hello"}
    })
}

const PROVIDERS: &str = "providers:\n  main: {kind: openai, model: big, fallback: [spare]}\n  spare: {kind: openai, model: small}\n  local: {kind: openai, model: tiny}\nprovider: main\ntiers: {cheap: local}\n";

#[test]
fn every_corpus_webhook_routes_to_a_catalog_name() {
    let Some(corpora) = corpora() else { return };
    let root = corpora.join("webhooks/examples");
    let dir = tempfile::tempdir().unwrap();
    let mut names: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut unknown = BTreeSet::new();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for folder in std::fs::read_dir(&root).unwrap() {
        let folder = folder.unwrap().path();
        let event = folder.file_name().unwrap().to_string_lossy().into_owned();
        for f in std::fs::read_dir(&folder).unwrap() {
            files.push((event.clone(), f.unwrap().path()));
        }
    }
    files.push((
        "issue_comment".into(),
        corpora.join("webhooks/extra/go-playground-webhooks/pull-request-issue-comment.json"),
    ));
    files.sort();
    assert!(files.len() >= 100, "expected the 109 corpus payloads, found {}", files.len());
    for (event, file) in &files {
        let r = route_file(dir.path(), event, file, "", &[]);
        assert_eq!(r.code, 0, "{}: {}", file.display(), r.stderr);
        let name = r.json["event"].as_str().unwrap_or_else(|| panic!("{}: no event in {}", file.display(), r.json));
        assert!(["review", "fix", "none"].contains(&r.json["task"].as_str().unwrap()), "{}", file.display());
        let rel = file.strip_prefix(&corpora).unwrap().display().to_string();
        names.insert(rel, agentctl_name(name));
        if name == "unknown" {
            unknown.insert(r.json["event_raw"].as_str().unwrap().to_owned());
        }
    }
    // One payload per event type, pinned.
    let pinned = [
        ("webhooks/examples/pull_request/opened.payload.json", "pr.created"),
        ("webhooks/examples/pull_request/synchronize.payload.json", "pr.updated"),
        ("webhooks/examples/pull_request/reopened.payload.json", "pr.reopened"),
        ("webhooks/examples/pull_request/ready_for_review.payload.json", "pr.ready"),
        ("webhooks/examples/pull_request/labeled.payload.json", "pr.labeled"),
        ("webhooks/examples/pull_request_review/submitted.payload.json", "pr.reviewed"),
        ("webhooks/examples/pull_request_review_comment/created.payload.json", "pr.review_commented"),
        ("webhooks/extra/go-playground-webhooks/pull-request-issue-comment.json", "pr.commented"),
        ("webhooks/examples/issue_comment/created.payload.json", "issue.commented"),
        ("webhooks/examples/issues/opened.payload.json", "issue.created"),
        ("webhooks/examples/issues/labeled.payload.json", "issue.labeled"),
        ("webhooks/examples/push/payload.json", "push"),
        ("webhooks/examples/workflow_dispatch/payload.json", "dispatch"),
        ("webhooks/examples/repository_dispatch/payload.json", "dispatch"),
        ("webhooks/examples/workflow_job/queued.payload.json", "runner.job_queued"),
        ("webhooks/examples/workflow_run/completed.payload.json", "unknown"),
        ("webhooks/examples/check_run/completed.payload.json", "unknown"),
        ("webhooks/examples/check_suite/completed.payload.json", "unknown"),
        ("webhooks/examples/merge_group/checks_requested.payload.json", "unknown"),
        ("webhooks/examples/pull_request_review_thread/resolved.payload.json", "unknown"),
    ];
    for (file, want) in pinned {
        assert_eq!(names.get(file).copied(), Some(want), "{file}");
    }
    // Closed and merged PRs, failed workflow jobs and runs: what the corpus has of them.
    let closed: BTreeSet<&str> =
        names.iter().filter(|(f, _)| f.contains("pull_request/closed")).map(|(_, n)| *n).collect();
    assert!(closed.iter().all(|n| ["pr.closed", "pr.merged"].contains(n)), "{closed:?}");
    // The raw names left unknown: a new mapping must change this set on purpose.
    let want_unknown: BTreeSet<String> = [
        "check_run.completed",
        "check_run.created",
        "check_run.requested_action",
        "check_run.rerequested",
        "check_suite.completed",
        "check_suite.requested",
        "check_suite.rerequested",
        "issue_comment.deleted",
        "issue_comment.edited",
        "issues.assigned",
        "issues.deleted",
        "issues.demilestoned",
        "issues.edited",
        "issues.locked",
        "issues.milestoned",
        "issues.pinned",
        "issues.reopened",
        "issues.transferred",
        "issues.unassigned",
        "issues.unlabeled",
        "issues.unlocked",
        "issues.unpinned",
        "merge_group.checks_requested",
        "pull_request.assigned",
        "pull_request.converted_to_draft",
        "pull_request.locked",
        "pull_request.review_request_removed",
        "pull_request.review_requested",
        "pull_request.unassigned",
        "pull_request.unlabeled",
        "pull_request.unlocked",
        "pull_request_review.dismissed",
        "pull_request_review_comment.deleted",
        "pull_request_review_comment.edited",
        "pull_request_review_thread.resolved",
        "pull_request_review_thread.unresolved",
        "workflow_job.completed",
        "workflow_job.in_progress",
        "workflow_job.waiting",
        "workflow_run.completed",
        "workflow_run.requested",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let extra: Vec<_> = unknown.difference(&want_unknown).collect();
    let gone: Vec<_> = want_unknown.difference(&unknown).collect();
    assert!(extra.is_empty() && gone.is_empty(), "unknown set changed: new {extra:?}, no longer {gone:?}");
}

/// The catalog name as a `&'static str` from the list the binary can print.
fn agentctl_name(name: &str) -> &'static str {
    agentctl::context::catalog::NAMES
        .iter()
        .copied()
        .find(|n| *n == name)
        .unwrap_or_else(|| panic!("not a catalog name: {name}"))
}

/// `--format json --explain` byte for byte (the v1 wire shape: field names, order, formatting).
#[test]
fn route_json_stdout_is_the_v1_shape_byte_for_byte() {
    let r = route("pull_request", &pr_event("opened"), PROVIDERS, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!("route_json_stdout", r.stdout);
}

#[test]
fn default_rules_review_prs_and_fix_on_command() {
    let r = route("pull_request", &pr_event("opened"), PROVIDERS, &[]);
    assert_eq!((r.code, r.json["task"].as_str()), (0, Some("review")), "{}", r.stderr);
    assert_eq!(r.outputs["provider"], "main");
    assert_eq!(r.outputs["model"], "big");
    assert_eq!(r.outputs["pr"], "7");
    assert_eq!(r.outputs["event"], "pr.created");
    // runs-on parses as JSON (fromJSON) into an array of strings.
    let runs_on: Vec<String> = serde_json::from_str(&r.outputs["runs-on"]).unwrap();
    assert_eq!(runs_on, vec!["ubuntu-latest".to_owned()]);
    let mut draft = pr_event("opened");
    draft["pull_request"]["draft"] = json!(true);
    assert_eq!(route("pull_request", &draft, "", &[]).json["task"], "none");
    assert_eq!(route("pull_request", &pr_event("closed"), "", &[]).json["task"], "none");
    let fix = route("issue_comment", &comment_event("/agentctl fix the typo\nthanks", "OWNER", "User", false), "", &[]);
    assert_eq!((fix.json["task"].as_str(), fix.json["command"].as_str()), (Some("fix"), Some("fix")), "{}", fix.json);
    assert_eq!(fix.outputs["issue"], "12");
}

#[test]
fn slash_commands_count_only_from_allowed_humans_at_the_start() {
    let task = |body: &str, assoc: &str, kind: &str| {
        let r = route("issue_comment", &comment_event(body, assoc, kind, true), "", &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        (r.json["task"].as_str().unwrap().to_owned(), r.json["reason"].as_str().unwrap().to_owned())
    };
    assert_eq!(task("/agentctl fix it", "OWNER", "User").0, "fix");
    assert_eq!(task("/agentctl review", "MEMBER", "User").0, "review");
    for assoc in ["NONE", "FIRST_TIME_CONTRIBUTOR"] {
        let (t, reason) = task("/agentctl fix it", assoc, "User");
        assert_eq!(t, "none");
        assert!(reason.contains(assoc) && reason.contains("only OWNER, MEMBER, COLLABORATOR"), "{reason}");
    }
    let (t, reason) = task("/agentctl fix it", "OWNER", "Bot");
    assert_eq!(t, "none");
    assert!(reason.contains("bot"), "{reason}");
    let (t, reason) = task("/agentctl fix it\n<!-- agentctl:summary:v1 -->", "OWNER", "User");
    assert_eq!(t, "none");
    assert!(reason.contains("loop guard"), "{reason}");
    for body in ["```\n/agentctl fix it\n```", " /agentctl fix it", "please /agentctl fix it", "／agentctl fix it"] {
        let (t, reason) = task(body, "OWNER", "User");
        assert_eq!(t, "none", "{body}");
        assert!(reason.starts_with("no rule matches"), "{body}: {reason}");
    }
    // The allowed associations are configurable.
    let r = route(
        "issue_comment",
        &comment_event("/agentctl fix", "CONTRIBUTOR", "User", true),
        "slash_commands: {allowed_associations: [CONTRIBUTOR]}\n",
        &[],
    );
    assert_eq!(r.json["task"], "fix", "{}", r.json);
}

#[test]
fn a_slash_command_needs_its_own_author_and_association_or_is_refused() {
    let refused = |payload: Value, event_name: &str| {
        let r = route(event_name, &payload, "", &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json["task"], "none", "{}", r.json);
        r.json["reason"].as_str().unwrap().to_owned()
    };
    // No `comment.user`: no permission, even though the association says OWNER.
    let mut no_user = comment_event("/agentctl fix it", "OWNER", "User", true);
    no_user["comment"].as_object_mut().unwrap().remove("user");
    assert!(refused(no_user, "issue_comment").contains("no author"));
    let mut empty_login = comment_event("/agentctl fix it", "OWNER", "User", true);
    empty_login["comment"]["user"]["login"] = json!(" ");
    assert!(refused(empty_login, "issue_comment").contains("no author"));
    // No `comment.author_association`: the issue's OWNER is not the commenter's.
    let mut borrowed = comment_event("/agentctl fix it", "OWNER", "User", true);
    borrowed["comment"].as_object_mut().unwrap().remove("author_association");
    borrowed["issue"]["author_association"] = json!("OWNER");
    let reason = refused(borrowed, "issue_comment");
    assert!(reason.contains("(NONE)") && reason.contains("only OWNER"), "{reason}");
    // A review by a bot is the loop guard; a review by an outsider is refused.
    let review = |assoc: &str, kind: &str| {
        let mut p = pr_event("submitted");
        p["review"] =
            json!({"body": "/agentctl fix it", "author_association": assoc, "user": {"login": "r", "type": kind}});
        p
    };
    assert!(refused(review("OWNER", "Bot"), "pull_request_review").contains("loop guard"));
    assert!(refused(review("NONE", "User"), "pull_request_review").contains("(NONE)"));
}

#[test]
fn first_matching_rule_wins_and_each_matcher_decides() {
    let rules = |rule: &str| {
        format!("{PROVIDERS}routes:\n  - {{{rule}, task: fix, name: probe}}\n  - {{task: review, name: catch-all}}\n")
    };
    let pr = pr_event("synchronize");
    // (rule matchers, whether the probe rule matches the PR event above)
    let cases = [
        ("event: pr.updated", true),
        ("event: 'pr.*'", true),
        ("event: [issue.created, pr.created]", false),
        ("labels: [bug]", true),
        ("labels: [docs]", false),
        ("labels: {all: [bug, backend]}", true),
        ("labels: {all: [bug, docs]}", false),
        ("labels: {any: [docs, backend], all: [bug]}", true),
        ("author_association: [contributor]", true),
        ("author_association: [OWNER]", false),
        ("draft: false", true),
        ("draft: true", false),
        ("base_branch: main", true),
        ("base_branch: 'release/*'", false),
        ("head_branch: 'feature/*'", true),
        ("head_branch: main", false),
        ("diff_size: {max_changed_lines: 40}", true),
        ("diff_size: {max_changed_lines: 39}", false),
        ("diff_size: {min_changed_lines: 41}", false),
        ("command: fix", false),
        ("event: 'pr.*', labels: [bug], draft: false, base_branch: main, diff_size: {max_changed_lines: 100}", true),
        ("event: 'pr.*', labels: [bug], draft: true", false),
    ];
    for (matchers, matches) in cases {
        let r = route("pull_request", &pr, &rules(matchers), &[]);
        assert_eq!(r.code, 0, "{matchers}: {}", r.stderr);
        let (want_task, want_rule) = if matches { ("fix", "probe") } else { ("review", "catch-all") };
        assert_eq!(
            (r.json["task"].as_str(), r.json["rule"].as_str()),
            (Some(want_task), Some(want_rule)),
            "{matchers}: {}",
            r.json
        );
    }
    // Order: the first of two matching rules decides.
    let two = format!(
        "{PROVIDERS}routes:\n  - {{event: 'pr.*', task: none, name: first}}\n  - {{event: 'pr.*', task: review}}\n"
    );
    let r = route("pull_request", &pr, &two, &[]);
    assert_eq!((r.json["task"].as_str(), r.json["rule"].as_str()), (Some("none"), Some("first")));
    // The rule's tier and args come out.
    let tiered = format!("{PROVIDERS}routes:\n  - {{event: 'pr.*', task: review, tier: cheap, args: --full}}\n");
    let r = route("pull_request", &pr, &tiered, &[]);
    assert_eq!(
        (r.outputs["provider"].as_str(), r.outputs["model"].as_str(), r.outputs["tier"].as_str()),
        ("local", "tiny", "cheap")
    );
    assert_eq!(r.outputs["args"], "--full");
}

/// A GitHub fake that answers the PR files list with `files` and counts the calls.
async fn files_fake(files: &[&str]) -> MockServer {
    let server = MockServer::builder().start().await;
    mount_catch_all(&server, "GitHub").await;
    let body: Vec<Value> = files.iter().map(|f| json!({"filename": f, "status": "modified"})).collect();
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/pulls/7/files"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .named("pull files")
        .mount(&server)
        .await;
    server
}

fn github_env(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![("GITHUB_TOKEN", "ghs_routetesttoken0000000000000000000000".into()), ("GITHUB_API_URL", server.uri())]
}

fn with<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_cost_one_files_call_only_when_a_rule_reaches_them() {
    let server = files_fake(&["docs/readme.md", "src/lib.rs"]).await;
    let env = github_env(&server);
    let config = format!(
        "{PROVIDERS}routes:\n  - {{event: issue.created, task: fix}}\n  - {{paths: ['docs/**'], labels: [none-such], task: none}}\n  - {{paths: ['**/*.py'], task: none, name: python}}\n  - {{paths: ['src/**'], task: review, name: rust}}\n"
    );
    let r = tokio::task::spawn_blocking({
        let env = env.clone();
        move || route("pull_request", &pr_event("synchronize"), &config, &with(&env))
    })
    .await
    .unwrap();
    assert_eq!(
        (r.json["task"].as_str(), r.json["rule"].as_str()),
        (Some("review"), Some("rust")),
        "{}\n{}",
        r.json,
        r.stderr
    );
    let calls = server.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1, "one files call for three rules with paths: {calls:?}");
    // No rule needs paths: no call at all (the strict fake would count it).
    let r =
        tokio::task::spawn_blocking(move || route("pull_request", &pr_event("synchronize"), PROVIDERS, &with(&env)))
            .await
            .unwrap();
    assert_eq!(r.json["task"], "review");
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "no call without a paths rule");
}

/// A state store with the `main/big` breaker opened just now, as a previous process leaves it.
fn store_with_open_breaker(dir: &Path) -> PathBuf {
    let state = dir.join("state.db");
    let store = Store::open(&state).unwrap();
    let now = agentctl::clock::now_ms();
    let record = BreakerRecord {
        state: BreakerState::Open,
        consecutive_failures: 5,
        opened_at_ms: Some(now),
        half_open_probes: 0,
        updated_at_ms: now,
    };
    store.update_breaker("main/big", |_| (Some(record.to_row()), ())).unwrap();
    state
}

#[test]
fn an_open_breaker_moves_to_the_next_provider_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let state = store_with_open_breaker(dir.path());
    let state_s = state.display().to_string();
    let r = route("pull_request", &pr_event("opened"), PROVIDERS, &[("AGENTCTL_STATE", &state_s)]);
    assert_eq!(
        (r.outputs["task"].as_str(), r.outputs["provider"].as_str(), r.outputs["model"].as_str()),
        ("review", "spare", "small")
    );
    assert!(r.outputs["reason"].contains("main/big skipped (circuit open)"), "{}", r.outputs["reason"]);
    // Without that store, main answers.
    let r = route("pull_request", &pr_event("opened"), PROVIDERS, &[]);
    assert_eq!(r.outputs["provider"], "main");
}

fn spend(state: &Path, usd: f64) {
    let store = Store::open(state).unwrap();
    store
        .record_usage(&UsageRecord {
            ts_ms: agentctl::clock::now_ms(),
            repo: Some("octo/hello".into()),
            workflow: Some("ci".into()),
            run_id: None,
            job: None,
            pr: Some(7),
            task: "review".into(),
            provider: "main".into(),
            model: "big".into(),
            usage: Usage { input_tokens: 1000, output_tokens: 100, ..Usage::default() },
            cost_usd: Some(usd),
            cost_source: Default::default(),
            price_table: None,
            latency_ms: 5,
            outcome: "ok".into(),
            cached: false,
        })
        .unwrap();
}

#[test]
fn budget_soft_downgrades_and_hard_stops() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let state_s = state.display().to_string();
    let config = format!("{PROVIDERS}budgets:\n  - {{scope: repo, period: month, limit_usd: 10, soft_ratio: 0.5, downgrade_to: cheap}}\n");
    spend(&state, 6.0);
    let r = route("pull_request", &pr_event("opened"), &config, &[("AGENTCTL_STATE", &state_s)]);
    assert_eq!(
        (r.outputs["task"].as_str(), r.outputs["provider"].as_str(), r.outputs["tier"].as_str()),
        ("review", "local", "cheap")
    );
    assert!(r.outputs["reason"].contains("downgraded to cheap"), "{}", r.outputs["reason"]);
    spend(&state, 5.0);
    let r = route("pull_request", &pr_event("opened"), &config, &[("AGENTCTL_STATE", &state_s)]);
    assert_eq!((r.code, r.outputs["task"].as_str()), (0, "none"));
    assert!(r.outputs["reason"].contains("budget is exhausted"), "{}", r.outputs["reason"]);
}

/// One fake runner: name, status, busy, labels.
type FakeRunner<'a> = (&'a str, &'a str, bool, Vec<&'a str>);

/// A runners fake: `pages` of runners, linked with `Link`.
async fn runners_fake(pages: Vec<Vec<FakeRunner<'_>>>, status: u16) -> MockServer {
    let server = MockServer::builder().start().await;
    mount_catch_all(&server, "GitHub").await;
    let n = pages.len();
    for (i, page) in pages.into_iter().enumerate() {
        let runners: Vec<Value> = page
            .iter()
            .enumerate()
            .map(|(j, (name, st, busy, labels))| {
                json!({"id": i * 100 + j, "name": name, "os": "linux", "status": st, "busy": busy,
                       "labels": labels.iter().map(|l| json!({"id": 1, "name": l, "type": "custom"})).collect::<Vec<_>>()})
            })
            .collect();
        let mut resp = if status == 200 {
            ResponseTemplate::new(200).set_body_json(json!({"total_count": 0, "runners": runners}))
        } else {
            ResponseTemplate::new(status).set_body_json(json!({"message": "Resource not accessible by integration"}))
        };
        if i + 1 < n {
            resp = resp.insert_header(
                "link",
                format!(
                    "<{}/repos/octo/hello/actions/runners?per_page=100&page={}>; rel=\"next\"",
                    server.uri(),
                    i + 2
                )
                .as_str(),
            );
        }
        let m = Mock::given(method("GET")).and(path("/repos/octo/hello/actions/runners"));
        let m = if i == 0 {
            m.and(query_param("per_page", "100"))
        } else {
            m.and(query_param("page", (i + 1).to_string()))
        };
        m.respond_with(resp).with_priority(if i == 0 { 10 } else { 1 }).expect(1).mount(&server).await;
    }
    server
}

const RUNNER_RULE: &str = "routes:\n  - {event: 'pr.*', task: review, runs_on: [[self-hosted, gpu], [self-hosted, linux]], fallback_runs_on: [ubuntu-latest]}\n";

async fn route_with_runners(server: &MockServer) -> Routed {
    let env = github_env(server);
    tokio::task::spawn_blocking(move || {
        route("pull_request", &pr_event("opened"), &format!("{PROVIDERS}{RUNNER_RULE}"), &with(&env))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_idle_busy_forbidden_and_paginated() {
    // An idle runner with the second set's labels (the first set's only runner is busy).
    let server = runners_fake(
        vec![vec![
            ("gpu-1", "online", true, vec!["self-hosted", "gpu"]),
            ("cpu-1", "online", false, vec!["self-hosted", "Linux", "x64"]),
        ]],
        200,
    )
    .await;
    let r = route_with_runners(&server).await;
    assert_eq!(serde_json::from_str::<Vec<String>>(&r.outputs["runs-on"]).unwrap(), ["self-hosted", "linux"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // All busy or offline → fallback.
    let server = runners_fake(
        vec![vec![
            ("gpu-1", "online", true, vec!["self-hosted", "gpu"]),
            ("cpu-1", "offline", false, vec!["self-hosted", "linux"]),
        ]],
        200,
    )
    .await;
    let r = route_with_runners(&server).await;
    assert_eq!(r.outputs["runs-on"], r#"["ubuntu-latest"]"#);
    assert!(r.outputs["reason"].contains("no online idle runner"), "{}", r.outputs["reason"]);

    // 403 → fallback with a warning; the job does not fail.
    let server = runners_fake(vec![vec![]], 403).await;
    let r = route_with_runners(&server).await;
    assert_eq!(
        (r.code, r.outputs["runs-on"].as_str(), r.outputs["task"].as_str()),
        (0, r#"["ubuntu-latest"]"#, "review")
    );
    assert!(r.stderr.contains("cannot list self-hosted runners"), "{}", r.stderr);
    assert!(!r.stderr.contains("ghs_routetesttoken"), "the token leaked: {}", r.stderr);

    // The idle GPU runner is on page 2: both pages are read, nothing more.
    let server = runners_fake(
        vec![
            vec![("cpu-1", "online", true, vec!["self-hosted", "linux"])],
            vec![("gpu-2", "online", false, vec!["self-hosted", "gpu"])],
        ],
        200,
    )
    .await;
    let r = route_with_runners(&server).await;
    assert_eq!(r.outputs["runs-on"], r#"["self-hosted","gpu"]"#);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[test]
fn bad_config_is_exit_2_with_the_pointer_and_missing_fields_are_none() {
    let r =
        route("pull_request", &pr_event("opened"), "routes:\n  - {event: 'pr.*', lables: [bug], task: review}\n", &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/routes/0") && r.stderr.contains("lables"), "{}", r.stderr);
    let r = route(
        "pull_request",
        &pr_event("opened"),
        &format!("{PROVIDERS}routes:\n  - {{task: review, tier: gold}}\n"),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/routes/0/tier") && r.stderr.contains("gold"), "{}", r.stderr);
    // A payload without the fields a rule needs: `none`, with the reason, not a crash.
    let bare = json!({"action": "opened", "number": 7, "pull_request": {"number": 7,
        "head": {"ref": "x", "sha": "1111111111111111111111111111111111111111"},
        "base": {"ref": "main", "sha": "2222222222222222222222222222222222222222"}},
        "repository": {"full_name": "octo/hello"}});
    let r = route("pull_request", &bare, "routes:\n  - {diff_size: {max_changed_lines: 10}, task: review}\n", &[]);
    assert_eq!((r.code, r.outputs["task"].as_str()), (0, "none"), "{}", r.stderr);
    let explain = r.json["explain"].to_string();
    assert!(explain.contains("no pull_request.additions"), "{explain}");
}

#[test]
fn job_summary_holds_the_decision_and_text_stdout_lists_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let event = write(dir.path(), "event.json", pr_event("opened").to_string());
    let config = write(dir.path(), "agentctl.yml", PROVIDERS);
    let summary = dir.path().join("summary.md");
    let out = agentctl()
        .current_dir(dir.path())
        .args(["route", "--event-name", "pull_request", "--event"])
        .arg(&event)
        .arg("--config")
        .arg(&config)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in
        ["task: review", "provider: main", "model: big", "runs-on: [\"ubuntu-latest\"]", "event: pr.created", "pr: 7"]
    {
        assert!(stdout.lines().any(|l| l == line), "{line} missing from:\n{stdout}");
    }
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("### agentctl route"), "{md}");
    for row in ["| task | review |", "| provider | main |", "| event | pr.created |"] {
        assert!(md.contains(row), "{row} missing from:\n{md}");
    }
}

/// Without `--config`, a route on a payload carrying a pull request (here a review comment)
/// reads `.github/agentctl.yml` at the PR's base sha through the API, never the checkout's
/// copy (which the PR controls); a route on an issue comment reads it at `GITHUB_SHA` when the
/// working directory has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_config_a_pr_payload_uses_the_base_commit_and_other_events_github_sha() {
    let server = MockServer::builder().start().await;
    mount_catch_all(&server, "GitHub").await;
    let base_rule = "routes:\n  - {task: none, name: from-base}\n";
    let head_rule = "routes:\n  - {task: fix, name: from-checkout}\n";
    for (sha, rule) in [
        ("2222222222222222222222222222222222222222", base_rule),
        ("3333333333333333333333333333333333333333", "routes:\n  - {task: none, name: from-github-sha}\n"),
    ] {
        Mock::given(method("GET"))
            .and(path("/repos/octo/hello/contents/.github/agentctl.yml"))
            .and(query_param("ref", sha))
            .respond_with(ResponseTemplate::new(200).set_body_string(format!("{PROVIDERS}{rule}")))
            .expect(1)
            .mount(&server)
            .await;
    }
    let env = github_env(&server);
    let run = move |event_name: &'static str, payload: Value, checkout_config: Option<&'static str>| {
        let env = env.clone();
        move || {
            let dir = tempfile::tempdir().unwrap();
            if let Some(text) = checkout_config {
                std::fs::create_dir(dir.path().join(".github")).unwrap();
                write(&dir.path().join(".github"), "agentctl.yml", format!("{PROVIDERS}{text}"));
            }
            let event = write(dir.path(), "event.json", payload.to_string());
            let out = agentctl()
                .current_dir(dir.path())
                .args(["route", "--format", "json", "--event-name", event_name, "--event"])
                .arg(&event)
                .env("GITHUB_REPOSITORY", "octo/hello")
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_SHA", "3333333333333333333333333333333333333333")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            (json, String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let mut review_comment = pr_event("created");
    review_comment["comment"] =
        json!({"body": "nit", "author_association": "OWNER", "user": {"login": "a", "type": "User"}});
    let (pr, stderr) =
        tokio::task::spawn_blocking(run("pull_request_review_comment", review_comment, Some(head_rule))).await.unwrap();
    assert_eq!((pr["task"].as_str(), pr["rule"].as_str()), (Some("none"), Some("from-base")), "{pr} {stderr}");
    let issue = comment_event("hello", "OWNER", "User", false);
    let (other, stderr) = tokio::task::spawn_blocking(run("issue_comment", issue, None)).await.unwrap();
    assert_eq!(other["rule"].as_str(), Some("from-github-sha"), "{other} {stderr}");
}
