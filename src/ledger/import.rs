//! `cost import`: usage records as JSON Lines ([`crate::usage::jsonl`], what `cost export` and
//! the `usage-file` of a run write) into the ledger, from files or from workflow run artifacts.
//!
//! Each file is parsed whole first, then inserted in one transaction; ids already in the ledger
//! are counted as duplicates and skipped, so a nightly job can re-run over the same artifacts
//! and add nothing twice. A bad line stops the import at that file; files before it stay
//! imported.

use crate::diff::source::DiffSourceError;
use crate::exit::Exit;
use crate::github::artifacts::Download;
use crate::github::{GitHub, GitHubError};
use crate::log;
use crate::progress::Progress;
use crate::store::{Store, StoreError};
use crate::usage::jsonl::{self, JsonlError, ZipError};

/// Why an import stopped. What was imported before it stays in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file (or stdin) that cannot be read.
    #[error(transparent)]
    Read(#[from] DiffSourceError),
    /// A file that is not UTF-8 text; `name` is the file, or `stdin`.
    #[error("{name} is not UTF-8 text; nothing imported from it")]
    NotUtf8 { name: String },
    /// A line that is not a usage record (its line number named).
    #[error(transparent)]
    Parse(#[from] JsonlError),
    /// An artifact that is not a zip of usage JSON Lines.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// `--name` is not a glob (`globset` syntax).
    #[error("--name `{name}` is not a valid glob: {error}")]
    Glob { name: String, error: globset::Error },
    /// The ledger refused the records or cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing or downloading the artifacts failed.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
}

impl ImportError {
    /// Exit 2 for the input (files, lines, zips, `--name`); the store's or GitHub's own exit
    /// code otherwise.
    pub fn exit(&self) -> Exit {
        match self {
            ImportError::Store(e) => e.exit(),
            ImportError::GitHub(e) => e.exit(),
            _ => Exit::Usage,
        }
    }
}

/// Records added and already present (skipped) over an import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportCounts {
    /// Records new to the ledger.
    pub added: usize,
    /// Records whose id the ledger already held.
    pub present: usize,
}

/// Imports each of `files` (`-` for stdin) in turn, with a progress bar over the records on a
/// terminal (its total grows as each file is parsed).
///
/// Errors: [`ImportError::Read`], [`ImportError::NotUtf8`], [`ImportError::Parse`] (exit 2),
/// [`ImportError::Store`]; the files before the failing one stay imported.
pub(crate) fn from_files(store: &Store, files: &[String]) -> Result<ImportCounts, ImportError> {
    let mut counts = ImportCounts::default();
    let progress = Progress::bar(0, "importing", "records");
    for file in files {
        let bytes = crate::diff::source::read_file(file)?;
        let name = if file == "-" { "stdin" } else { file.as_str() };
        let text = String::from_utf8(bytes).map_err(|_| ImportError::NotUtf8 { name: name.to_owned() })?;
        import_text(store, &text, name, &mut counts, &progress)?;
    }
    Ok(counts)
}

/// Parses `text` (all or nothing) and imports it in one transaction, adding to `counts`.
fn import_text(
    store: &Store,
    text: &str,
    name: &str,
    counts: &mut ImportCounts,
    progress: &Progress,
) -> Result<(), ImportError> {
    let records = jsonl::parse(text, name)?;
    progress.inc_length(records.len() as u64);
    let (added, present) = store.import_usage(&records)?;
    progress.inc(records.len() as u64);
    progress.set_message(name.to_owned());
    log::info(&format!("{name}: {added} record(s) added, {present} already in the ledger"));
    counts.added += added;
    counts.present += present;
    Ok(())
}

/// What an artifact import read and skipped (artifact counts).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactCounts {
    /// The records of the artifacts read.
    pub records: ImportCounts,
    /// Artifacts downloaded and imported.
    pub read: usize,
    /// Artifacts expired (listed so, or gone at download).
    pub expired: usize,
    /// Artifacts created before `since_ms`.
    pub older: usize,
    /// Artifacts uploaded by a run of a fork's code.
    pub forks: usize,
}

/// Lists the repository's artifacts named `name` (a glob such as `agentctl-usage-*` lists every
/// artifact and matches here; a plain name is filtered by the API), created since `since_ms`
/// (Unix milliseconds; `None`: all), downloads each zip (the storage URL without our token) and
/// imports every `.jsonl` in it. Expired artifacts, and those of runs of a fork's code
/// (attacker-written), are skipped and counted.
///
/// Errors: [`ImportError::Glob`], [`ImportError::Zip`], [`ImportError::Parse`] (exit 2),
/// [`ImportError::GitHub`], [`ImportError::Store`].
pub(crate) async fn from_artifacts(
    gh: &GitHub,
    store: &Store,
    name: &str,
    since_ms: Option<i64>,
) -> Result<ArtifactCounts, ImportError> {
    let is_glob = name.contains(['*', '?', '[', '{']);
    let pattern =
        globset::Glob::new(name).map_err(|error| ImportError::Glob { name: name.to_owned(), error })?.compile_matcher();
    let artifacts = gh.artifacts((!is_glob).then_some(name)).await?;
    let mut counts = ArtifactCounts::default();
    let progress = Progress::bar(0, "importing", "records");
    for art in artifacts.iter().filter(|art| if is_glob { pattern.is_match(&art.name) } else { art.name == name }) {
        let created_ms = art
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        if let (Some(since), Some(created)) = (since_ms, created_ms) {
            if created < since {
                counts.older += 1;
                continue;
            }
        }
        let label = match &art.workflow_run {
            Some(run) => format!("artifact {} (run {})", art.id, run.id),
            None => format!("artifact {}", art.id),
        };
        // A fork's workflow run ran the fork's code: its "usage" is attacker-written and could
        // pre-empt real ids or trip a budget. Skipped, and said.
        if art.workflow_run.as_ref().is_some_and(|r| r.is_from_fork()) {
            counts.forks += 1;
            log::warn(&format!("{label}: uploaded by a run of a fork's code; not imported"));
            continue;
        }
        if art.expired {
            counts.expired += 1;
            log::info(&format!("{label}: expired, skipped"));
            continue;
        }
        let zip = match gh.download_artifact(art.id).await? {
            Download::Zip(bytes) => bytes,
            Download::Gone => {
                counts.expired += 1;
                log::info(&format!("{label}: gone (expired), skipped"));
                continue;
            }
        };
        for (entry, text) in jsonl::jsonl_in_zip(&zip, &label)? {
            import_text(store, &text, &format!("{label}/{entry}"), &mut counts.records, &progress)?;
        }
        counts.read += 1;
    }
    Ok(counts)
}
