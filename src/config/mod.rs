//! Config: `.github/agentctl.yml` (YAML or JSON), validated against
//! `schemas/config.schema.json` (JSON Schema 2020-12) before it is used.
//!
//! Every violation is reported at once with its JSON pointer (RFC 6901), the offending value and
//! the rule, so a user fixes the file in one round. Precedence is applied by the commands:
//! flags > `AGENTCTL_*` env (clap reads both) > this file > the defaults written here and in
//! the schema.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::usage::pricing::ModelPrice;

pub(crate) mod budget;
pub(crate) mod fix;
mod load;
mod model;
mod parse;
pub(crate) mod routes;
mod starter;

pub(crate) use fix::{CommitMethod, EditFormat, FixConfig, VerifyCommand, Workdir};
pub(crate) use load::{load_for_pr, load_for_ref, load_local, CommitFiles, ConfigOrigin, FetchError};
pub(crate) use model::{
    write_delay_from_env, CacheConfig, CacheScope, CommandOutput, GitHubConfig, PromptCacheMode, PromptCacheTtl,
    ProviderConfig, ProviderKind, ReviewConfig,
};
pub(crate) use parse::Violation;
use parse::{render_violations, scrub};
pub(crate) use starter::STARTER;

/// The JSON Schema every config is validated against.
pub(crate) const SCHEMA: &str = include_str!("../../schemas/config.schema.json");

/// Default config path, relative to the repository root.
pub(crate) const DEFAULT_PATH: &str = ".github/agentctl.yml";

/// Largest config accepted, in bytes (1 MiB): read with a cap, never whole first.
pub(crate) const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Deepest nesting accepted in a config: block levels plus flow levels (`[`, `{`). The YAML
/// parser spends time quadratic in the nesting (100k levels in 200 KB cost 17 s of CPU), so
/// deeper input is refused by a pre-scan before it is parsed; real configs nest 4 levels.
pub(crate) const MAX_DEPTH: usize = 64;

/// Longest excerpt of a value quoted in an error message, in characters.
pub(crate) const MAX_QUOTED_CHARS: usize = 80;

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
    pub budgets: Vec<budget::BudgetConfig>,
    /// `agentctl route` rules, first match wins; empty: [`routes::default_routes`].
    pub routes: Vec<routes::RouteRule>,
    /// Tier name → `providers:` entry, for `routes[].tier` and `budgets[].downgrade_to`.
    pub tiers: routes::Tiers,
    /// Who may give `/agentctl …` commands that `route` acts on.
    pub slash_commands: routes::SlashCommandsConfig,
    /// `agentctl fix` settings.
    pub fix: FixConfig,
    /// OpenTelemetry export (`crate::telemetry`); the `OTEL_*` variables win.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The response cache of `review` (issue #20).
    pub cache: CacheConfig,
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
        /// The exit code the failure ends the run with (the transport's).
        exit: crate::exit::Exit,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// On a pull-request event in Actions with no token, the base commit is not in the checkout,
    /// so the config cannot be read from it; the PR's own copy is never used instead.
    #[error("cannot read {DEFAULT_PATH} from the pull request's base commit {base}: {message}\nhelp: on pull-request events the config comes from the base branch, never from the PR; set GITHUB_TOKEN (it is read through the API), or check out with `fetch-depth: 0` so the base commit is present, or pass --config explicitly")]
    BaseUnavailable { base: String, message: String },
    /// An `AGENTCTL_*` variable with a value out of its range (`value` cut at 40 characters).
    #[error("environment variable {name}=`{value}` is invalid: expected {expected}\nhelp: {help}")]
    Env { name: &'static str, value: String, expected: String, help: String },
}

impl Config {
    /// The price table a run uses: the bundled one with the config's `pricing:` entries on top.
    pub fn price_table(&self) -> crate::usage::pricing::PriceTable {
        let mut prices = crate::usage::pricing::PriceTable::bundled();
        prices.models.extend(self.pricing.iter().map(|(k, v)| (k.clone(), *v)));
        prices
    }

    /// The `providers:` entry a run uses (SPEC §2, "Providers"): `flag` (`--provider`), else
    /// the config's `provider`, else the only entry when there is exactly one, else `builtin`
    /// (no model call). The one rule behind provider selection, cost estimates and `route`.
    pub fn provider_entry(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned)
            .or_else(|| self.provider.clone())
            .or_else(|| (self.providers.len() == 1).then(|| self.providers.keys().next().cloned()).flatten())
            .unwrap_or_else(|| "builtin".into())
    }
}

impl ConfigError {
    /// The exit code: a failed fetch through the API ends as the GitHub error it carries; every
    /// other config error is `Usage` (2): nothing was sent anywhere.
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            ConfigError::Fetch { exit, .. } => *exit,
            _ => crate::exit::Exit::Usage,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::Config;

    #[test]
    fn the_provider_entry_is_the_flag_then_provider_then_the_only_entry_then_builtin() {
        let one = Config::from_text("providers:\n  fast: {kind: openai, model: m}\n", "t").unwrap();
        assert_eq!(one.provider_entry(None), "fast");
        assert_eq!(one.provider_entry(Some("other")), "other");
        let two =
            Config::from_text("providers:\n  a: {kind: openai, model: m}\n  b: {kind: anthropic, model: m}\n", "t")
                .unwrap();
        assert_eq!(two.provider_entry(None), "builtin", "two entries and no `provider`: no guess");
        let chosen = Config::from_text(
            "provider: b\nproviders:\n  a: {kind: openai, model: m}\n  b: {kind: anthropic, model: m}\n",
            "t",
        )
        .unwrap();
        assert_eq!((chosen.provider_entry(None), chosen.provider_entry(Some("a"))), ("b".into(), "a".into()));
        assert_eq!(Config::default().provider_entry(None), "builtin");
    }
}
