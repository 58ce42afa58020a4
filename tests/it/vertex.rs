//! `kind: vertex` end to end: the real binary against loopback fakes of the GitHub OIDC token
//! endpoint, Google STS (checking the token-exchange fields of the STS API reference), IAM
//! Credentials `generateAccessToken`, an OAuth token endpoint for service-account keys (checking
//! the JWT grant's signature with the key's public half), and Vertex AI's `generateContent`
//! (Gemini) and `rawPredict` (Claude); and the error rows of the fault matrix for this kind.

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const GEMINI_PATH: &str =
    "/v1/projects/agentctl-ci/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent";
const CLAUDE_PATH: &str =
    "/v1/projects/agentctl-ci/locations/global/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict";
const SA: &str = "agentctl-review@agentctl-ci.iam.gserviceaccount.com";
const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/github/providers/agentctl";

fn gemini_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": division_answer().to_string()}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 700, "cachedContentTokenCount": 100, "candidatesTokenCount": 60, "totalTokenCount": 760},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "vertex-fake-1"
    }))
}

/// Mounts on `server` the Vertex Gemini endpoint taking `token` as bearer, answering
/// [`gemini_ok`] once.
async fn gemini_with(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path(GEMINI_PATH))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(gemini_ok())
        .expect(1)
        .mount(server)
        .await;
}

fn google_error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {"code": status, "message": message, "status": kind}}))
}

fn config(base_url: &str, model: &str, location: Option<&str>) -> String {
    let location = location.map(|l| format!("    location: {l}\n")).unwrap_or_default();
    format!(
        "provider: v\nproviders:\n  v:\n    kind: vertex\n    model: {model}\n    project: agentctl-ci\n{location}    base_url: {base_url}\n    max_retries: 2\n"
    )
}

fn has_finding(report: &Value) -> bool {
    report["findings"].as_array().unwrap().iter().any(|f| f["title"] == "Division by zero" && f["line"] == 3)
}

