//! Builtin offline rules: deterministic checks on the added lines of a diff. They run on every
//! review, whatever the provider, and their findings are real findings with stable rule ids.
//!
//! | id    | rule                                   | severity |
//! |-------|----------------------------------------|----------|
//! | AC001 | leaked secret (token patterns)         | critical |
//! | AC002 | merge-conflict marker                  | high     |
//! | AC003 | debug leftover (`dbg!`, `console.log`, `breakpoint()`, `debugger;`, `pdb.set_trace()`) | low |
//! | AC004 | added TODO / FIXME / XXX               | info     |
//! | AC005 | very large addition (file over the size limit) | medium |

use crate::diff::Diff;
use crate::findings::Finding;

/// Options for the rules.
#[derive(Debug, Clone, Copy)]
pub struct RuleOptions {
    /// AC005 fires when a file adds more than this many lines.
    pub max_added_lines: usize,
}

impl Default for RuleOptions {
    fn default() -> Self {
        Self { max_added_lines: 1000 }
    }
}

/// Runs every rule over the added lines of `files` (indices into `diff.files`). Findings are on
/// the RIGHT side at the added line; secret values never appear in a finding's text.
pub fn scan(diff: &Diff, files: &[usize], opts: &RuleOptions) -> Vec<Finding> {
    let _ = (diff, files, opts);
    todo!()
}
