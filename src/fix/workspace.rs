//! Where the fix rounds write (`fix.workdir`, issue #17): a scratch `git worktree` detached at
//! HEAD (the default) or the checkout itself, restored whatever ends the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config;
use crate::context::Env;
use crate::edit::{self, FileChange};
use crate::env_vars as ev;
use crate::exit::{Exit, ExitError};
use crate::log;

/// Where the rounds write the model's edits and run verify (`fix.workdir`): a scratch work
/// tree at HEAD (the default), or the checkout itself with what to put back.
///
/// Whatever ends the run — success, an error, a dropped future on SIGINT/SIGTERM (`main`
/// drops the command's future before it exits 130/143) — dropping it removes the scratch tree,
/// or writes the checkout's files back as they were; [`Workspace::close`] does the same and
/// reports an error.
pub(crate) struct Workspace {
    /// The root the rounds read and write.
    pub(crate) root: PathBuf,
    scratch: Option<edit::checkout::ScratchTree>,
    /// Each touched path's content before the first round (`None`: it did not exist).
    pub(crate) originals: BTreeMap<String, Option<Vec<u8>>>,
    closed: bool,
}

impl Workspace {
    /// A scratch tree of `checkout` under `RUNNER_TEMP` (else the temp folder), or the checkout
    /// itself for `fix.workdir: in-place`.
    ///
    /// Errors: the scratch tree cannot be made (exit 1, with a `help:` naming `in-place`).
    pub(crate) fn open(checkout: &Path, workdir: config::Workdir, env: &Env) -> Result<Self, ExitError> {
        let scratch = match workdir {
            config::Workdir::InPlace => None,
            config::Workdir::Scratch => {
                let under = env.get(ev::RUNNER_TEMP).map_or_else(std::env::temp_dir, PathBuf::from);
                let tree = edit::checkout::ScratchTree::add(checkout, &under).map_err(|e| {
                    ExitError::new(
                        Exit::Failure,
                        anyhow::anyhow!(
                            "cannot make the scratch work tree the fix runs in: {e}\nhelp: set `fix.workdir: in-place` to edit the checkout itself"
                        ),
                    )
                })?;
                log::info(&format!("fix rounds run in a scratch work tree at HEAD: {}", tree.path().display()));
                Some(tree)
            }
        };
        let root = scratch.as_ref().map_or_else(|| checkout.to_path_buf(), |t| t.path().to_path_buf());
        Ok(Self { root, scratch, originals: BTreeMap::new(), closed: false })
    }

    /// Every touched path whose content now differs from its original.
    pub(crate) fn changes(&self) -> Vec<FileChange> {
        self.originals
            .iter()
            .filter_map(|(path, before)| {
                let now = std::fs::read(self.root.join(path)).ok();
                (now != *before).then(|| FileChange { path: path.clone(), before: before.clone(), after: now })
            })
            .collect()
    }

    /// Removes the scratch tree, or puts the checkout back as it was before the first round
    /// (all or nothing).
    pub(crate) fn close(&mut self) -> Result<(), String> {
        self.closed = true;
        if let Some(tree) = self.scratch.take() {
            return tree.remove();
        }
        let back: Vec<FileChange> =
            self.changes().into_iter().map(|c| FileChange { path: c.path, before: c.after, after: c.before }).collect();
        edit::write(&self.root, &back).map_err(|e| e.to_string())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.closed {
            // A signal or a panic: the verify command must not write after we restored.
            crate::boundary::process_group::kill_all();
            if let Err(e) = self.close() {
                log::error(&format!("cannot restore the checkout: {e}"));
            }
        }
    }
}
