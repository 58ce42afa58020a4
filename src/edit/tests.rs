#![allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)

use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every entry under `root` (files with their bytes, folders, symbolic links with their
/// target), to assert that a refused round left the file system as it was.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                out.insert(rel, format!("link -> {}", std::fs::read_link(&p).unwrap().display()));
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, format!("{:?}", std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// A checkout with a few files, one with CRLF endings and one without a final newline.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str, b: &[u8]| {
        let full = dir.path().join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, b).unwrap();
    };
    w("src/lib.rs", b"fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\nfn twice() {}\nfn twice() {}\n");
    w("win.txt", b"one\r\ntwo\r\nthree\r\n");
    w("no_eol.txt", b"alpha\nbeta");
    w(".github/workflows/ci.yml", b"on: push\n");
    w(".github/agentctl.yml", b"provider: builtin\n");
    w("docs/guide.md", b"# Guide\n");
    w(".git/config", b"[core]\n");
    dir
}

fn policy() -> PathPolicy {
    PathPolicy::new(&["secrets/**".to_string()]).unwrap()
}

fn edit(path: &str, search: &str, replace: &str) -> EditSet {
    EditSet {
        edits: vec![SearchReplace { path: path.into(), search: search.into(), replace: replace.into() }],
        ..EditSet::default()
    }
}

#[test]
fn refusals_leave_the_file_system_unchanged_and_say_why() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("target.txt"), b"outside\n").unwrap();
    let new = |p: &str| EditSet {
        new_files: vec![FileContent { path: p.into(), content: "x\n".into() }],
        ..EditSet::default()
    };
    let cases: Vec<(&str, EditSet, &str, bool)> = vec![
        ("missing search", edit("src/lib.rs", "a * b", "a + b"), "search text not found", false),
        (
            "ambiguous search",
            edit("src/lib.rs", "fn twice() {}", "fn once() {}"),
            "occurs 2 times (at lines 5, 6)",
            false,
        ),
        ("empty search", edit("src/lib.rs", "  \n", "x"), "empty search text", false),
        ("file does not exist", edit("src/nope.rs", "a", "b"), "`src/nope.rs` does not exist", false),
        ("parent traversal", edit("../x", "a", "b"), "`..`", true),
        ("absolute path", edit("/etc/x", "a", "b"), "absolute path", true),
        ("traversal in the middle", edit("a/../../x", "a", "b"), "`..`", true),
        ("new file outside", new("../escape.txt"), "`..`", true),
        (
            "workflow",
            edit(".github/workflows/ci.yml", "push", "pull_request_target"),
            "protected path (matches `.github/workflows/**`)",
            true,
        ),
        ("workflow, other case", new(".GitHub/Workflows/evil.yml"), "protected path", true),
        (
            "agentctl config",
            edit(".github/agentctl.yml", "builtin", "openai"),
            "protected path (matches `.github/agentctl.yml`)",
            true,
        ),
        ("configured glob", new("secrets/key.pem"), "matches `secrets/**`", true),
        ("git folder", edit(".git/config", "[core]", "[core]\n\thooksPath = x"), "inside `.git/`", true),
        ("git folder deeper", new("sub/.git/hooks/pre-commit"), "inside `.git/`", true),
        ("backslash", new("src\\x.rs"), "backslash", true),
        ("symlink to a file outside", edit("link_file", "outside", "pwned"), "symbolic link (`link_file`)", true),
        ("new file through a linked folder", new("link_dir/new.txt"), "symbolic link (`link_dir`)", true),
        ("new file over an existing one", new("docs/guide.md"), "exists already", false),
        (
            "deleting a missing file",
            EditSet { deletions: vec!["gone.txt".into()], ..EditSet::default() },
            "does not exist",
            false,
        ),
        (
            "deleting a folder",
            EditSet { deletions: vec!["docs".into()], ..EditSet::default() },
            "not a regular file",
            false,
        ),
        (
            "a path in two kinds",
            EditSet {
                edits: vec![SearchReplace {
                    path: "docs/guide.md".into(),
                    search: "# Guide".into(),
                    replace: "# G".into(),
                }],
                deletions: vec!["./docs/guide.md".into()],
                ..EditSet::default()
            },
            "named more than once",
            false,
        ),
    ];
    for (name, set, reason, is_policy) in cases {
        let dir = repo();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path().join("target.txt"), dir.path().join("link_file")).unwrap();
            std::os::unix::fs::symlink(outside.path(), dir.path().join("link_dir")).unwrap();
        }
        let before = snapshot(dir.path());
        let outside_before = snapshot(outside.path());
        let applied = plan(dir.path(), &set, &policy());
        assert!(applied.changes.is_empty(), "{name}: {:?}", applied.changes);
        assert!(!applied.refused.is_empty(), "{name}: nothing refused");
        for r in &applied.refused {
            assert!(r.reason.contains(reason), "{name}: `{}` lacks `{reason}`", r.reason);
            assert_eq!(r.policy, is_policy, "{name}: {r:?}");
        }
        write(dir.path(), &applied.changes).unwrap();
        assert_eq!(snapshot(dir.path()), before, "{name}: the checkout changed");
        assert_eq!(snapshot(outside.path()), outside_before, "{name}: outside changed");
    }
}

