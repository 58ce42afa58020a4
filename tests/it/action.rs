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
    release_server_for(TAG, asset, archive, sums).await
}

/// [`release_server`] for the release `tag`.
async fn release_server_for(tag: &str, asset: &str, archive: Vec<u8>, sums: String) -> MockServer {
    let server = MockServer::builder().start().await;
    Mock::given(method("GET"))
        .and(path(format!("/{REPO}/releases/download/{tag}/{asset}")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(archive))
        .named("release asset")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{REPO}/releases/download/{tag}/SHA256SUMS")))
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
    // A tag given explicitly is the one downloaded, whatever the action's ref.
    let asset = format!("agentctl-{target}.tar.gz");
    for given in ["v7.7.7", "v7.7.7-rc.1"] {
        let out = runner.script("install.sh").env("AGENTCTL_VERSION", given).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "no such release on the fake");
        assert!(stderr(&out).contains(&format!("/{REPO}/releases/download/{given}/{asset}")), "{}", stderr(&out));
    }
    // A release-tag ref is used as is; a non-tag ref falls back to the checkout's version (the
    // first test downloads that one).
    let out = runner.script("install.sh").env("AGENTCTL_ACTION_REF", "v3.2.1").output().unwrap();
    assert!(stderr(&out).contains("/releases/download/v3.2.1/"), "{}", stderr(&out));
}

/// The real agentctl packed as the release asset of this host, with its `SHA256SUMS`.
fn real_release(work: &Path, asset: &str) -> (Vec<u8>, String) {
    let archive = pack(work, &assert_cmd::cargo::cargo_bin("agentctl"));
    let sums = format!("{}  {asset}\n", sha256_hex(&archive));
    (archive, sums)
}

#[tokio::test]
async fn action_version_dot_dot_is_refused_before_it_removes_a_folder_outside_the_agentctl_cache() {
    let (Some((os, arch, target)), true) = (host_runner(), tools_present()) else { return };
    let work = tempfile::tempdir().unwrap();
    let asset = format!("agentctl-{target}.tar.gz");
    let (archive, sums) = real_release(work.path(), &asset);
    // A "release" at the tag `v..`, so that only the version check stands between the script and
    // `$RUNNER_TOOL_CACHE/agentctl/../<target>`: another tool's folder.
    let server = release_server_for("v..", &asset, archive, sums).await;
    let runner = Runner::new(os, arch, server.uri());
    let victim = runner.tool_cache().join(target).join("other-tool");
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    std::fs::write(&victim, "not agentctl's").unwrap();

    let bad = [
        "v..",
        "v1.2",
        "v1",
        "7.7.7",
        "V1.2.3",
        "v1.2.3+build.5",
        "v1.2.3-",
        "v1.2.3-rc/1",
        "v1.2.3-rc_1",
        "v1.2.3 ",
        " v1.2.3",
        "v1.2.3\n",
        "latest",
    ];
    for bad in bad {
        let out = runner.script("install.sh").env("AGENTCTL_VERSION", bad).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(
            err.contains("::error") && err.contains("invalid version") && err.contains("`version` input"),
            "{bad:?}: the error names the input: {err}"
        );
        assert!(!err.contains("Downloading"), "{bad:?}: {err}");
        assert!(victim.is_file(), "{bad:?}: a folder outside agentctl/ in the tool cache was removed");
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "a bad version reached the network");
    assert!(!runner.tool_cache().join("agentctl").exists(), "a bad version touched the tool cache");
    assert!(!runner.outputs().contains_key("path"));
}

