//! SARIF 2.1.0 for GitHub code scanning (OASIS SARIF v2.1.0; GitHub's "SARIF support for code
//! scanning": <https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning>).
//!
//! One result per finding. Levels: critical/high → `error`, medium → `warning`, low/info →
//! `note`; `security-severity` is set on security findings so code scanning ranks them. A
//! finding on a removed line (LEFT side) has no line in the current file, so it gets a
//! file-level location and says so in its message. `partialFingerprints` keep alerts stable
//! across re-runs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::findings::{Finding, Origin, Severity, Side};
use crate::report::ReviewReport;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// Rule id: the builtin rule's id, else `agentctl/<category>` for model findings.
fn rule_id(f: &Finding) -> String {
    match &f.origin {
        Some(Origin::Rule { id }) => id.clone(),
        _ => {
            let cat: String = f
                .category
                .trim()
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("agentctl/{}", if cat.is_empty() { "general".into() } else { cat })
        }
    }
}

/// FNV-1a 64-bit, for a stable fingerprint without a hashing dependency.
fn fnv1a(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The SARIF log for the report's findings, pretty-printed.
pub fn render(report: &ReviewReport) -> String {
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = vec![];
    for p in &report.findings {
        let f = &p.finding;
        let id = rule_id(f);
        let is_security = f.category.eq_ignore_ascii_case("security");
        rules.entry(id.clone()).or_insert_with(|| {
            let mut props = json!({ "tags": [f.category.to_lowercase()] });
            if is_security {
                props["security-severity"] = json!(security_severity(f.severity));
            }
            json!({
                "id": id,
                "name": id.replace('/', "-"),
                "shortDescription": { "text": format!("agentctl {}", f.category) },
                "defaultConfiguration": { "level": level(f.severity) },
                "properties": props,
            })
        });
        let mut text = format!("{}\n\n{}", f.title.trim(), f.body.trim());
        let mut location = json!({ "artifactLocation": { "uri": f.path, "uriBaseId": "%SRCROOT%" } });
        match f.side {
            Side::Right => {
                location["region"] = json!({ "startLine": f.start_line.unwrap_or(f.line), "endLine": f.line });
            }
            Side::Left => text.push_str(&format!("\n\n(On line {} of the previous version of the file.)", f.line)),
        }
        results.push(json!({
            "ruleId": id,
            "level": level(f.severity),
            "message": { "text": text.trim() },
            "locations": [ { "physicalLocation": location } ],
            "partialFingerprints": { "agentctlFinding/v1": fnv1a(&format!("{}|{}|{}", f.path, id, f.title.trim().to_lowercase())) },
            "properties": { "severity": f.severity.as_str(), "category": f.category },
        }));
    }
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "agentctl",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/agentctl/agentctl",
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "automationDetails": { "id": format!("agentctl/review/{}", report.head_sha.as_deref().unwrap_or("local")) },
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&log).unwrap_or_default();
    s.push('\n');
    s
}
