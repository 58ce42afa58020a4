//! `kind: azure-openai` without an API key: a Microsoft Entra token from workload identity
//! federation (the job's GitHub OIDC token, or `AZURE_FEDERATED_TOKEN_FILE`) through a fake
//! Entra token endpoint (`AZURE_AUTHORITY_HOST`) that checks the client credentials grant, sent
//! as `Authorization: Bearer` to a fake Azure OpenAI deployment that refuses `api-key`.

use crate::common::*;
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "00000000-aaaa-bbbb-cccc-000000000001";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhcGk6Ly9BenVyZUFEVG9rZW5FeGNoYW5nZSJ9.c2lnLWZha2U";
const ENTRA_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.entra-access-token-for-cognitive-services.sig0123";

fn config(base_url: &str, extra: &str) -> String {
    format!(
        "provider: az\nproviders:\n  az:\n    kind: azure-openai\n    model: gpt-4o\n    base_url: {base_url}\n    deployment: review-4o\n    max_retries: 0\n{extra}"
    )
}

/// A fake Entra token endpoint for [`TENANT`] that answers the client credentials grant of
/// [`CLIENT`] with the assertion `jwt` by [`ENTRA_TOKEN`], once.
async fn fake_entra(jwt: &str) -> MockServer {
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains(format!("client_id={CLIENT}&").as_str()))
        .and(body_string_contains("scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default&"))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&",
        ))
        .and(body_string_contains(format!("client_assertion={jwt}&").as_str()))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ENTRA_TOKEN}),
        ))
        .expect(1)
        .mount(&entra)
        .await;
    mount_catch_all(&entra, "Entra").await;
    entra
}

/// A fake deployment that takes only [`ENTRA_TOKEN`] as a bearer token and answers `answer`.
async fn fake_deployment(answer: ResponseTemplate) -> MockServer {
    let azure = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/review-4o/chat/completions"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("authorization", format!("Bearer {ENTRA_TOKEN}").as_str()))
        .respond_with(answer)
        .mount(&azure)
        .await;
    mount_catch_all(&azure, "Azure OpenAI").await;
    azure
}

fn chat_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-entra", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": division_answer().to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 500, "completion_tokens": 80, "total_tokens": 580}
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_through_workload_identity_federation_with_the_jobs_oidc_token() {
    const REQUEST_TOKEN: &str = "ghs-oidc-request-token-for-entra-0123456789";
    let (_github, request_url) = fake_github_oidc(REQUEST_TOKEN, "api://AzureADTokenExchange", JWT).await;
    let entra = fake_entra(JWT).await;
    let azure = fake_deployment(chat_ok()).await;
    let extra = format!("    client_id: {CLIENT}\n    tenant_id: {TENANT}\n");
    let (code, stdout, stderr) = dry_run_review(
        &config(&azure.uri(), &extra),
        &[
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
            ("AZURE_AUTHORITY_HOST", &entra.uri()),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let report = report_of(&stdout);
    assert!(report["findings"].as_array().unwrap().iter().any(|f| f["title"] == "Division by zero"), "{report}");
    let sent = azure.received_requests().await.unwrap();
    assert!(sent.len() == 1 && !sent[0].headers.contains_key("api-key"), "no key header with a token");
    assert_masked_and_clear(&[&stdout, &stderr], &[REQUEST_TOKEN, JWT, ENTRA_TOKEN]);
}

/// AKS workload identity: the environment's app, tenant and token file. A grant Entra refuses
/// (no federated credential matches) is exit 4 naming what to check, before any model request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_token_file_and_a_refused_grant() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "azure-identity-token", format!("{JWT}\n"));
    let entra = fake_entra(JWT).await;
    let azure = fake_deployment(chat_ok()).await;
    let env = [
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", &entra.uri()),
    ];
    let (code, stdout, stderr) = dry_run_review(&config(&azure.uri(), ""), &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert_clear_of(&[&stdout, &stderr], &[JWT, ENTRA_TOKEN]);

    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:ci:runner'.",
            "error_codes": [700213]
        })))
        .expect(1)
        .mount(&refusing)
        .await;
    let untouched = MockServer::start().await;
    mount_catch_all(&untouched, "Azure OpenAI (no request without a token)").await;
    let env = [
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", &refusing.uri()),
    ];
    let (code, _, stderr) = dry_run_review(&config(&untouched.uri(), ""), &env);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("AADSTS700213") && stderr.contains("federated credential"), "{stderr}");
    assert!(!stderr.contains(JWT), "{stderr}");
    assert!(untouched.received_requests().await.unwrap().is_empty());
}

/// Azure refuses the token (the app lacks the role): exit 4 naming the role; and an entry with
/// neither a key nor an app still says the key is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_names_the_role_and_no_key_nor_app_is_a_missing_key() {
    let azure = fake_deployment(ResponseTemplate::new(401).set_body_json(json!({
        "error": {"code": "PermissionDenied", "message": "Principal does not have access to API/Operation."}
    })))
    .await;
    let (code, _, stderr) = dry_run_review(
        &config(&azure.uri(), ""),
        &[("AZURE_OPENAI_AD_TOKEN", ENTRA_TOKEN), ("GITHUB_ACTIONS", "true")],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("Cognitive Services OpenAI User"), "{stderr}");
    assert_masked_and_clear(&[&stderr], &[ENTRA_TOKEN]);

    let (code, _, stderr) = dry_run_review(&config(&azure.uri(), ""), &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("AZURE_OPENAI_API_KEY"), "{stderr}");
}
