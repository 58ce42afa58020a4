//! The process boundary between agentctl and the code a model wrote or chose (issue #17).
//!
//! `fix` runs the repository's verify command, whose tests the model may have edited, and the
//! `command` provider runs agent CLIs (`claude -p`, `codex exec`, `gemini -p`) that run tools the
//! model picks. That code runs with agentctl's uid, so without a boundary it could read
//! `/proc/<agentctl pid>/environ` (every API key and `GITHUB_TOKEN`), `mem` or `fd/`, or ptrace us.
//!
//! What [`harden_self`] does at start, on Linux (`prctl(2)` through `rustix`, no `unsafe`):
//! - `PR_SET_DUMPABLE 0`: the kernel then lets no process of the same uid without
//!   `CAP_SYS_PTRACE` open our `/proc/<pid>/environ`, `mem`, `maps`, `fd/` or ptrace us
//!   (`ptrace_may_access`, see proc(5) and ptrace(2) "Ptrace access mode checking").
//! - `PR_SET_NO_NEW_PRIVS 1`: inherited by every child and never cleared, so no descendant can
//!   gain privileges through `execve` — `sudo`, `su` and other setuid or file-capability helpers
//!   run without them (and `sudo` refuses to run). Decision: it is set on agentctl itself, not
//!   only on the model-driven children, because setting it between `fork` and `exec` needs
//!   `unsafe` (`pre_exec`); agentctl and the git it runs never need to gain privileges.
//! - `PR_SET_CHILD_SUBREAPER 1`: a descendant that double-forks, calls `setsid` or daemonises is
//!   re-parented to agentctl instead of init. After each model-driven child ends,
//!   [`kill_adopted`] kills every such adopted process; at the end of the run [`kill_children`]
//!   kills whatever child is left. None outlives the run.
//!
//! Every model-driven child is started through [`command`]: agentctl runs itself as
//! `agentctl __confine --parent PID [--network none] -- /abs/program args…` (the *trampoline*,
//! [`confine_main`]), which, single-threaded and before it `exec`s the program:
//! 1. asks for `SIGKILL` when agentctl dies (`PR_SET_PDEATHSIG`; agentctl's runtime is
//!    single-threaded, so the thread that forked lives as long as agentctl);
//! 2. with `--network none`, enters a new network namespace (`unshare(CLONE_NEWNET)`; without
//!    `CAP_SYS_ADMIN` inside a new user namespace that maps only our own uid and gid) and brings
//!    its loopback interface up (one `RTM_NEWLINK` over rtnetlink), so tests may still listen on
//!    `127.0.0.1` but reach nothing else;
//! 3. empties its capability bounding set and its ambient, effective, permitted and inheritable
//!    sets: a child of a **root** agentctl is root without any capability — no
//!    `CAP_SYS_PTRACE` (so the dumpable flag stops it too), no `CAP_DAC_OVERRIDE`, and, with the
//!    bounding set empty, no capability comes back at `execve` of anything, setuid or not;
//! 4. sets no-new-privs again (already inherited) and `exec`s the program, which keeps the
//!    process group, the cleared environment and the stdio its caller set.
//!
//! What a child can still reach, and what other systems get (README, "Security: the process
//! boundary"):
//! - Files: what agentctl's uid may read (as root without `CAP_DAC_OVERRIDE`: files whose mode
//!   lets root's uid read them, which is most). agentctl keeps no secret in a file, and the
//!   child's environment is cleared ([`crate::edit::verify::BASE_ENV`]).
//! - The network, unless `fix.verify_network: none`.
//! - macOS and Windows: none of these kernel flags exist; children get a cleared environment and
//!   (unix) their own process group, killed on timeout and at the end of the run, nothing more.
//!   `fix.verify_network: none` is refused there.

pub mod process_group;

