//! Every clap type, and nothing else. These enums stay separate from the domain types; the
//! commands resolve them into settings structs before running.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::env_vars;
use crate::findings::Threshold;

/// agentctl: AI agents in GitHub Actions, safely, reliably and cheaply.
///
/// Secrets are never taken from the command line: API keys and tokens come from environment
/// variables (GITHUB_TOKEN, OPENAI_API_KEY or the variable a provider's `api_key_env` names).
#[derive(Debug, Parser)]
#[command(name = "agentctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Cli {
    /// Whether the command stops on SIGTERM/SIGINT by itself, finishing what it is writing
    /// (`token-refresh app --watch`): `main` then leaves the signals to it instead of dropping the
    /// run at once.
    pub fn handles_signals(&self) -> bool {
        match &self.command {
            Command::TokenRefresh(TokenRefreshArgs { action: TokenRefreshAction::App(a) }) => a.watch,
            Command::TokenRefresh(TokenRefreshArgs { action: TokenRefreshAction::Runner(r) }) => r.watch,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Review a pull request: findings as inline comments, a summary comment, outputs and SARIF.
    Review(ReviewArgs),
    /// Fix an issue or a PR comment's request: model edits applied safely, the repository's verify command, a draft PR.
    Fix(FixArgs),
    /// Map the triggering event to a task, model and runner for later jobs (no model call).
    Route(RouteArgs),
    /// Report, check, estimate, export and import token usage and spend (the usage ledger).
    Cost(CostArgs),
    /// Mint GitHub App installation tokens or runner registration tokens, into a step output, a 0600 file, the keyring or stdout.
    TokenRefresh(TokenRefreshArgs),
    /// Validate, print or create the config file.
    Config(ConfigArgs),
    /// Store, read, delete and list secrets in the OS keyring (values from stdin only).
    Secrets(SecretsArgs),
}

/// Where the event comes from (`review`, `fix`, `route`).
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Event payload file (otherwise `GITHUB_EVENT_PATH`).
    #[arg(id = "event", long = "event", value_name = "FILE")]
    pub path: Option<PathBuf>,

    /// Event name (otherwise `GITHUB_EVENT_NAME`, or guessed from the payload).
    #[arg(id = "event_name", long = "event-name", value_name = "NAME")]
    pub name: Option<String>,
}

/// Which provider answers (`review`, `fix`).
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// Which `providers:` entry answers.
    #[arg(id = "provider", long = "provider", env = env_vars::AGENTCTL_PROVIDER)]
    pub name: Option<String>,

    /// Model override for the chosen provider.
    #[arg(long, env = env_vars::AGENTCTL_MODEL)]
    pub model: Option<String>,
}

/// What becomes of the run's usage records (`review`, `fix`): [`crate::ledger::Ledger::finish`].
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Fail (exit 1) when usage cannot be recorded in the state store, before any model call
    /// when the store cannot be opened.
    #[arg(long, env = env_vars::AGENTCTL_REQUIRE_STATE, value_parser = clap::builder::FalseyValueParser::new())]
    pub require_state: bool,

    /// Also write this run's usage records as JSON Lines to FILE (for `cost import` elsewhere).
    #[arg(long, value_name = "FILE", env = env_vars::AGENTCTL_USAGE_OUT)]
    pub usage_out: Option<PathBuf>,
}

/// `agentctl route`: one decision per event for the jobs after it.
#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    pub event: EventArgs,

    /// Config file (YAML or JSON). Default: `.github/agentctl.yml` from the PR's base branch on
    /// pull-request events, else from the checkout or the workflow's commit.
    #[arg(long, value_name = "PATH", env = env_vars::AGENTCTL_CONFIG)]
    pub config: Option<PathBuf>,

    /// Print how the decision was reached: the event's catalog name, the command, each rule
    /// tried and why it matched or not, provider health, budget and runner choice.
    #[arg(long)]
    pub explain: bool,

    /// What stdout gets: `text` (one `key: value` line per output) or `json` (the decision).
    #[arg(long, value_enum, default_value_t = RouteFormat::Text)]
    pub format: RouteFormat,
}

/// `--format` of `route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouteFormat {
    Text,
    Json,
}

/// `agentctl fix` (README "Fix").
#[derive(Debug, Args)]
pub struct FixArgs {
    /// Issue to fix (otherwise taken from the event).
    #[arg(long, conflicts_with = "pr")]
    pub issue: Option<u64>,

