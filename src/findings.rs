//! The review's domain types: a finding, its severity and the diff side it refers to.
//!
//! These mirror `schemas/review-output.schema.json` (the model output contract) so that a
//! model's answer, a builtin rule's hit and a rendered comment all share one shape.

use serde::{Deserialize, Serialize};

/// Severity of a finding, most severe first; `Ord` puts `Critical` lowest so sorting ascending
/// lists the worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 5] =
        [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info];

    /// Lowercase name as used in config, outputs and the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// Rank 0 (critical) to 4 (info); exit code for `--fail-on` is `10 + rank`.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// Whether `self` is at least as severe as `threshold`.
    pub fn at_least(self, threshold: Severity) -> bool {
        self <= threshold
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown severity `{s}` (expected critical, high, medium, low or info)"))
    }
}

/// A severity threshold — `none` or a severity — for `--fail-on`, `review.fail_on` and
/// `review.request_changes_on`: the one type the flag, the config and the verdict share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Threshold {
    #[default]
    None,
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Threshold {
    /// Every threshold, `none` first then most severe first.
    pub const ALL: [Threshold; 6] =
        [Threshold::None, Threshold::Critical, Threshold::High, Threshold::Medium, Threshold::Low, Threshold::Info];

    /// Lowercase name as used in flags, config and outputs.
    pub fn as_str(self) -> &'static str {
        self.severity().map_or("none", Severity::as_str)
    }

    /// The severity, or `None` for `none`.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Threshold::None => None,
            Threshold::Critical => Some(Severity::Critical),
            Threshold::High => Some(Severity::High),
            Threshold::Medium => Some(Severity::Medium),
            Threshold::Low => Some(Severity::Low),
            Threshold::Info => Some(Severity::Info),
        }
    }
}

/// Which version of the file a line number refers to, as GitHub's review comments API names it:
/// `LEFT` is the old (base) version, `RIGHT` the new (head) version.
/// Source: <https://docs.github.com/en/rest/pulls/comments#create-a-review-comment-for-a-pull-request>.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Left,
    #[default]
    Right,
}

impl Side {
    /// `LEFT` or `RIGHT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "LEFT",
            Side::Right => "RIGHT",
        }
    }
}

/// Where a finding came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A builtin rule, with its stable id (e.g. `AC001`).
    Rule { id: String },
    /// A model answer, with the provider entry name and model.
    Model { provider: String, model: String },
}

/// One review finding. Line numbers are 1-based, in the new file for [`Side::Right`] and the
/// old file for [`Side::Left`]; `start_line`, when present, is ≤ `line` on the same side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub path: String,
    pub line: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    #[serde(default)]
    pub side: Side,
    pub severity: Severity,
    pub category: String,
    pub title: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// Who produced it; not part of the model contract, filled in by agentctl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The model output contract (`schemas/review-output.schema.json`): a summary and findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct ReviewOutput {
    pub summary: String,
    pub findings: Vec<Finding>,
}
