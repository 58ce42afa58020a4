//! Loading: a config from a path (a regular file inside the repository, read with a cap), and
//! the rule of which file a run reads — on pull-request events the base branch's, never the PR's.

use std::future::Future;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, DEFAULT_PATH, MAX_CONFIG_BYTES};
use crate::exit::Exit;

/// Where a run with a GitHub client reads a commit's files: the repository contents API
/// (`GET /repos/{owner}/{repo}/contents/{path}?ref={sha}`; the adapter for the client is in
/// `crate::github::config_source`). Config loading takes this, so `config` imports nothing
/// above it.
pub(crate) trait CommitFiles {
    /// `path` at commit `sha` (read with the implementation's body cap); `Ok(None)` when the
    /// commit has no such file.
    ///
    /// Errors: [`FetchError`], with the exit code the failure ends the run with.
    fn read_at(&self, path: &str, sha: &str) -> impl Future<Output = Result<Option<Vec<u8>>, FetchError>> + Send;
}

/// A failed read of a commit's file: the transport's error, and the exit code it ends a run
/// with (an auth failure 4, anything else that the transport says).
#[derive(Debug)]
pub(crate) struct FetchError {
    /// The exit code of this failure.
    pub exit: Exit,
    /// The transport's error, printed as the cause.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// The file must be a regular file (a directory, fifo, socket or device is refused before
    /// it is opened, so a fifo cannot block the run), at most [`MAX_CONFIG_BYTES`] long (read
    /// with a cap, never whole first), and a symlink must resolve inside the repository:
    /// the git top-level holding the link (the nearest ancestor with a `.git` entry), else
    /// the current directory when the link is under it, else the link's own directory. This
    /// keeps `config validate` and error excerpts from reading, say, `~/.aws/credentials`
    /// through a link a PR added.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let link = std::fs::symlink_metadata(path).map_err(read_err)?;
        if link.file_type().is_symlink() {
            let target = std::fs::canonicalize(path).map_err(read_err)?;
            let root = repository_root(path);
            if !target.starts_with(&root) {
                return Err(ConfigError::OutsideRepository { path: path.to_path_buf(), target, root });
            }
        }
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() {
            return Err(ConfigError::NotRegular { path: path.to_path_buf(), kind: file_kind(&meta) });
        }
        let source_name = path.display().to_string();
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).map_err(read_err)?;
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CONFIG_BYTES as u64 + 1), &mut bytes)
            .map_err(read_err)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { source_name, limit: MAX_CONFIG_BYTES });
        }
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Syntax {
            source_name: source_name.clone(),
            message: format!("not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        })?;
        Config::from_text(&text, &source_name)
    }
}

/// Where a pull-request run reads its config from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigOrigin {
    /// `--config` / `AGENTCTL_CONFIG`: the workflow's own choice.
    Explicit,
    /// The PR's base commit, through the API.
    BaseViaApi,
    /// The PR's base commit, through `git show` in the checkout.
    BaseViaGit,
    /// The working directory: local runs only.
    WorkingDirectory,
    /// The workflow's own commit (`GITHUB_SHA`) through the API, on an event that is not a
    /// pull request's ([`load_for_ref`]).
    RefViaApi,
    /// No file: the defaults.
    Defaults,
}

/// Loads the config for a run on pull request `pr` (SPEC §2, "Config"). A PR must not rewrite
/// its own review rules, so on pull-request events the file comes from the PR's **base**
/// commit — never from the PR's checkout:
///
/// 1. `explicit` (`--config`, `AGENTCTL_CONFIG`) when given;
/// 2. with a PR and a GitHub client: `.github/agentctl.yml` at the base sha, through the API;
/// 3. in Actions on a pull-request event without a token: `git show <base sha>:.github/agentctl.yml`
///    in the checkout; when the base commit is not there, [`ConfigError::BaseUnavailable`]
///    (exit 2), never the working directory's copy;
/// 4. otherwise (a local run) the working directory's `.github/agentctl.yml`;
///
/// and the defaults when the chosen place has no file.
///
/// Errors: every [`Config::from_text`] error; [`ConfigError::Fetch`] when the API call fails.
pub(crate) async fn load_for_pr(
    explicit: Option<&Path>,
    pr: Option<&crate::context::target::PrMeta>,
    gh: Option<&impl CommitFiles>,
    pr_event_in_actions: bool,
) -> Result<(Config, ConfigOrigin), ConfigError> {
    if let Some(path) = explicit {
        return Ok((Config::from_path(path)?, ConfigOrigin::Explicit));
    }
    if let Some(pr) = pr {
        let short = pr.base_sha.get(..12).unwrap_or(&pr.base_sha);
        let name = format!("{DEFAULT_PATH} at base {short} ({})", pr.base_ref);
        if let Some(gh) = gh {
            return match fetch_at(gh, &pr.base_sha, &name).await? {
                Some(config) => Ok((config, ConfigOrigin::BaseViaApi)),
                None => Ok((Config::default(), ConfigOrigin::Defaults)),
            };
        }
        if pr_event_in_actions {
            return match git_show_at(&pr.base_sha, DEFAULT_PATH)? {
                Some(text) => Ok((Config::from_text(&text, &name)?, ConfigOrigin::BaseViaGit)),
                None => Ok((Config::default(), ConfigOrigin::Defaults)),
            };
        }
    } else if pr_event_in_actions {
        return Err(ConfigError::BaseUnavailable {
            base: "(unknown)".into(),
            message: "the pull request's base commit is not known".into(),
        });
    }
    load_local(None)
}

