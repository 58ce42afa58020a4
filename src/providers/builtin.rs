//! Builtin offline rules: deterministic checks on the added lines of a diff. They run on every
//! review, whatever the provider, and their findings are real findings with stable rule ids.
//!
//! | id    | rule                                   | severity |
//! |-------|----------------------------------------|----------|
//! | AC001 | leaked secret (token patterns)         | critical |
//! | AC002 | merge-conflict marker                  | high     |
//! | AC003 | debug leftover (`dbg!`, `console.log`, `breakpoint()`, `debugger;`, `pdb.set_trace()`) | low |
//! | AC004 | added TODO / FIXME / XXX               | info     |
//! | AC005 | very large addition (file over the size limit) | medium |
//!
//! Only added lines are looked at: context and removed lines are not this change's doing.
//! Every finding is on the RIGHT side at the added line's new line number, with
//! `origin: Rule { id }` and one of the categories `security` (AC001), `correctness` (AC002),
//! `hygiene` (AC003, AC004) and `size` (AC005). Findings are sorted by path, line, rule id.
//!
//! No finding quotes the line it is about: a line that trips AC001 holds a secret, and any other
//! line may hold one too, so titles and bodies name the rule, the kind and the line only.

use std::sync::LazyLock;

use regex::Regex;

use crate::diff::{Diff, FileDiff, Hunk, LineKind};
use crate::findings::{Finding, Origin, Severity, Side};
use crate::redact::find_tokens;

/// Options for the rules.
#[derive(Debug, Clone, Copy)]
pub struct RuleOptions {
    /// AC005 fires when a file adds more than this many lines.
    pub max_added_lines: usize,
}

impl Default for RuleOptions {
    fn default() -> Self {
        Self { max_added_lines: 1000 }
    }
}

/// Runs every rule over the added lines of `files` (indices into `diff.files`). Findings are on
/// the RIGHT side at the added line; secret values never appear in a finding's text.
///
/// Indices out of range are ignored; binary files have no hunks and so no findings. Output is
/// sorted by (path, line, rule id), and within that in the order the hits occur on the line.
pub fn scan(diff: &Diff, files: &[usize], opts: &RuleOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    for file in files.iter().filter_map(|&i| diff.files.get(i)) {
        scan_file(file, opts, &mut findings);
    }
    // Stable sort: hits of one rule on one line keep their column order.
    findings.sort_by(|a, b| (a.path.as_str(), a.line, rule_id(a)).cmp(&(b.path.as_str(), b.line, rule_id(b))));
    findings
}

fn rule_id(f: &Finding) -> &str {
    match &f.origin {
        Some(Origin::Rule { id }) => id,
        _ => "",
    }
}

/// An added line: its new line number and text.
struct Added<'a> {
    line: u32,
    text: &'a str,
}

fn scan_file(file: &FileDiff, opts: &RuleOptions, out: &mut Vec<Finding>) {
    let path = file.path();
    let added: Vec<Added<'_>> = file
        .hunks
        .iter()
        .flat_map(Hunk::lines_with_text)
        .filter(|(l, _)| l.kind == LineKind::Added)
        .filter_map(|(l, text)| Some(Added { line: l.new_line?, text }))
        .collect();
    if added.is_empty() {
        return;
    }
    let debug_patterns = debug_patterns_for(path);
    for a in &added {
        secrets(path, a, out);
        debug_leftovers(path, a, debug_patterns, out);
        todos(path, a, out);
    }
    conflict_markers(path, &added, out);
    large_addition(path, &added, opts, out);
}

fn finding(
    path: &str,
    line: u32,
    id: &str,
    severity: Severity,
    category: &str,
    title: String,
    body: String,
) -> Finding {
    Finding {
        path: path.to_owned(),
        line,
        start_line: None,
        side: Side::Right,
        severity,
        category: category.to_owned(),
        title,
        body,
        suggestion: None,
        origin: Some(Origin::Rule { id: id.to_owned() }),
    }
}