    /// Pull request whose comment asks for the fix: the fix becomes a draft PR into its head branch.
    #[arg(long)]
    pub pr: Option<u64>,

    /// Extra instructions for the model (untrusted text, like the issue).
    #[arg(long, value_name = "TEXT")]
    pub instructions: Option<String>,

    /// Print the unified diff and the PR body instead of writing to GitHub; the checkout is restored.
    #[arg(long)]
    pub dry_run: bool,

    /// Run in a checkout with uncommitted changes.
    #[arg(long)]
    pub allow_dirty: bool,

    #[command(flatten)]
    pub event: EventArgs,

    /// Config file (YAML or JSON). Default: `.github/agentctl.yml` (from the PR's base branch on a PR).
    #[arg(long, value_name = "PATH", env = env_vars::AGENTCTL_CONFIG)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub provider: ProviderArgs,

    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Sarif,
}

/// `--fail-on` takes the domain's [`Threshold`] (`none`, `critical` … `info`) directly: one
/// type for the flag, the config and the verdict.
impl ValueEnum for Threshold {
    fn value_variants<'a>() -> &'a [Self] {
        &Threshold::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Print what would be posted instead of writing to GitHub (implied when no token is set).
    #[arg(long)]
    pub dry_run: bool,

    /// Pull request number (otherwise taken from the event).
    #[arg(long)]
    pub pr: Option<u64>,

    #[command(flatten)]
    pub event: EventArgs,

    /// Read the diff from FILE (`-` for stdin) instead of the GitHub API.
    #[arg(long, value_name = "FILE", conflicts_with = "base")]
    pub diff: Option<String>,

    /// Diff the local checkout against REF (`git diff REF...HEAD`).
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,

    /// Config file (YAML or JSON). Default: `.github/agentctl.yml` from the PR's base branch.
    #[arg(long, value_name = "PATH", env = env_vars::AGENTCTL_CONFIG)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub provider: ProviderArgs,

    /// Exit 10+ when a finding at or above this severity exists.
    #[arg(long, value_enum, env = env_vars::AGENTCTL_FAIL_ON)]
    pub fail_on: Option<Threshold>,

    /// Review the whole PR even on `synchronize` (no incremental review).
    #[arg(long)]
    pub full: bool,

    /// Ask the model for every chunk: do not read or write the response cache (config `cache`).
    #[arg(long)]
    pub no_cache: bool,

    /// Write SARIF 2.1.0 to PATH.
    #[arg(long, value_name = "PATH")]
    pub sarif: Option<PathBuf>,

    #[command(flatten)]
    pub ledger: LedgerArgs,

    /// Output format of the dry run / stdout (`text` is the markdown rendering for `review`).
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a config file against the schema; every violation is listed with its JSON pointer.
    Validate {
        /// Config file (default `.github/agentctl.yml`).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
    },
    /// Print the config JSON Schema.
    Schema,
    /// Write a commented starter config (refuses to overwrite).
    Init {
        /// Where to write it (default `.github/agentctl.yml`).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CostArgs {
    #[command(subcommand)]
    pub action: CostAction,
}

#[derive(Debug, Subcommand)]
pub enum CostAction {
    /// Calls, tokens by class, USD and failures from the usage ledger, grouped.
    Report(CostReportArgs),
    /// Check spend against the configured budgets (or --budget-usd): exit 5 past a hard limit.
    Check(CostCheckArgs),
    /// Tokens and USD a review of a diff would cost with the configured provider; no model call.
    Estimate(CostEstimateArgs),
    /// Write usage records as JSON Lines to stdout, one record per line with its stable id.
    Export(CostExportArgs),
    /// Add JSON Lines usage records (from `cost export` or `--usage-out`) to the ledger; ids
    /// already present are skipped, so importing a file twice adds nothing.
    Import(CostImportArgs),
}

/// Options every `cost` action shares: where the ledger and the config are.
#[derive(Debug, Args)]
pub struct CostCommonArgs {
    /// State store: a SQLite file, or a `postgres://` URL without a password (the password
    /// comes from PGPASSWORD). Default: `AGENTCTL_STATE`, config `state`, then the runner's
    /// tool cache or `$XDG_DATA_HOME/agentctl/state.db`.
    // No `env =` here: AGENTCTL_STATE may hold a password, which `--help` would print, and the
    // store's resolution reads it itself (where a password is allowed).
    #[arg(long, value_name = "PATH|URL")]
    pub state: Option<PathBuf>,

    /// Config file (YAML or JSON). Default: `.github/agentctl.yml` when it exists.
    #[arg(long, value_name = "PATH", env = env_vars::AGENTCTL_CONFIG)]
    pub config: Option<PathBuf>,
}

/// `--group-by` of `cost report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CostGroupBy {
    Day,
    Model,
    Provider,
    Repo,
    Workflow,
    Task,
    Pr,
}

/// The report's grouping for a `--group-by` value.
impl From<CostGroupBy> for crate::usage::report::GroupBy {
    fn from(g: CostGroupBy) -> Self {
        use crate::usage::report::GroupBy;
        match g {
            CostGroupBy::Day => GroupBy::Day,
            CostGroupBy::Model => GroupBy::Model,
            CostGroupBy::Provider => GroupBy::Provider,
            CostGroupBy::Repo => GroupBy::Repo,
            CostGroupBy::Workflow => GroupBy::Workflow,
            CostGroupBy::Task => GroupBy::Task,
            CostGroupBy::Pr => GroupBy::Pr,
        }
    }
}

/// `--format` of the `cost` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CostFormat {
    Table,
    Json,
    Csv,
    Markdown,
}

