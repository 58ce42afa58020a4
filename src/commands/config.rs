//! `agentctl config validate|schema|init`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::{ConfigAction, ConfigArgs};
use crate::config::{Config, DEFAULT_PATH, SCHEMA, STARTER};
use crate::exit::{Exit, ExitError};
use crate::log;
use crate::output;

/// Runs a config action. `validate` exits 2 with every violation listed; `init` refuses to
/// overwrite an existing file (exit 2).
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
            if path.exists() {
                return Err(ExitError::new(
                    Exit::Usage,
                    anyhow::anyhow!("{} exists already; not overwriting it", path.display()),
                ));
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display())).map_err(io_err)?;
            }
            std::fs::write(&path, STARTER).with_context(|| format!("writing {}", path.display())).map_err(io_err)?;
            log::info(&format!("wrote {}", path.display()));
            Ok(Exit::Ok)
        }
    }
}
