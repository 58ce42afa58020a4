//! Config: `.github/agentctl.yml` (YAML or JSON), validated against
//! `schemas/config.schema.json` (JSON Schema 2020-12) before it is used.
//!
//! Every violation is reported at once with its JSON pointer (RFC 6901), the offending value and
//! the rule, so a user fixes the file in one round. Precedence is applied by the commands:
//! flags > `AGENTCTL_*` env (clap reads both) > this file > the defaults written here and in
//! the schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::findings::Threshold;
use crate::usage::pricing::ModelPrice;

/// The JSON Schema every config is validated against.
pub const SCHEMA: &str = include_str!("../schemas/config.schema.json");

/// Default config path, relative to the repository root.
pub const DEFAULT_PATH: &str = ".github/agentctl.yml";

/// Largest config file read, in bytes; a larger one is refused before it is parsed.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A starter config written by `agentctl config init`.
pub const STARTER: &str = r#"# agentctl config. Reference: the README's "Config reference"; schema: `agentctl config schema`.
# On pull-request events this file is read from the PR's base branch.

# Which entry of `providers` answers. Without one, agentctl runs its offline builtin rules only.
provider: main

providers:
  main:
    kind: openai                 # openai | anthropic | azure-openai | gemini | command | builtin
    model: gpt-4o-mini
    base_url: https://api.openai.com/v1   # any OpenAI-compatible server, e.g. http://localhost:11434/v1
    api_key_env: OPENAI_API_KEY  # the variable's name, never the key

review:
  include: ["**"]
  exclude: []
  max_inline_comments: 30
  fail_on: none                  # or critical | high | medium | low | info

# Spending limits in USD (`agentctl cost check`; `review` checks its estimate before calling a model).
# budgets:
#   - {scope: all, period: month, limit_usd: 200}              # scope: all | repo | workflow | task
#   - {scope: repo, period: day, limit_usd: 10, soft_ratio: 0.8, downgrade_to: main}
"#;

/// Adapter kind of a provider entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    AzureOpenai,
    Gemini,
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
    pub instructions: Option<String>,
    pub incremental: bool,
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
            instructions: None,
            incremental: true,
        }
    }
}

/// `github:` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitHubConfig {
    /// Seconds between two writes.
    pub write_delay: f64,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self { write_delay: 1.0 }
    }
}

/// The whole config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub provider: Option<String>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub review: ReviewConfig,
    pub github: GitHubConfig,
    pub pricing: BTreeMap<String, ModelPrice>,
    /// State store path.
    pub state: Option<PathBuf>,
    /// Spending limits (`cost check`, the budget gate in `review`); see [`crate::budget`].
    pub budgets: Vec<crate::budget::BudgetConfig>,
}

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value (`""` for the root).
    pub pointer: String,
    /// The offending value as compact JSON (cut at 80 characters).
    pub value: String,
    /// The rule that failed, as the validator words it.
    pub rule: String,
}

/// Config errors; all exit with the usage/config code (2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {source_name} is not valid YAML or JSON: {message}")]
    Syntax { source_name: String, message: String },
    #[error("config {source_name} has {} schema violation(s):\n{}\nhelp: `agentctl config schema` prints the schema; the README's \"Config reference\" explains each key", violations.len(), render_violations(violations))]
    Invalid { source_name: String, violations: Vec<Violation> },
    #[error("config {source_name}: `{name}` names no other entry of `providers` (known: {known})")]
    UnknownProvider { source_name: String, name: String, known: String },
    /// The config could not be fetched from the PR's base branch through the API.
    #[error("cannot read {DEFAULT_PATH} at the pull request's base {base}")]
    Fetch {
        base: String,
        #[source]
        source: crate::github::GitHubError,
    },
    /// On a pull-request event in Actions with no token, the base commit is not in the checkout,
    /// so the config cannot be read from it; the PR's own copy is never used instead.
    #[error("cannot read {DEFAULT_PATH} from the pull request's base commit {base}: {message}\nhelp: on pull-request events the config comes from the base branch, never from the PR; set GITHUB_TOKEN (it is read through the API), or check out with `fetch-depth: 0` so the base commit is present, or pass --config explicitly")]
    BaseUnavailable { base: String, message: String },
}

fn render_violations(v: &[Violation]) -> String {
    v.iter()
        .map(|v| {
            format!("  - at `{}`: {} (value: {})", if v.pointer.is_empty() { "/" } else { &v.pointer }, v.rule, v.value)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn validator() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        // The schema is ours and compiled in; a failure here is a build defect caught by tests.
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("config schema is valid JSON");
        jsonschema::validator_for(&schema).expect("config schema compiles")
    })
}

