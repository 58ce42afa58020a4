//! Short-lived cloud credentials for the keyless providers (issue #21): GitHub Actions' OIDC
//! token ([`oidc`]), AWS credentials from the environment or from STS
//! `AssumeRoleWithWebIdentity` ([`aws`]), and Google access tokens from Application Default
//! Credentials ([`google`]).
//!
//! Every credential is registered with the run's redactor (and `::add-mask::`ed in Actions) the
//! moment it is read or minted, is held as a [`secrecy::SecretString`], and never appears in a
//! message: errors name the endpoint and what to check, never a token. Every credential
//! endpoint must be `https`, except on loopback (tests, a local metadata proxy), so no token
//! travels in clear text; every response body is read to at most [`MAX_BODY_BYTES`].

pub(crate) mod aws;
pub(crate) mod aws_metadata;
pub(crate) mod azure;
pub(crate) mod google;

pub(crate) mod oidc;

use std::time::Duration;

/// Largest response body read from a credential endpoint, bytes (an STS answer is ~2 KB).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// Per-request timeout of credential endpoints, seconds.
const TIMEOUT_SECS: u64 = 30;

/// Credentials could not be obtained. `message` names the endpoint or file and the reason,
/// never a credential; `transient` when a retry may help (a network error, 429, 5xx).
/// `help` says what to do about it when the error itself knows (no credentials configured).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CredentialError {
    pub message: String,
    pub transient: bool,
    pub help: Option<String>,
}

impl CredentialError {
    /// An error a retry will not fix (refused, missing, malformed).
    pub(crate) fn fatal(message: impl Into<String>) -> Self {
        Self { message: message.into(), transient: false, help: None }
    }

    /// An error a retry may fix.
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), transient: true, help: None }
    }

    /// The error with what to do about it.
    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A source of bearer tokens (Google access tokens, Microsoft Entra tokens) for
/// `Authorization: Bearer` on each attempt ([`crate::providers::http::BearerAuth`]).
pub(crate) trait TokenSource: Send + Sync {
    /// A current token, registered with the run's redactor (cached until near its expiry).
    fn token(&self) -> futures::future::BoxFuture<'_, Result<secrecy::SecretString, CredentialError>>;
    /// What to check when the service refuses the token, for the `help:` line.
    fn help(&self) -> String;
}

/// Registers `secret` with the run's redactor and, in Actions, masks it with `::add-mask::`
/// ([`crate::log::register_secret`]): for every credential the moment it is read or minted.
pub(crate) fn mask(redactor: &crate::redact::Redactor, secret: &secrecy::SecretString) {
    crate::log::register_secret(&mut redactor.clone(), secret);
}

/// The HTTP client of credential endpoints: our rustls config, a 30 s timeout, no redirects
/// (a redirect would carry the request's bearer token to wherever it points).
pub(crate) fn client() -> Result<reqwest::Client, CredentialError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config())
        .timeout(Duration::from_secs(TIMEOUT_SECS))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("agentctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CredentialError::fatal(format!("cannot build the HTTP client: {e}")))
}

/// Parses a credential endpoint's URL (`what` names it in errors): `https`, or `http` to a
/// loopback host only. The URL is printed without its query (which may hold values).
pub(crate) fn endpoint(url: &str, what: &str) -> Result<reqwest::Url, CredentialError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| CredentialError::fatal(format!("{what}: `{}` is not a URL: {e}", without_query(url))))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(CredentialError::fatal(format!(
            "{what}: `{}` must be an https URL (plain http only to loopback), so no credential travels in clear text",
            without_query(url)
        ))),
    }
}

/// Parses the URL of a machine's metadata service (`what` names it in errors): as
/// [`endpoint`], and also plain http to one of `hosts`, the service's documented link-local
/// address or name (a metadata service is on the machine's own link and serves no TLS).
pub(crate) fn metadata_endpoint(url: &str, what: &str, hosts: &[&str]) -> Result<reqwest::Url, CredentialError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| CredentialError::fatal(format!("{what}: `{}` is not a URL: {e}", without_query(url))))?;
    let host = parsed.host_str().unwrap_or_default();
    if parsed.scheme() == "http" && hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Ok(parsed);
    }
    endpoint(url, what)
}

