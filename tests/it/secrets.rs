//! `agentctl secrets` against the real OS keyring (Linux: the kernel's keyutils), and the refusal
//! on a machine where the keyring cannot be reached, made real with a seccomp filter that fails
//! the key syscalls the way Docker's default profile does.
//!
//! Every test uses a service of its own (`agentctl-test-PID-N`): the kernel keyring is shared by
//! every process of the user, parallel tests and other checkouts included.

use crate::common::{agentctl, in_terminal, unique_name};

/// A keyring service no other test uses.
fn service() -> String {
    format!("agentctl-test-{}", unique_name())
}

/// Whether the keyring works here. Under `CI=true` it must (the CI image has keyutils in the
/// kernel); elsewhere a test that needs it says so and skips.
fn keyring_usable() -> bool {
    let out = agentctl().args(["secrets", "list", &service()]).output().unwrap();
    if out.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and the keyring is not usable: {stderr}");
    eprintln!("skipping: no usable keyring here: {stderr}");
    false
}

#[test]
fn set_get_list_delete_round_trip_through_the_kernel_keyring() {
    if !keyring_usable() {
        return;
    }
    let svc = service();
    let name = format!("{svc}/deploy-token");
    let value = format!("ghs_{}", "k".repeat(36));
    // Piped in with a trailing newline, as `echo` gives it: the newline is not part of the value.
    let out = agentctl().args(["secrets", "set", &name]).write_stdin(format!("{value}\n")).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(!stderr.contains(&value), "{stderr}");

    // A second name, so `list` has to list, not echo the one set.
    agentctl().args(["secrets", "set", &format!("{svc}/other")]).write_stdin("x").assert().success();

    // Without --print: where it is, never the value.
    let out = agentctl().args(["secrets", "get", &name]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in the keyring") && !stderr.contains(&value), "{stderr}");

    // With --print (stdout is a pipe here): exactly the value.
    let out = agentctl().args(["secrets", "get", &name, "--print"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{value}\n"));

    // In Actions the value is masked before it is printed.
    let out = agentctl().env("GITHUB_ACTIONS", "true").args(["secrets", "get", &name, "--print"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains(&format!("::add-mask::{value}")), "{stderr}");
    assert_eq!(stdout, format!("{value}\n"));

    // `list`: names, sorted, no values.
    let out = agentctl().args(["secrets", "list", &svc]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deploy-token\nother\n");

    agentctl().args(["secrets", "delete", &name]).assert().success();
    let out = agentctl().args(["secrets", "get", &name, "--print"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret named"));
    let out = agentctl().args(["secrets", "list", &svc]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "other\n");
    // Deleting what is not there is an error (exit 1), not a silent success.
    agentctl().args(["secrets", "delete", &name]).assert().code(1);
    agentctl().args(["secrets", "delete", &format!("{svc}/other")]).assert().success();
    let out = agentctl().args(["secrets", "list", &svc]).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty());
}

#[test]
fn values_never_come_from_arguments_and_bad_input_exits_2() {
    let svc = service();
    // A value as a second argument is not accepted at all.
    agentctl().args(["secrets", "set", &format!("{svc}/a"), "hunter2"]).write_stdin("x").assert().code(2);
    // A bad name: exit 2 before the keyring is touched.
    let out = agentctl().args(["secrets", "set", "bad name"]).write_stdin("x").assert().code(2).get_output().clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected NAME or SERVICE/NAME"));
    agentctl().args(["secrets", "get", ".names"]).assert().code(2);
    // An empty value.
    let out = agentctl()
        .args(["secrets", "set", &format!("{svc}/a")])
        .write_stdin("\n")
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

/// Runs `agentctl ARGS` with `stdin` from a thread whose seccomp filter fails `keyctl`,
/// `add_key` and `request_key` with EPERM; the child inherits the filter (seccomp(2)), the test
/// process's other threads do not.
#[cfg(target_os = "linux")]
fn without_keyring(args: &[&str], stdin: &str) -> std::process::Output {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.to_string();
    std::thread::spawn(move || {
        let rules =
            [libc::SYS_keyctl, libc::SYS_add_key, libc::SYS_request_key].into_iter().map(|n| (n, vec![])).collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            std::env::consts::ARCH.try_into().unwrap(),
        )
        .unwrap();
        let program: BpfProgram = filter.try_into().unwrap();
        seccompiler::apply_filter(&program).unwrap();
        let mut cmd = agentctl();
        cmd.args(&args).write_stdin(stdin);
        cmd.output().unwrap()
    })
    .join()
    .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn without_a_usable_keyring_it_says_so_and_exits_1_with_no_stand_in_store() {
    let svc = service();
    let name = format!("{svc}/t");
    for (args, stdin) in [
        (vec!["secrets", "set", name.as_str()], "value-that-must-go-nowhere"),
        (vec!["secrets", "get", name.as_str(), "--print"], ""),
        (vec!["secrets", "list", svc.as_str()], ""),
        (vec!["secrets", "delete", name.as_str()], ""),
    ] {
        let out = without_keyring(&args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("no usable keyring backend"), "{args:?}: {stderr}");
        assert!(stderr.contains("keyctl"), "the help names the syscalls to allow: {stderr}");
        assert!(out.stdout.is_empty());
    }
    // And the value went nowhere: with the keyring reachable again, nothing is stored.
    if keyring_usable() {
        let out = agentctl().args(["secrets", "list", &svc]).output().unwrap();
        assert!(out.status.success() && out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_terminal_is_refused_for_the_value_in_and_out() {
    let svc = service();
    let name = format!("{svc}/t");
    // `set` with a terminal on stdin would echo the value as it is typed.
    let out = in_terminal(&["secrets", "set", &name], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("stdin is a terminal"), "{text}");
    // `get --print` to a terminal would leave it in the scrollback.
    let out = in_terminal(&["secrets", "get", &name, "--print"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("stdout is a terminal"), "{text}");
}
