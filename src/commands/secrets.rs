//! `agentctl secrets set|get|delete|list`: the OS keyring through [`crate::secret_store`].
//!
//! Values come from stdin only (never an argument, so never in `ps`); `set` refuses a terminal
//! on stdin, where the value would be echoed. `get` says whether a secret is stored and prints
//! the value only with `--print`, which refuses a terminal on stdout unless `--force`. `list`
//! prints names, never values. Exit codes: 0 done; 1 no usable keyring backend, a backend
//! failure, or `get`/`delete` of a name that is not stored; 2 a bad name, an empty value, or a
//! terminal where a pipe is needed.

use std::io::{IsTerminal, Read};

use secrecy::{ExposeSecret, SecretString};

use crate::cli::{SecretsAction, SecretsArgs};
use crate::exit::{Exit, ExitError};
use crate::log;
use crate::secret_store::{EntryName, SecretStore};

/// Largest value `set` reads from stdin, bytes (keyutils' limit for a `user` key is 32 767).
const MAX_VALUE: u64 = 32_767;

/// Runs `secrets`.
pub fn run(args: &SecretsArgs) -> Result<Exit, ExitError> {
    let usage = |m: String| ExitError::new(Exit::Usage, anyhow::anyhow!("secrets: {m}"));
    match &args.action {
        SecretsAction::Set { name } => {
            let name = EntryName::parse(name)?;
            if std::io::stdin().is_terminal() {
                return Err(usage(format!(
                    "set {name}: stdin is a terminal, which would echo the value; pipe it in, e.g. `agentctl secrets set {name} < file`"
                )));
            }
            let mut raw = String::new();
            std::io::stdin()
                .take(MAX_VALUE + 1)
                .read_to_string(&mut raw)
                .map_err(|e| usage(format!("set {name}: cannot read stdin as UTF-8 text: {e}")))?;
            let value = SecretString::from(
                raw.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&raw).to_string(),
            );
            drop(raw);
            if value.expose_secret().is_empty() {
                return Err(usage(format!("set {name}: the value on stdin is empty")));
            }
            if value.expose_secret().len() as u64 > MAX_VALUE {
                return Err(usage(format!("set {name}: the value is longer than {MAX_VALUE} bytes")));
            }
            SecretStore::open()?.set(&name, &value)?;
            log::info(&format!("stored {name} in the keyring"));
        }
        SecretsAction::Get { name, print, force } => {
            let name = EntryName::parse(name)?;
            if *print && !*force && std::io::stdout().is_terminal() {
                return Err(usage(
                    "get --print: stdout is a terminal, where the value would stay in the scrollback; pipe it, or add --force"
                        .into(),
                ));
            }
            let Some(value) = SecretStore::open()?.get(&name)? else {
                return Err(ExitError::new(
                    Exit::Failure,
                    anyhow::anyhow!("secrets: no secret named {name} in the keyring"),
                ));
            };
            if *print {
                // In Actions the value is masked before it can reach the log.
                log::register_secret(&mut crate::redact::Redactor::new(), &value);
                crate::output::stdout_value(value.expose_secret())
                    .map_err(|e| ExitError::new(Exit::Failure, anyhow::anyhow!("secrets: cannot write stdout: {e}")))?;
            } else {
                log::info(&format!(
                    "{name} is in the keyring ({} bytes); add --print to write it to stdout",
                    value.expose_secret().len()
                ));
            }
        }
        SecretsAction::Delete { name } => {
            let name = EntryName::parse(name)?;
            if !SecretStore::open()?.delete(&name)? {
                return Err(ExitError::new(
                    Exit::Failure,
                    anyhow::anyhow!("secrets: no secret named {name} in the keyring"),
                ));
            }
            log::info(&format!("deleted {name} from the keyring"));
        }
        SecretsAction::List { service } => {
            // A service is checked like a name's service part.
            let probe = EntryName::parse(&format!("{service}/x"))?;
            let names = SecretStore::open()?.list(&probe.service)?;
            if !names.is_empty() {
                crate::output::stdout(&names.join("\n"))
                    .map_err(|e| ExitError::new(Exit::Failure, anyhow::anyhow!("secrets: cannot write stdout: {e}")))?;
            }
        }
    }
    Ok(Exit::Ok)
}
