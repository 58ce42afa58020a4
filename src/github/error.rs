//! [`GitHubError`]: the one error of GitHub calls, its exit-code classification, and how a
//! non-2xx reply maps to it (with GitHub's own `message` and `errors` list).
//!
//! Source: "Troubleshooting the REST API"
//! (<https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api>).

use serde::Deserialize;

use super::transport::Reply;

/// Errors of GitHub calls, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 401, or 403 that is not a rate limit.
    #[error("github: {action}: authentication or permission refused ({status}): {message}\nhelp: the token needs `pull-requests: write` and `contents: read`; for forks use a token with access to the base repository")]
    Auth { action: String, status: u16, message: String },
    /// 404.
    #[error("github: {action}: not found (404): {message}")]
    NotFound { action: String, message: String },
    /// 422 with GitHub's error list.
    #[error("github: {action}: unprocessable (422): {message}")]
    Unprocessable { action: String, message: String },
    /// Any other failing status after retries.
    #[error("github: {action}: HTTP {status}: {message}")]
    Status { action: String, status: u16, message: String },
    /// Transport error after retries.
    #[error("github: {action}: {message}")]
    Network { action: String, message: String },
    /// A response we could not decode.
    #[error("github: {action}: unexpected response: {message}")]
    Decode { action: String, message: String },
    /// A credential refused where it entered: a token given to the client that cannot be an
    /// `Authorization` header (exit 2), or one GitHub minted that is not a plain token (exit 4).
    /// Never holds the value ([`super::credential`]).
    #[error(transparent)]
    Credential(#[from] super::credential::CredentialError),
}

impl GitHubError {
    /// Whether the process should exit with the auth code (4).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            GitHubError::Auth { .. } | GitHubError::Credential(super::credential::CredentialError::Minted { .. })
        )
    }

    /// The exit code this error ends the process with: [`Exit::Auth`] (4) when GitHub refuses
    /// the token or a permission, or minted a credential we cannot use; [`Exit::Usage`] (2) for a
    /// user-given token that cannot be sent; else [`Exit::Failure`] (1).
    pub fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        if self.is_auth() {
            Exit::Auth
        } else if self.is_usage() {
            Exit::Usage
        } else {
            Exit::Failure
        }
    }

    /// Whether it is bad input (exit 2): a user-given token that cannot be sent.
    pub fn is_usage(&self) -> bool {
        matches!(self, GitHubError::Credential(super::credential::CredentialError::User { .. }))
    }
}

/// Maps a non-2xx reply to its error; 2xx passes through.
pub(super) fn check(reply: Reply, action: &str) -> Result<Reply, GitHubError> {
    if (200..300).contains(&reply.status) {
        return Ok(reply);
    }
    let action = action.to_string();
    let message = github_message(&reply.body);
    Err(match reply.status {
        401 | 403 => GitHubError::Auth { action, status: reply.status, message },
        404 => GitHubError::NotFound { action, message },
        422 => GitHubError::Unprocessable { action, message },
        status => GitHubError::Status { action, status, message },
    })
}

/// GitHub's error text: the JSON `message`, then the `errors` list (strings, or objects with a
/// `message` or `resource`/`field`/`code`), e.g. `Unprocessable Entity: Line could not be
/// resolved`. A non-JSON body is quoted (first 200 characters).
pub(super) fn github_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return if text.is_empty() { "(empty body)".to_string() } else { text.chars().take(200).collect() };
    };
    let details: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| match e {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => match o.get("message").and_then(|m| m.as_str()) {
                Some(m) => m.to_string(),
                None => ["resource", "field", "code"]
                    .iter()
                    .filter_map(|k| o.get(*k).and_then(|v| v.as_str()))
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    let message = parsed.message.unwrap_or_else(|| "(no message)".to_string());
    if details.is_empty() {
        message
    } else {
        format!("{message}: {}", details.join("; "))
    }
}
