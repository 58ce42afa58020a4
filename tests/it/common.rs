#![allow(dead_code)]
//! Shared helpers for the integration tests: corpora, a scrubbed `agentctl` command, a stateful
//! GitHub fake and an OpenAI-compatible fake on loopback (wiremock), and an independent oracle
//! for which diff lines GitHub accepts comments on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The corpora folder, or `None` (skip) on a bare clone; panics under `CI=true`.
pub(crate) fn corpora() -> Option<PathBuf> {
    let dir = std::env::var_os("AGENTCTL_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("corpora folder {} is missing (required under CI=true)", dir.display());
    }
    eprintln!("skipping: corpora folder {} not found (set AGENTCTL_CORPORA)", dir.display());
    None
}

/// `agentctl` with an environment scrubbed of `GITHUB_*`, `GH_*`, `RUNNER_*`, `ACTIONS_*`, `CI`
/// and provider keys (zizmor's test-builder habit), so the host never leaks into a test.
pub(crate) fn agentctl() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("agentctl").expect("binary built");
    cmd.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("AGENTCTL_WRITE_DELAY", "0");
    // No test asks the host's EC2 or GCE metadata server for credentials (a CI machine may be
    // a cloud instance); the tests of those paths point them at a fake.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.env("NO_GCE_CHECK", "true");
    // A state store of its own per invocation: a breaker opened by one test must not leak into
    // another (tests that need a shared store set AGENTCTL_STATE again).
    cmd.env("AGENTCTL_STATE", unique_state_path());
    cmd
}

/// A name no other call in this test process returns (`PID-N`), for temp files.
pub(crate) fn unique_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A fresh state database path under the system temp folder.
pub(crate) fn unique_state_path() -> PathBuf {
    std::env::temp_dir().join(format!("agentctl-test-{}", unique_name())).join("state.db")
}

/// A GitHub fake holding issue comments and reviews in memory, serving one PR's diff and the
/// config file at the base sha. Every request it does not know fails the test (catch-all).
pub(crate) struct FakeGitHub {
    pub server: MockServer,
    pub state: Arc<Mutex<GhState>>,
    pub owner: String,
    pub repo: String,
    pub pr: u64,
}

/// What the GitHub fake has seen and holds.
#[derive(Default)]
pub(crate) struct GhState {
    pub comments: Vec<Value>,
    pub reviews: Vec<Value>,
    /// Bodies of every POST to /reviews (accepted or refused).
    pub review_posts: Vec<Value>,
    pub comment_posts: usize,
    pub comment_patches: usize,
    pub next_id: u64,
    /// (path, side, line) the fake refuses with 422, like GitHub for a line not in its diff.
    pub refuse: BTreeSet<(String, String, u32)>,
    /// Commentable lines per (path, side): when set, comments outside them get 422.
    pub commentable: Option<BTreeMap<(String, String), BTreeSet<u32>>>,
}

/// The author GitHub reports for what the workflow token posts.
pub(crate) fn bot() -> Value {
    json!({"login": "github-actions[bot]", "type": "Bot"})
}

/// Prefix the fake serves under, to prove GHES path prefixes are kept.
pub(crate) const API_PREFIX: &str = "/api/v3";

struct ListComments(Arc<Mutex<GhState>>);
impl Respond for ListComments {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(Value::Array(self.0.lock().unwrap().comments.clone()))
    }
}

struct CreateComment(Arc<Mutex<GhState>>);
impl Respond for CreateComment {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let mut s = self.0.lock().unwrap();
        s.next_id += 1;
        s.comment_posts += 1;
        let c = json!({"id": s.next_id, "body": body["body"], "html_url": format!("https://github.test/c/{}", s.next_id),
                       "user": bot()});
        s.comments.push(c.clone());
        ResponseTemplate::new(201).set_body_json(c)
    }
}

struct UpdateComment(Arc<Mutex<GhState>>);
impl Respond for UpdateComment {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let mut s = self.0.lock().unwrap();
        s.comment_patches += 1;
        match s.comments.iter_mut().find(|c| c["id"] == id) {
            Some(c) => {
                c["body"] = body["body"].clone();
                ResponseTemplate::new(200).set_body_json(c.clone())
            }
            None => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        }
    }
}

struct ListReviews(Arc<Mutex<GhState>>);
impl Respond for ListReviews {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(Value::Array(self.0.lock().unwrap().reviews.clone()))
    }
}