/// AC001's second signal: a credential-named key assigned a long string literal, as in
/// `password = "..."`, `api_key: '...'`, `"client_secret": "..."`. The key name is kept (it is
/// not secret); the literal is checked by [`looks_like_credential`].
static ASSIGNMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(password|passwd|pwd|secret|client_secret|api_?key|access_?key|secret_?key|private_?key|access_?token|auth_?token)["']?\s*[:=]\s*["']([^"'\s]{16,})["']"#,
    )
    .ok()
});

/// Whether an assigned literal is likely a real credential rather than a placeholder,
/// a reference to one, or a word: at least 16 characters, letters and digits both present,
/// and none of the usual placeholder and interpolation markers.
fn looks_like_credential(literal: &str) -> bool {
    const PLACEHOLDERS: [&str; 12] =
        ["${", "{{", "<", "%(", "$(", "xxxx", "****", "example", "changeme", "placeholder", "dummy", "your"];
    let lower = literal.to_ascii_lowercase();
    literal.len() >= 16
        && literal.bytes().any(|b| b.is_ascii_digit())
        && literal.bytes().any(|b| b.is_ascii_alphabetic())
        && !PLACEHOLDERS.iter().any(|p| lower.contains(p))
}

/// AC001: token patterns from [`find_tokens`], then credential assignments not already covered
/// by a token hit.
fn secrets(path: &str, a: &Added<'_>, out: &mut Vec<Finding>) {
    let tokens = find_tokens(a.text);
    for t in &tokens {
        let kind = t.kind.describe();
        out.push(finding(
            path,
            a.line,
            "AC001",
            Severity::Critical,
            "security",
            format!("Possible {kind} committed"),
            format!(
                "Line {} adds a value that looks like a credential ({kind}). Anything pushed to a repository must be \
                 treated as leaked: revoke and rotate the credential, remove it from the branch \
                 history, and load it at run time from a secret store or environment variable \
                 instead. The value is not repeated here.",
                a.line
            ),
        ));
    }
    let Some(assignment) = ASSIGNMENT.as_ref() else { return };
    for caps in assignment.captures_iter(a.text) {
        let (Some(key), Some(value)) = (caps.get(1), caps.get(2)) else { continue };
        let covered = tokens.iter().any(|t| t.range.start < value.end() && value.start() < t.range.end);
        if covered || !looks_like_credential(value.as_str()) {
            continue;
        }
        let key = key.as_str();
        out.push(finding(
            path,
            a.line,
            "AC001",
            Severity::Critical,
            "security",
            format!("Possible hard-coded credential in `{key}`"),
            format!(
                "Line {} assigns a long literal to `{key}`. If this is a real credential, treat \
                 it as leaked: rotate it and read it at run time from a secret store or \
                 environment variable. If it is test data, a clearly fake value (such as \
                 `example-...`) avoids this warning. The value is not repeated here.",
                a.line
            ),
        ));
    }
}

/// Marker kinds of a git conflict (`merge.conflictStyle` merge, diff3 or zdiff3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Marker {
    Ours,
    Base,
    Separator,
    Theirs,
}

fn marker(text: &str) -> Option<Marker> {
    // git writes `<<<<<<< HEAD`, `||||||| base`, `=======`, `>>>>>>> branch`; a bare 7-char
    // marker at the start or end also occurs when the label is empty.
    let starts = |m: &str| text == m || text.starts_with(&format!("{m} "));
    if starts("<<<<<<<") {
        Some(Marker::Ours)
    } else if starts("|||||||") {
        Some(Marker::Base)
    } else if text == "=======" {
        Some(Marker::Separator)
    } else if starts(">>>>>>>") {
        Some(Marker::Theirs)
    } else {
        None
    }
}

