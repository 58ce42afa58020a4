//! `token-refresh` against a GitHub fake that verifies the app JWT with the test key's public
//! half: installation lookup, scoped tokens, runner credentials, reuse, revoke, sinks, leaks
//! and bad input.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{agentctl, in_terminal, parse_github_output, strict_server, API_PREFIX};

const APP_ID: &str = "Iv1.testclient";
const TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
/// GitHub's answer to a JWT it cannot verify.
const BAD_JWT_BODY: &str = r#"{"message":"A JSON web token could not be decoded","documentation_url":"https://docs.github.com/rest","status":"401"}"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokens").join(name)
}

fn github_fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github").join(name);
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn rfc3339(epoch: i64) -> String {
    // Days-from-civil inverse (Howard Hinnant), enough for a test timestamp.
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Answers `ok` when the request carries a JWT signed by the test key (RS256, `iss` the test
/// app, `iat` about a minute ago, `exp` at most ten minutes ahead), else GitHub's 401. Records
/// every verified claim set and request body.
struct JwtGuard {
    ok: ResponseTemplate,
    claims: Arc<Mutex<Vec<Value>>>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Respond for JwtGuard {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let jwt = auth.strip_prefix("Bearer ").unwrap_or("");
        let public = std::fs::read(fixture("app-key.pub.pem")).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[APP_ID]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        match jsonwebtoken::decode::<Value>(
            jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
            &validation,
        ) {
            Ok(data) => {
                let t = now();
                let iat = data.claims["iat"].as_i64().unwrap();
                let exp = data.claims["exp"].as_i64().unwrap();
                // The gap between signing and this check is the process start-up and one request.
                assert!((t - 75..=t - 58).contains(&iat), "iat {iat} not about now-60 ({t})");
                assert!(exp <= t + 600 && exp > t, "exp {exp} outside (now, now+600]");
                self.claims.lock().unwrap().push(data.claims);
                if !req.body.is_empty() {
                    self.bodies.lock().unwrap().push(serde_json::from_slice(&req.body).unwrap());
                }
                self.ok.clone()
            }
            Err(_) => ResponseTemplate::new(401).set_body_raw(BAD_JWT_BODY, "application/json"),
        }
    }
}

/// A strict fake with JWT-guarded app endpoints.
struct AppFake {
    server: MockServer,
    claims: Arc<Mutex<Vec<Value>>>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl AppFake {
    async fn start() -> Self {
        AppFake { server: strict_server().await, claims: Default::default(), bodies: Default::default() }
    }

    fn guard(&self, ok: ResponseTemplate) -> JwtGuard {
        JwtGuard { ok, claims: self.claims.clone(), bodies: self.bodies.clone() }
    }

    /// `GET {tail}/installation` → `status` (200 with id 42, or 404).
    async fn installation(&self, tail: &str, found: bool) {
        let ok = if found {
            let mut body = github_fixture("apps.get-repo-installation.200.default.json");
            body["id"] = json!(42);
            ResponseTemplate::new(200).set_body_json(body)
        } else {
            ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))
        };
        Mock::given(method("GET"))
            .and(path(format!("{API_PREFIX}/{tail}/installation")))
            .respond_with(self.guard(ok))
            .mount(&self.server)
            .await;
    }

    /// `POST /app/installations/42/access_tokens` → a token living `life` seconds.
    async fn mint(&self, life: i64) {
        let mut body = github_fixture("apps.create-installation-access-token.201.default.json");
        body["expires_at"] = json!(rfc3339(now() + life));
        Mock::given(method("POST"))
            .and(path(format!("{API_PREFIX}/app/installations/42/access_tokens")))
            .respond_with(self.guard(ResponseTemplate::new(201).set_body_json(body)))
            .mount(&self.server)
            .await;
    }

    fn api_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.uri())
    }

    async fn request_count(&self) -> usize {
        self.server.received_requests().await.unwrap_or_default().len()
    }
}

/// A private folder (0700) for sinks.
fn private_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn app_cmd(fake: &AppFake, key: &Path) -> assert_cmd::Command {
    let mut cmd = agentctl();
    cmd.env("GITHUB_API_URL", fake.api_url())
        .env("AGENTCTL_APP_ID", APP_ID)
        .args(["token-refresh", "app", "--private-key-file"])
        .arg(key);
    cmd
}

