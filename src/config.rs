//! Config: `.github/agentctl.yml` (YAML or JSON), validated against
//! `schemas/config.schema.json` (JSON Schema 2020-12) before it is used.
//!
//! Every violation is reported at once with its JSON pointer (RFC 6901), the offending value and
//! the rule, so a user fixes the file in one round. Precedence is applied by the commands:
//! flags > `AGENTCTL_*` env (clap reads both) > this file > the defaults written here and in
//! the schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod routes;

use crate::findings::Threshold;
use crate::usage::pricing::ModelPrice;

pub mod fix;
pub use fix::{CommitMethod, EditFormat, FixConfig, VerifyCommand, Workdir};

/// The JSON Schema every config is validated against.
pub const SCHEMA: &str = include_str!("../schemas/config.schema.json");

/// Default config path, relative to the repository root.
pub const DEFAULT_PATH: &str = ".github/agentctl.yml";

/// Largest config accepted, in bytes (1 MiB): read with a cap, never whole first.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Deepest nesting accepted in a config: block levels plus flow levels (`[`, `{`). The YAML
/// parser spends time quadratic in the nesting (100k levels in 200 KB cost 17 s of CPU), so
/// deeper input is refused by a pre-scan before it is parsed; real configs nest 4 levels.
pub const MAX_DEPTH: usize = 64;

/// Longest excerpt of a value quoted in an error message, in characters.
pub const MAX_QUOTED_CHARS: usize = 80;

/// Where editors fetch the config schema from: the raw `schemas/config.schema.json` of this
/// version's release tag, so the schema matches the binary that wrote the file (a newer
/// agentctl's `config init` points at its own). `agentctl config schema` prints the same file;
/// it stays the source. Read by yaml-language-server (VS Code's YAML extension, Neovim, Helix)
/// from the first line of the config: `# yaml-language-server: $schema=<url>`.
pub const SCHEMA_URL: &str = schema_url!();

/// [`SCHEMA_URL`] as a literal, so [`STARTER`] can be built with `concat!`.
macro_rules! schema_url {
    () => {
        concat!(
            "https://raw.githubusercontent.com/agentctl/agentctl/v",
            env!("CARGO_PKG_VERSION"),
            "/schemas/config.schema.json"
        )
    };
}
use schema_url;

/// A starter config written by `agentctl config init`; its first line points editors at
/// [`SCHEMA_URL`].
pub const STARTER: &str = concat!(
    "# yaml-language-server: $schema=",
    schema_url!(),
    "\n",
    r#"# agentctl config. Reference: the README's "Config reference"; schema: `agentctl config schema`.
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

# The state store (usage ledger, breakers): a SQLite file by default. Runners that share one
# budget point at a PostgreSQL server; its password comes from PGPASSWORD, never from this file.
# state: postgres://agentctl@ledger.internal:5432/agentctl?sslmode=require
"#
);

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
    /// Largest diff reviewed, bytes: a bigger one is refused (exit 2) before it is parsed,
    /// because parsing holds the whole diff and its lines in memory. At most 1 GiB (schema).
    pub max_diff_bytes: u64,
    pub instructions: Option<String>,
    pub incremental: bool,
    /// How diff tokens are counted for packing chunks: a fast conservative estimate
    /// (default) or the exact `o200k_base` count (see [`crate::diff::TokenCounting`]).
    pub token_counting: crate::diff::TokenCounting,
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
pub const DEFAULT_IDENTITY: &str = "github-actions[bot]";

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
pub const MAX_WRITE_DELAY_SECS: f64 = 60.0;

