//! Progress bars reach only an attended terminal's stderr: never stdout, never a piped stderr,
//! never under `GITHUB_ACTIONS=true`, `-q` or `TERM=dumb`. The terminal is a real pty made by
//! util-linux `script`, so the positive case proves the bar exists where it should.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{agentctl, config_for, fake_openai, unique_state_path, write};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A dry-run review of a bundled diff in several chunks against a fake OpenAI.
fn review_args(config: &Path) -> Vec<String> {
    let diff = root().join("examples/diffs/agentctl-medium.diff");
    let event = root().join("examples/events/pull_request.opened.json");
    [
        "review",
        "--dry-run",
        "--event",
        event.to_str().unwrap(),
        "--diff",
        diff.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Bytes only a drawn bar leaves: its text, a carriage return or an escape sequence.
fn has_progress_bytes(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.contains("reviewing [") || text.contains(" chunks · ") || bytes.contains(&b'\r') || bytes.contains(&0x1b)
}

/// Whether util-linux `script` can give us a pty here.
fn script_available() -> bool {
    cfg!(target_os = "linux") && Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs agentctl with stderr on a pty (`script`) and stdout redirected to `stdout_file`;
/// returns what the terminal showed.
fn on_a_terminal(args: &[String], extra_env: &[(&str, &str)], stdout_file: &Path) -> Vec<u8> {
    let mut cmd = Command::new("script");
    // `"$@"` keeps every argument one word; the shell only redirects stdout to the file.
    cmd.args(["-q", "-e", "-c", r#""$AGENTCTL_BIN" $AGENTCTL_ARGS > "$STDOUT_FILE""#, "/dev/null"]);
    cmd.env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd.env("HOME", std::env::temp_dir());
    cmd.env("TERM", "xterm-256color");
    cmd.env("AGENTCTL_BIN", assert_cmd::cargo::cargo_bin("agentctl"));
    // Paths from the temp dir hold no spaces; word splitting of AGENTCTL_ARGS is what we want.
    assert!(args.iter().all(|a| !a.contains(char::is_whitespace)));
    cmd.env("AGENTCTL_ARGS", args.join(" "));
    cmd.env("STDOUT_FILE", stdout_file);
    cmd.env("AGENTCTL_STATE", unique_state_path());
    cmd.env("AGENTCTL_WRITE_DELAY", "0");
    cmd.env("OPENAI_API_KEY", "sk-test-progress");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "script/agentctl failed: {}", String::from_utf8_lossy(&out.stdout));
    out.stdout
}

#[tokio::test]
async fn progress_reaches_only_an_attended_terminal_never_stdout() {
    let openai = fake_openai(json!({"summary": "Looks fine.", "findings": []}), Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "agentctl.yml", config_for(&openai.uri(), "  max_chunk_tokens: 500\n"));
    let args = review_args(&config);

    // Piped stderr and stdout (as in CI, or `agentctl review | jq`): no progress bytes at all.
    let out = agentctl().args(&args).env("OPENAI_API_KEY", "sk-test-progress").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chunk(s)"), "the review used the model");
    assert!(!has_progress_bytes(&out.stdout), "progress on stdout");
    assert!(!has_progress_bytes(&out.stderr), "progress on a piped stderr: {:?}", String::from_utf8_lossy(&out.stderr));
    let piped_stdout = out.stdout;

    if !script_available() {
        if std::env::var("CI").as_deref() == Ok("true") && cfg!(target_os = "linux") {
            panic!("util-linux `script` is required for the terminal half of this test under CI=true");
        }
        eprintln!("skipping the terminal half: no util-linux `script`");
        return;
    }
    // stderr on a terminal: the bar is drawn there, and stdout (a file) is byte-for-byte what
    // it is without a terminal.
    let stdout_file = dir.path().join("stdout.md");
    let shown = on_a_terminal(&args, &[], &stdout_file);
    let shown_text = String::from_utf8_lossy(&shown);
    assert!(
        shown_text.contains("reviewing [") && shown_text.contains(" chunks · "),
        "no bar on the terminal: {shown_text:?}"
    );
    assert!(shown_text.contains("tokens"), "the bar counts tokens: {shown_text:?}");
    let stdout = std::fs::read(&stdout_file).unwrap();
    assert!(!has_progress_bytes(&stdout), "progress reached stdout");
    assert_eq!(stdout, piped_stdout, "stdout differs with a terminal on stderr");

    // The same terminal, but in Actions, with -q, or on a dumb terminal: nothing drawn.
    for (label, env, extra_arg) in [
        ("GITHUB_ACTIONS=true", vec![("GITHUB_ACTIONS", "true")], None),
        ("-q", vec![], Some("-q")),
        ("TERM=dumb", vec![("TERM", "dumb")], None),
    ] {
        let mut a = args.clone();
        if let Some(x) = extra_arg {
            a.push(x.to_owned());
        }
        let shown = on_a_terminal(&a, &env, &stdout_file);
        let text = String::from_utf8_lossy(&shown);
        assert!(!text.contains("reviewing [") && !text.contains(" chunks · "), "{label}: a bar was drawn: {text:?}");
    }

    // NO_COLOR: the bar stays, without colour (no SGR colour sequence such as ESC[36m).
    let shown = on_a_terminal(&args, &[("NO_COLOR", "1")], &stdout_file);
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("reviewing ["), "NO_COLOR hid the bar: {text:?}");
    assert!(!text.contains("\u{1b}[36m") && !text.contains("\u{1b}[34m"), "NO_COLOR bar has colour: {text:?}");
}
