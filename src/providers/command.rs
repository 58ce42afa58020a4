//! `command` adapter: runs an agent CLI (`claude -p`, `codex exec`, `gemini -p`, ...) as a
//! child process, writes the prompt to its **stdin** and reads the answer from its stdout.
//!
//! Security: the prompt holds untrusted pull-request text, so it never touches argv or a
//! shell. The program is spawned directly (no `sh -c`); its arguments come only from config;
//! the prompt goes through a pipe. The child's environment is cleared and rebuilt from
//! [`INHERITED_ENV`], the configured `env` and the `env_passthrough` names, so `GITHUB_TOKEN`,
//! `ACTIONS_RUNTIME_TOKEN` and other secrets of the job never reach the agent unless asked for.
//!
//! The child runs inside the process boundary ([`crate::boundary`]): through agentctl's
//! trampoline, without capabilities or new privileges, unable to read agentctl's memory or
//! environment, and whatever it daemonises is killed when it ends (agentctl is its subreaper).
//!
//! Resource limits: every attempt has a timeout after which the child's whole process group
//! (the agent and every tool it started) is killed and the child reaped (see
//! [`crate::boundary::process_group`]; `SIGINT`/`SIGTERM` to agentctl kill the groups too);
//! stdout is capped ([`CommandSettings::max_output_bytes`]) and only the tail of stderr is kept,
//! so a runaway agent can neither hang the job nor eat its memory. stdin, stdout and stderr are
//! serviced concurrently so a child that writes a lot before reading its input cannot deadlock
//! us on a full pipe.
//!
//! Output formats ([`OutputFormat`]):
//! - `Text`: stdout is the answer. Usage is reported as zero: an agent CLI's tokens and cost
//!   are not accounted unless the CLI reports them (we do not guess with a tokenizer, because
//!   agents add their own system prompts and tool turns that we cannot see).
//! - `ClaudeJson`: `claude -p --output-format json` prints one result object; the shape follows
//!   the Claude Agent SDK's `SDKResultMessage` (TypeScript reference, also the Python SDK's
//!   `ResultMessage`) and the headless-mode docs
//!   (<https://docs.anthropic.com/en/docs/claude-code/sdk/sdk-headless>): `type: "result"`,
//!   `subtype` (`success`, `error_max_turns`, `error_during_execution`, `error_max_budget_usd`,
//!   ...), `is_error`, `result`, `structured_output`, `total_cost_usd`, `usage`
//!   (`input_tokens`, `cache_creation_input_tokens`, `cache_read_input_tokens`,
//!   `output_tokens`; Anthropic's classes, which already add up without overlap) and
//!   `modelUsage` (per model name). `--output-format stream-json --verbose` works too: its
//!   last line is the same result object.
//! - `CodexJsonl`: `codex exec --json` prints JSONL thread events; the shapes follow
//!   `codex-rs/exec/src/exec_events.rs` in openai/codex: the answer is the last
//!   `item.completed` whose `item.type` is `agent_message`, usage comes from `turn.completed`
//!   (`input_tokens`, `cached_input_tokens`, `output_tokens`, where cached is a subset of
//!   input as in codex's `TokenUsage::non_cached_input`), failures are `turn.failed` and
//!   `error` events. Codex reads the prompt from stdin when no prompt argument (or `-`) is given.
//!
//! Cost: `total_cost_usd` reported by `claude` ([`AgentAnswer::total_cost_usd`]) is passed on
//! as [`Completion::reported_cost_usd`], and the ledger records it as the source of truth
//! (`cost_source: reported`); without it, cost is computed from usage and the model like for
//! the HTTP adapters.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};

use crate::boundary::process_group::ProcessGroup;
use crate::context::Env;
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError, Usage};
use crate::resilience::{retry_observed, Exhausted, Failure, LogRetries, RetryPolicy};

/// Default cap on an agent's stdout (bytes): far above any review answer, far below a
/// runner's memory.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// Default per-attempt timeout. Agent CLIs run tool loops and are much slower than one HTTP
/// completion.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Variables copied from our environment into the child's (when set), besides `env` and
/// `env_passthrough`: what a CLI needs to find programs (`PATH`), its config and login
/// (`HOME`), decode text (`LANG`) and write temporary files (`TMPDIR`), and
/// `RUNNER_TRACKING_ID`, by which the Actions runner finds the processes a step left behind.
pub const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TMPDIR", "RUNNER_TRACKING_ID"];

/// How much of stderr we keep while reading (bytes, the most recent ones).
const STDERR_KEEP_BYTES: usize = 64 * 1024;

/// Lines of stderr quoted in an error.
const STDERR_TAIL_LINES: usize = 20;

/// Longest stderr or agent message copied into our errors (characters).
const MAX_ERROR_MESSAGE_CHARS: usize = 2_000;

/// How long we wait for a killed child to be reaped before giving up on it (it is SIGKILLed,
/// so this only matters if the kernel is wedged).
const REAP_GRACE: Duration = Duration::from_secs(5);

/// How the agent's stdout is read. See the module docs for the sources of each shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// stdout is the answer; usage is reported as zero (not accounted).
    #[default]
    Text,
    /// `claude -p --output-format json` (or `stream-json`): the `result` object.
    ClaudeJson,
    /// `codex exec --json`: JSONL thread events.
    CodexJsonl,
}

/// Settings of one `kind: command` provider, resolved from config.
#[derive(Clone)]
pub struct CommandSettings {
    /// Config entry name, for messages.
    pub name: String,
    /// The model, informational (may be empty); pass it to the CLI through `args` if needed.
    pub model: String,
    /// The executable: an absolute path, or a name looked up in the child's `PATH`.
    pub program: String,
    /// Arguments, from config only; never built from the prompt or other untrusted text.
    pub args: Vec<String>,
    /// Extra variables for the child (they override inherited ones of the same name).
    pub env: BTreeMap<String, String>,
    /// Names of our variables passed through to the child when set (e.g. `ANTHROPIC_API_KEY`).
    pub env_passthrough: Vec<String>,
    /// Per-attempt timeout; the child is killed when it runs out.
    pub timeout: Duration,
    /// Retries of timeouts, crashes and non-zero exits.
    pub retry: RetryPolicy,
    /// How stdout is read.
    pub output: OutputFormat,
    /// Cap on stdout (bytes); more is an error and the child is killed.
    pub max_output_bytes: usize,
}

impl CommandSettings {
    /// Settings with defaults: no args, no extra env, [`DEFAULT_TIMEOUT`], the default
    /// [`RetryPolicy`], [`OutputFormat::Text`] and [`DEFAULT_MAX_OUTPUT_BYTES`].
    pub fn new(name: impl Into<String>, program: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            model: String::new(),
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            output: OutputFormat::Text,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

impl std::fmt::Debug for CommandSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `env` values may be credentials someone put in config: print the names only.
        f.debug_struct("CommandSettings")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("env_passthrough", &self.env_passthrough)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("output", &self.output)
            .field("max_output_bytes", &self.max_output_bytes)
            .finish()
    }
}

