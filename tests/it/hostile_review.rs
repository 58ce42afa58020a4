//! `review` under hostile or careless input (issue "Hostile input"): who may trigger a paid
//! review, a PR that rewrites its own config, sinks that fail after the review, input that is
//! not a diff, and the ledger when a repair round fails. Each test is named after what broke.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const LEAK: &str = "diff --git a/src/lib.rs b/src/lib.rs\nindex 1111111..2222222 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,3 @@\n fn a() {}\n+const KEY: &str = \"AKIAIOSFODNN7EXAMPLE\";\n fn c() {}\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `/agentctl review` comment by someone with `association`, of `user_type`.
fn comment_payload(association: &str, user_type: &str) -> Value {
    json!({
        "action": "created",
        "issue": {"number": 7, "pull_request": {"url": "https://api.github.test/pulls/7"}},
        "comment": {"body": "/agentctl review", "author_association": association,
                    "user": {"login": "visitor", "type": user_type}},
        "repository": {"full_name": "octo/repo"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_could_trigger_a_paid_review_by_comment() {
    // The model fake accepts no request at all: an outsider or a bot must not spend a token.
    let openai = fake_openai(json!({"summary": "x", "findings": []}), Duration::ZERO).await;
    let config = config_for(&openai.uri(), "");
    let gh = FakeGitHub::start("octo", "repo", 7, LEAK.as_bytes().to_vec(), Some(config)).await;
    gh.pull_mock().mount(&gh.server).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |association: &str, user_type: &str| {
        let event = write(dir.path(), "event.json", comment_payload(association, user_type).to_string());
        agentctl()
            .arg("review")
            .env("GITHUB_TOKEN", "ghs_token")
            .env("GITHUB_API_URL", gh.api_url())
            .env("GITHUB_EVENT_NAME", "issue_comment")
            .env("GITHUB_EVENT_PATH", event)
            .env("OPENAI_API_KEY", "sk-test-FAKEkey0123456789abcdefXYZ")
            .output()
            .unwrap()
    };
    for (association, user_type) in [("NONE", "User"), ("FIRST_TIME_CONTRIBUTOR", "User"), ("OWNER", "Bot")] {
        let out = run(association, user_type);
        assert_eq!(out.status.code(), Some(3), "{association} {user_type}: {}", stderr(&out));
        assert!(stderr(&out).contains("is ignored"), "{}", stderr(&out));
    }
    assert_eq!(openai.received_requests().await.unwrap().len(), 0, "an outsider's comment reached the model");
    let posted = {
        let state = gh.state.lock().unwrap();
        !state.review_posts.is_empty() || state.comment_posts > 0
    };
    assert!(!posted, "an outsider's comment posted something");
    // A member's comment is a review.
    let member = run("MEMBER", "User");
    assert_eq!(member.status.code(), Some(0), "{}", stderr(&member));
    assert_eq!(openai.received_requests().await.unwrap().len(), 1);
}

/// `git` in `dir`, failing the test on error.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_pr_could_rewrite_its_own_rules_in_actions_without_a_token() {
    // The base commit has no config; the PR adds one that excludes everything.
    let dir = tempfile::tempdir().unwrap();
    let repo = &dir.path().join("repo");
    std::fs::create_dir(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "base"]);
    let base = git(repo, &["rev-parse", "HEAD"]);
    std::fs::create_dir_all(repo.join(".github")).unwrap();
    std::fs::write(repo.join(".github/agentctl.yml"), "review:\n  exclude: [\"**\"]\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "pr"]);
    let diff = write(repo, "../pr.diff", LEAK);
    let payload = |base_sha: &str| {
        json!({
            "action": "opened", "number": 9,
            "pull_request": {"number": 9, "title": "t", "body": null, "html_url": "https://github.test/pull/9",
                             "head": {"sha": git(repo, &["rev-parse", "HEAD"]), "ref": "feature"},
                             "base": {"sha": base_sha, "ref": "main"}},
            "repository": {"full_name": "octo/repo"}
        })
        .to_string()
    };
    let run = |event: &Path| {
        agentctl()
            .current_dir(repo)
            .args(["review", "--fail-on", "high", "--diff"])
            .arg(&diff)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", "pull_request")
            .env("GITHUB_EVENT_PATH", event)
            .output()
            .unwrap()
    };
    let event = write(repo, "../event.json", payload(&base));
    let out = run(&event);
    // The leaked key is found: the PR's own `exclude: ["**"]` was not applied.
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    // A base commit the checkout does not have: refused, never the working directory's copy.
    let event = write(repo, "../event-missing.json", payload(&"ab".repeat(20)));
    let out = run(&event);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("base commit") && stderr(&out).contains("help:"), "{}", stderr(&out));
    // A local run (not in Actions) still uses the working directory's config.
    let local =
        agentctl().current_dir(repo).args(["review", "--fail-on", "high", "--diff"]).arg(&diff).output().unwrap();
    assert_eq!(local.status.code(), Some(3), "{}", stderr(&local));
}

#[test]
fn a_failed_output_threw_away_the_finished_review() {
    let dir = tempfile::tempdir().unwrap();
    let diff = write(dir.path(), "x.diff", LEAK);
    let summary = dir.path().join("summary.md");
    let out = agentctl()
        .args(["review", "--dry-run", "--diff"])
        .arg(&diff)
        .arg("--sarif")
        .arg(dir.path()) // a directory: SARIF cannot be written there
        .env("GITHUB_OUTPUT", dir.path()) // a directory too
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The review is printed, the job summary written, and each failed sink named.
    assert!(String::from_utf8_lossy(&out.stdout).contains("AC001"), "stdout lost");
    assert!(std::fs::read_to_string(&summary).unwrap().contains("agentctl review summary"));
    let err = stderr(&out);
    assert!(err.contains("cannot write SARIF") && err.contains("GITHUB_OUTPUT"), "{err}");
    // Each failure is printed once (it was printed as it happened and again as the run's error).
    assert_eq!(err.matches("cannot write SARIF").count(), 1, "{err}");
    // Nothing is left behind by the failed atomic write.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // `/dev/full` as GITHUB_OUTPUT: SARIF still lands.
    if Path::new("/dev/full").exists() {
        let sarif = dir.path().join("out.sarif");
        let out = agentctl()
            .args(["review", "--dry-run", "--diff"])
            .arg(&diff)
            .arg("--sarif")
            .arg(&sarif)
            .env("GITHUB_OUTPUT", "/dev/full")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(sarif.is_file(), "SARIF was not written when GITHUB_OUTPUT failed");
    }
}

#[test]
fn non_diffs_passed_as_clean() {
    let dir = tempfile::tempdir().unwrap();
    let review = |input: &[u8]| {
        let path = write(dir.path(), "input.diff", input);
        agentctl().args(["review", "--dry-run", "--diff"]).arg(path).output().unwrap()
    };
    for (what, input) in [
        ("an empty file", &b""[..]),
        ("random bytes", &[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0x00][..]),
        ("prose", &b"this is not a diff\nat all\n"[..]),
    ] {
        let out = review(input);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("not a unified diff"), "{what}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{what}");
    }
    let stdin = agentctl().args(["review", "--dry-run", "--diff", "-"]).write_stdin("").output().unwrap();
    assert_eq!(stdin.status.code(), Some(2), "{}", stderr(&stdin));
    // Only a lock file and a binary: nothing reviewable.
    let unreviewable = "diff --git a/Cargo.lock b/Cargo.lock\nindex 1..2 100644\n--- a/Cargo.lock\n+++ b/Cargo.lock\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/logo.png b/logo.png\nindex 1..2 100644\nBinary files a/logo.png and b/logo.png differ\n";
    let out = review(unreviewable.as_bytes());
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing reviewable"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_repair_round_was_recorded_as_zero_usage() {
    // Both answers break the schema: the chunk fails, but both calls were billed.
    let openai = fake_openai(json!({"verdict": "looks fine"}), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config_for(&openai.uri(), ""));
    let diff = write(dir.path(), "x.diff", LEAK);
    let state = dir.path().join("state.db");
    let out = agentctl()
        .args(["review", "--dry-run", "--diff"])
        .arg(&diff)
        .arg("--config")
        .arg(&cfg)
        .env("OPENAI_API_KEY", "sk-test-FAKEkey0123456789abcdefXYZ")
        .env("AGENTCTL_STATE", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "every request failed: {}", stderr(&out));
    assert_eq!(openai.received_requests().await.unwrap().len(), 2, "one call and one repair");
    let rows = agentctl::store::Store::open(&state).unwrap().usage_since(0).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!((r.usage.total_input(), r.usage.output_tokens), (1200, 150), "{r:?}");
        assert!(r.cost_usd.is_some_and(|c| c > 0.0), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_state_store_lost_the_ledger_silently() {
    let openai = fake_openai(json!({"summary": "fine", "findings": []}), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config_for(&openai.uri(), ""));
    let diff = write(dir.path(), "x.diff", LEAK);
    // A file where the store's folder should be: the store cannot be opened.
    let blocker = write(dir.path(), "blocker", "");
    let review = |require: bool| {
        let mut cmd = agentctl();
        cmd.args(["review", "--dry-run", "--diff"])
            .arg(&diff)
            .arg("--config")
            .arg(&cfg)
            .env("OPENAI_API_KEY", "sk-test-FAKEkey0123456789abcdefXYZ")
            .env("AGENTCTL_STATE", blocker.join("state.db"));
        if require {
            cmd.arg("--require-state");
        }
        cmd.output().unwrap()
    };
    let lenient = review(false);
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    assert!(stderr(&lenient).contains("usage not recorded"), "{}", stderr(&lenient));
    assert_eq!(openai.received_requests().await.unwrap().len(), 1);
    let strict = review(true);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("--require-state"), "{}", stderr(&strict));
    assert_eq!(openai.received_requests().await.unwrap().len(), 1, "--require-state still called the model");
}
