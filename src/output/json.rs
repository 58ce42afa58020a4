//! JSON rendering (`--format json`): the review report as one pretty-printed object, stable
//! field names (see `ReviewReport`).

use crate::report::ReviewReport;

/// The report as pretty JSON with a trailing newline.
pub fn report(report: &ReviewReport) -> String {
    // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
    let mut s = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