/// Parses `AGENTCTL_WRITE_DELAY`: seconds, a finite decimal from 0 to
/// [`MAX_WRITE_DELAY_SECS`] (e.g. `0.5`).
///
/// Errors: [`ConfigError::Env`] naming the variable for anything else (`nan`, `-1`, `1e300`,
/// `100000`, text), which the commands exit with as a usage error (2).
pub fn write_delay_from_env(value: &str) -> Result<Duration, ConfigError> {
    let secs = value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && (0.0..=MAX_WRITE_DELAY_SECS).contains(s));
    secs.map(Duration::from_secs_f64).ok_or_else(|| ConfigError::Env {
        name: crate::env_vars::AGENTCTL_WRITE_DELAY,
        value: value.chars().take(40).collect(),
        expected: format!("a number of seconds from 0 to {MAX_WRITE_DELAY_SECS}"),
        help: "set it to e.g. 1 (the default), or unset it to use `github.write_delay` from the config".into(),
    })
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
    /// `agentctl route` rules, first match wins; empty: [`routes::default_routes`].
    pub routes: Vec<routes::RouteRule>,
    /// Tier name → `providers:` entry, for `routes[].tier` and `budgets[].downgrade_to`.
    pub tiers: routes::Tiers,
    /// Who may give `/agentctl …` commands that `route` acts on.
    pub slash_commands: routes::SlashCommandsConfig,
    /// `agentctl fix` settings.
    pub fix: FixConfig,
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

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value (`""` for the root).
    pub pointer: String,
    /// What kind of value is there (`a string of 7 characters`), never the value itself: the
    /// file may not be a config at all (a credentials file behind a symlink).
    pub value: String,
    /// The rule that failed, as the validator words it, with the value in it cut and redacted
    /// the same way.
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
    #[error("config {path} is not a regular file ({kind})\nhelp: point to a YAML or JSON file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("config {path} is a symlink to {target}, outside the repository {root}; refusing to read it\nhelp: a config must be a file inside the repository (its git top-level, else the current directory)")]
    OutsideRepository { path: PathBuf, target: PathBuf, root: PathBuf },
    #[error("config {source_name} is larger than {limit} bytes; refusing to read it\nhelp: a config is a few kilobytes; move long instructions into a shorter text")]
    TooLarge { source_name: String, limit: usize },
    #[error("config {source_name} is nested deeper than {limit} levels (line {line}); refusing to parse it\nhelp: real configs nest a few levels; look for runaway `[`, `{{` or `- ` near that line")]
    TooDeep { source_name: String, line: usize, limit: usize },
    #[error("config {source_name} is not valid YAML or JSON: {message}")]
    Syntax { source_name: String, message: String },
    #[error("config {source_name} has {} schema violation(s):\n{}\nhelp: `agentctl config schema` prints the schema; the README's \"Config reference\" explains each key", violations.len(), render_violations(violations))]
    Invalid { source_name: String, violations: Vec<Violation> },
    #[error("config {source_name}: `{name}` names no other entry of `providers` (known: {known})")]
    UnknownProvider { source_name: String, name: String, known: String },
    /// The config could not be fetched from the PR's base branch through the API.
    #[error("cannot read {DEFAULT_PATH} at {base}")]
    Fetch {
        base: String,
        #[source]
        source: crate::github::GitHubError,
    },
    /// On a pull-request event in Actions with no token, the base commit is not in the checkout,
    /// so the config cannot be read from it; the PR's own copy is never used instead.
    #[error("cannot read {DEFAULT_PATH} from the pull request's base commit {base}: {message}\nhelp: on pull-request events the config comes from the base branch, never from the PR; set GITHUB_TOKEN (it is read through the API), or check out with `fetch-depth: 0` so the base commit is present, or pass --config explicitly")]
    BaseUnavailable { base: String, message: String },
    /// An `AGENTCTL_*` variable with a value out of its range (`value` cut at 40 characters).
    #[error("environment variable {name}=`{value}` is invalid: expected {expected}\nhelp: {help}")]
    Env { name: &'static str, value: String, expected: String, help: String },
}

impl ConfigError {
    /// The exit code: a failed fetch through the API ends as the GitHub error it carries; every
    /// other config error is `Usage` (2): nothing was sent anywhere.
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            ConfigError::Fetch { source, .. } => source.exit(),
            _ => crate::exit::Exit::Usage,
        }
    }
}

