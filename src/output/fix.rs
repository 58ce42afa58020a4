//! The draft PR of `agentctl fix` (SPEC §3.2): its title and its body, as markdown. The fix
//! domain fills [`PrBody`] with plain values; untrusted text in it (the model's explanation,
//! paths, reasons, a fork's name) is defanged here.

use super::markdown::defang;

/// Everything the fix PR's body says. Shapes only: the fix domain fills it.
#[derive(Debug, Clone)]
pub struct PrBody<'a> {
    /// The issue or PR fixed; 0 for a fix from `--instructions` alone (no `Fixes`/`Refs` line).
    pub number: u64,
    /// On a pull request from a fork: where the draft starts.
    pub fork: Option<ForkHead<'a>>,
    /// The model's explanation (untrusted; may be empty).
    pub explanation: &'a str,
    /// What `fix.verify` said.
    pub verification: Verification<'a>,
    /// Rounds whose answer is part of the fix.
    pub rounds: u32,
    /// Input tokens of every call, cached ones included.
    pub input_tokens: u64,
    /// Output tokens of every call.
    pub output_tokens: u64,
    /// USD; `None` when a call had no known price.
    pub cost_usd: Option<f64>,
    /// The files changed, in the fix's order.
    pub changes: Vec<Change<'a>>,
    /// Entries of the model's answers that were not applied.
    pub refused: Vec<RefusedEdit<'a>>,
    /// What applying the edits noted (untrusted paths inside).
    pub notes: &'a [String],
}

/// The head a fork's pull request is fixed from.
#[derive(Debug, Clone, Copy)]
pub struct ForkHead<'a> {
    /// The fork's `owner/name` (or `a deleted repository`).
    pub repo: &'a str,
    /// The pull request's number.
    pub number: u64,
    /// Its head commit (40 hex digits; 12 are shown).
    pub head_sha: &'a str,
}

/// The verify command's part of the body.
#[derive(Debug, Clone)]
pub enum Verification<'a> {
    /// It ran: `command` as configured, `result` its one-line description
    /// (`passed in 1.2 s`, `failed with exit code 1`, …).
    Ran { command: &'a str, result: String, passed: bool },
    /// Configured, but no change was applied to run it on.
    NotRun { command: &'a str },
    /// No `fix.verify` is configured.
    Unconfigured,
}

/// One changed file.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Repository-relative, `/`-separated.
    pub path: &'a str,
    /// What became of it.
    pub kind: ChangeKind,
}

/// What became of a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// It did not exist before.
    Added,
    /// It no longer exists.
    Deleted,
    /// Its content changed.
    Modified,
}

/// An entry of an answer that was not applied.
#[derive(Debug, Clone, Copy)]
pub struct RefusedEdit<'a> {
    /// The round whose answer held it.
    pub round: u32,
    /// Which entry: `edit 3`, `rewrite`, `new file`, `deletion`.
    pub entry: &'a str,
    /// The path as the model wrote it.
    pub path: &'a str,
    /// Why.
    pub reason: &'a str,
}

/// The PR title: `Fix #N: ` and the issue's title on one line.
pub fn title(number: u64, issue_title: &str) -> String {
    format!("Fix #{number}: {}", one_line(issue_title))
}

/// The PR body: explanation, verify result, rounds, tokens and USD, files, refused entries.
/// Untrusted text (the model's explanation, paths, reasons) is defanged.
pub fn pr_body(b: &PrBody<'_>) -> String {
    let n = b.number;
    let mut s = String::new();
    if n > 0 {
        let verified = matches!(b.verification, Verification::Ran { passed: true, .. });
        s.push_str(&if verified { format!("Fixes #{n}\n\n") } else { format!("Refs #{n}\n\n") });
    }
    if let Some(f) = &b.fork {
        s.push_str(&format!(
            "This draft starts at the head of #{} from the fork `{}` ({}), so it also carries that pull request's commits; merging it supersedes #{}.\n\n",
            f.number,
            defang(&one_line(f.repo)),
            f.head_sha.get(..12).unwrap_or(f.head_sha),
            f.number
        ));
    }
    s.push_str("### What changed\n\n");
    s.push_str(&defang(if b.explanation.is_empty() { "(the model gave no explanation)" } else { b.explanation }));
    s.push_str("\n\n### Verification\n\n");
    match &b.verification {
        Verification::Ran { command, result, passed } => {
            s.push_str(&format!("`{}` {result}.\n", defang(command)));
            if !passed {
                s.push_str("\n**Not verified**: review the change carefully.\n");
            }
        }
        Verification::NotRun { command } => {
            s.push_str(&format!("`{}` was not run (no change was applied).\n", defang(command)))
        }
        Verification::Unconfigured => s.push_str("**Unverified**: no `fix.verify` command is configured.\n"),
    }
    s.push_str(&format!(
        "\n### Run\n\n- rounds: {}\n- tokens: {} in, {} out\n- cost: {}\n- files changed: {}\n",
        b.rounds,
        b.input_tokens,
        b.output_tokens,
        b.cost_usd.map_or("unknown (unpriced model)".into(), |c| format!("${c:.4}")),
        b.changes.len()
    ));
    for c in &b.changes {
        let what = match c.kind {
            ChangeKind::Added => "added",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Modified => "modified",
        };
        s.push_str(&format!("  - `{}` ({what})\n", defang(c.path)));
    }
    if !b.refused.is_empty() {
        s.push_str("\n### Refused edits\n\n");
        for r in &b.refused {
            s.push_str(&format!(
                "- round {}, {} of `{}`: {}\n",
                r.round,
                r.entry,
                defang(&one_line(r.path)),
                defang(&one_line(r.reason))
            ));
        }
    }
    if !b.notes.is_empty() {
        s.push_str("\n### Notes\n\n");
        for note in b.notes {
            s.push_str(&format!("- {}\n", defang(&one_line(note))));
        }
    }
    s.push_str("\nThis draft was written by a model and applied by agentctl; commands in the issue or the answer were not run.\n");
    s
}

/// `s` on one line, at most 120 characters.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unverified_body_says_refs_and_puts_untrusted_lines_on_one_line() {
        let notes = vec!["a.sh: edit 1:\nchanges nothing".to_string()];
        let body = pr_body(&PrBody {
            number: 7,
            fork: None,
            explanation: "",
            verification: Verification::Ran {
                command: "sh check.sh",
                result: "failed with exit code 1".into(),
                passed: false,
            },
            rounds: 2,
            input_tokens: 1800,
            output_tokens: 240,
            cost_usd: None,
            changes: vec![Change { path: "a.sh", kind: ChangeKind::Modified }],
            refused: vec![RefusedEdit { round: 1, entry: "edit 2", path: "b.sh", reason: "no\nmatch" }],
            notes: &notes,
        });
        assert!(body.starts_with("Refs #7\n\n### What changed\n\n(the model gave no explanation)\n"), "{body}");
        assert!(body.contains("**Not verified**"), "{body}");
        assert!(
            body.contains("- cost: unknown (unpriced model)\n- files changed: 1\n  - `a.sh` (modified)\n"),
            "{body}"
        );
        assert!(body.contains("- round 1, edit 2 of `b.sh`: no match\n"), "{body}");
        assert!(body.contains("- a.sh: edit 1: changes nothing\n"), "{body}");
        assert_eq!(title(7, "add.sh\n  subtracts"), "Fix #7: add.sh subtracts");
    }
}
