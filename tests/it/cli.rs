//! The command line as a user meets it: subcommands, config commands, the README's quick start,
//! diff sources, triggers and exit codes.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_subcommand() {
    let out = agentctl().arg("--help").output().unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!("help", String::from_utf8_lossy(&out.stdout));
}

/// Every subcommand's `--help` as a user reads it: a flag renamed or dropped shows here.
#[test]
fn every_subcommand_help_is_stable() {
    for sub in [
        &["review"][..],
        &["fix"],
        &["route"],
        &["cost"],
        &["cost", "report"],
        &["token-refresh"],
        &["config"],
        &["secrets"],
    ] {
        let out = agentctl().args(sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        insta::assert_snapshot!(format!("help_{}", sub.join("_")), String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = agentctl().args(["review", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_schema_init_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let schema = agentctl().args(["config", "schema"]).output().unwrap();
    assert!(schema.status.success());
    let schema: Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");

    let path = dir.path().join(".github/agentctl.yml");
    let init = agentctl().args(["config", "init"]).arg(&path).output().unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let again = agentctl().args(["config", "init"]).arg(&path).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "init must not overwrite");

    let ok = agentctl().args(["config", "validate"]).arg(&path).output().unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));

    let bad =
        write(dir.path(), "bad.yml", "review:\n  max_concurrency: 0\n  include: [1]\nproviders:\n  x: {model: m}\n");
    let out = agentctl().args(["config", "validate"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for pointer in ["/providers/x", "/review/include/0", "/review/max_concurrency"] {
        assert!(err.contains(pointer), "{pointer} missing: {err}");
    }
}

#[test]
fn the_readme_quick_start_runs_on_bundled_input() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme.lines().find(|l| l.starts_with("cargo run --release -- review --dry-run")).expect("quick start");
    let args: Vec<&str> = line.trim_start_matches("cargo run --release -- ").split_whitespace().collect();
    let out = agentctl().current_dir(env!("CARGO_MANIFEST_DIR")).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("### agentctl review") && text.contains("## agentctl review summary"), "{text}");
    assert!(text.contains("Codertocat/Hello-World#2"), "{text}");
}

/// A diff that adds a conflict marker (AC002, high), a `dbg!` (AC003, low) and a TODO (AC004).
const PLANTED: &str = "diff --git a/src/lib.rs b/src/lib.rs\nindex 1111111..2222222 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,7 @@\n fn a() {}\n+<<<<<<< HEAD\n+fn b() { dbg!(1); }\n+=======\n+fn b() {}\n+>>>>>>> feature\n+// TODO: tidy\n fn c() {}\n";

#[test]
fn diff_from_stdin_runs_builtin_rules_and_fail_on_sets_the_exit_code() {
    let out = agentctl()
        .args(["review", "--dry-run", "--diff", "-", "--format", "json"])
        .write_stdin(PLANTED)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> =
        report["findings"].as_array().unwrap().iter().filter_map(|f| f["origin"]["id"].as_str()).collect();
    assert_eq!(ids, ["AC002", "AC003", "AC004"], "{}", report["findings"]);

    let fail = agentctl()
        .args(["review", "--dry-run", "--diff", "-", "--fail-on", "high"])
        .write_stdin(PLANTED)
        .output()
        .unwrap();
    assert_eq!(fail.status.code(), Some(11), "high finding at --fail-on high exits 10 + rank(high)");
    let env_fail = agentctl()
        .args(["review", "--dry-run", "--diff", "-"])
        .env("AGENTCTL_FAIL_ON", "critical")
        .write_stdin(PLANTED)
        .output()
        .unwrap();
    assert_eq!(env_fail.status.code(), Some(0), "nothing critical");
}

#[test]
fn sarif_output_is_sarif_2_1_0_with_a_result_per_finding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.sarif");
    let out = agentctl()
        .args(["review", "--dry-run", "--diff", "-", "--sarif"])
        .arg(&path)
        .env("GITHUB_OUTPUT", dir.path().join("o"))
        .write_stdin(PLANTED)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sarif: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ruleId"], "AC002");
    assert_eq!(results[0]["level"], "error");
    assert_eq!(results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], 2);
    let outputs = parse_github_output(&std::fs::read_to_string(dir.path().join("o")).unwrap());
    assert_eq!(outputs["sarif-file"], path.display().to_string());
}