fn render_violations(v: &[Violation]) -> String {
    v.iter()
        .map(|v| {
            format!("  - at `{}`: {} (found {})", if v.pointer.is_empty() { "/" } else { &v.pointer }, v.rule, v.value)
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
    ///
    /// Refused before parsing: text over [`MAX_CONFIG_BYTES`], nesting deeper than
    /// [`MAX_DEPTH`]. Refused while parsing: duplicate keys (named), non-string keys, `.nan`
    /// and `.inf` ("not a finite number"). Every value quoted in an error is redacted
    /// ([`Redactor::new`](crate::redact::Redactor::new)'s token patterns) and cut at
    /// [`MAX_QUOTED_CHARS`].
    pub fn from_text(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { source_name: source_name.into(), limit: MAX_CONFIG_BYTES });
        }
        if let Some(line) = nesting_exceeds(text, MAX_DEPTH) {
            return Err(ConfigError::TooDeep { source_name: source_name.into(), line, limit: MAX_DEPTH });
        }
        let syntax =
            |message: String| ConfigError::Syntax { source_name: source_name.into(), message: scrub(&message, 300) };
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::json!({})
        } else {
            let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?;
            yaml_to_json(yaml, &mut String::new()).map_err(syntax)?
        };
        // An empty YAML document parses as null: treat it as an empty config.
        let value = if value.is_null() { serde_json::json!({}) } else { value };
        let violations = validate(&value);
        if !violations.is_empty() {
            return Err(ConfigError::Invalid { source_name: source_name.into(), violations });
        }
        let config: Config = serde_json::from_value(value).map_err(|e| syntax(e.to_string()))?;
        let mut violations = routes::check_references(&config);
        // A PostgreSQL `state` URL: checked here so `config validate` catches a password in the
        // committed file; the URL itself is never quoted (it may hold one).
        if let Some(url) = config.state.as_deref().and_then(|p| p.to_str()).filter(|u| crate::store::is_postgres_url(u))
        {
            if let Err(e) = crate::store::check_url(url, crate::store::Origin::Config) {
                violations.push(Violation {
                    pointer: "/state".into(),
                    value: "(a PostgreSQL URL, not shown)".into(),
                    rule: e.to_string().replace('\n', " "),
                });
            }
        }
        if !violations.is_empty() {
            return Err(ConfigError::Invalid { source_name: source_name.into(), violations });
        }
        for (entry, p) in &config.providers {
            if let Some(missing) = p.fallback.iter().find(|f| !config.providers.contains_key(*f) || *f == entry) {
                return Err(ConfigError::UnknownProvider {
                    source_name: source_name.into(),
                    name: format!(
                        "{} (in providers.{}.fallback)",
                        scrub(missing, MAX_QUOTED_CHARS),
                        scrub(entry, MAX_QUOTED_CHARS)
                    ),
                    known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        if let Some(name) = &config.provider {
            if !config.providers.contains_key(name) && name != "builtin" {
                return Err(ConfigError::UnknownProvider {
                    source_name: source_name.into(),
                    name: scrub(name, MAX_QUOTED_CHARS),
                    known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(config)
    }

    /// Reads and validates the file at `path`.
    ///
    /// The file must be a regular file (a directory, fifo, socket or device is refused before
    /// it is opened, so a fifo cannot block the run), at most [`MAX_CONFIG_BYTES`] long (read
    /// with a cap, never whole first), and a symlink must resolve inside the repository:
    /// the git top-level holding the link (the nearest ancestor with a `.git` entry), else
    /// the current directory when the link is under it, else the link's own directory. This
    /// keeps `config validate` and error excerpts from reading, say, `~/.aws/credentials`
    /// through a link a PR added.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let link = std::fs::symlink_metadata(path).map_err(read_err)?;
        if link.file_type().is_symlink() {
            let target = std::fs::canonicalize(path).map_err(read_err)?;
            let root = repository_root(path);
            if !target.starts_with(&root) {
                return Err(ConfigError::OutsideRepository { path: path.to_path_buf(), target, root });
            }
        }
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() {
            return Err(ConfigError::NotRegular { path: path.to_path_buf(), kind: file_kind(&meta) });
        }
        let source_name = path.display().to_string();
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).map_err(read_err)?;
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CONFIG_BYTES as u64 + 1), &mut bytes)
            .map_err(read_err)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { source_name, limit: MAX_CONFIG_BYTES });
        }
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Syntax {
            source_name: source_name.clone(),
            message: format!("not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        })?;
        Config::from_text(&text, &source_name)
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
    /// The workflow's own commit (`GITHUB_SHA`) through the API, on an event that is not a
    /// pull request's ([`load_for_ref`]).
    RefViaApi,
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
            return match fetch_at(gh, &pr.base_sha, &name).await? {
                Some(config) => Ok((config, ConfigOrigin::BaseViaApi)),
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

/// Loads the config for a run on an event that is not a pull request's (an issue, a comment on
/// an issue, a push, a schedule), where the workflow runs at `sha` (`GITHUB_SHA`: the default
/// branch's head, or the pushed commit) — a commit written by people with write access:
///
/// 1. `explicit` when given;
/// 2. the working directory's `.github/agentctl.yml` when there is one (a checkout of `sha`);
/// 3. with a GitHub client and `sha`, the file at `sha` through the API (a job with no checkout);
/// 4. the defaults.
///
/// Errors: as [`load_for_pr`].
pub async fn load_for_ref(
    explicit: Option<&Path>,
    gh: Option<&crate::github::GitHub>,
    sha: Option<&str>,
) -> Result<(Config, ConfigOrigin), ConfigError> {
    if let Some(path) = explicit {
        return Ok((Config::from_path(path)?, ConfigOrigin::Explicit));
    }
    let local = PathBuf::from(DEFAULT_PATH);
    if std::fs::symlink_metadata(&local).is_ok() {
        return Ok((Config::from_path(&local)?, ConfigOrigin::WorkingDirectory));
    }
    if let (Some(gh), Some(sha)) = (gh, sha) {
        let name = format!("{DEFAULT_PATH} at {}", sha.get(..12).unwrap_or(sha));
        if let Some(config) = fetch_at(gh, sha, &name).await? {
            return Ok((config, ConfigOrigin::RefViaApi));
        }
    }
    Ok((Config::default(), ConfigOrigin::Defaults))
}

/// `.github/agentctl.yml` at commit `sha` through the API, parsed and validated as `name`;
/// `None` when the commit has no such file.
///
/// Errors: [`ConfigError::Fetch`] when the API call fails; every [`Config::from_text`] error.
async fn fetch_at(gh: &crate::github::GitHub, sha: &str, name: &str) -> Result<Option<Config>, ConfigError> {
    let bytes =
        gh.file_at(DEFAULT_PATH, sha).await.map_err(|source| ConfigError::Fetch { base: sha.to_owned(), source })?;
    bytes.map(|b| Config::from_text(&String::from_utf8_lossy(&b), name)).transpose()
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
    if size > MAX_CONFIG_BYTES as u64 {
        return Err(unavailable(format!("the file is {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit")));
    }
    let out = git(&["cat-file", "blob", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(unavailable(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Every violation of the schema in `value`, and every `review.include`/`exclude` entry that is
/// not a valid glob, in document order. Values quoted in `value` and
/// `rule` are redacted and cut at [`MAX_QUOTED_CHARS`].
pub fn validate(value: &serde_json::Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = validator()
        .iter_errors(value)
        .map(|e| {
            // No violation ever quotes a value from the file (issue #17: `config validate` on a
            // credentials file behind a symlink printed its password). The validator quotes the
            // whole value in its message: it becomes "the value"; a message that still holds
            // any of its strings or numbers says only which schema keyword failed.
            let full = e.instance().to_string();
            let message = e.to_string().replace(&full, "the value");
            let keyword = e.schema_path().as_str().rsplit('/').next().unwrap_or("").to_string();
            // These keywords' messages quote only the schema once the instance is replaced.
            let schema_only = [
                "required",
                "enum",
                "const",
                "type",
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "pattern",
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "additionalProperties",
            ]
            .contains(&keyword.as_str());
            let rule = if !schema_only && quotes_any_leaf(&message, e.instance()) {
                format!("fails the schema's `{}` rule", scrub(&keyword, MAX_QUOTED_CHARS))
            } else {
                scrub(&message, 4 * MAX_QUOTED_CHARS)
            };
            Violation {
                pointer: scrub(e.instance_path().as_str(), 2 * MAX_QUOTED_CHARS),
                value: shape(e.instance()),
                rule,
            }
        })
        .collect();
    // Globs are checked here, with the same parser `review` uses (globset), so a bad one is a
    // config error with its pointer, not a failure halfway through a review.
    for list in ["include", "exclude"] {
        let Some(globs) = value.pointer(&format!("/review/{list}")).and_then(|v| v.as_array()) else { continue };
        for (i, g) in globs.iter().enumerate() {
            let Some(text) = g.as_str() else { continue };
            if globset::Glob::new(text).is_err() {
                out.push(Violation {
                    pointer: format!("/review/{list}/{i}"),
                    value: shape(g),
                    rule: "not a valid glob (globset syntax: `*`, `**`, `?`, `[...]`, `{a,b}`)".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out
}

/// What kind of value `v` is, never the value: `a string of 12 characters`, `an object with
/// 2 keys`, `an array of 3 items`, `a number`, `a boolean`, `null`.
fn shape(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    let n = |count: usize, one: &str, many: &str| format!("{count} {}", if count == 1 { one } else { many });
    match v {
        J::Null => "null".into(),
        J::Bool(_) => "a boolean".into(),
        J::Number(_) => "a number".into(),
        J::String(s) => format!("a string of {}", n(s.chars().count(), "character", "characters")),
        J::Array(a) => format!("an array of {}", n(a.len(), "item", "items")),
        J::Object(o) => format!("an object with {}", n(o.len(), "key", "keys")),
    }
}

/// Whether `message` holds any string (of 3 characters or more) or number found in `v`.
fn quotes_any_leaf(message: &str, v: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match v {
        J::String(s) => s.chars().count() >= 3 && message.contains(s.as_str()),
        J::Number(n) => message.contains(&n.to_string()),
        J::Array(a) => a.iter().any(|x| quotes_any_leaf(message, x)),
        J::Object(o) => o.values().any(|x| quotes_any_leaf(message, x)),
        J::Null | J::Bool(_) => false,
    }
}

/// `text` redacted (high-confidence token patterns) and cut at `max` characters, for quoting in
/// an error message.
fn scrub(text: &str, max: usize) -> String {
    let text = crate::redact::Redactor::new().redact(text);
    if text.chars().count() <= max {
        return text;
    }
    text.chars().take(max.saturating_sub(3)).collect::<String>() + "..."
}

/// Converts parsed YAML to JSON, refusing what JSON cannot hold: `.nan`/`.inf` and non-string
/// keys. `pointer` is the JSON pointer of `value` (RFC 6901), for the message.
fn yaml_to_json(value: serde_yaml_ng::Value, pointer: &mut String) -> Result<serde_json::Value, String> {
    use serde_yaml_ng::Value as Y;
    let at = |p: &str| if p.is_empty() { "/".to_string() } else { p.to_string() };
    Ok(match value {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                let Some(num) = serde_json::Number::from_f64(f) else {
                    return Err(format!("at `{}`: {n} is not a finite number", at(pointer)));
                };
                serde_json::Value::Number(num)
            }
        }
        Y::String(s) => serde_json::Value::String(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                out.push(yaml_to_json(item, pointer)?);
                pointer.truncate(len);
            }
            serde_json::Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let Y::String(key) = k else {
                    return Err(format!("at `{}`: a key is not a string", at(pointer)));
                };
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let v = yaml_to_json(v, pointer)?;
                pointer.truncate(len);
                out.insert(key, v);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("at `{}`: YAML tag `{}` is not supported", at(pointer), t.tag)),
    })
}

/// The 1-based line where `text` nests deeper than `limit`, or `None`.
///
/// A cheap, conservative pre-scan (it may count more levels than the parser, never fewer, on
/// input the parser accepts): block levels are distinct indentation levels plus compact `- `
/// and `? ` entries on one line; flow levels are `[`/`{` (inside flow, every one; in block
/// context, one at the start of a token). Inside flow collections quoted scalars are skipped,
/// since only there can they hide a closing bracket; `#` after whitespace starts a comment.
fn nesting_exceeds(text: &str, limit: usize) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    for (n, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let mut i = 0;
        let mut compact = 0;
        if flow == 0 {
            let indent = b.iter().take_while(|c| **c == b' ').count();
            if b[indent..].is_empty() || b[indent] == b'#' {
                continue;
            }
            while indents.last().is_some_and(|&t| t > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&t| t < indent) {
                indents.push(indent);
            }
            i = indent;
            while i < b.len() && matches!(b[i], b'-' | b'?') && b.get(i + 1).is_none_or(|c| *c == b' ') {
                compact += 1;
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
            }
        }
        let base = indents.len() + compact;
        if base > limit {
            return Some(n + 1);
        }
        // At the start of a token (where a flow collection or a quoted scalar may begin).
        let mut token_start = true;
        let mut after_ws = true;
        while i < b.len() {
            let c = b[i];
            i += 1;
            if let Some(q) = quote {
                // `\x` in double quotes, `''` in single quotes: an escaped character, not the end.
                let escaped = (q == b'"' && c == b'\\') || (c == q && q == b'\'' && b.get(i) == Some(&b'\''));
                if escaped {
                    i += 1;
                } else if c == q {
                    quote = None;
                    // A JSON-like key: `"a":'b'` may follow with no space.
                    token_start = false;
                    after_ws = false;
                    if b.get(i) == Some(&b':') {
                        i += 1;
                        token_start = true;
                    }
                }
                continue;
            }
            match c {
                b'#' if after_ws => break,
                // A tag or anchor before a node: the node still starts a token.
                b'!' | b'&' if token_start => {
                    while i < b.len() && !matches!(b[i], b' ' | b'\t' | b',' | b'[' | b']' | b'{' | b'}') {
                        i += 1;
                    }
                    continue;
                }
                b'[' | b'{' if flow > 0 || token_start || after_ws => {
                    flow += 1;
                    if base + flow > limit {
                        return Some(n + 1);
                    }
                    token_start = true;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    token_start = false;
                }
                b',' | b'?' if flow > 0 => token_start = true,
                b':' if b.get(i).is_none_or(|c| *c == b' ' || *c == b'\t') => token_start = true,
                b'"' | b'\'' if flow > 0 && token_start => quote = Some(c),
                b' ' | b'\t' => {}
                b'-' if flow == 0 && token_start => {}
                _ => token_start = false,
            }
            after_ws = c == b' ' || c == b'\t';
        }
    }
    None
}

/// What a non-regular file is, for the message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a fifo";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// The repository a config at `path` belongs to: the nearest ancestor of its directory with a
/// `.git` entry (the git top-level), else the current directory when `path` is under it, else
/// the directory holding `path`. Canonical, so it compares with a resolved link target.
fn repository_root(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(top) = dir.ancestors().find(|a| a.join(".git").exists()) {
        return top.to_path_buf();
    }
    match std::env::current_dir().and_then(std::fs::canonicalize) {
        Ok(cwd) if dir.starts_with(&cwd) => cwd,
        _ => dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_state_url_with_a_password_is_a_violation_that_never_quotes_it() {
        let err = Config::from_text("state: postgres://ci:hunter2-in-repo@db/ledger\n", "c.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err:?}") };
        assert_eq!(violations[0].pointer, "/state");
        let text = err.to_string();
        assert!(text.contains("PGPASSWORD") && !text.contains("hunter2-in-repo"), "{text}");
        let err = Config::from_text("state: postgres://ci@db/ledger?sslmode=sometimes\n", "c.yml").unwrap_err();
        assert!(err.to_string().contains("sslmode=sometimes"), "{err}");
        let ok = Config::from_text("state: postgres://ci@db/ledger?sslmode=require\n", "c.yml").unwrap();
        assert_eq!(ok.state.as_deref(), Some(Path::new("postgres://ci@db/ledger?sslmode=require")));
        assert!(Config::from_text("state: /var/lib/agentctl/state.db\n", "c.yml").is_ok());
    }

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

    #[test]
    fn three_violations_are_all_reported_with_json_pointers() {
        let text = "provider: main\nproviders:\n  main:\n    kind: gpt\n    model: x\nreview:\n  max_inline_comments: -1\n  fail_on: sometimes\n";
        let err = Config::from_text(text, "bad.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/providers/main/kind", "/review/fail_on", "/review/max_inline_comments"]);
        let msg = err.to_string();
        assert!(msg.contains("3 schema violation(s)") && msg.contains("found a string of 9 characters"), "{msg}");
        // No value from the file is quoted (issue #17): the file may be a credentials file.
        assert!(!msg.contains("sometimes") && !msg.contains("gpt") && !msg.contains("-1"), "{msg}");
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
    #[test]
    fn config_errors_print_file_contents() {
        // A long value, and a credential, in a place where the rule text quotes the value.
        let secret = "ghp_0123456789abcdefghijABCDEFGHIJ0123456789";
        let long = "x".repeat(5000);
        let text = format!("review:\n  max_inline_comments: \"{long}\"\n  fail_on: \"{secret}\"\n");
        let err = Config::from_text(&text, "c.yml").unwrap_err().to_string();
        assert!(!err.contains(&"x".repeat(81)), "a value longer than 80 characters was printed: {err}");
        assert!(!err.contains(secret), "a credential was printed: {err}");
        assert!(err.len() < 2000, "{err}");
        // Syntax errors and provider names go through the same scrubbing.
        let err = Config::from_text(&format!("provider: {secret}{long}\n"), "c.yml").unwrap_err().to_string();
        assert!(!err.contains(secret) && !err.contains(&"x".repeat(81)), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_config_never_has_its_values_quoted() {
        // Issue #17: a credentials file (here inside the repository, so it is parsed) printed
        // its values in the violations. Every shape of violation: unknown keys at the root,
        // wrong types, an object where a string goes, an enum, a glob, a nested oneOf.
        let values = ["hunter2-password", "AKIAEXAMPLE0KEYID", "s3cr3t-nested-value", "wrong[glob", "424242"];
        let text = format!(
            "password: {}\naws_access_key_id: {}\nprovider: {{secret: {}}}\nreview:\n  include: ['{}']\n  max_findings: {}\n  fail_on: {}\nproviders:\n  p: {{kind: openai, model: m, api_key_env: {}}}\n",
            values[0], values[1], values[2], values[3], values[4], values[0], values[1]
        );
        let err = Config::from_text(&text, "credentials.yml").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{msg}");
        for v in values {
            assert!(!msg.contains(v), "`{v}` was quoted:\n{msg}");
        }
        assert!(msg.contains("found a string of"), "{msg}");
    }

    #[test]
    #[cfg(unix)]
    fn config_symlink_leaving_the_repository_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let creds = outside.path().join("credentials");
        std::fs::write(&creds, "aws_secret_access_key: hunter2hunter2\n").unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join(".git")).unwrap();
        std::fs::create_dir(repo.path().join(".github")).unwrap();
        let link = repo.path().join(".github/agentctl.yml");
        std::os::unix::fs::symlink(&creds, &link).unwrap();
        let err = Config::from_path(&link).unwrap_err().to_string();
        assert!(err.contains("outside the repository"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // A symlink that stays inside the repository is fine.
        std::fs::write(repo.path().join("real.yml"), "provider: builtin\n").unwrap();
        let inside = repo.path().join(".github/inside.yml");
        std::os::unix::fs::symlink(repo.path().join("real.yml"), &inside).unwrap();
        assert!(Config::from_path(&inside).is_ok());
    }

    #[test]
    #[cfg(unix)]
    fn config_that_is_not_a_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::from_path(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let fifo = dir.path().join("fifo.yml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Opening a fifo for reading would block forever: it must be refused before that.
        let err = Config::from_path(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = Config::from_path(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn config_over_one_megabyte_is_refused_before_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yml");
        std::fs::write(&big, format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES))).unwrap();
        let err = Config::from_path(&big).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        assert!(Config::from_text(&"#".repeat(MAX_CONFIG_BYTES + 1), "c").is_err());
    }

    #[test]
    fn deeply_nested_yaml_is_refused_before_parsing() {
        // Issue #7 item 14: 100k levels in 200 KB took 17 s of CPU in the YAML parser.
        let n = 100_000;
        let flow = format!("review:\n  instructions: {}{}\n", "[".repeat(n), "]".repeat(n));
        let err = Config::from_text(&flow, "deep.yml").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        let compact = format!("review:\n  instructions:\n    {}x\n", "- ".repeat(n));
        let err = Config::from_text(&compact, "deep.yml").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        // Closing brackets hidden in quoted strings do not lower the count.
        let sneaky = format!("review:\n  instructions: {}x{}\n", "[ \"]]\", ".repeat(100), "]".repeat(100));
        let err = Config::from_text(&sneaky, "deep.yml").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        // Ordinary brackets in prose and quoted text are fine.
        let ok =
            "review:\n  instructions: \"use [links](x) and {braces} and don't [worry\"\n  exclude: ['a/**', \"b]\"]\n";
        assert!(Config::from_text(ok, "ok.yml").is_ok());
        assert!(Config::from_text(STARTER, "starter").is_ok());
    }

    #[test]
    fn duplicate_yaml_keys_are_refused_with_the_key_name() {
        let err = Config::from_text("review:\n  fail_on: high\n  fail_on: none\n", "dup.yml").unwrap_err().to_string();
        assert!(err.contains("duplicate") && err.contains("fail_on"), "{err}");
    }

    #[test]
    fn nan_and_inf_are_named_not_a_finite_number() {
        for v in [".nan", ".inf", "-.inf"] {
            let text = format!("providers:\n  a:\n    kind: openai\n    timeout: {v}\n");
            let err = Config::from_text(&text, "c.yml").unwrap_err().to_string();
            assert!(err.contains("not a finite number") && err.contains("/providers/a/timeout"), "{v}: {err}");
        }
    }
    /// Every numeric field of the schema: (instance path, its schema), found by walking
    /// `properties`, `additionalProperties` (a placeholder key `x`) and `$ref`s generically.
    fn numeric_fields() -> Vec<(Vec<String>, serde_json::Value)> {
        fn walk(
            root: &serde_json::Value,
            node: &serde_json::Value,
            path: Vec<String>,
            out: &mut Vec<(Vec<String>, serde_json::Value)>,
        ) {
            if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
                let target = root.pointer(r.trim_start_matches('#')).unwrap();
                return walk(root, target, path, out);
            }
            if matches!(node.get("type").and_then(|t| t.as_str()), Some("number" | "integer")) {
                out.push((path.clone(), node.clone()));
            }
            if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
                for (k, v) in props {
                    let mut p = path.clone();
                    p.push(k.clone());
                    walk(root, v, p, out);
                }
            }
            if let Some(extra) = node.get("additionalProperties").filter(|a| a.is_object()) {
                let mut p = path.clone();
                p.push("x".into());
                walk(root, extra, p, out);
            }
        }
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let mut out = vec![];
        walk(&schema, &schema, vec![], &mut out);
        out
    }

    /// A minimal valid config with `value` at `path`.
    fn config_with(path: &[String], value: serde_json::Value) -> serde_json::Value {
        let mut doc = serde_json::json!({});
        if path.first().map(String::as_str) == Some("providers") {
            doc = serde_json::json!({"provider": "x", "providers": {"x": {"kind": "openai", "model": "m"}}});
        }
        if path.first().map(String::as_str) == Some("pricing") {
            doc = serde_json::json!({"pricing": {"x": {"input_cost_per_token": 0, "output_cost_per_token": 0}}});
        }
        let mut at = &mut doc;
        for key in &path[..path.len() - 1] {
            at = at.as_object_mut().unwrap().entry(key.clone()).or_insert(serde_json::json!({}));
        }
        at[path.last().unwrap()] = value;
        doc
    }

    #[test]
    fn numeric_config_values_validation_accepts_never_panic() {
        // `timeout: 1e300` passed validation, then `Duration::from_secs_f64` aborted (exit 134).
        let fields = numeric_fields();
        assert!(fields.len() >= 15, "the walk found too few numeric fields: {fields:?}");
        let state = tempfile::tempdir().unwrap();
        let state_path = state.path().join("state.db");
        let env = crate::context::Env::from_pairs([
            ("OPENAI_API_KEY", "sk-test-walker"),
            ("AGENTCTL_STATE", state_path.to_str().unwrap()),
        ]);
        for (path, spec) in fields {
            let pointer = format!("/{}", path.join("/"));
            let max = spec.get("maximum").unwrap_or_else(|| panic!("{pointer} has no maximum"));
            let text = config_with(&path, max.clone()).to_string();
            let config = Config::from_text(&text, "walk").unwrap_or_else(|e| panic!("{pointer} = {max}: {e}"));
            // Building the provider chain and the settings converts every number.
            let store = crate::store::open_configured(&env, None);
            let redactor = crate::redact::Redactor::new();
            crate::providers::select::select(&config, None, None, &env, &redactor, &store).unwrap();
            let _ = config.github.write_delay();
            let above = if spec["type"] == "integer" {
                serde_json::json!(max.as_u64().unwrap() + 1)
            } else {
                serde_json::json!(max.as_f64().unwrap() * 2.0 + 1.0)
            };
            for bad in [above, serde_json::json!(1e300)] {
                let text = config_with(&path, bad.clone()).to_string();
                match Config::from_text(&text, "walk") {
                    Err(ConfigError::Invalid { violations, .. }) => {
                        assert!(violations.iter().any(|v| v.pointer == pointer), "{pointer} = {bad}: {violations:?}")
                    }
                    other => panic!("{pointer} = {bad} was not refused as invalid: {other:?}"),
                }
            }
        }
    }
    #[test]
    fn invalid_glob_is_refused_at_validation_not_at_review_time() {
        let err =
            Config::from_text("review:\n  include: ['src/**']\n  exclude: ['ok/**', 'a[b']\n", "g.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].pointer, "/review/exclude/1");
        assert!(violations[0].rule.contains("glob"), "{err}");
        assert!(Config::from_text("review:\n  include: ['{a,b']\n", "g.yml").is_err());
    }
}
