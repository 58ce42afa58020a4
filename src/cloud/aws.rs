//! AWS credentials for `kind: bedrock`, in this order:
//! 1. the environment's `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` (what
//!    `aws-actions/configure-aws-credentials` exports);
//! 2. `role_arn:` with the job's GitHub OIDC token (audience `sts.amazonaws.com`), when the
//!    job can ask for one (`permissions: id-token: write`);
//! 3. the AWS SDKs' web identity file: `AWS_WEB_IDENTITY_TOKEN_FILE` assumed as `AWS_ROLE_ARN`
//!    (else `role_arn:`), as EKS (IRSA) and self-hosted runners with a platform identity set
//!    it; the file is read again at every refresh, since the platform rotates it;
//! 4. the machine's own credentials ([`super::aws_metadata`]: the container endpoint, then the
//!    EC2 instance profile), used as they are, or with `role_arn:` to sign an STS `AssumeRole`
//!    of it (an instance role assuming the Bedrock role).
//!
//! Decision: `role_arn:` with GitHub's token comes before the file because the entry names
//! it for this tool, while the file is the machine's ambient identity. Temporary credentials
//! are kept until five minutes before they expire and then asked again.
//!
//! Source: the STS API reference, "AssumeRoleWithWebIdentity"
//! (<https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html>):
//! an unsigned Query API call (`Action`, `Version=2011-06-15`, `RoleArn`, `RoleSessionName`,
//! `WebIdentityToken`, `DurationSeconds`) answered in XML (parsed with `quick-xml`); "AssumeRole"
//! the same, without the token and signed with SigV4 for service `sts`. The
//! endpoint is the regional `https://sts.{region}.amazonaws.com/`, or `AWS_ENDPOINT_URL_STS` /
//! `AWS_ENDPOINT_URL` as the AWS SDKs read them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;

use super::aws_metadata::MetadataSource;
use super::oidc::OidcSource;
use super::{client, endpoint, send, CredentialError};
use crate::context::Env;
use crate::env_vars as ev;
use crate::redact::Redactor;

