//! Running the repository's verify command after a fix round (issue #11, "Verify").
//!
//! The command comes from config `fix.verify` only — never from the model, the issue or a
//! comment. Decisions:
//! - `fix.verify` is a list (`[cargo, test, --all]`, run as is) or a string split on
//!   whitespace, run **without a shell**; quotes are not interpreted (use the list form for an
//!   argument with spaces). Only `fix.verify_shell: true` runs the string with `sh -c`, for
//!   pipes and `&&`.
//! - The environment is cleared; only [`BASE_ENV`] (so the usual toolchains are found) and the
//!   names in `fix.verify_env` are passed from agentctl's environment. Tokens and API keys are
//!   therefore invisible to the repository's code unless the config names them.
//! - stdin is empty; stdout and stderr are read as they come (their relative order is
//!   approximate) into one buffer that keeps the last
//!   `output_cap` bytes (memory stays bounded whatever the command prints).
//! - It runs inside the process boundary ([`crate::boundary`]): through agentctl's trampoline,
//!   with no capabilities and no new privileges, killed when agentctl dies, and with
//!   `fix.verify_network: none` in a network namespace of its own.
//! - The command leads a process group of its own ([`ProcessGroup`]); on the timeout the whole
//!   group is killed (a test runner's children included), and SIGINT/SIGTERM to agentctl kill
//!   it too.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::boundary::process_group::ProcessGroup;
use crate::context::Env;

/// Variables passed to the verify command besides `fix.verify_env`: where programs and the
/// home folder are, the locale and the temp folder, and `RUNNER_TRACKING_ID` (the Actions runner
/// finds the processes a step left behind by it).
pub const BASE_ENV: [&str; 7] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "RUNNER_TRACKING_ID"];

/// A verify command as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySpec {
    /// Program and arguments (`sh -c STRING` when the config asks for a shell).
    pub argv: Vec<String>,
    /// As written in the config, for messages and the PR body.
    pub display: String,
    /// Seconds before the process group is killed.
    pub timeout: Duration,
    /// Bytes of output kept (the tail).
    pub output_cap: usize,
    /// Names of variables passed through besides [`BASE_ENV`].
    pub env_allow: Vec<String>,
    /// `fix.verify_network`: agentctl's network, or a namespace with only loopback.
    pub network: crate::config::fix::Network,
}

impl VerifySpec {
    /// The verify command `fix` runs, or `None` when none is configured: `fix.verify` split
    /// by [`argv`], `fix.verify_timeout` seconds clamped to (0.001, 86 400] (600 s when it
    /// cannot be a duration), `fix.verify_output_bytes` (at least 1), `fix.verify_env` and
    /// `fix.verify_network`.
    pub fn from_config(fix: &crate::config::FixConfig) -> Option<VerifySpec> {
        let (argv, display) = argv(fix.verify.as_ref()?, fix.verify_shell)?;
        Some(VerifySpec {
            argv,
            display,
            timeout: Duration::try_from_secs_f64(fix.verify_timeout.clamp(0.001, 86_400.0))
                .unwrap_or(Duration::from_secs(600)),
            output_cap: fix.verify_output_bytes.max(1),
            env_allow: fix.verify_env.clone(),
            network: fix.verify_network,
        })
    }
}

/// How a verify run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyStatus {
    Passed,
    /// Exit code; `None` when a signal ended it.
    Failed(Option<i32>),
    TimedOut,
    /// The program could not be started (not found, not executable).
    NotStarted(String),
}

/// A finished verify run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyResult {
    pub status: VerifyStatus,
    /// The last `output_cap` bytes of stdout and stderr, as text (invalid UTF-8 replaced).
    pub output_tail: String,
    /// Bytes printed beyond the kept tail.
    pub dropped_bytes: u64,
    pub duration: Duration,
}

impl VerifyResult {
    /// Whether the command exited 0.
    pub fn passed(&self) -> bool {
        self.status == VerifyStatus::Passed
    }

    /// One line for the PR body and the feedback: `passed`, `failed with exit code 1`, ...
    pub fn describe(&self, timeout: Duration) -> String {
        match &self.status {
            VerifyStatus::Passed => format!("passed in {:.1} s", self.duration.as_secs_f64()),
            VerifyStatus::Failed(Some(c)) => format!("failed with exit code {c}"),
            VerifyStatus::Failed(None) => "was ended by a signal".into(),
            VerifyStatus::TimedOut => format!("timed out after {} s (its process group was killed)", timeout.as_secs()),
            VerifyStatus::NotStarted(why) => format!("could not be started: {why}"),
        }
    }
}

/// The argv of `command` (config `fix.verify`): a list as is; a string split into words by
/// POSIX shell quoting rules (`shlex`: quotes and backslashes group and escape, nothing is
/// expanded, no shell runs), or `sh -c STRING` when `shell`. `None` when empty, or when the
/// string's quotes do not close (config validation refuses that first).
pub fn argv(command: &crate::config::VerifyCommand, shell: bool) -> Option<(Vec<String>, String)> {
    use crate::config::VerifyCommand as V;
    let (argv, display) = match command {
        V::Line(s) if shell => (vec!["sh".into(), "-c".into(), s.clone()], s.clone()),
        V::Line(s) => (shlex::split(s).unwrap_or_default(), s.clone()),
        V::Argv(a) => (a.clone(), a.join(" ")),
    };
    (!argv.is_empty() && !argv[0].is_empty()).then_some((argv, display))
}