/// Whether [`harden_self`] made this process a child subreaper: only then are children of ours
/// outside our process group adopted orphans (a library caller, such as the unit tests, spawns
/// and groups children of its own that must be left alone).
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The agentctl binary that runs as the trampoline, recorded by [`harden_self`] (only the real
/// binary has the `__confine` entry point; a library caller such as the unit tests spawns its
/// children directly).
static CONFINER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// The first argument that makes agentctl the trampoline ([`confine_main`]). Not a subcommand:
/// `main` checks it before parsing anything, and `--help` does not list it.
pub const CONFINE_ARG: &str = "__confine";

/// Exit code of the trampoline when it could not set the boundary up (the program never ran).
pub const SETUP_FAILED: u8 = 125;

/// How the trampoline's one line on stderr starts when it returns [`SETUP_FAILED`].
pub const SETUP_FAILED_PREFIX: &str = "agentctl: process boundary: ";

pub use crate::config::fix::Network;

/// A command that runs `program` with `args` inside the boundary: through the trampoline when
/// this process is the hardened agentctl binary on Linux, else directly (then `network` must
/// be [`Network::Inherit`]). `program` is resolved here against `path` (the child's `PATH`, as
/// `execvp` would), so a program that does not exist fails now with
/// [`std::io::ErrorKind::NotFound`], as a direct spawn would.
///
/// The caller adds the environment (cleared), stdio, working directory and process group.
///
/// # Errors
/// `NotFound` (no such program in `path`), `Unsupported` (`Network::None` without the
/// trampoline).
pub fn command(
    program: &str,
    args: &[String],
    path: Option<&str>,
    network: Network,
) -> std::io::Result<tokio::process::Command> {
    let resolved = resolve_program(program, path)?;
    #[cfg(target_os = "linux")]
    if let Some(confiner) = CONFINER.get() {
        let mut cmd = tokio::process::Command::new(confiner);
        cmd.arg(CONFINE_ARG).arg(format!("--parent={}", rustix::process::getpid().as_raw_nonzero()));
        if network == Network::None {
            cmd.arg("--network=none");
        }
        cmd.arg("--").arg(resolved).args(args);
        return Ok(cmd);
    }
    if network == Network::None {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a network of its own (`fix.verify_network: none`) needs agentctl on Linux",
        ));
    }
    let mut cmd = tokio::process::Command::new(resolved);
    cmd.args(args);
    Ok(cmd)
}

/// `program` as `execvp(3)` finds it: as is when it holds a `/` (a relative one is then found
/// from the child's working directory), else the first executable file of that name in the
/// `:`-separated `path` (default `/usr/local/bin:/usr/bin:/bin`).
fn resolve_program(program: &str, path: Option<&str>) -> std::io::Result<std::path::PathBuf> {
    let not_found = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        if p.is_absolute() && !is_executable(&p) {
            return Err(match std::fs::metadata(&p) {
                Ok(_) => std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied (os error 13)"),
                Err(e) => e,
            });
        }
        return Ok(p);
    }
    for dir in path.unwrap_or("/usr/local/bin:/usr/bin:/bin").split(':').filter(|d| !d.is_empty()) {
        let candidate = std::path::Path::new(dir).join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

/// Whether `p` is a file someone may execute.
fn is_executable(p: &std::path::Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    meta.is_file()
}

/// The trampoline's entry point: `Some(exit code)` when `args` (the process's arguments,
/// program name first) start with [`CONFINE_ARG`], else `None` (a normal run). On success it
/// never returns: the process becomes the program. When a step fails it prints
/// `agentctl: process boundary: …` on stderr and returns [`SETUP_FAILED`], the program not run.
pub fn confine_main(args: &[std::ffi::OsString]) -> Option<u8> {
    if args.get(1).is_none_or(|a| a != CONFINE_ARG) {
        return None;
    }
    let fail = |what: &str| {
        eprintln!("{SETUP_FAILED_PREFIX}{what}");
        Some(SETUP_FAILED)
    };
    let mut parent = None;
    let mut network = Network::Inherit;
    let mut rest = args[2..].iter();
    for a in rest.by_ref() {
        match a.to_str() {
            Some("--") => break,
            Some("--network=none") => network = Network::None,
            Some(p) if p.starts_with("--parent=") => parent = p["--parent=".len()..].parse::<i32>().ok(),
            _ => return fail(&format!("unknown argument {a:?}")),
        }
    }
    let Some(program) = rest.next() else { return fail("no program to run") };
    #[cfg(target_os = "linux")]
    if let Err(e) = confine_linux(parent, network) {
        return fail(&e);
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = parent;
        if network == Network::None {
            return fail("fix.verify_network: none needs Linux");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(program).args(rest).exec();
        fail(&format!("cannot run {}: {e}", program.to_string_lossy()))
    }
    #[cfg(not(unix))]
    {
        let _ = program;
        fail("the trampoline runs on unix only")
    }
}

/// Steps 1 to 4 of the module doc, in the trampoline. Errors name the step.
#[cfg(target_os = "linux")]
fn confine_linux(parent: Option<i32>, network: Network) -> Result<(), String> {
    use rustix::process as p;
    use rustix::thread as t;
    p::set_parent_process_death_signal(Some(p::Signal::KILL)).map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    // agentctl may have died between our fork and the prctl: then nobody would kill us.
    if parent.is_some_and(|want| p::getppid().map(|p| p.as_raw_nonzero().get()) != Some(want)) {
        return Err("agentctl exited before the program started".into());
    }
    if network == Network::None {
        new_network_namespace()
            .map_err(|e| format!("fix.verify_network: none: cannot give verify a network of its own: {e}"))?;
    }
    let had_caps = t::capabilities(None).is_ok_and(|c| !c.permitted.is_empty());
    if had_caps {
        for cap in t::CapabilitySet::all().iter() {
            match t::remove_capability_from_bounding_set(cap) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {} // a capability this kernel does not know
                Err(e) => return Err(format!("PR_CAPBSET_DROP: {e}")),
            }
        }
        let _ = t::clear_ambient_capability_set();
        let none = t::CapabilitySets {
            effective: t::CapabilitySet::empty(),
            permitted: t::CapabilitySet::empty(),
            inheritable: t::CapabilitySet::empty(),
        };
        t::set_capabilities(None, none).map_err(|e| format!("capset: {e}"))?;
    }
    t::set_no_new_privs(true).map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))
}