/// AC002: one finding per conflict, on its `<<<<<<<` line; a marker outside any conflict that
/// began in the added lines (a half-resolved conflict) gets its own finding. A lone `=======` is
/// reported only when the file's added lines also hold a `<<<<<<<` or `>>>>>>>` marker, because
/// seven `=` alone is a legitimate Markdown/reStructuredText heading underline.
fn conflict_markers(path: &str, added: &[Added<'_>], out: &mut Vec<Finding>) {
    let markers: Vec<(u32, Marker)> = added.iter().filter_map(|a| marker(a.text).map(|m| (a.line, m))).collect();
    let has_strong = markers.iter().any(|(_, m)| matches!(m, Marker::Ours | Marker::Theirs));
    if !has_strong {
        return;
    }
    let mut open: Option<usize> = None; // index in `out` of the open conflict's finding
    for (line, m) in markers {
        match (m, open) {
            (Marker::Ours, _) => {
                out.push(conflict_finding(path, line, None));
                open = Some(out.len() - 1);
            }
            (Marker::Theirs, Some(i)) => {
                if let Some(f) = out.get_mut(i) {
                    *f = conflict_finding(path, f.line, Some(line));
                }
                open = None;
            }
            (Marker::Base | Marker::Separator, Some(_)) => {}
            (_, None) => out.push(conflict_finding(path, line, None)),
        }
    }
}

fn conflict_finding(path: &str, line: u32, end: Option<u32>) -> Finding {
    let span = match end {
        Some(end) => format!("Lines {line} to {end} hold"),
        None => format!("Line {line} holds"),
    };
    finding(
        path,
        line,
        "AC002",
        Severity::High,
        "correctness",
        "Merge-conflict marker".to_owned(),
        format!(
            "{span} git conflict markers (`<<<<<<<`, `=======`, `>>>>>>>`) left from an \
             unfinished merge or rebase. The file will not compile or parse as intended: keep \
             the right side of each conflict and delete the markers."
        ),
    )
}

/// One debug-leftover pattern: what to look for in a line, and how to name it.
struct DebugPattern {
    needle: &'static str,
    name: &'static str,
}

/// A language's debug leftovers and its line-comment prefixes (a commented-out call is
/// harmless, so it is skipped).
struct DebugRules {
    extensions: &'static [&'static str],
    comments: &'static [&'static str],
    patterns: &'static [DebugPattern],
}

/// AC003's list, kept short on purpose: only calls that are almost never meant to ship.
/// (`console.log` is the noisiest; it stays because it is the classic leftover, at low
/// severity.)
const DEBUG_RULES: &[DebugRules] = &[
    DebugRules {
        extensions: &["rs"],
        comments: &["//"],
        patterns: &[DebugPattern { needle: "dbg!(", name: "`dbg!`" }],
    },
    DebugRules {
        extensions: &["js", "jsx", "mjs", "cjs", "ts", "tsx", "mts", "cts", "vue", "svelte"],
        comments: &["//", "/*", "*"],
        patterns: &[
            DebugPattern { needle: "console.log(", name: "`console.log`" },
            DebugPattern { needle: "debugger;", name: "`debugger` statement" },
        ],
    },
    DebugRules {
        extensions: &["py"],
        comments: &["#"],
        patterns: &[
            DebugPattern { needle: "breakpoint()", name: "`breakpoint()`" },
            DebugPattern { needle: "pdb.set_trace()", name: "`pdb.set_trace()`" },
            DebugPattern { needle: "import pdb", name: "`import pdb`" },
            DebugPattern { needle: "import ipdb", name: "`import ipdb`" },
        ],
    },
    DebugRules {
        extensions: &["go"],
        comments: &["//"],
        patterns: &[
            DebugPattern { needle: "fmt.Println(\"DEBUG", name: "`fmt.Println(\"DEBUG...\")`" },
            DebugPattern { needle: "fmt.Printf(\"DEBUG", name: "`fmt.Printf(\"DEBUG...\")`" },
        ],
    },
    DebugRules {
        extensions: &["rb"],
        comments: &["#"],
        patterns: &[
            DebugPattern { needle: "binding.pry", name: "`binding.pry`" },
            DebugPattern { needle: "byebug", name: "`byebug`" },
        ],
    },
];

