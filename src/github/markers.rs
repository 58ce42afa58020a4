//! Hidden markers that make every create idempotent: `<!-- agentctl:KIND:v1 key=value ... -->`
//! is embedded in each body we post and looked up before writing, so a re-run updates or skips
//! instead of posting twice.

use std::collections::BTreeMap;

/// A parsed marker: its kind (`summary`, `review`, ...) and key/value fields (no spaces in
/// values; `sha=...`, `base=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub kind: String,
    pub fields: BTreeMap<String, String>,
}

impl Marker {
    /// A marker of `kind` with `fields`.
    pub fn new(kind: &str, fields: &[(&str, &str)]) -> Self {
        Self { kind: kind.to_string(), fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// Renders `<!-- agentctl:KIND:v1 k=v ... -->`.
    pub fn render(&self) -> String {
        let mut s = format!("<!-- agentctl:{}:v1", self.kind);
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push_str(" -->");
        s
    }

    /// Finds the first marker of `kind` in `body`.
    pub fn find(body: &str, kind: &str) -> Option<Marker> {
        let prefix = format!("<!-- agentctl:{kind}:v1");
        let start = body.find(&prefix)?;
        let rest = &body[start + prefix.len()..];
        let end = rest.find("-->")?;
        let fields = rest[..end]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Marker { kind: kind.to_string(), fields })
    }

    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_through_a_comment_body() {
        let m = Marker::new("summary", &[("sha", "abc123"), ("base", "def")]);
        let body = format!("## Review\n\ntext\n\n{}\n", m.render());
        let found = Marker::find(&body, "summary").expect("marker");
        assert_eq!(found, m);
        assert_eq!(found.get("sha"), Some("abc123"));
        assert!(Marker::find(&body, "review").is_none());
    }
}