/// The adapter.
pub struct CommandProvider {
    settings: CommandSettings,
    /// The child's complete environment, resolved once at construction. Values are secrets
    /// (passed-through API keys), so `Debug` cannot print them.
    child_env: Vec<(String, SecretString)>,
    /// The passed-through variables that were set, for the caller's redactor.
    passthrough: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for CommandProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandProvider")
            .field("settings", &self.settings)
            .field("child_env", &self.child_env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl CommandProvider {
    /// Builds the adapter, resolving the child's environment from `env` (our process
    /// environment, [`Env::from_process`] outside tests): [`INHERITED_ENV`] and the
    /// `env_passthrough` names that are set, then the configured `env` on top.
    ///
    /// Errors ([`ProviderError::Config`]): an empty `program`, or a variable name or value
    /// that cannot be put in an environment (empty name, `=` in the name, NUL anywhere).
    pub fn new(settings: CommandSettings, env: &Env) -> Result<Self, ProviderError> {
        let config_error = |message: String| ProviderError::Config { provider: settings.name.clone(), message };
        if settings.program.trim().is_empty() {
            return Err(config_error(
                "`program` is empty\nhelp: set `program` to the agent CLI to run, e.g. `claude`".to_owned(),
            ));
        }
        if settings.program.contains('\0') || settings.args.iter().any(|a| a.contains('\0')) {
            return Err(config_error("`program` or `args` contains a NUL byte".to_owned()));
        }
        let mut child_env: BTreeMap<String, String> = BTreeMap::new();
        let mut passthrough = Vec::new();
        for name in INHERITED_ENV {
            if let Some(value) = env.get(name) {
                child_env.insert(name.to_owned(), value.to_owned());
            }
        }
        for name in &settings.env_passthrough {
            check_env_name(name).map_err(|m| config_error(format!("env_passthrough: {m}")))?;
            if let Some(value) = env.get(name) {
                child_env.insert(name.clone(), value.to_owned());
                passthrough.push((name.clone(), SecretString::from(value.to_owned())));
            }
        }
        for (name, value) in &settings.env {
            check_env_name(name).map_err(|m| config_error(format!("env: {m}")))?;
            if value.contains('\0') {
                return Err(config_error(format!("env: the value of `{name}` contains a NUL byte")));
            }
            child_env.insert(name.clone(), value.clone());
        }
        let child_env = child_env.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect();
        Ok(Self { settings, child_env, passthrough })
    }

    /// The passed-through variables that were set and their values (e.g. an API key), so the
    /// caller can register them with the redactor and `::add-mask::`.
    pub fn passthrough_secrets(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.passthrough.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The names of the variables the child gets (values are never exposed).
    pub fn child_env_names(&self) -> impl Iterator<Item = &str> {
        self.child_env.iter().map(|(k, _)| k.as_str())
    }

    async fn complete_inner(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let input = stdin_prompt(req, &input_nonce());
        let outcome =
            retry_observed(&self.settings.retry, &LogRetries(&self.settings.name), AttemptError::failure, |_attempt| {
                self.attempt(input.as_bytes())
            })
            .await;
        let (answer, latency) = outcome.map_err(|e| self.map_error(e))?;
        let model = answer
            .model
            .filter(|m| !m.is_empty())
            .or_else(|| Some(self.settings.model.clone()).filter(|m| !m.is_empty()))
            .unwrap_or_else(|| program_name(&self.settings.program));
        // A reported cost must be a real amount; anything else falls back to the price table.
        let reported_cost_usd = answer.total_cost_usd.filter(|c| c.is_finite() && *c >= 0.0);
        Ok(Completion { text: answer.text, usage: answer.usage, model, latency, request_id: None, reported_cost_usd })
    }

    /// One run of the program: the parsed answer and the wall time of the run.
    async fn attempt(&self, input: &[u8]) -> Result<(AgentAnswer, Duration), AttemptError> {
        let raw = self.run(input).await?;
        let stdout = String::from_utf8_lossy(&raw.stdout);
        if !raw.status.success() {
            // A CLI that explains its failure in its own output format says more than the
            // exit code (claude exits non-zero with `is_error: true` in the result object).
            if self.settings.output != OutputFormat::Text {
                if let Err(AgentOutputError::Failed { message, kind }) = parse_output(self.settings.output, &stdout) {
                    return Err(AttemptError::AgentFailed { message, kind });
                }
            }
            let stderr_tail = tail_lines(&raw.stderr);
            // `claude -p` in text mode prints `Invalid API key · Please run /login` and exits 1:
            // a refused login is not worth a retry.
            let said = format!("{}\n{stderr_tail}", tail_lines(&raw.stdout));
            if let Some(kind @ (FailureKind::Auth | FailureKind::Quota)) = classify_failure_text(&said) {
                let message = format!("`{}` {}: {}", self.settings.program, describe_status(raw.status), said.trim());
                return Err(AttemptError::AgentFailed { message, kind });
            }
            return Err(AttemptError::Exit { status: describe_status(raw.status), stderr_tail });
        }
        let answer = parse_output(self.settings.output, &stdout).map_err(|e| match e {
            AgentOutputError::Failed { message, kind } => AttemptError::AgentFailed { message, kind },
            AgentOutputError::Malformed(message) => AttemptError::Malformed { message },
        })?;
        Ok((answer, raw.latency))
    }

    /// Spawns the program, feeds `input` to stdin, collects stdout (capped) and the stderr
    /// tail, and waits for the exit, all within the timeout. On timeout or an I/O error the
    /// child is killed and reaped before returning.
    async fn run(&self, input: &[u8]) -> Result<RawRun, AttemptError> {
        // Inside the process boundary (no capabilities, no new privileges, killed with us; see
        // `crate::boundary`); the program is found in the child's own PATH.
        let path = self.child_env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.expose_secret());
        let mut command = crate::boundary::command(
            &self.settings.program,
            &self.settings.args,
            path,
            crate::boundary::Network::Inherit,
        )
        .map_err(|e| AttemptError::spawn(&self.settings.program, &e))?;
        command
            .env_clear()
            .envs(self.child_env.iter().map(|(k, v)| (k.as_str(), v.expose_secret())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A dropped call (total deadline, Ctrl-C) must not leave the agent running.
            .kill_on_drop(true);
        // Its own process group, so that a kill reaches the agent's tools too (see
        // `process_group`); the group is killed when `group` drops, however we leave.
        #[cfg(unix)]
        command.process_group(0);
        let started = Instant::now();
        let mut child = command.spawn().map_err(|e| AttemptError::spawn(&self.settings.program, &e))?;
        let group = ProcessGroup::register(child.id());
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_and_reap(&mut child, group.as_ref()).await;
            return Err(AttemptError::Io { message: "the child's pipes were not set up".to_owned() });
        };
        let cap = self.settings.max_output_bytes;
        let io = async {
            let ((), out, err) = tokio::try_join!(
                write_input(stdin, input),
                read_capped(stdout, cap),
                read_tail(stderr, STDERR_KEEP_BYTES)
            )?;
            let status =
                child.wait().await.map_err(|e| AttemptError::Io { message: format!("waiting for the child: {e}") })?;
            Ok::<_, AttemptError>((status, out, err))
        };
        match tokio::time::timeout(self.settings.timeout, io).await {
            Ok(Ok((status, stdout, stderr))) => Ok(RawRun { status, stdout, stderr, latency: started.elapsed() }),
            Ok(Err(error)) => {
                kill_and_reap(&mut child, group.as_ref()).await;
                Err(error)
            }
            Err(_elapsed) => {
                kill_and_reap(&mut child, group.as_ref()).await;
                Err(AttemptError::Timeout { after: self.settings.timeout })
            }
        }
        // `group` drops here: tools the agent left running after a clean exit are killed too.
    }

    /// Where the CLI's credentials come from, for an auth error: the passed-through variables,
    /// else the CLI's own stored login.
    fn credential_source(&self) -> String {
        if self.settings.env_passthrough.is_empty() {
            "the CLI's own login".to_owned()
        } else {
            self.settings.env_passthrough.join("`, `")
        }
    }

    /// Maps the last failed attempt to the provider error the caller sees.
    fn map_error(&self, exhausted: Exhausted<AttemptError>) -> ProviderError {
        let provider = self.settings.name.clone();
        let program = &self.settings.program;
        let Exhausted { error, attempts, .. } = exhausted;
        match error {
            AttemptError::NotFound { message } => ProviderError::Config { provider, message },
            AttemptError::Spawn { message } => ProviderError::Unavailable {
                provider,
                status: 0,
                attempts,
                message: format!("cannot start `{program}`: {message}"),
            },
            AttemptError::Timeout { after } => ProviderError::Network {
                provider,
                attempts,
                message: format!("`{program}` timed out after {:.1} s and was killed", after.as_secs_f64()),
            },
            AttemptError::Exit { status, stderr_tail } => {
                let stderr = if stderr_tail.is_empty() {
                    " (stderr was empty)".to_owned()
                } else {
                    format!("; last lines of stderr:\n{stderr_tail}")
                };
                // status 0: there is no HTTP status; the exit code is in the message.
                ProviderError::Unavailable {
                    provider,
                    status: 0,
                    attempts,
                    message: format!("`{program}` {status}{stderr}"),
                }
            }
            AttemptError::Io { message } => {
                ProviderError::Unavailable { provider, status: 0, attempts, message: format!("`{program}`: {message}") }
            }
            AttemptError::Overflow { cap } => ProviderError::BadAnswer {
                provider,
                message: format!("`{program}` wrote more than {cap} bytes to stdout and was killed"),
            },
            AttemptError::Malformed { message } => {
                ProviderError::BadAnswer { provider, message: format!("`{program}`: {message}") }
            }
            AttemptError::AgentFailed { message, kind } => match kind {
                FailureKind::Auth => {
                    ProviderError::Auth { provider, status: 0, env: self.credential_source(), message }
                }
                FailureKind::Quota => ProviderError::Quota { provider, message },
                FailureKind::Fatal => ProviderError::BadAnswer { provider, message },
                FailureKind::Transient => ProviderError::Unavailable { provider, status: 0, attempts, message },
            },
        }
    }
}

impl Provider for CommandProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn model(&self) -> &str {
        &self.settings.model
    }
    fn complete<'a>(&'a self, req: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(self.complete_inner(req))
    }
}

/// The text written to the agent's stdin: the system prompt, then the user prompt between
/// two marker lines carrying `nonce`, then (when a schema is asked for) the JSON instruction.
///
/// The nonce makes the end marker unguessable, so untrusted text cannot fake the end of the
/// input and continue with "instructions" of its own (the same idea as Actions'
/// `::stop-commands::<random>`). The JSON instruction comes last, after the untrusted text,
/// because agents follow the most recent instruction best.
pub fn stdin_prompt(req: &CompletionRequest, nonce: &str) -> String {
    let mut text = String::with_capacity(req.system.len() + req.prompt.len() + 256);
    let system = req.system.trim_end();
    if !system.is_empty() {
        text.push_str(system);
        text.push_str("\n\n");
    }
    text.push_str(&format!("===== BEGIN INPUT {nonce} =====\n"));
    text.push_str(&req.prompt);
    if !req.prompt.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("===== END INPUT {nonce} =====\n"));
    if let Some((_, schema)) = &req.json_schema {
        text.push('\n');
        text.push_str(&json_instructions(schema));
        text.push('\n');
    }
    text
}

