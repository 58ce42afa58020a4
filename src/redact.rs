//! Secret registry and scrubbing. Every text that leaves the process — logs, step outputs, the
//! job summary, review comments, SARIF, and the prompt sent to a provider — passes through
//! [`Redactor::redact`].
//!
//! Two layers: (1) known secret values we hold (API keys, tokens) and their derived forms —
//! base64 at the three byte offsets, double base64, URL-escaped, JSON-escaped, JSON
//! `\uXXXX`-escaped and `%XX`-encoded (every character, or only some), hex; (2)
//! high-confidence token patterns for secrets we do not hold: GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/
//! `ghr_`/`github_pat_`, OpenAI `sk-`, Anthropic `sk-ant-`, AWS `AKIA`, PEM private-key blocks,
//! JWTs.
//!
//! The derived forms follow the GitHub Actions runner's secret masker (`ValueEncoders` in
//! `actions/runner`, and its ADR 0297 "Base64 masking trailing characters"): a secret inside a
//! longer text that is base64-encoded as a whole shows up as one of three character sequences,
//! depending on the secret's byte offset modulo 3, minus the edge characters that also carry
//! bits of the neighbouring text.

use std::ops::Range;
use std::sync::{Arc, LazyLock, RwLock};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use regex::Regex;
use secrecy::{ExposeSecret as _, SecretString};

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest secret value (or line of a multi-line secret) that is registered at all, in bytes.
/// Shorter values would shred ordinary text (and the runner would mask them everywhere).
pub const MIN_SECRET_LEN: usize = 4;

/// Shortest secret value (or line) whose derived forms (base64, hex, ...) are registered, in
/// bytes. Derived forms of short values are short runs of base64/hex characters that occur by
/// chance in hashes and encoded data, so they are only worth their false positives for values
/// long enough to be real credentials.
pub const MIN_DERIVED_LEN: usize = 8;

/// A kind of high-confidence token pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    GitHubToken,
    OpenAiKey,
    AnthropicKey,
    AwsAccessKeyId,
    PrivateKey,
    Jwt,
}

impl TokenKind {
    /// Human name for messages ("GitHub token", ...).
    pub fn describe(self) -> &'static str {
        match self {
            TokenKind::GitHubToken => "GitHub token",
            TokenKind::OpenAiKey => "OpenAI API key",
            TokenKind::AnthropicKey => "Anthropic API key",
            TokenKind::AwsAccessKeyId => "AWS access key id",
            TokenKind::PrivateKey => "private key",
            TokenKind::Jwt => "JSON Web Token",
        }
    }
}

/// One pattern hit: its kind and byte range in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    pub kind: TokenKind,
    pub range: std::ops::Range<usize>,
}

/// The token patterns, compiled once. `(?-u:\b)` is an ASCII word boundary: tokens are ASCII
/// and a boundary against any non-ASCII-alphanumeric byte is what we want.
///
/// - GitHub: `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36 base62 (GitHub, "Behind GitHub's new
///   authentication token formats", 2021), and fine-grained `github_pat_` + 82 `[A-Za-z0-9_]`.
///   Longer bodies are accepted too, since GitHub has said these lengths may grow.
/// - `sk-`: one pattern for OpenAI (`sk-`, `sk-proj-`, `sk-svcacct-`, `sk-admin-`) and
///   Anthropic (`sk-ant-`) with at least 20 body characters; [`classify_sk`] tells them apart and
///   drops kebab-case words (see there).
/// - AWS access key ids: `AKIA` (long-term) / `ASIA` (temporary) + 16 `[A-Z0-9]`.
/// - PEM private keys: the `-----BEGIN ... PRIVATE KEY-----` header (also `OPENSSH`,
///   `ENCRYPTED`, PGP's `PRIVATE KEY BLOCK`), through the matching `END` line when the body in
///   between looks like PEM (base64, headers such as `Proc-Type: 4,ENCRYPTED`, and a diff's `+`
///   markers, which are base64 characters anyway); the header alone otherwise.
/// - JWT: `eyJ` (base64url of `{"`) header, payload and signature, base64url, dot-separated.
static PATTERNS: LazyLock<Vec<(TokenKind, Regex)>> = LazyLock::new(|| {
    const PEM_LABEL: &str = r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?";
    let specs: [(TokenKind, String); 5] = [
        (
            TokenKind::GitHubToken,
            r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{82,})(?-u:\b)".to_owned(),
        ),
        // Classified into OpenAI or Anthropic afterwards.
        (TokenKind::OpenAiKey, r"(?-u:\b)sk-[A-Za-z0-9_-]{20,}".to_owned()),
        (TokenKind::AwsAccessKeyId, r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)".to_owned()),
        (
            TokenKind::PrivateKey,
            format!(r"-----BEGIN {PEM_LABEL}-----(?:[A-Za-z0-9+/=:,.\s-]*?-----END {PEM_LABEL}-----)?"),
        ),
        (TokenKind::Jwt, r"(?-u:\b)eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}".to_owned()),
    ];
    specs
        .into_iter()
        .filter_map(|(kind, pattern)| match Regex::new(&pattern) {
            Ok(re) => Some((kind, re)),
            // Unreachable with the literals above (a unit test compiles every one); dropping a
            // pattern beats panicking in the middle of a review.
            Err(_) => None,
        })
        .collect()
});

