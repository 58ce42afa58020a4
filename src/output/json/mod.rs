//! JSON rendering (`--format json`): the review report as one pretty-printed object in the
//! frozen [`v1`] wire shape (and `route`'s decision, [`v1::RouteDecision`]).

pub mod v1;

use crate::report::ReviewReport;

/// The report as pretty JSON ([`v1::Review`]) with a trailing newline.
pub fn report(report: &ReviewReport) -> String {
    pretty(&v1::Review::from(report))
}

/// `value` as pretty JSON with a trailing newline.
fn pretty(value: &impl serde::Serialize) -> String {
    // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
