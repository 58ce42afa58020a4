//! Sinks: where a credential goes (`--output-name`, `--file` with its `PATH.meta.json`,
//! `--keyring`, `--print`), all checked before any request, and [`deliver`], which writes one
//! credential to each.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::private::write_private;
use super::TokenError;
use crate::actions;
use crate::context::Env;
use crate::env_vars as ev;
use crate::secret_store::{EntryName, SecretStore};

/// The sinks as given (`--output-name`, `--file`, `--keyring`, `--print`, `--force`,
/// `--min-ttl`), not yet checked; [`Sinks::resolve`] checks them.
#[derive(Debug, Clone)]
pub(crate) struct SinkSettings {
    /// Step output name; needs `GITHUB_OUTPUT`.
    pub(crate) output_name: Option<String>,
    /// Credential file; `PATH.meta.json` beside it.
    pub(crate) file: Option<PathBuf>,
    /// Keyring entry, `[SERVICE/]NAME`.
    pub(crate) keyring: Option<String>,
    /// Print the credential on stdout.
    pub(crate) print: bool,
    /// Allow `print` to a terminal.
    pub(crate) force: bool,
    /// Seconds a credential in `file` must have left to be reused.
    pub(crate) min_ttl: u64,
}

/// The sinks, checked before any request.
pub(crate) struct Sinks {
    output_name: Option<String>,
    github_output: Option<PathBuf>,
    pub(crate) file: Option<PathBuf>,
    keyring: Option<(EntryName, SecretStore)>,
    print: bool,
    pub(crate) min_ttl: u64,
}

impl Sinks {
    /// Checks every sink: at least one; `--output-name` needs `GITHUB_OUTPUT`; `--file`'s folder
    /// exists and is not world-writable; `--print` refuses a terminal unless `--force`.
    pub(crate) fn resolve(args: &SinkSettings, env: &Env) -> Result<Self, TokenError> {
        if args.output_name.is_none() && args.file.is_none() && args.keyring.is_none() && !args.print {
            return Err(TokenError::Usage(
                "no sink: pass --output-name NAME, --file PATH, --keyring NAME or --print (a credential nobody keeps is wasted)"
                    .into(),
            ));
        }
        let github_output = match &args.output_name {
            Some(name) => Some(env.get(ev::GITHUB_OUTPUT).map(PathBuf::from).ok_or_else(|| {
                TokenError::Usage(format!("--output-name {name}: GITHUB_OUTPUT is not set (not a GitHub Actions step)"))
            })?),
            None => None,
        };
        if let Some(file) = &args.file {
            check_sink_dir(file)?;
        }
        if args.print && !args.force && std::io::stdout().is_terminal() {
            return Err(TokenError::Usage(
                "--print: stdout is a terminal, where the credential would stay in the scrollback; pipe it, or add --force"
                    .into(),
            ));
        }
        let keyring = match &args.keyring {
            Some(name) => Some((EntryName::parse(name)?, SecretStore::open()?)),
            None => None,
        };
        Ok(Sinks {
            output_name: args.output_name.clone(),
            github_output,
            file: args.file.clone(),
            keyring,
            print: args.print,
            min_ttl: args.min_ttl,
        })
    }
}

/// Refuses a sink folder that is missing or writable by every user: anyone could replace the
/// file between our write and a reader's read, or plant a symlink (this includes `/tmp`,
/// sticky bit or not: a sticky folder still lets others create the file name first).
fn check_sink_dir(file: &Path) -> Result<(), TokenError> {
    let dir = sink_dir(file);
    let meta = std::fs::metadata(dir).map_err(|e| {
        TokenError::Usage(format!("--file {}: folder {} is not usable: {e}", file.display(), dir.display()))
    })?;
    if !meta.is_dir() {
        return Err(TokenError::Usage(format!("--file {}: {} is not a folder", file.display(), dir.display())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o002 != 0 {
            return Err(TokenError::Usage(format!(
                "--file {}: folder {} is world-writable, so another user could swap or pre-create the credential file\nhelp: use a folder only you can write, e.g. `mkdir -m 700 \"$RUNNER_TEMP/agentctl\"`",
                file.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The folder `file` sits in (`.` for a bare name).
pub(crate) fn sink_dir(file: &Path) -> &Path {
    file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `PATH.meta.json` beside a credential file.
pub(crate) fn meta_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".meta.json");
    PathBuf::from(name)
}

/// What `PATH.meta.json` records about the credential in `PATH` (never the credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenMeta {
    /// `installation`, `runner-registration`, `runner-remove` or `runner-jit`.
    pub kind: String,
    /// What was asked for (app, owner, repositories, permissions...); a reuse needs the same.
    pub request: String,
    /// RFC 3339 expiry; `None` for a JIT config (one use, never reused).
    pub expires_at: Option<String>,
    /// Permissions the token holds (installation tokens).
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    /// Repositories it is limited to (installation tokens with a selection).
    #[serde(default)]
    pub repositories: Vec<String>,
    /// The installation it belongs to.
    #[serde(default)]
    pub installation_id: Option<u64>,
}

/// A credential with what the metadata file records.
pub(crate) struct Credential {
    pub(crate) value: SecretString,
    pub(crate) meta: TokenMeta,
}

/// Writes `cred` to every sink: the file (then its metadata), the keyring, the step output,
/// stdout.
pub(crate) fn deliver(sinks: &Sinks, cred: &Credential, reused: bool) -> Result<(), TokenError> {
    if let (Some(file), false) = (&sinks.file, reused) {
        let mut text = cred.value.expose_secret().to_string();
        text.push('\n');
        write_private(file, text.as_bytes()).map_err(|source| TokenError::Sink {
            what: "credential file",
            path: file.display().to_string(),
            source,
        })?;
        let meta = serde_json::to_vec_pretty(&cred.meta).unwrap_or_default();
        let path = meta_path(file);
        write_private(&path, &meta).map_err(|source| TokenError::Sink {
            what: "metadata file",
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some((name, store)) = &sinks.keyring {
        store.set(name, &cred.value)?;
    }
    if let (Some(name), Some(path)) = (&sinks.output_name, &sinks.github_output) {
        actions::write_outputs(path, &[(name.clone(), cred.value.expose_secret().to_string())])?;
    }
    if sinks.print {
        // Minted credentials cannot hold a workflow command (their alphabet has no `:` or `#`);
        // a reused file's value is visible ASCII only, and in Actions `output::stdout` fences it
        // like all output.
        let value = cred.value.expose_secret();
        crate::output::stdout(value).map_err(|source| TokenError::Sink { what: "stdout", path: "-".into(), source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_file_sits_beside_the_credential() {
        assert_eq!(meta_path(Path::new("/x/token")), PathBuf::from("/x/token.meta.json"));
    }
}
