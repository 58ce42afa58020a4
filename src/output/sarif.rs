//! SARIF 2.1.0 for GitHub code scanning (OASIS SARIF v2.1.0; GitHub's "SARIF support for code
//! scanning": <https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning>).
//!
//! One result per finding. Levels: critical/high → `error`, medium → `warning`, low/info →
//! `note`; `security-severity` is set on security findings so code scanning ranks them. A
//! finding on a removed line (LEFT side) has no line in the current file, so it gets a
//! file-level location and says so in its message. `partialFingerprints` keep alerts stable
//! across re-runs.
//!
//! The log is typed ([`Log`] and below: the part of the SARIF 2.1.0 object model we write, named
//! as the spec names it: sarifLog, run, tool/toolComponent, reportingDescriptor, result,
//! location, region, property bags). NOTE: every struct lists its fields in alphabetical order,
//! which is the order the file has always had (it was built as a sorted JSON map): keep new
//! fields in that order so the bytes of a given log do not move.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::findings::{Finding, Origin, Severity, Side};
use crate::report::ReviewReport;

fn level(s: Severity) -> Level {
    match s {
        Severity::Critical | Severity::High => Level::Error,
        Severity::Medium => Level::Warning,
        Severity::Low | Severity::Info => Level::Note,
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

/// `sarifLog` (SARIF 2.1.0 §3.13): the file.
#[derive(Debug, Serialize)]
pub(crate) struct Log {
    /// The schema URI (§3.13.3).
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    /// One run: this review (§3.13.4).
    pub runs: Vec<Run>,
    /// Always `2.1.0` (§3.13.2).
    pub version: &'static str,
}

/// `run` (§3.14): one invocation of agentctl.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Run {
    /// `runAutomationDetails` (§3.17): `agentctl/review/<head sha>`; GitHub groups uploads by it.
    pub automation_details: AutomationDetails,
    pub results: Vec<SarifResult>,
    pub tool: Tool,
}

/// `runAutomationDetails` (§3.17).
#[derive(Debug, Serialize)]
pub(crate) struct AutomationDetails {
    pub id: String,
}

/// `tool` (§3.18): agentctl as the driver.
#[derive(Debug, Serialize)]
pub(crate) struct Tool {
    pub driver: Driver,
}

/// `toolComponent` (§3.19) of the driver: name, version, home page and the rules.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Driver {
    pub information_uri: &'static str,
    pub name: &'static str,
    /// One per rule id, sorted by id.
    pub rules: Vec<Rule>,
    pub version: &'static str,
}

/// `reportingDescriptor` (§3.49): a rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rule {
    pub default_configuration: Configuration,
    /// The builtin rule's id, or `agentctl/<category>`.
    pub id: String,
    /// The id with `/` as `-`.
    pub name: String,
    pub properties: RuleProperties,
    pub short_description: Message,
}

/// `reportingConfiguration` (§3.50): the rule's default level.
#[derive(Debug, Serialize)]
pub(crate) struct Configuration {
    pub level: Level,
}

/// A rule's property bag: GitHub reads `tags` and, on security rules, `security-severity`
/// (a number from 0.0 to 10.0 as a string) to rank alerts.
#[derive(Debug, Serialize)]
pub(crate) struct RuleProperties {
    #[serde(rename = "security-severity", skip_serializing_if = "Option::is_none")]
    pub security_severity: Option<&'static str>,
    pub tags: Vec<String>,
}

/// `level` (§3.27.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Error,
    Warning,
    Note,
}

/// `message` / `multiformatMessageString` (§3.11, §3.12): plain text.
#[derive(Debug, Serialize)]
pub(crate) struct Message {
    pub text: String,
}

/// `result` (§3.27): one finding.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SarifResult {
    pub level: Level,
    /// One location.
    pub locations: Vec<Location>,
    pub message: Message,
    /// `agentctlFinding/v1` → a hash of path, rule id and title (§3.27.17).
    pub partial_fingerprints: BTreeMap<&'static str, String>,
    pub properties: ResultProperties,
    pub rule_id: String,
}

