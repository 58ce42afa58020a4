//! `kind: bedrock` end to end: the real binary against a loopback Bedrock Runtime fake whose
//! every request's AWS Signature Version 4 is recomputed by botocore's signer (an independent
//! implementation, `tests/support/sigv4_verify.py`, installed by `.ci/run` into its venv), a
//! fake GitHub OIDC token endpoint and a fake STS for `role_arn:`, and the error rows of the
//! fault matrix for this kind (429/5xx retried, 403 exit 4, ValidationException exit 2).
//!
//! Without a Python that has botocore (`AGENTCTL_TEST_PYTHON`, else `target/ci-venv/bin/python`)
//! these tests skip with a message; under `CI=true` that is a failure.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::common::*;
use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
const CONVERSE: &str = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse";
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENfromCONFIGUREaws";

/// The Python with botocore, or `None` (skip) on a machine without one; panics under `CI=true`.
fn botocore_python() -> Option<PathBuf> {
    let candidates = std::env::var_os("AGENTCTL_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python")]);
    for python in candidates {
        let ok = std::process::Command::new(&python)
            .args(["-c", "import botocore.auth"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no Python with botocore (AGENTCTL_TEST_PYTHON or target/ci-venv): required under CI=true");
    }
    eprintln!("skipped: no Python with botocore (set AGENTCTL_TEST_PYTHON or run .ci/run once)");
    None
}

/// What botocore said of one request.
#[derive(Debug, Clone)]
struct Verdict {
    ok: bool,
    detail: Value,
}

/// A Bedrock Converse fake: checks each request's signature with botocore for the expected
/// credentials, then plays `script` (one response per request, the last repeated). A request
/// whose signature does not verify gets AWS's 403 `InvalidSignatureException`.
struct Converse {
    python: PathBuf,
    access_key: String,
    secret_key: String,
    script: Vec<ResponseTemplate>,
    seen: Arc<Mutex<Vec<Verdict>>>,
}

impl Respond for Converse {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let input = json!({
            "method": request.method.as_str(),
            "url": request.url.as_str(),
            "headers": headers,
            "body_b64": base64::engine::general_purpose::STANDARD.encode(&request.body),
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        });
        let mut child = std::process::Command::new(&self.python)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/sigv4_verify.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let detail: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&out.stderr)}));
        let ok = detail["ok"] == true;
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Verdict { ok, detail });
            seen.len()
        };
        if !ok {
            return ResponseTemplate::new(403)
                .insert_header("x-amzn-ErrorType", "InvalidSignatureException:http://internal.amazon.com/coral/")
                .set_body_json(json!({"message": "The request signature we calculated does not match the signature you provided."}));
        }
        self.script.get(n - 1).or(self.script.last()).cloned().unwrap()
    }
}

/// A Converse answer calling the forced tool with the review answer.
fn converse_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).insert_header("x-amzn-RequestId", "b7e0f0a4-bedrock-fake").set_body_json(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_1", "name": "review_output", "input": division_answer()}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 1200, "outputTokens": 150, "totalTokens": 1650,
                  "cacheReadInputTokens": 300, "cacheWriteInputTokens": 0},
        "metrics": {"latencyMs": 812}
    }))
}

fn bedrock_error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header(
            "x-amzn-ErrorType",
            format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/").as_str(),
        )
        .set_body_json(json!({"message": message}))
}

struct Fake {
    server: MockServer,
    seen: Arc<Mutex<Vec<Verdict>>>,
}

async fn fake_bedrock(python: PathBuf, access_key: &str, secret_key: &str, script: Vec<ResponseTemplate>) -> Fake {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(vec![]));
    Mock::given(method("POST"))
        .and(path(CONVERSE))
        .and(header("content-type", "application/json"))
        .respond_with(Converse {
            python,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            script,
            seen: seen.clone(),
        })
        .mount(&server)
        .await;
    mount_catch_all(&server, "Bedrock").await;
    Fake { server, seen }
}

