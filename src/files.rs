//! Files agentctl writes whole: a leaf under every writer (SARIF, `--usage-out`, token files).

use std::io::{self, Write as _};

/// Writes `bytes` to `path` atomically: into a temporary file with an unpredictable name in the
/// same folder (`tempfile`), then renamed over `path`, so a reader never sees half a file, a
/// symlink at `path` is replaced rather than followed, and nothing is left behind on failure.
///
/// Errors: the folder is missing or read-only, `path` is a directory, the disk is full.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
