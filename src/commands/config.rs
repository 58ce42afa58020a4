//! `agentctl config validate|schema|init`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::{ConfigAction, ConfigArgs};
use crate::config::{Config, DEFAULT_PATH, SCHEMA, STARTER};
use crate::exit::{Exit, ExitError};
use crate::log;
use crate::output;

/// Runs a config action. `validate` exits 2 with every violation listed; `init` refuses to
/// overwrite an existing file or write through a symlink (exit 2).
pub fn run(args: &ConfigArgs) -> Result<Exit, ExitError> {
    let io_err = |e: anyhow::Error| ExitError::new(Exit::Failure, e);
    match &args.action {
        ConfigAction::Validate { path } => {
            let path = path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
            Config::from_path(&path).map_err(|e| ExitError::new(Exit::Usage, e))?;
            log::info(&format!("{} is valid", path.display()));
            Ok(Exit::Ok)
        }
        ConfigAction::Schema => {
            output::stdout(SCHEMA).context("writing the schema").map_err(io_err)?;
            Ok(Exit::Ok)
        }
        ConfigAction::Init { path } => {
            let path = path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display())).map_err(io_err)?;
            }
            // Create-new, in one step: an existing file, or a symlink (even a dangling one), at
            // `path` is refused by the OS, with no window between a check and the write.
            let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(ExitError::new(
                        Exit::Usage,
                        anyhow::anyhow!(
                            "{} exists already (a file or a symlink); not overwriting it\nhelp: remove it first, or pass another path",
                            path.display()
                        ),
                    ));
                }
                Err(e) => return Err(io_err(anyhow::Error::new(e).context(format!("creating {}", path.display())))),
            };
            std::io::Write::write_all(&mut file, STARTER.as_bytes())
                .with_context(|| format!("writing {}", path.display()))
                .map_err(io_err)?;
            log::info(&format!("wrote {}", path.display()));
            Ok(Exit::Ok)
        }
    }
}
