//! The stderr log. Every line passes through the process's [`Redactor`], so a secret that
//! reaches a message is scrubbed; in Actions, warnings become `::warning::` commands (escaped)
//! and untrusted text is fenced with `::stop-commands::` so it cannot issue workflow commands.

use std::io::Write;
use std::sync::{OnceLock, RwLock};

use crate::actions;
use crate::redact::Redactor;

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet,
    Normal,
    Verbose,
}

struct Logger {
    level: Level,
    in_actions: bool,
    redactor: RwLock<Redactor>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger { level: Level::Normal, in_actions: false, redactor: RwLock::new(Redactor::new()) })
}

/// Sets the level and whether we run in Actions; first call wins.
pub fn init(level: Level, in_actions: bool) {
    let _ = LOGGER.set(Logger { level, in_actions, redactor: RwLock::new(Redactor::new()) });
}

/// Secrets of the process itself rather than of one run's redactor (the state store's
/// password): every redactor the log is given keeps them.
static PROCESS_SECRETS: std::sync::Mutex<Vec<secrecy::SecretString>> = std::sync::Mutex::new(Vec::new());

/// Replaces the redactor used for every later line; it keeps the secrets registered with
/// [`register_process_secret`].
pub fn set_redactor(redactor: &Redactor) {
    let mut next = redactor.clone();
    if let Ok(secrets) = PROCESS_SECRETS.lock() {
        for s in secrets.iter() {
            next.add_secret(s);
        }
    }
    if let Ok(mut r) = logger().redactor.write() {
        *r = next;
    }
}

/// Registers a secret the process read outside any run's redactor (the PostgreSQL state
/// store's password): the log redacts it from now on, whatever redactor a command installs
/// later, and in Actions each of its lines is masked with `::add-mask::` at once.
pub fn register_process_secret(secret: &secrecy::SecretString) {
    use secrecy::ExposeSecret;
    if let Ok(mut secrets) = PROCESS_SECRETS.lock() {
        // The store's location may be read more than once; mask each secret once.
        if secrets.iter().any(|s| s.expose_secret() == secret.expose_secret()) {
            return;
        }
        secrets.push(secret.clone());
    }
    let mut one = Redactor::new();
    one.add_secret(secret);
    for line in one.mask_lines() {
        workflow_command(&actions::add_mask_command(&line));
    }
    if let Ok(mut r) = logger().redactor.write() {
        r.add_secret(secret);
    }
}

/// Publishes `::add-mask::` for every secret `redactor` holds (so the runner hides them in
/// every later line of any step) and makes it the log's redactor. Call it as soon as a secret
/// is known, before any request that could echo it.
pub fn publish_masks(redactor: &Redactor) {
    for line in redactor.mask_lines() {
        workflow_command(&actions::add_mask_command(&line));
    }
    set_redactor(redactor);
}

/// Redacts `text` with the log's redactor (also used by `main` for the final error).
pub fn redact(text: &str) -> String {
    match logger().redactor.read() {
        Ok(r) => r.redact(text),
        // A poisoned lock means a panic mid-update: refuse to print rather than leak.
        Err(_) => "[log line withheld: redactor unavailable]".into(),
    }
}

fn emit(line: &str) {
    // Lifted over any progress bar on screen, so the line does not land inside it.
    crate::progress::suspend(|| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    });
}

/// Emits a plain (non-command) line. In Actions a message that the runner could read as a
/// workflow command (untrusted text such as a model name a provider reported) is fenced with
/// `::stop-commands::`, so it is shown but never executed.
fn plain(msg: &str) {
    let msg = redact(msg);
    if logger().in_actions {
        emit(&actions::inert(&msg));
    } else {
        emit(&msg);
    }
}

/// A progress or status line (hidden with `-q`).
pub fn info(msg: &str) {
    if logger().level >= Level::Normal {
        plain(msg);
    }
}

/// Detail shown with `-v`.
pub fn debug(msg: &str) {
    if logger().level >= Level::Verbose {
        plain(msg);
    }
}

/// A warning; in Actions a `::warning::` annotation.
pub fn warn(msg: &str) {
    let l = logger();
    let msg = redact(msg);
    if l.in_actions {
        emit(&format!("::warning::{}", actions::escape_data(&msg)));
    } else if l.level >= Level::Normal {
        emit(&format!("warning: {msg}"));
    }
}

/// An error line (always shown); in Actions a `::error::` annotation.
pub fn error(msg: &str) {
    let l = logger();
    let msg = redact(msg);
    if l.in_actions {
        emit(&format!("::error::{}", actions::escape_data(&msg)));
    } else {
        emit(&format!("error: {msg}"));
    }
}

/// Registers `secret` with `redactor` (and makes it the log's redactor) and, in Actions, masks
/// each of its lines with `::add-mask::` before the caller uses it anywhere. For every secret
/// agentctl reads or mints (tokens, keys, keyring values).
pub fn register_secret(redactor: &mut Redactor, secret: &secrecy::SecretString) {
    use secrecy::ExposeSecret;
    redactor.add_secret(secret);
    for line in redactor.mask_lines() {
        if secret.expose_secret().contains(line.as_str()) {
            workflow_command(&actions::add_mask_command(&line));
        }
    }
    set_redactor(redactor);
}

/// Emits a raw workflow command line (e.g. `::add-mask::`), only inside Actions.
pub fn workflow_command(line: &str) {
    if logger().in_actions {
        emit(line);
    }
}

/// `a` as a workflow command in Actions (`in_actions`); elsewhere an error or warning line
/// `title: message` (a notice as a status line).
pub fn annotation(a: &actions::Annotation, in_actions: bool) {
    if in_actions {
        workflow_command(&actions::annotation_command(a));
        return;
    }
    let msg = match &a.title {
        Some(title) => format!("{title}: {}", a.message),
        None => a.message.clone(),
    };
    match a.level {
        actions::AnnotationLevel::Error => error(&msg),
        actions::AnnotationLevel::Warning => warn(&msg),
        actions::AnnotationLevel::Notice => info(&msg),
    }
}

/// Echoes untrusted text (a PR title, a model answer) with `-v`, fenced so the runner does not
/// execute workflow commands inside it.
pub fn untrusted(label: &str, text: &str) {
    let l = logger();
    if l.level < Level::Verbose {
        return;
    }
    let text = redact(text);
    emit(&format!("{label}:"));
    if l.in_actions {
        emit(&actions::stop_commands(&text));
    } else {
        emit(&text);
    }
}

/// `error` and its sources on one line, joined with `: ` — for warnings and messages that have
/// no room for a multi-line chain (and for libraries whose top-level text says little, such as
/// octocrab's "Service error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_secret_survives_a_later_redactor() {
        let secret = secrecy::SecretString::from("process-secret-5c1e".to_owned());
        register_process_secret(&secret);
        assert!(!redact("pw=process-secret-5c1e").contains("process-secret-5c1e"));
        // A command installs its own redactor, which never heard of the store's password.
        set_redactor(&Redactor::new());
        assert!(!redact("pw=process-secret-5c1e").contains("process-secret-5c1e"));
        assert!(redact("nothing secret here").contains("nothing secret here"));
    }
}