struct CreateReview(Arc<Mutex<GhState>>);
impl Respond for CreateReview {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let mut s = self.0.lock().unwrap();
        s.review_posts.push(body.clone());
        for c in body["comments"].as_array().cloned().unwrap_or_default() {
            let key = (
                c["path"].as_str().unwrap_or("").to_string(),
                c["side"].as_str().unwrap_or("RIGHT").to_string(),
                c["line"].as_u64().unwrap_or(0) as u32,
            );
            let off_diff = s
                .commentable
                .as_ref()
                .is_some_and(|m| !m.get(&(key.0.clone(), key.1.clone())).is_some_and(|lines| lines.contains(&key.2)));
            if s.refuse.contains(&key) || off_diff {
                return ResponseTemplate::new(422).set_body_json(json!({
                    "message": "Unprocessable Entity",
                    "errors": ["Pull request review thread line must be part of the diff"],
                    "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request"
                }));
            }
        }
        s.next_id += 1;
        let r = json!({
            "id": s.next_id,
            "body": body["body"],
            "commit_id": body["commit_id"],
            "state": "COMMENTED",
            "user": bot(),
            "html_url": format!("https://github.test/pull/review/{}", s.next_id)
        });
        s.reviews.push(r.clone());
        ResponseTemplate::new(200).set_body_json(r)
    }
}

