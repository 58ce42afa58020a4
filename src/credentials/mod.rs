//! Short-lived GitHub credentials (`token-refresh`): GitHub App installation tokens, runner
//! registration/remove tokens and just-in-time runner configs, delivered to sinks without
//! ever showing in `ps`, a log or a world-readable file (SPEC §3.5). The command
//! (`agentctl token-refresh`) only turns its flags into the settings here.
//!
//! Order of work, so that nothing leaks and a bad input costs no request: inputs and sinks are
//! checked first (a world-writable sink folder, `--print` to a terminal, a missing app id or a
//! key that cannot sign all exit 2); the private key is registered with the redactor as soon as
//! it is read, the JWT as soon as it is signed, each credential as soon as it arrives (and, in
//! Actions, masked with `::add-mask::` before any sink is written). A credential in `--file`
//! whose `PATH.meta.json` says it has more than `--min-ttl` seconds left and was made for the
//! same request is reused without any API call.
//!
//! `--keyring [SERVICE/]NAME` stores the credential in the OS keyring ([`crate::secret_store`]);
//! the backend is probed with the other sinks, before any request, and a machine without one
//! is refused (exit 1), never served by an in-memory stand-in. Reuse and `--watch` are driven
//! by `--file`'s metadata; the keyring entry is written on every delivery, reuse included.
//!
//! Every credential is checked once where it enters ([`crate::github::credential`]): the
//! token in `GH_TOKEN`/`GITHUB_TOKEN` or a `--file` (one trailing newline dropped, otherwise
//! visible ASCII only, else exit 2 naming the source), and each one GitHub mints (a plain
//! `[A-Za-z0-9_.-]` token or base64 JIT config, else exit 4), so no sink, header or `--print`
//! ever carries a line break or a workflow command. Inputs GitHub's OpenAPI description bounds
//! are checked before any request: `--permission` against the `app-permissions` schema
//! ([`crate::github::permissions`]), at most 100 `--labels` for a JIT runner.
//!
//! Layout: [`sinks`] (checked sinks, `PATH.meta.json`, delivery), [`private`] (0600 writes),
//! [`reuse`] (reusing a credential in `--file`), [`app`] (app auth, installation tokens),
//! [`runner`] (runner credentials), [`watch`] (`--watch`), [`revoke`], [`error`].

mod app;
mod error;
mod private;
mod reuse;
mod revoke;
mod runner;
mod sinks;
mod watch;

use std::time::Duration;

use secrecy::SecretString;

use crate::context::Env;
use crate::env_vars as ev;
use crate::github::GitHub;
use crate::log;
use crate::redact::Redactor;

pub(crate) use app::{app, AppAuthSettings, AppTokenSettings};
pub(crate) use error::TokenError;
pub(crate) use revoke::revoke;
pub(crate) use runner::{runner, RunnerAction, RunnerScope, RunnerSettings};
pub(crate) use sinks::SinkSettings;

/// Default REST root when `GITHUB_API_URL` is unset.
const DEFAULT_API_URL: &str = "https://api.github.com";

/// See [`log::register_secret`].
fn register(redactor: &mut Redactor, secret: &SecretString) {
    log::register_secret(redactor, secret);
}

/// The one client of this module: authenticated with `token` (an app JWT, an installation
/// token or `GH_TOKEN`/`GITHUB_TOKEN`) on `GITHUB_API_URL`, bound to no repository, with no
/// write delay.
fn authenticated_client(env: &Env, token: &SecretString) -> Result<GitHub, TokenError> {
    Ok(crate::session::client(api_url(env), token, None, Duration::ZERO)?)
}

fn api_url(env: &Env) -> &str {
    env.get(ev::GITHUB_API_URL).unwrap_or(DEFAULT_API_URL)
}

/// `owner/repo` from `GITHUB_REPOSITORY`.
fn env_repository(env: &Env) -> Option<(String, String)> {
    let (o, r) = env.get(ev::GITHUB_REPOSITORY)?.split_once('/')?;
    Some((o.to_string(), r.to_string()))
}