/// `--format` of `cost export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CostExportFormat {
    /// JSON Lines on stdout, one record a line (what `cost import` reads).
    Jsonl,
    /// OTLP/HTTP metrics to the telemetry endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, …), each
    /// data point at its record's time, for backfilling a collector. Exit 2 without an endpoint,
    /// 1 when the collector refuses or cannot be reached (batches sent before are named).
    Otlp,
}

#[derive(Debug, Args)]
pub struct CostReportArgs {
    #[command(flatten)]
    pub common: CostCommonArgs,

    /// Start of the window: a duration back from now (`7d`, `12h`, `2w`) or a UTC date
    /// (`2026-11-01`).
    #[arg(long, default_value = "30d")]
    pub since: String,

    /// End of the window (exclusive): a duration back from now or a UTC date; a date includes
    /// that whole day.
    #[arg(long)]
    pub until: Option<String>,

    /// What one row stands for.
    #[arg(long, value_enum, default_value = "day")]
    pub group_by: CostGroupBy,

    /// Only this repository (`owner/name`).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,

    /// Only this workflow (its name, as `GITHUB_WORKFLOW`).
    #[arg(long)]
    pub workflow: Option<String>,

    /// Output format; `markdown` adds a mermaid bar chart of spend per group.
    #[arg(long, value_enum, default_value = "table")]
    pub format: CostFormat,

    /// Also append the markdown report to `GITHUB_STEP_SUMMARY`.
    #[arg(long)]
    pub summary: bool,

    /// Re-price computed costs with the current price table (bundled + config `pricing:`) in
    /// this report only; the ledger keeps what each call was priced at. Provider-reported
    /// costs are left as they are.
    #[arg(long)]
    pub reprice: bool,
}

/// `--period` of `cost check --budget-usd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CostPeriod {
    Day,
    Week,
    Month,
}

#[derive(Debug, Args)]
pub struct CostCheckArgs {
    #[command(flatten)]
    pub common: CostCommonArgs,

    /// A budget for all usage in USD, instead of the config's `budgets:`.
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub budget_usd: Option<f64>,

    /// The period of `--budget-usd` (UTC day, ISO week from Monday, calendar month).
    #[arg(long, value_enum, default_value = "month")]
    pub period: CostPeriod,

    /// Output format of the evaluation.
    #[arg(long, value_enum, default_value = "table")]
    pub format: CostFormat,
}

#[derive(Debug, Args)]
pub struct CostEstimateArgs {
    #[command(flatten)]
    pub common: CostCommonArgs,

    /// Read the diff from FILE (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["base", "pr"])]
    pub diff: Option<String>,

    /// Diff the local checkout against REF (`git diff REF...HEAD`).
    #[arg(long, value_name = "REF", conflicts_with = "pr")]
    pub base: Option<String>,

    /// Pull request number: its diff from the GitHub API (needs GITHUB_TOKEN and GITHUB_REPOSITORY).
    #[arg(long)]
    pub pr: Option<u64>,

    /// Which `providers:` entry would answer.
    #[arg(long, env = env_vars::AGENTCTL_PROVIDER)]
    pub provider: Option<String>,

    /// Model override for the chosen provider.
    #[arg(long, env = env_vars::AGENTCTL_MODEL)]
    pub model: Option<String>,