/// The audience AWS expects of a GitHub OIDC token.
pub(crate) const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Lifetime asked of STS, seconds (the role's maximum session duration must allow it; one hour
/// is every role's minimum maximum).
const SESSION_SECS: u64 = 3600;
/// The `help:` line of "no AWS credentials", wherever the chain ran out.
pub(super) const NO_CREDENTIALS_HELP: &str = "use aws-actions/configure-aws-credentials, or set `role_arn:` and `permissions: id-token: write`, or attach an instance profile to the runner";
/// Credentials are asked again this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// One set of AWS credentials. `Debug` shows the access key id only.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    /// `None` for long-lived keys.
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"[REDACTED]")
            .field("has_session_token", &self.session_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where credentials come from.
#[derive(Debug, Clone)]
enum Source {
    /// The environment's keys, used as they are.
    Static(AwsCredentials),
    /// A role assumed with a web identity token.
    WebIdentity { role_arn: String, session_name: String, token: WebToken, sts_url: String },
    /// The machine's own: the container endpoint or the EC2 instance profile.
    Machine(MetadataSource),
    /// `role_arn:` assumed (`sts:AssumeRole`) with the machine's own credentials.
    Chained { role_arn: String, session_name: String, sts_url: String, region: String, base: MetadataSource },
}

/// Where the web identity token comes from.
#[derive(Debug, Clone)]
enum WebToken {
    /// The job's GitHub OIDC token (`role_arn:`).
    GitHub(OidcSource),
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, read at each refresh.
    File(PathBuf),
}

impl WebToken {
    /// A current token, registered with `redactor`.
    async fn get(&self, redactor: &Redactor) -> Result<SecretString, CredentialError> {
        match self {
            WebToken::GitHub(oidc) => oidc.token(STS_AUDIENCE, redactor).await,
            WebToken::File(path) => super::read_token_file(path, ev::AWS_WEB_IDENTITY_TOKEN_FILE, redactor),
        }
    }
}

/// Credentials of one provider entry, cached and refreshed before expiry.
#[derive(Debug)]
pub(crate) struct AwsCredentialProvider {
    source: Source,
    redactor: Redactor,
    cache: tokio::sync::Mutex<Option<AwsCredentials>>,
}

impl AwsCredentialProvider {
    /// Picks the source, in the module's order: the environment's keys (registered with
    /// `redactor` now), else `role_arn` with the job's OIDC token, else the web identity file,
    /// else the machine's credentials (as they are, or assuming `role_arn`). Errors (a fatal
    /// [`CredentialError`] with help): none is available (the metadata service turned off with
    /// `AWS_EC2_METADATA_DISABLED`), or a credential endpoint that is not https.
    pub(crate) fn resolve(
        env: &Env,
        role_arn: Option<&str>,
        region: &str,
        redactor: &Redactor,
    ) -> Result<Self, CredentialError> {
        let value = |name: &str| env.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        if let (Some(access_key_id), Some(secret)) = (value(ev::AWS_ACCESS_KEY_ID), value(ev::AWS_SECRET_ACCESS_KEY)) {
            let creds = AwsCredentials {
                access_key_id,
                secret_access_key: SecretString::from(secret),
                session_token: value(ev::AWS_SESSION_TOKEN).map(SecretString::from),
                expires_at: None,
            };
            register(redactor, &creds);
            return Ok(Self::new(Source::Static(creds), redactor));
        }
        let github =
            role_arn.and_then(|arn| Some((arn.to_string(), WebToken::GitHub(OidcSource::from_env(env, redactor)?))));
        let file = || {
            let path = value(ev::AWS_WEB_IDENTITY_TOKEN_FILE)?;
            let arn = value(ev::AWS_ROLE_ARN).or_else(|| role_arn.map(str::to_string))?;
            Some((arn, WebToken::File(PathBuf::from(path))))
        };
        let sts_url = value(ev::AWS_ENDPOINT_URL_STS)
            .or_else(|| value(ev::AWS_ENDPOINT_URL))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com/"));
        let Some((role_arn_used, token)) = github.or_else(file) else {
            if let Some(machine) = MetadataSource::from_env(env, redactor)? {
                let source = match role_arn {
                    None => Source::Machine(machine),
                    Some(arn) => {
                        endpoint(&sts_url, "the STS endpoint")?;
                        let (role_arn, session_name, region) = (arn.to_string(), session_name(env), region.to_string());
                        Source::Chained { role_arn, session_name, sts_url, region, base: machine }
                    }
                };
                return Ok(Self::new(source, redactor));
            }
            return Err(match role_arn {
                Some(_) => CredentialError::fatal(format!(
                    "`role_arn` needs the job's OIDC token, and {} / {} are not set (nor {})",
                    ev::ACTIONS_ID_TOKEN_REQUEST_URL,
                    ev::ACTIONS_ID_TOKEN_REQUEST_TOKEN,
                    ev::AWS_WEB_IDENTITY_TOKEN_FILE
                ))
                .with_help("give the job `permissions: id-token: write`"),
                None => CredentialError::fatal(format!(
                    "no AWS credentials: {} and {} are not set, the entry has no `role_arn`, there is no {} with {}, and {} is true",
                    ev::AWS_ACCESS_KEY_ID,
                    ev::AWS_SECRET_ACCESS_KEY,
                    ev::AWS_WEB_IDENTITY_TOKEN_FILE,
                    ev::AWS_ROLE_ARN,
                    ev::AWS_EC2_METADATA_DISABLED
                ))
                .with_help(NO_CREDENTIALS_HELP),
            });
        };
        endpoint(&sts_url, "the STS endpoint")?;
        let source = Source::WebIdentity { role_arn: role_arn_used, session_name: session_name(env), token, sts_url };
        Ok(Self::new(source, redactor))
    }

    fn new(source: Source, redactor: &Redactor) -> Self {
        Self { source, redactor: redactor.clone(), cache: tokio::sync::Mutex::new(None) }
    }

    /// What to check when AWS refuses these credentials, for the `help:` line.
    pub(crate) fn help(&self) -> String {
        match &self.source {
            Source::Static(_) => format!(
                "the credentials come from {} / {}: check that the identity is allowed `bedrock:InvokeModel` on this model in this region, and that the model's access is granted in the Bedrock console",
                ev::AWS_ACCESS_KEY_ID,
                ev::AWS_SECRET_ACCESS_KEY
            ),
            Source::WebIdentity { role_arn, token: WebToken::GitHub(_), .. } => format!(
                "the credentials come from assuming `{role_arn}` with the job's GitHub OIDC token: check the role's trust policy (principal `token.actions.githubusercontent.com`, `aud` = `{STS_AUDIENCE}`, the `sub` of this repository and ref) and that the role is allowed `bedrock:InvokeModel` on this model"
            ),
            Source::WebIdentity { role_arn, token: WebToken::File(_), .. } => format!(
                "the credentials come from assuming `{role_arn}` with the token in {}: check that the role's trust policy names that token's issuer as a federated principal, with its `aud` and `sub`, and that the role is allowed `bedrock:InvokeModel` on this model",
                ev::AWS_WEB_IDENTITY_TOKEN_FILE
            ),
            Source::Machine(machine) => format!(
                "the credentials come from {}: check that its role is allowed `bedrock:InvokeModel` on this model in this region",
                machine.describe()
            ),
            Source::Chained { role_arn, base, .. } => format!(
                "the credentials come from assuming `{role_arn}` (`sts:AssumeRole`) with {}: check that the role's trust policy names that identity, that the identity is allowed `sts:AssumeRole` on it, and that the role is allowed `bedrock:InvokeModel` on this model",
                base.describe()
            ),
        }
    }

    /// Current credentials: the static ones, or the cached temporary ones while they have more
    /// than five minutes left, else new ones (`AssumeRoleWithWebIdentity`, or the machine's).
    pub(crate) async fn credentials(&self) -> Result<AwsCredentials, CredentialError> {
        if let Source::Static(creds) = &self.source {
            return Ok(creds.clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some(creds) = cache.as_ref().filter(|c| fresh(c.expires_at)) {
            return Ok(creds.clone());
        }
        let creds = match &self.source {
            Source::Static(creds) => creds.clone(),
            Source::WebIdentity { role_arn, session_name, token, sts_url } => {
                let token = token.get(&self.redactor).await?;
                assume_role_with_web_identity(sts_url, role_arn, session_name, &token).await?
            }
            Source::Machine(machine) => machine.credentials(&self.redactor).await?,
            Source::Chained { role_arn, session_name, sts_url, region, base } => {
                let base = base.credentials(&self.redactor).await.map_err(|e| CredentialError {
                    message: format!(
                        "`role_arn` needs the job's OIDC token ({} / {} are not set) or the machine's credentials, and {}",
                        ev::ACTIONS_ID_TOKEN_REQUEST_URL,
                        ev::ACTIONS_ID_TOKEN_REQUEST_TOKEN,
                        e.message
                    ),
                    transient: e.transient,
                    help: Some("give the job `permissions: id-token: write`, or run it on a machine whose role may assume this one".into()),
                })?;
                register(&self.redactor, &base);
                assume_role(sts_url, region, role_arn, session_name, &base).await?
            }
        };
        register(&self.redactor, &creds);
        *cache = Some(creds.clone());
        Ok(creds)
    }
}

/// Whether credentials expiring at `at` are still good for more than [`REFRESH_MARGIN`].
fn fresh(at: Option<SystemTime>) -> bool {
    at.is_none_or(|at| at.duration_since(SystemTime::now()).is_ok_and(|left| left > REFRESH_MARGIN))
}

/// Registers every part of `creds` with the redactor and the runner's masks.
fn register(redactor: &Redactor, creds: &AwsCredentials) {
    super::mask(redactor, &SecretString::from(creds.access_key_id.clone()));
    super::mask(redactor, &creds.secret_access_key);
    if let Some(token) = &creds.session_token {
        super::mask(redactor, token);
    }
}

/// `RoleSessionName`: `AWS_ROLE_SESSION_NAME` when set, else `agentctl-{GITHUB_RUN_ID}`, so
/// CloudTrail ties a call to its workflow run; only the characters STS allows
/// (`[\w+=,.@-]`), at most 64.
fn session_name(env: &Env) -> String {
    let allowed = |v: &str, max: usize| -> String {
        v.chars().filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c)).take(max).collect()
    };
    let named = allowed(env.get(ev::AWS_ROLE_SESSION_NAME).unwrap_or_default(), 64);
    if named.len() >= 2 {
        return named;
    }
    let run = allowed(env.get(ev::GITHUB_RUN_ID).unwrap_or_default(), 55);
    if run.is_empty() {
        "agentctl".into()
    } else {
        format!("agentctl-{run}")
    }
}

/// An `Expiration` (ISO 8601 UTC, e.g. `2026-12-07T13:00:00Z`) as a time; `what` names the
/// answer in the error (fatal).
pub(super) fn expiry(text: &str, what: &str) -> Result<SystemTime, CredentialError> {
    let at = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|_| CredentialError::fatal(format!("{what}: `Expiration` is not an ISO 8601 time")))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).unwrap_or(0)))
}

