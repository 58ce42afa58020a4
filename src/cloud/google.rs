//! Google access tokens for `kind: vertex`, in this order: an access token in
//! `GOOGLE_OAUTH_ACCESS_TOKEN`, used as is; else the Application Default Credentials file named
//! by `GOOGLE_APPLICATION_CREDENTIALS` (what `google-github-actions/auth` writes):
//!
//! - `external_account` (workload identity federation): the subject token (the job's GitHub
//!   OIDC token, read from the file's `credential_source`: a `url` with `headers`, or a `file`;
//!   `format` `text` or `json` with `subject_token_field_name`) is exchanged at Google STS
//!   (`token_url`), then, when the file names `service_account_impersonation_url`, for a
//!   service account's token through IAM Credentials `generateAccessToken`;
//! - `service_account` keys: a JWT grant (RFC 7523) signed RS256 with the key, posted to the
//!   file's `token_uri`.
//!
//! Last, unless `NO_GCE_CHECK=true`, the GCE metadata server (a self-hosted runner on Compute
//! Engine or GKE with workload identity): the attached service account's token from
//! `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`
//! (`GCE_METADATA_HOST` overrides the host) with `Metadata-Flavor: Google`, as the Google auth
//! libraries end their chain ("About the metadata server",
//! <https://cloud.google.com/compute/docs/metadata/overview>). A machine where it does not
//! answer within 2 s has no Google credentials.
//!
//! Tokens are cached until five minutes before they expire. Sources: "Application Default
//! Credentials" and the external account file format
//! (<https://google.aip.dev/auth/4117>); STS `v1/token`
//! (<https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token>, the request
//! fields `grantType`, `audience`, `scope`, `requestedTokenType`, `subjectToken`,
//! `subjectTokenType`); IAM Credentials `generateAccessToken`
//! (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken>);
//! "Using OAuth 2.0 for Server to Server Applications" (the JWT grant).
//!
//! Decision: no OAuth crate. `gcp_auth` and `google-cloud-auth` bring their own hyper or
//! reqwest stacks and token caches; `yup-oauth2` brings hyper and its own TLS. The three flows
//! here are three POSTs on the reqwest client and rustls config already in the tree, and the
//! RS256 signer is the one GitHub App JWTs use ([`crate::github::jwt::sign_rs256`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{client, endpoint, refused, send, CredentialError};
use crate::context::Env;
use crate::env_vars as ev;
use crate::redact::Redactor;

/// The OAuth scope of Vertex AI.
pub(crate) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Tokens are asked again this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where the token comes from. `Debug` never shows a key or token.
enum Source {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`.
    Token(SecretString),
    ServiceAccount {
        client_email: String,
        key_id: Option<String>,
        key: Box<ring::signature::RsaKeyPair>,
        token_uri: String,
    },
    External(Box<ExternalAccount>),
    /// The GCE metadata server at `root` (`http://host[:port]`).
    Metadata {
        root: String,
    },
}

/// The metadata server's name when `GCE_METADATA_HOST` is unset.
const GCE_METADATA_HOST: &str = "metadata.google.internal";
/// Hosts the metadata server may be reached at over plain http (its name and address).
const GCE_METADATA_HOSTS: [&str; 2] = [GCE_METADATA_HOST, "169.254.169.254"];
/// Deadline of a metadata server request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// An `external_account` file's fields we use.
struct ExternalAccount {
    audience: String,
    subject_token_type: String,
    token_url: String,
    impersonation_url: Option<String>,
    subject: SubjectSource,
}

/// `credential_source`: where the subject token is read.
enum SubjectSource {
    /// `url` with `headers` (the request token is a secret).
    Url { url: String, headers: Vec<(String, SecretString)>, json_field: Option<String> },
    /// `file`.
    File { path: PathBuf, json_field: Option<String> },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Token(_) => f.write_str("Token([REDACTED])"),
            Source::ServiceAccount { client_email, .. } => {
                f.debug_struct("ServiceAccount").field("client_email", client_email).finish_non_exhaustive()
            }
            Source::External(e) => f
                .debug_struct("ExternalAccount")
                .field("audience", &e.audience)
                .field("impersonation", &e.impersonation_url.is_some())
                .finish_non_exhaustive(),
            Source::Metadata { root } => f.debug_struct("Metadata").field("root", root).finish(),
        }
    }
}

/// A Google access token source, cached.
#[derive(Debug)]
pub(crate) struct GoogleTokenProvider {
    source: Source,
    /// Where the credentials came from, for messages (`GOOGLE_OAUTH_ACCESS_TOKEN` or the path).
    origin: String,
    redactor: Redactor,
    cache: tokio::sync::Mutex<Option<(SecretString, SystemTime)>>,
}

