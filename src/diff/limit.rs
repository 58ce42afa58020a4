//! The diff size limit (`review.max_diff_bytes`): a diff over it is refused before it is
//! parsed, and a diff read from a file or stdin is never read more than one byte past it.
//!
//! Why refuse rather than review part of it: parsing holds the whole diff and its lines in
//! memory, and a review of a prefix would look complete while it is not. The error says the
//! size, the limit and the key to raise, and the review exits 2 (a usage/config error).

use std::io::Read;

/// Default of `review.max_diff_bytes`: 50 MiB (52,428,800 bytes). GitHub refuses to render
/// diffs far smaller than this, so only local and file diffs come near it.
pub const DEFAULT_MAX_DIFF_BYTES: u64 = 50 * 1024 * 1024;

/// Why a diff could not be taken in.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The diff is over `review.max_diff_bytes`. `size` is exact when known beforehand (a
    /// regular file, bytes in memory), else `None`: reading stopped one byte past the limit.
    #[error(
        "the diff from {from} is {}, over the limit of {limit} bytes\nhelp: raise `review.max_diff_bytes` in the config to review a diff this large",
        describe_size(*.size, *.limit)
    )]
    TooLarge {
        /// Where the diff came from, e.g. `file big.diff`, `stdin`, `git diff`.
        from: String,
        /// Size in bytes, when known.
        size: Option<u64>,
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the file or stream failed.
    #[error("cannot read the diff from {from}")]
    Read {
        /// Where the diff came from.
        from: String,
        #[source]
        source: std::io::Error,
    },
}

fn describe_size(size: Option<u64>, limit: u64) -> String {
    match size {
        Some(n) => format!("{n} bytes"),
        None => format!("more than {limit} bytes"),
    }
}

/// Checks a diff of `len` bytes already in memory (from `git diff` or the API) against
/// `limit` bytes. `from` names the source for the error.
///
/// # Errors
/// [`DiffError::TooLarge`] with the exact size when `len > limit`.
pub fn check_size(len: u64, limit: u64, from: &str) -> Result<(), DiffError> {
    if len > limit {
        return Err(DiffError::TooLarge { from: from.to_owned(), size: Some(len), limit });
    }
    Ok(())
}

/// Reads a whole diff from `reader` (stdin, a pipe), at most `limit` bytes: it reads no more
/// than `limit + 1` bytes, so an oversized stream costs at most the limit in memory.
///
/// # Errors
/// [`DiffError::TooLarge`] (size unknown) when the stream holds more than `limit` bytes;
/// [`DiffError::Read`] when reading fails.
pub fn read_limited(reader: impl Read, limit: u64, from: &str) -> Result<Vec<u8>, DiffError> {
    read_with_hint(reader, limit, from, 0)
}

/// Reads the diff file at `path`, at most `limit` bytes. A regular file over the limit is
/// refused from its metadata (exact size in the error) before any byte is read; a file that
/// grows while being read, or a FIFO, is cut off one byte past the limit.
///
/// # Errors
/// [`DiffError::Read`] when the file cannot be opened or read; [`DiffError::TooLarge`].
pub fn read_file_limited(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, DiffError> {
    let from = format!("file {}", path.display());
    let read_err = |source| DiffError::Read { from: from.clone(), source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let mut hint = 0;
    if meta.is_file() {
        check_size(meta.len(), limit, &from)?;
        hint = meta.len();
    }
    read_with_hint(file, limit, &from, hint)
}

/// A diff named on the command line, `file` (`-` for stdin), read with the `limit` cap:
/// [`read_limited`] for stdin, [`read_file_limited`] for a path. `review --diff` and
/// `cost estimate --diff` both read through it.
///
/// # Errors
/// As [`read_limited`] / [`read_file_limited`].
pub fn read_named(file: &str, limit: u64) -> Result<Vec<u8>, DiffError> {
    if file == "-" {
        read_limited(std::io::stdin(), limit, "stdin")
    } else {
        read_file_limited(std::path::Path::new(file), limit)
    }
}

fn read_with_hint(reader: impl Read, limit: u64, from: &str, hint: u64) -> Result<Vec<u8>, DiffError> {
    // One extra byte tells "exactly the limit" from "over it".
    let mut buf = Vec::with_capacity(usize::try_from(hint.min(limit)).unwrap_or(0).saturating_add(1));
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| DiffError::Read { from: from.to_owned(), source })?;
    if buf.len() as u64 > limit {
        return Err(DiffError::TooLarge { from: from.to_owned(), size: None, limit });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_size_accepts_the_limit_and_names_size_limit_and_key_past_it() {
        assert!(check_size(100, 100, "git diff").is_ok());
        let e = check_size(101, 100, "git diff").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("the diff from git diff is 101 bytes, over the limit of 100 bytes"), "{text}");
        assert!(text.contains("review.max_diff_bytes"), "{text}");
    }

    /// A reader that counts what was taken from it, to prove the limit bounds the read.
    struct Counting<'a> {
        inner: std::io::Repeat,
        taken: &'a mut u64,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            *self.taken += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn an_endless_stream_is_read_only_one_byte_past_the_limit() {
        let mut taken = 0;
        let e = read_limited(Counting { inner: std::io::repeat(b'+'), taken: &mut taken }, 1000, "stdin").unwrap_err();
        assert_eq!(taken, 1001);
        assert!(matches!(e, DiffError::TooLarge { size: None, limit: 1000, .. }));
        assert!(e.to_string().contains("is more than 1000 bytes, over the limit of 1000 bytes"), "{e}");
    }

    #[test]
    fn a_stream_at_the_limit_is_read_whole() {
        let bytes = vec![b'x'; 1000];
        assert_eq!(read_limited(&bytes[..], 1000, "stdin").unwrap(), bytes);
        assert!(read_limited(&vec![b'x'; 1001][..], 1000, "stdin").is_err());
    }

    #[test]
    fn an_oversized_file_is_refused_with_its_exact_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.diff");
        std::fs::write(&path, vec![b'+'; 2048]).unwrap();
        let e = read_file_limited(&path, 1024).unwrap_err();
        assert!(matches!(e, DiffError::TooLarge { size: Some(2048), limit: 1024, .. }), "{e:?}");
        assert!(e.to_string().contains("big.diff is 2048 bytes"), "{e}");
        assert_eq!(read_file_limited(&path, 2048).unwrap().len(), 2048);
        let missing = read_file_limited(&dir.path().join("nope.diff"), 1024).unwrap_err();
        assert!(matches!(missing, DiffError::Read { .. }));
        assert!(missing.to_string().contains("nope.diff"), "{missing}");
    }
}