/// STS's answer: `AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials`,
/// or `AssumeRoleResponse/AssumeRoleResult/Credentials`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeResponse {
    #[serde(rename = "AssumeRoleWithWebIdentityResult", alias = "AssumeRoleResult")]
    result: AssumeResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    /// ISO 8601 UTC, e.g. `2026-12-07T13:00:00Z`.
    expiration: String,
}

/// STS's error document: `ErrorResponse/Error/{Type, Code, Message}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: StsError,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsError {
    code: String,
    #[serde(default)]
    message: String,
}

/// One `AssumeRoleWithWebIdentity` call (unsigned: the token is the proof).
async fn assume_role_with_web_identity(
    sts_url: &str,
    role_arn: &str,
    session_name: &str,
    token: &SecretString,
) -> Result<AwsCredentials, CredentialError> {
    use secrecy::ExposeSecret;
    let params =
        [("RoleArn", role_arn), ("RoleSessionName", session_name), ("WebIdentityToken", token.expose_secret())];
    sts(sts_url, "AssumeRoleWithWebIdentity", &params, None).await
}

/// One `AssumeRole` call, signed with `base` (the machine's credentials) for STS in `region`
/// ("AssumeRole", <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>).
async fn assume_role(
    sts_url: &str,
    region: &str,
    role_arn: &str,
    session_name: &str,
    base: &AwsCredentials,
) -> Result<AwsCredentials, CredentialError> {
    let params = [("RoleArn", role_arn), ("RoleSessionName", session_name)];
    sts(sts_url, "AssumeRole", &params, Some((base, region))).await
}

