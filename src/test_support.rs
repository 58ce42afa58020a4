//! Test support shared by unit tests: where the shared corpora are.

use std::path::PathBuf;

/// The corpora folder: `AGENTCTL_CORPORA`, else `../shared/corpora` beside the crate.
///
/// Returns `None` (after printing why) when it is missing on a developer's bare clone; under
/// `CI=true` a missing corpus is a failure, so this panics.
pub(crate) fn corpora_dir() -> Option<PathBuf> {
    let dir = std::env::var_os(crate::env_vars::AGENTCTL_CORPORA)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("corpora folder {} is missing (CI=true requires it; set AGENTCTL_CORPORA)", dir.display());
    }
    eprintln!("skipping: corpora folder {} not found (set AGENTCTL_CORPORA)", dir.display());
    None
}