impl FakeGitHub {
    /// Starts the fake for `owner/repo#pr`, serving `diff` for the PR and `config` (if any) at
    /// `.github/agentctl.yml` for any ref.
    pub(crate) async fn start(owner: &str, repo: &str, pr: u64, diff: Vec<u8>, config: Option<String>) -> FakeGitHub {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(GhState { next_id: 1000, ..Default::default() }));
        let base = format!("{API_PREFIX}/repos/{owner}/{repo}");
        Mock::given(method("GET"))
            .and(path(format!("{base}/pulls/{pr}")))
            .and(wiremock::matchers::header("accept", "application/vnd.github.diff"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(diff))
            .mount(&server)
            .await;
        let contents = match config {
            Some(text) => ResponseTemplate::new(200).set_body_string(text),
            None => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        };
        Mock::given(method("GET"))
            .and(path(format!("{base}/contents/.github/agentctl.yml")))
            .respond_with(contents)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{base}/issues/{pr}/comments")))
            .respond_with(ListComments(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{base}/issues/{pr}/comments")))
            .respond_with(CreateComment(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path_regex(format!(r"^{base}/issues/comments/\d+$")))
            .respond_with(UpdateComment(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{base}/pulls/{pr}/reviews")))
            .respond_with(ListReviews(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{base}/pulls/{pr}/reviews")))
            .respond_with(CreateReview(state.clone()))
            .mount(&server)
            .await;
        // Anything else is a bug in agentctl (or in this fake).
        mount_catch_all(&server, "GitHub").await;
        FakeGitHub { server, state, owner: owner.into(), repo: repo.into(), pr }
    }

    /// `GET /pulls/{pr}` (JSON media type) answering [`pr_json`]; mount it, with `.expect(n)`
    /// first when the count matters.
    pub(crate) fn pull_mock(&self) -> Mock {
        Mock::given(method("GET"))
            .and(path(format!("{API_PREFIX}/repos/{}/{}/pulls/{}", self.owner, self.repo, self.pr)))
            .and(wiremock::matchers::header("accept", "application/vnd.github+json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(pr_json(self.pr)))
    }

    /// `GITHUB_API_URL` for agentctl: the fake's address plus the GHES-style prefix.
    pub(crate) fn api_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.uri())
    }

    /// Requests received so far (method and path).
    pub(crate) async fn requests(&self) -> Vec<(String, String)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| (r.method.to_string(), r.url.path().to_string()))
            .collect()
    }

    /// Every request body received, as text (for leak checks).
    pub(crate) async fn all_bodies(&self) -> String {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An OpenAI-compatible fake answering every chat completion with `answer` (a review output
/// object), after an optional delay, recording request bodies.
pub(crate) async fn fake_openai(answer: Value, delay: std::time::Duration) -> MockServer {
    let server = MockServer::start().await;
    let body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 150, "total_tokens": 1350,
                  "prompt_tokens_details": {"cached_tokens": 200}}
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body).set_delay(delay))
        .mount(&server)
        .await;
    mount_catch_all(&server, "provider").await;
    server
}

/// Mounts the lowest-priority catch-all every fake has: any request no other mock claims gets
/// a 599 and fails the test when the server is dropped (`expect(0)`). `what` names the fake
/// in the failure ("GitHub", "provider").
pub(crate) async fn mount_catch_all(server: &MockServer, what: &str) {
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(599).set_body_string("unexpected request"))
        .with_priority(u8::MAX)
        .expect(0)
        .named(format!("catch-all: unexpected {what} request"))
        .mount(server)
        .await;
}

/// A fresh (unpooled) mock server with [`mount_catch_all`]. Unpooled: a test that leaves a
/// delayed response in flight must not hand that server to the next test.
pub(crate) async fn strict_server() -> MockServer {
    let server = MockServer::builder().start().await;
    mount_catch_all(&server, "provider").await;
    server
}

/// A config pointing the `main` provider at `openai_uri`.
pub(crate) fn config_for(openai_uri: &str, extra_review: &str) -> String {
    format!(
        "provider: main\nproviders:\n  main:\n    kind: openai\n    model: gpt-4o-mini\n    base_url: {openai_uri}/v1\n    api_key_env: OPENAI_API_KEY\n    max_retries: 0\nreview:\n  max_concurrency: 4\n{extra_review}"
    )
}

/// Independent oracle: the lines GitHub accepts comments on, per (path, side), and the hunk
/// index of each, computed straight from the diff text (not with agentctl's parser).
pub(crate) fn commentable(diff: &[u8]) -> BTreeMap<(String, String), BTreeMap<u32, usize>> {
    let text = String::from_utf8_lossy(diff);
    let mut out: BTreeMap<(String, String), BTreeMap<u32, usize>> = BTreeMap::new();
    let mut path = String::new();
    let (mut old, mut new, mut hunk) = (0u32, 0u32, 0usize);
    let (mut old_left, mut new_left) = (0u32, 0u32);
    for line in text.split('\n') {
        if old_left == 0 && new_left == 0 {
            if let Some(p) = line.strip_prefix("+++ ") {
                path = p.strip_prefix("b/").unwrap_or(p).trim_end_matches('\r').to_string();
                hunk = 0;
                continue;
            }
            if line.starts_with("diff --git ") {
                path.clear();
                continue;
            }
            if let Some(rest) = line.strip_prefix("@@ -") {
                let (o, rest) = rest.split_once(" +").unwrap();
                let n = rest.split_once(" @@").unwrap().0;
                let parse = |s: &str| {
                    let mut it = s.split(',');
                    let a: u32 = it.next().unwrap().parse().unwrap();
                    let b: u32 = it.next().map(|x| x.parse().unwrap()).unwrap_or(1);
                    (a, b)
                };
                (old, old_left) = parse(o);
                (new, new_left) = parse(n);
                hunk += 1;
                continue;
            }
            continue;
        }
        let right = (path.clone(), "RIGHT".to_string());
        let left = (path.clone(), "LEFT".to_string());
        match line.as_bytes().first() {
            Some(b'+') => {
                out.entry(right).or_default().insert(new, hunk);
                new += 1;
                new_left = new_left.saturating_sub(1);
            }
            Some(b'-') => {
                out.entry(left).or_default().insert(old, hunk);
                old += 1;
                old_left = old_left.saturating_sub(1);
            }
            Some(b'\\') => {}
            _ => {
                out.entry(right).or_default().insert(new, hunk);
                out.entry(left).or_default().insert(old, hunk);
                new += 1;
                old += 1;
                new_left = new_left.saturating_sub(1);
                old_left = old_left.saturating_sub(1);
            }
        }
    }
    out
}

/// Parses a `GITHUB_OUTPUT` file written in the heredoc form into name → value.
pub(crate) fn parse_github_output(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = vec![];
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// Writes `value` to a file in `dir` and returns its path.
pub(crate) fn write(dir: &Path, name: &str, value: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    p
}

/// A `GET /pulls/{n}` answer for PR `number`: head `1111…`, base `2222…` (40 hex digits each).
pub(crate) fn pr_json(number: u64) -> Value {
    json!({
        "number": number, "title": "Add a feature", "body": "Please review.", "draft": false,
        "html_url": format!("https://github.test/pull/{number}"),
        "head": {"sha": "1111111111111111111111111111111111111111", "ref": "feature"},
        "base": {"sha": "2222222222222222222222222222222222222222", "ref": "main"}
    })
}

/// Runs the agentctl binary with `args` on a pseudo-terminal (stdin and stdout a tty), through
/// `script -qec` from util-linux (in Debian's essential `bsdutils`), with a scrubbed environment
/// plus `envs`. stdout is the terminal's transcript (stdout and stderr of agentctl, CRLF line
/// ends); the status is agentctl's (`-e`).
pub(crate) fn in_terminal(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let bin = assert_cmd::cargo::cargo_bin("agentctl");
    let mut line = quote(&bin.to_string_lossy());
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut cmd = std::process::Command::new("script");
    cmd.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("SHELL", "/bin/sh").env("AGENTCTL_STATE", unique_state_path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(["-qec", &line, "/dev/null"]).stdin(std::process::Stdio::null());
    cmd.output().expect("`script` (util-linux) runs")
}

/// A one-file diff adding three lines, the second dividing by zero (line 3 of the new file).
pub(crate) const ONE_FILE_DIFF: &str = "diff --git a/src/lib.rs b/src/lib.rs\nindex 1111111..2222222 100644\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,5 @@\n fn a() {}\n+fn b(x: u32) -> u32 {\n+    x / 0\n+}\n fn c() {}\n";

/// A review answer (the `review-output` schema) with one finding on [`ONE_FILE_DIFF`]'s line 3.
pub(crate) fn division_answer() -> Value {
    serde_json::json!({"summary": "Adds b().", "findings": [
        {"path": "src/lib.rs", "line": 3, "side": "RIGHT", "severity": "high", "category": "bug",
         "title": "Division by zero", "body": "`x / 0` always panics."}
    ]})
}

/// Runs `review --dry-run --diff - --format json --config FILE` over [`ONE_FILE_DIFF`] with
/// `config` and `env`: (exit code, stdout, stderr).
pub(crate) fn dry_run_review(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agentctl.yml", config);
    let mut cmd = agentctl();
    cmd.args(["review", "--dry-run", "--diff", "-", "--format", "json", "--config", cfg.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.write_stdin(ONE_FILE_DIFF).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `--format json` report from stdout, without the workflow-command lines (`::add-mask::`)
/// that come first in Actions.
pub(crate) fn report_of(stdout: &str) -> Value {
    let json: String = stdout.lines().filter(|l| !l.starts_with("::")).collect::<Vec<_>>().join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A fake of the runner's OIDC token endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`): one `GET
/// /_apis/token?api-version=2.0&audience=AUDIENCE` with `request_token` as bearer answers
/// `{"value": jwt}`. Returns the server and the request URL to set.
pub(crate) async fn fake_github_oidc(request_token: &str, audience: &str, jwt: &str) -> (MockServer, String) {
    use wiremock::matchers::{header, query_param};
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_apis/token"))
        .and(query_param("api-version", "2.0"))
        .and(query_param("audience", audience))
        .and(header("authorization", format!("Bearer {request_token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": jwt})))
        .expect(1)
        .mount(&github)
        .await;
    mount_catch_all(&github, "OIDC").await;
    let url = format!("{}/_apis/token?api-version=2.0", github.uri());
    (github, url)
}

/// Asserts that every secret was handed to the runner to mask (an `::add-mask::` line in one of
/// `texts`) and appears nowhere else ([`assert_clear_of`]).
pub(crate) fn assert_masked_and_clear(texts: &[&str], secrets: &[&str]) {
    for secret in secrets {
        let mask = format!("::add-mask::{secret}");
        assert!(texts.iter().any(|t| t.lines().any(|l| l == mask)), "{secret} not masked for the runner");
    }
    assert_clear_of(texts, secrets);
}

/// Asserts that no secret appears in `texts` outside the `::add-mask::` lines that hand it to
/// the runner to mask.
pub(crate) fn assert_clear_of(texts: &[&str], secrets: &[&str]) {
    for text in texts {
        let clear: String = text.lines().filter(|l| !l.starts_with("::add-mask::")).collect::<Vec<_>>().join("\n");
        for secret in secrets {
            assert!(!clear.contains(secret), "a credential leaked: {secret} in\n{clear}");
        }
    }
}