/// One STS Query API call of `action` with `params` (and `Version`, `DurationSeconds`),
/// SigV4-signed when `signed_by` gives credentials and a region. Errors: STS's code and
/// message (`AccessDenied`, `InvalidIdentityToken`, `ExpiredTokenException` are fatal; 5xx,
/// `Throttling` and `IDPCommunicationError` transient); an answer without credentials.
async fn sts(
    sts_url: &str,
    action: &str,
    params: &[(&str, &str)],
    signed_by: Option<(&AwsCredentials, &str)>,
) -> Result<AwsCredentials, CredentialError> {
    let what = format!("STS {action}");
    let what = what.as_str();
    let url = endpoint(sts_url, "the STS endpoint")?;
    let duration = SESSION_SECS.to_string();
    let form = [("Action", action), ("Version", "2011-06-15")]
        .into_iter()
        .chain(params.iter().copied())
        .chain([("DurationSeconds", duration.as_str())]);
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let http = client()?;
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .header("accept", "text/xml")
        .body(body)
        .build()
        .map_err(|e| CredentialError::fatal(format!("{what}: {e}")))?;
    if let Some((creds, region)) = signed_by {
        sign(&mut request, creds, region, "sts", SystemTime::now())?;
    }
    let (status, text) = send(reqwest::RequestBuilder::from_parts(http, request), what).await?;
    if !(200..300).contains(&status) {
        let (code, message) = match quick_xml::de::from_str::<ErrorResponse>(&text) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => ("(no STS error document)".to_string(), String::new()),
        };
        let mut err = super::refused(what, status, &format!("{code}: {message}"));
        err.transient |= code == "IDPCommunicationError" || code == "Throttling";
        return Err(err);
    }
    let answer: AssumeResponse = quick_xml::de::from_str(&text)
        .map_err(|e| CredentialError::fatal(format!("{what}: the answer is not an {action}Response: {e}")))?;
    let c = answer.result.credentials;
    let expires_at = expiry(&c.expiration, what)?;
    if c.access_key_id.trim().is_empty() || c.secret_access_key.is_empty() {
        return Err(CredentialError::fatal(format!("{what}: the answer has empty credentials")));
    }
    Ok(AwsCredentials {
        access_key_id: c.access_key_id.trim().to_string(),
        secret_access_key: SecretString::from(c.secret_access_key),
        session_token: Some(SecretString::from(c.session_token)),
        expires_at: Some(expires_at),
    })
}