/// Every file under `dir` other than `keep`, for leak checks.
fn other_files(dir: &Path, keep: &[&Path]) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if !keep.iter().any(|k| *k == p) {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn app_token_for_a_repository_goes_to_a_0600_file_and_a_step_output_without_leaking() {
    let fake = AppFake::start().await;
    fake.installation("repos/octo/hello", true).await;
    fake.mint(3600).await;
    let dir = private_dir();
    let file = dir.path().join("token");
    let gh_output = dir.path().join("github_output");
    let out = app_cmd(&fake, &fixture("app-key.pem"))
        .args(["--owner", "octo", "--repo", "hello", "--repositories", "hello,world"])
        .args(["--permission", "contents=write", "--permission", "issues=read"])
        .args(["--output-name", "token", "--file"])
        .arg(&file)
        .env("GITHUB_OUTPUT", &gh_output)
        .assert()
        .success()
        .get_output()
        .clone();

    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), TOKEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let meta_mode = std::fs::metadata(dir.path().join("token.meta.json")).unwrap().permissions().mode();
        assert_eq!(meta_mode & 0o777, 0o600);
    }
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.path().join("token.meta.json")).unwrap()).unwrap();
    assert_eq!(meta["installation_id"], 42);
    assert_eq!(meta["permissions"]["issues"], "write");
    assert!(meta["expires_at"].as_str().unwrap().ends_with('Z'));
    let outputs = parse_github_output(&std::fs::read_to_string(&gh_output).unwrap());
    assert_eq!(outputs.get("token").map(String::as_str), Some(TOKEN));

    // The scoped request body, and a JWT on both calls.
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(
        bodies,
        vec![json!({"repositories": ["hello", "world"], "permissions": {"contents": "write", "issues": "read"}})]
    );
    assert_eq!(fake.claims.lock().unwrap().len(), 2);
    assert_eq!(fake.request_count().await, 2);

    // Leaks: no token, no JWT, no key in stdout, stderr or any other file.
    let key = std::fs::read_to_string(fixture("app-key.pem")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    let requests = fake.server.received_requests().await.unwrap();
    let jwt = requests[0].headers.get("authorization").unwrap().to_str().unwrap().trim_start_matches("Bearer ");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let others = other_files(dir.path(), &[&file, &gh_output]);
    for (what, text) in [("stdout", &*stdout), ("stderr", &*stderr), ("other files", &others)] {
        assert!(!text.contains(TOKEN), "token in {what}");
        assert!(!text.contains(jwt), "JWT in {what}");
        assert!(!text.contains(key_line), "private key in {what}");
    }
    assert!(stderr.contains("installation 42"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_actions_the_token_is_masked_and_the_key_from_the_environment_works() {
    let fake = AppFake::start().await;
    fake.mint(3600).await;
    let dir = private_dir();
    let gh_output = dir.path().join("github_output");
    let key = std::fs::read_to_string(fixture("app-key.pem")).unwrap();
    let out = agentctl()
        .env("GITHUB_API_URL", fake.api_url())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &gh_output)
        .env("AGENTCTL_APP_ID", APP_ID)
        .env("AGENTCTL_APP_PRIVATE_KEY", &key)
        .args(["token-refresh", "app", "--installation-id", "42", "--output-name", "token"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("::add-mask::{TOKEN}")), "{stderr}");
    assert_eq!(parse_github_output(&std::fs::read_to_string(&gh_output).unwrap())["token"], TOKEN);
    // No lookup: the id was given.
    assert_eq!(fake.request_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_alone_tries_the_organization_then_the_user() {
    let fake = AppFake::start().await;
    fake.installation("orgs/solo", false).await;
    fake.installation("users/solo", true).await;
    fake.installation("orgs/acme", true).await;
    fake.mint(3600).await;
    for owner in ["solo", "acme"] {
        app_cmd(&fake, &fixture("app-key.pem"))
            .args(["--owner", owner, "--print"])
            .assert()
            .success()
            .stdout(format!("{TOKEN}\n"));
    }
    let paths: Vec<String> =
        fake.server.received_requests().await.unwrap().iter().map(|r| r.url.path().to_string()).collect();
    let p = |s: &str| format!("{API_PREFIX}/{s}");
    assert_eq!(
        paths,
        vec![
            p("orgs/solo/installation"),
            p("users/solo/installation"),
            p("app/installations/42/access_tokens"),
            p("orgs/acme/installation"),
            p("app/installations/42/access_tokens"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_from_the_wrong_key_gets_githubs_401_and_exit_4_naming_the_key_file() {
    let fake = AppFake::start().await;
    fake.installation("repos/octo/hello", true).await;
    let wrong = fixture("wrong-key.pem");
    let out = app_cmd(&fake, &wrong)
        .args(["--owner", "octo", "--repo", "hello", "--print"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("A JSON web token could not be decoded"), "{stderr}");
    assert!(stderr.contains(&format!("file {}", wrong.display())), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permission_the_app_lacks_is_githubs_422_and_exit_4() {
    let fake = AppFake::start().await;
    let body = json!({"message": "The permissions requested are not granted to this installation.",
                      "documentation_url": "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
                      "status": "422"});
    Mock::given(method("POST"))
        .and(path(format!("{API_PREFIX}/app/installations/42/access_tokens")))
        .respond_with(fake.guard(ResponseTemplate::new(422).set_body_json(body)))
        .mount(&fake.server)
        .await;
    let out = app_cmd(&fake, &fixture("app-key.pem"))
        .args(["--installation-id", "42", "--permission", "administration=write", "--print"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("The permissions requested are not granted to this installation."), "{stderr}");
    assert_eq!(fake.bodies.lock().unwrap()[0], json!({"permissions": {"administration": "write"}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_within_the_ttl_reuses_the_file_with_zero_api_calls_and_refreshes_after() {
    let fake = AppFake::start().await;
    fake.mint(3600).await;
    let dir = private_dir();
    let file = dir.path().join("token");
    let run = |min_ttl: &str| {
        app_cmd(&fake, &fixture("app-key.pem"))
            .args(["--installation-id", "42", "--min-ttl", min_ttl, "--file"])
            .arg(&file)
            .assert()
            .success();
    };
    run("600");
    assert_eq!(fake.request_count().await, 1);
    run("600");
    assert_eq!(fake.request_count().await, 1, "reuse within the TTL must not call GitHub");
    // A token with an hour left is too short for a 2-hour minimum: refreshed.
    run("7200");
    assert_eq!(fake.request_count().await, 2);
    // A different request (scoped) is never served from the file.
    app_cmd(&fake, &fixture("app-key.pem"))
        .args(["--installation-id", "42", "--repositories", "hello", "--file"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(fake.request_count().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_deletes_the_token_and_its_files() {
    let server = strict_server().await;
    Mock::given(method("DELETE"))
        .and(path(format!("{API_PREFIX}/installation/token")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let dir = private_dir();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("token.meta.json"), "{}").unwrap();
    let out = agentctl()
        .env("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri()))
        .args(["token-refresh", "revoke", "--file"])
        .arg(&file)
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(!file.exists() && !dir.path().join("token.meta.json").exists());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
}

/// A recorded request: path, JSON body (`Null` when empty), `Content-Type`.
type Seen = (String, Value, Option<String>);

/// Runner endpoints answer the corpus examples, recording requests; auth is GITHUB_TOKEN.
async fn runner_fake() -> (MockServer, Arc<Mutex<Vec<Seen>>>) {
    struct Record(Arc<Mutex<Vec<Seen>>>, Value);
    impl Respond for Record {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            assert_eq!(
                req.headers.get("authorization").unwrap().to_str().unwrap(),
                "Bearer ghs_workflowtoken000000000000000000000"
            );
            let body = if req.body.is_empty() { Value::Null } else { serde_json::from_slice(&req.body).unwrap() };
            let content_type = req.headers.get("content-type").map(|v| v.to_str().unwrap().to_string());
            self.0.lock().unwrap().push((req.url.path().to_string(), body, content_type));
            ResponseTemplate::new(201).set_body_json(self.1.clone())
        }
    }
    let server = strict_server().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    for (scope, tail) in [("repo", "repos/octo/hello"), ("org", "orgs/acme")] {
        for (kind, file) in [
            ("registration-token", format!("actions.create-registration-token-for-{scope}.201.default.json")),
            ("remove-token", format!("actions.create-remove-token-for-{scope}.201.default.json")),
            ("generate-jitconfig", format!("actions.generate-runner-jitconfig-for-{scope}.201.default.json")),
        ] {
            let mut body = github_fixture(&file);
            if body.get("expires_at").is_some() {
                body["expires_at"] = json!(rfc3339(now() + 3600));
                body["token"] = json!(format!("{}{}", body["token"].as_str().unwrap(), scope.to_uppercase()));
            }
            Mock::given(method("POST"))
                .and(path(format!("{API_PREFIX}/{tail}/actions/runners/{kind}")))
                .respond_with(Record(seen.clone(), body))
                .mount(&server)
                .await;
        }
    }
    (server, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_register_remove_and_jit_at_repo_and_org_scope() {
    let (server, seen) = runner_fake().await;
    let dir = private_dir();
    let run = |args: &[&str]| {
        let out = agentctl()
            .env("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri()))
            .env("GITHUB_TOKEN", "ghs_workflowtoken000000000000000000000")
            .args(["token-refresh", "runner", "--print"])
            .args(args)
            .assert()
            .success()
            .get_output()
            .clone();
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let repo = ["--owner", "octo", "--repo", "hello", "--scope", "repo"];
    let org = ["--owner", "acme", "--scope", "org"];
    assert_eq!(run(&[&repo[..], &["--action", "register"]].concat()).0, "LLBF3JGZDX3P5PMEXLND6TS6FCWO6REPO\n");
    assert_eq!(run(&[&org[..], &["--action", "register"]].concat()).0, "LLBF3JGZDX3P5PMEXLND6TS6FCWO6ORG\n");
    assert!(run(&[&repo[..], &["--action", "remove"]].concat()).0.ends_with("REPO\n"));
    assert!(run(&[&org[..], &["--action", "remove"]].concat()).0.ends_with("ORG\n"));
    let jit = [
        "--action",
        "jit",
        "--name",
        "New runner",
        "--labels",
        "self-hosted,X64,macOS,no-gpu",
        "--runner-group-id",
        "1",
    ];
    let (stdout, stderr) = run(&[&repo[..], &jit[..]].concat());
    assert_eq!(stdout, "abc123\n");
    assert!(stderr.contains("New runner") && stderr.contains("id 23"), "{stderr}");
    run(&[&org[..], &jit[..], &["--work-folder", "_w"]].concat());

    let seen = seen.lock().unwrap().clone();
    let p = |s: &str| format!("{API_PREFIX}/{s}");
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            p("repos/octo/hello/actions/runners/registration-token"),
            p("orgs/acme/actions/runners/registration-token"),
            p("repos/octo/hello/actions/runners/remove-token"),
            p("orgs/acme/actions/runners/remove-token"),
            p("repos/octo/hello/actions/runners/generate-jitconfig"),
            p("orgs/acme/actions/runners/generate-jitconfig"),
        ]
    );
    assert_eq!(seen[4].1, github_fixture("actions.generate-runner-jitconfig-for-repo.request.default.json"));
    let mut org_body = github_fixture("actions.generate-runner-jitconfig-for-org.request.default.json");
    org_body["work_folder"] = json!("_w");
    org_body["name"] = json!("New runner");
    org_body["labels"] = json!(["self-hosted", "X64", "macOS", "no-gpu"]);
    org_body["runner_group_id"] = json!(1);
    assert_eq!(seen[5].1, org_body);
    // Regression: the four registration/remove-token POSTs sent `{}` as JSON where GitHub
    // documents no body; now none, and no Content-Type.
    for (p, body, content_type) in &seen[..4] {
        assert!(body.is_null() && content_type.is_none(), "{p}: body {body}, content-type {content_type:?}");
    }
    // Every request has a body exactly when GitHub's OpenAPI description documents one.
    if let Some(corpora) = crate::common::corpora() {
        let spec: Value =
            serde_json::from_slice(&std::fs::read(corpora.join("github-openapi/api.github.com.subset.json")).unwrap())
                .unwrap();
        for (p, body, _) in &seen {
            let template = p
                .strip_prefix(API_PREFIX)
                .unwrap()
                .replace("/repos/octo/hello/", "/repos/{owner}/{repo}/")
                .replace("/orgs/acme/", "/orgs/{org}/");
            let operation = &spec["paths"][&template]["post"];
            assert!(operation.is_object(), "{template} is not in the OpenAPI description");
            assert_eq!(operation.get("requestBody").is_some(), !body.is_null(), "{template}: body {body}");
        }
    }
    let _ = dir;
}

/// `--action jit` with more labels than GitHub's documented `maxItems` (100) is exit 2 before
/// any request (it was forwarded); 100 are sent.
#[tokio::test(flavor = "multi_thread")]
async fn jit_with_more_than_100_labels_is_exit_2_before_any_request() {
    let (server, seen) = runner_fake().await;
    let labels = |n: usize| (0..n).map(|i| format!("l{i}")).collect::<Vec<_>>().join(",");
    let run = |n: usize| {
        agentctl()
            .env("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri()))
            .env("GITHUB_TOKEN", "ghs_workflowtoken000000000000000000000")
            .args(["token-refresh", "runner", "--print", "--owner", "acme", "--scope", "org", "--action", "jit"])
            .args(["--labels", &labels(n)])
            .output()
            .unwrap()
    };
    let out = run(101);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("101 labels") && stderr.contains("at most 100"), "{stderr}");
    assert!(seen.lock().unwrap().is_empty(), "a request was sent");
    assert_eq!(run(100).status.code(), Some(0));
    assert_eq!(seen.lock().unwrap()[0].1["labels"].as_array().unwrap().len(), 100);
}

/// `--permission NAME=LEVEL` is checked against GitHub's `app-permissions` schema: a level the
/// permission does not take (`workflows` is write only, `contents` read or write) or an
/// unknown name is exit 2 naming the allowed levels, before any request (any was accepted).
#[tokio::test(flavor = "multi_thread")]
async fn a_permission_level_github_does_not_document_is_exit_2_naming_the_allowed_levels() {
    let fake = AppFake::start().await;
    for (pair, says) in [
        ("workflows=read", "`workflows` takes write"),
        ("contents=admin", "`contents` takes read or write"),
        ("content=read", "not a GitHub App permission"),
    ] {
        let out = app_cmd(&fake, &fixture("app-key.pem"))
            .args(["--installation-id", "42", "--print", "--permission", pair])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{pair}: {stderr}");
    }
    assert_eq!(fake.request_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_token_with_an_app_mints_an_installation_token_first() {
    let fake = AppFake::start().await;
    fake.installation("orgs/acme", true).await;
    fake.mint(3600).await;
    Mock::given(method("POST"))
        .and(path(format!("{API_PREFIX}/orgs/acme/actions/runners/registration-token")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"token": "AABBCCRUNNERTOKEN1234", "expires_at": rfc3339(now() + 3600)})),
        )
        .mount(&fake.server)
        .await;
    let dir = private_dir();
    let file = dir.path().join("runner-token");
    agentctl()
        .env("GITHUB_API_URL", fake.api_url())
        .env("AGENTCTL_APP_ID", APP_ID)
        .args(["token-refresh", "runner", "--scope", "org", "--owner", "acme", "--action", "register"])
        .arg("--private-key-file")
        .arg(fixture("app-key.pem"))
        .arg("--file")
        .arg(&file)
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "AABBCCRUNNERTOKEN1234\n");
    assert_eq!(fake.request_count().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_cannot_sign_exit_2_with_a_clear_message_and_no_request() {
    let fake = AppFake::start().await;
    for (name, says) in [
        ("ec-key.pem", "not an RSA key"),
        ("encrypted-key.pem", "is encrypted"),
        ("truncated-key.pem", "truncated or corrupt"),
    ] {
        let out = app_cmd(&fake, &fixture(name))
            .args(["--installation-id", "42", "--print"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says) && stderr.contains(name), "{name}: {stderr}");
        let key = std::fs::read_to_string(fixture(name)).unwrap();
        assert!(!stderr.contains(key.lines().nth(1).unwrap()), "{name}: key text in stderr: {stderr}");
    }
    assert_eq!(fake.request_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_before_any_request() {
    let fake = AppFake::start().await;
    // No app id.
    let out = agentctl()
        .env("GITHUB_API_URL", fake.api_url())
        .args(["token-refresh", "app", "--installation-id", "42", "--print", "--private-key-file"])
        .arg(fixture("app-key.pem"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app id"));
    // No sink.
    app_cmd(&fake, &fixture("app-key.pem")).args(["--installation-id", "42"]).assert().code(2);
    // A world-writable sink folder.
    let dir = private_dir();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = app_cmd(&fake, &fixture("app-key.pem"))
        .args(["--installation-id", "42", "--file"])
        .arg(open.join("token"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("world-writable"));
    assert!(!open.join("token").exists());
    // A key given as a flag value is not a flag at all.
    app_cmd(&fake, &fixture("app-key.pem"))
        .args(["--installation-id", "42", "--print", "--private-key", "x"])
        .assert()
        .code(2);
    assert_eq!(fake.request_count().await, 0);
}

/// Mints a new token on every call, living `life` seconds, numbered so a reader can tell them
/// apart.
struct ShortLived {
    life: i64,
    count: Arc<Mutex<u32>>,
}

impl Respond for ShortLived {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut n = self.count.lock().unwrap();
        *n += 1;
        ResponseTemplate::new(201).set_body_json(json!({
            "token": format!("ghs_watch{:031}", *n),
            "expires_at": rfc3339(now() + self.life),
            "permissions": {"contents": "read"},
            "repository_selection": "all"
        }))
    }
}

/// A strict fake whose installation-token endpoint hands out a new token living `life`
/// seconds on every call; the counter says how many it gave.
async fn short_lived_installation_tokens(life: i64) -> (MockServer, Arc<Mutex<u32>>) {
    let server = strict_server().await;
    let count = Arc::new(Mutex::new(0u32));
    Mock::given(method("POST"))
        .and(path(format!("{API_PREFIX}/app/installations/42/access_tokens")))
        .respond_with(ShortLived { life, count: count.clone() })
        .mount(&server)
        .await;
    (server, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_refreshes_before_expiry_keeps_the_file_whole_and_stops_on_sigterm() {
    let (server, count) = short_lived_installation_tokens(3).await;
    let dir = private_dir();
    let file = dir.path().join("token");
    let key = fixture("app-key.pem");
    let args = ["token-refresh", "app", "--watch", "--installation-id", "42", "--min-ttl", "2", "--private-key-file"]
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([key.as_os_str(), std::ffi::OsStr::new("--file"), file.as_os_str()])
        .collect::<Vec<_>>();
    let child = spawn(
        &args,
        &[("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri())), ("AGENTCTL_APP_ID", APP_ID.into())],
    );

    // The window starts with the first token: start-up (a debug-build RSA signature on a busy
    // two-core machine) is not what is measured.
    wait_for(&file);
    // A reader loop: the file is always one whole token.
    read_while_refreshing(&file, &count, |text| {
        let t = text.trim_end();
        assert!(t.starts_with("ghs_watch") && t.len() == 40 && text.ends_with('\n'), "partial file: {text:?}");
    });

    let stderr = stop(child, std::time::Duration::from_secs(1));
    assert!(stderr.matches("refreshed the installation token").count() >= 3, "{stderr}");
    assert!(!stderr.contains("ghs_watch"), "token in the log: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn print_to_a_terminal_is_refused_without_force() {
    let fake = AppFake::start().await;
    let key = fixture("app-key.pem");
    let key = key.to_str().unwrap();
    let api = fake.api_url();
    let envs = [("GITHUB_API_URL", api.as_str()), ("AGENTCTL_APP_ID", APP_ID)];
    let args = ["token-refresh", "app", "--installation-id", "42", "--print", "--private-key-file", key];
    let out = in_terminal(&args, &envs);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("stdout is a terminal") && text.contains("--force"), "{text}");
    assert_eq!(fake.request_count().await, 0, "refused before any request");

    // With --force the token is minted and shown on the terminal.
    fake.mint(3600).await;
    let mut forced = args.to_vec();
    forced.push("--force");
    let out = in_terminal(&forced, &envs);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(TOKEN), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyring_sink_holds_the_token_for_secrets_get() {
    let fake = AppFake::start().await;
    fake.installation("repos/octo/hello", true).await;
    fake.mint(3600).await;
    let name = format!("agentctl-test-{}/app-token", crate::common::unique_name());
    let out = app_cmd(&fake, &fixture("app-key.pem"))
        .args(["--owner", "octo", "--repo", "hello", "--keyring", &name])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(1) && stderr.contains("no usable keyring backend") {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no keyring: {stderr}");
        eprintln!("skipping: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(TOKEN) && out.stdout.is_empty(), "{stderr}");
    let out = agentctl().args(["secrets", "get", &name, "--print"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{TOKEN}\n"));
    agentctl().args(["secrets", "delete", &name]).assert().success();
    // A bad keyring name is bad input: exit 2 before any request.
    let before = fake.request_count().await;
    app_cmd(&fake, &fixture("app-key.pem")).args(["--installation-id", "42", "--keyring", "a b"]).assert().code(2);
    assert_eq!(fake.request_count().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_private_key_comes_from_the_keyring_by_flag_or_environment() {
    let fake = AppFake::start().await;
    fake.mint(3600).await;
    let svc = format!("agentctl-test-{}", crate::common::unique_name());
    let (key_entry, ec_entry) = (format!("{svc}/app-key"), format!("{svc}/ec-key"));
    let pem = std::fs::read_to_string(fixture("app-key.pem")).unwrap();
    let stored = agentctl().args(["secrets", "set", &key_entry]).write_stdin(pem.clone()).output().unwrap();
    let stderr = String::from_utf8_lossy(&stored.stderr);
    if stored.status.code() == Some(1) && stderr.contains("no usable keyring backend") {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no keyring: {stderr}");
        eprintln!("skipping: {stderr}");
        return;
    }
    assert!(stored.status.success(), "{stderr}");
    let ec = std::fs::read_to_string(fixture("ec-key.pem")).unwrap();
    agentctl().args(["secrets", "set", &ec_entry]).write_stdin(ec.clone()).assert().success();
    let cmd = || {
        let mut cmd = agentctl();
        cmd.env("GITHUB_API_URL", fake.api_url())
            .env("AGENTCTL_APP_ID", APP_ID)
            // Never used: the keyring entry wins over the PEM variable.
            .env("AGENTCTL_APP_PRIVATE_KEY", "not a key")
            .args(["token-refresh", "app", "--installation-id", "42", "--print"]);
        cmd
    };
    // By flag, then by the environment variable naming the entry: the fake verifies each JWT
    // against the public key.
    let by_flag = cmd().args(["--private-key-keyring", &key_entry]).output().unwrap();
    let by_env = cmd().env("AGENTCTL_APP_PRIVATE_KEY_KEYRING", &key_entry).output().unwrap();
    for out in [&by_flag, &by_env] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), TOKEN);
        assert!(!stderr.contains(pem.lines().nth(1).unwrap()), "key in stderr: {stderr}");
    }
    assert_eq!(fake.claims.lock().unwrap().len(), 2);
    let before = fake.request_count().await;
    // A key that cannot sign names the entry, not its text; a missing entry and a bad name
    // are bad input. All exit 2 before any request.
    let out = cmd().args(["--private-key-keyring", &ec_entry]).assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not an RSA key") && stderr.contains(&format!("keyring entry {ec_entry}")), "{stderr}");
    assert!(!stderr.contains(ec.lines().nth(1).unwrap()), "key in stderr: {stderr}");
    let out = cmd().args(["--private-key-keyring", &format!("{svc}/missing")]).assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such entry") && stderr.contains("agentctl secrets set"), "{stderr}");
    cmd().args(["--private-key-keyring", "a b"]).assert().code(2);
    assert_eq!(fake.request_count().await, before);
    for entry in [&key_entry, &ec_entry] {
        agentctl().args(["secrets", "delete", entry]).assert().success();
    }
}

/// Spawns `agentctl ARGS` with a scrubbed environment plus `envs`, output piped.
fn spawn(args: &[&std::ffi::OsStr], envs: &[(&str, String)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("agentctl"));
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

/// Sends SIGTERM and waits: exit 0 within `limit`; returns stderr.
fn stop(mut child: std::process::Child, limit: std::time::Duration) -> String {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < limit, "still running {limit:?} after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(status.code(), Some(0), "{stderr}");
    stderr
}

/// For 6 s from now, reads `file` every 5 ms and hands each text to `check` (a watch must
/// never leave it partial or missing); then asserts more than 100 reads and at least 2
/// refreshes (`count` is the fake's counter of credentials handed out).
fn read_while_refreshing(file: &Path, count: &Mutex<u32>, check: impl Fn(&str)) {
    let first = *count.lock().unwrap();
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < std::time::Duration::from_secs(6) {
        let text = std::fs::read_to_string(file).expect("the token file never disappears");
        check(&text);
        reads += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let refreshes = *count.lock().unwrap() - first;
    assert!(refreshes >= 2, "expected at least 2 refreshes in 6 s, got {refreshes}");
    assert!(reads > 100);
}

/// Waits up to 30 s for `file` (start-up includes a debug-build RSA signature on a busy machine).
fn wait_for(file: &Path) {
    let boot = std::time::Instant::now();
    while !file.exists() {
        assert!(boot.elapsed() < std::time::Duration::from_secs(30), "no first credential after 30 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_watch_refreshes_the_registration_token_before_expiry_and_stops_on_sigterm() {
    /// A new registration token on every call, living `life` seconds.
    struct Registration {
        life: i64,
        count: Arc<Mutex<u32>>,
    }
    impl Respond for Registration {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            assert_eq!(
                req.headers.get("authorization").unwrap().to_str().unwrap(),
                "Bearer ghs_workflowtoken000000000000000000000"
            );
            let mut n = self.count.lock().unwrap();
            *n += 1;
            ResponseTemplate::new(201)
                .set_body_json(json!({"token": format!("AREG{:025}", *n), "expires_at": rfc3339(now() + self.life)}))
        }
    }
    let server = strict_server().await;
    let count = Arc::new(Mutex::new(0u32));
    Mock::given(method("POST"))
        .and(path(format!("{API_PREFIX}/orgs/acme/actions/runners/registration-token")))
        .respond_with(Registration { life: 3, count: count.clone() })
        .mount(&server)
        .await;
    let dir = private_dir();
    let file = dir.path().join("register-token");
    let args: Vec<&std::ffi::OsStr> = [
        "token-refresh",
        "runner",
        "--scope",
        "org",
        "--owner",
        "acme",
        "--action",
        "register",
        "--watch",
        "--min-ttl",
        "2",
        "--file",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .chain([file.as_os_str()])
    .collect();
    let child = spawn(
        &args,
        &[
            ("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri())),
            ("GITHUB_TOKEN", "ghs_workflowtoken000000000000000000000".into()),
        ],
    );
    // The metadata is written after the token: wait for both.
    wait_for(&dir.path().join("register-token.meta.json"));
    read_while_refreshing(&file, &count, |text| {
        assert!(text.starts_with("AREG") && text.len() == 30 && text.ends_with('\n'), "partial file: {text:?}");
        let meta: Value = serde_json::from_slice(&std::fs::read(dir.path().join("register-token.meta.json")).unwrap())
            .expect("the metadata file is always whole JSON");
        assert_eq!(meta["kind"], "runner-registration");
    });
    let stderr = stop(child, std::time::Duration::from_secs(1));
    assert!(stderr.matches("refreshed the runner-registration token for organization").count() >= 3, "{stderr}");
    assert!(!stderr.contains("AREG"), "token in the log: {stderr}");

    // JIT configs are one-use: --watch refuses them (exit 2, no request).
    let before = server.received_requests().await.unwrap().len();
    agentctl()
        .env("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri()))
        .env("GITHUB_TOKEN", "ghs_workflowtoken000000000000000000000")
        .args(["token-refresh", "runner", "--scope", "org", "--owner", "acme", "--action", "jit", "--watch", "--file"])
        .arg(dir.path().join("jit"))
        .assert()
        .code(2);
    assert_eq!(server.received_requests().await.unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn ps_arguments_of_a_running_watch_hold_no_token_key_or_jwt() {
    let (server, count) = short_lived_installation_tokens(3).await;
    let dir = private_dir();
    let file = dir.path().join("token");
    let key_file = fixture("app-key.pem");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let mut args: Vec<&std::ffi::OsStr> =
        ["token-refresh", "app", "--watch", "--installation-id", "42", "--min-ttl", "2", "--private-key-file"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
    args.push(key_file.as_os_str());
    args.push(std::ffi::OsStr::new("--file"));
    args.push(file.as_os_str());
    let child = spawn(
        &args,
        &[("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri())), ("AGENTCTL_APP_ID", APP_ID.into())],
    );
    wait_for(&file);
    // What `ps` shows: /proc/PID/cmdline, read while tokens are being refreshed.
    let cmdline_path = format!("/proc/{}/cmdline", child.id());
    let started = std::time::Instant::now();
    let mut samples = 0;
    while started.elapsed() < std::time::Duration::from_secs(4) {
        let raw = std::fs::read(&cmdline_path).unwrap();
        let argv = String::from_utf8_lossy(&raw).replace('\0', " ");
        // The right process: its own arguments are there...
        assert!(argv.contains("--watch") && argv.contains(&*key_file.to_string_lossy()), "{argv}");
        // ...and no credential: no token (current or earlier), no JWT, no PEM text.
        let token = std::fs::read_to_string(&file).unwrap();
        assert!(!argv.contains(token.trim()) && !argv.contains("ghs_"), "token in argv: {argv}");
        assert!(!argv.contains("eyJ"), "JWT in argv: {argv}");
        assert!(!argv.contains("-----BEGIN"), "PEM in argv: {argv}");
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!argv.contains(line), "key text in argv: {argv}");
        }
        samples += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(samples > 50 && *count.lock().unwrap() >= 2, "the watch was refreshing while sampled");
    // Stopping promptly is the watch tests' business; here only a clean exit.
    stop(child, std::time::Duration::from_secs(10));
}

/// Regression: a token with a line break or a control byte panicked (exit 134) where octocrab
/// built the `Authorization` header, in `cost import --from-artifacts`, `token-refresh revoke`
/// and `token-refresh runner`. Now each is exit 2 before any request, naming the variable and
/// never the value.
#[tokio::test(flavor = "multi_thread")]
async fn a_github_token_with_a_line_break_or_control_byte_is_exit_2_naming_the_variable_in_every_command() {
    let server = strict_server().await;
    let api = format!("{}{API_PREFIX}", server.uri());
    let commands: [&[&str]; 3] = [
        &["token-refresh", "revoke"],
        &[
            "token-refresh",
            "runner",
            "--print",
            "--owner",
            "octo",
            "--repo",
            "hello",
            "--scope",
            "repo",
            "--action",
            "register",
        ],
        &["cost", "import", "--from-artifacts", "--repo", "octo/hello"],
    ];
    for var in ["GITHUB_TOKEN", "GH_TOKEN"] {
        for value in ["ghs_SECRETPART\n::warning::x", "ghs_SECRETPART\x01", "ghs_SECRETPART\n\n", "ghs_SECRET PART"] {
            for args in commands {
                let state = crate::common::unique_state_path();
                let out = agentctl()
                    .env("GITHUB_API_URL", &api)
                    .env("AGENTCTL_STATE", &state)
                    .env(var, value)
                    .args(args)
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{args:?} {var}={value:?}: {stderr}");
                assert!(stderr.contains(&format!("{var}: ")), "{args:?}: {stderr}");
                assert!(!stderr.contains("SECRET") && !stderr.contains("panicked"), "{args:?}: {stderr}");
                assert!(out.stdout.is_empty(), "{args:?}");
            }
        }
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

/// `GH_TOKEN` wins over `GITHUB_TOKEN` (gh's precedence), and one trailing newline (`\n` or
/// `\r\n`, as `echo` writes a file) is dropped from a variable or a token file; a token file
/// with anything else is exit 2 naming the file.
#[tokio::test(flavor = "multi_thread")]
async fn gh_token_wins_over_github_token_and_one_trailing_newline_is_dropped() {
    let server = strict_server().await;
    Mock::given(method("DELETE"))
        .and(path(format!("{API_PREFIX}/installation/token")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(3)
        .mount(&server)
        .await;
    let api = format!("{}{API_PREFIX}", server.uri());
    agentctl()
        .env("GITHUB_API_URL", &api)
        .env("GH_TOKEN", format!("{TOKEN}\n"))
        .env("GITHUB_TOKEN", "ghs_theworkflowtokenthatmustnotbeused")
        .args(["token-refresh", "revoke"])
        .assert()
        .success();
    agentctl()
        .env("GITHUB_API_URL", &api)
        .env("GITHUB_TOKEN", format!("{TOKEN}\r\n"))
        .args(["token-refresh", "revoke"])
        .assert()
        .success();
    let dir = private_dir();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\r\n")).unwrap();
    agentctl().env("GITHUB_API_URL", &api).args(["token-refresh", "revoke", "--file"]).arg(&file).assert().success();
    std::fs::write(&file, format!("{TOKEN}\n\x1b[2J\n")).unwrap();
    let out = agentctl()
        .env("GITHUB_API_URL", &api)
        .args(["token-refresh", "revoke", "--file"])
        .arg(&file)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--file {}", file.display())) && !stderr.contains(TOKEN), "{stderr}");
    assert!(file.exists(), "a refused file is left alone");
}

/// Regression: a minted credential with `\n::warning…` or `##[error]` was printed by `--print`
/// in Actions, where the runner would run it as a workflow command. Minted tokens must be
/// `[A-Za-z0-9_.-]`, JIT configs base64: anything else is exit 4, nothing printed or written.
#[tokio::test(flavor = "multi_thread")]
async fn a_minted_credential_that_could_be_a_workflow_command_is_refused_and_never_printed() {
    for (kind, action, body) in [
        (
            "registration-token",
            "register",
            json!({"token": "AABB\n::warning::PWNED", "expires_at": rfc3339(now() + 3600)}),
        ),
        ("remove-token", "remove", json!({"token": "##[error]PWNED", "expires_at": rfc3339(now() + 3600)})),
        (
            "generate-jitconfig",
            "jit",
            json!({"runner": {"id": 1, "name": "r"}, "encoded_jit_config": "abc\n::error::PWNED"}),
        ),
    ] {
        let server = strict_server().await;
        Mock::given(method("POST"))
            .and(path(format!("{API_PREFIX}/repos/octo/hello/actions/runners/{kind}")))
            .respond_with(ResponseTemplate::new(201).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let dir = private_dir();
        let file = dir.path().join("cred");
        let out = agentctl()
            .env("GITHUB_API_URL", format!("{}{API_PREFIX}", server.uri()))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_TOKEN", "ghs_workflowtoken000000000000000000000")
            .args([
                "token-refresh",
                "runner",
                "--print",
                "--owner",
                "octo",
                "--repo",
                "hello",
                "--scope",
                "repo",
                "--action",
                action,
            ])
            .arg("--file")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{kind}: {stderr}");
        assert!(out.stdout.is_empty(), "{kind}: printed {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(!stderr.contains("PWNED") && stderr.contains("refusing"), "{kind}: {stderr}");
        assert!(!file.exists(), "{kind}: written to --file");
    }
}