#[test]
fn base_ref_diffs_the_local_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let s = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(s.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&s.stderr));
    };
    git(&["init", "-q"]);
    std::fs::write(dir.path().join("app.py"), "def f():\n    return 1\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "base"]);
    git(&["checkout", "-qb", "feature"]);
    std::fs::write(dir.path().join("app.py"), "def f():\n    breakpoint()\n    return 1\n").unwrap();
    git(&["commit", "-qam", "debug"]);
    let out = agentctl()
        .current_dir(dir.path())
        .args(["review", "--dry-run", "--base", "main", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &report["findings"][0];
    assert_eq!(
        (f["path"].as_str(), f["line"].as_u64(), f["origin"]["id"].as_str()),
        (Some("app.py"), Some(2), Some("AC003"))
    );
    let bad =
        agentctl().current_dir(dir.path()).args(["review", "--dry-run", "--base", "no-such-ref"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn without_a_diff_source_or_token_the_review_explains_itself() {
    let out = agentctl().arg("review").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--diff"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_command_comment_reviews_its_pr_and_other_comments_do_nothing() {
    let Some(corpora) = corpora() else { return };
    let payload: Value = serde_json::from_slice(
        &std::fs::read(corpora.join("webhooks/extra/go-playground-webhooks/pull-request-issue-comment.json")).unwrap(),
    )
    .unwrap();
    let (owner, repo) = payload["repository"]["full_name"].as_str().unwrap().split_once('/').unwrap();
    let number = payload["issue"]["number"].as_u64().unwrap();
    let gh = FakeGitHub::start(owner, repo, number, PLANTED.as_bytes().to_vec(), None).await;
    gh.pull_mock().expect(1).mount(&gh.server).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |body: &str| {
        let mut p = payload.clone();
        p["comment"]["body"] = json!(body);
        let event = write(dir.path(), "event.json", p.to_string());
        agentctl()
            .arg("review")
            .env("GITHUB_TOKEN", "ghs_token")
            .env("GITHUB_API_URL", gh.api_url())
            .env("GITHUB_EVENT_NAME", "issue_comment")
            .env("GITHUB_EVENT_PATH", event)
            .output()
            .unwrap()
    };
    let ignored = run("Looks good to me");
    assert_eq!(ignored.status.code(), Some(3), "{}", stderr(&ignored));
    assert!(gh.requests().await.is_empty());
    let reviewed = run("/agentctl review please");
    assert_eq!(reviewed.status.code(), Some(0), "{}", stderr(&reviewed));
    let state = gh.state.lock().unwrap();
    assert_eq!(state.reviews.len(), 1);
    assert_eq!(state.review_posts[0]["commit_id"], "1111111111111111111111111111111111111111");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_dispatch_reviews_the_pr_named_in_its_inputs_and_reads_config_at_the_base_sha() {
    let Some(corpora) = corpora() else { return };
    let mut payload: Value = serde_json::from_slice(
        &std::fs::read(corpora.join("webhooks/examples/workflow_dispatch/payload.json")).unwrap(),
    )
    .unwrap();
    payload["inputs"] = json!({"pr": "7"});
    let (owner, repo) = payload["repository"]["full_name"].as_str().unwrap().split_once('/').unwrap().to_owned();
    let (owner, repo) = (owner.to_string(), repo.to_string());
    let openai = fake_openai(json!({"summary": "fine", "findings": []}), Duration::ZERO).await;
    let gh = FakeGitHub::start(&owner, &repo, 7, PLANTED.as_bytes().to_vec(), None).await;
    gh.pull_mock().mount(&gh.server).await;
    // The config exists only at the base sha: a config at any other ref is not asked for.
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(format!("{API_PREFIX}/repos/{owner}/{repo}/contents/.github/agentctl.yml")))
        .and(wiremock::matchers::query_param("ref", "2222222222222222222222222222222222222222"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(config_for(&openai.uri(), "")))
        .with_priority(1)
        .expect(1)
        .mount(&gh.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let event = write(dir.path(), "event.json", payload.to_string());
    let out = agentctl()
        .args(["review", "--format", "json"])
        .env("GITHUB_TOKEN", "ghs_token")
        .env("GITHUB_API_URL", gh.api_url())
        .env("GITHUB_EVENT_NAME", "workflow_dispatch")
        .env("GITHUB_EVENT_PATH", event)
        .env("OPENAI_API_KEY", "sk-test-FAKEkey0123456789abcdefXYZ")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pr"], 7);
    assert_eq!(report["provider"], "main", "the base branch's config chose the provider");
    assert_eq!(openai.received_requests().await.unwrap().len(), 1);
}

#[test]
fn fail_on_from_config_applies_unless_the_flag_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yml", "review:\n  fail_on: high\n");
    let run = |extra: &[&str]| {
        agentctl()
            .args(["review", "--dry-run", "--diff", "-", "--config", config.to_str().unwrap()])
            .args(extra)
            .write_stdin(PLANTED)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(run(&[]), Some(11), "config fail_on: high, a high finding");
    assert_eq!(run(&["--fail-on", "none"]), Some(0), "an explicit `none` overrides the config");
    assert_eq!(run(&["--fail-on", "critical"]), Some(0));
}