/// A fresh random marker for [`stdin_prompt`] (16 hex digits).
fn input_nonce() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// The instruction asking for one JSON object valid against `schema` (agent CLIs have no
/// native structured-output mode we can rely on across tools; callers validate anyway).
fn json_instructions(schema: &Value) -> String {
    let schema = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    format!(
        "Answer with one JSON object and nothing else: no Markdown fences, no prose before or after. \
         The JSON must be valid against this JSON Schema:\n{schema}"
    )
}

/// An answer read from an agent's stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAnswer {
    /// The answer's text (for JSON answers, the raw JSON text).
    pub text: String,
    /// Tokens as the CLI reported them; zero for [`OutputFormat::Text`].
    pub usage: Usage,
    /// The model the CLI reports, if any.
    pub model: Option<String>,
    /// Cost in USD as the CLI reported it (`claude`'s `total_cost_usd`).
    pub total_cost_usd: Option<f64>,
}

/// Why an agent's stdout gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentOutputError {
    /// The output is not in the expected format, or holds no answer.
    #[error("{0}")]
    Malformed(String),
    /// The CLI reported a failure in its output (`is_error`, `turn.failed`).
    #[error("{message}")]
    Failed {
        /// What the CLI said, truncated (may quote the agent's own error text).
        message: String,
        /// Whether retrying can help.
        kind: FailureKind,
    },
}

/// How a failure the CLI reported should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Possibly transient (an API error during the run): retried.
    Transient,
    /// A spend limit was hit (`error_max_budget_usd`): never retried.
    Quota,
    /// Retrying will not help (`error_max_turns`, structured-output retries exhausted).
    Fatal,
    /// The CLI's login or API key was refused ([`AUTH_FAILURE_MARKERS`]): never retried,
    /// reported as [`ProviderError::Auth`] (exit 4).
    Auth,
}

/// Lower-case fragments of the messages agent CLIs print when their credentials are refused.
/// Checked only on a failed run (non-zero exit, `is_error`, `turn.failed`), so an answer that
/// merely quotes one of them is not affected.
///
/// Sources: what Claude Code (`claude -p`) prints in `result` / on stdout for a refused login or
/// key: `Invalid API key · Please run /login`, `Invalid API key · Fix external API key`,
/// `Not logged in · Please run /login`, `Login expired · Please run /login`,
/// `OAuth token revoked · Please run /login`, `OAuth token has expired. Please obtain a new
/// token or refresh your existing token.`, and the API's own 401 passed through as
/// `API Error: 401 {"type":"error","error":{"type":"authentication_error",...}}` (Anthropic
/// error types, <https://docs.anthropic.com/en/api/errors>); codex's `unexpected status 401
/// Unauthorized: ...` (openai/codex `codex-rs/core`, `UnexpectedStatus`).
pub const AUTH_FAILURE_MARKERS: [&str; 7] = [
    "please run /login",
    "invalid api key",
    "fix external api key",
    "not logged in",
    "oauth token has expired",
    "authentication_error",
    "401 unauthorized",
];

/// Lower-case fragments of messages that mean the account is out of credit. Source: Claude
/// Code prints `Credit balance is too low` when the API account has no credit left.
pub const QUOTA_FAILURE_MARKERS: [&str; 1] = ["credit balance is too low"];

/// How a failure message the CLI printed should be treated, by [`AUTH_FAILURE_MARKERS`] and
/// [`QUOTA_FAILURE_MARKERS`]; `None` when it names neither.
pub fn classify_failure_text(text: &str) -> Option<FailureKind> {
    let lower = text.to_lowercase();
    if AUTH_FAILURE_MARKERS.iter().any(|m| lower.contains(m)) {
        Some(FailureKind::Auth)
    } else if QUOTA_FAILURE_MARKERS.iter().any(|m| lower.contains(m)) {
        Some(FailureKind::Quota)
    } else {
        None
    }
}

