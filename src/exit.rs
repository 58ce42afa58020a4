//! Documented exit codes (README, "Exit codes"). Every error path maps to exactly one of these.
//!
//! A leaf: it imports nothing of the crate. Each boundary error says its own code with a
//! `fn exit(&self) -> Exit` beside its type; the `From` glue into [`ExitError`] sits beside the
//! commands (`commands::errors`).

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
/// Boundary errors (config, provider, github) convert into this through their own `exit()`;
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

/// A usage error built from a message (bad flag value, no diff source): [`Exit::Usage`] (2).
pub fn usage(message: impl Into<anyhow::Error>) -> ExitError {
    ExitError::new(Exit::Usage, message)
}