    /// Output format (`csv` and `markdown` print the table).
    #[arg(long, value_enum, default_value = "table")]
    pub format: CostFormat,
}

#[derive(Debug, Args)]
pub struct CostExportArgs {
    #[command(flatten)]
    pub common: CostCommonArgs,

    /// Start of the window: a duration back from now (`7d`) or a UTC date (`2026-11-01`).
    /// Default: everything.
    #[arg(long)]
    pub since: Option<String>,

    /// `jsonl` prints the records; `otlp` sends them as OTLP metrics (1000 records a request).
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: CostExportFormat,
}

#[derive(Debug, Args)]
pub struct CostImportArgs {
    #[command(flatten)]
    pub common: CostCommonArgs,

    /// JSON Lines files to import (`-` for stdin). Each file is imported in one transaction:
    /// a bad line imports nothing from its file (exit 2).
    #[arg(value_name = "FILE", required_unless_present = "from_artifacts", conflicts_with = "from_artifacts")]
    pub files: Vec<String>,

    /// Import the usage JSONL that workflow runs uploaded as artifacts (Actions artifacts API;
    /// needs `GITHUB_TOKEN` with `actions: read`). Expired artifacts are skipped and counted.
    #[arg(long)]
    pub from_artifacts: bool,

    /// With --from-artifacts: the repository (`owner/name`); default `GITHUB_REPOSITORY`.
    #[arg(long, value_name = "OWNER/NAME", requires = "from_artifacts")]
    pub repo: Option<String>,

    /// With --from-artifacts: only artifacts created since then (a duration such as `7d`, or a
    /// UTC date `YYYY-MM-DD`).
    #[arg(long, requires = "from_artifacts")]
    pub since: Option<String>,

    /// With --from-artifacts: the artifact name the runs uploaded, or a glob of names
    /// (`agentctl-usage-*` for names made unique per run).
    #[arg(long, default_value = "agentctl-usage", requires = "from_artifacts")]
    pub name: String,
}

/// `token-refresh`: short-lived GitHub credentials (SPEC §3.5). Secrets never come from flag
/// values: the app's private key is read from `--private-key-file` or the
/// `AGENTCTL_APP_PRIVATE_KEY` environment variable (PEM text) or an OS keyring entry
/// (`--private-key-keyring`).
#[derive(Debug, Args)]
pub struct TokenRefreshArgs {
    #[command(subcommand)]
    pub action: TokenRefreshAction,
}

#[derive(Debug, Subcommand)]
pub enum TokenRefreshAction {
    /// Mint a GitHub App installation access token (1 hour), optionally scoped to repositories and permissions.
    App(AppTokenArgs),
    /// Create a runner registration token, remove token, or just-in-time runner config.
    Runner(RunnerTokenArgs),
    /// Revoke an installation access token (`DELETE /installation/token`), e.g. in a post step.
    Revoke(RevokeArgs),
}

/// How agentctl authenticates as a GitHub App.
#[derive(Debug, Args)]
pub struct AppAuthArgs {
    /// The app's client id (`Iv1.…`) or numeric app id: the JWT's `iss`.
    #[arg(long, value_name = "ID", env = env_vars::AGENTCTL_APP_ID)]
    pub app_id: Option<String>,

    /// PEM file holding the app's RSA private key (else the AGENTCTL_APP_PRIVATE_KEY environment variable, PEM text).
    #[arg(long, value_name = "PATH")]
    pub private_key_file: Option<PathBuf>,

    /// OS keyring entry (NAME or SERVICE/NAME, service `agentctl`) holding the app's PEM private key (stored with `agentctl secrets set NAME < app.pem`); --private-key-file wins over it, it wins over AGENTCTL_APP_PRIVATE_KEY.
    #[arg(long, value_name = "[SERVICE/]NAME", env = env_vars::AGENTCTL_APP_PRIVATE_KEY_KEYRING)]
    pub private_key_keyring: Option<String>,

    /// Installation id (otherwise looked up from --owner/--repo or GITHUB_REPOSITORY).
    #[arg(long, value_name = "ID")]
    pub installation_id: Option<u64>,
}

