//! The typed config model: one struct per section of `schemas/config.schema.json`, with the
//! defaults the schema writes down and the conversions of its numbers (seconds) into durations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::findings::Threshold;

/// Adapter kind of a provider entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    AzureOpenai,
    Gemini,
    /// Amazon Bedrock (Converse API, SigV4).
    Bedrock,
    /// Google Vertex AI (Gemini and Anthropic models, OAuth).
    Vertex,
    Command,
    Builtin,
}

/// One `providers:` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Per-attempt timeout, seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// `azure-openai`: deployment name.
    #[serde(default)]
    pub deployment: Option<String>,
    /// `azure-openai`: `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `anthropic`: `anthropic-version` header.
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// `bedrock`: AWS region.
    #[serde(default)]
    pub region: Option<String>,
    /// `bedrock`: IAM role assumed with the job's OIDC token (else a token file, else the
    /// machine's credentials).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `vertex`: Google Cloud project id.
    #[serde(default)]
    pub project: Option<String>,
    /// `vertex`: Vertex AI location.
    #[serde(default)]
    pub location: Option<String>,
    /// `azure-openai` without a key: the app registration (client) id of workload identity
    /// federation.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `azure-openai` without a key: the Microsoft Entra tenant (id or domain).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// `command`: program and arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// `command`: how stdout is read.
    #[serde(default)]
    pub output: CommandOutput,
    /// `command`: extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `command`: environment variables passed through.
    #[serde(default)]
    pub env_passthrough: Vec<String>,
    /// Deadline over retries and fallbacks, seconds.
    #[serde(default)]
    pub total_timeout: Option<f64>,
    /// Entries tried in order when this one is open or unavailable.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Circuit breaker settings.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// `command` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CommandOutput {
    #[default]
    Text,
    ClaudeJson,
    CodexJsonl,
}

/// `breaker:` of a provider entry; defaults match the schema.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    /// Seconds.
    pub open_for: f64,
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, open_for: 60.0, half_open_probes: 1 }
    }
}

/// `review:` settings; defaults match the schema's `default`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewConfig {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_inline_comments: usize,
    pub fail_on: Threshold,
    pub request_changes_on: Threshold,
    /// Who may trigger a review with an `/agentctl review` comment (`author_association`).
    pub allowed_associations: Vec<String>,
    /// Tokens.
    pub max_chunk_tokens: usize,
    /// Tokens.
    pub max_total_tokens: usize,
    pub max_concurrency: usize,
    /// Tokens.
    pub max_output_tokens: u32,
    pub max_added_lines: usize,
    /// Largest diff reviewed, bytes: a bigger one is refused (exit 2) before it is parsed,
    /// because parsing holds the whole diff and its lines in memory. At most 1 GiB (schema).
    pub max_diff_bytes: u64,
    pub instructions: Option<String>,
    pub incremental: bool,
    /// How diff tokens are counted for packing chunks: a fast conservative estimate
    /// (default) or the exact `o200k_base` count (see [`crate::diff::TokenCounting`]).
    pub token_counting: crate::diff::TokenCounting,
    /// Provider prompt caching of the prefix every chunk shares (issue #20).
    pub prompt_cache: PromptCacheMode,
    /// Anthropic's prompt-cache lifetime.
    pub prompt_cache_ttl: PromptCacheTtl,
}

/// `review.prompt_cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptCacheMode {
    /// Mark the shared prefix for the provider's prompt cache where the provider has one.
    #[default]
    Auto,
    /// No markers.
    Off,
}

/// `review.prompt_cache_ttl`: Anthropic's `cache_control.ttl`
/// (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching>), and Bedrock's
/// `cachePoint.ttl` for Claude there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PromptCacheTtl {
    /// Five minutes, the API's default: writes cost 1.25× the input price.
    #[default]
    #[serde(rename = "5m")]
    FiveMinutes,
    /// One hour: writes cost 2× the input price.
    #[serde(rename = "1h")]
    OneHour,
}

/// `cache.scope`: who shares cached review answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Each repository its own answers (the key holds `owner/name`).
    #[default]
    Repository,
    /// Every repository of one owner shares them (the key holds the owner only).
    Owner,
}

