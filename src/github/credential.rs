//! Every GitHub credential is checked once, where it enters the process, so that no later
//! step (an `Authorization` header, a sink, `--print`) ever sees one that could break it.
//!
//! Decisions:
//! - The run's token comes from `GH_TOKEN`, else `GITHUB_TOKEN`: the order of precedence
//!   the `gh` CLI documents (`gh help environment`). [`token_from_env`] is the one reader.
//! - A value given by the user (an environment variable, a token file, a keyring entry) may
//!   end in one newline (`\n` or `\r\n`, as `echo` and editors write it), which is dropped.
//!   What is left must be a plain visible-ASCII string (bytes 0x21..=0x7E), non-empty: a
//!   space, a control byte, a second newline or a non-ASCII character is refused with exit 2,
//!   naming where the value came from and never the value ([`CredentialError::User`]).
//! - A credential GitHub minted (an installation, registration or remove token) must match
//!   `[A-Za-z0-9_.-]+`, a superset of every documented token format (`ghs_…`, the
//!   upper-case registration tokens); a JIT config must be standard base64
//!   (`[A-Za-z0-9+/=]+`). Neither alphabet holds `:` or `#`, so a printed credential can
//!   never be a workflow command (`::warning::`, `##[error]`). Anything else is refused with
//!   exit 4 (a credential we cannot use), naming the request, never the value
//!   ([`CredentialError::Minted`]).

use secrecy::SecretString;

use crate::context::Env;
use crate::env_vars as ev;

/// A credential that was refused where it entered. The value is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A user-provided credential (exit 2): `source_name` is the variable, file or keyring
    /// entry it came from; `problem` says what is wrong with it.
    #[error("{source_name}: {problem}; refusing to use it\nhelp: a token is one line of visible ASCII (one trailing newline is allowed); check how it was written there")]
    User { source_name: String, problem: String },
    /// A credential GitHub sent back (exit 4): `action` is the request that minted it.
    #[error("github: {action}: the credential GitHub sent is {problem}; refusing to use or deliver it")]
    Minted { action: String, problem: String },
}

/// The alphabet a minted credential must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MintedKind {
    /// An installation, registration or remove token: `[A-Za-z0-9_.-]+`.
    Token,
    /// An `encoded_jit_config`: standard base64, `[A-Za-z0-9+/=]+`.
    Base64,
}

/// Drops one trailing `\n` or `\r\n`.
fn trim_one_newline(value: &str) -> &str {
    value.strip_suffix("\r\n").or_else(|| value.strip_suffix('\n')).unwrap_or(value)
}

/// What is wrong with `value` as a visible-ASCII credential, if anything (never the value).
fn visible_ascii_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("it is empty".into());
    }
    let (i, b) = value.bytes().enumerate().find(|(_, b)| !(0x21..=0x7E).contains(b))?;
    let what = match b {
        b'\n' | b'\r' => "a line break".to_string(),
        b' ' => "a space".to_string(),
        b'\t' => "a tab".to_string(),
        0x00..=0x1F | 0x7F => format!("the control byte 0x{b:02x}"),
        _ => "a non-ASCII character".to_string(),
    };
    Some(format!("it holds {what} at byte {} (of {})", i + 1, value.len()))
}

/// A credential the user gave (`source_name`: `GITHUB_TOKEN`, `--file PATH`, `keyring entry
/// NAME`): one trailing newline dropped, the rest plain visible ASCII.
///
/// Errors: [`CredentialError::User`] naming `source_name`.
pub(crate) fn user_credential(value: &str, source_name: &str) -> Result<SecretString, CredentialError> {
    let value = trim_one_newline(value);
    match visible_ascii_problem(value) {
        Some(problem) => Err(CredentialError::User { source_name: source_name.to_string(), problem }),
        None => Ok(SecretString::from(value.to_string())),
    }
}

/// Checks that `value` can be sent as is (no newline trimmed): the last guard before a
/// header is built, for a token that did not pass [`user_credential`] or [`check_minted`].
///
/// Errors: [`CredentialError::User`] naming `source_name`.
pub(crate) fn check_sendable(value: &str, source_name: &str) -> Result<(), CredentialError> {
    match visible_ascii_problem(value) {
        Some(problem) => Err(CredentialError::User { source_name: source_name.to_string(), problem }),
        None => Ok(()),
    }
}