/// Loads the config of a command that reads no pull request or commit (`cost`): `explicit`
/// when given, else the working directory's `.github/agentctl.yml` when there is one, else the
/// defaults.
///
/// Errors: every [`Config::from_text`] error (a symlinked file is refused by
/// [`Config::from_path`]).
pub(crate) fn load_local(explicit: Option<&Path>) -> Result<(Config, ConfigOrigin), ConfigError> {
    if let Some(path) = explicit {
        return Ok((Config::from_path(path)?, ConfigOrigin::Explicit));
    }
    Ok(match working_directory()? {
        Some(config) => (config, ConfigOrigin::WorkingDirectory),
        None => (Config::default(), ConfigOrigin::Defaults),
    })
}

/// The working directory's `.github/agentctl.yml`, `None` when there is none (anything at the
/// path counts, so a symlink reaches [`Config::from_path`]'s refusal instead of the defaults).
fn working_directory() -> Result<Option<Config>, ConfigError> {
    let local = PathBuf::from(DEFAULT_PATH);
    std::fs::symlink_metadata(&local).is_ok().then(|| Config::from_path(&local)).transpose()
}

/// Loads the config for a run on an event that is not a pull request's (an issue, a comment on
/// an issue, a push, a schedule), where the workflow runs at `sha` (`GITHUB_SHA`: the default
/// branch's head, or the pushed commit) — a commit written by people with write access:
///
/// 1. `explicit` when given;
/// 2. the working directory's `.github/agentctl.yml` when there is one (a checkout of `sha`);
/// 3. with a GitHub client and `sha`, the file at `sha` through the API (a job with no checkout);
/// 4. the defaults.
///
/// Errors: as [`load_for_pr`].
pub(crate) async fn load_for_ref(
    explicit: Option<&Path>,
    gh: Option<&impl CommitFiles>,
    sha: Option<&str>,
) -> Result<(Config, ConfigOrigin), ConfigError> {
    if let Some(path) = explicit {
        return Ok((Config::from_path(path)?, ConfigOrigin::Explicit));
    }
    if let Some(config) = working_directory()? {
        return Ok((config, ConfigOrigin::WorkingDirectory));
    }
    if let (Some(gh), Some(sha)) = (gh, sha) {
        let name = format!("{DEFAULT_PATH} at {}", sha.get(..12).unwrap_or(sha));
        if let Some(config) = fetch_at(gh, sha, &name).await? {
            return Ok((config, ConfigOrigin::RefViaApi));
        }
    }
    Ok((Config::default(), ConfigOrigin::Defaults))
}

/// `.github/agentctl.yml` at commit `sha` through the API, parsed and validated as `name`;
/// `None` when the commit has no such file.
///
/// Errors: [`ConfigError::Fetch`] when the API call fails; every [`Config::from_text`] error.
async fn fetch_at(gh: &impl CommitFiles, sha: &str, name: &str) -> Result<Option<Config>, ConfigError> {
    let bytes = gh.read_at(DEFAULT_PATH, sha).await.map_err(|FetchError { exit, source }| ConfigError::Fetch {
        base: sha.to_owned(),
        exit,
        source,
    })?;
    bytes.map(|b| Config::from_text(&String::from_utf8_lossy(&b), name)).transpose()
}

