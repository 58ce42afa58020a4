//! [`TokenError`]: every way `token-refresh` fails, each saying its own exit code.

use crate::actions;
use crate::exit::Exit;
use crate::github::credential::CredentialError;
use crate::github::jwt::KeyError;
use crate::github::GitHubError;
use crate::secret_store::KeyringError;

/// Errors of `token-refresh`, each mapped to one exit code by [`TokenError::exit`].
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A flag or environment value is missing or wrong (exit 2).
    #[error("token-refresh: {0}")]
    Usage(String),
    /// The private key cannot sign (exit 2).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// GitHub refused the app JWT (exit 4); names the key's source.
    #[error("github: {action}: GitHub refused the app JWT ({status}): {message}\nhelp: check that the private key from {key_source} belongs to app `{app_id}` (client id or app id) and that this machine's clock is right")]
    JwtRefused { action: String, status: u16, message: String, key_source: String, app_id: String },
    /// GitHub refused the token or a permission it was asked for (exit 4).
    #[error("github: {action}: refused ({status}): {message}\nhelp: {help}")]
    Refused { action: String, status: u16, message: String, help: String },
    /// Any other GitHub failure (exit 1; 4 when it is an auth error).
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// A sink could not be written (exit 1).
    #[error("cannot write {what} {path}")]
    Sink {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The step output could not be written (exit 1).
    #[error(transparent)]
    Output(#[from] actions::OutputError),
    /// `--keyring`: a bad name (exit 2), no usable backend or a failed write (exit 1).
    #[error("--keyring: {0}")]
    Keyring(#[from] KeyringError),
    /// `--private-key-keyring`: a bad name (exit 2), no usable backend or a failed read (exit 1).
    #[error("--private-key-keyring: {0}")]
    KeyKeyring(KeyringError),
}

impl TokenError {
    /// Bad input: [`Exit::Usage`]; refusals: [`Exit::Auth`]; the rest: [`Exit::Failure`].
    pub fn exit(&self) -> Exit {
        match self {
            TokenError::Usage(_)
            | TokenError::Key(_)
            | TokenError::Keyring(KeyringError::BadName(_))
            | TokenError::KeyKeyring(KeyringError::BadName(_)) => Exit::Usage,
            TokenError::JwtRefused { .. } | TokenError::Refused { .. } => Exit::Auth,
            TokenError::GitHub(g) if g.is_auth() => Exit::Auth,
            TokenError::GitHub(g) if g.is_usage() => Exit::Usage,
            _ => Exit::Failure,
        }
    }
}

/// A credential refused where it entered ([`crate::github::credential`]): exit 2 for one the
/// user gave, 4 for one GitHub minted.
impl From<CredentialError> for TokenError {
    fn from(e: CredentialError) -> Self {
        TokenError::GitHub(e.into())
    }
}