/// The credentials file (`type` decides the rest).
#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: String,
    // service_account
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    // external_account
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    credential_source: Option<CredentialSource>,
}

#[derive(Deserialize)]
struct CredentialSource {
    url: Option<String>,
    file: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Format {
    #[serde(rename = "type")]
    kind: String,
    subject_token_field_name: Option<String>,
}

impl GoogleTokenProvider {
    /// Reads the credentials (see the module docs), registering every secret in them with
    /// `redactor`. Errors (fatal): none set, a file that cannot be read or is not a known
    /// kind, a key that is not an RSA PKCS#8 key, a non-https endpoint.
    pub(crate) fn resolve(env: &Env, redactor: &Redactor) -> Result<Self, CredentialError> {
        let value = |name: &str| env.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let make = |source, origin: String| Self {
            source,
            origin,
            redactor: redactor.clone(),
            cache: tokio::sync::Mutex::new(None),
        };
        if let Some(token) = value(ev::GOOGLE_OAUTH_ACCESS_TOKEN) {
            let token = SecretString::from(token);
            super::mask(redactor, &token);
            return Ok(make(Source::Token(token), format!("`{}`", ev::GOOGLE_OAUTH_ACCESS_TOKEN)));
        }
        let Some(path) = value(ev::GOOGLE_APPLICATION_CREDENTIALS) else {
            if !value(ev::NO_GCE_CHECK).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                let root =
                    format!("http://{}", value(ev::GCE_METADATA_HOST).unwrap_or_else(|| GCE_METADATA_HOST.into()));
                super::metadata_endpoint(&root, "the GCE metadata server", &GCE_METADATA_HOSTS)?;
                return Ok(make(Source::Metadata { root: root.clone() }, format!("the GCE metadata server at {root}")));
            }
            return Err(no_credentials(&format!(
                "{} and {} are not set, and {} is true",
                ev::GOOGLE_APPLICATION_CREDENTIALS,
                ev::GOOGLE_OAUTH_ACCESS_TOKEN,
                ev::NO_GCE_CHECK
            )));
        };
        let origin = format!("the credentials file {path} ({})", ev::GOOGLE_APPLICATION_CREDENTIALS);
        let source = read_file(Path::new(&path), &origin, redactor)?;
        Ok(make(source, origin))
    }

    /// What to check when Google refuses the token, for the `help:` line.
    fn explain(&self) -> String {
        match &self.source {
            Source::Token(_) => format!(
                "the token comes from {}: check that it is current and has the cloud-platform scope, and that its principal has `roles/aiplatform.user` on the project",
                self.origin
            ),
            Source::ServiceAccount { client_email, .. } => format!(
                "the token is {client_email}'s, from {}: check that it has `roles/aiplatform.user` on the project and that the model is enabled in Model Garden",
                self.origin
            ),
            Source::External(e) => format!(
                "the token comes from workload identity federation ({}, audience `{}`): check the provider's attribute condition for this repository, that the principal may impersonate the service account (`roles/iam.workloadIdentityUser`), and that the service account has `roles/aiplatform.user`",
                self.origin, e.audience
            ),
            Source::Metadata { .. } => format!(
                "the token is the machine's service account's, from {}: check that the account has `roles/aiplatform.user` on the project and that the instance allows the cloud-platform scope",
                self.origin
            ),
        }
    }

    /// A current access token (cached until five minutes before expiry).
    async fn current(&self) -> Result<SecretString, CredentialError> {
        let mut cache = self.cache.lock().await;
        if let Some((token, _)) = cache.as_ref().filter(|(_, at)| fresh(*at)) {
            return Ok(token.clone());
        }
        let (token, expires_at) = match &self.source {
            Source::Token(token) => return Ok(token.clone()),
            Source::ServiceAccount { client_email, key_id, key, token_uri } => {
                jwt_grant(client_email, key_id.as_deref(), key, token_uri).await?
            }
            Source::Metadata { root } => metadata_token(root).await?,
            Source::External(e) => {
                let subject = subject_token(&e.subject, &self.redactor).await?;
                let (sts_token, expires) = exchange(e, &subject).await?;
                super::mask(&self.redactor, &sts_token);
                match &e.impersonation_url {
                    Some(url) => impersonate(url, &sts_token).await?,
                    None => (sts_token, expires),
                }
            }
        };
        super::mask(&self.redactor, &token);
        *cache = Some((token.clone(), expires_at));
        Ok(token)
    }
}

