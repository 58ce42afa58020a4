//! The one place a command's results leave the process: stdout, the SARIF file, the step
//! outputs (`GITHUB_OUTPUT`) and the job summary (`GITHUB_STEP_SUMMARY`). A command renders
//! first and describes what to write in a [`Delivery`]; [`deliver`] writes it, tries every sink
//! even when one before it failed, and hands the failures back named ([`SinkFailure`]) for the
//! command to turn into its exit (README, "Outputs" and "Exit codes").

use std::fmt;
use std::path::{Path, PathBuf};

use crate::actions;
use crate::context::Env;
use crate::env_vars as ev;
use crate::log;

/// What goes to stdout, rendered: text is fenced in Actions when it could hold a workflow
/// command ([`super::stdout`]), JSON made inert without changing its value ([`super::stdout_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stdout {
    Text(String),
    Json(String),
}

/// A SARIF log to write (atomically) at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SarifFile {
    pub path: PathBuf,
    pub content: String,
}

/// The name of the step output that points at the SARIF file: blanked when the file could not
/// be written, so it never names a missing file.
pub(crate) const SARIF_FILE_OUTPUT: &str = "sarif-file";

/// What a command writes at its end, every part rendered (and redacted) already. Sinks are
/// written in the order of the fields; the environment sinks only when their variable is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub stdout: Option<Stdout>,
    pub sarif: Option<SarifFile>,
    /// Step outputs, name → value, through [`actions::write_outputs`] when `GITHUB_OUTPUT` is set.
    pub outputs: Option<Vec<(String, String)>>,
    /// Markdown appended to `GITHUB_STEP_SUMMARY` when it is set.
    pub summary: Option<String>,
}

/// A sink of a [`Delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    Stdout,
    Sarif,
    StepOutputs,
    JobSummary,
}

/// A sink that could not be written: which, where (a path; empty for stdout) and why (the error
/// with its causes). Displays as the line the run logs, e.g. `cannot write SARIF to out.sarif: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkFailure {
    pub sink: Sink,
    pub target: String,
    pub error: String,
}

impl fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (target, error) = (&self.target, &self.error);
        match self.sink {
            Sink::Stdout => write!(f, "cannot write to stdout: {error}"),
            Sink::Sarif => write!(f, "cannot write SARIF to {target}: {error}"),
            Sink::StepOutputs => write!(f, "cannot write step outputs to GITHUB_OUTPUT ({target}): {error}"),
            Sink::JobSummary => write!(f, "cannot write the job summary to GITHUB_STEP_SUMMARY ({target}): {error}"),
        }
    }
}

/// Writes `delivery`: stdout, the SARIF file, the step outputs, the job summary, each tried even
/// when one before it failed. A reader that closed stdout (broken pipe) is not a failure. When
/// the SARIF file cannot be written, the `sarif-file` output is blanked. Returns the failures in
/// the order of the sinks; logs nothing (the command decides what a failure means).
pub(crate) fn deliver(env: &Env, delivery: Delivery) -> Vec<SinkFailure> {
    let Delivery { stdout, sarif, mut outputs, summary } = delivery;
    let mut failures = vec![];
    if let Some(stdout) = stdout {
        let printed = match &stdout {
            Stdout::Text(text) => super::stdout(text),
            Stdout::Json(json) => super::stdout_json(json),
        };
        if let Err(e) = printed {
            failures.push(SinkFailure { sink: Sink::Stdout, target: String::new(), error: e.to_string() });
        }
    }
    if let Some(SarifFile { path, content }) = sarif {
        if let Err(e) = crate::files::write_atomically(&path, content.as_bytes()) {
            let target = path.display().to_string();
            failures.push(SinkFailure { sink: Sink::Sarif, target, error: e.to_string() });
            for (_, value) in outputs.iter_mut().flatten().filter(|(name, _)| name == SARIF_FILE_OUTPUT) {
                value.clear();
            }
        }
    }
    if let (Some(path), Some(outputs)) = (env.get(ev::GITHUB_OUTPUT), outputs) {
        if let Err(e) = actions::write_outputs(Path::new(path), &outputs) {
            failures.push(SinkFailure { sink: Sink::StepOutputs, target: path.into(), error: log::error_chain(&e) });
        }
    }
    if let (Some(path), Some(summary)) = (env.get(ev::GITHUB_STEP_SUMMARY), summary) {
        if let Err(e) = actions::write_step_summary(Path::new(path), &summary) {
            failures.push(SinkFailure { sink: Sink::JobSummary, target: path.into(), error: e.to_string() });
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &Path)]) -> Env {
        let owned: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.display().to_string())).collect();
        Env::from_pairs(owned.iter().map(|(k, v)| (*k, v.as_str())))
    }

    #[test]
    fn every_sink_is_tried_after_a_failure_and_a_failed_sarif_blanks_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let (out, summary) = (dir.path().join("out"), dir.path().join("summary"));
        let env = env(&[(ev::GITHUB_OUTPUT, &out), (ev::GITHUB_STEP_SUMMARY, &summary)]);
        let missing = dir.path().join("no-such-dir/x.sarif");
        let failures = deliver(
            &env,
            Delivery {
                stdout: None,
                sarif: Some(SarifFile { path: missing.clone(), content: "{}".into() }),
                outputs: Some(vec![
                    ("verdict".into(), "pass".into()),
                    (SARIF_FILE_OUTPUT.into(), missing.display().to_string()),
                ]),
                summary: Some("## done\n".into()),
            },
        );
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].sink, Sink::Sarif);
        assert!(failures[0].to_string().starts_with(&format!("cannot write SARIF to {}: ", missing.display())));
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(written.contains("verdict") && written.contains("pass"), "{written}");
        assert!(!written.contains("no-such-dir"), "sarif-file names a missing file:\n{written}");
        assert_eq!(std::fs::read_to_string(&summary).unwrap(), "## done\n");
    }

    #[test]
    fn environment_sinks_are_skipped_when_their_variable_is_unset() {
        let failures = deliver(
            &env(&[]),
            Delivery {
                outputs: Some(vec![("a".into(), "b".into())]),
                summary: Some("s".into()),
                ..Delivery::default()
            },
        );
        assert!(failures.is_empty());
    }

    #[test]
    fn failures_name_the_sink_and_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(&[(ev::GITHUB_OUTPUT, dir.path()), (ev::GITHUB_STEP_SUMMARY, dir.path())]);
        let failures = deliver(
            &env,
            Delivery {
                outputs: Some(vec![("a".into(), "b".into())]),
                summary: Some("s".into()),
                ..Delivery::default()
            },
        );
        let sinks: Vec<Sink> = failures.iter().map(|f| f.sink).collect();
        assert_eq!(sinks, [Sink::StepOutputs, Sink::JobSummary]);
        let d = dir.path().display();
        assert!(failures[0].to_string().starts_with(&format!("cannot write step outputs to GITHUB_OUTPUT ({d}): ")));
        assert!(failures[1]
            .to_string()
            .starts_with(&format!("cannot write the job summary to GITHUB_STEP_SUMMARY ({d}): ")));
    }
}
