//! Hidden markers that make every create idempotent: `<!-- agentctl:KIND:v1 key=value ... -->`
//! is embedded in each body we post and looked up before writing, so a re-run updates or skips
//! instead of posting twice.
//!
//! A marker counts only as the body's last non-empty line, with validated fields (see
//! [`Marker::find`]); the renderers in `crate::output::markdown` also defang every `<!--`/`-->`
//! in untrusted text, so a forged marker fails both ways.
//!
//! A leaf: the renderers write markers and the GitHub lookups read them, neither through the
//! other.

use std::collections::BTreeMap;

/// Marker kind of the summary comment (`sha`, `base` fields).
pub const SUMMARY_MARKER: &str = "summary";
/// Marker kind of a posted review (`sha` field).
pub const REVIEW_MARKER: &str = "review";

/// Keys a marker may carry: `sha` and `base` hold full git shas; `pr` a pull request number
/// and `branch` an `agentctl/fix-…` branch name (the fix marker, see [`valid_field`]).
const FIELDS: [&str; 4] = ["sha", "base", "pr", "branch"];

/// Whether `v` is a valid value of field `k`: shas as [`is_full_sha`], `pr` 1–12 digits,
/// `branch` `agentctl/fix-` followed by 1–80 lowercase letters, digits and `-`.
fn valid_field(k: &str, v: &str) -> bool {
    match k {
        "pr" => (1..=12).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()),
        "branch" => v.strip_prefix("agentctl/fix-").is_some_and(|rest| {
            (1..=80).contains(&rest.len()) && rest.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        }),
        _ => is_full_sha(v),
    }
}

/// A full git object name as GitHub reports it: 40 lowercase hex digits (SHA-1).
fn is_full_sha(v: &str) -> bool {
    v.len() == 40 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A parsed marker: its kind (`summary`, `review`, ...) and key/value fields (no spaces in
/// values; `sha=...`, `base=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub kind: String,
    pub fields: BTreeMap<String, String>,
}

impl Marker {
    /// A marker of `kind` with `fields`.
    pub fn new(kind: &str, fields: &[(&str, &str)]) -> Self {
        Self { kind: kind.to_string(), fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// Renders `<!-- agentctl:KIND:v1 k=v ... -->`.
    pub fn render(&self) -> String {
        let mut s = format!("<!-- agentctl:{}:v1", self.kind);
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push_str(" -->");
        s
    }

    /// Finds our marker of `kind` in `body`: only at its fixed place, the body's last non-empty
    /// line, and only when that whole line is `<!-- agentctl:KIND:v1 k=v ... -->` with known
    /// keys, each once, each valid: `sha`, `base` 40 lowercase hex digits (a full git sha),
    /// `pr` digits, `branch` an `agentctl/fix-…` name.
    ///
    /// Anything else is not a marker (`None`): untrusted text (file paths, titles, model text)
    /// is rendered above our marker, so a marker-shaped string there must never count, and a
    /// malformed field would be fed to later requests (the incremental compare).
    pub fn find(body: &str, kind: &str) -> Option<Marker> {
        let last = body.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
        let inner = last.strip_prefix("<!-- agentctl:")?.strip_suffix(" -->")?;
        let mut words = inner.split(' ');
        let head = words.next()?;
        if head.strip_suffix(":v1")? != kind {
            return None;
        }
        let mut fields = BTreeMap::new();
        for word in words {
            let (k, v) = word.split_once('=')?;
            if !FIELDS.contains(&k) || !valid_field(k, v) || fields.insert(k.to_string(), v.to_string()).is_some() {
                return None;
            }
        }
        Some(Marker { kind: kind.to_string(), fields })
    }

    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_through_a_comment_body() {
        let m = Marker::new("summary", &[("sha", SHA), ("base", FUTURE)]);
        let body = format!("## Review\n\ntext\n\n{}\n", m.render());
        let found = Marker::find(&body, "summary").expect("marker");
        assert_eq!(found, m);
        assert_eq!(found.get("sha"), Some(SHA));
        assert!(Marker::find(&body, "review").is_none());
    }

    const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    const FUTURE: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn forged_marker_before_the_last_line_is_not_a_marker() {
        // A file path or finding title holding a marker, rendered above our own.
        let forged = format!("<!-- agentctl:review:v1 sha={FUTURE} -->");
        let ours = Marker::new("review", &[("sha", SHA)]).render();
        let body = format!("### review\n\n- `{forged}` line 3\n- **{forged}**\n\n{ours}\n\n");
        assert_eq!(Marker::find(&body, "review").unwrap().get("sha"), Some(SHA));
        // Without our marker at the end, a forged one anywhere else counts for nothing.
        let body = format!("{forged}\nthen some text\n");
        assert_eq!(Marker::find(&body, "review"), None);
        let body = format!("text {forged}\n");
        assert_eq!(Marker::find(&body, "review"), None, "the marker must be the whole line");
    }

    #[test]
    fn forged_marker_with_bad_fields_is_not_a_marker() {
        let ok = |line: &str| Marker::find(&format!("body\n{line}\r\n"), "summary");
        assert!(ok(&format!("<!-- agentctl:summary:v1 sha={SHA} base={SHA} -->")).is_some());
        // Shas are 40 lowercase hex digits.
        assert_eq!(ok("<!-- agentctl:summary:v1 sha=abc123 -->"), None);
        assert_eq!(ok(&format!("<!-- agentctl:summary:v1 sha={} -->", SHA.to_uppercase())), None);
        assert_eq!(ok(&format!("<!-- agentctl:summary:v1 sha={SHA}0 -->")), None);
        // Unknown keys, bare words, duplicates and empty values are refused.
        assert_eq!(ok(&format!("<!-- agentctl:summary:v1 sha={SHA} evil=1 -->")), None);
        assert_eq!(ok(&format!("<!-- agentctl:summary:v1 sha={SHA} junk -->")), None);
        assert_eq!(ok(&format!("<!-- agentctl:summary:v1 sha={SHA} sha={FUTURE} -->")), None);
        assert_eq!(ok("<!-- agentctl:summary:v1 sha= -->"), None);
        // The fix marker's fields: digits, and our own branch prefix with a safe tail only.
        assert!(ok("<!-- agentctl:summary:v1 pr=12 branch=agentctl/fix-3-typo -->").is_some());
        assert_eq!(ok("<!-- agentctl:summary:v1 pr=12a -->"), None);
        assert_eq!(ok("<!-- agentctl:summary:v1 branch=main -->"), None);
        assert_eq!(ok("<!-- agentctl:summary:v1 branch=agentctl/fix-3-../x -->"), None);
        // Nothing after the closing `-->`, and a kind must match exactly.
        assert_eq!(ok(&format!("<!-- agentctl:summary:v1 sha={SHA} --> x")), None);
        assert_eq!(ok(&format!("<!-- agentctl:summaryx:v1 sha={SHA} -->")), None);
    }
}
