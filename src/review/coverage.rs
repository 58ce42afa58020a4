//! Stage 5 of a review: which files were reviewed, partly reviewed and not reviewed — three
//! disjoint lists that add up to the files of the diff.

use std::collections::BTreeSet;

use crate::diff::{Diff, Skipped};
use crate::report::NotReviewed;
use crate::review::ask::ModelPass;

/// Stage 5: every file of the diff in exactly one of three lists — reviewed (every selected
/// line answered for), partly reviewed (some lines answered for, some not, with why) and not
/// reviewed (skipped by the filter, or no line answered for, with why) — so the counts add up
/// to the files in the diff.
pub(crate) fn coverage(
    diff: &Diff,
    selected: &[usize],
    skipped: &[Skipped],
    round: &ModelPass,
) -> (Vec<String>, Vec<NotReviewed>, Vec<NotReviewed>) {
    let mut reviewed = vec![];
    let mut partly = vec![];
    let mut not_reviewed: Vec<NotReviewed> = vec![];
    let mut listed = BTreeSet::new();
    for s in skipped {
        if listed.insert(s.path.clone()) {
            not_reviewed.push(NotReviewed::from(s));
        }
    }
    for &i in selected {
        let path = diff.files[i].path().to_string();
        if !listed.insert(path.clone()) {
            continue;
        }
        let reasons = round.missing.get(&i).map(|r| {
            let unique: BTreeSet<&String> = r.iter().collect();
            unique.into_iter().cloned().collect::<Vec<_>>().join("; ")
        });
        match (reasons, round.answered.contains(&i)) {
            (None, _) => reviewed.push(path),
            (Some(reason), true) => partly.push(NotReviewed { path, reason }),
            (Some(reason), false) => not_reviewed.push(NotReviewed { path, reason }),
        }
    }
    (reviewed, partly, not_reviewed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::diff::{self, SkipReason};
    use crate::review::tests::RENAMED;

    #[test]
    fn counts_that_misled_reviewed_partly_and_not_reviewed_are_disjoint_and_add_up() {
        let diff = diff::parse(RENAMED.as_bytes());
        let skipped = vec![Skipped { path: "Cargo.lock".into(), reason: SkipReason::Excluded("lock".into()) }];
        let mut round = ModelPass { answered: [0].into(), ..ModelPass::default() };
        // File 0 answered but partly over budget; file 1 not answered at all.
        round.missing.insert(0, vec!["over budget".into(), "over budget".into()]);
        round.missing.insert(1, vec!["provider error: down".into()]);
        let (reviewed, partly, not) = coverage(&diff, &[0, 1], &skipped, &round);
        assert!(reviewed.is_empty());
        assert_eq!(partly, [NotReviewed { path: "new/name.rs".into(), reason: "over budget".into() }]);
        let not: Vec<&str> = not.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(not, ["Cargo.lock", "src/x.rs"]);
        // Builtin only: every selected file is reviewed.
        let (reviewed, partly, not) = coverage(&diff, &[0, 1], &[], &ModelPass::builtin_only(&diff, &[0, 1]));
        assert_eq!((reviewed.len(), partly.len(), not.len()), (2, 0, 0));
    }
}