/// "No Google credentials", with why and what to do.
fn no_credentials(why: &str) -> CredentialError {
    CredentialError::fatal(format!("no Google credentials: {why}")).with_help(
        "use google-github-actions/auth (workload identity federation) before agentctl, with `permissions: id-token: write`, or run on a machine with a service account",
    )
}

/// The attached service account's token from the GCE metadata server at `root`. Nothing
/// answering (no such server here) is no credentials; any other failure names the server.
async fn metadata_token(root: &str) -> Result<(SecretString, SystemTime), CredentialError> {
    let what = "the GCE metadata server";
    let mut url = super::metadata_endpoint(root, what, &GCE_METADATA_HOSTS)?
        .join("/computeMetadata/v1/instance/service-accounts/default/token")
        .map_err(|e| CredentialError::fatal(format!("{what}: {e}")))?;
    url.query_pairs_mut().append_pair("scopes", CLOUD_PLATFORM_SCOPE);
    let request = client()?.get(url).header("metadata-flavor", "Google").timeout(METADATA_TIMEOUT);
    let (status, body) = send(request, what).await.map_err(|e| match e.transient {
        true => no_credentials(&format!("{what} at {root} did not answer")),
        false => e,
    })?;
    super::oauth_answer(what, status, &body)
}

impl super::TokenSource for GoogleTokenProvider {
    fn token(&self) -> futures::future::BoxFuture<'_, Result<SecretString, CredentialError>> {
        Box::pin(self.current())
    }

    fn help(&self) -> String {
        self.explain()
    }
}

fn fresh(at: SystemTime) -> bool {
    at.duration_since(SystemTime::now()).is_ok_and(|left| left > REFRESH_MARGIN)
}

/// Reads and checks a credentials file.
fn read_file(path: &Path, origin: &str, redactor: &Redactor) -> Result<Source, CredentialError> {
    let fail = |why: String| CredentialError::fatal(format!("{origin}: {why}"));
    let text = super::read_capped(path, origin)?;
    // serde_json's messages quote no values, only positions.
    let file: CredentialsFile =
        serde_json::from_str(&text).map_err(|e| fail(format!("not a credentials file (JSON with `type`): {e}")))?;
    let need = |v: Option<String>, field: &str| {
        v.filter(|s| !s.trim().is_empty()).ok_or_else(|| fail(format!("`{field}` is missing")))
    };
    match file.kind.as_str() {
        "service_account" => {
            let pem = SecretString::from(need(file.private_key, "private_key")?);
            super::mask(redactor, &pem);
            use rustls_pki_types::pem::PemObject as _;
            let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.expose_secret().as_bytes())
                .map_err(|_| fail("`private_key` is not a PEM PKCS#8 private key".into()))?;
            let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                .map_err(|e| fail(format!("`private_key` is not a usable RSA key ({e})")))?;
            let token_uri = file.token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
            endpoint(&token_uri, "the credentials file's `token_uri`")?;
            Ok(Source::ServiceAccount {
                client_email: need(file.client_email, "client_email")?,
                key_id: file.private_key_id,
                key: Box::new(key),
                token_uri,
            })
        }
        "external_account" => {
            let source = file.credential_source.ok_or_else(|| fail("`credential_source` is missing".into()))?;
            let json_field = match source.format {
                Some(Format { kind, subject_token_field_name }) if kind == "json" => {
                    Some(subject_token_field_name.ok_or_else(|| fail("`format.subject_token_field_name` is missing".into()))?)
                }
                Some(Format { kind, .. }) if kind != "text" => {
                    return Err(fail(format!("`credential_source.format.type` `{kind}` is not `text` or `json`")))
                }
                _ => None,
            };
            let subject = match (source.url, source.file) {
                (Some(url), _) => {
                    endpoint(&url, "the credentials file's `credential_source.url`")?;
                    let headers = source
                        .headers
                        .into_iter()
                        .map(|(k, v)| {
                            // The credential inside `Bearer …` is masked on its own too.
                            if let Some((_, token)) = v.split_once(' ') {
                                super::mask(redactor, &SecretString::from(token.to_string()));
                            }
                            let v = SecretString::from(v);
                            super::mask(redactor, &v);
                            (k, v)
                        })
                        .collect();
                    SubjectSource::Url { url, headers, json_field }
                }
                (None, Some(file)) => SubjectSource::File { path: PathBuf::from(file), json_field },
                (None, None) => {
                    return Err(fail(
                        "`credential_source` has neither `url` nor `file` (executable and AWS sources are not supported)"
                            .into(),
                    ))
                }
            };
            let token_url = file.token_url.unwrap_or_else(|| "https://sts.googleapis.com/v1/token".into());
            endpoint(&token_url, "the credentials file's `token_url`")?;
            if let Some(url) = &file.service_account_impersonation_url {
                endpoint(url, "the credentials file's `service_account_impersonation_url`")?;
            }
            Ok(Source::External(Box::new(ExternalAccount {
                audience: need(file.audience, "audience")?,
                subject_token_type: file.subject_token_type.unwrap_or_else(|| "urn:ietf:params:oauth:token-type:jwt".into()),
                token_url,
                impersonation_url: file.service_account_impersonation_url,
                subject,
            })))
        }
        other => Err(fail(format!(
            "credentials of type `{other}` are not supported (use `external_account` from google-github-actions/auth, a `service_account` key, or {})",
            ev::GOOGLE_OAUTH_ACCESS_TOKEN
        ))),
    }
}