/// Runs `spec` in `root` with the allowed part of `env` (and `TRACEPARENT` when telemetry is
/// on), and waits for it (at most the timeout); traced as an `execute_tool verify` span.
pub async fn run(spec: &VerifySpec, root: &Path, env: &Env) -> VerifyResult {
    use opentelemetry::KeyValue;
    let mut span = crate::telemetry::child_span(
        "execute_tool verify".into(),
        opentelemetry::trace::SpanKind::Internal,
        vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", "verify"),
            KeyValue::new("gen_ai.tool.type", "extension"),
        ],
    );
    let result = run_unobserved(spec, root, env).await;
    span.set([KeyValue::new("agentctl.verify.duration_s", result.duration.as_secs_f64())]);
    let error = match &result.status {
        VerifyStatus::Passed => None,
        VerifyStatus::Failed(_) => Some("failed"),
        VerifyStatus::TimedOut => Some("timeout"),
        VerifyStatus::NotStarted(_) => Some("not_started"),
    };
    span.end_with(error);
    result
}

async fn run_unobserved(spec: &VerifySpec, root: &Path, env: &Env) -> VerifyResult {
    let started = Instant::now();
    let not_started = |why: String| VerifyResult {
        status: VerifyStatus::NotStarted(why),
        output_tail: String::new(),
        dropped_bytes: 0,
        duration: started.elapsed(),
    };
    // Inside the process boundary (no capabilities, no new privileges, killed with us; see
    // `boundary`), with the child's own PATH to find the program.
    let mut cmd = match crate::boundary::command(&spec.argv[0], &spec.argv[1..], env.get("PATH"), spec.network) {
        Ok(c) => c,
        Err(e) => return not_started(format!("{}: {e}", spec.argv[0])),
    };
    cmd.current_dir(root)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for name in BASE_ENV.iter().copied().chain(spec.env_allow.iter().map(String::as_str)) {
        if let Some(v) = env.get(name) {
            cmd.env(name, v);
        }
    }
    if let Some(traceparent) = crate::telemetry::traceparent() {
        cmd.env("TRACEPARENT", traceparent);
    }
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(format!("{}: {e}", spec.argv[0])),
    };
    let group = ProcessGroup::register(child.id());
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Tail::new(spec.output_cap)));
    let mut readers = vec![];
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(drain(out, std::sync::Arc::clone(&tail))));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(drain(err, std::sync::Arc::clone(&tail))));
    }
    let status = match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(Ok(s)) if s.success() => VerifyStatus::Passed,
        Ok(Ok(s)) => VerifyStatus::Failed(s.code()),
        Ok(Err(e)) => VerifyStatus::NotStarted(e.to_string()),
        Err(_) => VerifyStatus::TimedOut,
    };
    // Kill the whole group now: children left behind would hold the pipes open.
    drop(group);
    let _ = child.kill().await;
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    let (output_tail, dropped_bytes) = match tail.lock() {
        Ok(t) => (String::from_utf8_lossy(&t.bytes.iter().copied().collect::<Vec<u8>>()).into_owned(), t.dropped),
        Err(_) => (String::new(), 0),
    };
    // The trampoline could not set the boundary up: the command never ran, and its one line says
    // why (`fix.verify_network: none` where the kernel refuses namespaces, say).
    let status = match (status, output_tail.strip_prefix(crate::boundary::SETUP_FAILED_PREFIX)) {
        (VerifyStatus::Failed(Some(c)), Some(why)) if c == i32::from(crate::boundary::SETUP_FAILED) => {
            VerifyStatus::NotStarted(why.trim().to_string())
        }
        (status, _) => status,
    };
    VerifyResult { status, output_tail, dropped_bytes, duration: started.elapsed() }
}

/// The last `cap` bytes written, and how many were dropped before them.
struct Tail {
    cap: usize,
    bytes: VecDeque<u8>,
    dropped: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self { cap, bytes: VecDeque::with_capacity(cap.min(1 << 20)), dropped: 0 }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let over = self.bytes.len().saturating_sub(self.cap);
        self.bytes.drain(..over);
        self.dropped += over as u64;
    }
}

