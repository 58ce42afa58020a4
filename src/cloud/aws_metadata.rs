//! AWS credentials from the machine a self-hosted runner is: the container credentials
//! endpoint (ECS, EKS Pod Identity, CodeBuild) and the EC2 instance profile through IMDSv2 —
//! the last two links of the AWS SDKs' default chain, after the environment's keys and the web
//! identity token.
//!
//! Sources: "Container credential provider"
//! (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html>):
//! `GET http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or
//! `$AWS_CONTAINER_CREDENTIALS_FULL_URI` with `Authorization` from
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`; "Use the Instance Metadata Service to access
//! instance metadata"
//! (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html>):
//! `PUT /latest/api/token` (`X-aws-ec2-metadata-token-ttl-seconds`), then
//! `GET /latest/meta-data/iam/security-credentials/` and `…/{role}` with
//! `X-aws-ec2-metadata-token`. Both answer `{AccessKeyId, SecretAccessKey, Token, Expiration}`.
//!
//! Decisions: IMDSv2 only (no fallback to the unauthenticated v1, which AWS advises turning
//! off); the service is skipped with `AWS_EC2_METADATA_DISABLED=true`, as the SDKs do; plain
//! http only to loopback and the documented link-local addresses; a machine where the service
//! does not answer within 2 s has no AWS credentials (a fatal error, not a retry).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::aws::{expiry, AwsCredentials};
use super::{client, send, without_query, CredentialError};
use crate::context::Env;
use crate::env_vars as ev;
use crate::redact::Redactor;

/// The IMDS endpoint when `AWS_EC2_METADATA_SERVICE_ENDPOINT` is unset.
const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The ECS endpoint `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is relative to.
const ECS_ENDPOINT: &str = "http://169.254.170.2";
/// Link-local hosts a metadata URL may reach over plain http (IMDS v4/v6, ECS, EKS Pod
/// Identity v4/v6), besides loopback.
const LINK_LOCAL: [&str; 5] =
    ["169.254.169.254", "[fd00:ec2::254]", "169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"];
/// Lifetime asked of an IMDSv2 session token, seconds (the maximum, six hours).
const IMDS_TOKEN_TTL_SECS: &str = "21600";
/// Deadline of each metadata request: the services are on the host or its link.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the machine's credentials are asked for. `Debug` hides the authorization token.
#[derive(Clone)]
pub(crate) enum MetadataSource {
    /// The container credentials endpoint, with its `Authorization` value when there is one.
    Container { url: String, authorization: Option<Authorization> },
    /// The EC2 instance metadata service (IMDSv2) at `endpoint`.
    Ec2 { endpoint: String },
}

/// The container endpoint's `Authorization` value: given, or read from a file at each request
/// (EKS Pod Identity rotates it).
#[derive(Clone)]
pub(crate) enum Authorization {
    Token(SecretString),
    File(PathBuf),
}

impl std::fmt::Debug for MetadataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Container { url, authorization } => f
                .debug_struct("Container")
                .field("url", &without_query(url))
                .field("has_authorization", &authorization.is_some())
                .finish(),
            Self::Ec2 { endpoint } => f.debug_struct("Ec2").field("endpoint", endpoint).finish(),
        }
    }
}