/// The subject token from `credential_source`, registered with `redactor`.
async fn subject_token(source: &SubjectSource, redactor: &Redactor) -> Result<SecretString, CredentialError> {
    let what = "the subject token (credential_source)";
    let (text, field) = match source {
        SubjectSource::Url { url, headers, json_field } => {
            let mut request = client()?.get(endpoint(url, what)?);
            for (name, value) in headers {
                let mut value = http::HeaderValue::from_str(value.expose_secret())
                    .map_err(|_| CredentialError::fatal(format!("{what}: header `{name}` cannot be sent")))?;
                value.set_sensitive(true);
                request = request.header(name.as_str(), value);
            }
            let (status, body) = send(request, what).await?;
            if !(200..300).contains(&status) {
                return Err(refused(what, status, &redactor.redact(&body)));
            }
            (body, json_field)
        }
        SubjectSource::File { path, json_field } => (super::read_capped(path, what)?, json_field),
    };
    let token = match field {
        Some(field) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get(field).and_then(|t| t.as_str()).map(str::to_string))
            .ok_or_else(|| CredentialError::fatal(format!("{what}: the answer has no string `{field}`")))?,
        None => text.trim().to_string(),
    };
    if token.is_empty() {
        return Err(CredentialError::fatal(format!("{what}: empty")));
    }
    let token = SecretString::from(token);
    super::mask(redactor, &token);
    Ok(token)
}