async fn drain<R: tokio::io::AsyncRead + Unpin>(mut r: R, tail: std::sync::Arc<std::sync::Mutex<Tail>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut t) = tail.lock() {
            t.push(&buf[..n]);
        }
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    #[test]
    fn the_spec_and_limits_follow_the_fix_config() {
        use crate::config::Config;
        let c = Config::from_text("fix:\n  verify: cargo test\n  verify_env: [DATABASE_URL]\n", "t").unwrap();
        let spec = VerifySpec::from_config(&c.fix).unwrap();
        assert_eq!(spec.argv, ["cargo", "test"]);
        assert_eq!(spec.env_allow, ["DATABASE_URL"]);
        assert_eq!(spec.timeout.as_secs(), 600);
        let c = Config::from_text("fix:\n  verify: [npm, test]\n  edit_format: whole\n", "t").unwrap();
        assert_eq!(VerifySpec::from_config(&c.fix).unwrap().argv, ["npm", "test"]);
        assert!(VerifySpec::from_config(&Config::default().fix).is_none());
        let limits = |c: &Config| crate::edit::Limits::from_config(&c.fix).whole_file_max_bytes;
        assert_eq!(limits(&Config::default()), Some(8192));
        assert_eq!(limits(&c), None, "edit_format: whole lifts the limit");
        let c = Config::from_text("fix:\n  whole_file_max_bytes: 100\n", "t").unwrap();
        assert_eq!(limits(&c), Some(100));
    }

    #[test]
    fn a_verify_string_is_split_by_posix_quoting_and_never_expanded() {
        use crate::config::{Config, ConfigError, VerifyCommand};
        let words = |line: &str| argv(&VerifyCommand::Line(line.into()), false).map(|(a, _)| a);
        assert_eq!(
            words(r#"cargo test -- --exact 'a b' "c d" e\ f $HOME"#).unwrap(),
            ["cargo", "test", "--", "--exact", "a b", "c d", "e f", "$HOME"]
        );
        assert_eq!(words("   "), None);
        assert_eq!(words("'unclosed"), None);
        let shell = argv(&VerifyCommand::Line("make 'x".into()), true).unwrap().0;
        assert_eq!(shell, ["sh", "-c", "make 'x"], "with a shell the string goes to sh as is");
        let err = Config::from_text("fix:\n  verify: \"npm test -- 'x\"\n", "t").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        assert_eq!(violations[0].pointer, "/fix/verify");
        assert!(!err.to_string().contains("npm"), "the value is not quoted back: {err}");
        Config::from_text("fix:\n  verify: \"npm test -- 'x\"\n  verify_shell: true\n", "t").unwrap();
    }

    fn spec(shell_line: &str, timeout: Duration, cap: usize, allow: &[&str]) -> VerifySpec {
        VerifySpec {
            argv: vec!["sh".into(), "-c".into(), shell_line.into()],
            display: shell_line.into(),
            timeout,
            output_cap: cap,
            env_allow: allow.iter().map(|s| s.to_string()).collect(),
            network: crate::config::fix::Network::Inherit,
        }
    }

    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_pairs([("PATH", "/usr/bin:/bin")]);
        let s = spec("sleep 300 & echo $! > grandchild; wait", Duration::from_millis(700), 1000, &[]);
        let result = run(&s, dir.path(), &env).await;
        assert_eq!(result.status, VerifyStatus::TimedOut);
        assert!(result.duration < Duration::from_secs(60));
        let pid: u32 = std::fs::read_to_string(dir.path().join("grandchild")).unwrap().trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "grandchild sleep {pid} survived the timeout");
    }

    #[tokio::test]
    async fn secrets_in_the_environment_are_not_visible_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_pairs([
            ("PATH", "/usr/bin:/bin"),
            ("GITHUB_TOKEN", "ghs_secretvalue"),
            ("OPENAI_API_KEY", "sk-secret"),
            ("DATABASE_URL", "postgres://allowed"),
        ]);
        let line = "echo token=$GITHUB_TOKEN key=$OPENAI_API_KEY db=$DATABASE_URL";
        let result = run(&spec(line, Duration::from_secs(30), 1000, &["DATABASE_URL"]), dir.path(), &env).await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.output_tail.trim(), "token= key= db=postgres://allowed");
    }

    #[tokio::test]
    async fn output_is_capped_to_its_tail_and_failures_report_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::from_pairs([("PATH", "/usr/bin:/bin")]);
        let line = "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done; echo the-end; exit 3";
        let result = run(&spec(line, Duration::from_secs(30), 100, &[]), dir.path(), &env).await;
        assert_eq!(result.status, VerifyStatus::Failed(Some(3)));
        assert_eq!(result.output_tail.len(), 100);
        assert!(result.output_tail.ends_with("the-end\n"), "{}", result.output_tail);
        assert!(result.dropped_bytes > 10_000);
        let missing =
            VerifySpec { argv: vec!["/nonexistent/verify".into()], ..spec("", Duration::from_secs(1), 10, &[]) };
        assert!(matches!(run(&missing, dir.path(), &env).await.status, VerifyStatus::NotStarted(_)));
    }

    #[test]
    fn argv_runs_without_a_shell_unless_asked() {
        use crate::config::VerifyCommand as V;
        assert_eq!(argv(&V::Line("cargo test  --all".into()), false).unwrap().0, ["cargo", "test", "--all"]);
        assert_eq!(argv(&V::Line("a && b".into()), true).unwrap().0, ["sh", "-c", "a && b"]);
        assert_eq!(
            argv(&V::Argv(vec!["npm".into(), "run".into(), "test it".into()]), false).unwrap().0,
            ["npm", "run", "test it"]
        );
        assert_eq!(argv(&V::Line("  ".into()), false), None);
    }
}
