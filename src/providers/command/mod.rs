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
//! This file is the adapter: config ([`CommandSettings`]) → the child's environment, one
//! attempt → its answer or error, retries, and the mapping to [`ProviderError`]. The rest, by
//! concern:
//! - `supervise`: spawning through the boundary, the timeout, the stdout cap and stderr tail,
//!   killing and reaping the child's process group.
//! - `format`: the prompt framing written to stdin ([`stdin_prompt`]) and the output formats
//!   ([`OutputFormat`]) each agent CLI prints, with the failure texts they use.
//!
//! Cost: `total_cost_usd` reported by `claude` ([`AgentAnswer::total_cost_usd`]) is passed on
//! as [`Completion::reported_cost_usd`], and the ledger records it as the source of truth
//! (`cost_source: reported`); without it, cost is computed from usage and the model like for
//! the HTTP adapters.

mod format;
mod supervise;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;

use crate::context::Env;
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};
use crate::resilience::{retry_observed, Exhausted, LogRetries, RetryPolicy};

use format::input_nonce;
pub use format::{
    classify_failure_text, parse_claude_json, parse_codex_jsonl, parse_output, stdin_prompt, AgentAnswer,
    AgentOutputError, FailureKind, OutputFormat, AUTH_FAILURE_MARKERS, QUOTA_FAILURE_MARKERS,
};
use supervise::{describe_status, tail_lines, AttemptError};

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

/// Longest stderr or agent message copied into our errors (characters).
const MAX_ERROR_MESSAGE_CHARS: usize = 2_000;

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
        Ok(Completion {
            text: answer.text,
            usage: answer.usage,
            model,
            latency,
            request_id: None,
            finish_reason: None,
            reported_cost_usd,
        })
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
    fn gen_ai_operation(&self) -> &'static str {
        "invoke_agent"
    }

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
    use crate::providers::Usage;
    use rand::Rng;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A fake agent CLI: `body` under `#!/bin/sh`, mode 755.
    ///
    /// The tests run it as `/bin/sh <script>` rather than exec'ing it: a script written and
    /// exec'ed while another test thread forks can fail with ETXTBSY (the write descriptor is
    /// briefly inherited), a classic source of flaky process tests.
    pub(super) fn fake(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join(format!("agent-{}.sh", rand::rng().random::<u32>()));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    pub(super) fn settings(script: &Path) -> CommandSettings {
        let mut s = CommandSettings::new("agent", "/bin/sh");
        s.args = vec![script.display().to_string()];
        s.timeout = Duration::from_secs(20);
        s.retry = RetryPolicy { max_retries: 0, base: Duration::from_millis(1), cap: Duration::from_millis(5) };
        s
    }

    pub(super) fn parent_env() -> Env {
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

    pub(super) fn provider(settings: CommandSettings) -> CommandProvider {
        CommandProvider::new(settings, &parent_env()).unwrap()
    }

    pub(super) fn request(prompt: &str) -> CompletionRequest {
        CompletionRequest {
            system: "You review pull requests.".to_owned(),
            prompt: prompt.to_owned(),
            json_schema: None,
            max_output_tokens: 1000,
            temperature: None,
            prompt_cache: None,
        }
    }

    pub(super) fn lines_in(path: &Path) -> usize {
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
    async fn empty_stdout_is_a_bad_answer() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake(dir.path(), "cat >/dev/null");
        let err = provider(settings(&script)).complete(&request("hi")).await.unwrap_err();
        assert!(matches!(err, ProviderError::BadAnswer { .. }), "{err:?}");
    }

    /// A result object in the shape documented for `claude -p --output-format json` (Agent
    /// SDK `SDKResultMessage`); values are made up.
    pub(super) const CLAUDE_RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":8123,"duration_api_ms":7950,"num_turns":1,"result":"{\"findings\":[]}","stop_reason":"end_turn","session_id":"0e639165-79b1-4bd4-bb0f-4cb4c15115d4","total_cost_usd":0.0379825,"usage":{"input_tokens":12,"cache_creation_input_tokens":1850,"cache_read_input_tokens":15635,"output_tokens":245,"server_tool_use":{"web_search_requests":0},"service_tier":"standard"},"modelUsage":{"claude-haiku-4-5-20251001":{"inputTokens":310,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0004,"contextWindow":200000},"claude-sonnet-4-5-20250929":{"inputTokens":12,"outputTokens":245,"cacheReadInputTokens":15635,"cacheCreationInputTokens":1850,"webSearchRequests":0,"costUSD":0.0375825,"contextWindow":200000}},"permission_denials":[],"uuid":"5e3b0c52-2c3a-4b8e-9d0e-8c1f0f2f7a11"}"#;

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
    pub(super) const CLAUDE_INVALID_KEY: &str = r#"{"type":"result","subtype":"success","is_error":true,"duration_ms":312,"duration_api_ms":0,"num_turns":1,"result":"Invalid API key · Please run /login","session_id":"2f0c1d9e-5a3b-4c7e-9f1a-6b8d2e4c0a17","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}"#;

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
}
