//! End to end: the real binary against loopback fakes of GitHub and an OpenAI-compatible
//! server, with real payloads and real corpus diffs.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

const OWNER: &str = "Codertocat";
const REPO: &str = "Hello-World";
const PR: u64 = 2;
const MEDIUM: &str = "diffs/02-medium.ripgrep-efd9cfb2.diff";

/// The model's answer for every chunk: valid anchors, a range across two hunks, a line outside
/// any hunk, an unknown path, and a removed (LEFT) line.
fn model_answer() -> Value {
    json!({
        "summary": "Multi-line look-around handling changes across the matcher and printers.",
        "findings": [
            {"path": "crates/core/app.rs", "line": 1060, "side": "RIGHT", "severity": "high", "category": "bug",
             "title": "Flag count can overflow", "body": "The count is not bounded."},
            {"path": "crates/matcher/src/lib.rs", "start_line": 620, "line": 625, "severity": "medium", "category": "correctness",
             "title": "Range in one hunk", "body": "Multi-line range.", "suggestion": "// replacement\n"},
            {"path": "crates/matcher/src/lib.rs", "start_line": 640, "line": 660, "severity": "low", "category": "style",
             "title": "Range across two hunks", "body": "Spans a gap between hunks."},
            {"path": "crates/core/app.rs", "line": 500, "severity": "medium", "category": "bug",
             "title": "Line outside the diff", "body": "Not commentable."},
            {"path": "src/does_not_exist.rs", "line": 3, "severity": "low", "category": "bug",
             "title": "Unknown path", "body": "Not in the diff."},
            {"path": "crates/printer/src/json.rs", "line": 7, "side": "LEFT", "severity": "info", "category": "cleanup",
             "title": "Removed import", "body": "SinkError was removed."}
        ]
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: String,
    summary: String,
}

#[allow(clippy::too_many_arguments)]
fn run_review(
    gh: &FakeGitHub,
    event: &std::path::Path,
    event_name: &str,
    dir: &std::path::Path,
    extra_args: &[&str],
    extra_env: &[(&str, &str)],
) -> Run {
    let out_file = dir.join(format!("output-{}", unique_name()));
    let summary_file = dir.join(format!("summary-{}", unique_name()));
    let mut cmd = agentctl();
    cmd.arg("review")
        .args(extra_args)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", "ghs_fakeinstallationtoken0123456789abcdefABCD")
        .env("GITHUB_API_URL", gh.api_url())
        .env("GITHUB_REPOSITORY", format!("{}/{}", gh.owner, gh.repo))
        .env("GITHUB_EVENT_NAME", event_name)
        .env("GITHUB_EVENT_PATH", event)
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .env("OPENAI_API_KEY", "sk-test-FAKEkey0123456789abcdefXYZ");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outputs: std::fs::read_to_string(&out_file).unwrap_or_default(),
        summary: std::fs::read_to_string(&summary_file).unwrap_or_default(),
    }
}

/// Checks every posted inline comment against the independent oracle: `line` commentable on
/// `side`, `start_line` (if any) commentable, same hunk, below `line`.
fn assert_comments_anchor(diff: &[u8], review: &Value) {
    let oracle = commentable(diff);
    for c in review["comments"].as_array().unwrap() {
        let path = c["path"].as_str().unwrap().to_string();
        let side = c["side"].as_str().expect("side set").to_string();
        let line = c["line"].as_u64().expect("line set") as u32;
        assert!(c.get("position").is_none(), "deprecated position used: {c}");
        let lines = oracle.get(&(path.clone(), side.clone())).unwrap_or_else(|| panic!("{path} {side} not in diff"));
        let hunk = lines.get(&line).unwrap_or_else(|| panic!("{path}:{line} {side} not commentable"));
        if let Some(start) = c["start_line"].as_u64() {
            let start = start as u32;
            assert!(start < line, "start_line {start} not below line {line}");
            assert_eq!(c["start_side"].as_str(), Some(side.as_str()));
            assert_eq!(lines.get(&start), Some(hunk), "{path}:{start}-{line} crosses hunks");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_posts_anchored_comments_once_and_one_summary_after_two_runs() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let openai = fake_openai(model_answer(), Duration::ZERO).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff.clone(), Some(config_for(&openai.uri(), ""))).await;
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");

    let first = run_review(&gh, &event, "pull_request", dir.path(), &[], &[]);
    assert_eq!(first.code, 0, "stderr: {}", first.stderr);
    let first_requests = gh.requests().await;
    assert!(first_requests.len() <= 6, "more than 6 GitHub requests: {first_requests:?}");
    assert!(first_requests.iter().all(|(_, p)| p.starts_with(API_PREFIX)), "GHES prefix lost: {first_requests:?}");

    let model_calls = openai.received_requests().await.unwrap().len();
    let second = run_review(&gh, &event, "pull_request", dir.path(), &[], &[]);
    assert_eq!(second.code, 0, "stderr: {}", second.stderr);
    assert_eq!(
        openai.received_requests().await.unwrap().len(),
        model_calls,
        "a re-run on a reviewed head spent tokens"
    );

    let state = gh.state.lock().unwrap();
    assert_eq!(state.review_posts.len(), 1, "a re-run on the same head posted another review");
    assert_eq!(state.comments.len(), 1, "exactly one summary comment after two runs");
    assert_eq!((state.comment_posts, state.comment_patches), (1, 0), "the re-run leaves the summary as it is");
    let review = &state.review_posts[0];
    assert_eq!(review["commit_id"], "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(review["event"], "COMMENT");
    assert_comments_anchor(&diff, review);

    let comments = review["comments"].as_array().unwrap();
    let at = |path: &str, line: u64| comments.iter().find(|c| c["path"] == path && c["line"] == line);
    assert!(at("crates/core/app.rs", 1060).is_some(), "valid finding not inline: {comments:#?}");
    let ranged = at("crates/matcher/src/lib.rs", 625).expect("multi-line finding inline");
    assert_eq!(ranged["start_line"], 620);
    assert!(ranged["body"].as_str().unwrap().contains("```suggestion"), "suggestion kept for an exact range");
    let across = at("crates/matcher/src/lib.rs", 660).expect("range across hunks placed on its last line");
    assert!(across.get("start_line").is_none(), "start_line from another hunk was posted");
    let left = at("crates/printer/src/json.rs", 7).expect("LEFT finding inline");
    assert_eq!(left["side"], "LEFT");

    // Nothing lost: the two unanchorable findings are in the review body.
    let body = review["body"].as_str().unwrap();
    assert!(body.contains("Line outside the diff") && body.contains("Unknown path"), "{body}");
    assert!(body.contains("<!-- agentctl:review:v1 sha=ec26c3e57ca3a959ca5aad62de7213c562f8c821 -->"));
    let summary = state.comments[0]["body"].as_str().unwrap();
    assert!(summary.contains("agentctl review summary") && summary.contains("agentctl:summary:v1"), "{summary}");
    drop(state);

    // Outputs parse and hold the counts of the first run: the model's six findings plus the
    // builtin AC004 hits on the two TODOs the diff adds (crates/searcher/src/sink.rs 411, 417).
    let outputs = parse_github_output(&first.outputs);
    assert_eq!(outputs["findings"], "8", "{outputs:?}");
    assert_eq!(outputs["high"], "1");
    assert_eq!(outputs["medium"], "2");
    assert_eq!(outputs["low"], "2");
    assert_eq!(outputs["info"], "3");
    assert_eq!(outputs["critical"], "0");
    assert_eq!(outputs["verdict"], "pass");
    assert!(outputs["review-url"].starts_with("https://github.test/pull/review/"));
    assert!(outputs["tokens-in"].parse::<u64>().unwrap() > 0);
    assert!(outputs["cost-usd"].parse::<f64>().unwrap() > 0.0, "{outputs:?}");
    assert!(first.summary.contains("agentctl review summary"));
    let skipped = parse_github_output(&second.outputs);
    assert_eq!(skipped["verdict"], "skipped");
    assert_eq!(skipped["review-url"], outputs["review-url"], "the re-run points at the existing review");
    // Secrets were masked before use.
    assert!(first.stderr.contains("::add-mask::ghs_fakeinstallationtoken"), "{}", first.stderr);
}

/// The medium diff without its `crates/core/app.rs` section: what GitHub anchors against after
/// the head moved under the review.
fn diff_without_app_rs(diff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(diff.to_vec()).unwrap();
    let start = text.find("diff --git a/crates/core/app.rs").unwrap();
    let end = start + 1 + text[start + 1..].find("diff --git ").unwrap();
    format!("{}{}", &text[..start], &text[end..]).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_for_the_batch_moves_the_bad_comment_to_the_body_and_posts_once() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let moved = diff_without_app_rs(&diff);
    let openai = fake_openai(model_answer(), Duration::ZERO).await;
    // GitHub's diff for the head no longer has app.rs: it refuses comments there with 422 and
    // serves the new diff when asked again; the first fetch still returns the old one.
    let gh = FakeGitHub::start(OWNER, REPO, PR, moved.clone(), Some(config_for(&openai.uri(), ""))).await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(format!("{API_PREFIX}/repos/{OWNER}/{REPO}/pulls/{PR}")))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_bytes(diff.clone()))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&gh.server)
        .await;
    let oracle = commentable(&moved).into_iter().map(|(k, v)| (k, v.into_keys().collect::<BTreeSet<u32>>())).collect();
    gh.state.lock().unwrap().commentable = Some(oracle);

    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    let run = run_review(&gh, &event, "pull_request", dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let state = gh.state.lock().unwrap();
    assert_eq!(state.reviews.len(), 1, "exactly one review created");
    assert_eq!(state.review_posts.len(), 2, "one refused POST, one accepted");
    let accepted = state.review_posts.last().unwrap();
    let comments = accepted["comments"].as_array().unwrap();
    assert!(!comments.iter().any(|c| c["path"] == "crates/core/app.rs"), "bad comment still inline");
    assert_eq!(
        comments.len(),
        state.review_posts[0]["comments"].as_array().unwrap().len() - 1,
        "only the bad one moved"
    );
    assert!(accepted["body"].as_str().unwrap().contains("Flag count can overflow"), "bad comment not in the body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_that_cannot_be_isolated_posts_everything_in_the_body_once() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let openai = fake_openai(model_answer(), Duration::ZERO).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff.clone(), Some(config_for(&openai.uri(), ""))).await;
    // Refused although GitHub's diff shows the line: nothing tells which comment is bad.
    gh.state.lock().unwrap().refuse.insert(("crates/core/app.rs".into(), "RIGHT".into(), 1060));
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    let run = run_review(&gh, &event, "pull_request", dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let state = gh.state.lock().unwrap();
    assert_eq!(state.reviews.len(), 1, "exactly one review created");
    let accepted = state.review_posts.last().unwrap();
    assert!(accepted["comments"].as_array().unwrap().is_empty());
    let body = accepted["body"].as_str().unwrap();
    for title in ["Flag count can overflow", "Range in one hunk", "Removed import", "Unknown path"] {
        assert!(body.contains(title), "{title} lost: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_secret_never_leaves_and_the_builtin_rule_reports_it() {
    let Some(corpora) = corpora() else { return };
    // Built at run time so the repository never holds a token-shaped string.
    let secret = format!("ghp_{}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8");
    let mut diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let planted = format!(
        "diff --git a/src/settings.rs b/src/settings.rs\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/src/settings.rs\n@@ -0,0 +1,3 @@\n+// settings\n+const TOKEN: &str = \"{secret}\";\n+fn main() {{}}\n"
    );
    diff.extend_from_slice(planted.as_bytes());
    let answer = json!({"summary": format!("I saw the token {secret} in settings.rs"), "findings": [
        {"path": "src/settings.rs", "line": 2, "severity": "critical", "category": "security",
         "title": "Hard-coded token", "body": format!("Remove `{secret}` now.")}
    ]});
    let openai = fake_openai(answer, Duration::ZERO).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff.clone(), Some(config_for(&openai.uri(), ""))).await;
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    let sarif = dir.path().join("out.sarif");
    let run = run_review(
        &gh,
        &event,
        "pull_request",
        dir.path(),
        &["--sarif", sarif.to_str().unwrap(), "--format", "json"],
        &[],
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);

    let provider_bodies: String = openai
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(!provider_bodies.is_empty());
    let sarif_text = std::fs::read_to_string(&sarif).unwrap();
    for (channel, text) in [
        ("provider request", provider_bodies.as_str()),
        ("GitHub request", &gh.all_bodies().await),
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("GITHUB_OUTPUT", &run.outputs),
        ("job summary", &run.summary),
        ("SARIF", &sarif_text),
    ] {
        assert!(!text.contains(&secret), "secret leaked through {channel}");
        assert!(!text.contains(&secret[4..]), "secret body leaked through {channel}");
    }
    assert!(provider_bodies.contains("[REDACTED]"), "the diff line reached the model redacted");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let rule_hit = report["findings"].as_array().unwrap().iter().any(|f| {
        f["origin"]["kind"] == "rule"
            && f["origin"]["id"] == "AC001"
            && f["path"] == "src/settings.rs"
            && f["line"] == 2
    });
    assert!(rule_hit, "builtin AC001 did not report the token: {}", report["findings"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronize_reviews_only_what_changed_since_the_recorded_sha() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let openai = fake_openai(json!({"summary": "ok", "findings": []}), Duration::ZERO).await;
    let payload: Value = serde_json::from_slice(
        &std::fs::read(corpora.join("webhooks/examples/pull_request/synchronize.payload.json")).unwrap(),
    )
    .unwrap();
    let (owner, repo) = payload["repository"]["full_name"].as_str().unwrap().split_once('/').unwrap();
    let number = payload["number"].as_u64().unwrap();
    let head = payload["pull_request"]["head"]["sha"].as_str().unwrap().to_string();
    let gh = FakeGitHub::start(owner, repo, number, diff.clone(), Some(config_for(&openai.uri(), ""))).await;
    let prev = "0123456789abcdef0123456789abcdef01234567";
    gh.state.lock().unwrap().comments.push(json!({
        "id": 77, "html_url": "https://github.test/c/77", "user": bot(),
        "body": format!("## agentctl review summary\n<!-- agentctl:summary:v1 sha={prev} -->")
    }));
    // Since `prev`, only crates/core/app.rs changed.
    let since = "diff --git a/crates/core/app.rs b/crates/core/app.rs\nindex 1..2 100644\n--- a/crates/core/app.rs\n+++ b/crates/core/app.rs\n@@ -1060,1 +1060,1 @@\n-old\n+new\n";
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(format!("{API_PREFIX}/repos/{owner}/{repo}/compare/{prev}...{head}")))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(since))
        .expect(1)
        .mount(&gh.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/synchronize.payload.json");
    let run = run_review(&gh, &event, "pull_request", dir.path(), &["--format", "json"], &[]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["incremental_from"], prev);
    assert_eq!(report["files_reviewed"], json!(["crates/core/app.rs"]));
    let prompts: String = openai
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(prompts.contains("crates/core/app.rs") && !prompts.contains("crates/printer/src/json.rs"));
    let state = gh.state.lock().unwrap();
    assert_eq!(state.comments.len(), 1, "the summary was updated, not duplicated");
    assert!(state.comments[0]["body"].as_str().unwrap().contains(&format!("sha={head}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_three_violations_exits_2_before_any_request() {
    let Some(corpora) = corpora() else { return };
    let openai = fake_openai(json!({"summary": "", "findings": []}), Duration::ZERO).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, vec![], None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "agentctl.yml",
        format!("provider: main\nproviders:\n  main:\n    kind: gpt\n    base_url: {}\nreview:\n  max_inline_comments: -1\n  fail_on: sometimes\n", openai.uri()),
    );
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    let run = run_review(&gh, &event, "pull_request", dir.path(), &["--config", config.to_str().unwrap()], &[]);
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    for pointer in ["/providers/main/kind", "/review/max_inline_comments", "/review/fail_on"] {
        assert!(run.stderr.contains(pointer), "{pointer} missing from: {}", run.stderr);
    }
    assert!(gh.requests().await.is_empty(), "GitHub was called: {:?}", gh.requests().await);
    assert!(openai.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_non_json_payload_exits_2_before_any_request() {
    let Some(corpora) = corpora() else { return };
    let gh = FakeGitHub::start(OWNER, REPO, PR, vec![], None).await;
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(corpora.join("webhooks/examples/pull_request/opened.payload.json")).unwrap();
    let truncated = write(dir.path(), "truncated.json", &full[..full.len() / 3]);
    let garbage = write(dir.path(), "garbage.json", "HTTP/1.1 502 Bad Gateway\n");
    for (event, expect) in [(&truncated, "truncated.json"), (&garbage, "garbage.json")] {
        let run = run_review(&gh, event, "pull_request", dir.path(), &[], &[]);
        assert_eq!(run.code, 2, "stderr: {}", run.stderr);
        assert!(run.stderr.contains(expect), "error does not name the file: {}", run.stderr);
    }
    assert!(gh.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_api_key_is_an_auth_error_naming_the_variable() {
    let Some(corpora) = corpora() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yml", "provider: main\nproviders:\n  main:\n    kind: openai\n    model: gpt-4o-mini\n    api_key_env: MY_OPENAI_KEY\n");
    let out = agentctl()
        .args(["review", "--dry-run", "--config", config.to_str().unwrap(), "--diff"])
        .arg(corpora.join("diffs/01-tiny.ripgrep-fc3dd04b.diff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MY_OPENAI_KEY"));
}

/// Rows `(path, side, number)` of the annotated diffs the provider received: a `## path` header
/// starts a file; each row is `{old:>5} {new:>5} {marker} {text}`.
fn rows_sent(prompts: &[String]) -> BTreeSet<(String, char, u32)> {
    let mut out = BTreeSet::new();
    for p in prompts {
        let mut path = String::new();
        for line in p.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                path = h.split(" (").next().unwrap().to_string();
                continue;
            }
            if line.len() < 14 || !line.is_char_boundary(11) || !line.is_char_boundary(14) {
                continue;
            }
            let (old, new, marker) = (line[..5].trim(), line[6..11].trim(), &line[11..14]);
            match marker {
                " + " => out.extend(new.parse().ok().map(|n| (path.clone(), '+', n))),
                " - " => out.extend(old.parse().ok().map(|n| (path.clone(), '-', n))),
                _ => {}
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_large_diff_every_line_is_sent_or_listed_and_reviewed_partly_not_reviewed_add_up() {
    let Some(corpora) = corpora() else { return };
    let diff_path = corpora.join("diffs/03-large.ripgrep-13.0.0..14.0.0.diff");
    let diff = agentctl::diff::parse(&std::fs::read(&diff_path).unwrap());
    let openai = fake_openai(json!({"summary": "ok", "findings": []}), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // A budget below the diff's size, so some files must be listed as not reviewed.
    let config = write(dir.path(), "c.yml", config_for(&openai.uri(), "  max_total_tokens: 150000\n"));
    let out = agentctl()
        .args(["review", "--dry-run", "--format", "json", "--config", config.to_str().unwrap(), "--diff"])
        .arg(&diff_path)
        .env("OPENAI_API_KEY", "sk-test-FAKEkey0123456789abcdefXYZ")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths = |key: &str| -> BTreeSet<String> {
        report[key].as_array().unwrap().iter().map(|n| n["path"].as_str().unwrap().to_string()).collect()
    };
    // Reviewed, partly reviewed and not reviewed are disjoint and add up to the diff's files
    // (regression: "Reviewed: 100000 file(s)" counted files that were over the budget).
    let reviewed: BTreeSet<String> =
        report["files_reviewed"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let (partly, not_at_all) = (paths("partly_reviewed"), paths("not_reviewed"));
    assert!(reviewed.is_disjoint(&partly) && reviewed.is_disjoint(&not_at_all) && partly.is_disjoint(&not_at_all));
    assert_eq!(reviewed.len() + partly.len() + not_at_all.len(), diff.files.len());
    assert!(!partly.is_empty(), "a budget this size cuts at least one file in two");
    // Lines of partly reviewed files may be missing from the prompts too.
    let not_reviewed: BTreeSet<String> = partly.union(&not_at_all).cloned().collect();
    assert!(
        report["not_reviewed"].as_array().unwrap().iter().any(|n| n["reason"].as_str().unwrap().contains("budget")),
        "the budget was meant to leave files out: {}",
        report["not_reviewed"]
    );
    let prompts: Vec<String> = openai
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    assert_eq!(prompts.len() as u64, report["chunks"].as_u64().unwrap());
    let sent = rows_sent(&prompts);
    let (mut checked, mut listed) = (0, 0);
    for f in &diff.files {
        if not_reviewed.contains(f.path()) {
            listed += 1;
            continue;
        }
        for h in &f.hunks {
            for l in &h.lines {
                let key = match l.kind {
                    agentctl::diff::LineKind::Added => (f.path().to_string(), '+', l.new_line.unwrap()),
                    agentctl::diff::LineKind::Removed => (f.path().to_string(), '-', l.old_line.unwrap()),
                    agentctl::diff::LineKind::Context => continue,
                };
                assert!(sent.contains(&key), "{key:?} neither sent nor listed as not reviewed");
                checked += 1;
            }
        }
    }
    assert!(checked > 5_000 && listed > 10, "checked {checked} lines, {listed} files listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_prompt_quoting_a_bad_answer_is_redacted_too() {
    // Built at run time so the repository never holds a token-shaped string.
    let key = format!("sk-proj-{}", "Rp9aQw3ErTy6UiOp1AsDf4GhJk7Lz");
    let server = wiremock::MockServer::start().await;
    let chat = |content: String| {
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    };
    // First answer: not valid JSON, and it quotes the key; the repair prompt will quote it back.
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(chat(format!("{{ broken, key {key}"))))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(chat(json!({"summary": "ok", "findings": []}).to_string())),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yml", config_for(&server.uri(), ""));
    let out = agentctl()
        .args(["review", "--dry-run", "--diff", "-", "--config", config.to_str().unwrap()])
        .env("OPENAI_API_KEY", &key)
        .write_stdin("diff --git a/a.rs b/a.rs\n--- a/a.rs\n+++ b/a.rs\n@@ -1 +1,2 @@\n a\n+b\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one request and one repair");
    let repair = String::from_utf8_lossy(&requests[1].body);
    assert!(repair.contains("broken"), "the repair quotes the previous answer: {repair}");
    assert!(!repair.contains(&key[8..]), "the key went back out in the repair prompt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_typed_by_a_user_neither_suppress_nor_narrow_the_review() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let openai = fake_openai(model_answer(), Duration::ZERO).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff.clone(), Some(config_for(&openai.uri(), ""))).await;
    let head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    let author = json!({"login": "pr-author", "type": "User"});
    {
        let mut s = gh.state.lock().unwrap();
        // A PR author pretends the head was reviewed, and plants a summary to be overwritten.
        s.reviews.push(json!({"id": 5, "body": format!("lgtm <!-- agentctl:review:v1 sha={head} -->"),
                              "html_url": "https://github.test/r/5", "user": author}));
        s.comments.push(json!({"id": 6, "html_url": "https://github.test/c/6", "user": author,
                               "body": "<!-- agentctl:summary:v1 sha=ééééééééé -->"}));
    }
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    let run = run_review(&gh, &event, "pull_request", dir.path(), &[], &[]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(!openai.received_requests().await.unwrap().is_empty(), "the fake review marker suppressed the model");
    let state = gh.state.lock().unwrap();
    assert_eq!(state.review_posts.len(), 1, "the review was posted");
    assert_eq!((state.comment_posts, state.comment_patches), (1, 0), "the user's comment was not taken for ours");
}

/// Regression: every review slept `write_delay` between its review POST and its summary POST.
/// With a 60 s spacing, a run of two writes must not wait at all (a functional bound: any
/// spacing sleep would exceed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_with_two_writes_does_not_wait_for_write_delay() {
    let Some(corpora) = corpora() else { return };
    let diff = std::fs::read(corpora.join(MEDIUM)).unwrap();
    let openai = fake_openai(model_answer(), Duration::ZERO).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff, Some(config_for(&openai.uri(), ""))).await;
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    let started = std::time::Instant::now();
    let run = run_review(&gh, &event, "pull_request", dir.path(), &[], &[("AGENTCTL_WRITE_DELAY", "60")]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let state = gh.state.lock().unwrap();
    assert_eq!((state.review_posts.len(), state.comment_posts), (1, 1), "one review and one summary posted");
    assert!(took < Duration::from_secs(30), "the run took {took:?}: a write waited for write_delay");
}

/// Regression: `AGENTCTL_WRITE_DELAY=1e300` panicked in `Duration::from_secs_f64` and
/// `100000` slept for a day between writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_delay_env_over_the_cap_or_not_finite_exits_2_naming_the_variable() {
    let Some(corpora) = corpora() else { return };
    let gh = FakeGitHub::start(OWNER, REPO, PR, vec![], None).await;
    let dir = tempfile::tempdir().unwrap();
    let event = corpora.join("webhooks/examples/pull_request/opened.payload.json");
    for bad in ["1e300", "100000", "nan", "-1"] {
        let run = run_review(&gh, &event, "pull_request", dir.path(), &[], &[("AGENTCTL_WRITE_DELAY", bad)]);
        assert_eq!(run.code, 2, "{bad}: stderr: {}", run.stderr);
        assert!(run.stderr.contains("AGENTCTL_WRITE_DELAY") && run.stderr.contains("help:"), "{bad}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{bad}: {}", run.stderr);
    }
    assert!(gh.requests().await.is_empty(), "GitHub was called: {:?}", gh.requests().await);
}
