//! Stage 2 of a review: the diff read (API, file or stdin, local git) under its size limit,
//! checked to be a unified diff, filtered (each skip with its reason), and on `synchronize`
//! narrowed to the changes since the last reviewed head (incremental review).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use crate::config::Config;
use crate::context::target::PrMeta;
use crate::context::Event;
use crate::diff::{self, Diff, FileFilter, LineKind, SkipReason, Skipped};
use crate::exit::{self, ExitError};
use crate::github::publish::Previous;
use crate::github::GitHub;
use crate::log;
use crate::output::markdown::short;
use crate::review::settings::{DiffSource, ReviewSettings};
use crate::review::ReviewRun;

/// Stage 2: the diff bytes from the API, a file or stdin, or local git, refusing more than
/// `limit` bytes (`review.max_diff_bytes`) with exit 2 — a stream is never read past it.
pub(crate) async fn read_diff(
    source: &DiffSource,
    gh: Option<&GitHub>,
    pr: Option<&PrMeta>,
    limit: u64,
) -> Result<Vec<u8>, ExitError> {
    match source {
        DiffSource::File(f) => diff::limit::read_named(f, limit).map_err(exit::usage),
        DiffSource::Git(base) => {
            let bytes = diff::source::git_diff(base).map_err(exit::usage)?;
            diff::check_size(bytes.len() as u64, limit, &format!("git diff {base}...HEAD")).map_err(exit::usage)?;
            Ok(bytes)
        }
        DiffSource::Api => match (gh, pr) {
            (Some(gh), Some(pr)) => {
                let bytes = gh.pull_diff(pr.number).await?;
                diff::check_size(bytes.len() as u64, limit, &format!("pull request #{}", pr.number))
                    .map_err(exit::usage)?;
                Ok(bytes)
            }
            _ => Err(exit::usage(anyhow::anyhow!("no diff source"))),
        },
    }
}

/// Refuses input that is not a unified diff: no file header anywhere is exit 2 (a wrong
/// `--diff` path in CI must not pass as "no findings"), with the first bytes shown escaped.
/// An empty diff from the API (a PR with no changes) is left to the "nothing reviewable" rule.
/// `bytes` is the input, or its first bytes (at most 60 are shown; empty means empty input).
pub(crate) fn check_diff(bytes: &[u8], parsed: &Diff, source: &DiffSource) -> Result<(), ExitError> {
    if !parsed.files.is_empty() || (bytes.is_empty() && *source == DiffSource::Api) {
        return Ok(());
    }
    let head: String = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).escape_debug().collect();
    let from = match source {
        DiffSource::Api => "the API".to_string(),
        DiffSource::File(f) if f == "-" => "stdin".to_string(),
        DiffSource::File(f) => f.clone(),
        DiffSource::Git(b) => format!("git diff {b}...HEAD"),
    };
    let shown = if bytes.is_empty() { "it is empty".to_string() } else { format!("it starts with \"{head}\"") };
    Err(exit::usage(anyhow::anyhow!(
        "the diff from {from} is not a unified diff (no `diff --git` or `---`/`+++` file header): {}\nhelp: pass the output of `git diff` or a PR's `.diff`",
        log::redact(&shown)
    )))
}

/// The files of `diff` to review (indices) and the ones skipped, each with its reason.
pub(crate) fn select_files(diff: &Diff, config: &Config) -> Result<(Vec<usize>, Vec<Skipped>), ExitError> {
    let filter = FileFilter::new(&config.review.include, &config.review.exclude)
        .map_err(|e| exit::usage(anyhow::anyhow!("review.include/exclude: {e}")))?;
    let mut selected = vec![];
    let mut skipped = vec![];
    for (i, f) in diff.files.iter().enumerate() {
        match filter.check(f) {
            Some(reason) => skipped.push(Skipped { path: f.path().to_string(), reason }),
            None => selected.push(i),
        }
    }
    Ok((selected, skipped))
}