/// Tells an `sk-` hit apart: `sk-ant-` is Anthropic, anything else OpenAI. Returns `None` for
/// text that only looks like a key: the random body of a real key (48+ base62 characters, or
/// the longer `sk-proj-` form) mixes upper case, lower case and digits, while kebab-case words
/// (`sk-learn-...`, `desk-...` is already excluded by the word boundary) do not.
fn classify_sk(hit: &str) -> Option<TokenKind> {
    let (kind, body) = match hit.strip_prefix("sk-ant-") {
        Some(body) => (TokenKind::AnthropicKey, body),
        None => (TokenKind::OpenAiKey, hit.strip_prefix("sk-").unwrap_or(hit)),
    };
    let has = |f: fn(&u8) -> bool| body.as_bytes().iter().any(f);
    let random_looking =
        body.len() >= 20 && has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase) && has(u8::is_ascii_digit);
    random_looking.then_some(kind)
}

/// Finds high-confidence token patterns in `text`. A PEM block matches from its `BEGIN` line;
/// on a single line (a diff line) the `-----BEGIN ... PRIVATE KEY-----` header alone matches.
///
/// Hits are sorted by start offset; a hit inside another one is dropped. Ranges are byte
/// offsets on char boundaries of `text`.
pub fn find_tokens(text: &str) -> Vec<TokenMatch> {
    let mut hits = Vec::new();
    for (kind, re) in PATTERNS.iter() {
        for m in re.find_iter(text) {
            let kind = match kind {
                TokenKind::OpenAiKey => match classify_sk(m.as_str()) {
                    Some(kind) => kind,
                    None => continue,
                },
                other => *other,
            };
            hits.push(TokenMatch { kind, range: m.range() });
        }
    }
    hits.sort_by_key(|h| (h.range.start, std::cmp::Reverse(h.range.end)));
    let mut out: Vec<TokenMatch> = Vec::with_capacity(hits.len());
    for hit in hits {
        if out.last().is_some_and(|prev| hit.range.end <= prev.range.end) {
            continue;
        }
        out.push(hit);
    }
    out
}

/// Known secrets and their derived forms; cheap to clone and share (`Arc` inside).
///
/// Clones share one registry: a secret added through any clone (say, an installation token
/// minted mid-run by the GitHub client) is redacted by all of them, so a logger set up at start
/// never misses a later secret.
#[derive(Clone, Default)]
pub struct Redactor {
    registry: Arc<RwLock<Registry>>,
}

/// The shared state behind a [`Redactor`].
#[derive(Default)]
struct Registry {
    /// Raw values and lines for `::add-mask::`, in registration order, without duplicates.
    mask_lines: Vec<String>,
    /// Every string to scrub (raw values, lines, derived forms), longest first, no duplicates.
    forms: Vec<String>,
    /// Every form in one Aho-Corasick automaton: one pass over a text finds all occurrences
    /// of all forms. Linear in the forms' total length to build (a regex set of the same
    /// literals took ~50 MB and ~0.1 s for one PEM key's forms); `None` if it could not be
    /// built, in which case every form is searched on its own. Built at the first redaction
    /// after a registration, not at each registration: a run registers several secrets (a PEM
    /// key's forms alone are ~10^5 bytes) and may never redact anything.
    matcher: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>>,
}

impl std::fmt::Debug for Redactor {
    /// Counts only: the registry's strings are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reg = self.read();
        f.debug_struct("Redactor").field("secrets", &reg.mask_lines.len()).field("forms", &reg.forms.len()).finish()
    }
}

