//! `routes:`, `tiers:` and `slash_commands:` of the config: the rules `agentctl route` applies
//! (SPEC §3.3). The schema (`schemas/config.schema.json`, `$defs/route`) checks their shape;
//! [`check_references`] checks what a schema cannot: that every tier and provider they name
//! exists, and that globs compile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Config, Violation};

/// What a route decides to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// `agentctl review` on the pull request.
    Review,
    /// `agentctl fix` on the issue or pull request.
    Fix,
    /// Nothing: later jobs skip.
    None,
}

impl Task {
    /// `review`, `fix` or `none` (the `task` step output).
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Review => "review",
            Task::Fix => "fix",
            Task::None => "none",
        }
    }
}

/// One value or a list of them (`event: pr.*` or `event: [pr.created, pr.ready]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a slice-like list.
    pub fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `labels:` of a rule: a list means `any`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelsMatcher {
    /// Matches when the issue or PR carries at least one of these labels.
    Any(Vec<String>),
    /// `{any: [...], all: [...]}`: both parts must hold (an absent part holds).
    Sets {
        #[serde(default)]
        any: Vec<String>,
        #[serde(default)]
        all: Vec<String>,
    },
}

/// `diff_size:` of a rule, in changed lines (additions + deletions of the pull request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffSize {
    #[serde(default)]
    pub max_changed_lines: Option<u64>,
    #[serde(default)]
    pub min_changed_lines: Option<u64>,
}

/// Where self-hosted runners are listed: the repository's or the organization's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunnersScope {
    #[default]
    Repo,
    Org,
}

/// One `routes:` entry: matchers (all given ones must hold) and the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// A name for reasons and `--explain` (default `routes[i]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Globs over catalog event names (`pr.*`, `issue.commented`).
    #[serde(default)]
    pub event: Option<OneOrMany>,
    #[serde(default)]
    pub labels: Option<LabelsMatcher>,
    /// Globs over the PR's changed files (one API call, made only when a rule reaches this matcher).
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// The event author's `author_association` (any of; case-insensitive).
    #[serde(default)]
    pub author_association: Option<Vec<String>>,
    #[serde(default)]
    pub draft: Option<bool>,
    /// Globs over the PR's base branch name.
    #[serde(default)]
    pub base_branch: Option<OneOrMany>,
    /// Globs over the PR's head branch name (a push: the pushed branch).
    #[serde(default)]
    pub head_branch: Option<OneOrMany>,
    #[serde(default)]
    pub diff_size: Option<DiffSize>,
    /// The slash command's task (`review`, `fix`, `cost`, `help`); any of.
    #[serde(default)]
    pub command: Option<OneOrMany>,
    /// The decision.
    pub task: Task,
    /// A `tiers:` name or a `providers:` entry; default: the configured provider.
    #[serde(default)]
    pub tier: Option<String>,
    /// Runner label sets, in order of preference: the first with an idle online runner wins.
    #[serde(default)]
    pub runs_on: Vec<Vec<String>>,
    /// Labels used when no set of `runs_on` has an idle runner (default `["ubuntu-latest"]`).
    #[serde(default)]
    pub fallback_runs_on: Option<Vec<String>>,
    #[serde(default)]
    pub runners_scope: RunnersScope,
    /// Extra arguments for the task's job (the `args` output; written by the repository).
    #[serde(default)]
    pub args: Option<String>,
}

/// `slash_commands:`: who may give `/agentctl …` commands that `route` acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlashCommandsConfig {
    /// `author_association` values allowed (default OWNER, MEMBER, COLLABORATOR).
    pub allowed_associations: Vec<String>,
}

impl Default for SlashCommandsConfig {
    fn default() -> Self {
        Self { allowed_associations: crate::context::target::DEFAULT_ALLOWED_ASSOCIATIONS.map(String::from).to_vec() }
    }
}

/// Labels a job runs on when nothing else is said.
pub(crate) const DEFAULT_RUNS_ON: &str = "ubuntu-latest";

/// The rules in force when the config has no `routes:` (decision, README "Routing"): a pull
/// request opened, updated or reopened (not a draft) or marked ready → review; `/agentctl
/// review` on a pull request → review; `/agentctl fix` → fix; anything else → none.
pub(crate) fn default_routes() -> Vec<RouteRule> {
    let rule = |name: &str, task: Task| RouteRule {
        name: Some(name.to_owned()),
        event: None,
        labels: None,
        paths: None,
        author_association: None,
        draft: None,
        base_branch: None,
        head_branch: None,
        diff_size: None,
        command: None,
        task,
        tier: None,
        runs_on: vec![],
        fallback_runs_on: None,
        runners_scope: RunnersScope::Repo,
        args: None,
    };
    let many = |v: &[&str]| Some(OneOrMany::Many(v.iter().map(|s| s.to_string()).collect()));
    vec![
        RouteRule {
            event: many(&["pr.created", "pr.updated", "pr.reopened"]),
            draft: Some(false),
            ..rule("default: pull request changed", Task::Review)
        },
        RouteRule { event: many(&["pr.ready"]), ..rule("default: pull request ready for review", Task::Review) },
        RouteRule {
            event: many(&["pr.commented"]),
            command: many(&["review"]),
            ..rule("default: /agentctl review", Task::Review)
        },
        RouteRule { command: many(&["fix"]), ..rule("default: /agentctl fix", Task::Fix) },
    ]
}