/// Where minted credentials go. At least one sink is required.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Write the credential to this step output (masked with `::add-mask::` first).
    #[arg(long, value_name = "NAME")]
    pub output_name: Option<String>,

    /// Write the credential to PATH (mode 0600, atomic rename; PATH.meta.json beside it records its expiry).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Store the credential in the OS keyring as NAME or SERVICE/NAME (service `agentctl`; see `agentctl secrets`).
    #[arg(long, value_name = "[SERVICE/]NAME")]
    pub keyring: Option<String>,

    /// Print the credential on stdout (refused when stdout is a terminal unless --force).
    #[arg(long)]
    pub print: bool,

    /// Allow --print to a terminal.
    #[arg(long, requires = "print")]
    pub force: bool,

    /// Reuse the credential in --file while it has more than this many seconds left.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub min_ttl: u64,
}

#[derive(Debug, Args)]
pub struct AppTokenArgs {
    #[command(flatten)]
    pub auth: AppAuthArgs,

    /// Account that owns the installation (with --repo: a repository; alone: an organization, else a user).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// Repository whose installation to use (needs --owner).
    #[arg(long, value_name = "REPO", requires = "owner")]
    pub repo: Option<String>,

    /// Limit the token to these repositories (names without owner, comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub repositories: Vec<String>,

    /// Limit the token to this permission, e.g. `contents=write` (repeatable).
    #[arg(long, value_name = "NAME=LEVEL")]
    pub permission: Vec<String>,

    /// Stay running: refresh --file (and --keyring) whenever its token has less than --min-ttl seconds left, until SIGTERM or SIGINT.
    #[arg(long, requires = "file", conflicts_with_all = ["print", "output_name"])]
    pub watch: bool,

    #[command(flatten)]
    pub sinks: SinkArgs,
}

/// Runner credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunnerScope {
    Repo,
    Org,
}

/// Which runner credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunnerAction {
    /// Registration token for `config.sh --token`.
    Register,
    /// Remove token for `config.sh remove --token`.
    Remove,
    /// Just-in-time runner config for `run.sh --jitconfig`.
    Jit,
}

#[derive(Debug, Args)]
pub struct RunnerTokenArgs {
    /// Repository or organization runners.
    #[arg(long, value_enum)]
    pub scope: RunnerScope,

    /// Which credential to create.
    #[arg(long, value_enum)]
    pub action: RunnerAction,

    /// Organization, or the repository's owner (otherwise from GITHUB_REPOSITORY).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// Repository (with --scope repo; otherwise from GITHUB_REPOSITORY).
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,

    /// JIT runner name (default: agentctl-<random>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// JIT runner labels (comma-separated; default `self-hosted`).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// JIT runner group id.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    pub runner_group_id: u64,

    /// JIT runner work folder.
    #[arg(long, value_name = "DIR", default_value = "_work")]
    pub work_folder: String,

    /// Authenticate as a GitHub App (else GH_TOKEN, else GITHUB_TOKEN).
    #[command(flatten)]
    pub auth: AppAuthArgs,

    /// Stay running: refresh --file (and --keyring) whenever the registration or remove token has less than --min-ttl seconds left, until SIGTERM or SIGINT (not with --action jit).
    #[arg(long, requires = "file", conflicts_with_all = ["print", "output_name"])]
    pub watch: bool,

    #[command(flatten)]
    pub sinks: SinkArgs,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Token file written by `token-refresh app --file` (else the token in GH_TOKEN, else GITHUB_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// `secrets`: the OS keyring (Linux kernel keyutils, macOS keychain, Windows credential
/// manager). Values are read from stdin only, never from an argument.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub action: SecretsAction,
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Store the value read from stdin (one trailing newline dropped) as NAME.
    Set {
        /// NAME or SERVICE/NAME (service `agentctl`).
        #[arg(value_name = "[SERVICE/]NAME")]
        name: String,
    },
    /// Say whether NAME is stored; with --print, write its value to stdout.
    Get {
        /// NAME or SERVICE/NAME.
        #[arg(value_name = "[SERVICE/]NAME")]
        name: String,
        /// Write the value to stdout (refused when stdout is a terminal unless --force).
        #[arg(long)]
        print: bool,
        /// Allow --print to a terminal.
        #[arg(long, requires = "print")]
        force: bool,
    },
    /// Delete NAME.
    Delete {
        /// NAME or SERVICE/NAME.
        #[arg(value_name = "[SERVICE/]NAME")]
        name: String,
    },
    /// List the names (never the values) stored in a service.
    List {
        /// The service (default `agentctl`).
        #[arg(value_name = "SERVICE", default_value = "agentctl")]
        service: String,
    },
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every subcommand (unique argument ids, valid
    /// `conflicts_with` targets, ...), which otherwise panic only when that subcommand runs.
    #[test]
    fn the_command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
