//! The OS keyring as a secret store, through the `keyring` crate with one explicit backend per
//! OS: the Linux kernel key retention service (keyutils; works headless, no D-Bus), the macOS
//! keychain, the Windows credential manager. There is no fallback: `keyring` 3 built without a
//! backend silently keeps secrets in process memory (its mock store), so on any other OS, or
//! where the backend cannot be reached (e.g. a container whose seccomp profile blocks the
//! `keyctl`/`add_key` syscalls, as Docker's default does), [`SecretStore::open`] fails with
//! [`KeyringError::Unavailable`] before anything is read or written.
//!
//! Entries are `SERVICE/NAME` (service `agentctl` unless given). On Linux the key description
//! is `keyring-rs:NAME@SERVICE`, in the session keyring and linked into the user's persistent
//! keyring: a secret lives until reboot, or until the persistent keyring expires after the
//! user's last session ended (`/proc/sys/kernel/keys/persistent_keyring_expiry`, 3 days by
//! default); every use resets that timer. keyutils cannot enumerate by service portably, so
//! each service keeps the list of its names in one more entry, `.names` (names never start
//! with a dot); `list` shows only names whose entry still exists.
//!
//! Sources: keyring 3 (<https://docs.rs/keyring/3>), keyutils(7), persistent-keyring(7).

use secrecy::{ExposeSecret, SecretString};

/// The service entries belong to when none is named.
pub(crate) const DEFAULT_SERVICE: &str = "agentctl";

/// The entry holding a service's list of names.
const INDEX: &str = ".names";

/// Errors of the secret store.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No usable keyring backend on this machine (exit 1; README "Tokens").
    #[error("no usable keyring backend: {0}\nhelp: on Linux the kernel keyring (keyutils) is used; in a container allow the keyctl, add_key and request_key syscalls (Docker's default seccomp profile blocks them); token-refresh can write a 0600 --file instead")]
    Unavailable(String),
    /// A name that is not `[SERVICE/]NAME` with `[A-Za-z0-9_.-]`, 1–128 characters, not starting with a dot (exit 2).
    #[error("keyring entry `{0}`: expected NAME or SERVICE/NAME of letters, digits, `_`, `-`, `.` (1-128 characters, not starting with `.`)")]
    BadName(String),
    /// The backend refused an operation (exit 1).
    #[error("keyring: cannot {action} `{entry}`: {message}")]
    Failed { action: &'static str, entry: String, message: String },
}

impl KeyringError {
    /// The exit code: a bad name `Usage` (2); no backend and backend failures `Failure` (1).
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            KeyringError::BadName(_) => crate::exit::Exit::Usage,
            KeyringError::Unavailable(_) | KeyringError::Failed { .. } => crate::exit::Exit::Failure,
        }
    }
}

/// `SERVICE/NAME` of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryName {
    /// The keyring service (default [`DEFAULT_SERVICE`]).
    pub service: String,
    /// The secret's name within the service.
    pub name: String,
}

impl EntryName {
    /// Parses `NAME` or `SERVICE/NAME`. Errors: [`KeyringError::BadName`].
    pub(crate) fn parse(text: &str) -> Result<Self, KeyringError> {
        let (service, name) = text.split_once('/').unwrap_or((DEFAULT_SERVICE, text));
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && !s.starts_with('.')
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if ok(service) && ok(name) {
            Ok(Self { service: service.to_string(), name: name.to_string() })
        } else {
            Err(KeyringError::BadName(text.to_string()))
        }
    }
}

impl std::fmt::Display for EntryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.service, self.name)
    }
}

/// The OS keyring, checked usable.
#[derive(Debug)]
pub(crate) struct SecretStore {
    _probed: (),
}

impl SecretStore {
    /// Probes the backend: a lookup of an entry nobody writes must answer "no such entry".
    /// Errors: [`KeyringError::Unavailable`] with the backend's own words.
    pub(crate) fn open() -> Result<Self, KeyringError> {
        let probe = EntryName { service: DEFAULT_SERVICE.into(), name: ".probe".into() };
        match entry(&probe)?.get_secret() {
            Ok(_) | Err(keyring::Error::NoEntry) => Ok(Self { _probed: () }),
            Err(e) => Err(KeyringError::Unavailable(e.to_string())),
        }
    }