/// `path` at commit `sha` of the checkout in the working directory: `Ok(None)` when the commit
/// is there without the file; [`ConfigError::BaseUnavailable`] when the commit is not (a shallow
/// checkout) or git cannot run.
fn git_show_at(sha: &str, path: &str) -> Result<Option<String>, ConfigError> {
    let unavailable = |message: String| ConfigError::BaseUnavailable { base: sha.to_owned(), message };
    // The sha comes from the event payload: only a full hex object name reaches git.
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unavailable("the base sha is not a 40-character hex object name".into()));
    }
    let git = |args: &[&str]| std::process::Command::new("git").args(args).output();
    let commit = git(&["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !commit.status.success() {
        return Err(unavailable("the commit is not in this checkout".into()));
    }
    let blob = format!("{sha}:{path}");
    let exists = git(&["cat-file", "-e", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !exists.status.success() {
        return Ok(None);
    }
    let size = git(&["cat-file", "-s", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    let size: u64 = String::from_utf8_lossy(&size.stdout).trim().parse().unwrap_or(u64::MAX);
    if size > MAX_CONFIG_BYTES as u64 {
        return Err(unavailable(format!("the file is {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit")));
    }
    let out = git(&["cat-file", "blob", &blob]).map_err(|e| unavailable(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(unavailable(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// What a non-regular file is, for the message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a fifo";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// The repository a config at `path` belongs to: the nearest ancestor of its directory with a
/// `.git` entry (the git top-level), else the current directory when `path` is under it, else
/// the directory holding `path`. Canonical, so it compares with a resolved link target.
fn repository_root(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(top) = dir.ancestors().find(|a| a.join(".git").exists()) {
        return top.to_path_buf();
    }
    match std::env::current_dir().and_then(std::fs::canonicalize) {
        Ok(cwd) if dir.starts_with(&cwd) => cwd,
        _ => dir,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, MAX_CONFIG_BYTES};

    /// A commit's files from memory, or a failure with an exit code: loading needs no client.
    struct Files(Result<Option<&'static str>, crate::exit::Exit>);

    impl super::CommitFiles for Files {
        async fn read_at(&self, path: &str, _sha: &str) -> Result<Option<Vec<u8>>, super::FetchError> {
            assert_eq!(path, super::DEFAULT_PATH);
            self.0
                .map(|text| text.map(|t| t.as_bytes().to_vec()))
                .map_err(|exit| super::FetchError { exit, source: "401 Bad credentials".into() })
        }
    }

    #[tokio::test]
    async fn the_base_commit_file_is_read_through_the_given_source_and_its_failure_keeps_its_exit() {
        let pr = crate::context::target::PrMeta {
            number: 7,
            title: String::new(),
            body: None,
            head_sha: "h".repeat(40),
            base_sha: "b".repeat(40),
            base_ref: "main".into(),
        };
        let base = Files(Ok(Some("review:\n  max_inline_comments: 3\n")));
        let (config, origin) = super::load_for_pr(None, Some(&pr), Some(&base), true).await.unwrap();
        assert_eq!((config.review.max_inline_comments, origin), (3, super::ConfigOrigin::BaseViaApi));
        let (config, origin) = super::load_for_pr(None, Some(&pr), Some(&Files(Ok(None))), true).await.unwrap();
        assert_eq!((config, origin), (Config::default(), super::ConfigOrigin::Defaults));
        let err = super::load_for_ref(None, Some(&Files(Err(crate::exit::Exit::Auth))), Some(&pr.base_sha))
            .await
            .unwrap_err();
        assert_eq!(err.exit(), crate::exit::Exit::Auth);
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(chain.contains("at bbbbbbbbbbbb") && chain.contains("401 Bad credentials"), "{chain}");
    }

    #[test]
    #[cfg(unix)]
    fn config_symlink_leaving_the_repository_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let creds = outside.path().join("credentials");
        std::fs::write(&creds, "aws_secret_access_key: hunter2hunter2\n").unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join(".git")).unwrap();
        std::fs::create_dir(repo.path().join(".github")).unwrap();
        let link = repo.path().join(".github/agentctl.yml");
        std::os::unix::fs::symlink(&creds, &link).unwrap();
        let err = Config::from_path(&link).unwrap_err().to_string();
        assert!(err.contains("outside the repository"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // A symlink that stays inside the repository is fine.
        std::fs::write(repo.path().join("real.yml"), "provider: builtin\n").unwrap();
        let inside = repo.path().join(".github/inside.yml");
        std::os::unix::fs::symlink(repo.path().join("real.yml"), &inside).unwrap();
        assert!(Config::from_path(&inside).is_ok());
    }

    #[test]
    #[cfg(unix)]
    fn config_that_is_not_a_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::from_path(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let fifo = dir.path().join("fifo.yml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Opening a fifo for reading would block forever: it must be refused before that.
        let err = Config::from_path(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = Config::from_path(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn config_over_one_megabyte_is_refused_before_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yml");
        std::fs::write(&big, format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES))).unwrap();
        let err = Config::from_path(&big).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        assert!(Config::from_text(&"#".repeat(MAX_CONFIG_BYTES + 1), "c").is_err());
    }
}
