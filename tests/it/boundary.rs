//! The process boundary (issue #17): code a model wrote (a verify script the model edited, an
//! agent CLI's tools) runs as if hostile and must not reach agentctl's secrets, gain
//! privileges, outlive the run, or leave the checkout changed.
//!
//! Each test runs the real binary on a real git repository, with a fake model on loopback whose
//! answer rewrites `check.sh` (the verify command) into a probe. The probe tries what an
//! attacker would — agentctl's `/proc/<pid>/environ`, `mem`, `fd/`, `ptrace`, a setuid helper
//! and `sudo` — and daemonises a `sleep`; it writes what it got into a file the test reads.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::fix::{answer, fake_model, git, repo, BUGGY};

const SECRET: &str = "sk-test-boundary-0123456789abcdef";
const OTHER_SECRET: &str = "sk-ant-boundary-secret-value-42";

/// The probe: replaces the test in `check.sh`. `$PROBE_OUT` is passed through `verify_env`.
const PROBE: &str = r#"a=$PPID
{
echo "parent $a $(cat /proc/$a/comm)"
if cat /proc/$a/environ > "$PROBE_OUT.environ" 2>/dev/null; then echo "environ readable"; else echo "environ denied"; fi
if python3 -c "open('/proc/$a/mem','rb').read(1)" 2>/dev/null; then echo "mem readable"; else echo "mem denied"; fi
fds=0; for f in /proc/$a/fd/*; do if readlink "$f" >/dev/null 2>&1; then fds=$((fds+1)); fi; done
if [ $fds -gt 0 ]; then echo "fd readable"; else echo "fd denied"; fi
python3 -c "
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, int(sys.argv[1]), None, None)
print('ptrace attached' if r == 0 else 'ptrace denied')
" $a
if [ -n "$SUID_CAT" ]; then
  if "$SUID_CAT" /proc/$a/environ >> "$PROBE_OUT.environ" 2>/dev/null; then echo "setuid readable"; else echo "setuid denied"; fi
fi
if command -v sudo >/dev/null 2>&1; then
  if sudo -n cat /proc/$a/environ >> "$PROBE_OUT.environ" 2>/dev/null; then echo "sudo readable"; else echo "sudo denied"; fi
fi
grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status
} > "$PROBE_OUT" 2>&1
setsid sh -c 'echo $$ > "$PROBE_OUT.daemon"; exec sleep 300' < /dev/null > /dev/null 2>&1 &
sleep 0.3
echo "made-by-verify" > by-product.txt
exit 0
"#;

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// The model's answer: `check.sh`'s test becomes the probe.
fn probe_answer() -> serde_json::Value {
    serde_json::json!({"explanation": "Check more.", "edits": [
        {"path": "check.sh", "search": "got=$(sh add.sh 2 3)", "replace": PROBE},
        {"path": "add.sh", "search": "echo $(($1 - $2))", "replace": "echo $(($1 + $2))"}
    ]})
}

/// What the probe saw, after a dry run (as root, or as `nobody` through `setpriv` when
/// `unprivileged`).
async fn probe(unprivileged: bool) -> Option<String> {
    if !Path::new("/proc/self/status").exists() || which("python3").is_none() {
        eprintln!("skipped: needs Linux /proc and python3");
        return None;
    }
    if unprivileged && (!is_root() || which("setpriv").is_none()) {
        eprintln!("skipped: running agentctl as another uid needs root and setpriv");
        return None;
    }
    let (model, _) = fake_model(probe_answer(), answer("Add.", "x", "y")).await;
    let dir = repo(&model.uri(), "  verify_env: [PROBE_OUT, SUID_CAT]\n");
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("probe");
    let mut cmd = if unprivileged {
        // nobody must be able to read the repository, write the scratch folder and the probe.
        for p in [dir.path(), scratch.path()] {
            std::process::Command::new("chmod").args(["-R", "a+rwX"]).arg(p).status().unwrap();
        }
        let mut c = assert_cmd::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(assert_cmd::cargo::cargo_bin("agentctl"))
            // git refuses a repository another uid owns unless told it is safe.
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "safe.directory")
            .env("GIT_CONFIG_VALUE_0", "*")
            .env("HOME", scratch.path());
        c
    } else {
        agentctl()
    };
    if is_root() && !unprivileged {
        // A setuid-root helper: no-new-privs and the empty bounding set must make it useless.
        let suid = scratch.path().join("suid-cat");
        std::fs::copy(which("cat").unwrap(), &suid).unwrap();
        std::process::Command::new("chmod").arg("4755").arg(&suid).status().unwrap();
        cmd.env("SUID_CAT", &suid);
    }
    let result = cmd
        .current_dir(dir.path())
        .args(["fix", "--dry-run", "--instructions", "add.sh subtracts; make it add"])
        .env("OPENAI_API_KEY", SECRET)
        .env("ANTHROPIC_API_KEY", OTHER_SECRET)
        .env("RUNNER_TEMP", scratch.path())
        .env("PROBE_OUT", &out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "{stderr}");
    let seen = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("the probe did not run ({e}): {stderr}"));
    let stolen = std::fs::read_to_string(scratch.path().join("probe.environ")).unwrap_or_default();
    for text in [&seen, &stolen, &stdout.to_string(), &stderr.to_string()] {
        assert!(!text.contains(SECRET) && !text.contains(OTHER_SECRET), "a secret leaked: {text}");
    }
    // The daemon the probe left is killed by the time agentctl exits.
    let pid: u32 = std::fs::read_to_string(scratch.path().join("probe.daemon")).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the daemonised sleep {pid} outlived the run");
    // The checkout is as it was: the edits and verify's by-product went to the scratch tree,
    // which is gone.
    assert_eq!(std::fs::read_to_string(dir.path().join("add.sh")).unwrap(), BUGGY);
    assert!(!dir.path().join("by-product.txt").exists());
    assert_eq!(git(dir.path(), &["status", "--porcelain"]), "");
    assert_eq!(git(dir.path(), &["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("agentctl-fix-"))
        .collect();
    assert!(left.is_empty(), "scratch trees left behind: {left:?}");
    Some(seen)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH").ok()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// `bounding_empty`: whether the bounding set must be empty (only a root agentctl may empty it;
/// an unprivileged one has no capability to lose, and no-new-privs keeps it so).
fn assert_confined(seen: &str, bounding_empty: bool) {
    assert!(seen.starts_with("parent ") && seen.contains("agentctl"), "the probe's parent is agentctl: {seen}");
    for denied in ["environ denied", "mem denied", "fd denied", "ptrace denied"] {
        assert!(seen.contains(denied), "expected `{denied}`:\n{seen}");
    }
    for line in ["setuid", "sudo"] {
        assert!(!seen.contains(&format!("{line} readable")), "{line} lifted the probe:\n{seen}");
    }
    assert!(seen.contains("NoNewPrivs:\t1"), "{seen}");
    assert!(seen.contains("CapEff:\t0000000000000000"), "{seen}");
    assert!(seen.contains("CapBnd:\t0000000000000000") || !bounding_empty, "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn model_written_verify_code_cannot_read_agentctls_secrets_or_outlive_the_run() {
    let Some(seen) = probe(false).await else { return };
    assert_confined(&seen, is_root());
    if is_root() {
        assert!(seen.contains("setuid denied"), "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_holds_when_agentctl_runs_as_an_unprivileged_user() {
    let Some(seen) = probe(true).await else { return };
    assert_confined(&seen, false);
}

/// A dry run killed with `signal` while verify runs: the exit code, and the checkout as it was.
/// With `fix.workdir: in-place` when `in_place`.
async fn interrupted(signal: &str, in_place: bool) -> Option<i32> {
    let (model, _) = fake_model(
        serde_json::json!({"explanation": "Hang.", "edits": [
            {"path": "check.sh", "search": "got=$(sh add.sh 2 3)", "replace": "echo $$ > \"$PROBE_OUT.verify\"; sleep 301"},
            {"path": "add.sh", "search": "echo $(($1 - $2))", "replace": "echo $(($1 + $2))"}
        ]}),
        answer("Add.", "x", "y"),
    )
    .await;
    let extra = format!("  verify_env: [PROBE_OUT]\n{}", if in_place { "  workdir: in-place\n" } else { "" });
    let dir = repo(&model.uri(), &extra);
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("probe");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("agentctl"));
    cmd.current_dir(dir.path())
        .args(["fix", "--dry-run", "--instructions", "add.sh subtracts; make it add"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", scratch.path())
        .env("AGENTCTL_STATE", unique_state_path())
        .env("OPENAI_API_KEY", SECRET)
        .env("RUNNER_TEMP", scratch.path())
        .env("PROBE_OUT", &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid_file = scratch.path().join("probe.verify");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pid_file.exists(), "verify never started");
    // Mid-verify, the edits are written (in the scratch tree, or in the checkout in place).
    assert_eq!(std::fs::read_to_string(dir.path().join("add.sh")).unwrap() != BUGGY, in_place);
    std::process::Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    let verify: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(verify) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(verify), "verify {verify} outlived agentctl's {signal}");
    // Nothing in the checkout changed: files, index, HEAD.
    assert_eq!(std::fs::read_to_string(dir.path().join("add.sh")).unwrap(), BUGGY, "after {signal}");
    assert_eq!(git(dir.path(), &["status", "--porcelain"]), "", "after {signal}");
    if signal != "KILL" {
        let left = std::fs::read_dir(scratch.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("agentctl-fix-"))
            .count();
        assert_eq!(left, 0, "the scratch tree is removed on {signal}");
        assert_eq!(git(dir.path(), &["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
    }
    // Whatever verify started (its `sleep`) dies with its process group; after SIGKILL the
    // runner's RUNNER_TRACKING_ID sweep does that on Actions: here the test does it.
    let _ = std::process::Command::new("pkill").args(["-KILL", "-f", "sleep 301"]).status();
    use std::os::unix::process::ExitStatusExt;
    Some(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_sigterm_or_sigkill_mid_verify_leave_the_checkout_as_it_was() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("skipped: needs Linux /proc");
        return;
    }
    assert_eq!(interrupted("INT", false).await, Some(130));
    assert_eq!(interrupted("TERM", false).await, Some(143));
    assert_eq!(interrupted("KILL", false).await, Some(137));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_fixes_restore_the_checkout_on_sigint_and_sigterm() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("skipped: needs Linux /proc");
        return;
    }
    assert_eq!(interrupted("INT", true).await, Some(130));
    assert_eq!(interrupted("TERM", true).await, Some(143));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_network_none_reaches_only_its_own_loopback() {
    if !Path::new("/proc/self/ns/net").exists() || which("python3").is_none() {
        eprintln!("skipped: needs Linux namespaces and python3");
        return;
    }
    let net_probe = r#"python3 -c "
import os, socket
host, port = os.environ['MODEL_ADDR'].rsplit(':', 1)
try:
    socket.create_connection((host, int(port)), timeout=2); print('outside reachable')
except OSError:
    print('outside unreachable')
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
socket.create_connection(s.getsockname(), timeout=2); print('loopback ok')
" > "$PROBE_OUT" 2>&1"#;
    let (model, _) = fake_model(
        serde_json::json!({"explanation": "Net.", "edits": [
            {"path": "check.sh", "search": "got=$(sh add.sh 2 3)", "replace": format!("{net_probe}\nexit 0")},
            {"path": "add.sh", "search": "echo $(($1 - $2))", "replace": "echo $(($1 + $2))"}
        ]}),
        answer("Add.", "x", "y"),
    )
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("probe");
    let addr = model.address().to_string();
    // What the probe saw with `extra` config.
    let probe_with = |extra: &str| {
        let dir = repo(&model.uri(), &format!("  verify_env: [PROBE_OUT, MODEL_ADDR]\n{extra}"));
        let result = agentctl()
            .current_dir(dir.path())
            .args(["fix", "--dry-run", "--instructions", "add.sh subtracts; make it add"])
            .env("OPENAI_API_KEY", SECRET)
            .env("RUNNER_TEMP", scratch.path())
            .env("PROBE_OUT", &out)
            .env("MODEL_ADDR", &addr)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert_eq!(result.status.code(), Some(0), "{stderr}");
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("the probe did not run ({e}): {stderr}"))
    };
    let seen = probe_with("  verify_network: none\n");
    assert!(seen.contains("outside unreachable") && seen.contains("loopback ok"), "{seen}");
    // Inherited (the default): the same probe reaches the host's loopback.
    assert!(probe_with("").contains("outside reachable"));
}