/// Workload identity federation as `google-github-actions/auth` sets it up: the ADC file's
/// `credential_source` asks GitHub for the job's OIDC token, Google STS exchanges it, IAM
/// Credentials impersonates the service account, and Vertex gets that account's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_gemini_through_workload_identity_federation() {
    const REQUEST_TOKEN: &str = "ghs-oidc-request-token-for-google-0123456789";
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2lhbS5nb29nbGVhcGlzLmNvbSJ9.Z29vZ2xlLWZha2Utc2ln";
    const FEDERATED: &str = "ya29.d.federated-access-token-from-google-sts";
    const SA_TOKEN: &str = "ya29.c.service-account-token-from-iamcredentials";
    let google = MockServer::start().await;
    let oidc_audience = format!("https:{AUDIENCE}");
    Mock::given(method("GET"))
        .and(path("/_apis/token"))
        .and(query_param("api-version", "2.0"))
        .and(query_param("audience", oidc_audience.as_str()))
        .and(header("authorization", format!("Bearer {REQUEST_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": JWT})))
        .expect(1)
        .mount(&google)
        .await;
    // The STS API reference's request fields, exactly.
    Mock::given(method("POST"))
        .and(path("/v1/token"))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": AUDIENCE,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
            "subjectToken": JWT,
            "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": FEDERATED,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3599
        })))
        .expect(1)
        .mount(&google)
        .await;
    let expire = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    Mock::given(method("POST"))
        .and(path(format!("/v1/projects/-/serviceAccounts/{SA}:generateAccessToken").as_str()))
        .and(header("authorization", format!("Bearer {FEDERATED}").as_str()))
        .and(body_partial_json(json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": SA_TOKEN, "expireTime": expire})))
        .expect(1)
        .mount(&google)
        .await;
    gemini_with(&google, SA_TOKEN).await;
    mount_catch_all(&google, "Google").await;
    let dir = tempfile::tempdir().unwrap();
    let adc = write(
        dir.path(),
        "gha-creds.json",
        json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", google.uri()),
            "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken", google.uri()),
            "credential_source": {
                "url": format!("{}/_apis/token?api-version=2.0&audience={}", google.uri(), urlencoding::encode(&oidc_audience)),
                "headers": {"Authorization": format!("Bearer {REQUEST_TOKEN}")},
                "format": {"type": "json", "subject_token_field_name": "value"}
            }
        })
        .to_string(),
    );
    let (code, stdout, stderr) = dry_run_review(
        &config(&google.uri(), "gemini-2.5-flash", Some("us-central1")),
        &[("GITHUB_ACTIONS", "true"), ("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap())],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let report = report_of(&stdout);
    assert!(has_finding(&report), "{report}");
    assert_eq!(report["models"], json!(["gemini-2.5-flash"]));
    assert_eq!(report["usage"]["input_tokens"], 600);
    // Priced from the bundled table: 600 uncached, 100 cached, 60 output tokens.
    let want = 600.0 * 3e-7 + 100.0 * 3e-8 + 60.0 * 2.5e-6;
    assert!(
        report["cost_usd"].as_f64().is_some_and(|c| (c - want).abs() < 1e-12),
        "priced as Gemini 2.5 Flash: {report}"
    );
    assert_masked_and_clear(&[&stdout, &stderr], &[REQUEST_TOKEN, JWT, FEDERATED, SA_TOKEN]);
}

/// A service-account key: the JWT grant is checked with the key's public half, and Claude is
/// asked through `rawPredict` with the Vertex body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_claude_through_a_service_account_key() {
    const SA_TOKEN: &str = "ya29.c.jwt-grant-token-for-claude-on-vertex";
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokens");
    let private = std::fs::read_to_string(fixtures.join("app-key.pkcs8.pem")).unwrap();
    let public = std::fs::read(fixtures.join("app-key.pub.pem")).unwrap();
    let google = MockServer::start().await;
    let token_uri = format!("{}/token", google.uri());
    let aud = token_uri.clone();
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"))
        .and(move |req: &Request| {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let Some(assertion) = url::form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "assertion")
                .map(|(_, v)| v.into_owned())
            else {
                return false;
            };
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_audience(&[aud.as_str()]);
            validation.set_issuer(&[SA]);
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
            jsonwebtoken::decode::<Value>(&assertion, &key, &validation).is_ok_and(|d| {
                d.claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
                    && d.header.kid.as_deref() == Some("key-id-1")
            })
        })
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": SA_TOKEN, "expires_in": 3599, "token_type": "Bearer"})),
        )
        .expect(1)
        .mount(&google)
        .await;
    Mock::given(method("POST"))
        .and(path(CLAUDE_PATH))
        .and(header("authorization", format!("Bearer {SA_TOKEN}").as_str()))
        .and(body_partial_json(json!({"anthropic_version": "vertex-2023-10-16", "tool_choice": {"type": "tool"}})))
        .and(|req: &Request| serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b.get("model").is_none()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_vrtx_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "review_output", "input": division_answer()}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 900, "output_tokens": 120, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        })))
        .expect(1)
        .mount(&google)
        .await;
    mount_catch_all(&google, "Google").await;
    let dir = tempfile::tempdir().unwrap();
    let adc = write(
        dir.path(),
        "sa.json",
        json!({"type": "service_account", "project_id": "agentctl-ci", "private_key_id": "key-id-1",
               "private_key": private, "client_email": SA, "token_uri": token_uri})
        .to_string(),
    );
    let (code, stdout, stderr) = dry_run_review(
        &config(&google.uri(), "claude-sonnet-4-5@20250929", None),
        &[("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap())],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let report = report_of(&stdout);
    assert!(has_finding(&report), "{report}");
    assert_eq!(report["usage"]["input_tokens"], 900);
    let want = 900.0 * 3e-6 + 120.0 * 15e-6;
    assert!(report["cost_usd"].as_f64().is_some_and(|c| (c - want).abs() < 1e-9), "priced as Claude: {report}");
    let key_line = private.lines().nth(1).unwrap();
    assert_clear_of(&[&stdout, &stderr], &[SA_TOKEN, key_line]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_exchange_is_exit_4_before_any_model_request() {
    let google = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/subject"))
        .respond_with(ResponseTemplate::new(200).set_body_string("eyJ.subject.token-refused"))
        .mount(&google)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "unauthorized_client",
            "error_description": "The given credential is rejected by the attribute condition."
        })))
        .expect(1)
        .mount(&google)
        .await;
    mount_catch_all(&google, "Google (no model request without a token)").await;
    let dir = tempfile::tempdir().unwrap();
    let adc = write(
        dir.path(),
        "adc.json",
        json!({"type": "external_account", "audience": AUDIENCE, "token_url": format!("{}/v1/token", google.uri()),
               "credential_source": {"url": format!("{}/subject", google.uri())}})
        .to_string(),
    );
    let (code, _, stderr) = dry_run_review(
        &config(&google.uri(), "gemini-2.5-flash", None),
        &[("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap())],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("unauthorized_client") && stderr.contains("attribute condition"), "{stderr}");
    assert!(!stderr.contains("token-refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_is_exit_4() {
    let google = MockServer::start().await;
    mount_catch_all(&google, "Google").await;
    let (code, _, stderr) = dry_run_review(&config(&google.uri(), "gemini-2.5-flash", None), &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("no Google credentials") && stderr.contains("google-github-actions/auth"), "{stderr}");
}

/// A self-hosted runner on Compute Engine: no token variable, no ADC file; the attached
/// service account's token comes from the metadata server (`Metadata-Flavor: Google`, the
/// cloud-platform scope), and is masked and printed nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_with_gemini_through_the_gce_metadata_server() {
    const GCE_TOKEN: &str = "ya29.c.gce-metadata-service-account-token-0123";
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/instance/service-accounts/default/token"))
        .and(header("metadata-flavor", "Google"))
        .and(query_param("scopes", "https://www.googleapis.com/auth/cloud-platform"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": GCE_TOKEN, "expires_in": 3599, "token_type": "Bearer"})),
        )
        .expect(1)
        .mount(&metadata)
        .await;
    mount_catch_all(&metadata, "GCE metadata server").await;
    let google = MockServer::start().await;
    gemini_with(&google, GCE_TOKEN).await;
    mount_catch_all(&google, "Vertex").await;
    let host = metadata.uri().trim_start_matches("http://").to_string();
    let (code, stdout, stderr) = dry_run_review(
        &config(&google.uri(), "gemini-2.5-flash", Some("us-central1")),
        &[("GITHUB_ACTIONS", "true"), ("NO_GCE_CHECK", "false"), ("GCE_METADATA_HOST", &host)],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(has_finding(&report_of(&stdout)));
    assert_masked_and_clear(&[&stdout, &stderr], &[GCE_TOKEN]);

    // Where no metadata server answers, there are no Google credentials (exit 4, with help).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, stderr) = dry_run_review(
        &config(&google.uri(), "gemini-2.5-flash", Some("us-central1")),
        &[("NO_GCE_CHECK", "false"), ("GCE_METADATA_HOST", &nowhere)],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("no Google credentials") && stderr.contains("did not answer"), "{stderr}");
    assert!(stderr.contains("help: use google-github-actions/auth"), "{stderr}");
}

// --- The fault matrix for this kind -----------------------------------------------------------

const TOKEN: &str = "ya29.a0-static-token-for-the-fault-rows";

async fn vertex_scripted(script: Vec<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path(GEMINI_PATH.replace("us-central1", "global")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(move |_: &Request| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            script.get(i).or(script.last()).cloned().unwrap()
        })
        .mount(&server)
        .await;
    mount_catch_all(&server, "Vertex").await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhausted_is_retried_then_succeeds() {
    let server =
        vertex_scripted(vec![google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform."), gemini_ok()])
            .await;
    let (code, stdout, stderr) =
        dry_run_review(&config(&server.uri(), "gemini-2.5-flash", None), &[("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(has_finding(&report_of(&stdout)));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_then_fails_with_exit_1() {
    let server = vertex_scripted(vec![google_error(503, "UNAVAILABLE", "The service is currently unavailable.")]).await;
    let (code, _, stderr) =
        dry_run_review(&config(&server.uri(), "gemini-2.5-flash", None), &[("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "max_retries 2 → 3 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_is_exit_4_naming_what_to_check() {
    let server = vertex_scripted(vec![google_error(
        403,
        "PERMISSION_DENIED",
        "Permission 'aiplatform.endpoints.predict' denied on resource.",
    )])
    .await;
    let (code, stdout, stderr) =
        dry_run_review(&config(&server.uri(), "gemini-2.5-flash", None), &[("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)]);
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "never retried");
    assert!(stderr.contains("PERMISSION_DENIED") || stderr.contains("aiplatform.endpoints.predict"), "{stderr}");
    assert!(stderr.contains("roles/aiplatform.user"), "{stderr}");
    assert_clear_of(&[&stdout, &stderr], &[TOKEN]);
}

/// A token must never travel in clear text: a plain-http `base_url` off loopback is refused
/// before any credential is used (exit 2), for both cloud kinds.
#[test]
fn a_plain_http_base_url_off_loopback_is_refused() {
    let vertex = config("http://vertex.internal.example", "gemini-2.5-flash", None);
    let (code, _, stderr) = dry_run_review(&vertex, &[("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("must be an https URL"), "{stderr}");
    let bedrock = "provider: b\nproviders:\n  b:\n    kind: bedrock\n    model: amazon.nova-pro-v1:0\n    region: us-east-1\n    base_url: http://bedrock.internal.example\n";
    let (code, _, stderr) = dry_run_review(
        bedrock,
        &[("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "x".repeat(40).as_str())],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("must be an https URL"), "{stderr}");
}