#[tokio::test]
async fn action_server_url_with_userinfo_another_scheme_or_a_non_loopback_http_host_is_refused() {
    let (Some((os, arch, target)), true) = (host_runner(), tools_present()) else { return };
    let work = tempfile::tempdir().unwrap();
    let asset = format!("agentctl-{target}.tar.gz");
    let (archive, sums) = real_release(work.path(), &asset);
    let server = release_server(&asset, archive, sums).await;
    let addr = server.address().to_string();
    let port = server.address().port();

    // Each of these reaches the fake (over http) if the host is read from the wrong place.
    let bad = [
        format!("http://127.0.0.1:1@{addr}"),
        format!("http://localhost:1@{addr}"),
        format!("http://[::1]:1@{addr}"),
        format!("http://user:hunter2@{addr}"),
        format!("https://user:hunter2@{addr}"),
        format!("http://{addr}/path"),
        format!("http://{addr}?q"),
        format!("http://{addr}#@example.com"),
        format!("http://{addr}\\@example.com"),
        format!("http://127.0.0.1.nip.io:{port}"),
        format!("http://localhost.:{port}"),
        format!("http://0x7f000001:{port}"),
        format!("ftp://{addr}"),
        format!("file:///{addr}"),
        "http://127.0.0.1:99999".to_owned(),
        format!(" http://{addr}"),
        "github.com".to_owned(),
        "https://".to_owned(),
    ];
    for url in &bad {
        let runner = Runner::new(os, arch, url.clone());
        let out = runner.script("install.sh").output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(err.contains("::error") && err.contains("GITHUB_SERVER_URL"), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{url}: the userinfo password was printed: {err}");
        assert!(!err.contains("Downloading"), "{url}: {err}");
        assert!(walk(&runner.tool_cache()).is_empty(), "{url}: something was cached");
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "a refused server URL was downloaded from");

    // Scheme and host are case-insensitive and a trailing slash is fine: curl gets the URL
    // rebuilt from the parsed parts.
    let runner = Runner::new(os, arch, format!("HTTP://127.0.0.1:{port}/"));
    let out = runner.script("install.sh").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("Downloading http://127.0.0.1:{port}/{REPO}/releases/download/{TAG}/{asset}")),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn action_rehashes_a_cached_binary_and_replaces_a_planted_one_before_it_runs() {
    let (Some((os, arch, target)), true) = (host_runner(), tools_present()) else { return };
    let asset = format!("agentctl-{target}.tar.gz");
    let real = std::fs::read(assert_cmd::cargo::cargo_bin("agentctl")).unwrap();
    let real_sha = sha256_hex(&real);
    let packed = tempfile::tempdir().unwrap();
    let (archive, sums) = real_release(packed.path(), &asset);
    // The layout before records existed (an empty marker), a record of another binary, a record
    // of another file name, and a marker with no binary.
    for (case, record) in [
        ("empty marker", String::new()),
        ("other sha256", format!("{}  agentctl\n", "0".repeat(64))),
        ("other name", format!("{real_sha}  agentctl.exe\n")),
        ("no binary", format!("{real_sha}  agentctl\n")),
    ] {
        let work = tempfile::tempdir().unwrap();
        let server = release_server(&asset, archive.clone(), sums.clone()).await;
        let runner = Runner::new(os, arch, server.uri());
        let marker = work.path().join("planted-binary-ran");
        let dir = runner.tool_cache().join("agentctl").join(env!("CARGO_PKG_VERSION")).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        if case != "no binary" {
            std::fs::copy(planted_binary(work.path(), &marker), dir.join("agentctl")).unwrap();
        }
        let complete = dir.with_file_name(format!("{target}.complete"));
        std::fs::write(&complete, record).unwrap();

        let out = runner.script("install.sh").output().unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{case}: {err}");
        assert!(
            err.contains("::warning") && err.contains("does not match the sha256 recorded"),
            "{case}: the planted copy is reported: {err}"
        );
        assert!(err.contains("sha256 verified"), "{case}: the release was downloaded again: {err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "{case}");
        let bin = PathBuf::from(&runner.outputs()["path"]);
        assert_eq!(bin, dir.join("agentctl"), "{case}");
        assert_eq!(sha256_hex(&std::fs::read(&bin).unwrap()), real_sha, "{case}: the cache holds the release");
        assert_eq!(std::fs::read_to_string(&complete).unwrap(), format!("{real_sha}  agentctl\n"), "{case}");
        let version = Command::new(&bin).arg("--version").output().unwrap();
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")), "{case}");
        assert!(!marker.exists(), "{case}: the planted binary ran");

        // Now the cache is good: the next install re-hashes it and downloads nothing.
        let out = runner.script("install.sh").output().unwrap();
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        assert!(stderr(&out).contains("sha256 as recorded"), "{case}: {}", stderr(&out));
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "{case}: downloaded again");
    }
}