/// Incremental review: on `synchronize` (unless `--full`, `review.incremental: false` or a
/// diff not from the API), keeps in `review_diff` only the hunks changed since the sha of the
/// previous summary (`previous`), each file left with nothing moved from `selected` to
/// `skipped`. Returns that sha, or `None` for a review of the whole PR (a force-push that
/// removed the sha is logged).
///
/// Errors: the compare request (the GitHub error's exit).
pub(crate) async fn narrow_incremental(
    run: &ReviewRun,
    settings: &ReviewSettings,
    event: &Event,
    previous: &Previous,
    review_diff: &mut Cow<'_, Diff>,
    selected_files: &mut Vec<usize>,
    skipped: &mut Vec<Skipped>,
) -> Result<Option<String>, ExitError> {
    let mut incremental_from = None;
    let is_sync = matches!(event, Event::PullRequest(e) if e.action == "synchronize");
    if is_sync && !settings.full && run.config.review.incremental && settings.diff_source == DiffSource::Api {
        if let (Some(gh), Some(pr), Some((_, m))) = (&run.github, &run.pr, &previous.summary) {
            if let Some(prev) = m.get("sha").filter(|s| *s != pr.head_sha) {
                match gh.compare_diff(prev, &pr.head_sha).await? {
                    Some(bytes) => {
                        let since = diff::parse(&bytes);
                        for path in narrow_to(review_diff.to_mut(), &since, selected_files) {
                            let reason = SkipReason::Excluded(format!("unchanged since {}", short(prev)));
                            skipped.push(Skipped { path, reason });
                        }
                        selected_files.retain(|&i| !review_diff.files[i].hunks.is_empty());
                        incremental_from = Some(prev.to_string());
                        log::info(&format!("incremental review: changes since {}", short(prev)));
                    }
                    None => log::warn(&format!(
                        "previous reviewed sha {} is gone (force-push?): reviewing the whole PR",
                        short(prev)
                    )),
                }
            }
        }
    }
    Ok(incremental_from)
}

/// Keeps, in each selected file of `diff`, only the hunks that overlap lines added or removed in
/// `since` (the diff between the last reviewed sha and the head). Returns the paths with
/// nothing left. Line numbers stay those of the full PR diff, so anchors remain valid.
fn narrow_to(diff: &mut Diff, since: &Diff, selected: &[usize]) -> Vec<String> {
    let mut changed: HashMap<&str, BTreeSet<u32>> = HashMap::new();
    for f in &since.files {
        let set = changed.entry(f.path()).or_default();
        for h in &f.hunks {
            for l in &h.lines {
                match l.kind {
                    LineKind::Added => {
                        set.extend(l.new_line);
                    }
                    // A removal touches the new file between its neighbours: mark the line after.
                    LineKind::Removed => {
                        set.insert(h.new_start.max(1));
                    }
                    LineKind::Context => {}
                }
            }
        }
    }
    let mut unchanged = vec![];
    for &i in selected {
        let f = &mut diff.files[i];
        let path = f.path().to_string();
        match changed.get(path.as_str()) {
            None => {
                f.hunks.clear();
                unchanged.push(path);
            }
            Some(lines) => {
                f.hunks.retain(|h| {
                    let end = h.new_start + h.new_lines.max(1);
                    lines.range(h.new_start..=end).next().is_some()
                });
                if f.hunks.is_empty() {
                    unchanged.push(path);
                }
            }
        }
    }
    unchanged
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::exit::Exit;
    use crate::review::tests::RENAMED;

    #[test]
    fn non_diffs_are_usage_errors_that_show_the_first_bytes_escaped() {
        let check = |bytes: &[u8], source: DiffSource| check_diff(bytes, &diff::parse(bytes), &source);
        let err = check(b"\x1b]0;title\x07 not a diff", DiffSource::File("x".into())).unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        let msg = err.source.to_string();
        assert!(msg.contains("not a unified diff") && msg.contains("\\u{1b}") && !msg.contains('\x1b'), "{msg}");
        assert!(check(b"", DiffSource::File("-".into())).is_err());
        assert!(check(b"", DiffSource::Api).is_ok(), "an empty PR is nothing to review, not a usage error");
        assert!(check(RENAMED.as_bytes(), DiffSource::File("x".into())).is_ok());
    }
}