fn config(base_url: &str, extra: &str) -> String {
    format!(
        "provider: bedrock\nproviders:\n  bedrock:\n    kind: bedrock\n    model: {MODEL}\n    region: us-east-1\n    base_url: {base_url}\n    max_retries: 2\n{extra}"
    )
}

const ENV_KEYS: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY), ("AWS_SESSION_TOKEN", SESSION_TOKEN)];

fn verdicts(fake: &Fake) -> Vec<Verdict> {
    fake.seen.lock().unwrap().clone()
}

/// Asserts that the fake got one Converse request and botocore verified its signature.
fn assert_signed_once(fake: &Fake) {
    let seen = verdicts(fake);
    assert!(seen.len() == 1 && seen[0].ok, "botocore disagrees with our signature: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_environment_keys_is_signed_as_botocore_signs() {
    let Some(python) = botocore_python() else { return };
    let fake = fake_bedrock(python, ACCESS_KEY, SECRET_KEY, vec![converse_ok()]).await;
    let (code, stdout, stderr) = dry_run_review(&config(&fake.server.uri(), ""), &ENV_KEYS);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let seen = verdicts(&fake);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].ok, "botocore disagrees with our signature: {}", seen[0].detail);
    assert_eq!(
        seen[0].detail["scope"],
        json!(format!("{}/us-east-1/bedrock", &seen[0].detail["scope"].as_str().unwrap()[..8]))
    );
    assert!(seen[0].detail["signed_headers"].as_str().unwrap().contains("x-amz-security-token"));
    // The Converse request: structured output through the forced tool.
    let body: Value = serde_json::from_slice(&fake.server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body["toolConfig"]["toolChoice"]["tool"]["name"], "review_output");
    assert!(body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["findings"].is_object());
    assert_eq!(body["messages"][0]["role"], "user");
    assert!(body["inferenceConfig"]["maxTokens"].as_u64().unwrap() > 0);
    // The finding lands; usage and a priced cost from the Bedrock price table.
    assert_eq!(report["models"], json!([MODEL]), "{report}");
    assert!(report["findings"].as_array().unwrap().iter().any(|f| f["title"] == "Division by zero" && f["line"] == 3));
    assert_eq!(report["usage"]["input_tokens"], 1200);
    assert_eq!(report["usage"]["cached_input_tokens"], 300);
    let cost = report["cost_usd"].as_f64().unwrap_or_else(|| panic!("no cost: {report}"));
    let want = 1200.0 * 3e-6 + 300.0 * 3e-7 + 150.0 * 15e-6;
    assert!((cost - want).abs() < 1e-9, "{cost} vs {want}");
    assert_clear_of(&[&stdout, &stderr], &[SECRET_KEY, SESSION_TOKEN]);
}

/// A web identity JWT (the job's OIDC token, or a token file's).
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vcjpyZWY6cmVmcy9oZWFkcy9tYWluIn0.c2lnbmF0dXJlLWZha2U";
/// The temporary credentials the fake STS hands out.
const STS_KEY: &str = "ASIAQEXAMPLESTSKEY01";
const STS_SECRET: &str = "stsSecretKeyFromAssumeRoleWithWebIdentityEXAMPLE";
const STS_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEstsSESSIONtokenFROMassumeROLE";

/// A fake STS answering one `AssumeRoleWithWebIdentity` of `agentctl-review` with `jwt` as
/// session `session` (anything else hits the catch-all) with credentials valid for an hour.
async fn fake_sts(jwt: &str, session: &str, key: &str, secret: &str, token: &str) -> MockServer {
    let sts = MockServer::start().await;
    let expiration = chrono::Utc::now() + chrono::Duration::hours(1);
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("content-type", "application/x-www-form-urlencoded; charset=utf-8"))
        .and(body_string_contains("Action=AssumeRoleWithWebIdentity"))
        .and(body_string_contains("Version=2011-06-15"))
        .and(body_string_contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fagentctl-review"))
        .and(body_string_contains(format!("RoleSessionName={session}&").as_str()))
        .and(body_string_contains(format!("WebIdentityToken={jwt}&").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{}</Expiration>
    </Credentials>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/agentctl-review/{session}</Arn></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>sts-fake</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
            expiration.format("%Y-%m-%dT%H:%M:%SZ")
        )))
        .expect(1)
        .mount(&sts)
        .await;
    mount_catch_all(&sts, "STS").await;
    sts
}