/// A new network namespace for this (single-threaded) process, with `lo` up. Without
/// `CAP_SYS_ADMIN` the namespace is owned by a new user namespace that maps our uid and gid to
/// themselves (user_namespaces(7)), so files keep their owners.
#[cfg(target_os = "linux")]
fn new_network_namespace() -> Result<(), String> {
    use rustix::thread::UnshareFlags as F;
    // `unshare` is deprecated in favour of `unshare_unsafe` only because of `CLONE_FILES`
    // (fd tables shared with other threads); we unshare no file table, in a process that runs
    // no other thread yet.
    #[allow(deprecated)]
    let unshare = rustix::thread::unshare;
    match unshare(F::NEWNET) {
        Ok(()) => {}
        Err(rustix::io::Errno::PERM) => {
            let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
            unshare(F::NEWUSER | F::NEWNET).map_err(|e| format!("unshare(CLONE_NEWUSER | CLONE_NEWNET): {e}"))?;
            let write = |file: &str, text: String| {
                std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("/proc/self/{file}: {e}"))
            };
            write("setgroups", "deny".into())?;
            write("uid_map", format!("{uid} {uid} 1"))?;
            write("gid_map", format!("{gid} {gid} 1"))?;
        }
        Err(e) => return Err(format!("unshare(CLONE_NEWNET): {e}")),
    }
    loopback_up().map_err(|e| format!("bringing up lo: {e}"))
}

/// Sets `IFF_UP` on interface 1 (`lo`, always index 1 in a new namespace) with one
/// `RTM_NEWLINK` request over `NETLINK_ROUTE` (rtnetlink(7)), and reads the kernel's ack.
#[cfg(target_os = "linux")]
fn loopback_up() -> std::io::Result<()> {
    use rustix::net::{self, netlink};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const IFF_UP: u32 = 1;
    let fd = net::socket(net::AddressFamily::NETLINK, net::SocketType::RAW, None)?; // protocol 0: NETLINK_ROUTE
                                                                                    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes), native endian.
    let mut msg = Vec::with_capacity(32);
    msg.extend(32u32.to_ne_bytes());
    msg.extend(RTM_NEWLINK.to_ne_bytes());
    msg.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend(1u32.to_ne_bytes()); // sequence number
    msg.extend(0u32.to_ne_bytes()); // port id: the kernel's
    msg.extend([0u8, 0]); // family AF_UNSPEC, padding
    msg.extend(0u16.to_ne_bytes()); // device type
    msg.extend(1i32.to_ne_bytes()); // interface index
    msg.extend(IFF_UP.to_ne_bytes()); // flags
    msg.extend(IFF_UP.to_ne_bytes()); // change mask
    net::sendto(&fd, &msg, net::SendFlags::empty(), &netlink::SocketAddrNetlink::new(0, 0))?;
    let mut ack = [0u8; 256];
    let (n, _) = net::recv(&fd, &mut ack, net::RecvFlags::empty())?;
    // An NLMSG_ERROR (type 2) message: the header, then the error code (0 is the ack).
    if n >= 20 && u16::from_ne_bytes([ack[4], ack[5]]) == 2 {
        let code = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
        if code != 0 {
            return Err(std::io::Error::from_raw_os_error(-code));
        }
    }
    Ok(())
}

