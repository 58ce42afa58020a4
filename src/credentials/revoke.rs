//! `token-refresh revoke`: an installation token ends before its hour is up.

use std::path::Path;

use super::sinks::meta_path;
use super::{authenticated_client, register, TokenError};
use crate::context::Env;
use crate::github::credential;
use crate::github::GitHubError;
use crate::log;
use crate::redact::Redactor;

/// `token-refresh revoke`: `DELETE /installation/token` with the token from `--file` (then the
/// file and its metadata are removed, so no later run reuses a dead token) or from
/// `GH_TOKEN`, else `GITHUB_TOKEN`. Either is checked where it is read
/// ([`credential::user_credential`]): one trailing newline is dropped, anything else that is
/// not visible ASCII is exit 2.
pub(crate) async fn revoke(file: Option<&Path>, env: &Env, redactor: &mut Redactor) -> Result<(), TokenError> {
    let token = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| TokenError::Usage(format!("--file {}: cannot read it: {e}", path.display())))?;
            Some(credential::user_credential(&text, &format!("--file {}", path.display()))?)
        }
        None => credential::token_from_env(env)?,
    };
    let Some(token) = token else {
        return Err(TokenError::Usage("no token to revoke: pass --file PATH or set GH_TOKEN or GITHUB_TOKEN".into()));
    };
    register(redactor, &token);
    let github = authenticated_client(env, &token)?;
    github.revoke_installation_token().await.map_err(|e| match e {
        GitHubError::Auth { action, status, message } => TokenError::Refused {
            action,
            status,
            message,
            help: "the token is already expired or revoked, or is not an installation token".into(),
        },
        other => other.into(),
    })?;
    if let Some(path) = file {
        for p in [path.to_path_buf(), meta_path(path)] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn(&format!("revoked, but cannot remove {}: {e}", p.display()));
                }
            }
        }
    }
    log::info("revoked the installation token");
    Ok(())
}