/// The OIDC path: the job's token from a fake `ACTIONS_ID_TOKEN_REQUEST_URL`, exchanged at a fake
/// STS for temporary credentials, with which every Bedrock request is signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_arn_assumes_the_role_with_the_jobs_oidc_token() {
    let Some(python) = botocore_python() else { return };
    const REQUEST_TOKEN: &str = "ghs-oidc-request-token-0123456789abcdef";
    let (_github, request_url) = fake_github_oidc(REQUEST_TOKEN, "sts.amazonaws.com", JWT).await;
    let sts = fake_sts(JWT, "agentctl-4242", STS_KEY, STS_SECRET, STS_TOKEN).await;
    let fake = fake_bedrock(python, STS_KEY, STS_SECRET, vec![converse_ok()]).await;
    let sts_url = format!("{}/", sts.uri());
    let (code, stdout, stderr) = dry_run_review(
        &config(&fake.server.uri(), "    role_arn: arn:aws:iam::123456789012:role/agentctl-review\n"),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "4242"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
            ("AWS_ENDPOINT_URL_STS", &sts_url),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_signed_once(&fake);
    let report = report_of(&stdout);
    assert_eq!(report["findings"].as_array().unwrap().iter().filter(|f| f["title"] == "Division by zero").count(), 1);
    // Every credential is masked for the runner before anything could print it, and none is
    // printed in clear.
    assert_masked_and_clear(&[&stdout, &stderr], &[REQUEST_TOKEN, JWT, STS_SECRET, STS_TOKEN]);
}