#[test]
fn unique_search_is_replaced_and_diffed() {
    let dir = repo();
    let applied = plan(dir.path(), &edit("src/lib.rs", "    a - b\n", "    a + b\n"), &policy());
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    write(dir.path(), &applied.changes).unwrap();
    let text = std::fs::read_to_string(dir.path().join("src/lib.rs")).unwrap();
    assert_eq!(text, "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\nfn twice() {}\nfn twice() {}\n");
    let diff = unified_diff(&applied.changes);
    assert!(
        diff.starts_with("diff --git a/src/lib.rs b/src/lib.rs\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,5 +1,5 @@\n"),
        "{diff}"
    );
    assert!(diff.contains("\n-    a - b\n+    a + b\n"), "{diff}");
    // The diff parses with agentctl's own parser as one modified file.
    let parsed = crate::diff::parse(diff.as_bytes());
    assert_eq!(parsed.files.len(), 1);
    assert_eq!(parsed.files[0].path(), "src/lib.rs");
}

#[test]
fn crlf_files_keep_their_line_endings() {
    let dir = repo();
    // The model writes LF; the file is CRLF throughout.
    let applied = plan(dir.path(), &edit("win.txt", "two\nthree\n", "2\nthree\nfour\n"), &policy());
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    write(dir.path(), &applied.changes).unwrap();
    assert_eq!(std::fs::read(dir.path().join("win.txt")).unwrap(), b"one\r\n2\r\nthree\r\nfour\r\n");
    // A whole-file rewrite too.
    let set = EditSet {
        rewrites: vec![FileContent { path: "win.txt".into(), content: "a\nb\n".into() }],
        ..EditSet::default()
    };
    let applied = plan(dir.path(), &set, &policy());
    write(dir.path(), &applied.changes).unwrap();
    assert_eq!(std::fs::read(dir.path().join("win.txt")).unwrap(), b"a\r\nb\r\n");
}

#[test]
fn a_file_without_a_final_newline_keeps_none() {
    let dir = repo();
    let applied = plan(dir.path(), &edit("no_eol.txt", "beta\n", "gamma\n"), &policy());
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    write(dir.path(), &applied.changes).unwrap();
    assert_eq!(std::fs::read(dir.path().join("no_eol.txt")).unwrap(), b"alpha\ngamma");
    let diff = unified_diff(&applied.changes);
    assert!(diff.contains("\\ No newline at end of file"), "{diff}");
}

#[test]
fn new_files_and_deletions_are_written_and_diffed() {
    let dir = repo();
    let set = EditSet {
        new_files: vec![FileContent { path: "src/new/mod.rs".into(), content: "pub fn x() {}\n".into() }],
        deletions: vec!["docs/guide.md".into()],
        ..EditSet::default()
    };
    let applied = plan(dir.path(), &set, &policy());
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    assert_eq!(applied.changes.len(), 2);
    write(dir.path(), &applied.changes).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("src/new/mod.rs")).unwrap(), "pub fn x() {}\n");
    assert!(!dir.path().join("docs/guide.md").exists());
    let diff = unified_diff(&applied.changes);
    assert!(diff.contains("deleted file mode 100644\n--- a/docs/guide.md\n+++ /dev/null\n"), "{diff}");
    assert!(diff.contains("new file mode 100644\n--- /dev/null\n+++ b/src/new/mod.rs\n"), "{diff}");
}

