//! Token reuse: a credential in `--file` whose `PATH.meta.json` matches the request and has
//! more than `--min-ttl` seconds left is handed out again without any API call; `--watch`
//! sleeps until a credential reaches `--min-ttl`.

use std::time::Duration;

use super::sinks::{meta_path, Credential, Sinks, TokenMeta};
use crate::clock::now_secs;
use crate::github::credential;
use crate::log;

/// Seconds until `expires_at` (RFC 3339), negative when past; `None` when unparsable.
pub(crate) fn remaining_secs(expires_at: &str, now: u64) -> Option<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(expires_at).ok()?.timestamp();
    Some(at - i64::try_from(now).ok()?)
}

/// The credential in `--file` when its metadata matches `kind`/`request` and it has more than
/// `min_ttl` seconds left; any unreadable or stale state means "mint a new one".
pub(crate) fn reusable(sinks: &Sinks, kind: &str, request: &str) -> Option<Credential> {
    let file = sinks.file.as_ref()?;
    let meta: TokenMeta = serde_json::from_slice(&std::fs::read(meta_path(file)).ok()?).ok()?;
    if meta.kind != kind || meta.request != request {
        return None;
    }
    let left = remaining_secs(meta.expires_at.as_deref()?, now_secs())?;
    if left <= i64::try_from(sinks.min_ttl).unwrap_or(i64::MAX) {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    match credential::user_credential(&text, &format!("--file {}", file.display())) {
        Ok(value) => Some(Credential { value, meta }),
        Err(e) => {
            log::warn(&format!("{e}; minting a new credential instead of reusing it"));
            None
        }
    }
}

/// How long until a credential described by `meta` has only `min_ttl` seconds left; at least
/// one second, so a lifetime shorter than `min_ttl` cannot spin.
pub(crate) fn until_min_ttl(meta: &TokenMeta, min_ttl: u64) -> Duration {
    let left = meta.expires_at.as_deref().and_then(|e| remaining_secs(e, now_secs())).unwrap_or(0);
    let secs = left - i64::try_from(min_ttl).unwrap_or(i64::MAX);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_life_from_rfc3339() {
        assert_eq!(remaining_secs("2020-01-22T12:13:35.123-08:00", 1_579_723_915), Some(100));
        assert_eq!(remaining_secs("2016-07-11T22:14:10Z", 1_468_275_250), Some(0));
        assert_eq!(remaining_secs("not a date", 0), None);
    }
}
