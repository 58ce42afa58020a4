//! The composite action's scripts (`action/install.sh`, `action/run.sh`) run as the runner runs
//! them: bash with the runner's variables, against a fake release on loopback (wiremock) whose
//! asset is packed from the agentctl binary this test suite built, with its `SHA256SUMS`.
//! A good checksum installs and runs it and a second install downloads nothing; a tampered one is
//! refused before the binary is unpacked or run; an unknown OS or arch is a clear error; `args`
//! never reaches a shell as code. Skipped with a message when bash, curl or tar are missing
//! (a failure under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{mount_catch_all, parse_github_output};

/// The tag the scripts pick when the action is pinned by sha: `v` + the package version.
const TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));
const REPO: &str = "agentctl/agentctl";

/// Whether bash, curl and tar are there; panics under `CI=true` when one is missing.
fn tools_present() -> bool {
    for tool in ["bash", "curl", "tar"] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{tool} is required for the action script tests under CI=true");
            }
            eprintln!("skipping: {tool} not found");
            return false;
        }
    }
    true
}

/// `RUNNER_OS`, `RUNNER_ARCH` and the release target of this host, if the action supports it.
fn host_runner() -> Option<(&'static str, &'static str, &'static str)> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some(("Linux", "X64", "x86_64-unknown-linux-musl")),
        ("linux", "aarch64") => Some(("Linux", "ARM64", "aarch64-unknown-linux-musl")),
        ("macos", "x86_64") => Some(("macOS", "X64", "x86_64-apple-darwin")),
        ("macos", "aarch64") => Some(("macOS", "ARM64", "aarch64-apple-darwin")),
        _ => {
            eprintln!("skipping: the action script tests run on Linux and macOS hosts");
            None
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A `.tar.gz` holding `exe` at its top level as `agentctl`, as the release workflow packs it.
fn pack(work: &Path, exe: &Path) -> Vec<u8> {
    let stage = work.join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::copy(exe, stage.join("agentctl")).unwrap();
    let archive = work.join("asset.tar.gz");
    let status = Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(&stage).arg("agentctl").status().unwrap();
    assert!(status.success(), "tar failed");
    std::fs::read(archive).unwrap()
}

/// A shell script standing in for agentctl: running it at all creates `marker`.
fn planted_binary(work: &Path, marker: &Path) -> PathBuf {
    let p = work.join("planted");
    std::fs::write(&p, format!("#!/bin/sh\ntouch '{}'\necho planted ran\n", marker.display())).unwrap();
    make_executable(&p);
    p
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A release server for `asset` serving `archive` and `sums`; anything else fails the test.
async fn release_server(asset: &str, archive: Vec<u8>, sums: String) -> MockServer {
    let server = MockServer::builder().start().await;
    Mock::given(method("GET"))
        .and(path(format!("/{REPO}/releases/download/{TAG}/{asset}")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(archive))
        .named("release asset")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{REPO}/releases/download/{TAG}/SHA256SUMS")))
        .respond_with(ResponseTemplate::new(200).set_body_string(sums))
        .named("SHA256SUMS")
        .mount(&server)
        .await;
    mount_catch_all(&server, "release download").await;
    server
}

/// A runner's world for the scripts: tool cache, temp, `GITHUB_OUTPUT`.
struct Runner {
    dir: tempfile::TempDir,
    os: &'static str,
    arch: &'static str,
    server_url: String,
}

impl Runner {
    fn new(os: &'static str, arch: &'static str, server_url: String) -> Runner {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["toolcache", "temp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Runner { dir, os, arch, server_url }
    }

    fn tool_cache(&self) -> PathBuf {
        self.dir.path().join("toolcache")
    }

    fn output_file(&self) -> PathBuf {
        self.dir.path().join("github_output")
    }

    /// `bash action/<script>` with the runner's variables and nothing from the host but PATH.
    fn script(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("action").join(script));
        cmd.env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.env("HOME", self.dir.path());
        cmd.env("RUNNER_OS", self.os);
        cmd.env("RUNNER_ARCH", self.arch);
        cmd.env("RUNNER_TOOL_CACHE", self.tool_cache());
        cmd.env("RUNNER_TEMP", self.dir.path().join("temp"));
        cmd.env("GITHUB_OUTPUT", self.output_file());
        cmd.env("GITHUB_SERVER_URL", &self.server_url);
        cmd.env("GITHUB_ACTIONS", "true");
        // Pinned by commit sha, as the examples pin it: the version comes from the checkout's Cargo.toml.
        cmd.env("AGENTCTL_ACTION_REF", "0123456789abcdef0123456789abcdef01234567");
        cmd.env("AGENTCTL_ACTION_REPO", REPO);
        cmd.env("AGENTCTL_ACTION_PATH", repo_root());
        cmd
    }

    fn outputs(&self) -> std::collections::BTreeMap<String, String> {
        parse_github_output(&std::fs::read_to_string(self.output_file()).unwrap_or_default())
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn action_installs_a_verified_release_runs_it_and_reuses_the_tool_cache() {
    let (Some((os, arch, target)), true) = (host_runner(), tools_present()) else { return };
    let work = tempfile::tempdir().unwrap();
    let asset = format!("agentctl-{target}.tar.gz");
    let archive = pack(work.path(), &assert_cmd::cargo::cargo_bin("agentctl"));
    let sums = format!("{}  agentctl-other-target.tar.gz\n{}  {asset}\n", "0".repeat(64), sha256_hex(&archive));
    let server = release_server(&asset, archive, sums).await;
    let runner = Runner::new(os, arch, server.uri());

    let out = runner.script("install.sh").output().unwrap();
    assert!(out.status.success(), "install failed: {}", stderr(&out));
    assert!(stderr(&out).contains("sha256 verified"), "{}", stderr(&out));
    let outputs = runner.outputs();
    let bin = PathBuf::from(&outputs["path"]);
    assert_eq!(outputs["version"], TAG);
    assert!(bin.starts_with(runner.tool_cache().join("agentctl").join(env!("CARGO_PKG_VERSION")).join(target)));
    assert!(runner
        .tool_cache()
        .join("agentctl")
        .join(env!("CARGO_PKG_VERSION"))
        .join(format!("{target}.complete"))
        .is_file());

    // The installed binary is agentctl and runs.
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));

    // run.sh runs it with the command and args inputs.
    let out = runner
        .script("run.sh")
        .env("AGENTCTL_BIN", &bin)
        .env("AGENTCTL_INPUT_COMMAND", "config")
        .env("AGENTCTL_INPUT_ARGS", "schema")
        .output()
        .unwrap();
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config schema prints JSON");
    assert!(schema["properties"]["providers"].is_object(), "{schema}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "one asset and one SHA256SUMS download");

    // A second job on the same runner: from the tool cache, no download.
    let out = runner.script("install.sh").output().unwrap();
    assert!(out.status.success(), "second install failed: {}", stderr(&out));
    assert!(stderr(&out).contains("from the tool cache"), "{}", stderr(&out));
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "the second install downloaded again");
}

#[tokio::test]
async fn action_refuses_a_tampered_checksum_and_never_runs_the_binary() {
    let (Some((os, arch, target)), true) = (host_runner(), tools_present()) else { return };
    let asset = format!("agentctl-{target}.tar.gz");
    // Two ways the sums can fail the asset: a different hash, and no line for it at all.
    for (case, sums_for) in [
        ("tampered", (|a: &str, h: &str| format!("{}  {a}\n", flip_first_hex(h))) as fn(&str, &str) -> String),
        ("missing line", |_, h| format!("{h}  agentctl-some-other-target.tar.gz\n")),
    ] {
        let work = tempfile::tempdir().unwrap();
        let marker = work.path().join("planted-binary-ran");
        let archive = pack(work.path(), &planted_binary(work.path(), &marker));
        let sums = sums_for(&asset, &sha256_hex(&archive));
        let server = release_server(&asset, archive, sums).await;
        let runner = Runner::new(os, arch, server.uri());
        let install = |runner: &Runner| {
            let mut cmd = runner.script("install.sh");
            cmd.env("MARKER", &marker);
            cmd.output().unwrap()
        };

        let out = install(&runner);
        assert_eq!(out.status.code(), Some(1), "{case}: {}", stderr(&out));
        let err = stderr(&out);
        let expected = if case == "tampered" { "checksum mismatch" } else { "has no line for" };
        assert!(err.contains(expected) && err.contains("::error"), "{case}: {err}");
        assert!(!marker.exists(), "{case}: the unverified binary was executed");
        assert!(!runner.outputs().contains_key("path"), "{case}: a path was output for an unverified binary");
        let cached: Vec<_> = walk(&runner.tool_cache());
        assert!(cached.is_empty(), "{case}: something was cached: {cached:?}");
        // A retry refuses again (nothing half-installed is picked up).
        let again = install(&runner);
        assert_eq!(again.status.code(), Some(1), "{case}: {}", stderr(&again));
        assert!(!marker.exists());
    }
}

fn flip_first_hex(h: &str) -> String {
    let first = if h.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &h[1..])
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn action_on_an_unknown_runner_os_or_arch_is_a_clear_error_before_any_download() {
    if !tools_present() {
        return;
    }
    let server = MockServer::builder().start().await;
    mount_catch_all(&server, "release download").await;
    for (os, arch) in [("Plan9", "X64"), ("Linux", "RISCV64"), ("", "")] {
        let runner = Runner::new(os, arch, server.uri());
        let out = runner.script("install.sh").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("unsupported runner") && err.contains(&format!("RUNNER_OS='{os}' RUNNER_ARCH='{arch}'")),
            "{err}"
        );
        assert!(err.contains("version: source"), "the error names the way out: {err}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[test]
fn action_args_are_split_into_words_and_never_reach_a_shell() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // A stand-in binary that prints each argument on its own line.
    let echo = work.path().join("echo-args");
    std::fs::write(&echo, "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n").unwrap();
    make_executable(&echo);
    let marker = work.path().join("injected");
    let m = marker.display();
    let args = format!("--pr 7 $(touch {m}) `touch {m}` ; touch {m} && *\n--format\tjson '\"quoted words\"'");
    let runner = Runner::new("Linux", "X64", "https://github.com".into());
    let out = runner
        .script("run.sh")
        .current_dir(work.path())
        .env("AGENTCTL_BIN", &echo)
        .env("AGENTCTL_INPUT_COMMAND", "review")
        .env("AGENTCTL_INPUT_ARGS", &args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    let want: Vec<String> =
        ["review", "--pr", "7", "$(touch", &format!("{m})"), "`touch", &format!("{m}`"), ";", "touch"]
            .into_iter()
            .map(str::to_owned)
            .chain([
                m.to_string(),
                "&&".into(),
                "*".into(),
                "--format".into(),
                "json".into(),
                "'\"quoted".into(),
                "words\"'".into(),
            ])
            .map(|a| format!("[{a}]"))
            .collect();
    assert_eq!(got, want);
    assert!(!marker.exists(), "args were run as shell code");

    // An unknown command is refused before anything runs.
    let out = runner
        .script("run.sh")
        .env("AGENTCTL_BIN", &echo)
        .env("AGENTCTL_INPUT_COMMAND", "review; touch x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown command"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn action_version_input_is_one_release_tag_and_nothing_else() {
    let (Some((os, arch, target)), true) = (host_runner(), tools_present()) else { return };
    let server = MockServer::builder().start().await;
    mount_catch_all(&server, "release download").await;
    let runner = Runner::new(os, arch, server.uri());
    for bad in ["../../../etc", "v1.0.0/../../x", "v1 --output /tmp/x", "-v1"] {
        let out = runner.script("install.sh").env("AGENTCTL_VERSION", bad).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(stderr(&out).contains("invalid version"), "{bad}: {}", stderr(&out));
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "a bad version reached the network");

    // No release exists on this fake: downloads of one are a 404, like GitHub's.
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(format!("^/{REPO}/releases/download/")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    // A tag given explicitly (with or without `v`) is the one downloaded, whatever the action's ref.
    let asset = format!("agentctl-{target}.tar.gz");
    for given in ["v7.7.7", "7.7.7"] {
        let out = runner.script("install.sh").env("AGENTCTL_VERSION", given).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "no such release on the fake");
        assert!(stderr(&out).contains(&format!("/{REPO}/releases/download/v7.7.7/{asset}")), "{}", stderr(&out));
    }
    // A release-tag ref is used as is; a non-tag ref falls back to the checkout's version (the
    // first test downloads that one).
    let out = runner.script("install.sh").env("AGENTCTL_ACTION_REF", "v3.2.1").output().unwrap();
    assert!(stderr(&out).contains("/releases/download/v3.2.1/"), "{}", stderr(&out));
}