/// Makes this process non-dumpable, sets no-new-privs, makes it a child subreaper and records
/// its binary as the trampoline for [`command`] (Linux; elsewhere nothing). Returns the steps that failed, as messages for a warning (an old kernel,
/// a seccomp filter that refuses `prctl`); the run goes on without them.
pub fn harden_self() -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process as p;
        let mut failed = Vec::new();
        if let Err(e) = p::set_dumpable_behavior(p::DumpableBehavior::NotDumpable) {
            failed.push(format!("PR_SET_DUMPABLE: {e}"));
        }
        if let Err(e) = rustix::thread::set_no_new_privs(true) {
            failed.push(format!("PR_SET_NO_NEW_PRIVS: {e}"));
        }
        if let Ok(exe) = std::env::current_exe() {
            let _ = CONFINER.set(exe);
        }
        match p::set_child_subreaper(Some(p::getpid())) {
            Ok(()) => SUBREAPER.store(true, std::sync::atomic::Ordering::SeqCst),
            Err(e) => failed.push(format!("PR_SET_CHILD_SUBREAPER: {e}")),
        }
        failed
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// One process of `/proc`: its pid, parent pid and process-group id.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
}

/// Parses `/proc/<pid>/stat` (proc(5)): `pid (comm) state ppid pgrp ...`; `comm` may hold
/// spaces and parentheses, so the fields are read after the last `)`.
#[cfg(target_os = "linux")]
fn parse_stat(stat: &str) -> Option<Proc> {
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_once(' ')?.0.trim().parse().ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None; // a zombie or a dead process holds nothing but its exit status
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Proc { pid, ppid, pgrp })
}

/// The live children of this process.
#[cfg(target_os = "linux")]
fn children() -> Vec<Proc> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .filter(|p| p.ppid == me)
        .collect()
}

/// Kills (`SIGKILL`) the children that `keep` does not accept, again and again while killing
/// them hands us their own children (a subreaper adopts the orphans of its adopted orphans), at
/// most 50 rounds. Returns how many were killed.
#[cfg(target_os = "linux")]
fn kill_children_where(keep: impl Fn(&Proc) -> bool) -> usize {
    let mut killed = 0;
    for _ in 0..50 {
        let victims: Vec<Proc> = children().into_iter().filter(|p| !keep(p)).collect();
        if victims.is_empty() {
            break;
        }
        for p in &victims {
            if let Some(pid) = rustix::process::Pid::from_raw(p.pid) {
                if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                    killed += 1;
                }
            }
        }
        // Reap nothing here (tokio owns the waits of the children it spawned); give the kernel
        // a moment to re-parent the victims' children.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed
}

/// Kills every process this subreaper adopted: a child of ours that is neither in our own
/// process group (the git processes we run) nor the leader of a registered model-driven
/// process group ([`process_group`]). Called after a model-driven child ended
/// and its group was killed. Returns how many were killed (0 off Linux).
pub fn kill_adopted() -> usize {
    #[cfg(target_os = "linux")]
    {
        if !SUBREAPER.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        let own = rustix::process::getpgrp().as_raw_nonzero().get();
        let leaders = process_group::live_ids();
        kill_children_where(|p| p.pgrp == own || u32::try_from(p.pid).is_ok_and(|pid| leaders.contains(&pid)))
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Kills every child process left at the end of the run, adopted or not. Returns how many.
pub fn kill_children() -> usize {
    #[cfg(target_os = "linux")]
    {
        if !SUBREAPER.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        kill_children_where(|_| false)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_after_the_last_parenthesis() {
        let p = parse_stat("4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 1 2").unwrap();
        assert_eq!(p, Proc { pid: 4242, ppid: 17, pgrp: 4242 });
        assert_eq!(parse_stat("77 (sleep) Z 17 77 77 0"), None, "zombies are not live");
        assert_eq!(parse_stat("garbage"), None);
    }
}
