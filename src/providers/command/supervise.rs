//! Running one attempt of the agent CLI: spawning it through [`crate::boundary`], feeding its
//! stdin, collecting its output and ending it.
//!
//! Resource limits: every attempt has a timeout after which the child's whole process group
//! (the agent and every tool it started) is killed and the child reaped (see
//! [`crate::boundary::process_group`]; `SIGINT`/`SIGTERM` to agentctl kill the groups too);
//! stdout is capped ([`CommandSettings::max_output_bytes`](super::CommandSettings::max_output_bytes))
//! and only the tail of stderr is kept,
//! so a runaway agent can neither hang the job nor eat its memory. stdin, stdout and stderr are
//! serviced concurrently so a child that writes a lot before reading its input cannot deadlock
//! us on a full pipe.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};

use super::{CommandProvider, FailureKind, MAX_ERROR_MESSAGE_CHARS};
use crate::boundary::process_group::ProcessGroup;
use crate::resilience::Failure;

/// How much of stderr we keep while reading (bytes, the most recent ones).
const STDERR_KEEP_BYTES: usize = 64 * 1024;

/// Lines of stderr quoted in an error.
const STDERR_TAIL_LINES: usize = 20;

/// How long we wait for a killed child to be reaped before giving up on it (it is SIGKILLed,
/// so this only matters if the kernel is wedged).
const REAP_GRACE: Duration = Duration::from_secs(5);

impl CommandProvider {
    /// Spawns the program, feeds `input` to stdin, collects stdout (capped) and the stderr
    /// tail, and waits for the exit, all within the timeout. On timeout or an I/O error the
    /// child is killed and reaped before returning.
    pub(super) async fn run(&self, input: &[u8]) -> Result<RawRun, AttemptError> {
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
        // The agent joins the run's trace (W3C Trace Context), when telemetry is on.
        if let Some(traceparent) = crate::telemetry::traceparent() {
            command.env("TRACEPARENT", traceparent);
        }
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
}

/// What one run produced.
pub(super) struct RawRun {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    pub(super) latency: Duration,
}

/// Why one attempt failed.
#[derive(Debug)]
pub(super) enum AttemptError {
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
    pub(super) fn failure(&self) -> Failure<'_> {
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
pub(super) fn describe_status(status: ExitStatus) -> String {
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
pub(super) fn tail_lines(stderr: &[u8]) -> String {
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

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::super::stdin_prompt;
    use super::super::tests::{fake, lines_in, provider, request, settings};
    use super::super::CommandSettings;
    use super::*;
    use crate::providers::{Provider, ProviderError};
    use crate::resilience::RetryPolicy;
    use std::path::{Path, PathBuf};

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
        let p = provider(s);
        let (err, retries) = crate::resilience::recording_retries(p.complete(&request("hi"))).await;
        let err = err.unwrap_err();
        assert_eq!(retries.len(), 1, "the timeout is retried once: {retries:?}");
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
    async fn missing_program_is_a_config_error_and_not_retried() {
        for program in ["/nonexistent/agent-cli", "agentctl-no-such-agent-cli"] {
            let mut s = CommandSettings::new("agent", program);
            // A retry would sleep ~seconds; the call must return at once.
            s.retry = RetryPolicy { max_retries: 5, base: Duration::from_secs(2), cap: Duration::from_secs(2) };
            let p = provider(s);
            let (err, retries) = crate::resilience::recording_retries(p.complete(&request("hi"))).await;
            let err = err.unwrap_err();
            assert!(retries.is_empty(), "retried: {retries:?}");
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
        let p = provider(s);
        let (err, retries) = crate::resilience::recording_retries(p.complete(&request("hi"))).await;
        let err = err.unwrap_err();
        assert!(retries.is_empty(), "a cut answer is not retried: {retries:?}");
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
