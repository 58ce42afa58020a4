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
        let line: Line =
            serde_json::from_str(raw).map_err(|e| err(field_error(raw).unwrap_or_else(|| e.to_string())))?;
        if line.id.trim().is_empty() {
            return Err(err("`id` is empty".into()));
        }
        line.record.check().map_err(|p| err(p.to_string()))?;
        out.push((line.id, line.record));
    }
    Ok(out)
}

/// The numeric fields of a line (`usage.` ones nested), for a parse error that names the
/// field (serde's message does not, through the flattened record).
const NUMBER_FIELDS: [&str; 10] = [
    "ts_ms",
    "pr",
    "latency_ms",
    "cost_usd",
    "usage.input_tokens",
    "usage.cached_input_tokens",
    "usage.cache_write_tokens",
    "usage.cache_write_1h_tokens",
    "usage.output_tokens",
    "usage.reasoning_tokens",
];

/// On a line that did not parse as a record: the first numeric field holding a negative or
/// fractional count (`"usage": {"input_tokens": -5}`), named; `None` when that is not the
/// problem.
fn field_error(raw: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    NUMBER_FIELDS.iter().find_map(|field| {
        let v = field.split('.').try_fold(&value, |v, key| v.get(key))?;
        match (*field, v) {
            (_, serde_json::Value::Null) | ("cost_usd", serde_json::Value::Number(_)) => None,
            ("ts_ms", serde_json::Value::Number(n)) if n.is_i64() => None,
            (_, serde_json::Value::Number(n)) if n.is_u64() => None,
            (_, serde_json::Value::Number(n)) => Some(format!("`{field}` is {n}; it must be a whole number ≥ 0")),
            _ => Some(format!("`{field}` must be a number")),
        }
    })
}

/// The largest total of decompressed bytes read from one zip (an artifact): usage JSONL of a
/// run is kilobytes, so this only stops a zip bomb.
pub const MAX_UNZIPPED_BYTES: u64 = 512 * 1024 * 1024;

/// A zip that could not be read as usage JSONL.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: not a usable zip of usage JSON Lines: {message}")]
pub struct ZipError {
    /// What the zip was (an artifact's name and id).
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

/// The `.jsonl` files of a zip archive (as `actions/upload-artifact` builds them; other files
/// are ignored) as `(entry name, text)`, in archive order, at most [`MAX_UNZIPPED_BYTES`] in all.
///
/// Errors: not a zip, an unsupported compression, a file that is not UTF-8, too much data.
pub fn jsonl_in_zip(bytes: &[u8], source_name: &str) -> Result<Vec<(String, String)>, ZipError> {
    use std::io::Read as _;
    let err = |message: String| ZipError { source_name: source_name.to_owned(), message };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| err(e.to_string()))?;
    let mut budget = MAX_UNZIPPED_BYTES;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| err(e.to_string()))?;
        // The name is attacker-written: shown only with control characters replaced.
        let name: String = entry.name().chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        if entry.is_dir() || !name.ends_with(".jsonl") {
            continue;
        }
        let mut raw = Vec::new();
        entry.take(budget + 1).read_to_end(&mut raw).map_err(|e| err(format!("{name}: {e}")))?;
        budget = budget
            .checked_sub(raw.len() as u64)
            .ok_or_else(|| err(format!("more than {MAX_UNZIPPED_BYTES} bytes unzipped")))?;
        let text = String::from_utf8(raw).map_err(|_| err(format!("{name} is not UTF-8 text")))?;
        out.push((name, text));
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
            cached: false,
        }
    }

    #[test]
    fn a_zip_gives_its_jsonl_files_and_a_non_zip_is_an_error_naming_it() {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("a\nb.jsonl", opts).unwrap();
        zip.write_all(to_line("a1", &record()).as_bytes()).unwrap();
        zip.start_file("notes.txt", opts).unwrap();
        zip.write_all(b"x").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let files = jsonl_in_zip(&bytes, "artifact 1").unwrap();
        assert_eq!(files, vec![("a?b.jsonl".to_owned(), to_line("a1", &record()))], "control characters replaced");
        let e = jsonl_in_zip(b"not a zip", "artifact 2").unwrap_err();
        assert!(e.to_string().starts_with("artifact 2: not a usable zip"), "{e}");
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

    /// Regression: `cost_usd: -1e9` was imported and turned a blocked budget into "ok".
    #[test]
    fn negative_costs_and_negative_or_absurd_token_counts_are_refused_naming_line_and_field() {
        let good = to_line("a1", &record());
        let mut negative = record();
        negative.cost_usd = Some(-1e9);
        let text = format!("{good}{}", to_line("b2", &negative));
        let e = parse(&text, "u.jsonl").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("`cost_usd` is negative"), "{e}");
        let mut absurd = record();
        absurd.usage.output_tokens = u64::MAX;
        let e = parse(&to_line("c3", &absurd), "u.jsonl").unwrap_err();
        assert!(e.message.contains("`usage.output_tokens`"), "{e}");
        let minus = good.replace("\"input_tokens\":7", "\"input_tokens\":-7");
        assert_ne!(minus, good);
        let e = parse(&minus, "u.jsonl").unwrap_err();
        assert!(e.message.contains("`usage.input_tokens` is -7"), "{e}");
        let overflow = good.replace("\"cost_usd\":null", "\"cost_usd\":1e999");
        assert_ne!(overflow, good);
        assert!(parse(&overflow, "u.jsonl").is_err());
    }
}