impl MetadataSource {
    /// The source the environment names: the container endpoint when
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI` is set, else IMDS unless
    /// `AWS_EC2_METADATA_DISABLED` is `true`; a given authorization token is registered with
    /// `redactor` now.
    ///
    /// Errors (fatal): a URL that is not https and not to loopback or a link-local metadata
    /// address.
    pub(crate) fn from_env(env: &Env, redactor: &Redactor) -> Result<Option<Self>, CredentialError> {
        let value = |name: &str| env.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let container = value(ev::AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)
            .map(|uri| format!("{ECS_ENDPOINT}/{}", uri.trim_start_matches('/')))
            .or_else(|| value(ev::AWS_CONTAINER_CREDENTIALS_FULL_URI));
        if let Some(url) = container {
            metadata_url(&url, "the container credentials endpoint")?;
            let authorization =
                match (value(ev::AWS_CONTAINER_AUTHORIZATION_TOKEN), value(ev::AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE))
                {
                    (Some(token), _) => {
                        let token = SecretString::from(token);
                        super::mask(redactor, &token);
                        Some(Authorization::Token(token))
                    }
                    (None, Some(path)) => Some(Authorization::File(PathBuf::from(path))),
                    (None, None) => None,
                };
            return Ok(Some(Self::Container { url, authorization }));
        }
        if value(ev::AWS_EC2_METADATA_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = value(ev::AWS_EC2_METADATA_SERVICE_ENDPOINT).unwrap_or_else(|| IMDS_ENDPOINT.to_string());
        metadata_url(&endpoint, "the instance metadata service")?;
        Ok(Some(Self::Ec2 { endpoint: endpoint.trim_end_matches('/').to_string() }))
    }

    /// Where the credentials come from, for `help:` lines.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Container { url, .. } => format!("the container credentials endpoint ({})", without_query(url)),
            Self::Ec2 { endpoint } => format!("the EC2 instance profile (instance metadata service at {endpoint})"),
        }
    }

    /// Fresh credentials, every part registered with `redactor` by the caller.
    ///
    /// Errors (fatal, naming the service, quoting no credential): it does not answer, refuses,
    /// has no role, or answers something else than credentials.
    pub(crate) async fn credentials(&self, redactor: &Redactor) -> Result<AwsCredentials, CredentialError> {
        let (what, body) = match self {
            Self::Container { url, authorization } => {
                let what = "the container credentials endpoint";
                let mut request = client()?.get(metadata_url(url, what)?).timeout(TIMEOUT);
                if let Some(auth) = authorization {
                    let token = match auth {
                        Authorization::Token(t) => t.clone(),
                        Authorization::File(path) => {
                            super::read_token_file(path, ev::AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, redactor)?
                        }
                    };
                    request = request.header("authorization", sensitive(&token, what)?);
                }
                (what, answered(what, send(request, what).await?, redactor)?)
            }
            // On a machine that is no EC2 instance nothing answers: that is no credentials,
            // not a failure to retry.
            Self::Ec2 { endpoint } => {
                let what = "the instance metadata service";
                let body = imds(endpoint, redactor).await.map_err(|e| match e.transient {
                    true => {
                        let why = e.message.strip_prefix(what).unwrap_or(&e.message).trim_start_matches(": ");
                        no_credentials(what, &format!("it did not answer ({why})"))
                    }
                    false => e,
                })?;
                (what, body)
            }
        };
        parse(what, &body)
    }
}

/// The IMDSv2 exchange: a session token, the instance profile's role, its credentials (JSON).
async fn imds(endpoint: &str, redactor: &Redactor) -> Result<String, CredentialError> {
    let what = "the instance metadata service";
    let base = metadata_url(endpoint, what)?;
    let url = |path: &str| base.join(path).map_err(|e| CredentialError::fatal(format!("{what}: {e}")));
    let put = client()?
        .put(url("/latest/api/token")?)
        .header("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL_SECS)
        .timeout(TIMEOUT);
    // Another cloud's metadata service at the same address (a GitHub-hosted runner is an Azure
    // VM) refuses this request: that machine has no instance profile either.
    let (status, body) = send(put, what).await?;
    if !(200..300).contains(&status) {
        return Err(no_credentials(
            what,
            &format!("it answered the IMDSv2 token request with HTTP {status} (not an EC2 instance, or IMDSv2 is off)"),
        ));
    }
    let token = SecretString::from(body.trim().to_string());
    super::mask(redactor, &token);
    let get = |u: reqwest::Url| -> Result<reqwest::RequestBuilder, CredentialError> {
        Ok(client()?.get(u).header("x-aws-ec2-metadata-token", sensitive(&token, what)?).timeout(TIMEOUT))
    };
    let listing = send(get(url("/latest/meta-data/iam/security-credentials/")?)?, what).await?;
    if listing.0 == 404 {
        return Err(no_credentials(what, "the instance has no IAM instance profile"));
    }
    let roles = answered(what, listing, redactor)?;
    let role = roles.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)) {
        return Err(CredentialError::fatal(format!(
            "{what}: the instance profile's role name is not an IAM role name"
        )));
    }
    let credentials = url(&format!("/latest/meta-data/iam/security-credentials/{role}"))?;
    answered(what, send(get(credentials)?, what).await?, redactor)
}

/// A header value marked sensitive (never in a debug print of the request).
fn sensitive(token: &SecretString, what: &str) -> Result<http::HeaderValue, CredentialError> {
    let mut value = http::HeaderValue::from_str(token.expose_secret())
        .map_err(|_| CredentialError::fatal(format!("{what}: the token cannot be sent as a header")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The body of a 2xx answer; any other status is a refusal naming the service
/// ([`super::refused`]: 429 and 5xx transient).
fn answered(what: &str, (status, body): (u16, String), redactor: &Redactor) -> Result<String, CredentialError> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(super::refused(what, status, &redactor.redact(&body)))
}

/// "No AWS credentials", with why and what to do.
fn no_credentials(what: &str, why: &str) -> CredentialError {
    CredentialError::fatal(format!("no AWS credentials: {what}: {why}")).with_help(super::aws::NO_CREDENTIALS_HELP)
}

/// Checks a metadata URL: https anywhere, plain http only to loopback or [`LINK_LOCAL`].
fn metadata_url(url: &str, what: &str) -> Result<reqwest::Url, CredentialError> {
    super::metadata_endpoint(url, what, &LINK_LOCAL)
}

/// The credentials document both services answer (IMDS adds `Code`, `Type`, `LastUpdated`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    expiration: String,
}

/// Parses the credentials document. Errors (fatal) quote no value: serde_json's messages name
/// positions only.
fn parse(what: &str, body: &str) -> Result<AwsCredentials, CredentialError> {
    let doc: Document = serde_json::from_str(body)
        .map_err(|e| CredentialError::fatal(format!("{what}: the answer is not a credentials document: {e}")))?;
    if doc.access_key_id.trim().is_empty() || doc.secret_access_key.is_empty() {
        return Err(CredentialError::fatal(format!("{what}: the answer has empty credentials")));
    }
    Ok(AwsCredentials {
        access_key_id: doc.access_key_id.trim().to_string(),
        secret_access_key: SecretString::from(doc.secret_access_key),
        session_token: doc.token.filter(|t| !t.is_empty()).map(SecretString::from),
        expires_at: Some(expiry(&doc.expiration, what)?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_picks_the_container_endpoint_then_imds_unless_disabled() {
        let r = Redactor::new();
        let pick = |pairs: &[(&str, &str)]| MetadataSource::from_env(&Env::from_pairs(pairs.iter().copied()), &r);
        match pick(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")]).unwrap() {
            Some(MetadataSource::Container { url, authorization: None }) => {
                assert_eq!(url, "http://169.254.170.2/v2/credentials/abc");
            }
            other => panic!("{other:?}"),
        }
        let full = [
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-auth-token-0123"),
        ];
        let source = pick(&full).unwrap().unwrap();
        assert!(matches!(source, MetadataSource::Container { authorization: Some(Authorization::Token(_)), .. }));
        assert!(!format!("{source:?}").contains("container-auth-token-0123"));
        assert!(!r.redact("x container-auth-token-0123").contains("0123"));
        assert!(matches!(pick(&[]).unwrap(), Some(MetadataSource::Ec2 { endpoint }) if endpoint == IMDS_ENDPOINT));
        assert!(pick(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]).unwrap().is_none());
        // Plain http elsewhere than loopback and the metadata addresses is refused.
        let err = pick(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://evil.example/creds")]).unwrap_err();
        assert!(err.message.contains("must be an https URL"), "{err}");
        assert!(pick(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://10.0.0.1")]).is_err());
        assert!(pick(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]")]).is_ok());
    }

    #[test]
    fn documents_parse_and_bad_ones_quote_nothing() {
        let ok = r#"{"Code":"Success","LastUpdated":"2026-12-07T15:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret-0123","Token":"imds-session-0123","Expiration":"2026-12-07T21:00:00Z"}"#;
        let creds = parse("IMDS", ok).unwrap();
        assert_eq!(creds.access_key_id, "ASIAIMDS");
        assert!(creds.session_token.is_some() && creds.expires_at.is_some());
        let err = parse("IMDS", r#"{"AccessKeyId":"ASIA","SecretAccessKey":"imds-secret-0123"}"#).unwrap_err();
        assert!(!err.message.contains("imds-secret"), "{err}");
        assert!(
            parse("IMDS", r#"{"AccessKeyId":"","SecretAccessKey":"s","Expiration":"2026-12-07T21:00:00Z"}"#).is_err()
        );
        assert!(parse("IMDS", r#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"tomorrow"}"#).is_err());
    }
}