#[test]
fn leading_indentation_is_tolerated_and_reported() {
    let dir = repo();
    // The model lost the indentation of the body; the replacement is re-indented to match.
    let applied = plan(dir.path(), &edit("src/lib.rs", "a - b\n}\n", "a + b\n}\n"), &policy());
    // `a - b` exists as a substring, so that one is an exact match: check a multi-line one.
    assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    let applied = plan(
        dir.path(),
        &edit("src/lib.rs", "fn add(a: i32, b: i32) -> i32 {\na - b\n}", "fn add(a: i32, b: i32) -> i32 {\na + b\n}"),
        &policy(),
    );
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    assert_eq!(applied.notes.len(), 1, "{:?}", applied.notes);
    assert!(applied.notes[0].contains("line 1 ignoring leading indentation"), "{:?}", applied.notes);
    let after = String::from_utf8(applied.changes[0].after.clone().unwrap()).unwrap();
    assert!(after.starts_with("fn add(a: i32, b: i32) -> i32 {\na + b\n}\n\nfn twice"), "{after}");
    // Indented deeper by the model: the surplus is taken off the replacement.
    let applied = plan(dir.path(), &edit("src/lib.rs", "        a - b\n    }\n", "        a * b\n    }\n"), &policy());
    assert!(applied.refused.is_empty(), "{:?}", applied.refused);
    let after = String::from_utf8(applied.changes[0].after.clone().unwrap()).unwrap();
    assert!(after.contains("{\n    a * b\n}\n"), "{after}");
    // Trailing whitespace differences are not tolerated.
    let applied = plan(dir.path(), &edit("src/lib.rs", "a - b   \n}\n", "x\n"), &policy());
    assert_eq!(applied.refused.len(), 1);
}

#[test]
fn a_file_changes_only_when_all_its_edits_apply_other_files_still_do() {
    let dir = repo();
    let before = std::fs::read(dir.path().join("src/lib.rs")).unwrap();
    let set = EditSet {
        edits: vec![
            SearchReplace { path: "src/lib.rs".into(), search: "a - b".into(), replace: "a + b".into() },
            SearchReplace { path: "src/lib.rs".into(), search: "not there".into(), replace: "x".into() },
            SearchReplace { path: "docs/guide.md".into(), search: "# Guide".into(), replace: "# Handbook".into() },
            SearchReplace { path: ".github/workflows/ci.yml".into(), search: "push".into(), replace: "x".into() },
        ],
        ..EditSet::default()
    };
    let applied = plan(dir.path(), &set, &policy());
    let refused: Vec<(&str, bool)> = applied.refused.iter().map(|r| (r.entry.as_str(), r.policy)).collect();
    assert_eq!(refused, [("edit 4", true), ("edit 2", false), ("edit 1", false)]);
    assert!(applied.refused[2].reason.contains("another edit of `src/lib.rs` failed"));
    write(dir.path(), &applied.changes).unwrap();
    assert_eq!(std::fs::read(dir.path().join("src/lib.rs")).unwrap(), before);
    assert_eq!(std::fs::read_to_string(dir.path().join("docs/guide.md")).unwrap(), "# Handbook\n");
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = repo();
    let set = edit("docs/guide.md", "# Guide", "# H");
    let mut changes = plan(dir.path(), &set, &policy()).changes;
    assert_eq!(changes.len(), 1);
    // A second change whose folder is a file: staging it fails (even as root).
    changes.push(FileChange { path: "no_eol.txt/inner.txt".into(), before: None, after: Some(b"x".to_vec()) });
    changes.push(FileChange { path: "zz/new.txt".into(), before: None, after: Some(b"x".to_vec()) });
    let before = snapshot(dir.path());
    let err = write(dir.path(), &changes).unwrap_err();
    assert_eq!(err.path, "no_eol.txt/inner.txt");
    assert_eq!(snapshot(dir.path()), before, "docs/guide.md must not have changed, no temporary file left");
    // A failure at the rename step (the target is a folder) undoes the files already replaced.
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    std::fs::write(dir.path().join("adir/keep"), b"k").unwrap();
    let mut changes = plan(dir.path(), &set, &policy()).changes;
    changes.push(FileChange { path: "adir".into(), before: Some(vec![]), after: Some(b"x".to_vec()) });
    let before = snapshot(dir.path());
    let err = write(dir.path(), &changes).unwrap_err();
    assert_eq!(err.path, "adir");
    assert_eq!(snapshot(dir.path()), before, "the replaced docs/guide.md must be restored");
}