fn debug_patterns_for(path: &str) -> Option<&'static DebugRules> {
    let ext = std::path::Path::new(path).extension()?.to_str()?;
    DEBUG_RULES.iter().find(|r| r.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

/// AC003: the first debug pattern of the file's language found on the line.
fn debug_leftovers(path: &str, a: &Added<'_>, rules: Option<&DebugRules>, out: &mut Vec<Finding>) {
    let Some(rules) = rules else { return };
    let code = a.text.trim_start();
    if rules.comments.iter().any(|c| code.starts_with(c)) {
        return;
    }
    let Some(p) = rules.patterns.iter().find(|p| code.contains(p.needle)) else { return };
    out.push(finding(
        path,
        a.line,
        "AC003",
        Severity::Low,
        "hygiene",
        format!("Debug leftover: {}", p.name),
        format!(
            "Line {} adds {}, which is usually a temporary debugging aid. Remove it before \
             merging, or use the project's logging if the output is meant to stay.",
            a.line, p.name
        ),
    ));
}

/// `TODO`, `FIXME` or `XXX` as a note: the word, an optional `(owner)`, then `:`, whitespace
/// or the end of the line — so `XXX-XXX` placeholders and `TODOS` do not count.
static TODO: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b(TODO|FIXME|XXX)\b(?:\([^)]*\))?(?::|\s|$)").ok());

/// AC004: the first note marker on the line.
fn todos(path: &str, a: &Added<'_>, out: &mut Vec<Finding>) {
    let Some(re) = TODO.as_ref() else { return };
    let Some(word) = re.captures(a.text).and_then(|c| c.get(1)) else { return };
    let word = word.as_str();
    out.push(finding(
        path,
        a.line,
        "AC004",
        Severity::Info,
        "hygiene",
        format!("Added {word} note"),
        format!(
            "Line {} adds a `{word}` note. If the work it describes is not part of this pull \
             request, track it in an issue and reference the issue here so it is not forgotten.",
            a.line
        ),
    ));
}