impl Redactor {
    /// An empty redactor (patterns only).
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated in a way that
        // matters (we only push complete strings), so a poisoned lock is still usable.
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a secret value and its derived forms. Values shorter than 4 bytes
    /// ([`MIN_SECRET_LEN`]) are ignored (they would shred ordinary text); each line of a
    /// multi-line secret is registered too. Derived forms (base64 at the three offsets and
    /// base64url, double base64, URL-escaped, JSON-escaped, every character as `\uXXXX` and
    /// every byte as `%XX` (both hex cases), hex lower/upper) are registered for
    /// the value and each line of at least [`MIN_DERIVED_LEN`] bytes.
    ///
    /// A value that occurs inside [`REDACTED`] itself is ignored, so that redaction stays
    /// idempotent.
    pub fn add_secret(&mut self, secret: &SecretString) {
        let value = secret.expose_secret();
        let mut candidates: Vec<&str> = vec![value];
        if value.contains('\n') || value.contains('\r') {
            candidates.extend(value.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)));
        }
        let candidates: Vec<&str> =
            candidates.into_iter().filter(|c| c.trim().len() >= MIN_SECRET_LEN && !REDACTED.contains(*c)).collect();
        if candidates.is_empty() {
            return;
        }

        let mut reg = self.registry.write().unwrap_or_else(|e| e.into_inner());
        let mut forms = std::mem::take(&mut reg.forms);
        for c in &candidates {
            // The whole multi-line value is not a line the runner can mask; its lines are.
            if !c.contains('\n') && !reg.mask_lines.iter().any(|m| m == c) {
                reg.mask_lines.push((*c).to_owned());
            }
            forms.push((*c).to_owned());
            if c.len() >= MIN_DERIVED_LEN {
                forms.extend(derived_forms(c));
            }
        }
        forms.retain(|f| !f.is_empty());
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        reg.matcher = std::sync::OnceLock::new();
        reg.forms = forms;
    }

    /// The registered raw values' lines, for `::add-mask::` (each line of a multi-line secret
    /// separately, as the runner masks line by line). Lines shorter than [`MIN_SECRET_LEN`]
    /// are left out, as in [`Redactor::add_secret`].
    pub fn mask_lines(&self) -> Vec<String> {
        self.read().mask_lines.clone()
    }

    /// Replaces every known secret form and every token pattern with [`REDACTED`].
    ///
    /// All occurrences are found first (overlapping ones included) and merged, so a shorter form
    /// matched first never leaves the tail of a longer one behind; each merged span becomes one
    /// [`REDACTED`]. Idempotent: `redact(redact(t)) == redact(t)`.
    pub fn redact(&self, text: &str) -> String {
        let mut spans = self.find_forms(text);
        spans.extend(find_tokens(text).into_iter().map(|m| m.range));
        // A secret with only some characters escaped (`\u0073k-...`, `sk%2Dproj...`) matches
        // no registered form; look again in the decoded text. Matches shorter than
        // MIN_DERIVED_LEN decoded bytes are ignored there, like other derived forms.
        if let Some(view) = DecodedView::new(text) {
            let hits =
                self.find_forms(&view.text).into_iter().chain(find_tokens(&view.text).into_iter().map(|m| m.range));
            spans.extend(hits.filter(|r| r.len() >= MIN_DERIVED_LEN).filter_map(|r| view.original(&r)));
        }
        if spans.is_empty() {
            return text.to_owned();
        }
        spans.sort_by_key(|r| r.start);

        let mut out = String::with_capacity(text.len());
        let mut cursor = 0;
        let mut current: Option<Range<usize>> = None;
        for span in spans {
            match &mut current {
                Some(cur) if span.start <= cur.end => cur.end = cur.end.max(span.end),
                _ => {
                    if let Some(cur) = current.take() {
                        out.push_str(&text[cursor..cur.start]);
                        out.push_str(REDACTED);
                        cursor = cur.end;
                    }
                    current = Some(span);
                }
            }
        }
        if let Some(cur) = current {
            out.push_str(&text[cursor..cur.start]);
            out.push_str(REDACTED);
            cursor = cur.end;
        }
        out.push_str(&text[cursor..]);
        out
    }
}