    /// Stores `value` under `name`, replacing any value. An empty value is refused (keyutils
    /// cannot hold one).
    pub(crate) fn set(&self, name: &EntryName, value: &SecretString) -> Result<(), KeyringError> {
        let e = entry(name)?;
        e.set_password(value.expose_secret()).map_err(|err| failed("store", name, &err))?;
        let mut names = self.index(&name.service)?;
        if !names.contains(&name.name) {
            names.push(name.name.clone());
            names.sort();
            self.write_index(&name.service, &names)?;
        }
        Ok(())
    }

    /// The value under `name`, `None` when there is none.
    pub(crate) fn get(&self, name: &EntryName) -> Result<Option<SecretString>, KeyringError> {
        match entry(name)?.get_password() {
            Ok(v) => Ok(Some(SecretString::from(v))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(err) => Err(failed("read", name, &err)),
        }
    }

    /// Deletes `name`; `false` when there was nothing to delete.
    pub(crate) fn delete(&self, name: &EntryName) -> Result<bool, KeyringError> {
        let existed = match entry(name)?.delete_credential() {
            Ok(()) => true,
            Err(keyring::Error::NoEntry) => false,
            Err(err) => return Err(failed("delete", name, &err)),
        };
        let mut names = self.index(&name.service)?;
        if names.contains(&name.name) {
            names.retain(|n| *n != name.name);
            self.write_index(&name.service, &names)?;
        }
        Ok(existed)
    }

    /// Names (not values) stored in `service`, sorted; entries that expired are left out.
    pub(crate) fn list(&self, service: &str) -> Result<Vec<String>, KeyringError> {
        let mut out = Vec::new();
        for n in self.index(service)? {
            let name = EntryName { service: service.to_string(), name: n };
            if self.get(&name)?.is_some() {
                out.push(name.name);
            }
        }
        Ok(out)
    }

    fn index(&self, service: &str) -> Result<Vec<String>, KeyringError> {
        let name = EntryName { service: service.to_string(), name: INDEX.into() };
        Ok(self
            .get(&name)?
            .map(|v| v.expose_secret().lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
            .unwrap_or_default())
    }

    fn write_index(&self, service: &str, names: &[String]) -> Result<(), KeyringError> {
        let name = EntryName { service: service.to_string(), name: INDEX.into() };
        let e = entry(&name)?;
        if names.is_empty() {
            match e.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(err) => Err(failed("update the list of", &name, &err)),
            }
        } else {
            e.set_password(&names.join("\n")).map_err(|err| failed("update the list of", &name, &err))
        }
    }
}

fn failed(action: &'static str, name: &EntryName, err: &keyring::Error) -> KeyringError {
    KeyringError::Failed { action, entry: name.to_string(), message: err.to_string() }
}

/// One entry on this OS's backend; never the crate's default store (the mock on an OS without
/// a backend feature).
fn entry(name: &EntryName) -> Result<keyring::Entry, KeyringError> {
    #[cfg(target_os = "linux")]
    {
        let cred = keyring::keyutils::KeyutilsCredential::new_with_target(None, &name.service, &name.name)
            .map_err(|e| KeyringError::Unavailable(format!("the kernel keyring cannot be opened: {e}")))?;
        Ok(keyring::Entry::new_with_credential(Box::new(cred)))
    }
    #[cfg(target_os = "macos")]
    {
        let cred = keyring::macos::MacCredential::new_with_target(None, &name.service, &name.name)
            .map_err(|e| KeyringError::Unavailable(format!("the keychain cannot be opened: {e}")))?;
        Ok(keyring::Entry::new_with_credential(Box::new(cred)))
    }
    #[cfg(windows)]
    {
        let cred = keyring::windows::WinCredential::new_with_target(None, &name.service, &name.name)
            .map_err(|e| KeyringError::Unavailable(format!("the credential manager cannot be opened: {e}")))?;
        Ok(keyring::Entry::new_with_credential(Box::new(cred)))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        let _ = name;
        Err(KeyringError::Unavailable(format!("no keyring backend is built for {}", std::env::consts::OS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_name_or_service_slash_name() {
        assert_eq!(
            EntryName::parse("gh-token").unwrap_or_else(|e| panic!("{e}")),
            EntryName { service: "agentctl".into(), name: "gh-token".into() }
        );
        let n = EntryName::parse("runner/register.token").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((n.service.as_str(), n.name.as_str()), ("runner", "register.token"));
        for bad in ["", ".names", "a/.names", "a/b/c", "x y", "a/", "/a", &"x".repeat(129)] {
            assert!(EntryName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
