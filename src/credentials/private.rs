//! Private files: a credential or its metadata is written with mode 0600 from the first byte
//! and replaces the old file in one rename, so no other user and no half-written state is ever
//! seen.

use std::io::Write;
use std::path::Path;

use super::sinks::sink_dir;

/// Writes `bytes` to `path` through a temporary file in the same folder created with mode
/// 0600 before any byte is written, synced, then renamed over `path` (a reader sees the old
/// file or the new one, never half of one; a symlink at `path` is replaced, not followed).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".agentctl-token-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(sink_dir(path))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
