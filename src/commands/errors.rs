//! The `From` glue from each boundary error into [`ExitError`]: every error type says its own
//! exit code (`fn exit(&self) -> Exit`, beside the type), and this module only wraps it, so
//! `crate::exit` stays a leaf.

use crate::exit::{Exit, ExitError};
use crate::output::SinkFailure;

/// The end of an [`crate::output::deliver`]: `Ok` when every sink was written, else exit 1
/// naming each failed sink, one per line.
pub(super) fn delivered(failures: Vec<SinkFailure>) -> Result<(), ExitError> {
    if failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Err(ExitError::new(Exit::Failure, anyhow::anyhow!("{}", lines.join("\n"))))
}

/// `impl From<$t> for ExitError` through `$t::exit`, the error kept as the printed chain.
macro_rules! through_exit {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ExitError {
            fn from(e: $t) -> Self {
                ExitError::new(e.exit(), e)
            }
        }
    )*};
}

through_exit!(
    crate::context::ContextError,
    crate::credentials::TokenError,
    crate::estimate::InputError,
    crate::github::GitHubError,
    crate::providers::ProviderError,
    crate::store::StoreError,
    crate::secret_store::KeyringError,
);

/// A credential refused where it entered: user-given exit 2, minted by GitHub exit 4; printed
/// as the GitHub error it becomes.
impl From<crate::github::credential::CredentialError> for ExitError {
    fn from(e: crate::github::credential::CredentialError) -> Self {
        crate::github::GitHubError::from(e).into()
    }
}

/// Config errors exit 2 (nothing was sent anywhere), except a failed fetch of the config
/// through the API, which ends as the GitHub error it carries.
impl From<crate::config::ConfigError> for ExitError {
    fn from(e: crate::config::ConfigError) -> Self {
        match e {
            crate::config::ConfigError::Fetch { exit, source, .. } => {
                ExitError::new(exit, anyhow::Error::from_boxed(source))
            }
            other => ExitError::new(other.exit(), other),
        }
    }
}

/// An import stopped: the store's and GitHub's errors end as themselves, the input's (a file,
/// a line, a zip, `--name`) exit 2.
impl From<crate::ledger::import::ImportError> for ExitError {
    fn from(e: crate::ledger::import::ImportError) -> Self {
        use crate::ledger::import::ImportError;
        match e {
            ImportError::Store(e) => e.into(),
            ImportError::GitHub(e) => e.into(),
            other => ExitError::new(other.exit(), other),
        }
    }
}

/// `cost export` stopped: a store error ends as itself, a failed flush of stdout exits 1.
impl From<crate::output::cost::ExportError> for ExitError {
    fn from(e: crate::output::cost::ExportError) -> Self {
        match e {
            crate::output::cost::ExportError::Store(e) => e.into(),
            flush => ExitError::new(crate::exit::Exit::Failure, flush),
        }
    }
}