#[test]
fn the_fix_schema_accepts_the_contract_and_refuses_a_bad_answer() {
    let schema: serde_json::Value = serde_json::from_str(crate::prompt::FIX_SCHEMA).unwrap();
    let v = crate::providers::structured::compiled_validator("fix_output", &schema).unwrap();
    let good = serde_json::json!({
        "explanation": "off by one",
        "edits": [{"path": "src/lib.rs", "search": "a - b", "replace": "a + b"}],
        "new_files": [{"path": "tests/t.rs", "content": "#[test] fn t() {}\n"}],
        "deletions": ["old.txt"]
    });
    assert!(v.is_valid(&good));
    let set: EditSet = serde_json::from_value(good).unwrap();
    assert_eq!((set.edits.len(), set.new_files.len(), set.deletions.len(), set.rewrites.len()), (1, 1, 1, 0));
    for bad in [
        serde_json::json!({"edits": []}),
        serde_json::json!({"explanation": "x", "edits": [{"path": "a", "search": "", "replace": "b"}]}),
        serde_json::json!({"explanation": "x", "edits": [{"path": "a", "search": "s", "replace": "b", "run": "curl x"}]}),
    ] {
        assert!(!v.is_valid(&bad), "{bad}");
    }
}

#[test]
fn whole_file_rewrites_over_the_size_limit_are_refused_with_the_reason() {
    // (case, file size in bytes, limit, refused?)
    let cases: [(&str, usize, Option<u64>, bool); 5] = [
        ("well under", 100, Some(8192), false),
        ("exactly at the limit", 8192, Some(8192), false),
        ("one byte over", 8193, Some(8192), true),
        ("far over", 100_000, Some(8192), true),
        ("no limit (edit_format: whole)", 100_000, None, false),
    ];
    for (case, size, limit, refused) in cases {
        let dir = repo();
        let big = format!("{}\n", "x".repeat(size - 1));
        std::fs::write(dir.path().join("big.txt"), &big).unwrap();
        let set = EditSet {
            rewrites: vec![FileContent { path: "big.txt".into(), content: "small\n".into() }],
            ..EditSet::default()
        };
        let before = snapshot(dir.path());
        let applied = plan_with(dir.path(), &set, &policy(), Limits { whole_file_max_bytes: limit });
        if refused {
            assert!(applied.changes.is_empty(), "{case}");
            let r = &applied.refused[..];
            assert_eq!(r.len(), 1, "{case}");
            assert_eq!((r[0].entry.as_str(), r[0].path.as_str(), r[0].policy), ("rewrite", "big.txt", false), "{case}");
            let want = format!(
                "`big.txt` is {size} bytes, over the 8192-byte limit for a whole-file rewrite (fix.whole_file_max_bytes); \
                 change it with SEARCH/REPLACE `edits` of the lines that change"
            );
            assert_eq!(r[0].reason, want, "{case}");
        } else {
            assert!(applied.refused.is_empty(), "{case}: {:?}", applied.refused);
            assert_eq!(applied.changes.len(), 1, "{case}");
            assert_eq!(applied.changes[0].after.as_deref(), Some(&b"small\n"[..]), "{case}");
        }
        assert_eq!(snapshot(dir.path()), before, "{case}: plan never writes");
    }
    // Edits of a large file are not limited.
    let dir = repo();
    std::fs::write(dir.path().join("big.txt"), format!("{}\nneedle\n", "x".repeat(20_000))).unwrap();
    let applied = plan_with(
        dir.path(),
        &edit("big.txt", "needle\n", "thread\n"),
        &policy(),
        Limits { whole_file_max_bytes: Some(8192) },
    );
    assert!(applied.refused.is_empty() && applied.changes.len() == 1, "{:?}", applied.refused);
}