/// A result's property bag: the finding's own severity and category.
#[derive(Debug, Serialize)]
pub(crate) struct ResultProperties {
    pub category: String,
    pub severity: &'static str,
}

/// `location` (§3.28).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Location {
    pub physical_location: PhysicalLocation,
}

/// `physicalLocation` (§3.29): the file and, on the new side, its lines.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PhysicalLocation {
    pub artifact_location: ArtifactLocation,
    /// Left out for a finding on a removed line: the current file has no such line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

/// `artifactLocation` (§3.4): the path relative to `%SRCROOT%`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArtifactLocation {
    pub uri: String,
    pub uri_base_id: &'static str,
}

/// `region` (§3.30): 1-based lines, inclusive.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Region {
    pub end_line: u32,
    pub start_line: u32,
}

/// The SARIF log for the report's findings, pretty-printed.
pub fn render(report: &ReviewReport) -> String {
    let mut s = serde_json::to_string_pretty(&log(report)).unwrap_or_default();
    s.push('\n');
    s
}

/// The SARIF log for the report's findings: a rule per rule id, a result per finding.
pub(crate) fn log(report: &ReviewReport) -> Log {
    let mut rules: BTreeMap<String, Rule> = BTreeMap::new();
    let mut results = vec![];
    for p in &report.findings {
        let f = &p.finding;
        let id = rule_id(f);
        let is_security = f.category.eq_ignore_ascii_case("security");
        rules.entry(id.clone()).or_insert_with(|| Rule {
            default_configuration: Configuration { level: level(f.severity) },
            id: id.clone(),
            name: id.replace('/', "-"),
            properties: RuleProperties {
                security_severity: is_security.then(|| security_severity(f.severity)),
                tags: vec![f.category.to_lowercase()],
            },
            short_description: Message { text: format!("agentctl {}", f.category) },
        });
        let mut text = format!("{}\n\n{}", f.title.trim(), f.body.trim());
        let region = match f.side {
            Side::Right => Some(Region { end_line: f.line, start_line: f.start_line.unwrap_or(f.line) }),
            Side::Left => {
                text.push_str(&format!("\n\n(On line {} of the previous version of the file.)", f.line));
                None
            }
        };
        let fingerprint = fnv1a(&format!("{}|{}|{}", f.path, id, f.title.trim().to_lowercase()));
        results.push(SarifResult {
            level: level(f.severity),
            locations: vec![Location {
                physical_location: PhysicalLocation {
                    artifact_location: ArtifactLocation { uri: f.path.clone(), uri_base_id: "%SRCROOT%" },
                    region,
                },
            }],
            message: Message { text: text.trim().to_string() },
            partial_fingerprints: BTreeMap::from([("agentctlFinding/v1", fingerprint)]),
            properties: ResultProperties { category: f.category.clone(), severity: f.severity.as_str() },
            rule_id: id,
        });
    }
    Log {
        schema: "https://json.schemastore.org/sarif-2.1.0.json",
        runs: vec![Run {
            automation_details: AutomationDetails {
                id: format!("agentctl/review/{}", report.head_sha.as_deref().unwrap_or("local")),
            },
            results,
            tool: Tool {
                driver: Driver {
                    information_uri: "https://github.com/agentctl/agentctl",
                    name: "agentctl",
                    rules: rules.into_values().collect(),
                    version: env!("CARGO_PKG_VERSION"),
                },
            },
        }],
        version: "2.1.0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PlacedFinding, Placement, PostStatus, RenderedReview, ReviewAction, Verdict};

    fn report(findings: Vec<Finding>) -> ReviewReport {
        ReviewReport {
            repository: None,
            pr: None,
            head_sha: None,
            base_sha: None,
            incremental_from: None,
            provider: "main".into(),
            models: vec![],
            overview: String::new(),
            findings: findings
                .into_iter()
                .map(|finding| PlacedFinding { finding, placement: Placement::File })
                .collect(),
            files_reviewed: vec![],
            partly_reviewed: vec![],
            not_reviewed: vec![],
            chunks: 1,
            chunks_from_cache: 0,
            usage: Default::default(),
            cost_usd: None,
            price_table: String::new(),
            review: RenderedReview {
                commit_id: String::new(),
                body: String::new(),
                event: ReviewAction::Comment,
                comments: vec![],
            },
            summary_comment: String::new(),
            review_url: None,
            status: PostStatus::DryRun,
            verdict: Verdict::Pass,
            fail_on: None,
            resilience: Default::default(),
        }
    }

    /// A model finding on a removed line (no region, said in the message), a range on the new
    /// side, a category that is not a rule id: the bytes the `json!` builder wrote.
    #[test]
    fn left_side_and_model_findings_render_as_before() {
        let finding = |line, start_line, side, category: &str| Finding {
            path: "src/a.rs".into(),
            line,
            start_line,
            side,
            severity: Severity::Medium,
            category: category.into(),
            title: " Old bug ".into(),
            body: "Body.".into(),
            suggestion: None,
            origin: Some(Origin::Model { provider: "main".into(), model: "big".into() }),
        };
        let sarif = render(&report(vec![
            finding(4, None, Side::Left, "Error handling"),
            finding(9, Some(7), Side::Right, "security"),
        ]))
        .replace(env!("CARGO_PKG_VERSION"), "[version]");
        assert_eq!(sarif, EXPECTED);
    }

    const EXPECTED: &str = r#"{
  "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
  "runs": [
    {
      "automationDetails": {
        "id": "agentctl/review/local"
      },
      "results": [
        {
          "level": "warning",
          "locations": [
            {
              "physicalLocation": {
                "artifactLocation": {
                  "uri": "src/a.rs",
                  "uriBaseId": "%SRCROOT%"
                }
              }
            }
          ],
          "message": {
            "text": "Old bug\n\nBody.\n\n(On line 4 of the previous version of the file.)"
          },
          "partialFingerprints": {
            "agentctlFinding/v1": "75fb4e44da864e6a"
          },
          "properties": {
            "category": "Error handling",
            "severity": "medium"
          },
          "ruleId": "agentctl/error-handling"
        },
        {
          "level": "warning",
          "locations": [
            {
              "physicalLocation": {
                "artifactLocation": {
                  "uri": "src/a.rs",
                  "uriBaseId": "%SRCROOT%"
                },
                "region": {
                  "endLine": 9,
                  "startLine": 7
                }
              }
            }
          ],
          "message": {
            "text": "Old bug\n\nBody."
          },
          "partialFingerprints": {
            "agentctlFinding/v1": "205e71e7a8532e5c"
          },
          "properties": {
            "category": "security",
            "severity": "medium"
          },
          "ruleId": "agentctl/security"
        }
      ],
      "tool": {
        "driver": {
          "informationUri": "https://github.com/agentctl/agentctl",
          "name": "agentctl",
          "rules": [
            {
              "defaultConfiguration": {
                "level": "warning"
              },
              "id": "agentctl/error-handling",
              "name": "agentctl-error-handling",
              "properties": {
                "tags": [
                  "error handling"
                ]
              },
              "shortDescription": {
                "text": "agentctl Error handling"
              }
            },
            {
              "defaultConfiguration": {
                "level": "warning"
              },
              "id": "agentctl/security",
              "name": "agentctl-security",
              "properties": {
                "security-severity": "5.5",
                "tags": [
                  "security"
                ]
              },
              "shortDescription": {
                "text": "agentctl security"
              }
            }
          ],
          "version": "[version]"
        }
      }
    }
  ],
  "version": "2.1.0"
}
"#;
}