/// `url` up to its `?`, for messages.
pub(crate) fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Sends `request` and reads the answer: `(status, body)`, the body capped at
/// [`MAX_BODY_BYTES`]. A transport error is transient; `what` names the endpoint in errors.
pub(crate) async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<(u16, String), CredentialError> {
    let mut response =
        request.send().await.map_err(|e| CredentialError::transient(format!("{what}: {}", transport_message(e))))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CredentialError::transient(format!("{what}: reading the answer: {}", transport_message(e))))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(CredentialError::fatal(format!("{what}: the answer is over {MAX_BODY_BYTES} bytes; refused")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Reads a credential file (`what` names it in errors) of at most [`MAX_BODY_BYTES`]: a token
/// or credentials file is small, and one that is not is refused rather than read whole.
///
/// Errors (fatal): the file cannot be read, is over the cap, or is not UTF-8; the message
/// names `what` and the path, never the content.
pub(crate) fn read_capped(path: &std::path::Path, what: &str) -> Result<String, CredentialError> {
    use std::io::Read;
    let fail = |why: String| CredentialError::fatal(format!("{what} ({}): {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(fail(format!("it is over {MAX_BODY_BYTES} bytes; refused")));
    }
    String::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".into()))
}

/// A token file (`what` names its variable): [`read_capped`], trimmed, refused when empty, and
/// registered with `redactor` before it is returned. Read at each refresh by its callers, since
/// the platforms that write these files rotate them.
///
/// Errors (fatal): as [`read_capped`]; an empty file.
pub(crate) fn read_token_file(
    path: &std::path::Path,
    what: &str,
    redactor: &crate::redact::Redactor,
) -> Result<secrecy::SecretString, CredentialError> {
    let text = read_capped(path, what)?;
    if text.trim().is_empty() {
        return Err(CredentialError::fatal(format!("{what} ({}) is empty", path.display())));
    }
    let token = secrecy::SecretString::from(text.trim().to_string());
    mask(redactor, &token);
    Ok(token)
}

/// A refused answer as an error: 408/429/5xx transient, anything else fatal. `detail` is the
/// endpoint's own error text (already free of credentials: the caller picks the fields).
pub(crate) fn refused(what: &str, status: u16, detail: &str) -> CredentialError {
    let detail: String = detail.chars().take(300).collect();
    let message = format!("{what} answered {status}: {detail}");
    if matches!(status, 408 | 429 | 500..=599) {
        CredentialError::transient(message)
    } else {
        CredentialError::fatal(message)
    }
}

/// An OAuth token answer (`access_token`, `expires_in` seconds).
#[derive(serde::Deserialize)]
struct OAuthToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Parses an OAuth 2.0 token answer (RFC 6749 §5.1: `access_token`, `expires_in` seconds; Google
/// and Microsoft Entra alike) into the token and its expiry; errors show the endpoint's
/// `error`/`error_description` only (§5.2), never a token.
pub(crate) fn oauth_answer(
    what: &str,
    status: u16,
    body: &str,
) -> Result<(secrecy::SecretString, std::time::SystemTime), CredentialError> {
    if !(200..300).contains(&status) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let detail = format!(
            "{} {}",
            v["error"].as_str().or_else(|| v["error"]["status"].as_str()).unwrap_or(""),
            v["error_description"].as_str().or_else(|| v["error"]["message"].as_str()).unwrap_or("")
        );
        return Err(refused(what, status, detail.trim()));
    }
    let t: OAuthToken = serde_json::from_str(body)
        .map_err(|_| CredentialError::fatal(format!("{what}: the answer has no `access_token`")))?;
    if t.access_token.trim().is_empty() {
        return Err(CredentialError::fatal(format!("{what}: the answer's `access_token` is empty")));
    }
    // A missing or absurd lifetime is taken as one hour, at most twelve.
    let secs = t.expires_in.filter(|s| (1..=43_200).contains(s)).unwrap_or(3600);
    Ok((secrecy::SecretString::from(t.access_token), std::time::SystemTime::now() + Duration::from_secs(secs)))
}

/// reqwest's error with its causes, without the URL (whose query may hold values).
fn transport_message(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {TIMEOUT_SECS} s");
    }
    crate::log::error_chain(&e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback() {
        assert!(endpoint("https://sts.us-east-1.amazonaws.com/", "STS").is_ok());
        assert!(endpoint("http://127.0.0.1:9000/x", "STS").is_ok());
        assert!(endpoint("http://[::1]:9000/x", "STS").is_ok());
        assert!(endpoint("http://localhost:9000/x", "STS").is_ok());
        let err = endpoint("http://sts.example.com/?token=abc", "STS").unwrap_err();
        assert!(err.message.contains("must be an https URL") && !err.message.contains("abc"), "{err}");
        assert!(endpoint("file:///etc/passwd", "STS").is_err());
        assert!(endpoint("not a url", "STS").is_err());
    }

    #[test]
    fn credential_files_are_read_to_a_cap_and_errors_quote_no_content() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("token");
        std::fs::write(&small, "eyJ.token.value\n").unwrap();
        assert_eq!(read_capped(&small, "the token file").unwrap(), "eyJ.token.value\n");
        let big = dir.path().join("big");
        std::fs::write(&big, "s".repeat(MAX_BODY_BYTES + 1)).unwrap();
        let err = read_capped(&big, "the token file").unwrap_err();
        assert!(err.message.contains("over") && !err.message.contains("sss"), "{err}");
        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe, b's', b'e', b'c']).unwrap();
        assert!(read_capped(&binary, "the token file").unwrap_err().message.contains("not UTF-8"));
        let missing = read_capped(&dir.path().join("none"), "the token file").unwrap_err();
        assert!(missing.message.contains("cannot read it") && !missing.transient, "{missing}");
    }

    #[test]
    fn refusals_are_transient_only_for_retryable_statuses() {
        assert!(refused("STS", 503, "x").transient);
        assert!(refused("STS", 429, "x").transient);
        assert!(!refused("STS", 403, "x").transient);
        assert!(!refused("STS", 400, "x").transient);
    }
}
