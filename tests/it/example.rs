//! The README's first command: `review --dry-run` of `examples/diffs/agentctl-findings.diff`
//! (a change to agentctl's own CI script, README and chunker that plants one finding of each
//! builtin rule AC001–AC004) as the PR of `examples/events/pull_request.opened.json`.
//!
//! Snapshots pin what a user sees first: the review with its inline comments, the summary
//! comment and the SARIF. Under `CI=true` insta fails on a mismatch instead of writing a new
//! snapshot, so a change to any of them must be reviewed and committed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{agentctl, unique_name};

/// AWS's documented example access key id and secret access key, both planted in the diff.
const EXAMPLE_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const EXAMPLE_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// What one run of the quick-start command printed and wrote.
struct Run {
    stdout: String,
    stderr: String,
    sarif: String,
}

/// Runs the quick-start review in an empty folder (so no local `.github/agentctl.yml` is
/// picked up), with `extra` flags, and `--sarif` into that folder.
fn quick_start(extra: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!("agentctl-example-{}", unique_name()));
    std::fs::create_dir_all(&dir).unwrap();
    let sarif = dir.join("review.sarif");
    let out = agentctl()
        .current_dir(&dir)
        .args(["review", "--dry-run", "--event"])
        .arg(repo_file("examples/events/pull_request.opened.json"))
        .arg("--diff")
        .arg(repo_file("examples/diffs/agentctl-findings.diff"))
        .arg("--sarif")
        .arg(&sarif)
        .args(extra)
        .output()
        .unwrap();
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        sarif: std::fs::read_to_string(&sarif).unwrap_or_default(),
    };
    assert_eq!(out.status.code(), Some(0), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// The JSON report, with the bundled price table's date (it moves with every price update)
/// replaced by a placeholder everywhere it is quoted.
fn json_report() -> (Value, String) {
    let run = quick_start(&["--format", "json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let date = report["price_table"].as_str().unwrap().to_owned();
    let normalized = run.stdout.replace(&date, "[price-table-date]");
    (serde_json::from_str(&normalized).unwrap(), run.sarif)
}

#[test]
fn quick_start_review_has_one_inline_comment_per_builtin_rule() {
    let (report, _) = json_report();
    let rules: Vec<&str> =
        report["findings"].as_array().unwrap().iter().map(|f| f["origin"]["id"].as_str().unwrap()).collect();
    assert_eq!(rules, ["AC001", "AC002", "AC003", "AC004"]);
    assert_eq!(report["review"]["comments"].as_array().unwrap().len(), 4);
    insta::assert_json_snapshot!("quick_start_review", report["review"]);
}

#[test]
fn quick_start_summary_comment_counts_findings_by_severity() {
    let (report, _) = json_report();
    insta::assert_snapshot!("quick_start_summary_comment", report["summary_comment"].as_str().unwrap());
}

#[test]
fn quick_start_sarif_has_a_result_per_finding_and_a_rule_per_id() {
    let (_, sarif) = json_report();
    let mut sarif: Value = serde_json::from_str(&sarif).unwrap();
    let version = &mut sarif["runs"][0]["tool"]["driver"]["version"];
    assert_eq!(version.as_str(), Some(env!("CARGO_PKG_VERSION")));
    *version = Value::from("[version]");
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 4);
    insta::assert_json_snapshot!("quick_start_sarif", sarif);
}

#[test]
fn quick_start_markdown_shows_inline_comments_and_the_summary_table() {
    let run = quick_start(&[]);
    assert!(run.stdout.contains("#### Inline comments (4)"), "{}", run.stdout);
    assert!(run.stdout.contains("**Possible AWS access key id committed**"), "{}", run.stdout);
    assert!(run.stdout.contains("| critical | 1 |"), "{}", run.stdout);
}

#[test]
fn quick_start_never_prints_the_planted_aws_keys() {
    for format in ["markdown", "json", "text"] {
        let run = quick_start(&["--format", format]);
        for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr), ("sarif", &run.sarif)] {
            for key in [EXAMPLE_KEY_ID, EXAMPLE_SECRET_KEY] {
                assert!(!text.contains(key), "{format}: {what} prints {key}:\n{text}");
            }
        }
    }
    // The test means something only while the diff really holds both keys.
    let diff = std::fs::read_to_string(repo_file("examples/diffs/agentctl-findings.diff")).unwrap();
    assert!(diff.contains(EXAMPLE_KEY_ID) && diff.contains(EXAMPLE_SECRET_KEY));
}

/// The whole `--format json` stdout byte for byte (the v1 wire shape: field names, order,
/// formatting), the price table's date replaced by a placeholder.
#[test]
fn quick_start_json_stdout_is_the_v1_shape_byte_for_byte() {
    let run = quick_start(&["--format", "json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let date = report["price_table"].as_str().unwrap().to_owned();
    insta::assert_snapshot!("quick_start_json_stdout", run.stdout.replace(&date, "[price-table-date]"));
}

/// The SARIF file byte for byte (key order and formatting), the version replaced.
#[test]
fn quick_start_sarif_file_is_unchanged_byte_for_byte() {
    let run = quick_start(&[]);
    let version = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(run.sarif.contains(&version), "{}", run.sarif);
    insta::assert_snapshot!("quick_start_sarif_file", run.sarif.replace(&version, "\"version\": \"[version]\""));
}

/// `agentctl review --dry-run … | head -1`: a reader that goes away (broken pipe) is not the
/// run's failure. The read end is closed before the child writes, so every write gets EPIPE.
#[test]
fn a_closed_stdout_exits_0_without_an_error() {
    use std::process::{Command, Stdio};
    for format in ["markdown", "json", "sarif"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("agentctl"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AGENTCTL_STATE", dir.path().join("state.db"))
            .current_dir(dir.path())
            .args(["review", "--dry-run", "--format", format, "--event"])
            .arg(repo_file("examples/events/pull_request.opened.json"))
            .arg("--diff")
            .arg(repo_file("examples/diffs/agentctl-findings.diff"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(!stderr.contains("stdout") && !stderr.to_lowercase().contains("broken pipe"), "{format}: {stderr}");
    }
}