/// Checks a credential GitHub minted in answer to `action` against `kind`'s alphabet.
///
/// Errors: [`CredentialError::Minted`] naming `action`.
pub(crate) fn check_minted(value: &str, kind: MintedKind, action: &str) -> Result<(), CredentialError> {
    let allowed = |b: u8| match kind {
        MintedKind::Token => b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'),
        MintedKind::Base64 => b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
    };
    let problem = if value.is_empty() {
        Some("empty".to_string())
    } else {
        value.bytes().position(|b| !allowed(b)).map(|i| {
            let alphabet = match kind {
                MintedKind::Token => "[A-Za-z0-9_.-]",
                MintedKind::Base64 => "base64 ([A-Za-z0-9+/=])",
            };
            format!("not a plain {alphabet} string (byte {} of {})", i + 1, value.len())
        })
    };
    match problem {
        Some(problem) => Err(CredentialError::Minted { action: action.to_string(), problem }),
        None => Ok(()),
    }
}

/// The GitHub token of a run: `GH_TOKEN`, else `GITHUB_TOKEN` (gh's precedence), checked by
/// [`user_credential`]. `Ok(None)` when neither is set (or both are empty).
///
/// Errors: [`CredentialError::User`] naming the variable that holds a bad value (the other is
/// not tried: a bad token is a mistake to fix, not to work around).
pub(crate) fn token_from_env(env: &Env) -> Result<Option<SecretString>, CredentialError> {
    for name in [ev::GH_TOKEN, ev::GITHUB_TOKEN] {
        if let Some(value) = env.get(name) {
            return user_credential(value, name).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn one_trailing_newline_is_dropped_and_nothing_else_is_allowed() {
        for ok in ["ghs_abc", "ghs_abc\n", "ghs_abc\r\n", "a!~"] {
            assert!(!user_credential(ok, "X").unwrap().expose_secret().ends_with('\n'), "{ok:?}");
        }
        for bad in ["", "\n", "ghs_abc\n\n", "ghs\nabc", "ghs abc", "ghs\tabc", "ghs\x1babc", "ghs\x7f", "ghsé"] {
            let e = user_credential(bad, "GITHUB_TOKEN").unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("GITHUB_TOKEN: "), "{text}");
            assert!(bad.len() < 4 || !text.contains(bad), "{text}");
        }
    }

    #[test]
    fn gh_token_wins_over_github_token_and_a_bad_one_is_named() {
        let both = Env::from_pairs([("GH_TOKEN", "gho_first"), ("GITHUB_TOKEN", "ghs_second")]);
        assert_eq!(token_from_env(&both).unwrap().unwrap().expose_secret(), "gho_first");
        let only = Env::from_pairs([("GITHUB_TOKEN", "ghs_second\n")]);
        assert_eq!(token_from_env(&only).unwrap().unwrap().expose_secret(), "ghs_second");
        let bad = Env::from_pairs([("GH_TOKEN", "x\ny"), ("GITHUB_TOKEN", "ghs_second")]);
        assert!(token_from_env(&bad).unwrap_err().to_string().starts_with("GH_TOKEN: "));
        assert!(token_from_env(&Env::from_pairs([])).unwrap().is_none());
    }

    #[test]
    fn minted_credentials_cannot_be_workflow_commands() {
        check_minted("ghs_16C7e42F292c6912E7710c838347Ae178B4a", MintedKind::Token, "a").unwrap();
        check_minted("LLBF3JGZDX3P5PMEXLND6TS6FCWO6", MintedKind::Token, "a").unwrap();
        check_minted("eyJhIjoxfQ==+/", MintedKind::Base64, "a").unwrap();
        for bad in ["", "x\n::warning::hi", "##[error]x", "a:b", "a b"] {
            assert!(check_minted(bad, MintedKind::Token, "a").is_err(), "{bad:?}");
            assert!(check_minted(bad, MintedKind::Base64, "a").is_err(), "{bad:?}");
        }
        let e = check_minted("x\n::warning::hi", MintedKind::Token, "create a runner token").unwrap_err();
        assert!(!e.to_string().contains("warning"), "{e}");
    }
}
