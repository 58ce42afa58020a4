//! `--watch`: one process keeps `--file` (and `--keyring`) fresh, refreshing an installation
//! token or a runner registration/remove token before it reaches `--min-ttl`, until SIGTERM or
//! SIGINT.

use std::time::Duration;

use super::app::AppAuth;
use super::reuse::{reusable, until_min_ttl};
use super::runner::{runner_credential, RunnerSettings};
use super::sinks::{deliver, Credential, Sinks};
use super::{register, TokenError};
use crate::context::Env;
use crate::github::apps::{AccessTokenRequest, Owner};
use crate::log;
use crate::redact::Redactor;

/// What `--watch` keeps fresh: an installation token, or a runner registration/remove token.
pub(crate) enum Refresh<'a> {
    App { auth: AppAuth, owner: Option<Owner>, installation_id: Option<u64>, request: AccessTokenRequest },
    Runner { auth: Option<AppAuth>, args: &'a RunnerSettings, scope: Owner, kind: &'static str },
}

impl Refresh<'_> {
    /// The `kind` its metadata records.
    fn kind(&self) -> &'static str {
        match self {
            Refresh::App { .. } => "installation",
            Refresh::Runner { kind, .. } => kind,
        }
    }

    /// A new credential (a fresh JWT first when the app signs), and the log line saying so.
    async fn mint(
        &mut self,
        env: &Env,
        redactor: &mut Redactor,
        fingerprint: &str,
    ) -> Result<(Credential, String), TokenError> {
        match self {
            Refresh::App { auth, owner, installation_id, request } => {
                let (token, mut meta, id) = auth.mint(env, redactor, owner.as_ref(), *installation_id, request).await?;
                meta.request = fingerprint.to_string();
                let line = format!(
                    "refreshed the installation token for installation {id}, expires at {}",
                    meta.expires_at.as_deref().unwrap_or("?")
                );
                Ok((Credential { value: token, meta }, line))
            }
            Refresh::Runner { auth, args, scope, kind } => {
                let cred = runner_credential(args, auth.as_mut(), env, redactor, scope, kind, fingerprint).await?;
                let line = format!(
                    "refreshed the {kind} token for {}, expires at {}",
                    scope.describe(),
                    cred.meta.expires_at.as_deref().unwrap_or("?")
                );
                Ok((cred, line))
            }
        }
    }
}

/// `--watch`: keeps `--file` (and `--keyring`) fresh until SIGTERM/SIGINT. Each cycle reuses
/// the file while it has more than `--min-ttl` left, else mints and writes a new credential
/// (one log line, never the credential), then sleeps until the credential reaches `--min-ttl`.
/// A failed refresh is retried after a full-jitter backoff (1 s base, 60 s cap); bad input and
/// a key that cannot sign end the watch. A signal is only acted on between cycles, so a write
/// in flight always completes (the file is replaced by rename, never half-written); then exit 0.
pub(crate) async fn watch(
    mut refresh: Refresh<'_>,
    env: &Env,
    redactor: &mut Redactor,
    sinks: &Sinks,
    fingerprint: &str,
) -> Result<(), TokenError> {
    let mut stop = Box::pin(shutdown_signal()?);
    let backoff = crate::resilience::RetryPolicy {
        max_retries: u32::MAX,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    };
    let kind = refresh.kind();
    let mut failures = 0u32;
    // On a terminal: a spinner saying when the next refresh is due.
    let spinner = crate::progress::Progress::spinner("watching the installation token");
    loop {
        let wait = match reusable(sinks, kind, fingerprint) {
            Some(cred) => {
                register(redactor, &cred.value);
                deliver(sinks, &cred, true)?;
                failures = 0;
                until_min_ttl(&cred.meta, sinks.min_ttl)
            }
            None => match refresh.mint(env, redactor, fingerprint).await {
                Ok((cred, line)) => {
                    let wait = until_min_ttl(&cred.meta, sinks.min_ttl);
                    deliver(sinks, &cred, false)?;
                    log::info(&line);
                    failures = 0;
                    wait
                }
                Err(
                    e
                    @ (TokenError::Usage(_) | TokenError::Key(_) | TokenError::Keyring(_) | TokenError::KeyKeyring(_)),
                ) => return Err(e),
                Err(TokenError::GitHub(g)) if g.is_usage() => return Err(TokenError::GitHub(g)),
                Err(e) => {
                    let wait = backoff.backoff(failures);
                    failures = failures.saturating_add(1);
                    log::warn(&format!(
                        "{kind} refresh failed (attempt {failures}), retrying in {} ms: {}",
                        wait.as_millis(),
                        log::error_chain(&e)
                    ));
                    wait
                }
            },
        };
        let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::zero());
        spinner.set_message(format!(
            "watching {}: next refresh at {} UTC",
            sinks.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
            next.format("%H:%M:%S")
        ));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => {
                log::info(&format!("stopping on signal; the {kind} file is complete"));
                return Ok(());
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere). Handlers are installed at once, so a
/// signal during a refresh waits for the next check instead of killing the process mid-write.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, TokenError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let io = |e: std::io::Error| TokenError::Sink { what: "signal handler", path: "-".into(), source: e };
        let mut term = signal(SignalKind::terminate()).map_err(io)?;
        let mut int = signal(SignalKind::interrupt()).map_err(io)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
