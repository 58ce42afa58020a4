//! GitHub REST client: octocrab for transport and auth, with its retry layer off (it would
//! repeat POSTs at once and duplicate comments), our own policy on top, and typed requests for
//! what octocrab lacks (review comments with `line`/`side`/`start_line`/`start_side`, the diff
//! media type, contents at a ref).
//!
//! Every URL is built from `GITHUB_API_URL` by appending, so a GHES path prefix
//! (`https://host/api/v3`) is kept on every request.
//!
//! The client is split by concern: `transport` (sending, body caps, redirects, pagination),
//! `rate_limit` (write spacing, rate-limit waits, retry bounds), `error` ([`GitHubError`] and
//! the mapping of a reply to it), `endpoints` (the typed calls on pulls, contents, comments and
//! reviews).

pub(crate) mod apps;
pub(crate) mod artifacts;
mod config_source;
pub(crate) mod credential;
mod endpoints;
mod error;
pub(crate) mod git;
pub(crate) mod jwt;
pub(crate) mod permissions;
pub(crate) mod publish;
mod rate_limit;
pub(crate) mod runners;
mod transport;

pub(crate) use endpoints::{IssueComment, PullRequest, ReviewComment, ReviewEvent, ReviewRequest};
pub(crate) use error::GitHubError;
pub(crate) use transport::GitHub;

pub(crate) use credential::token_from_env;

/// The run's token ([`token_from_env`]) and a redactor that holds it, with its
/// `::add-mask::` published and the log redacting it ([`crate::log::publish_masks`]): the first
/// step of every command that may talk to GitHub, before anything could echo the token.
///
/// Errors: [`credential::CredentialError::User`] (exit 2) for a token that is not one line of
/// visible ASCII, naming the variable.
pub(crate) fn token_and_redactor(
    env: &crate::context::Env,
) -> Result<(Option<secrecy::SecretString>, crate::redact::Redactor), credential::CredentialError> {
    let token = token_from_env(env)?;
    let mut redactor = crate::redact::Redactor::new();
    if let Some(t) = &token {
        redactor.add_secret(t);
    }
    // The state store's password (a PostgreSQL URL's, or PGPASSWORD), whether or not the run
    // ever opens the store.
    for secret in crate::store::env_secrets(env) {
        redactor.add_secret(&secret);
    }
    // The telemetry exporter's headers (`OTEL_EXPORTER_OTLP_HEADERS`: collector credentials).
    for secret in crate::telemetry::secrets(env) {
        redactor.add_secret(&secret);
    }
    crate::log::publish_masks(&redactor);
    Ok((token, redactor))
}

/// The client of a run on `ctx.repository` at `ctx.api_url`, when there is a token and a
/// repository (else `None`: a dry run). `env_write_delay` (`AGENTCTL_WRITE_DELAY`) spaces the
/// writes past the burst; without it, 1 s until the config's `github.write_delay` is applied.
///
/// Errors: [`GitHubError::Network`] for a malformed API URL or a TLS setup failure.
pub(crate) fn client_for_run(
    ctx: &crate::context::Context,
    token: Option<&secrecy::SecretString>,
    env_write_delay: Option<std::time::Duration>,
) -> Result<Option<GitHub>, GitHubError> {
    match (token, &ctx.repository) {
        (Some(t), Some(repo)) => Ok(Some(GitHub::new(
            &ctx.api_url,
            t,
            &repo.owner,
            &repo.name,
            env_write_delay.unwrap_or(std::time::Duration::from_secs(1)),
        )?)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
