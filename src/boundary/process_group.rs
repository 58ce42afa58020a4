//! Process groups of agent CLI children, so that killing an agent kills everything it started.
//!
//! An agent CLI (`claude -p`, `codex exec`, ...) runs tools: shells, language servers, test
//! runners. Killing only the direct child on a timeout left those grandchildren running, holding
//! the runner (and our stdout pipe) until the job was torn down (issue #7, item 12). So the
//! `command` adapter spawns each child as the leader of a new process group
//! (`setpgid(0, 0)` through [`tokio::process::Command::process_group`]) and kills the whole
//! group with `SIGKILL` sent to `-pgid` (POSIX `kill(2)` with a negative pid, through `rustix`
//! because `unsafe` is forbidden here).
//!
//! A process of its own group no longer gets the terminal's Ctrl-C, and a runner's job
//! cancellation signals only us, so every live group is also recorded in a process-wide
//! registry: [`exit_signal`] waits for `SIGINT`/`SIGTERM`, and `main` then calls
//! [`kill_all`] before exiting with `128 + signal` (the shell convention: 130, 143).
//!
//! Only unix has process groups; elsewhere the functions are no-ops and the child alone is
//! killed (`kill_on_drop`).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

/// Process-group ids of the agent children alive right now.
static LIVE_GROUPS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The registry, also after a panic elsewhere held the lock (a set of ids cannot be left
/// half-updated).
fn live() -> MutexGuard<'static, BTreeSet<u32>> {
    LIVE_GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child spawned as the leader of its own process group (its pid is the group id).
///
/// Dropping it sends `SIGKILL` to the whole group and removes it from the registry, so every
/// way out of a run (success, error, timeout, a dropped future) leaves no process behind.
///
/// NOTE: create it right after spawning and drop it before the leader could have been reaped
/// long ago: Linux does not reuse a pid while it still names a process group with members, so
/// the only reuse window is after the whole group is gone, where the kill finds nothing (or,
/// with a vanishingly small chance, a new unrelated group leader that got the same pid within
/// the same run).
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: u32,
}

impl ProcessGroup {
    /// Registers the group led by the child with pid `pid` (the child must have been spawned
    /// with `process_group(0)`). `None` when the child has no pid (it was reaped already).
    pub fn register(pid: Option<u32>) -> Option<Self> {
        let pgid = pid.filter(|p| *p > 1)?;
        live().insert(pgid);
        Some(Self { pgid })
    }

    /// The process-group id (the leader's pid).
    pub fn id(&self) -> u32 {
        self.pgid
    }

    /// Sends `SIGKILL` to every process of the group. Errors (the group is gone) are ignored.
    pub fn kill(&self) {
        kill_group(self.pgid);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        kill_group(self.pgid);
        live().remove(&self.pgid);
        // Whatever the group's members daemonised (`setsid`, a double fork) was adopted by us
        // as child subreaper: it dies now too.
        super::kill_adopted();
    }
}

/// Sends `SIGKILL` to every registered group and returns how many there were. Called on
/// `SIGINT`/`SIGTERM` before the process exits.
pub fn kill_all() -> usize {
    let groups = live();
    for pgid in groups.iter() {
        kill_group(*pgid);
    }
    groups.len()
}

/// The ids of the registered groups alive right now (their leaders' pids).
pub fn live_ids() -> BTreeSet<u32> {
    live().clone()
}

/// How many agent process groups are alive (for tests and logs).
pub fn live_count() -> usize {
    live().len()
}

#[cfg(unix)]
fn kill_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(rustix::process::Pid::from_raw) else { return };
    // ESRCH (the group is gone already) is the normal case after a clean exit.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

#[cfg(not(unix))]
fn kill_group(_pgid: u32) {}

/// Waits for `SIGINT` or `SIGTERM` and returns the signal's number (2 or 15).
///
/// Installing the listeners replaces the default action (terminate), so the caller must end
/// the process itself once this returns: `main` kills the registered groups ([`kill_all`]) and
/// exits with `128 + signal`. Errors: the listeners could not be installed (then the default
/// action stays in place).
#[cfg(unix)]
pub async fn exit_signal() -> std::io::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => Ok(2),
        _ = terminate.recv() => Ok(15),
    }
}

/// Waits for Ctrl-C (the only termination signal tokio offers off unix); returns 2.
#[cfg(not(unix))]
pub async fn exit_signal() -> std::io::Result<i32> {
    tokio::signal::ctrl_c().await?;
    Ok(2)
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; its state letter is Z.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
            Err(_) => false,
        }
    }

    #[test]
    fn dropping_the_group_kills_a_grandchild_and_unregisters() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()))
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pidfile).map(|s| s.trim().is_empty()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "the grandchild never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let grandchild: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let group = ProcessGroup::register(Some(child.id())).unwrap();
        assert!(live().contains(&child.id()));
        drop(group);
        assert!(!live().contains(&child.id()));
        child.wait().unwrap();
        // The grandchild is re-parented (to init or a subreaper) and reaped there.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
    }
}
