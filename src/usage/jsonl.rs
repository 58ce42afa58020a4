//! The JSON Lines form of usage records (`cost export`, `cost import`, `review --usage-out`):
//! one object per line, the [`UsageRecord`] fields plus `id`, the record's stable id in the
//! ledger, so importing the same lines twice adds nothing. Hosted runners lose their ledger
//! with the machine; these lines are how their usage reaches a shared one.

use serde::{Deserialize, Serialize};

use crate::usage::UsageRecord;

/// One line: the stable id and the record's fields, flattened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Stable id (32 hex digits for records agentctl wrote; any non-empty string is accepted).
    pub id: String,
    /// The record.
    #[serde(flatten)]
    pub record: UsageRecord,
}

/// A line that is not a usage record. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: not a usage record: {message}\nhelp: each line must be one JSON object as written by `agentctl cost export` (a truncated file? nothing from it was imported)")]
pub struct JsonlError {
    /// The file (or `stdin`).
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    /// What the parser said.
    pub message: String,
}

/// `record` under `id` as one line of JSON with a trailing newline.
pub fn to_line(id: &str, record: &UsageRecord) -> String {
    let mut s = serde_json::to_string(&Line { id: id.to_owned(), record: record.clone() }).unwrap_or_default();
    s.push('\n');
    s
}

/// Parses every line of `text` (blank lines are skipped). All or nothing: the first bad line
/// is the error, so a caller never imports half a file.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<(String, UsageRecord)>, JsonlError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let err = |message: String| JsonlError { source_name: source_name.to_owned(), line: i + 1, message };
        let line: Line = serde_json::from_str(raw).map_err(|e| err(e.to_string()))?;
        if line.id.trim().is_empty() {
            return Err(err("`id` is empty".into()));
        }
        out.push((line.id, line.record));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn record() -> UsageRecord {
        UsageRecord {
            ts_ms: 5,
            repo: Some("o/r".into()),
            workflow: None,
            run_id: None,
            job: None,
            pr: Some(3),
            task: "review".into(),
            provider: "main".into(),
            model: "gpt-4o".into(),
            usage: Usage { input_tokens: 7, ..Usage::default() },
            cost_usd: None,
            cost_source: Default::default(),
            price_table: None,
            latency_ms: 2,
            outcome: "ok".into(),
        }
    }

    #[test]
    fn lines_round_trip_and_a_truncated_line_names_its_number() {
        let text = format!("{}\n{}", to_line("a1", &record()), to_line("b2", &record()));
        let parsed = parse(&text, "u.jsonl").unwrap();
        assert_eq!(parsed, vec![("a1".into(), record()), ("b2".into(), record())]);
        let cut = &text[..text.len() - 20];
        let e = parse(cut, "u.jsonl").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().starts_with("u.jsonl:3: not a usage record"), "{e}");
        assert!(parse("{\"id\": \"\"}", "x").is_err());
    }
}