/// Reads `stdout` in `format`.
pub fn parse_output(format: OutputFormat, stdout: &str) -> Result<AgentAnswer, AgentOutputError> {
    match format {
        OutputFormat::Text => {
            let text = stdout.trim();
            if text.is_empty() {
                return Err(AgentOutputError::Malformed("empty answer on stdout".to_owned()));
            }
            Ok(AgentAnswer { text: text.to_owned(), usage: Usage::default(), model: None, total_cost_usd: None })
        }
        OutputFormat::ClaudeJson => parse_claude_json(stdout),
        OutputFormat::CodexJsonl => parse_codex_jsonl(stdout),
    }
}

/// `claude -p --output-format json` result object (fields per the Agent SDK's
/// `SDKResultMessage`; every field optional so that older and newer CLIs parse).
#[derive(Debug, Deserialize)]
struct ClaudeResult {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    structured_output: Option<Value>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
    #[serde(rename = "modelUsage", default)]
    model_usage: Option<BTreeMap<String, ClaudeModelUsage>>,
    /// Error results may list messages here (`errors: string[]`).
    #[serde(default)]
    errors: Option<Value>,
}

/// Anthropic usage classes: `input_tokens` excludes cache reads and writes.
#[derive(Debug, Deserialize)]
struct ClaudeUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// One `modelUsage` entry; only read to name the model that did most of the work.
#[derive(Debug, Deserialize)]
struct ClaudeModelUsage {
    #[serde(rename = "outputTokens", default)]
    output_tokens: Option<u64>,
}

/// Parses `claude`'s result object: the whole of stdout (`--output-format json`), else the
/// last line that is a `type: "result"` object (`--output-format stream-json`).
pub fn parse_claude_json(stdout: &str) -> Result<AgentAnswer, AgentOutputError> {
    let whole =
        serde_json::from_str::<ClaudeResult>(stdout.trim()).ok().filter(|r| r.kind.as_deref() == Some("result"));
    let result = whole
        .or_else(|| {
            stdout.lines().rev().filter(|l| !l.trim().is_empty()).find_map(|line| {
                serde_json::from_str::<ClaudeResult>(line.trim()).ok().filter(|r| r.kind.as_deref() == Some("result"))
            })
        })
        .ok_or_else(|| {
            AgentOutputError::Malformed(
                "no `type: \"result\"` object on stdout\nhelp: run claude with `-p --output-format json`, \
                 or set `output: text`"
                    .to_owned(),
            )
        })?;
    let subtype = result.subtype.as_deref().unwrap_or("");
    if result.is_error == Some(true) || subtype.starts_with("error") {
        let detail = result
            .result
            .as_deref()
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
            .or_else(|| error_strings(result.errors.as_ref()))
            .unwrap_or_default();
        let kind = match subtype {
            "error_max_budget_usd" => FailureKind::Quota,
            "error_max_turns" | "error_max_structured_output_retries" => FailureKind::Fatal,
            _ => classify_failure_text(&detail).unwrap_or(FailureKind::Transient),
        };
        let subtype = if subtype.is_empty() { "error" } else { subtype };
        let message = if detail.is_empty() {
            format!("claude reported {subtype}")
        } else {
            format!("claude reported {subtype}: {}", truncate(&detail))
        };
        return Err(AgentOutputError::Failed { message, kind });
    }
    // With `--json-schema` the validated answer is in `structured_output`; `result` may be prose.
    let text = match result.structured_output.filter(|v| !v.is_null()) {
        Some(value) => value.to_string(),
        None => result.result.unwrap_or_default(),
    };
    if text.trim().is_empty() {
        return Err(AgentOutputError::Malformed(format!("claude returned an empty result (subtype `{subtype}`)")));
    }
    let usage = result
        .usage
        .map(|u| Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            cached_input_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        })
        .unwrap_or_default();
    // Claude Code may call a small model for side tasks; the main model writes the most.
    let model = result
        .model_usage
        .and_then(|models| models.into_iter().max_by_key(|(_, u)| u.output_tokens.unwrap_or(0)).map(|(name, _)| name));
    Ok(AgentAnswer { text: text.trim().to_owned(), usage, model, total_cost_usd: result.total_cost_usd })
}

/// Parses `codex exec --json` events (see the module docs). Lines that are not JSON are
/// skipped; usage is summed over `turn.completed` events.
pub fn parse_codex_jsonl(stdout: &str) -> Result<AgentAnswer, AgentOutputError> {
    let mut text: Option<String> = None;
    let mut usage = Usage::default();
    let mut turn_failed: Option<String> = None;
    let mut last_error: Option<String> = None;
    let mut saw_event = false;
    for line in stdout.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line.trim()) else { continue };
        let Some(kind) = event.get("type").and_then(Value::as_str) else { continue };
        saw_event = true;
        match kind {
            "item.completed" => {
                let item = event.get("item");
                if item.and_then(|i| i.get("type")).and_then(Value::as_str) == Some("agent_message") {
                    if let Some(t) = item.and_then(|i| i.get("text")).and_then(Value::as_str) {
                        text = Some(t.to_owned());
                    }
                }
            }
            "turn.completed" => {
                let u = event.get("usage");
                let count = |name: &str| u.and_then(|u| u.get(name)).and_then(Value::as_u64).unwrap_or(0);
                let (input, cached) = (count("input_tokens"), count("cached_input_tokens"));
                usage += Usage {
                    input_tokens: input.saturating_sub(cached),
                    cached_input_tokens: cached,
                    output_tokens: count("output_tokens"),
                    ..Usage::default()
                };
            }
            "turn.failed" => {
                let message = event.pointer("/error/message").and_then(Value::as_str).unwrap_or("turn failed");
                turn_failed = Some(message.to_owned());
            }
            "error" => {
                last_error = event.get("message").and_then(Value::as_str).map(str::to_owned);
            }
            _ => {}
        }
    }
    if let Some(message) = turn_failed {
        return Err(AgentOutputError::Failed {
            kind: classify_failure_text(&message).unwrap_or(FailureKind::Transient),
            message: format!("codex reported turn.failed: {}", truncate(&message)),
        });
    }
    match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => Ok(AgentAnswer { text: text.trim().to_owned(), usage, model: None, total_cost_usd: None }),
        None => match last_error {
            Some(message) => Err(AgentOutputError::Failed {
                kind: classify_failure_text(&message).unwrap_or(FailureKind::Transient),
                message: format!("codex reported an error: {}", truncate(&message)),
            }),
            None if saw_event => Err(AgentOutputError::Malformed("codex finished without an agent_message".to_owned())),
            None => Err(AgentOutputError::Malformed(
                "no JSONL events on stdout\nhelp: run codex as `codex exec --json`, or set `output: text`".to_owned(),
            )),
        },
    }
}

/// `errors: ["...", ...]` joined, if present.
fn error_strings(errors: Option<&Value>) -> Option<String> {
    let list: Vec<&str> = errors?.as_array()?.iter().filter_map(Value::as_str).collect();
    (!list.is_empty()).then(|| list.join("; "))
}

/// What one run produced.
struct RawRun {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    latency: Duration,
}