/// `cache:` — the response cache in the state store (issue #20). Written as an object, or as
/// `off` / `false` for `{enabled: false}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, try_from = "CacheSetting")]
pub struct CacheConfig {
    pub enabled: bool,
    /// How long an answer is replayed, seconds (default 7 days).
    pub ttl: f64,
    /// Size cap, bytes (key + answer text of every row; default 50 MiB): past it the oldest
    /// rows are evicted first.
    pub max_bytes: u64,
    pub scope: CacheScope,
}

/// Default `cache.max_bytes`: 50 MiB, tens of thousands of answers (a chunk's answer is a few
/// kilobytes), small next to a runner's tool cache.
pub(crate) const DEFAULT_CACHE_MAX_BYTES: u64 = 50 * 1024 * 1024;

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, ttl: 7.0 * 86_400.0, max_bytes: DEFAULT_CACHE_MAX_BYTES, scope: CacheScope::Repository }
    }
}

impl CacheConfig {
    /// `ttl` as a duration (clamped like every config duration).
    pub fn ttl_duration(&self) -> Duration {
        seconds(self.ttl)
    }
}

/// The forms `cache:` may take in the file (the schema allows exactly these).
#[derive(Deserialize)]
#[serde(untagged)]
enum CacheSetting {
    Switch(bool),
    Word(String),
    Table(CacheTable),
}

#[derive(Deserialize)]
#[serde(default)]
struct CacheTable {
    enabled: bool,
    ttl: f64,
    max_bytes: u64,
    scope: CacheScope,
}

impl Default for CacheTable {
    fn default() -> Self {
        let d = CacheConfig::default();
        Self { enabled: d.enabled, ttl: d.ttl, max_bytes: d.max_bytes, scope: d.scope }
    }
}

impl TryFrom<CacheSetting> for CacheConfig {
    type Error = String;
    fn try_from(setting: CacheSetting) -> Result<Self, String> {
        match setting {
            CacheSetting::Switch(enabled) => Ok(Self { enabled, ..Self::default() }),
            CacheSetting::Word(w) if w == "off" => Ok(Self { enabled: false, ..Self::default() }),
            CacheSetting::Word(w) => Err(format!("`cache: {w}` is not a setting; use `off` or a table")),
            CacheSetting::Table(t) => {
                Ok(Self { enabled: t.enabled, ttl: t.ttl, max_bytes: t.max_bytes, scope: t.scope })
            }
        }
    }
}

impl ReviewConfig {
    /// The chunker these settings ask for: what `review` sends and `cost estimate` prices.
    pub fn chunker(&self) -> crate::diff::Chunker {
        crate::diff::Chunker {
            max_chunk_tokens: self.max_chunk_tokens,
            max_total_tokens: self.max_total_tokens,
            counting: self.token_counting,
        }
    }
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            include: vec!["**".into()],
            exclude: vec![],
            max_inline_comments: 30,
            fail_on: Threshold::None,
            request_changes_on: Threshold::None,
            allowed_associations: crate::context::target::DEFAULT_ALLOWED_ASSOCIATIONS.map(String::from).to_vec(),
            max_chunk_tokens: 12_000,
            max_total_tokens: 400_000,
            max_concurrency: 4,
            max_output_tokens: 4096,
            max_added_lines: 1000,
            max_diff_bytes: crate::diff::DEFAULT_MAX_DIFF_BYTES,
            instructions: None,
            incremental: true,
            token_counting: crate::diff::TokenCounting::Estimate,
            prompt_cache: PromptCacheMode::Auto,
            prompt_cache_ttl: PromptCacheTtl::FiveMinutes,
        }
    }
}