impl Config {
    /// Parses and validates a config from `text`; `source_name` names it in errors (a path or
    /// `base branch main:.github/agentctl.yml`).
    pub fn from_text(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::json!({})
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| ConfigError::Syntax { source_name: source_name.into(), message: e.to_string() })?
        };
        // An empty YAML document parses as null: treat it as an empty config.
        let value = if value.is_null() { serde_json::json!({}) } else { value };
        let violations = validate(&value);
        if !violations.is_empty() {
            return Err(ConfigError::Invalid { source_name: source_name.into(), violations });
        }
        let config: Config = serde_json::from_value(value)
            .map_err(|e| ConfigError::Syntax { source_name: source_name.into(), message: e.to_string() })?;
        for (entry, p) in &config.providers {
            if let Some(missing) = p.fallback.iter().find(|f| !config.providers.contains_key(*f) || *f == entry) {
                return Err(ConfigError::UnknownProvider {
                    source_name: source_name.into(),
                    name: format!("{missing} (in providers.{entry}.fallback)"),
                    known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        if let Some(name) = &config.provider {
            if !config.providers.contains_key(name) && name != "builtin" {
                return Err(ConfigError::UnknownProvider {
                    source_name: source_name.into(),
                    name: name.clone(),
                    known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(config)
    }

    /// Reads and validates the file at `path`.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_text(&text, &path.display().to_string())
    }
}

/// Where a pull-request run reads its config from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `--config` / `AGENTCTL_CONFIG`: the workflow's own choice.
    Explicit,
    /// The PR's base commit, through the API.
    BaseViaApi,
    /// The PR's base commit, through `git show` in the checkout.
    BaseViaGit,
    /// The working directory: local runs only.
    WorkingDirectory,
    /// No file: the defaults.
    Defaults,
}

/// Loads the config for a run on pull request `pr` (SPEC §2, "Config"). A PR must not rewrite
/// its own review rules, so on pull-request events the file comes from the PR's **base**
/// commit — never from the PR's checkout:
///
/// 1. `explicit` (`--config`, `AGENTCTL_CONFIG`) when given;
/// 2. with a PR and a GitHub client: `.github/agentctl.yml` at the base sha, through the API;
/// 3. in Actions on a pull-request event without a token: `git show <base sha>:.github/agentctl.yml`
///    in the checkout; when the base commit is not there, [`ConfigError::BaseUnavailable`]
///    (exit 2), never the working directory's copy;
/// 4. otherwise (a local run) the working directory's `.github/agentctl.yml`;
///
/// and the defaults when the chosen place has no file.
///
/// Errors: every [`Config::from_text`] error; [`ConfigError::Fetch`] when the API call fails.
pub async fn load_for_pr(
    explicit: Option<&Path>,
    pr: Option<&crate::context::target::PrMeta>,
    gh: Option<&crate::github::GitHub>,
    pr_event_in_actions: bool,
) -> Result<(Config, ConfigOrigin), ConfigError> {
    if let Some(path) = explicit {
        return Ok((Config::from_path(path)?, ConfigOrigin::Explicit));
    }
    if let Some(pr) = pr {
        let short = pr.base_sha.get(..12).unwrap_or(&pr.base_sha);
        let name = format!("{DEFAULT_PATH} at base {short} ({})", pr.base_ref);
        if let Some(gh) = gh {
            let bytes = gh
                .file_at(DEFAULT_PATH, &pr.base_sha)
                .await
                .map_err(|source| ConfigError::Fetch { base: pr.base_sha.clone(), source })?;
            return match bytes {
                Some(b) => Ok((Config::from_text(&String::from_utf8_lossy(&b), &name)?, ConfigOrigin::BaseViaApi)),
                None => Ok((Config::default(), ConfigOrigin::Defaults)),
            };
        }
        if pr_event_in_actions {
            return match git_show_at(&pr.base_sha, DEFAULT_PATH)? {
                Some(text) => Ok((Config::from_text(&text, &name)?, ConfigOrigin::BaseViaGit)),
                None => Ok((Config::default(), ConfigOrigin::Defaults)),
            };
        }
    } else if pr_event_in_actions {
        return Err(ConfigError::BaseUnavailable {
            base: "(unknown)".into(),
            message: "the pull request's base commit is not known".into(),
        });
    }
    let local = PathBuf::from(DEFAULT_PATH);
    if std::fs::symlink_metadata(&local).is_ok() {
        return Ok((Config::from_path(&local)?, ConfigOrigin::WorkingDirectory));
    }
    Ok((Config::default(), ConfigOrigin::Defaults))
}

/// `path` at commit `sha` of the checkout in the working directory: `Ok(None)` when the commit
/// is there without the file; [`ConfigError::BaseUnavailable`] when the commit is not (a shallow
/// checkout) or git cannot run.
fn git_show_at(sha: &str, path: &str) -> Result<Option<String>, ConfigError> {
    let unavailable = |message: String| ConfigError::BaseUnavailable { base: sha.to_owned(), message };
    // The sha comes from the event payload: only a full hex object name reaches git.
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unavailable("the base sha is not a 40-character hex object name".into()));
    }
    let git = |args: &[&str]| std::process::Command::new("git").args(args).output();
    let commit = git(&["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !commit.status.success() {
        return Err(unavailable("the commit is not in this checkout".into()));
    }
    let blob = format!("{sha}:{path}");
    let exists = git(&["cat-file", "-e", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !exists.status.success() {
        return Ok(None);
    }
    let size = git(&["cat-file", "-s", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    let size: u64 = String::from_utf8_lossy(&size.stdout).trim().parse().unwrap_or(u64::MAX);
    if size > MAX_CONFIG_BYTES {
        return Err(unavailable(format!("the file is {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit")));
    }
    let out = git(&["cat-file", "blob", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(unavailable(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Every violation of the schema in `value`, in document order.
pub fn validate(value: &serde_json::Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = validator()
        .iter_errors(value)
        .map(|e| {
            let mut shown = e.instance().to_string();
            if shown.chars().count() > 80 {
                shown = shown.chars().take(77).collect::<String>() + "...";
            }
            Violation { pointer: e.instance_path().as_str().to_string(), value: shown, rule: e.to_string() }
        })
        .collect();
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_and_empty_configs_are_valid_and_give_the_documented_defaults() {
        let c = Config::from_text(STARTER, "starter").unwrap();
        assert_eq!(c.provider.as_deref(), Some("main"));
        assert_eq!(c.providers["main"].kind, ProviderKind::Openai);
        assert_eq!(c.review.max_inline_comments, 30);
        let empty = Config::from_text("", "empty").unwrap();
        assert_eq!(empty, Config::default());
        assert_eq!(Config::from_text("# only a comment\n", "c").unwrap(), Config::default());
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

    #[test]
    fn three_violations_are_all_reported_with_json_pointers() {
        let text = "provider: main\nproviders:\n  main:\n    kind: gpt\n    model: x\nreview:\n  max_inline_comments: -1\n  fail_on: sometimes\n";
        let err = Config::from_text(text, "bad.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/providers/main/kind", "/review/fail_on", "/review/max_inline_comments"]);
        let msg = err.to_string();
        assert!(msg.contains("3 schema violation(s)") && msg.contains("\"sometimes\"") && msg.contains("-1"), "{msg}");
    }

    #[test]
    fn unknown_keys_syntax_errors_and_dangling_provider_names_are_refused() {
        let err = Config::from_text("reveiw: {}\n", "typo.yml").unwrap_err().to_string();
        assert!(err.contains("reveiw"), "{err}");
        assert!(matches!(Config::from_text("a: [\n", "x"), Err(ConfigError::Syntax { .. })));
        assert!(matches!(Config::from_text("provider: nope\n", "x"), Err(ConfigError::UnknownProvider { .. })));
        let dangling = "providers:\n  a: {kind: openai, model: m, fallback: [b]}\n";
        assert!(matches!(Config::from_text(dangling, "x"), Err(ConfigError::UnknownProvider { .. })));
        // Kind-specific requirements are schema rules, reported with the rest.
        let err = Config::from_text("providers:\n  c: {kind: command}\n  z: {kind: azure-openai, model: m}\n", "x")
            .unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        let rules: Vec<&str> = violations.iter().map(|v| v.rule.as_str()).collect();
        assert!(rules.iter().any(|r| r.contains("command")) && rules.iter().any(|r| r.contains("deployment")), "{err}");
        // JSON is YAML too.
        let c = Config::from_text(r#"{"review": {"exclude": ["docs/**"]}}"#, "c.json").unwrap();
        assert_eq!(c.review.exclude, ["docs/**"]);
    }
}