/// Signs `request` for `service` (`bedrock`, `sts`) in `region` at `time` with AWS Signature
/// Version 4, by the `aws-sigv4` crate (the AWS SDK for Rust's signer): `Authorization`,
/// `X-Amz-Date`, and `X-Amz-Security-Token` for temporary credentials, the first and last
/// marked sensitive. Errors: the signer refused the request (a header it cannot read), fatal.
pub(crate) fn sign(
    request: &mut reqwest::Request,
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), CredentialError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use http::{HeaderName, HeaderValue};
    use secrecy::ExposeSecret;
    let failed = |e: &dyn std::fmt::Display| CredentialError::fatal(format!("cannot sign the request (SigV4): {e}"));
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.expose_secret().to_string(),
        creds.session_token.as_ref().map(|t| t.expose_secret().to_string()),
        creds.expires_at,
        "agentctl",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let headers: Vec<(&str, &str)> =
        request.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
    let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| failed(&e))?.into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for header in new_headers {
        let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|e| failed(&e))?;
        let mut value = HeaderValue::from_str(header.value()).map_err(|e| failed(&e))?;
        value.set_sensitive(header.sensitive() || name == http::header::AUTHORIZATION);
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_parse() {
        let ok = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>repo:o/r:ref:refs/heads/main</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FQoGZXIvYXdzEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-12-07T13:00:00Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE123</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let r: AssumeResponse = quick_xml::de::from_str(ok).unwrap();
        assert_eq!(r.result.credentials.access_key_id, "ASIAEXAMPLE123");
        let plain = ok.replace("AssumeRoleWithWebIdentity", "AssumeRole");
        let r: AssumeResponse = quick_xml::de::from_str(&plain).unwrap();
        assert_eq!(r.result.credentials.access_key_id, "ASIAEXAMPLE123");
        let err = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
        let e: ErrorResponse = quick_xml::de::from_str(err).unwrap();
        assert_eq!(e.error.code, "AccessDenied");
    }

    #[test]
    fn session_names_keep_to_the_allowed_characters() {
        assert_eq!(session_name(&Env::from_pairs([("GITHUB_RUN_ID", "123")])), "agentctl-123");
        assert_eq!(session_name(&Env::from_pairs([("GITHUB_RUN_ID", "1;rm -rf/")])), "agentctl-1rm-rf");
        assert_eq!(session_name(&Env::from_pairs([])), "agentctl");
        assert!(session_name(&Env::from_pairs([("GITHUB_RUN_ID", "9".repeat(200).as_str())])).len() <= 64);
    }

    #[test]
    fn freshness_has_a_margin() {
        assert!(fresh(None));
        assert!(fresh(Some(SystemTime::now() + Duration::from_secs(3600))));
        assert!(!fresh(Some(SystemTime::now() + Duration::from_secs(60))));
        assert!(!fresh(Some(SystemTime::now() - Duration::from_secs(60))));
    }

    #[test]
    fn env_keys_come_first_and_are_redacted() {
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ]);
        let redactor = Redactor::new();
        let p = AwsCredentialProvider::resolve(&env, Some("arn:aws:iam::1:role/r"), "us-east-1", &redactor).unwrap();
        assert!(matches!(p.source, Source::Static(_)));
        assert!(!redactor.redact("k=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").contains("EXAMPLEKEY"));
        assert!(!format!("{p:?}").contains("EXAMPLEKEY"));
        let off = Env::from_pairs([("AWS_EC2_METADATA_DISABLED", "true")]);
        let none = AwsCredentialProvider::resolve(&off, None, "us-east-1", &redactor).unwrap_err();
        assert!(none.message.contains("no AWS credentials"), "{none}");
        // Without it, the machine's own credentials are the last resort (the SDKs' chain).
        let machine = AwsCredentialProvider::resolve(&Env::from_pairs([]), None, "us-east-1", &redactor).unwrap();
        assert!(matches!(machine.source, Source::Machine(_)), "{machine:?}");
        let no_oidc =
            AwsCredentialProvider::resolve(&off, Some("arn:aws:iam::1:role/r"), "us-east-1", &redactor).unwrap_err();
        assert!(no_oidc.help.as_deref().is_some_and(|h| h.contains("id-token: write")), "{no_oidc:?}");
        // With the machine's credentials, `role_arn` is assumed with them.
        let chained =
            AwsCredentialProvider::resolve(&Env::from_pairs([]), Some("arn:aws:iam::1:role/r"), "us-east-1", &redactor)
                .unwrap();
        assert!(
            matches!(&chained.source, Source::Chained { role_arn, region, .. } if role_arn == "arn:aws:iam::1:role/r" && region == "us-east-1")
        );
    }

    #[test]
    fn role_arn_with_github_oidc_comes_before_the_token_file_and_the_file_needs_a_role() {
        let redactor = Redactor::new();
        let file_env = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/ambient"),
        ];
        let oidc = [
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://t.example/x?v=1"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "rt-0123"),
        ];
        let source = |pairs: &[(&str, &str)], role: Option<&str>| {
            AwsCredentialProvider::resolve(&Env::from_pairs(pairs.iter().copied()), role, "us-east-1", &redactor)
                .map(|p| p.source)
        };
        let both: Vec<_> = file_env.iter().chain(&oidc).copied().collect();
        match source(&both, Some("arn:aws:iam::1:role/entry")).unwrap() {
            Source::WebIdentity { role_arn, token: WebToken::GitHub(_), .. } => {
                assert_eq!(role_arn, "arn:aws:iam::1:role/entry")
            }
            other => panic!("{other:?}"),
        }
        // Without GitHub's token, the file; its role is AWS_ROLE_ARN, else the entry's.
        match source(&file_env, Some("arn:aws:iam::1:role/entry")).unwrap() {
            Source::WebIdentity { role_arn, token: WebToken::File(path), .. } => {
                assert_eq!(
                    (role_arn.as_str(), path.to_str()),
                    ("arn:aws:iam::1:role/ambient", Some("/var/run/secrets/token"))
                );
            }
            other => panic!("{other:?}"),
        }
        match source(&file_env[..1], Some("arn:aws:iam::1:role/entry")).unwrap() {
            Source::WebIdentity { role_arn, token: WebToken::File(_), .. } => {
                assert_eq!(role_arn, "arn:aws:iam::1:role/entry")
            }
            other => panic!("{other:?}"),
        }
        // A file with no role to assume, and GitHub's token with no `role_arn`, are no credentials.
        let off = ("AWS_EC2_METADATA_DISABLED", "true");
        for (pairs, role) in [([file_env[0], off], None), ([oidc[0], off], None)] {
            let err = source(&pairs, role).unwrap_err();
            assert!(err.message.contains("no AWS credentials") && err.message.contains("AWS_ROLE_ARN"), "{err}");
        }
        assert_eq!(
            session_name(&Env::from_pairs([("AWS_ROLE_SESSION_NAME", "pod 7;x"), ("GITHUB_RUN_ID", "9")])),
            "pod7x"
        );
    }

    /// The token file is read at every refresh (the platform rotates it), and an empty or
    /// missing file is a fatal error naming the variable, quoting nothing.
    #[tokio::test]
    async fn the_token_file_is_read_again_at_each_refresh() {
        use wiremock::matchers::{body_string_contains, method};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let expiration = chrono::Utc::now() + chrono::Duration::seconds(120);
        for jwt in ["jwt-first-0123", "jwt-rotated-4567"] {
            Mock::given(method("POST"))
                .and(body_string_contains(format!("WebIdentityToken={jwt}&").as_str()))
                .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                    "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>ASIA{jwt}</AccessKeyId><SecretAccessKey>secret-{jwt}</SecretAccessKey>\
                     <SessionToken>session-{jwt}</SessionToken><Expiration>{}</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                    expiration.format("%Y-%m-%dT%H:%M:%SZ")
                )))
                .expect(1)
                .mount(&server)
                .await;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "jwt-first-0123\n").unwrap();
        let sts_url = format!("{}/", server.uri());
        let env = Env::from_pairs([
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
            ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
        ]);
        let redactor = Redactor::new();
        let p = AwsCredentialProvider::resolve(&env, None, "us-east-1", &redactor).unwrap();
        assert_eq!(p.credentials().await.unwrap().access_key_id, "ASIAjwt-first-0123");
        std::fs::write(&file, "jwt-rotated-4567").unwrap();
        assert_eq!(p.credentials().await.unwrap().access_key_id, "ASIAjwt-rotated-4567");
        assert!(!redactor.redact("jwt-first-0123 jwt-rotated-4567").contains("jwt-"));
        std::fs::write(&file, " \n").unwrap();
        let empty = p.credentials().await.unwrap_err();
        assert!(
            empty.message.contains("AWS_WEB_IDENTITY_TOKEN_FILE")
                && empty.message.contains("empty")
                && !empty.transient,
            "{empty}"
        );
    }

    /// Temporary credentials are kept while they have more than five minutes left, and asked
    /// for again (a new OIDC token, a new `AssumeRoleWithWebIdentity`) when they have less.
    #[tokio::test]
    async fn temporary_credentials_are_asked_again_near_expiry() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        for (lifetime_secs, want_calls) in [(3600, 1), (120, 2)] {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path("/token"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": "jwt-value-0123456"})),
                )
                .mount(&server)
                .await;
            let expiration = chrono::Utc::now() + chrono::Duration::seconds(lifetime_secs);
            Mock::given(method("POST"))
                .and(path("/"))
                .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                    "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>ASIATEST</AccessKeyId><SecretAccessKey>secret-access-key-0123</SecretAccessKey>\
                     <SessionToken>session-token-0123</SessionToken><Expiration>{}</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                    expiration.format("%Y-%m-%dT%H:%M:%SZ")
                )))
                .mount(&server)
                .await;
            let token_url = format!("{}/token?api-version=2.0", server.uri());
            let sts_url = format!("{}/", server.uri());
            let env = Env::from_pairs([
                ("ACTIONS_ID_TOKEN_REQUEST_URL", token_url.as_str()),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-0123"),
                ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
            ]);
            let redactor = Redactor::new();
            let p =
                AwsCredentialProvider::resolve(&env, Some("arn:aws:iam::123456789012:role/r"), "us-east-1", &redactor)
                    .unwrap();
            let first = p.credentials().await.unwrap();
            let second = p.credentials().await.unwrap();
            assert_eq!((first.access_key_id.as_str(), second.access_key_id.as_str()), ("ASIATEST", "ASIATEST"));
            let sts_calls =
                server.received_requests().await.unwrap().iter().filter(|r| r.method.as_str() == "POST").count();
            assert_eq!(sts_calls, want_calls, "credentials living {lifetime_secs} s");
            assert!(!redactor.redact("secret-access-key-0123 session-token-0123").contains("0123"));
        }
    }
}