/// A self-hosted runner's ambient identity (EKS IRSA and the like): no `role_arn:` and no
/// GitHub OIDC, but `AWS_WEB_IDENTITY_TOKEN_FILE` assumed as `AWS_ROLE_ARN` with session
/// `AWS_ROLE_SESSION_NAME`; the file's token and the minted credentials are masked and
/// printed nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_identity_token_file_assumes_aws_role_arn() {
    let Some(python) = botocore_python() else { return };
    let sts = fake_sts(JWT, "runner-pod-7", STS_KEY, STS_SECRET, STS_TOKEN).await;
    let fake = fake_bedrock(python, STS_KEY, STS_SECRET, vec![converse_ok()]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = crate::common::write(dir.path(), "token", format!("{JWT}\n"));
    let sts_url = format!("{}/", sts.uri());
    let (code, stdout, stderr) = dry_run_review(
        &config(&fake.server.uri(), ""),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/agentctl-review"),
            ("AWS_ROLE_SESSION_NAME", "runner-pod-7"),
            ("AWS_ENDPOINT_URL_STS", &sts_url),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_signed_once(&fake);
    assert_masked_and_clear(&[&stdout, &stderr], &[JWT, STS_SECRET, STS_TOKEN]);
}

/// The machine's credentials document (the container endpoint's and IMDS's shape).
fn machine_credentials(key: &str, secret: &str, token: &str) -> ResponseTemplate {
    let expiration = chrono::Utc::now() + chrono::Duration::hours(6);
    ResponseTemplate::new(200).set_body_json(json!({
        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key, "SecretAccessKey": secret,
        "Token": token, "Expiration": expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }))
}

/// The IMDSv2 session token of [`fake_imds`].
const IMDS_TOKEN: &str = "AQAEAImdsV2SessionTokenEXAMPLE0123456789==";

/// An IMDSv2 fake of an instance whose profile role is `agentctl-runner` with `creds`: each of
/// the token PUT and the two GETs (carrying the token) is expected once.
async fn fake_imds(creds: ResponseTemplate) -> MockServer {
    let imds = MockServer::start().await;
    let token = ResponseTemplate::new(200).set_body_string(IMDS_TOKEN);
    let role = ResponseTemplate::new(200).set_body_string("agentctl-runner\n");
    let listing = "/latest/meta-data/iam/security-credentials/";
    for (verb, at, (name, value), answer) in [
        ("PUT", "/latest/api/token".to_string(), ("x-aws-ec2-metadata-token-ttl-seconds", "21600"), token),
        ("GET", listing.to_string(), ("x-aws-ec2-metadata-token", IMDS_TOKEN), role),
        ("GET", format!("{listing}agentctl-runner"), ("x-aws-ec2-metadata-token", IMDS_TOKEN), creds),
    ] {
        let once = Mock::given(method(verb)).and(path(at)).and(header(name, value)).respond_with(answer).expect(1);
        once.mount(&imds).await;
    }
    mount_catch_all(&imds, "IMDS").await;
    imds
}

/// A self-hosted runner on EC2 with an instance profile: no keys, no `role_arn`; IMDSv2 gives a
/// session token (PUT), then the role's name and credentials (GETs carrying the token), and
/// every Bedrock request is signed with them. All of them are masked and printed nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ec2_instance_profile_through_imdsv2_signs_the_review() {
    let Some(python) = botocore_python() else { return };
    let imds = fake_imds(machine_credentials(STS_KEY, STS_SECRET, STS_TOKEN)).await;
    let fake = fake_bedrock(python, STS_KEY, STS_SECRET, vec![converse_ok()]).await;
    let (code, stdout, stderr) = dry_run_review(
        &config(&fake.server.uri(), ""),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.uri()),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_signed_once(&fake);
    assert_masked_and_clear(&[&stdout, &stderr], &[IMDS_TOKEN, STS_SECRET, STS_TOKEN]);
}

/// `role_arn:` on an EC2 runner without the job's OIDC token: the instance profile's
/// credentials sign an STS `AssumeRole` of the entry's role (botocore checks that signature
/// too, for service `sts`), and the assumed role's credentials sign the review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_arn_is_assumed_with_the_instance_profile_when_there_is_no_web_identity() {
    let Some(python) = botocore_python() else { return };
    const MACHINE_KEY: &str = "ASIAMACHINEPROFILE01";
    const MACHINE_SECRET: &str = "machineInstanceProfileSecretKeyEXAMPLE0123";
    const MACHINE_TOKEN: &str = "IQoJb3JpZ2luX2VjEMACHINEinstancePROFILEtoken";
    let imds = fake_imds(machine_credentials(MACHINE_KEY, MACHINE_SECRET, MACHINE_TOKEN)).await;
    let sts = MockServer::start().await;
    let sts_seen = Arc::new(Mutex::new(vec![]));
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let assumed = ResponseTemplate::new(200).set_body_string(format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials>\
         <AccessKeyId>{STS_KEY}</AccessKeyId><SecretAccessKey>{STS_SECRET}</SecretAccessKey>\
         <SessionToken>{STS_TOKEN}</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
         </AssumeRoleResult></AssumeRoleResponse>"
    ));
    Mock::given(method("POST"))
        .and(path("/"))
        .and(body_string_contains("Action=AssumeRole&"))
        .and(body_string_contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fagentctl-review"))
        .and(body_string_contains("RoleSessionName=agentctl-77&"))
        .respond_with(Converse {
            python: python.clone(),
            access_key: MACHINE_KEY.into(),
            secret_key: MACHINE_SECRET.into(),
            script: vec![assumed],
            seen: sts_seen.clone(),
        })
        .expect(1)
        .mount(&sts)
        .await;
    mount_catch_all(&sts, "STS").await;
    let fake = fake_bedrock(python, STS_KEY, STS_SECRET, vec![converse_ok()]).await;
    let sts_url = format!("{}/", sts.uri());
    let (code, stdout, stderr) = dry_run_review(
        &config(&fake.server.uri(), "    role_arn: arn:aws:iam::123456789012:role/agentctl-review\n"),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "77"),
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.uri()),
            ("AWS_ENDPOINT_URL_STS", &sts_url),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let sts_verdicts = sts_seen.lock().unwrap().clone();
    assert!(
        sts_verdicts.len() == 1 && sts_verdicts[0].ok,
        "botocore rejects the AssumeRole signature: {sts_verdicts:?}"
    );
    assert_eq!(sts_verdicts[0].detail["scope"].as_str().map(|s| &s[9..]), Some("us-east-1/sts"));
    assert_signed_once(&fake);
    assert_masked_and_clear(&[&stdout, &stderr], &[MACHINE_SECRET, MACHINE_TOKEN, STS_SECRET, STS_TOKEN]);
}