/// Why one attempt failed.
#[derive(Debug)]
enum AttemptError {
    /// The program does not exist or may not be executed: a config problem, never retried.
    NotFound { message: String },
    /// Spawning failed for another reason (out of processes, file descriptors): retried.
    Spawn { message: String },
    /// The attempt ran out of time; the child was killed.
    Timeout { after: Duration },
    /// Non-zero exit or death by signal.
    Exit { status: String, stderr_tail: String },
    /// Reading or writing a pipe failed.
    Io { message: String },
    /// stdout exceeded the cap; the child was killed.
    Overflow { cap: usize },
    /// Exit 0 but the output holds no usable answer.
    Malformed { message: String },
    /// The CLI reported a failure in its output.
    AgentFailed { message: String, kind: FailureKind },
}

impl AttemptError {
    fn spawn(program: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => {
                let where_ = if program.contains('/') { "no such file" } else { "not found in the child's PATH" };
                AttemptError::NotFound {
                    message: format!(
                        "cannot run `{program}`: {where_}\nhelp: install the agent CLI on the runner, or set \
                         `program` to its absolute path"
                    ),
                }
            }
            ErrorKind::PermissionDenied => AttemptError::NotFound {
                message: format!(
                    "cannot run `{program}`: permission denied\nhelp: check that `program` names an executable file"
                ),
            },
            _ => AttemptError::Spawn { message: e.to_string() },
        }
    }

    /// Timeouts, crashes and non-zero exits are worth another attempt; a missing program, a
    /// runaway output or an unusable answer are not.
    fn failure(&self) -> Failure<'_> {
        match self {
            AttemptError::Spawn { .. }
            | AttemptError::Timeout { .. }
            | AttemptError::Exit { .. }
            | AttemptError::Io { .. }
            | AttemptError::AgentFailed { kind: FailureKind::Transient, .. } => {
                Failure::Transient { status: None, headers: None }
            }
            AttemptError::NotFound { .. }
            | AttemptError::Overflow { .. }
            | AttemptError::Malformed { .. }
            | AttemptError::AgentFailed { .. } => Failure::Fatal,
        }
    }
}

/// Writes `input` and closes stdin so the child sees EOF. A child that exits without reading
/// all of it (broken pipe) is not an error here: its exit status tells.
async fn write_input(mut stdin: ChildStdin, input: &[u8]) -> Result<(), AttemptError> {
    match stdin.write_all(input).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(AttemptError::Io { message: format!("writing the prompt to stdin: {e}") }),
    }
    match stdin.shutdown().await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(AttemptError::Io { message: format!("closing stdin: {e}") }),
    }
    // `stdin` is dropped here, which closes the pipe.
}

/// Reads all of `reader`, failing with [`AttemptError::Overflow`] beyond `cap` bytes (reading
/// stops there, so memory stays bounded).
async fn read_capped<R: AsyncRead + Unpin>(reader: R, cap: usize) -> Result<Vec<u8>, AttemptError> {
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut buf = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| AttemptError::Io { message: format!("reading stdout: {e}") })?;
    if buf.len() > cap {
        return Err(AttemptError::Overflow { cap });
    }
    Ok(buf)
}

/// Reads all of `reader`, keeping only the last `keep` bytes.
async fn read_tail<R: AsyncRead + Unpin>(mut reader: R, keep: usize) -> Result<Vec<u8>, AttemptError> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n =
            reader.read(&mut chunk).await.map_err(|e| AttemptError::Io { message: format!("reading stderr: {e}") })?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        // Trim in batches rather than per chunk to keep the copying linear.
        if buf.len() > keep.saturating_mul(2) {
            buf.drain(..buf.len() - keep);
        }
    }
    if buf.len() > keep {
        buf.drain(..buf.len() - keep);
    }
    Ok(buf)
}

/// Kills the child's process group and the child (SIGKILL) and waits for the child so no
/// zombie is left. The group goes first, while the unreaped leader still pins its id.
async fn kill_and_reap(child: &mut Child, group: Option<&ProcessGroup>) {
    if let Some(group) = group {
        group.kill();
    }
    // Err means it has exited already; wait() below reaps it either way.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
}

/// "exited with code 3" or "was killed by signal 9".
fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("failed ({status})")
}

/// The last [`STDERR_TAIL_LINES`] non-empty lines of `stderr`, at most
/// [`MAX_ERROR_MESSAGE_CHARS`] characters (the end kept).
fn tail_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    let count = tail.chars().count();
    if count <= MAX_ERROR_MESSAGE_CHARS {
        return tail;
    }
    let skip = count - MAX_ERROR_MESSAGE_CHARS;
    format!("…{}", tail.chars().skip(skip).collect::<String>())
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("`{name}` is not a valid environment variable name"));
    }
    Ok(())
}

