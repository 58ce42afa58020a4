//! The job summary of a route [`Decision`].

use super::Decision;
use crate::output;

/// The job summary: a small table of the decision.
pub(crate) fn summary(d: &Decision) -> String {
    let cell = |s: &str| output::markdown::defang(s).replace('|', "\\|").replace('\n', " ");
    let mut md = String::from("### agentctl route\n\n| | |\n|---|---|\n");
    for (k, v) in d.outputs() {
        if !v.is_empty() {
            md.push_str(&format!("| {k} | {} |\n", cell(&v)));
        }
    }
    md
}
