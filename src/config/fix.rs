//! `fix:` settings (`schemas/config.schema.json` `$defs/fix`; README "Fix"). Defaults match
//! the schema's `default`s.

use serde::{Deserialize, Serialize};

/// `fix.verify`: a string (split on whitespace, or run by `sh -c` with `verify_shell`) or an
/// argv list (see [`crate::edit::verify::argv`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VerifyCommand {
    Line(String),
    Argv(Vec<String>),
}

/// `fix.edit_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditFormat {
    /// SEARCH/REPLACE edits.
    #[default]
    SearchReplace,
    /// Whole-file rewrites (weak or local models).
    Whole,
}

/// `fix.commit`: how the fix commit reaches GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitMethod {
    /// GraphQL `createCommitOnBranch` (signed by GitHub, no push credentials needed).
    #[default]
    Api,
    /// A commit in the checkout's repository pushed with `git push` to `origin` (never forced).
    Git,
}

/// `fix.workdir`: where the rounds write the model's edits and run verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workdir {
    /// A scratch `git worktree` detached at HEAD under `RUNNER_TEMP` (else the temp folder),
    /// removed at the end: the user's checkout is never written, whatever ends the run.
    #[default]
    Scratch,
    /// The checkout itself (for a verify that needs the checkout's own caches); it is restored
    /// at the end of the run and on SIGINT/SIGTERM (not on SIGKILL).
    InPlace,
}

/// `fix:` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FixConfig {
    pub verify: Option<VerifyCommand>,
    pub verify_shell: bool,
    /// Seconds.
    pub verify_timeout: f64,
    /// Bytes of output kept (the tail).
    pub verify_output_bytes: usize,
    /// Variable names passed to the verify command besides [`crate::edit::verify::BASE_ENV`].
    pub verify_env: Vec<String>,
    /// `inherit`, or `none`: verify runs in a network namespace of its own with only loopback
    /// (Linux; see [`crate::boundary`]). Issue #17 names it `fix.verify.network`; it is flat
    /// like the other `verify_*` keys, since `fix.verify` is the command itself.
    pub verify_network: Network,
    /// Where the rounds edit and verify runs.
    pub workdir: Workdir,
    pub max_rounds: u32,
    /// Globs besides [`crate::edit::DEFAULT_PROTECTED`].
    pub protected_paths: Vec<String>,
    pub edit_format: EditFormat,
    /// Bytes: a whole-file rewrite of an existing file larger than this is refused (asking for
    /// edits) unless `edit_format` is `whole` ([`crate::edit::Limits`]).
    pub whole_file_max_bytes: u64,
    /// Tokens per round's prompt.
    pub max_context_tokens: usize,
    /// Tokens per answer.
    pub max_output_tokens: u32,
    pub instructions: Option<String>,
    /// An `issues` `labeled` event with this label triggers a fix.
    pub label: Option<String>,
    pub commit: CommitMethod,
}

impl Default for FixConfig {
    fn default() -> Self {
        Self {
            verify: None,
            verify_shell: false,
            verify_timeout: 600.0,
            verify_output_bytes: 65_536,
            verify_env: vec![],
            verify_network: Network::Inherit,
            workdir: Workdir::Scratch,
            max_rounds: 2,
            protected_paths: vec![],
            edit_format: EditFormat::SearchReplace,
            whole_file_max_bytes: 8192,
            max_context_tokens: 60_000,
            max_output_tokens: 16_384,
            instructions: None,
            label: None,
            commit: CommitMethod::Api,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use crate::config::Config;

    #[test]
    fn fix_settings_parse_with_defaults_and_the_schema_refuses_bad_ones() {
        let c = Config::from_text("fix:\n  verify: cargo test\n  verify_env: [DATABASE_URL]\n", "t").unwrap();
        assert_eq!(c.fix.verify, Some(super::VerifyCommand::Line("cargo test".into())));
        assert_eq!(c.fix.verify_env, ["DATABASE_URL"]);
        assert_eq!((c.fix.max_rounds, c.fix.verify_timeout), (2, 600.0));
        let c = Config::from_text("fix:\n  verify: [npm, test]\n  edit_format: whole\n  max_rounds: 3\n", "t").unwrap();
        assert_eq!(c.fix.verify, Some(super::VerifyCommand::Argv(vec!["npm".into(), "test".into()])));
        assert_eq!(c.fix.edit_format, super::EditFormat::Whole);
        assert!(Config::default().fix.verify.is_none());
        let c = Config::from_text("fix:\n  whole_file_max_bytes: 100\n", "t").unwrap();
        assert_eq!(c.fix.whole_file_max_bytes, 100);
        assert_eq!(c.fix.commit, super::CommitMethod::Api);
        let c = Config::from_text("fix:\n  commit: git\n", "t").unwrap();
        assert_eq!(c.fix.commit, super::CommitMethod::Git);
        for bad in [
            "fix:\n  max_rounds: 0\n",
            "fix:\n  verify: []\n",
            "fix:\n  verify_env: ['A B']\n",
            "fix:\n  run: curl x\n",
            "fix:\n  whole_file_max_bytes: 0\n",
            "fix:\n  commit: push\n",
        ] {
            assert!(Config::from_text(bad, "t").is_err(), "{bad}");
        }
    }
}

/// What network a model-driven child gets (`fix.verify_network`; the boundary applies it,
/// [`crate::boundary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// agentctl's own network.
    #[default]
    Inherit,
    /// A new network namespace with only a loopback interface (Linux only).
    None,
}
