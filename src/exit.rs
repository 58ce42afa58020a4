//! Documented exit codes (README, "Exit codes"). Every error path maps to exactly one of these.

/// Process exit codes, as documented in the README and SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: the run failed (network, provider, GitHub, I/O).
    Failure,
    /// 2: bad usage, bad config, bad event payload: nothing was sent anywhere.
    Usage,
    /// 3: nothing to do (no PR, nothing reviewable, already reviewed).
    NothingToDo,
    /// 4: authentication or permission error (GitHub or provider).
    Auth,
    /// 5: the hard budget would be exceeded.
    Budget,
    /// 10 + n: findings at or above `--fail-on`; n is the severity rank (0 critical .. 4 info).
    Findings(u8),
}

impl Exit {
    /// The numeric code handed to the OS.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NothingToDo => 3,
            Exit::Auth => 4,
            Exit::Budget => 5,
            Exit::Findings(n) => 10 + n,
        }
    }
}

/// An error that carries the exit code it must end the process with.
///
/// Boundary errors (config, provider, github) convert into this at the command level;
/// `main` prints the chain and exits with [`Exit::code`].
#[derive(Debug, thiserror::Error)]
#[error("{source:#}")]
pub struct ExitError {
    /// Which exit code the process ends with.
    pub exit: Exit,
    /// The error chain to print.
    #[source]
    pub source: anyhow::Error,
}

impl ExitError {
    /// Wraps `source` so the process ends with `exit`.
    pub fn new(exit: Exit, source: impl Into<anyhow::Error>) -> Self {
        Self { exit, source: source.into() }
    }
}

/// Errors without a more specific code end the process with [`Exit::Failure`].
impl From<anyhow::Error> for ExitError {
    fn from(source: anyhow::Error) -> Self {
        Self { exit: Exit::Failure, source }
    }
}

/// Config errors end the process with [`Exit::Usage`] (2) — nothing was sent anywhere — except
/// a failed fetch of the config through the API, which is a GitHub error.
impl From<crate::config::ConfigError> for ExitError {
    fn from(e: crate::config::ConfigError) -> Self {
        match e {
            crate::config::ConfigError::Fetch { source, .. } => source.into(),
            other => ExitError::new(Exit::Usage, other),
        }
    }
}

/// An event payload that cannot be read: [`Exit::Usage`] (2).
impl From<crate::context::ContextError> for ExitError {
    fn from(e: crate::context::ContextError) -> Self {
        ExitError::new(Exit::Usage, e)
    }
}

/// GitHub refusing the token or a permission, or minting a credential we cannot use:
/// [`Exit::Auth`] (4); a user-given token that cannot be sent: [`Exit::Usage`] (2); anything
/// else: [`Exit::Failure`].
impl From<crate::github::GitHubError> for ExitError {
    fn from(e: crate::github::GitHubError) -> Self {
        let exit = if e.is_auth() {
            Exit::Auth
        } else if e.is_usage() {
            Exit::Usage
        } else {
            Exit::Failure
        };
        ExitError::new(exit, e)
    }
}

/// A provider refusing the key: [`Exit::Auth`] (4); a provider config error: [`Exit::Usage`] (2);
/// anything else: [`Exit::Failure`].
impl From<crate::providers::ProviderError> for ExitError {
    fn from(e: crate::providers::ProviderError) -> Self {
        let exit = match &e {
            e if e.is_auth() => Exit::Auth,
            crate::providers::ProviderError::Config { .. } => Exit::Usage,
            _ => Exit::Failure,
        };
        ExitError::new(exit, e)
    }
}

/// An unusable state store: [`Exit::Failure`] (1); a PostgreSQL server refusing the
/// credentials: [`Exit::Auth`] (4); a state-store URL that cannot be used as written:
/// [`Exit::Usage`] (2) ([`crate::store::StoreError::exit`]).
impl From<crate::store::StoreError> for ExitError {
    fn from(e: crate::store::StoreError) -> Self {
        ExitError::new(e.exit(), e)
    }
}

/// A credential refused where it entered: user-given [`Exit::Usage`] (2), minted by GitHub
/// [`Exit::Auth`] (4) ([`crate::github::credential`]).
impl From<crate::github::credential::CredentialError> for ExitError {
    fn from(e: crate::github::credential::CredentialError) -> Self {
        crate::github::GitHubError::from(e).into()
    }
}

/// A usage error built from a message (bad flag value, no diff source): [`Exit::Usage`] (2).
pub fn usage(message: impl Into<anyhow::Error>) -> ExitError {
    ExitError::new(Exit::Usage, message)
}

/// Bad names: [`Exit::Usage`]; no backend and backend failures: [`Exit::Failure`].
impl From<crate::secret_store::StoreError> for ExitError {
    fn from(e: crate::secret_store::StoreError) -> Self {
        use crate::secret_store::StoreError;
        let exit = match e {
            StoreError::BadName(_) => Exit::Usage,
            StoreError::Unavailable(_) | StoreError::Failed { .. } => Exit::Failure,
        };
        ExitError::new(exit, e)
    }
}