/// `github:` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitHubConfig {
    /// Seconds between two writes once a run passes the write burst
    /// ([`crate::github::WRITE_BURST`]); 0 to [`MAX_WRITE_DELAY_SECS`] (schema).
    pub write_delay: f64,
    /// The login the token posts as (`github-actions[bot]`, `<app-slug>[bot]`, a user's login):
    /// our hidden markers count only on bodies this account wrote (issue #17). Neither REST
    /// (`GET /user` refuses installation tokens) nor the workflow token tells it reliably, so
    /// it is configured, with the workflow token's bot as the default; a wrong value fails
    /// closed (no earlier marker is trusted: a new summary, a new fix branch).
    pub identity: String,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self { write_delay: 1.0, identity: DEFAULT_IDENTITY.to_owned() }
    }
}

/// Default `github.identity`: the author of everything the workflow's `GITHUB_TOKEN` posts.
pub(crate) const DEFAULT_IDENTITY: &str = "github-actions[bot]";

impl GitHubConfig {
    /// `write_delay` as a duration. The schema bounds it; a value that escaped validation
    /// (negative, non-finite, over the cap) is clamped to 0..=[`MAX_WRITE_DELAY_SECS`] rather
    /// than panic in `Duration::from_secs_f64`.
    pub fn write_delay(&self) -> Duration {
        let secs = if self.write_delay.is_nan() { 0.0 } else { self.write_delay.clamp(0.0, MAX_WRITE_DELAY_SECS) };
        Duration::from_secs_f64(secs)
    }
}

/// Largest write spacing accepted, seconds (config `github.write_delay` maximum in the schema,
/// and `AGENTCTL_WRITE_DELAY`): beyond a minute a run would look hung, and GitHub's own
/// secondary-limit advice is "at least one second".
pub(crate) const MAX_WRITE_DELAY_SECS: f64 = 60.0;

/// Parses `AGENTCTL_WRITE_DELAY`: seconds, a finite decimal from 0 to
/// [`MAX_WRITE_DELAY_SECS`] (e.g. `0.5`).
///
/// Errors: [`ConfigError::Env`] naming the variable for anything else (`nan`, `-1`, `1e300`,
/// `100000`, text), which the commands exit with as a usage error (2).
pub(crate) fn write_delay_from_env(value: &str) -> Result<Duration, ConfigError> {
    let secs = value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && (0.0..=MAX_WRITE_DELAY_SECS).contains(s));
    secs.map(Duration::from_secs_f64).ok_or_else(|| ConfigError::Env {
        name: crate::env_vars::AGENTCTL_WRITE_DELAY,
        value: value.chars().take(40).collect(),
        expected: format!("a number of seconds from 0 to {MAX_WRITE_DELAY_SECS}"),
        help: "set it to e.g. 1 (the default), or unset it to use `github.write_delay` from the config".into(),
    })
}

/// Longest duration a config number becomes, in seconds (one year): the schema's maximums are
/// far below it; the clamp only keeps a conversion from ever panicking.
const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

/// `secs` as a [`Duration`], clamped to `0..=MAX_DURATION_SECS`, never panicking
/// (`Duration::from_secs_f64` aborts on an overflowing or non-finite value).
fn seconds(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs.clamp(0.0, MAX_DURATION_SECS)).unwrap_or_default()
}

impl ProviderConfig {
    /// `timeout` (per attempt) as a duration; `None` when unset.
    pub fn attempt_timeout(&self) -> Option<std::time::Duration> {
        self.timeout.map(seconds)
    }

    /// `total_timeout` (over retries and fallbacks) as a duration; `None` when unset.
    pub fn total_deadline(&self) -> Option<std::time::Duration> {
        self.total_timeout.map(seconds)
    }
}