/// The provider entry a tier or provider name stands for: `tiers[name]`, else `name` itself
/// when it is a `providers:` entry or `builtin`.
pub(crate) fn resolve_tier<'a>(config: &'a Config, name: &'a str) -> Option<&'a str> {
    match config.tiers.get(name) {
        Some(provider) => Some(provider.as_str()),
        None => (config.providers.contains_key(name) || name == "builtin").then_some(name),
    }
}

/// What the schema cannot check in `routes:`, `tiers:` and `budgets[].downgrade_to`: every
/// tier names a provider entry, every rule's `tier` and every `downgrade_to` names a tier or a
/// provider entry, every glob compiles. Violations carry the JSON pointer of the value.
pub(crate) fn check_references(config: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let known = || {
        let mut k: Vec<&str> = config.tiers.keys().map(String::as_str).collect();
        k.extend(config.providers.keys().map(String::as_str));
        k.join(", ")
    };
    let mut push = |pointer: String, value: &str, rule: String| {
        out.push(Violation { pointer, value: super::scrub(&format!("\"{value}\""), super::MAX_QUOTED_CHARS), rule })
    };
    for (tier, provider) in &config.tiers {
        if !config.providers.contains_key(provider) && provider != "builtin" {
            push(
                format!("/tiers/{}", pointer_escape(tier)),
                provider,
                format!(
                    "names no `providers:` entry (known: {})",
                    config.providers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    for (i, rule) in config.routes.iter().enumerate() {
        if let Some(tier) = &rule.tier {
            if resolve_tier(config, tier).is_none() {
                push(format!("/routes/{i}/tier"), tier, format!("names no tier or provider (known: {})", known()));
            }
        }
        let mut globs: Vec<(String, &str)> = Vec::new();
        for (key, list) in
            [("event", &rule.event), ("base_branch", &rule.base_branch), ("head_branch", &rule.head_branch)]
        {
            if let Some(list) = list {
                let values = list.values();
                let single = values.len() == 1 && matches!(list, OneOrMany::One(_));
                for (j, g) in values.into_iter().enumerate() {
                    globs.push((
                        if single { format!("/routes/{i}/{key}") } else { format!("/routes/{i}/{key}/{j}") },
                        g,
                    ));
                }
            }
        }
        for (j, g) in rule.paths.iter().flatten().enumerate() {
            globs.push((format!("/routes/{i}/paths/{j}"), g));
        }
        for (pointer, g) in globs {
            if let Err(e) = globset::Glob::new(g) {
                push(pointer, g, format!("not a valid glob: {}", e.kind()));
            }
        }
    }
    for (i, b) in config.budgets.iter().enumerate() {
        if let Some(to) = &b.downgrade_to {
            if resolve_tier(config, to).is_none() {
                push(
                    format!("/budgets/{i}/downgrade_to"),
                    to,
                    format!("names no tier or provider (known: {})", known()),
                );
            }
        }
    }
    out
}

/// `s` escaped for a JSON pointer segment (RFC 6901: `~` → `~0`, `/` → `~1`).
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The tiers map type, for the config struct.
pub(crate) type Tiers = BTreeMap<String, String>;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn config(yaml: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_text(yaml, "test.yml")
    }

    #[test]
    fn rules_parse_with_lists_and_single_values() {
        let c = config(
            "providers: {main: {kind: openai, model: m}, local: {kind: openai, model: l}}\n\
             tiers: {cheap: local}\n\
             routes:\n  - {event: pr.*, labels: [bug], task: review, tier: cheap, runs_on: [[self-hosted, gpu]]}\n\
             \x20 - {command: [fix], labels: {all: [a, b]}, diff_size: {max_changed_lines: 10}, task: fix}\n",
        )
        .unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].event, Some(OneOrMany::One("pr.*".into())));
        assert_eq!(c.routes[1].labels, Some(LabelsMatcher::Sets { any: vec![], all: vec!["a".into(), "b".into()] }));
        assert_eq!(resolve_tier(&c, "cheap"), Some("local"));
        assert_eq!(resolve_tier(&c, "main"), Some("main"));
        assert_eq!(resolve_tier(&c, "nope"), None);
    }

    #[test]
    fn unknown_names_and_bad_globs_are_violations_with_pointers() {
        let err = config(
            "providers: {main: {kind: openai, model: m}}\n\
             tiers: {cheap: gone}\n\
             budgets: [{scope: all, period: day, limit_usd: 1, downgrade_to: nowhere}]\n\
             routes:\n  - {event: '[', task: review, tier: strong}\n",
        )
        .unwrap_err()
        .to_string();
        for needle in ["/tiers/cheap", "/routes/0/tier", "/routes/0/event", "/budgets/0/downgrade_to"] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn an_unknown_matcher_key_is_a_schema_violation() {
        let err = config("routes:\n  - {event: pr.created, lables: [bug], task: review}\n").unwrap_err().to_string();
        assert!(err.contains("/routes/0"), "{err}");
        assert!(err.contains("lables"), "{err}");
    }
}
