//! Secret registry and scrubbing. Every text that leaves the process — logs, step outputs, the
//! job summary, review comments, SARIF, and the prompt sent to a provider — passes through
//! [`Redactor::redact`].
//!
//! Two layers: (1) known secret values we hold (API keys, tokens) and their derived forms —
//! base64 at the three byte offsets, double base64, URL-escaped, JSON-escaped, hex; (2)
//! high-confidence token patterns for secrets we do not hold: GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/
//! `ghr_`/`github_pat_`, OpenAI `sk-`, Anthropic `sk-ant-`, AWS `AKIA`, PEM private-key blocks,
//! JWTs.

use secrecy::SecretString;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

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

/// Finds high-confidence token patterns in `text`. A PEM block matches from its `BEGIN` line;
/// on a single line (a diff line) the `-----BEGIN ... PRIVATE KEY-----` header alone matches.
pub fn find_tokens(text: &str) -> Vec<TokenMatch> {
    let _ = text;
    todo!()
}

/// Known secrets and their derived forms; cheap to clone and share (`Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    // private fields chosen by the implementation
}

impl Redactor {
    /// An empty redactor (patterns only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value and its derived forms. Values shorter than 4 bytes are ignored
    /// (they would shred ordinary text); each line of a multi-line secret is registered too.
    pub fn add_secret(&mut self, secret: &SecretString) {
        let _ = secret;
        todo!()
    }

    /// The registered raw values' lines, for `::add-mask::` (each line of a multi-line secret
    /// separately, as the runner masks line by line).
    pub fn mask_lines(&self) -> Vec<String> {
        todo!()
    }

    /// Replaces every known secret form and every token pattern with [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let _ = text;
        todo!()
    }
}