impl Redactor {
    /// Byte ranges of every occurrence of every registered form in `text`, overlapping ones
    /// included, unsorted.
    fn find_forms(&self, text: &str) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let reg = self.read();
        let matcher = reg.matcher.get_or_init(|| {
            // A contiguous NFA, not the DFA `AhoCorasick::new` picks for few patterns: a DFA
            // over a PEM key's forms costs tens of MB to build.
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .build(&reg.forms)
                .ok()
        });
        if let Some(matcher) = matcher {
            // Overlapping search reports every occurrence of every form, overlapping ones
            // ("abab" twice in "ababab") included.
            spans.extend(matcher.find_overlapping_iter(text).map(|m| m.range()));
            return spans;
        }
        for form in &reg.forms {
            let mut from = 0;
            while let Some(pos) = text.get(from..).and_then(|rest| rest.find(form.as_str())) {
                let start = from + pos;
                spans.push(start..start + form.len());
                // Step one char, not one match: overlapping occurrences ("abab" in
                // "ababab") must all be covered.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        spans
    }

    /// Redacts a JSON document (SARIF, `--format json`) by value, then as text.
    ///
    /// Every string and key is redacted as the text a reader decodes, so a form that only
    /// shows up after unescaping (say, a JSON-escaped secret that a model wrote into a finding,
    /// escaped once more by the renderer) is caught as well. Formatting is kept: pretty JSON
    /// stays pretty, a final newline stays. Text that is not JSON is redacted as text.
    pub fn redact_json(&self, json: &str) -> String {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
            return self.redact(json);
        };
        if !self.redact_value(&mut value) {
            return self.redact(json);
        }
        let pretty = json.trim_start().starts_with(['{', '[']) && json.contains('\n');
        let mut out = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }
            .unwrap_or_else(|_| self.redact(json));
        if json.ends_with('\n') && !out.ends_with('\n') {
            out.push('\n');
        }
        self.redact(&out)
    }

    /// Redacts every string and key of `value` in place; whether anything changed.
    fn redact_value(&self, value: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                let r = self.redact(s);
                let changed = r != *s;
                *s = r;
                changed
            }
            Value::Array(items) => items.iter_mut().fold(false, |acc, v| self.redact_value(v) | acc),
            Value::Object(map) => {
                let mut changed = false;
                let old = std::mem::take(map);
                for (k, mut v) in old {
                    changed |= self.redact_value(&mut v);
                    let key = self.redact(&k);
                    changed |= key != k;
                    map.insert(key, v);
                }
                changed
            }
            _ => false,
        }
    }
}

/// The forms of `value` that show up in encoded text containing it: base64 and base64url at
/// the three alignments (plus the exact padded base64), double base64, URL-escaped (`%20` and
/// form-style `+` for spaces), JSON-escaped, hex lower and upper. Forms equal to `value` are
/// left to the caller's dedup.
fn derived_forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut forms = Vec::new();

    // Single base64: the exact encoding (what `base64 <<<"$SECRET"`-style mistakes and
    // `Authorization: Basic` produce for the value alone), then the stable cores.
    forms.push(STANDARD.encode(bytes));
    let cores = base64_cores(bytes);
    for core in &cores {
        // base64url differs only in two alphabet characters.
        forms.push(core.replace('+', "-").replace('/', "_"));
        forms.push(core.clone());
    }

    // Double base64: the outer encoding of a text that holds one of the inner stable forms
    // at any offset; so the three cores of each inner form.
    let mut inner = cores.clone();
    inner.push(STANDARD.encode(bytes));
    for form in &inner {
        forms.extend(base64_cores(form.as_bytes()));
    }

    let url = urlencoding::encode(value).into_owned();
    if url.contains("%20") {
        forms.push(url.replace("%20", "+"));
    }
    forms.push(url);

    if let Ok(json) = serde_json::to_string(value) {
        // Strip the quotes serde_json adds; what remains appears inside any JSON string that
        // contains the value.
        if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
            if !inner.is_ascii() {
                // Python's `json.dumps` (and others) escape non-ASCII as UTF-16 `\uXXXX`.
                forms.push(ascii_json(inner));
            }
            forms.push(inner.to_owned());
        }
    }

    // Every character as a JSON `\uXXXX` escape (valid JSON for any string, and what some
    // serializers and obfuscating hands write), and every byte as `%XX` (what clients that
    // percent-encode everything send); each in both hex cases. Texts that escape only some
    // characters are caught by the decoded view in `Redactor::redact`.
    forms.push(json_u_escaped(value, false));
    forms.push(json_u_escaped(value, true));
    forms.push(bytes.iter().map(|b| format!("%{b:02x}")).collect());
    forms.push(bytes.iter().map(|b| format!("%{b:02X}")).collect());

    forms.push(hex::encode(bytes));
    forms.push(hex::encode_upper(bytes));

    // Cores of very short values can be a couple of characters; never register those.
    forms.retain(|f| f.len() >= MIN_DERIVED_LEN);
    forms
}