/// AC005: one finding per file adding more than `max_added_lines`, on its first added line.
fn large_addition(path: &str, added: &[Added<'_>], opts: &RuleOptions, out: &mut Vec<Finding>) {
    let (count, Some(first)) = (added.len(), added.first()) else { return };
    if count <= opts.max_added_lines {
        return;
    }
    out.push(finding(
        path,
        first.line,
        "AC005",
        Severity::Medium,
        "size",
        format!("Very large addition ({count} lines)"),
        format!(
            "This file adds {count} lines, more than the limit of {}. Large additions are hard \
             to review well: consider splitting the change, or, if the file is generated or \
             vendored, excluding it from review in the agentctl config.",
            opts.max_added_lines
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{parse, FileStatus};

    /// Builds a one-hunk modified file from lines prefixed with `+`, `-` or ` ` (any other
    /// first character counts as ` `), numbering both sides from 1, through the parser (which
    /// is where a line's text lives).
    fn file(path: &str, lines: &[&str]) -> FileDiff {
        let (mut old, mut new, mut body) = (0u32, 0u32, String::new());
        for l in lines {
            let (marker, text) = l.split_at(1);
            let marker = if matches!(marker, "+" | "-") { marker } else { " " };
            old += u32::from(marker != "+");
            new += u32::from(marker != "-");
            body.push_str(marker);
            body.push_str(text);
            body.push('\n');
        }
        let text = format!("diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,{old} +1,{new} @@\n{body}");
        let file = parse(text.as_bytes()).files.remove(0);
        assert_eq!((file.status, file.hunks[0].lines.len()), (FileStatus::Modified, lines.len()));
        file
    }

    fn run(files: Vec<FileDiff>) -> Vec<Finding> {
        run_with(files, &RuleOptions::default())
    }

    fn run_with(files: Vec<FileDiff>, opts: &RuleOptions) -> Vec<Finding> {
        let idx: Vec<usize> = (0..files.len()).collect();
        scan(&Diff { files }, &idx, opts)
    }

    fn ids(findings: &[Finding]) -> Vec<(String, u32, String)> {
        findings.iter().map(|f| (f.path.clone(), f.line, rule_id(f).to_owned())).collect()
    }

    fn one(path: &str, line: u32, id: &str) -> (String, u32, String) {
        (path.to_owned(), line, id.to_owned())
    }

    const GH_TOKEN: &str = "ghp_aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1bC3";

    #[test]
    fn ac001_secret_value_absent_from_finding() {
        let aws = "AKIAIOSFODNN7EXAMPLE";
        let pwd = "hunter2hunter2hunter2X9";
        let f = file(
            "config/settings.py",
            &[
                " import os",
                &format!("+GITHUB_TOKEN = \"{GH_TOKEN}\""),
                &format!("+aws = '{aws}'"),
                &format!("+DB = {{\"password\": \"{pwd}\"}}"),
            ],
        );
        let findings = run(vec![f]);
        assert_eq!(
            ids(&findings),
            vec![
                one("config/settings.py", 2, "AC001"),
                one("config/settings.py", 3, "AC001"),
                one("config/settings.py", 4, "AC001")
            ]
        );
        assert!(findings[0].title.contains("GitHub token"));
        assert!(findings[1].title.contains("AWS access key id"));
        assert!(findings[2].title.contains("`password`"));
        for f in &findings {
            assert_eq!(f.severity, Severity::Critical);
            assert_eq!(f.category, "security");
            assert_eq!(f.side, Side::Right);
            let text = serde_json::to_string(f).unwrap();
            for secret in [GH_TOKEN, aws, pwd, "aB3dE5gH7j", "hunter2"] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
        }
    }

    #[test]
    fn ac001_placeholders_and_token_overlap() {
        let f = file(
            "app.js",
            &[
                "+const password = \"${DB_PASSWORD_FROM_ENVIRONMENT}\";",
                "+const apiKey = \"your-api-key-goes-here-123\";",
                "+const secret = \"short1\";",
                &format!("+const api_key = \"{GH_TOKEN}\";"),
            ],
        );
        // Only the token line, and only once although it is also a credential assignment.
        assert_eq!(ids(&run(vec![f])), vec![one("app.js", 4, "AC001")]);
    }

    #[test]
    fn context_and_removed_lines_do_not_trigger() {
        let f = file(
            "src/main.rs",
            &[
                &format!(" let t = \"{GH_TOKEN}\";"),
                &format!("-let t = \"{GH_TOKEN}\";"),
                "-<<<<<<< HEAD",
                " =======",
                "->>>>>>> feature",
                " dbg!(x);",
                "-dbg!(y);",
                " // TODO: old",
                "-// FIXME: gone",
                "+let ok = 1;",
            ],
        );
        assert!(run(vec![f]).is_empty());
    }

    #[test]
    fn ac002_one_finding_per_conflict() {
        let f = file(
            "src/lib.rs",
            &[
                " fn a() {}",
                "+<<<<<<< HEAD",
                "+let x = 1;",
                "+=======",
                "+let x = 2;",
                "+>>>>>>> feature",
                " fn b() {}",
            ],
        );
        let findings = run(vec![f]);
        assert_eq!(ids(&findings), vec![one("src/lib.rs", 2, "AC002")]);
        assert_eq!(findings[0].severity, Severity::High);
        assert_eq!(findings[0].category, "correctness");
        assert!(findings[0].body.starts_with("Lines 2 to 6"), "{}", findings[0].body);

        // A half-resolved conflict: the stray markers are reported on their own lines.
        let f = file("a.txt", &["+keep", "+=======", "+other", "+>>>>>>> theirs"]);
        assert_eq!(ids(&run(vec![f])), vec![one("a.txt", 2, "AC002"), one("a.txt", 4, "AC002")]);
    }

    #[test]
    fn ac002_heading_underline_is_not_a_marker() {
        let f = file("README.md", &["+Title", "+=======", "+", "+text with <<<<<<< inside"]);
        assert!(run(vec![f]).is_empty());
    }

    #[test]
    fn ac003_debug_leftovers_by_language() {
        let files = vec![
            file("src/x.rs", &["+    dbg!(&value);", "+    // dbg!(commented);"]),
            file("web/app.tsx", &["+console.log(\"here\");", "+  debugger;", "+// console.log(1)"]),
            file("tool.py", &["+import pdb", "+    pdb.set_trace()", "+    breakpoint()", "+# breakpoint()"]),
            file("main.go", &["+\tfmt.Println(\"DEBUG x\", x)", "+\tfmt.Println(\"hello\")"]),
            file("notes.txt", &["+dbg!(x) console.log(x) breakpoint()"]),
        ];
        let findings = run(files);
        assert_eq!(
            ids(&findings),
            vec![
                one("main.go", 1, "AC003"),
                one("src/x.rs", 1, "AC003"),
                one("tool.py", 1, "AC003"),
                one("tool.py", 2, "AC003"),
                one("tool.py", 3, "AC003"),
                one("web/app.tsx", 1, "AC003"),
                one("web/app.tsx", 2, "AC003"),
            ]
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Low && f.category == "hygiene"));
        assert_eq!(findings[1].title, "Debug leftover: `dbg!`");
    }

    #[test]
    fn ac004_todo_notes() {
        let f = file(
            "src/a.rs",
            &[
                "+// TODO: handle errors",
                "+// FIXME(alice) later",
                "+/* XXX */",
                "+let mask = \"XXX-XXX\";",
                "+// TODOS are fine",
                "+// todo lower case",
            ],
        );
        let findings = run(vec![f]);
        assert_eq!(
            ids(&findings),
            vec![one("src/a.rs", 1, "AC004"), one("src/a.rs", 2, "AC004"), one("src/a.rs", 3, "AC004")]
        );
        assert_eq!(findings[0].title, "Added TODO note");
        assert_eq!(findings[1].title, "Added FIXME note");
        assert!(findings.iter().all(|f| f.severity == Severity::Info));
    }

    #[test]
    fn ac005_large_addition_once_per_file() {
        let mut lines = vec![" context".to_owned()];
        lines.extend((0..6).map(|i| format!("+line {i}")));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let opts = RuleOptions { max_added_lines: 5 };
        let findings = run_with(vec![file("big.txt", &refs), file("small.txt", &refs[..5])], &opts);
        assert_eq!(ids(&findings), vec![one("big.txt", 2, "AC005")]);
        assert_eq!(findings[0].severity, Severity::Medium);
        assert_eq!(findings[0].category, "size");
        assert!(findings[0].title.contains("6 lines"));
    }

    #[test]
    fn deterministic_order_and_origin() {
        let files = vec![
            file("b.rs", &["+dbg!(1); // TODO: x", &format!("+let t = \"{GH_TOKEN}\"; // FIXME")]),
            file("a.rs", &["+// XXX"]),
        ];
        let findings = run(files);
        assert_eq!(
            ids(&findings),
            vec![
                one("a.rs", 1, "AC004"),
                one("b.rs", 1, "AC003"),
                one("b.rs", 1, "AC004"),
                one("b.rs", 2, "AC001"),
                one("b.rs", 2, "AC004"),
            ]
        );
        assert!(findings.iter().all(|f| matches!(&f.origin, Some(Origin::Rule { .. }))));
        // Only the selected files are scanned; bad indices are ignored.
        let diff = Diff { files: vec![file("a.rs", &["+// TODO: x"]), file("b.rs", &["+// TODO: y"])] };
        let only_b = scan(&diff, &[1, 7], &RuleOptions::default());
        assert_eq!(ids(&only_b), vec![one("b.rs", 1, "AC004")]);
    }
}