/// The file name of `program`, the model name of last resort.
fn program_name(program: &str) -> String {
    std::path::Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or(program).to_owned()
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A fake agent CLI: `body` under `#!/bin/sh`, mode 755.
    ///
    /// The tests run it as `/bin/sh <script>` rather than exec'ing it: a script written and
    /// exec'ed while another test thread forks can fail with ETXTBSY (the write descriptor is
    /// briefly inherited), a classic source of flaky process tests.
    fn fake(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join(format!("agent-{}.sh", rand::rng().random::<u32>()));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn settings(script: &Path) -> CommandSettings {
        let mut s = CommandSettings::new("agent", "/bin/sh");
        s.args = vec![script.display().to_string()];
        s.timeout = Duration::from_secs(20);
        s.retry = RetryPolicy { max_retries: 0, base: Duration::from_millis(1), cap: Duration::from_millis(5) };
        s
    }

    fn parent_env() -> Env {
        Env::from_pairs([
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("HOME", "/tmp/agent-home"),
            ("LANG", "C.UTF-8"),
            ("TMPDIR", "/tmp"),
            ("GITHUB_TOKEN", "ghs_notforthechild0123456789"),
            ("ACTIONS_RUNTIME_TOKEN", "runtime-token-notforthechild"),
            ("OPENAI_API_KEY", "sk-openai-notforthechild"),
            ("ANTHROPIC_API_KEY", "sk-ant-passedthrough"),
        ])
    }

    fn provider(settings: CommandSettings) -> CommandProvider {
        CommandProvider::new(settings, &parent_env()).unwrap()
    }

    fn request(prompt: &str) -> CompletionRequest {
        CompletionRequest {
            system: "You review pull requests.".to_owned(),
            prompt: prompt.to_owned(),
            json_schema: None,
            max_output_tokens: 1000,
            temperature: None,
        }
    }

    fn lines_in(path: &Path) -> usize {
        std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
    }

    #[tokio::test]
    async fn stdin_reaches_the_program_intact_and_nothing_is_interpreted() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let m = marker.display();
        let prompt = format!(
            "diff --git a/x b/x\n+ $(touch {m}) and `touch {m}` ; touch {m} && touch {m} | touch {m}\n\
             + \"double\" 'single' \\backslash $HOME ${{PATH}} * ? [a-z] ~ <in >out 2>&1\n\
             \n+ unicode: café ✓\n+ END INPUT ===== (a fake end marker)"
        );
        // The fake upper-cases stdin: output proves the bytes arrived, untouched by any shell.
        let script = fake(dir.path(), "tr 'a-z' 'A-Z'");
        let mut s = settings(&script);
        // Hostile-looking config args are passed as literal argv entries too.
        s.args.push(format!("$(touch {m})"));
        let out = provider(s).complete(&request(&prompt)).await.unwrap();
        let upper = |t: &str| {
            t.chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c }).collect::<String>()
        };
        assert!(out.text.contains(&upper(&prompt)), "prompt altered:\n{}", out.text);
        assert!(out.text.starts_with("YOU REVIEW PULL REQUESTS."), "{}", out.text);
        assert!(!marker.exists(), "the prompt or args were interpreted by a shell");
        assert_eq!(out.usage, Usage::default(), "text output reports no usage");
        assert_eq!(out.model, "sh", "no model configured or reported: the program name");
        assert_eq!(out.request_id, None);
    }

    #[tokio::test]
    async fn args_are_passed_literally() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let script = fake(dir.path(), "cat >/dev/null; for a in \"$@\"; do printf '[%s]\\n' \"$a\"; done");
        let mut s = settings(&script);
        let hostile = format!("$(touch {}); echo `id`", marker.display());
        s.args.extend(["-p".to_owned(), "two words".to_owned(), hostile.clone()]);
        let out = provider(s).complete(&request("hi")).await.unwrap();
        assert_eq!(out.text, format!("[-p]\n[two words]\n[{hostile}]"));
        assert!(!marker.exists());
    }

    #[test]
    fn prompt_layout_separates_system_input_and_json_instruction() {
        let mut req = request("line 1\nline 2");
        req.json_schema = Some(("review".to_owned(), serde_json::json!({"type": "object", "required": ["findings"]})));
        let text = stdin_prompt(&req, "abc123");
        let begin = text.find("===== BEGIN INPUT abc123 =====\n").unwrap();
        let end = text.find("===== END INPUT abc123 =====\n").unwrap();
        let json = text.find("Answer with one JSON object").unwrap();
        assert!(text.starts_with("You review pull requests.\n\n"));
        assert!(begin < text.find("line 1\nline 2\n").unwrap() && text.find("line 2").unwrap() < end);
        assert!(end < json, "the JSON instruction comes after the untrusted input");
        assert!(text[json..].contains("\"required\""), "the schema is included");
        // Without a schema there is no JSON instruction.
        assert!(!stdin_prompt(&request("x"), "n").contains("JSON"));
        // Nonces differ between calls, so untrusted text cannot guess the end marker.
        assert_ne!(input_nonce(), input_nonce());
    }

    #[tokio::test]
    async fn json_schema_instruction_reaches_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), "cat");
        let mut req = request("review this");
        req.json_schema =
            Some(("review".to_owned(), serde_json::json!({"type": "object", "title": "ReviewSchemaMarker"})));
        let out = provider(settings(&script)).complete(&req).await.unwrap();
        assert!(out.text.contains("Answer with one JSON object"));
        assert!(out.text.contains("ReviewSchemaMarker"));
    }

    #[tokio::test]
    async fn env_is_scrubbed_to_the_allowed_names() {
        let mut s = CommandSettings::new("agent", "/usr/bin/env");
        s.timeout = Duration::from_secs(20);
        s.env_passthrough = vec!["ANTHROPIC_API_KEY".to_owned(), "NOT_SET_ANYWHERE".to_owned()];
        s.env = BTreeMap::from([
            ("AGENT_MODE".to_owned(), "review".to_owned()),
            ("LANG".to_owned(), "en_US.UTF-8".to_owned()),
        ]);
        let p = provider(s);
        let out = p.complete(&request("hi")).await.unwrap();
        let vars: BTreeMap<&str, &str> = out.text.lines().filter_map(|l| l.split_once('=')).collect();
        let names: Vec<&str> = vars.keys().copied().collect();
        assert_eq!(names, ["AGENT_MODE", "ANTHROPIC_API_KEY", "HOME", "LANG", "PATH", "TMPDIR"]);
        assert_eq!(vars["ANTHROPIC_API_KEY"], "sk-ant-passedthrough");
        assert_eq!(vars["LANG"], "en_US.UTF-8", "configured env overrides inherited");
        assert_eq!(vars["HOME"], "/tmp/agent-home");
        assert!(!out.text.contains("notforthechild"), "{}", out.text);
        let secrets: Vec<&str> = p.passthrough_secrets().map(|(k, _)| k).collect();
        assert_eq!(secrets, ["ANTHROPIC_API_KEY"]);
        let debug = format!("{p:?}");
        assert!(!debug.contains("sk-ant"), "Debug leaks a value: {debug}");
    }

    #[test]
    fn invalid_env_names_and_empty_program_are_config_errors() {
        let mut s = CommandSettings::new("agent", "claude");
        s.env.insert("A=B".to_owned(), "x".to_owned());
        assert!(matches!(CommandProvider::new(s, &parent_env()), Err(ProviderError::Config { .. })));
        let s = CommandSettings::new("agent", "  ");
        assert!(matches!(CommandProvider::new(s, &parent_env()), Err(ProviderError::Config { .. })));
    }

    #[tokio::test]
    async fn timeout_kills_and_reaps_the_child_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (count, pid) = (dir.path().join("count"), dir.path().join("pid"));
        // exec: the pid written is the direct child's, which must be gone afterwards.
        let script =
            fake(dir.path(), &format!("echo run >> {}\necho $$ > {}\nexec sleep 30", count.display(), pid.display()));
        let mut s = settings(&script);
        s.timeout = Duration::from_millis(1500);
        s.retry.max_retries = 1;
        let started = Instant::now();
        let err = provider(s).complete(&request("hi")).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3 + 5), "took {elapsed:?}");
        match &err {
            ProviderError::Network { attempts, message, .. } => {
                assert_eq!(*attempts, 2);
                assert!(message.contains("timed out after 1.5 s"), "{message}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(lines_in(&count), 2, "one retry");
        let pid = std::fs::read_to_string(&pid).unwrap().trim().to_owned();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child {pid} still exists (not killed or not reaped)");
    }

    /// Whether `pid` runs (a zombie, re-parented and not yet reaped by init, does not count).
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
            Err(_) => false,
        }
    }

    /// Waits up to 5 s for `pid` to be gone (SIGKILL delivery is asynchronous).
    fn gone_soon(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        !alive(pid)
    }

    /// A fake agent that starts a tool (`sleep 300`) in the background, records the tool's
    /// pid in `pidfile`, then runs `rest`.
    fn agent_with_grandchild(dir: &Path, pidfile: &Path, rest: &str) -> PathBuf {
        fake(dir, &format!("sleep 300 >/dev/null 2>&1 &\necho $! > {}\n{rest}", pidfile.display()))
    }

    fn pid_in(path: &Path) -> u32 {
        std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
    }

    #[tokio::test]
    async fn timeout_left_the_agents_grandchildren_running() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = agent_with_grandchild(dir.path(), &pidfile, "wait");
        let mut s = settings(&script);
        s.timeout = Duration::from_millis(1000);
        let err = provider(s).complete(&request("hi")).await.unwrap_err();
        assert!(matches!(err, ProviderError::Network { .. }), "expected a timeout: {err:?}");
        let grandchild = pid_in(&pidfile);
        assert!(gone_soon(grandchild), "grandchild {grandchild} survived the timeout");
    }

    #[tokio::test]
    async fn dropped_call_left_the_agents_grandchildren_running() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = agent_with_grandchild(dir.path(), &pidfile, "wait");
        let p = provider(settings(&script));
        // A total deadline or a cancelled run drops the call mid-flight.
        let req = request("hi");
        let dropped = tokio::time::timeout(Duration::from_millis(1000), p.complete(&req)).await;
        assert!(dropped.is_err(), "the fake agent should still be running");
        let grandchild = pid_in(&pidfile);
        assert!(gone_soon(grandchild), "grandchild {grandchild} survived the dropped call");
    }

    #[tokio::test]
    async fn tools_left_behind_after_a_clean_exit_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = agent_with_grandchild(dir.path(), &pidfile, "cat >/dev/null\necho answer");
        let out = provider(settings(&script)).complete(&request("hi")).await.unwrap();
        assert_eq!(out.text, "answer");
        let grandchild = pid_in(&pidfile);
        assert!(gone_soon(grandchild), "grandchild {grandchild} outlived the agent");
    }

    #[tokio::test]
    async fn nonzero_exit_is_retried_and_reports_code_and_stderr_tail_without_the_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = fake(
            dir.path(),
            &format!(
                "echo run >> {}\ncat\ni=1\nwhile [ $i -le 50 ]; do echo \"stderr line $i\" >&2; i=$((i+1)); done\nexit 3",
                count.display()
            ),
        );
        let mut s = settings(&script);
        s.retry.max_retries = 2;
        let err = provider(s).complete(&request("SECRET-PROMPT-MARKER")).await.unwrap_err();
        match &err {
            ProviderError::Unavailable { attempts, message, .. } => {
                assert_eq!(*attempts, 3);
                assert!(message.contains("exited with code 3"), "{message}");
                assert!(message.contains("stderr line 31\n") && message.ends_with("stderr line 50"), "{message}");
                assert!(!message.contains("stderr line 30\n"), "more than the tail: {message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(!err.to_string().contains("SECRET-PROMPT-MARKER"), "the prompt leaked into the error");
        assert_eq!(lines_in(&count), 3, "max_retries = 2 → 3 runs");
    }

    #[tokio::test]
    async fn missing_program_is_a_config_error_and_not_retried() {
        for program in ["/nonexistent/agent-cli", "agentctl-no-such-agent-cli"] {
            let mut s = CommandSettings::new("agent", program);
            // A retry would sleep ~seconds; the call must return at once.
            s.retry = RetryPolicy { max_retries: 5, base: Duration::from_secs(2), cap: Duration::from_secs(2) };
            let started = Instant::now();
            let err = provider(s).complete(&request("hi")).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(1), "retried: {:?}", started.elapsed());
            match err {
                ProviderError::Config { message, .. } => {
                    assert!(message.contains(program) && message.contains("help:"), "{message}");
                }
                other => panic!("expected Config, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn runaway_output_is_cut_at_the_cap_and_the_child_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        // Endless output: without the cap this would fill memory until the timeout.
        let script = fake(dir.path(), &format!("echo $$ > {}\nexec yes 0123456789abcdef", pid.display()));
        let mut s = settings(&script);
        s.max_output_bytes = 1024 * 1024;
        s.retry.max_retries = 3;
        let started = Instant::now();
        let err = provider(s).complete(&request("hi")).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "hit the timeout instead: {:?}", started.elapsed());
        match err {
            ProviderError::BadAnswer { message, .. } => {
                assert!(message.contains("more than 1048576 bytes"), "{message}")
            }
            other => panic!("expected BadAnswer, got {other:?}"),
        }
        let pid = std::fs::read_to_string(&pid).unwrap().trim().to_owned();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child {pid} survived");
    }

    #[tokio::test]
    async fn output_at_the_cap_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), "cat >/dev/null; head -c 4096 /dev/zero | tr '\\0' 'a'");
        let mut s = settings(&script);
        s.max_output_bytes = 4096;
        assert_eq!(provider(s).complete(&request("hi")).await.unwrap().text.len(), 4096);
    }

    #[tokio::test]
    async fn big_stderr_and_big_stdin_do_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB to stderr before reading stdin, while we write 1 MiB of prompt: serial I/O
        // on either side would block on a full pipe forever.
        let script = fake(dir.path(), "head -c 1048576 /dev/zero | tr '\\0' 'e' >&2\nwc -c | tr -d ' '");
        let mut s = settings(&script);
        s.timeout = Duration::from_secs(15);
        let prompt = "p".repeat(1024 * 1024);
        let out = provider(s).complete(&request(&prompt)).await.unwrap();
        let expected = stdin_prompt(&request(&prompt), "0123456789abcdef").len();
        assert_eq!(out.text, expected.to_string());
    }

    #[tokio::test]
    async fn empty_stdout_is_a_bad_answer() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), "cat >/dev/null");
        let err = provider(settings(&script)).complete(&request("hi")).await.unwrap_err();
        assert!(matches!(err, ProviderError::BadAnswer { .. }), "{err:?}");
    }

    /// A result object in the shape documented for `claude -p --output-format json` (Agent
    /// SDK `SDKResultMessage`); values are made up.
    const CLAUDE_RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":8123,"duration_api_ms":7950,"num_turns":1,"result":"{\"findings\":[]}","stop_reason":"end_turn","session_id":"0e639165-79b1-4bd4-bb0f-4cb4c15115d4","total_cost_usd":0.0379825,"usage":{"input_tokens":12,"cache_creation_input_tokens":1850,"cache_read_input_tokens":15635,"output_tokens":245,"server_tool_use":{"web_search_requests":0},"service_tier":"standard"},"modelUsage":{"claude-haiku-4-5-20251001":{"inputTokens":310,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0004,"contextWindow":200000},"claude-sonnet-4-5-20250929":{"inputTokens":12,"outputTokens":245,"cacheReadInputTokens":15635,"cacheCreationInputTokens":1850,"webSearchRequests":0,"costUSD":0.0375825,"contextWindow":200000}},"permission_denials":[],"uuid":"5e3b0c52-2c3a-4b8e-9d0e-8c1f0f2f7a11"}"#;

    #[test]
    fn claude_json_gives_text_usage_model_and_cost() {
        let a = parse_claude_json(CLAUDE_RESULT).unwrap();
        assert_eq!(a.text, r#"{"findings":[]}"#);
        assert_eq!(
            a.usage,
            Usage {
                input_tokens: 12,
                cached_input_tokens: 15635,
                cache_write_tokens: 1850,
                output_tokens: 245,
                reasoning_tokens: 0
            }
        );
        assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5-20250929"), "the model that wrote the most");
        assert_eq!(a.total_cost_usd, Some(0.0379825));
    }

    #[test]
    fn claude_stream_json_uses_the_last_result_line() {
        let stream = format!(
            "{}\n{}\n{CLAUDE_RESULT}\n",
            r#"{"type":"system","subtype":"init","session_id":"s","model":"claude-sonnet-4-5-20250929"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"thinking aloud"}]},"session_id":"s"}"#
        );
        assert_eq!(parse_claude_json(&stream).unwrap().text, r#"{"findings":[]}"#);
    }

    #[test]
    fn claude_structured_output_wins_over_result_text() {
        let mut v: Value = serde_json::from_str(CLAUDE_RESULT).unwrap();
        v["result"] = Value::from("Here is the review.");
        v["structured_output"] = serde_json::json!({"findings": [{"line": 3}]});
        let a = parse_claude_json(&v.to_string()).unwrap();
        assert_eq!(a.text, r#"{"findings":[{"line":3}]}"#);
    }

    #[test]
    fn claude_errors_are_classified() {
        let err = |subtype: &str, extra: &str| {
            let text = format!(r#"{{"type":"result","subtype":"{subtype}","is_error":true{extra},"session_id":"s"}}"#);
            match parse_claude_json(&text).unwrap_err() {
                AgentOutputError::Failed { kind, message } => (kind, message),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(err("error_max_budget_usd", "").0, FailureKind::Quota);
        assert_eq!(err("error_max_turns", "").0, FailureKind::Fatal);
        let (kind, message) = err("error_during_execution", r#","errors":["API Error: 529 overloaded"]"#);
        assert_eq!(kind, FailureKind::Transient);
        assert!(message.contains("529 overloaded"), "{message}");
        // `is_error` with subtype success (e.g. an API error turned into the result text).
        let (kind, message) = err("success", r#","result":"API Error: 500""#);
        assert_eq!((kind, message.contains("API Error: 500")), (FailureKind::Transient, true));
        assert!(matches!(parse_claude_json("not json"), Err(AgentOutputError::Malformed(_))));
        assert!(matches!(parse_claude_json(r#"{"type":"assistant"}"#), Err(AgentOutputError::Malformed(_))));
    }

    #[tokio::test]
    async fn claude_json_through_a_fake_cli() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), &format!("cat >/dev/null\ncat <<'EOF'\n{CLAUDE_RESULT}\nEOF"));
        let mut s = settings(&script);
        s.output = OutputFormat::ClaudeJson;
        s.model = "sonnet".to_owned();
        let out = provider(s).complete(&request("hi")).await.unwrap();
        assert_eq!(out.text, r#"{"findings":[]}"#);
        assert_eq!(out.model, "claude-sonnet-4-5-20250929", "the reported model wins over the configured alias");
        assert_eq!(out.usage.total_input(), 12 + 15635 + 1850);
    }

    #[tokio::test]
    async fn claude_budget_error_on_nonzero_exit_is_quota_and_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let body = format!(
            "echo run >> {}\ncat >/dev/null\necho '{}'\nexit 1",
            count.display(),
            r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"total_cost_usd":1.02,"session_id":"s"}"#
        );
        let script = fake(dir.path(), &body);
        let mut s = settings(&script);
        s.output = OutputFormat::ClaudeJson;
        s.retry.max_retries = 3;
        let err = provider(s).complete(&request("hi")).await.unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err:?}");
        assert_eq!(lines_in(&count), 1);
    }

    /// What `claude -p --output-format json` prints for a refused key (exit 1): an error
    /// result whose subtype is still `success`.
    const CLAUDE_INVALID_KEY: &str = r#"{"type":"result","subtype":"success","is_error":true,"duration_ms":312,"duration_api_ms":0,"num_turns":1,"result":"Invalid API key · Please run /login","session_id":"2f0c1d9e-5a3b-4c7e-9f1a-6b8d2e4c0a17","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}"#;

    #[test]
    fn claude_auth_messages_are_auth_failures() {
        for text in [
            "Invalid API key · Please run /login",
            "Invalid API key · Fix external API key",
            "Not logged in · Please run /login",
            "Login expired · Please run /login",
            "OAuth token revoked · Please run /login",
            "OAuth token has expired. Please obtain a new token or refresh your existing token.",
            r#"API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        ] {
            assert_eq!(classify_failure_text(text), Some(FailureKind::Auth), "{text}");
        }
        assert_eq!(classify_failure_text("Credit balance is too low"), Some(FailureKind::Quota));
        for text in ["API Error: 529 overloaded", "API Error: 500", "Prompt is too long", ""] {
            assert_eq!(classify_failure_text(text), None, "{text}");
        }
        match parse_claude_json(CLAUDE_INVALID_KEY).unwrap_err() {
            AgentOutputError::Failed { kind, message } => {
                assert_eq!(kind, FailureKind::Auth);
                assert!(message.contains("Please run /login"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn claude_invalid_api_key_was_retried_instead_of_failing_as_auth() {
        for (output, printed) in [
            (OutputFormat::ClaudeJson, CLAUDE_INVALID_KEY),
            (OutputFormat::Text, "Invalid API key · Please run /login"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let count = dir.path().join("count");
            let body = format!("echo run >> {}\ncat >/dev/null\necho '{printed}'\nexit 1", count.display());
            let mut s = settings(&fake(dir.path(), &body));
            s.output = output;
            s.env_passthrough = vec!["ANTHROPIC_API_KEY".to_owned()];
            s.retry.max_retries = 3;
            let err = provider(s).complete(&request("hi")).await.unwrap_err();
            assert!(err.is_auth(), "{output:?}: expected Auth, got {err:?}");
            let text = err.to_string();
            assert!(text.contains("Please run /login") && text.contains("ANTHROPIC_API_KEY"), "{text}");
            assert_eq!(lines_in(&count), 1, "{output:?}: an auth failure must not be retried");
        }
    }

    #[tokio::test]
    async fn an_answer_quoting_an_auth_message_is_still_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), "cat >/dev/null\necho 'The handler returns \"Invalid API key\" on 401.'");
        let out = provider(settings(&script)).complete(&request("hi")).await.unwrap();
        assert!(out.text.contains("Invalid API key"));
    }

    /// `codex exec --json` events in the shapes of openai/codex `exec_events.rs`.
    const CODEX_EVENTS: &str = r#"{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Scanning the diff**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"src\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"{\"findings\":[]}"}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}
"#;

    #[test]
    fn codex_jsonl_gives_last_agent_message_and_usage() {
        let a = parse_codex_jsonl(CODEX_EVENTS).unwrap();
        assert_eq!(a.text, r#"{"findings":[]}"#);
        assert_eq!(
            a.usage,
            Usage { input_tokens: 315, cached_input_tokens: 24448, output_tokens: 122, ..Usage::default() },
            "cached tokens are a subset of input_tokens"
        );
        assert_eq!(a.model, None);
    }

    #[test]
    fn codex_failures_are_reported() {
        let failed = "{\"type\":\"turn.started\"}\n{\"type\":\"error\",\"message\":\"stream disconnected\"}\n\
                      {\"type\":\"turn.failed\",\"error\":{\"message\":\"stream disconnected before completion\"}}\n";
        match parse_codex_jsonl(failed).unwrap_err() {
            AgentOutputError::Failed { kind, message } => {
                assert_eq!(kind, FailureKind::Transient);
                assert!(message.contains("stream disconnected before completion"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_codex_jsonl("plain text answer"), Err(AgentOutputError::Malformed(_))));
        assert!(matches!(
            parse_codex_jsonl("{\"type\":\"turn.completed\",\"usage\":{}}"),
            Err(AgentOutputError::Malformed(_))
        ));
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines_and_bounds_the_size() {
        let many: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let tail = tail_lines(many.as_bytes());
        assert!(tail.starts_with("line 81\n") && tail.ends_with("line 100"), "{tail}");
        let long = "x".repeat(10_000);
        assert_eq!(tail_lines(long.as_bytes()).chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
    }

    #[tokio::test]
    async fn read_tail_keeps_only_the_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(&data[..], 1000).await.unwrap();
        assert_eq!(tail, &data[data.len() - 1000..]);
    }
}