/// `value` with every character written as JSON `\uXXXX` UTF-16 units (RFC 8259 §7), hex in
/// upper or lower case.
fn json_u_escaped(value: &str, upper: bool) -> String {
    let mut out = String::with_capacity(value.len() * 6);
    for c in value.chars() {
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            out.push_str(&if upper { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") });
        }
    }
    out
}

/// A text with its escapes decoded, for matching secrets that were only partly escaped.
///
/// Decoded are JSON `\uXXXX` escapes of non-surrogate code points (RFC 8259 §7) and `%XX`
/// escapes of ASCII bytes (RFC 3986 §2.1), each hex digit in either case; everything else is
/// copied. `origin[i]` is the byte range of `text` that produced decoded byte `i`, so a match
/// in the view maps back to whole escapes (and whole characters) of the original.
struct DecodedView {
    text: String,
    origin: Vec<(usize, usize)>,
}

impl DecodedView {
    /// `None` when `text` holds no escape to decode (the common case: no extra work).
    fn new(text: &str) -> Option<Self> {
        if !text.contains("\\u") && !text.contains('%') {
            return None;
        }
        let b = text.as_bytes();
        let hex_at = |at: usize, n: usize| -> Option<u32> {
            let digits = b.get(at..at + n)?;
            if !digits.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
        };
        let mut out = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
        let mut decoded_any = false;
        let mut i = 0;
        while i < b.len() {
            let escape = match b[i] {
                b'\\' if b.get(i + 1) == Some(&b'u') => hex_at(i + 2, 4).and_then(char::from_u32).map(|c| (c, 6)),
                b'%' => hex_at(i + 1, 2).filter(|v| *v < 0x80).and_then(char::from_u32).map(|c| (c, 3)),
                _ => None,
            };
            let (c, len) = match escape {
                Some(found) => {
                    decoded_any = true;
                    found
                }
                None => {
                    let c = text.get(i..).and_then(|rest| rest.chars().next())?;
                    (c, c.len_utf8())
                }
            };
            out.push(c);
            origin.extend(std::iter::repeat_n((i, i + len), c.len_utf8()));
            i += len;
        }
        decoded_any.then_some(Self { text: out, origin })
    }

    /// The byte range of the original text behind decoded range `r` (non-empty).
    fn original(&self, r: &Range<usize>) -> Option<Range<usize>> {
        let start = self.origin.get(r.start)?.0;
        let end = self.origin.get(r.end.checked_sub(1)?)?.1;
        Some(start..end)
    }
}

/// `json` (an escaped JSON string body) with every non-ASCII char as `\uXXXX` UTF-16 units,
/// lower-case hex as Python writes them.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The base64 characters of `bytes` that do not depend on the surrounding text, for each of
/// the three alignments the bytes can have inside a longer encoded text.
///
/// Encoding `bytes[k..]` (k = 0, 1, 2) starts a fresh 3-byte group at the first byte whose
/// group holds no foreign bytes; at the end, a partial group's last character also carries bits
/// of whatever follows, so it is dropped (ADR 0297 of `actions/runner`). Padding is dropped too:
/// it would leak the length modulo 3 and never appears mid-text.
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    (0..3)
        .filter_map(|k| bytes.get(k..))
        .filter(|b| !b.is_empty())
        .map(|b| {
            let mut s = STANDARD_NO_PAD.encode(b);
            if b.len() % 3 != 0 {
                s.pop();
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// Has characters that every escaping changes: space, `/`, `+`, `&`, `=`, `"`, `\`, non-ASCII.
    const SECRET: &str = "s3cr3t-V4lue/with+odd \"chars\"&=ü\\x";

    fn redactor_with(values: &[&str]) -> Redactor {
        let mut r = Redactor::new();
        for v in values {
            r.add_secret(&SecretString::from(v.to_string()));
        }
        r
    }

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    /// Asserts that redacting `encoded` removed at least `min_removed` bytes of it (the
    /// length of the secret's encoded form, less the few edge characters that also carry bits
    /// of the surrounding text) and left no raw secret.
    fn assert_scrubbed(r: &Redactor, label: &str, encoded: &str, min_removed: usize) {
        let out = r.redact(encoded);
        assert!(out.contains(REDACTED), "{label}: nothing redacted in {encoded:?} -> {out:?}");
        assert!(!out.contains(SECRET), "{label}: raw secret left in {out:?}");
        let kept = out.replace(REDACTED, "").len();
        assert!(
            kept + min_removed <= encoded.len(),
            "{label}: only {} of {} bytes removed: {out:?}",
            encoded.len() - kept,
            encoded.len()
        );
    }

    #[test]
    fn overlapping_occurrences_leave_no_tail() {
        // "abcabcabc" occurs at 0 and 3 of "abcabcabcabc": a search that resumed after the
        // first match would leave "abc" behind.
        let mut r = Redactor::new();
        r.add_secret(&SecretString::from("abcabcabc"));
        assert_eq!(r.redact("x abcabcabcabc y"), "x [REDACTED] y");
        // A form and a longer one sharing a prefix both count.
        r.add_secret(&SecretString::from("abcabcabcXYZ"));
        assert_eq!(r.redact("abcabcabcXYZ abcabcabc"), "[REDACTED] [REDACTED]");
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(PATTERNS.len(), 5);
    }

    #[test]
    fn derived_forms_embedded_in_text_are_redacted() {
        let r = redactor_with(&[SECRET]);
        let n = SECRET.len();
        let json = serde_json::to_string(SECRET).unwrap();
        let url = urlencoding::encode(SECRET).into_owned();
        let mut cases: Vec<(String, String, usize)> = vec![
            ("raw".into(), format!("token is {SECRET}, ok"), n),
            ("url".into(), format!("https://x.test/?q={url}&p=1"), url.len()),
            ("url form".into(), format!("q={}&p=1", url.replace("%20", "+")), url.len() - 2),
            ("json".into(), serde_json::json!({ "k": format!("a\"b{SECRET}\n") }).to_string(), json.len() - 2),
            ("json ascii".into(), format!("{{\"k\": \"{}\"}}", ascii_json(&json[1..json.len() - 1])), json.len()),
            ("hex".into(), format!("0x{}ff", hex::encode(format!("ab{SECRET}cd"))), 2 * n),
            ("HEX".into(), format!("0x{}FF", hex::encode_upper(format!("ab{SECRET}cd"))), 2 * n),
            ("b64 exact".into(), format!("Basic {}", b64(SECRET.as_bytes())), 4 * n.div_ceil(3)),
        ];
        // Stable base64 core: 4/3 of the secret less up to 2 edge characters on each side;
        // twice encoded: 16/9, less the inner and outer edges.
        let b64_min = 4 * n / 3 - 4;
        let double_min = 16 * n / 9 - 12;
        for prefix in ["", "a", "ab", "abc", "user:", "u:"] {
            for suffix in ["", "\n", "xy", "xyz!"] {
                let text = format!("{prefix}{SECRET}{suffix}");
                let at = format!("{prefix:?}+{suffix:?}");
                cases.push((format!("b64 {at}"), b64(text.as_bytes()), b64_min));
                cases.push((format!("b64url {at}"), URL_SAFE_NO_PAD.encode(text.as_bytes()), b64_min));
                cases.push((format!("double b64 {at}"), b64(b64(text.as_bytes()).as_bytes()), double_min));
                cases.push((format!("b64 in text {at}"), format!("header: {} trailer", b64(text.as_bytes())), b64_min));
            }
        }
        // JSON `\uXXXX` escapes (every character, or only some) and every byte as `%XX`, in
        // both hex cases: what a hand-written JSON file or a fully percent-encoding client holds.
        for (label, encoded) in escaped_forms(SECRET) {
            let removed = encoded.len();
            cases.push((label.clone(), format!("{{\"k\": \"{encoded}\"}}"), removed));
            cases.push((format!("{label} in a URL"), format!("https://x.test/?q={encoded}&p=1"), removed));
        }
        for (label, encoded, min_removed) in &cases {
            assert_scrubbed(&r, label, encoded, *min_removed);
        }
    }

    /// `value` written with escapes: JSON `\uXXXX` (UTF-16 units) for every character, or for
    /// every other one, and every byte as `%XX`, each in lower- and upper-case hex.
    fn escaped_forms(value: &str) -> Vec<(String, String)> {
        let u = |c: char, upper: bool| {
            let mut units = [0u16; 2];
            c.encode_utf16(&mut units)
                .iter()
                .map(|u| if upper { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") })
                .collect::<String>()
        };
        let mut out = vec![];
        for upper in [false, true] {
            let case = if upper { "upper" } else { "lower" };
            let all: String = value.chars().map(|c| u(c, upper)).collect();
            // Every other character escaped; JSON's own escapes for `"` and `\` elsewhere.
            let some: String = value
                .chars()
                .enumerate()
                .map(|(i, c)| match c {
                    _ if i % 2 == 0 => u(c, upper),
                    '"' => "\\\"".to_owned(),
                    '\\' => "\\\\".to_owned(),
                    c => c.to_string(),
                })
                .collect();
            let pct: String =
                value.bytes().map(|b| if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }).collect();
            out.push((format!("json \\u every char {case}"), all));
            out.push((format!("json \\u some chars {case}"), some));
            out.push((format!("%XX every byte {case}"), pct));
        }
        out
    }

    #[test]
    fn escaped_forms_of_other_text_are_left_alone() {
        let r = redactor_with(&[SECRET, "k3y!"]);
        for text in [
            "{\"msg\": \"caf\\u00e9 \\u0041\\u0042 ok\"}",
            "https://x.test/?q=a%20b%2Fc%3d&p=%7E",
            "printf(\"%s %d%%\", name, 100)",
            "%4",
            "trailing \\u00",
        ] {
            assert_eq!(r.redact(text), text, "false positive");
        }
        // A value shorter than MIN_DERIVED_LEN is matched raw only, as before.
        assert_eq!(r.redact("%6B%33%79%21"), "%6B%33%79%21");
        assert_eq!(r.redact("\\u006b3y!"), "\\u006b3y!");
    }

    #[test]
    fn json_documents_are_redacted_by_value() {
        let r = redactor_with(&[SECRET]);
        let escaped = serde_json::to_string(SECRET).unwrap();
        // A finding whose text holds the JSON-escaped secret, rendered as JSON once more.
        let doc = serde_json::to_string_pretty(&serde_json::json!({"body": format!("key {escaped} here"), "n": 1}))
            .unwrap()
            + "\n";
        assert!(r.redact(&doc).contains("s3cr3t"), "text redaction alone misses it");
        let out = r.redact_json(&doc);
        assert!(!out.contains("s3cr3t"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["body"], format!("key \"{REDACTED}\" here"));
        assert!(out.ends_with("}\n") && out.contains("\n  \"n\": 1"), "formatting kept: {out}");
        let text = format!("not json {SECRET}");
        assert_eq!(r.redact_json(&text), format!("not json {REDACTED}"));
    }

    #[test]
    fn exact_base64_is_fully_replaced() {
        let r = redactor_with(&[SECRET]);
        assert_eq!(r.redact(&format!("[{}]", b64(SECRET.as_bytes()))), format!("[{REDACTED}]"));
    }

    #[test]
    fn base64_cores_match_every_alignment() {
        // The defining property, checked directly for many lengths and offsets: with `pre`
        // bytes before it, the secret's bytes from offset `(3 - pre % 3) % 3` start a fresh
        // base64 group, and that core appears in the encoding whatever follows.
        let secret = b"0123456789abcdefghij";
        for len in 3..secret.len() {
            let s = &secret[..len];
            let cores = base64_cores(s);
            assert_eq!(cores.len(), 3);
            for pre in 0..6 {
                let core = &cores[(3 - pre % 3) % 3];
                for post in 0..4 {
                    let mut text = vec![b'#'; pre];
                    text.extend_from_slice(s);
                    text.extend(std::iter::repeat_n(b'~', post));
                    let enc = b64(&text);
                    assert!(enc.contains(core.as_str()), "len {len} pre {pre} post {post}: {enc} lacks {core}");
                }
            }
        }
    }

    #[test]
    fn short_values_are_ignored_and_short_derived_forms_skipped() {
        let r = redactor_with(&["abc", ""]);
        assert!(r.mask_lines().is_empty());
        assert_eq!(r.redact("abc abc"), "abc abc");

        // 4..8 bytes: the raw value only, no derived forms.
        let r = redactor_with(&["k3y!"]);
        assert_eq!(r.redact("a k3y! b"), format!("a {REDACTED} b"));
        let hex_form = hex::encode("k3y!");
        assert_eq!(r.redact(&hex_form), hex_form);
    }

    #[test]
    fn multi_line_secret_lines_are_registered() {
        let key = "line-one-aaaa\r\nline-two-bbbb\n}\n";
        let r = redactor_with(&[key]);
        assert_eq!(r.mask_lines(), vec!["line-one-aaaa".to_owned(), "line-two-bbbb".to_owned()]);
        let out = r.redact("log: line-two-bbbb and } stays");
        assert_eq!(out, format!("log: {REDACTED} and }} stays"));
        // A single line's base64 is covered too.
        let enc = b64(b"line-one-aaaa");
        assert_eq!(r.redact(&enc), REDACTED);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let r = redactor_with(&[SECRET, "another-secret-value"]);
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("s3cr3t") && !dbg.contains("another"), "{dbg}");
        assert!(dbg.starts_with("Redactor { secrets: 2"), "{dbg}");
    }

    #[test]
    fn redact_is_idempotent() {
        let r = redactor_with(&[SECRET, "REDA", "ACTED]"]);
        let gh = format!("ghp_{}", "A1b2".repeat(9));
        let text = format!("{SECRET} {} {gh} x{}", b64(SECRET.as_bytes()), hex::encode(SECRET));
        let once = r.redact(&text);
        assert_eq!(r.redact(&once), once);
        assert!(!once.contains(&gh));
    }

    #[test]
    fn overlapping_occurrences_are_all_covered() {
        let r = redactor_with(&["abababab"]);
        assert_eq!(r.redact("xabababababx"), format!("x{REDACTED}x"));
    }

    #[test]
    fn clones_share_the_registry() {
        let r = Redactor::new();
        let mut other = r.clone();
        other.add_secret(&SecretString::from("minted-later-token"));
        assert_eq!(r.redact("t=minted-later-token"), format!("t={REDACTED}"));
    }

    fn kinds(text: &str) -> Vec<TokenKind> {
        find_tokens(text).into_iter().map(|m| m.kind).collect()
    }

    #[test]
    fn token_patterns_true_positives() {
        let base62 = "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1bC3"; // 36
        assert_eq!(base62.len(), 36);
        for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
            let t = format!("token={prefix}{base62};");
            let hits = find_tokens(&t);
            assert_eq!(hits.len(), 1, "{t}");
            assert_eq!(hits[0].kind, TokenKind::GitHubToken);
            assert_eq!(&t[hits[0].range.clone()], format!("{prefix}{base62}"));
        }
        let pat = format!("github_pat_11ABCDEFG0{}_{}", "x".repeat(12), &"Yz9".repeat(20)[..59]);
        assert_eq!(pat.len(), "github_pat_".len() + 82);
        assert_eq!(kinds(&format!("\"{pat}\"")), vec![TokenKind::GitHubToken]);

        let openai_legacy = format!("sk-{}", "Ab1".repeat(16));
        let openai_proj = format!("sk-proj-{}", "Xy9_-".repeat(30));
        let openai_svc = format!("sk-svcacct-{}", "Qw2e".repeat(10));
        for k in [&openai_legacy, &openai_proj, &openai_svc] {
            assert_eq!(kinds(&format!("OPENAI_API_KEY={k}")), vec![TokenKind::OpenAiKey], "{k}");
        }
        let anthropic = format!("sk-ant-api03-{}AA", "Zx8-Cv7_".repeat(11));
        assert_eq!(kinds(&format!("key: {anthropic}")), vec![TokenKind::AnthropicKey]);

        let aws = "AKIAIOSFODNN7EXAMPLE";
        let hits = find_tokens(&format!("aws_access_key_id = {aws}\n"));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, TokenKind::AwsAccessKeyId);
        assert_eq!(kinds("ASIAY34FZKBOKMUTVV7A"), vec![TokenKind::AwsAccessKeyId]);

        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let text = format!("Authorization: Bearer {jwt}.");
        let hits = find_tokens(&text);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, TokenKind::Jwt);
        assert_eq!(&text[hits[0].range.clone()], jwt);
    }

    #[test]
    fn pem_block_and_lone_header() {
        let block = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMIIEow+IBAAK/CAQEA=\n-----END RSA PRIVATE KEY-----";
        let text = format!("before\n{block}\nafter");
        let hits = find_tokens(&text);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, TokenKind::PrivateKey);
        assert_eq!(&text[hits[0].range.clone()], block);

        for header in [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----",
        ] {
            let line = format!("    key = \"{header}\"");
            let hits = find_tokens(&line);
            assert_eq!(hits.len(), 1, "{line}");
            assert_eq!(&line[hits[0].range.clone()], header);
        }
        assert!(find_tokens("-----BEGIN PUBLIC KEY-----").is_empty());
        assert!(find_tokens("-----BEGIN CERTIFICATE-----").is_empty());

        let r = Redactor::new();
        assert_eq!(r.redact(&text), format!("before\n{REDACTED}\nafter"));
    }

    #[test]
    fn token_patterns_negatives() {
        for text in [
            "ask-questions-before-acting-on-it",
            "the task-force-committee-was-formed-today",
            "sk-learn-is-a-python-machine-learning-library",
            "sk-2024-release-notes-draft-version",
            "sk-short1A",
            "ghp_tooShort123",
            "xghp_aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1bC3",
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AKIA12345",
            "akiaiosfodnn7example",
            "eyJhbGciOi.short",
            "-----BEGIN PUBLIC KEY-----",
            "",
        ] {
            assert!(find_tokens(text).is_empty(), "false positive in {text:?}: {:?}", find_tokens(text));
        }
    }

    #[test]
    fn no_hits_on_real_diffs() {
        // A real diff of an ordinary project should produce no token hits at all.
        let Some(dir) = crate::test_support::corpora_dir() else { return };
        let Ok(text) = std::fs::read(dir.join("diffs/03-large.ripgrep-13.0.0..14.0.0.diff")) else {
            return;
        };
        let text = String::from_utf8_lossy(&text);
        let hits = find_tokens(&text);
        let shown: Vec<&str> = hits.iter().map(|h| &text[h.range.clone()]).collect();
        assert!(hits.is_empty(), "{shown:?}");
    }
}