/// The JWT grant of a service-account key.
async fn jwt_grant(
    client_email: &str,
    key_id: Option<&str>,
    key: &ring::signature::RsaKeyPair,
    token_uri: &str,
) -> Result<(SecretString, SystemTime), CredentialError> {
    let what = "the service-account token request (token_uri)";
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let header = match key_id {
        Some(kid) => json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string(),
        None => json!({"alg": "RS256", "typ": "JWT"}).to_string(),
    };
    let claims = json!({
        "iss": client_email,
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let assertion = crate::github::jwt::sign_rs256(key, &header, &claims).map_err(CredentialError::fatal)?;
    let form =
        [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.expose_secret())];
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let request = client()?
        .post(endpoint(token_uri, what)?)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let (status, body) = send(request, what).await?;
    super::oauth_answer(what, status, &body)
}

/// The STS token exchange, fields as the STS API reference names them.
async fn exchange(e: &ExternalAccount, subject: &SecretString) -> Result<(SecretString, SystemTime), CredentialError> {
    let what = "Google STS (token_url)";
    let body = json!({
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": e.audience,
        "scope": CLOUD_PLATFORM_SCOPE,
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        "subjectToken": subject.expose_secret(),
        "subjectTokenType": e.subject_token_type,
    });
    let request = client()?.post(endpoint(&e.token_url, what)?).json(&body);
    let (status, text) = send(request, what).await?;
    super::oauth_answer(what, status, &text)
}

/// IAM Credentials `generateAccessToken` with the federated token.
async fn impersonate(url: &str, federated: &SecretString) -> Result<(SecretString, SystemTime), CredentialError> {
    let what = "IAM Credentials generateAccessToken (service_account_impersonation_url)";
    let request = client()?
        .post(endpoint(url, what)?)
        .bearer_auth(federated.expose_secret())
        .json(&json!({"scope": [CLOUD_PLATFORM_SCOPE], "lifetime": "3600s"}));
    let (status, text) = send(request, what).await?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        access_token: String,
        expire_time: String,
    }
    if !(200..300).contains(&status) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let detail =
            format!("{} {}", v["error"]["status"].as_str().unwrap_or(""), v["error"]["message"].as_str().unwrap_or(""));
        return Err(refused(what, status, detail.trim()));
    }
    let a: Answer = serde_json::from_str(&text)
        .map_err(|_| CredentialError::fatal(format!("{what}: the answer has no `accessToken`/`expireTime`")))?;
    let expires = chrono::DateTime::parse_from_rfc3339(&a.expire_time)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        .ok_or_else(|| CredentialError::fatal(format!("{what}: `expireTime` is not an RFC 3339 time")))?;
    if a.access_token.trim().is_empty() {
        return Err(CredentialError::fatal(format!("{what}: empty `accessToken`")));
    }
    Ok((SecretString::from(a.access_token), expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_file(text: &str) -> Result<GoogleTokenProvider, CredentialError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adc.json");
        std::fs::write(&path, text).unwrap();
        let env = Env::from_pairs([("GOOGLE_APPLICATION_CREDENTIALS", path.to_str().unwrap())]);
        GoogleTokenProvider::resolve(&env, &Redactor::new())
    }

    #[test]
    fn token_variable_comes_first() {
        let env = Env::from_pairs([
            ("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.a0-token-from-the-environment"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent"),
        ]);
        let redactor = Redactor::new();
        let p = GoogleTokenProvider::resolve(&env, &redactor).unwrap();
        assert!(matches!(p.source, Source::Token(_)));
        assert!(!redactor.redact("ya29.a0-token-from-the-environment").contains("ya29"));
        assert!(!format!("{p:?}").contains("ya29"));
    }

    #[test]
    fn bad_files_say_what_is_wrong_without_quoting_secrets() {
        let off = Env::from_pairs([("NO_GCE_CHECK", "true")]);
        let e = GoogleTokenProvider::resolve(&off, &Redactor::new()).unwrap_err();
        assert!(e.message.contains("no Google credentials"), "{e}");
        // Without it, the metadata server is the last resort, reachable over plain http only
        // at its own name and address (or loopback).
        let p = GoogleTokenProvider::resolve(&Env::from_pairs([]), &Redactor::new()).unwrap();
        assert!(matches!(&p.source, Source::Metadata { root } if root == "http://metadata.google.internal"), "{p:?}");
        let spoof = Env::from_pairs([("GCE_METADATA_HOST", "metadata.example.com")]);
        assert!(GoogleTokenProvider::resolve(&spoof, &Redactor::new()).unwrap_err().message.contains("https"));
        let e = resolve_file(r#"{"type": "authorized_user", "refresh_token": "1//secret-refresh"}"#).unwrap_err();
        assert!(
            e.message.contains("`authorized_user` are not supported") && !e.message.contains("secret-refresh"),
            "{e}"
        );
        let e = resolve_file(r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nnotbase64!!\n-----END PRIVATE KEY-----\n"}"#).unwrap_err();
        assert!(e.message.contains("`private_key`") && !e.message.contains("notbase64"), "{e}");
        let e = resolve_file(r#"{"type": "external_account", "audience": "//iam", "credential_source": {"url": "http://metadata.example.com/token"}}"#).unwrap_err();
        assert!(e.message.contains("must be an https URL"), "{e}");
        let e = resolve_file(r#"{"type": "external_account", "audience": "//iam", "credential_source": {"executable": {"command": "rm -rf /"}}}"#).unwrap_err();
        assert!(e.message.contains("neither `url` nor `file`"), "{e}");
        let e = resolve_file("not json").unwrap_err();
        assert!(e.message.contains("not a credentials file"), "{e}");
    }

    #[test]
    fn external_account_headers_are_secrets() {
        let redactor = Redactor::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adc.json");
        std::fs::write(
            &path,
            r#"{"type": "external_account", "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/g",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": "https://sts.googleapis.com/v1/token",
                "credential_source": {"url": "https://pipelines.actions.githubusercontent.com/x/_apis/token?api-version=2.0&audience=a",
                  "headers": {"Authorization": "Bearer request-token-in-the-adc-file"},
                  "format": {"type": "json", "subject_token_field_name": "value"}}}"#,
        )
        .unwrap();
        let env = Env::from_pairs([("GOOGLE_APPLICATION_CREDENTIALS", path.to_str().unwrap())]);
        let p = GoogleTokenProvider::resolve(&env, &redactor).unwrap();
        assert!(matches!(p.source, Source::External(_)));
        assert!(!redactor.redact("Bearer request-token-in-the-adc-file").contains("request-token"));
        assert!(p.explain().contains("attribute condition"));
    }
}