/// ECS / EKS Pod Identity: the container endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) with
/// the `Authorization` value read from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_credentials_endpoint_with_an_authorization_file_signs_the_review() {
    let Some(python) = botocore_python() else { return };
    const AUTH: &str = "eks-pod-identity-authorization-0123456789";
    let endpoint = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/credentials"))
        .and(header("authorization", AUTH))
        .respond_with(machine_credentials(STS_KEY, STS_SECRET, STS_TOKEN))
        .expect(1)
        .mount(&endpoint)
        .await;
    mount_catch_all(&endpoint, "container credentials").await;
    let fake = fake_bedrock(python, STS_KEY, STS_SECRET, vec![converse_ok()]).await;
    let dir = tempfile::tempdir().unwrap();
    let auth_file = crate::common::write(dir.path(), "token", format!("{AUTH}\n"));
    let url = format!("{}/v1/credentials", endpoint.uri());
    let (code, stdout, stderr) = dry_run_review(
        &config(&fake.server.uri(), ""),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", auth_file.to_str().unwrap()),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_signed_once(&fake);
    assert_masked_and_clear(&[&stdout, &stderr], &[AUTH, STS_SECRET, STS_TOKEN]);
}

/// Not on EC2: nothing answers at the metadata address, which is "no AWS credentials" (exit
/// 4) before any model request, not a failure retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metadata_service_is_no_credentials_exit_4() {
    let bedrock = MockServer::start().await;
    mount_catch_all(&bedrock, "Bedrock").await;
    // A loopback port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, stderr) = dry_run_review(
        &config(&bedrock.uri(), ""),
        &[("AWS_EC2_METADATA_DISABLED", "false"), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url)],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("no AWS credentials") && stderr.contains("instance metadata service"), "{stderr}");
    assert!(stderr.contains("help: use aws-actions/configure-aws-credentials"), "{stderr}");
    assert!(bedrock.received_requests().await.unwrap().is_empty());

    // Another cloud's metadata service at that address (Azure's, on a GitHub-hosted runner)
    // refuses the IMDSv2 token request: no AWS credentials either, with the help line.
    let other = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .respond_with(ResponseTemplate::new(400).set_body_string("Bad request. Required metadata header not specified"))
        .expect(1)
        .mount(&other)
        .await;
    mount_catch_all(&other, "another cloud's metadata service").await;
    let (code, _, stderr) = dry_run_review(
        &config(&bedrock.uri(), ""),
        &[("AWS_EC2_METADATA_DISABLED", "false"), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &other.uri())],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("no AWS credentials") && stderr.contains("HTTP 400") && stderr.contains("help:"),
        "{stderr}"
    );
    assert!(bedrock.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusal_is_exit_4_naming_the_trust_policy() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_apis/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": "eyJ.header.sig-refused-jwt-value"})))
        .mount(&github)
        .await;
    let sts = MockServer::start().await;
    Mock::given(method("POST")).and(path("/"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>x</RequestId></ErrorResponse>"#,
        ))
        .expect(1)
        .mount(&sts)
        .await;
    mount_catch_all(&sts, "STS").await;
    let bedrock = MockServer::start().await;
    mount_catch_all(&bedrock, "Bedrock (no request may be sent without credentials)").await;
    let request_url = format!("{}/_apis/token?api-version=2.0", github.uri());
    let sts_url = format!("{}/", sts.uri());
    let (code, _, stderr) = dry_run_review(
        &config(&bedrock.uri(), "    role_arn: arn:aws:iam::123456789012:role/agentctl-review\n"),
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ghs-request-token-refused-0123"),
            ("AWS_ENDPOINT_URL_STS", &sts_url),
        ],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("AccessDenied") && stderr.contains("trust policy"), "{stderr}");
    assert!(
        !stderr.contains("ghs-request-token-refused-0123") && !stderr.contains("sig-refused-jwt-value"),
        "{stderr}"
    );
    assert!(bedrock.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_is_exit_4_before_any_request() {
    let bedrock = MockServer::start().await;
    mount_catch_all(&bedrock, "Bedrock").await;
    let (code, _, stderr) = dry_run_review(&config(&bedrock.uri(), ""), &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("no AWS credentials") && stderr.contains("id-token: write"), "{stderr}");
    assert!(bedrock.received_requests().await.unwrap().is_empty());
}

// --- The fault matrix for this kind -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_succeeds() {
    let Some(python) = botocore_python() else { return };
    let throttled = bedrock_error(429, "ThrottlingException", "Too many requests, please wait before trying again.");
    let fake = fake_bedrock(python, ACCESS_KEY, SECRET_KEY, vec![throttled, converse_ok()]).await;
    let (code, _, stderr) = dry_run_review(&config(&fake.server.uri(), ""), &ENV_KEYS);
    assert_eq!(code, Some(0), "{stderr}");
    let seen = verdicts(&fake);
    assert_eq!(seen.len(), 2, "one retry: {seen:?}");
    // Each attempt is signed afresh (its own X-Amz-Date), and each verifies.
    assert!(seen.iter().all(|v| v.ok), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_then_fails_with_exit_1() {
    let Some(python) = botocore_python() else { return };
    let down = bedrock_error(503, "ServiceUnavailableException", "Bedrock is unable to process your request.");
    let fake = fake_bedrock(python, ACCESS_KEY, SECRET_KEY, vec![down]).await;
    let (code, _, stderr) = dry_run_review(&config(&fake.server.uri(), "    fallback: []\n"), &ENV_KEYS);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(verdicts(&fake).len(), 3, "max_retries 2 → 3 attempts");
    assert!(stderr.contains("ServiceUnavailableException"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_is_exit_4_naming_what_to_check() {
    let Some(python) = botocore_python() else { return };
    let denied =
        bedrock_error(403, "AccessDeniedException", "You don't have access to the model with the specified model ID.");
    let fake = fake_bedrock(python, ACCESS_KEY, SECRET_KEY, vec![denied]).await;
    let (code, stdout, stderr) = dry_run_review(&config(&fake.server.uri(), ""), &ENV_KEYS);
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(verdicts(&fake).len(), 1, "never retried");
    assert!(stderr.contains("AccessDeniedException") && stderr.contains("bedrock:InvokeModel"), "{stderr}");
    assert_clear_of(&[&stdout, &stderr], &[SECRET_KEY, SESSION_TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_error_is_a_config_error_exit_2() {
    let Some(python) = botocore_python() else { return };
    let invalid = bedrock_error(400, "ValidationException", "The provided model identifier is invalid.");
    let fake = fake_bedrock(python, ACCESS_KEY, SECRET_KEY, vec![invalid]).await;
    let (code, _, stderr) = dry_run_review(&config(&fake.server.uri(), ""), &ENV_KEYS);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(verdicts(&fake).len(), 1, "never retried");
    assert!(stderr.contains("ValidationException: The provided model identifier is invalid."), "{stderr}");
}