impl BreakerConfig {
    /// `open_for` as a duration.
    pub fn open_duration(&self) -> std::time::Duration {
        seconds(self.open_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SCHEMA};

    #[test]
    fn cache_is_a_table_or_off_and_its_defaults_match_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let props = &schema["$defs"]["cache"]["oneOf"][1]["properties"];
        let defaults = serde_json::to_value(CacheConfig::default()).unwrap();
        for (key, spec) in props.as_object().unwrap() {
            let (ours, schema) = (&defaults[key], &spec["default"]);
            assert!(ours == schema || ours.as_f64().is_some_and(|n| Some(n) == schema.as_f64()), "cache.{key}");
        }
        for (text, enabled) in [("cache: off\n", false), ("cache: false\n", false), ("cache: {}\n", true)] {
            assert_eq!(Config::from_text(text, "t").unwrap().cache.enabled, enabled, "{text}");
        }
        let c = Config::from_text("cache: {ttl: 60, scope: owner, max_bytes: 1000}\n", "t").unwrap().cache;
        assert_eq!((c.ttl_duration(), c.scope, c.max_bytes), (Duration::from_secs(60), CacheScope::Owner, 1000));
        assert!(Config::from_text("cache: on\n", "t").is_err());
        let r = Config::from_text("review: {prompt_cache: off, prompt_cache_ttl: 1h}\n", "t").unwrap().review;
        assert_eq!((r.prompt_cache, r.prompt_cache_ttl), (PromptCacheMode::Off, PromptCacheTtl::OneHour));
    }

    #[test]
    fn schema_defaults_match_the_rust_defaults() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let props = &schema["$defs"]["review"]["properties"];
        let defaults = serde_json::to_value(ReviewConfig::default()).unwrap();
        for (key, spec) in props.as_object().unwrap() {
            if let Some(d) = spec.get("default") {
                assert_eq!(&defaults[key], d, "review.{key}: schema default differs from ReviewConfig::default()");
            }
        }
        assert_eq!(schema["$defs"]["github"]["properties"]["write_delay"]["default"], 1);
        let breaker = &schema["$defs"]["provider"]["properties"]["breaker"]["properties"];
        let d = BreakerConfig::default();
        assert_eq!(breaker["failure_threshold"]["default"], d.failure_threshold);
        assert_eq!(breaker["open_for"]["default"].as_f64(), Some(d.open_for));
        assert_eq!(breaker["half_open_probes"]["default"], d.half_open_probes);
    }

    /// Regression: `AGENTCTL_WRITE_DELAY=1e300` panicked in `Duration::from_secs_f64` and
    /// `100000` slept for a day between writes.
    #[test]
    fn write_delay_from_env_refuses_huge_non_finite_and_negative_values() {
        for bad in ["1e300", "100000", "nan", "NaN", "inf", "-1", "60.5", "", "soon"] {
            let err = write_delay_from_env(bad).unwrap_err().to_string();
            assert!(
                err.contains("AGENTCTL_WRITE_DELAY") && err.contains("from 0 to 60") && err.contains("help:"),
                "{bad}: {err}"
            );
        }
        assert_eq!(write_delay_from_env("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(write_delay_from_env("0").unwrap(), Duration::ZERO);
        assert_eq!(write_delay_from_env("60").unwrap(), Duration::from_secs(60));
    }

    #[test]
    fn config_write_delay_is_capped_by_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(
            schema["$defs"]["github"]["properties"]["write_delay"]["maximum"].as_f64(),
            Some(MAX_WRITE_DELAY_SECS)
        );
        let err = Config::from_text("github:\n  write_delay: 100000\n", "c").unwrap_err();
        assert!(err.to_string().contains("/github/write_delay"), "{err}");
        let c = Config::from_text("github:\n  write_delay: 0.25\n", "c").unwrap();
        assert_eq!(c.github.write_delay(), Duration::from_millis(250));
        // Out-of-range values that bypass the schema are clamped, never a panic.
        for (v, d) in [(1e300, 60.0), (f64::NAN, 0.0), (-1.0, 0.0), (f64::INFINITY, 60.0)] {
            assert_eq!(
                GitHubConfig { write_delay: v, ..GitHubConfig::default() }.write_delay(),
                Duration::from_secs_f64(d)
            );
        }
    }

    #[test]
    fn token_counting_defaults_to_estimate_and_accepts_exact() {
        assert_eq!(Config::default().review.token_counting, crate::diff::TokenCounting::Estimate);
        let c = Config::from_text("review:\n  token_counting: exact\n", "c").unwrap();
        assert_eq!(c.review.token_counting, crate::diff::TokenCounting::Exact);
        let err = Config::from_text("review:\n  token_counting: fast\n", "c").unwrap_err();
        assert!(err.to_string().contains("/review/token_counting"), "{err}");
    }
}
