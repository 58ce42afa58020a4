//! Stage 4 of a review: the findings of the builtin rules and the model, merged,
//! de-duplicated and anchored (inline only where GitHub accepts a comment).

use std::collections::BTreeSet;

use crate::diff::{self, AnchorIndex};
use crate::findings::{Finding, Side};
use crate::report::{PlacedFinding, Placement};

/// Step 7: de-duplicates, drops findings that cannot be real (line 0 is refused by the schema;
/// a start after the end is swapped), places each, keeps the most severe inline up to `cap`.
pub(crate) fn place_findings(mut findings: Vec<Finding>, anchors: &AnchorIndex, cap: usize) -> Vec<PlacedFinding> {
    // Most severe first, then by position, so that of two duplicates the more severe is kept
    // and the cap keeps what matters (a stable sort keeps the chunks' order otherwise).
    findings.sort_by(|a, b| (a.severity, &a.path, a.line).cmp(&(b.severity, &b.path, b.line)));
    let mut seen = BTreeSet::new();
    let mut unique: Vec<Finding> = vec![];
    for mut f in findings {
        if let Some(s) = f.start_line {
            if s > f.line {
                f.start_line = Some(f.line);
                f.line = s;
            }
            if f.start_line == Some(f.line) {
                f.start_line = None;
            }
        }
        let key = (f.path.clone(), f.side, f.line, f.title.trim().to_lowercase());
        if seen.insert(key) {
            unique.push(f);
        }
    }
    let mut inline = 0;
    unique
        .into_iter()
        .map(|mut f| {
            let placement = match anchors.place(&f) {
                diff::Anchor::Inline { path, line, start_line, side } if inline < cap => {
                    inline += 1;
                    // A suggestion replaces exactly the commented range: keep it only when the
                    // range survived placement unchanged and is on the new side.
                    if f.suggestion.is_some() && (start_line != f.start_line || side != Side::Right || line != f.line) {
                        f.suggestion = None;
                    }
                    // The anchor's path: a finding on a renamed file's old path is posted under
                    // the path GitHub's diff shows, or GitHub refuses the whole batch.
                    f.path = path;
                    f.line = line;
                    f.start_line = start_line;
                    f.side = side;
                    Placement::Inline
                }
                diff::Anchor::Inline { .. } | diff::Anchor::File { .. } => Placement::File,
                diff::Anchor::Body => Placement::Body,
            };
            PlacedFinding { finding: f, placement }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::findings::Severity;
    use crate::review::tests::RENAMED;

    fn finding(path: &str, line: u32) -> Finding {
        Finding {
            path: path.into(),
            line,
            start_line: None,
            side: Side::Right,
            severity: Severity::High,
            category: "bug".into(),
            title: format!("t{line}"),
            body: String::new(),
            suggestion: None,
            origin: None,
        }
    }

    #[test]
    fn inline_path_of_a_renamed_file_was_the_old_path() {
        let diff = diff::parse(RENAMED.as_bytes());
        let mut on_old_side = finding("old/name.rs", 1);
        on_old_side.side = Side::Left;
        let placed = place_findings(vec![on_old_side], &AnchorIndex::new(&diff), 10);
        assert_eq!(placed[0].placement, Placement::Inline);
        assert_eq!(placed[0].finding.path, "new/name.rs", "GitHub only knows the new path");
    }

    #[test]
    fn findings_are_deduplicated_capped_most_severe_first_and_placed() {
        let diff = diff::parse(RENAMED.as_bytes());
        let mut low_twin = finding("src/x.rs", 2);
        low_twin.severity = Severity::Low;
        let mut low = finding("src/x.rs", 2);
        low.severity = Severity::Low;
        low.title = "another".into();
        // The duplicate of lower severity comes first: the more severe one is kept.
        let findings = vec![low_twin, low, finding("src/x.rs", 2), finding("src/x.rs", 2), finding("nowhere.rs", 1)];
        let placed = place_findings(findings, &AnchorIndex::new(&diff), 1);
        let got: Vec<(&str, Severity, Placement)> =
            placed.iter().map(|p| (p.finding.path.as_str(), p.finding.severity, p.placement)).collect();
        assert_eq!(
            got,
            [
                ("nowhere.rs", Severity::High, Placement::Body),
                ("src/x.rs", Severity::High, Placement::Inline),
                ("src/x.rs", Severity::Low, Placement::File)
            ]
        );
    }
}
