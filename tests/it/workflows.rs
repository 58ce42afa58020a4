//! Cross-checks between the example workflows, `action.yml` and what agentctl really writes:
//! every `steps.<id>.outputs.<name>` and `needs.<job>.outputs.<name>` an example (or this
//! repository's own workflows) uses must exist; every `with:` key of a `uses: ./` step must be an
//! action input and every `--flag` in its `args` a flag of that agentctl command; every action
//! output must be one agentctl writes (found by running it) or documents, and every output
//! agentctl writes must be an action output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_yaml_ng::Value;

use crate::common::{agentctl, parse_github_output};

/// Outputs of `route` and `fix` as agreed with those commands (#13, #11; built on other
/// branches). Once `src/commands/route.rs` / `fix.rs` exist each name must appear there.
const ROUTE_OUTPUTS: &[&str] =
    &["task", "provider", "model", "tier", "runs-on", "reason", "event", "command", "args", "pr", "issue"];
const FIX_OUTPUTS: &[&str] = &["pr-url", "branch", "verified", "rounds", "files-changed", "cost-usd"];
/// Flags of `route` and `fix` as agreed with those commands, checked while `--help` still says
/// "not implemented yet" on this branch; afterwards `--help` itself is the reference.
const ROUTE_FLAGS: &[&str] = &["--explain", "--format"];
const FIX_FLAGS: &[&str] = &["--issue", "--instructions", "--dry-run"];
/// `token-refresh --output-name token`: the name the action maps.
const TOKEN_OUTPUTS: &[&str] = &["token"];
/// The action's own outputs (the install step's), not agentctl's.
const ACTION_OWN_OUTPUTS: &[&str] = &["agentctl-path", "agentctl-version"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn key<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(Value::String(k.into())))
}

fn keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Every string anywhere under `v` (keys and values), concatenated.
fn strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Sequence(seq) => seq.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.iter().for_each(|(k, x)| {
            strings(k, out);
            strings(x, out);
        }),
        Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// The action's inputs and outputs, and each output's `steps.<id>.outputs.<name>` source.
struct Action {
    inputs: BTreeSet<String>,
    outputs: BTreeMap<String, String>,
}

fn action() -> Action {
    let a = yaml(&root().join("action.yml"));
    let re = Regex::new(r"^\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}$").unwrap();
    let mut outputs = BTreeMap::new();
    for name in keys(key(&a, "outputs")) {
        let value =
            key(key(&a, "outputs").unwrap(), &name).and_then(|o| key(o, "value")).and_then(Value::as_str).unwrap_or("");
        let c = re
            .captures(value)
            .unwrap_or_else(|| panic!("action output {name}: value {value:?} is not one step output"));
        // An output mirrors agentctl's output of the same name (the run step), or is the install step's.
        if c[1] == *"run" {
            assert_eq!(&c[2], name, "action output {name} maps agentctl's output {}", &c[2]);
        } else {
            assert_eq!(&c[1], "install", "action output {name} comes from step {}", &c[1]);
        }
        outputs.insert(name, c[1].to_string());
    }
    Action { inputs: keys(key(&a, "inputs")), outputs }
}

/// Problems found in one workflow (empty when it is consistent).
fn check_workflow(name: &str, wf: &Value, action: &Action, help: &mut dyn FnMut(&str, &str) -> String) -> Vec<String> {
    let mut problems = vec![];
    let steps_re = Regex::new(r"steps\.([\w-]+)\.outputs\.([\w-]+)").unwrap();
    let needs_re = Regex::new(r"needs\.([\w-]+)\.outputs\.([\w-]+)").unwrap();
    let jobs = key(wf, "jobs").and_then(Value::as_mapping).cloned().unwrap_or_default();
    for (job_id, job) in &jobs {
        let job_id = job_id.as_str().unwrap_or("?");
        let steps: Vec<Value> = key(job, "steps").and_then(Value::as_sequence).cloned().unwrap_or_default();
        let mut by_id: BTreeMap<String, String> = BTreeMap::new();
        for step in &steps {
            let uses = key(step, "uses").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(id) = key(step, "id").and_then(Value::as_str) {
                by_id.insert(id.to_string(), uses.clone());
            }
            if uses == "./" {
                let with = key(step, "with");
                for input in keys(with) {
                    if !action.inputs.contains(&input) {
                        problems.push(format!("{name}: job {job_id}: input `{input}` is not an action input"));
                    }
                }
                let command = with.and_then(|w| key(w, "command")).and_then(Value::as_str).unwrap_or("review");
                let args = with.and_then(|w| key(w, "args")).and_then(Value::as_str).unwrap_or("");
                let words: Vec<&str> = args.split_whitespace().collect();
                let sub = match command {
                    "cost" | "token-refresh" | "config" => words.first().copied().unwrap_or(""),
                    _ => "",
                };
                let mut help_text = help(command, sub);
                if help_text.contains("not implemented yet") {
                    let agreed = if command == "route" { ROUTE_FLAGS } else { FIX_FLAGS };
                    help_text = agreed.join(" ");
                }
                for flag in words.iter().filter(|w| w.starts_with("--")) {
                    let flag = flag.split('=').next().unwrap_or(flag);
                    if !help_text.split(|c: char| c.is_whitespace() || c == ',').any(|w| w == flag) {
                        problems.push(format!("{name}: job {job_id}: `agentctl {command} {sub}` has no flag {flag}"));
                    }
                }
            }
        }
        let mut text = String::new();
        strings(job, &mut text);
        for c in steps_re.captures_iter(&text) {
            let (step, output) = (&c[1], &c[2]);
            match by_id.get(step) {
                None => problems
                    .push(format!("{name}: job {job_id}: no step with id `{step}` (steps.{step}.outputs.{output})")),
                Some(uses) if uses == "./" => {
                    if !action.outputs.contains_key(output) {
                        problems.push(format!("{name}: job {job_id}: the action has no output `{output}`"));
                    }
                }
                Some(uses) if uses.is_empty() => problems.push(format!(
                    "{name}: job {job_id}: step `{step}` is a run step; its output `{output}` is not checked"
                )),
                // Third-party actions: actionlint checks their outputs.
                Some(_) => {}
            }
        }
        let needs: BTreeSet<String> = match key(job, "needs") {
            Some(Value::String(s)) => [s.clone()].into(),
            Some(Value::Sequence(seq)) => seq.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => BTreeSet::new(),
        };
        for c in needs_re.captures_iter(&text) {
            let (other, output) = (&c[1], &c[2]);
            if !needs.contains(other) {
                problems.push(format!("{name}: job {job_id}: needs.{other} but the job does not need `{other}`"));
                continue;
            }
            let outputs = jobs.get(Value::String(other.into())).and_then(|j| key(j, "outputs"));
            if !keys(outputs).contains(output) {
                problems.push(format!("{name}: job {job_id}: job `{other}` has no output `{output}`"));
            }
        }
    }
    problems
}

/// `agentctl <command> [<sub>] --help`, cached.
fn help_cache() -> impl FnMut(&str, &str) -> String {
    let mut cache: BTreeMap<(String, String), String> = BTreeMap::new();
    move |command: &str, sub: &str| {
        cache
            .entry((command.into(), sub.into()))
            .or_insert_with(|| {
                let mut cmd = agentctl();
                cmd.arg(command);
                if !sub.is_empty() {
                    cmd.arg(sub);
                }
                let out = cmd.arg("--help").output().unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .clone()
    }
}

fn workflow_files() -> Vec<PathBuf> {
    let mut files = vec![];
    for dir in ["examples/workflows", ".github/workflows"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_output_input_and_flag_the_workflows_use_exists() {
    let action = action();
    let mut help = help_cache();
    let files = workflow_files();
    let names: BTreeSet<String> =
        files.iter().filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned)).collect();
    for want in [
        "review.yml",
        "fix-on-comment.yml",
        "route.yml",
        "cost-nightly.yml",
        "runner-token.yml",
        "release.yml",
        "ci.yml",
    ] {
        assert!(names.contains(want), "missing workflow {want}: {names:?}");
    }
    let mut problems = vec![];
    let mut used = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        used += text.matches(".outputs.").count();
        problems.extend(check_workflow(&f.display().to_string(), &yaml(f), &action, &mut help));
    }
    assert!(used > 20, "the examples use outputs: {used}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_a_wrong_output_a_wrong_input_a_wrong_flag_and_a_missing_need() {
    let action = action();
    let mut help = help_cache();
    let wf: Value = serde_yaml_ng::from_str(
        r#"
jobs:
  route:
    runs-on: ubuntu-latest
    outputs:
      task: ${{ steps.r.outputs.task }}
    steps:
      - id: r
        uses: ./
        with:
          command: route
  review:
    needs: route
    runs-on: ubuntu-latest
    if: needs.route.outputs.taks == 'review' && needs.other.outputs.x
    steps:
      - id: rv
        uses: ./
        with:
          command: review
          args: --sarif x.sarif --no-such-flag
          fail_on: high
      - run: echo "${{ steps.rv.outputs.findigns }} ${{ steps.nope.outputs.x }}"
"#,
    )
    .unwrap();
    let problems = check_workflow("t.yml", &wf, &action, &mut help).join("\n");
    for want in [
        "job `route` has no output `taks`",
        "needs.other but the job does not need `other`",
        "input `fail_on` is not an action input",
        "has no flag --no-such-flag",
        "the action has no output `findigns`",
        "no step with id `nope`",
    ] {
        assert!(problems.contains(want), "missing {want:?} in:\n{problems}");
    }
    assert!(!problems.contains("--sarif"), "{problems}");
}

/// Output names agentctl writes to `GITHUB_OUTPUT` when run.
fn written_outputs(args: &[&str], dir: &Path) -> BTreeSet<String> {
    let out_file = dir.join(format!("out-{}", args.join("-").replace('/', "_")));
    agentctl().current_dir(root()).env("GITHUB_OUTPUT", &out_file).args(args).output().unwrap();
    parse_github_output(&std::fs::read_to_string(&out_file).unwrap_or_default()).into_keys().collect()
}

#[test]
fn action_outputs_mirror_what_agentctl_writes_and_documents() {
    let action = action();
    let dir = tempfile::tempdir().unwrap();
    // What agentctl really writes: a review dry run, and a budget check.
    let review = written_outputs(
        &[
            "review",
            "--dry-run",
            "--event",
            "examples/events/pull_request.opened.json",
            "--diff",
            "examples/diffs/agentctl-findings.diff",
        ],
        dir.path(),
    );
    let state = dir.path().join("state.db");
    let cost = written_outputs(&["cost", "check", "--budget-usd", "1", "--state", state.to_str().unwrap()], dir.path());
    assert!(review.contains("findings") && review.contains("verdict"), "{review:?}");
    assert!(cost.contains("budget-state"), "{cost:?}");
    for name in review.iter().chain(&cost) {
        assert!(action.outputs.contains_key(name), "agentctl writes `{name}` but action.yml has no such output");
    }

    // What the README documents for review (its "Outputs" table) must be there too.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("### Outputs").nth(1).and_then(|s| s.split("\n## ").next()).unwrap_or("");
    let row = Regex::new(r"(?m)^\| (`[\w-]+`(?:, `[\w-]+`)*) \|").unwrap();
    let name = Regex::new(r"`([\w-]+)`").unwrap();
    let documented: BTreeSet<String> = row
        .captures_iter(section)
        .flat_map(|c| name.captures_iter(&c[1]).map(|n| n[1].to_string()).collect::<Vec<_>>())
        .collect();
    assert!(documented.len() >= 10, "README Outputs table: {documented:?}");
    assert_eq!(documented, review, "README's review outputs and what review writes differ");

    // Route and fix: the agreed names, checked against their source once it exists.
    for (file, names) in [("src/route/mod.rs", ROUTE_OUTPUTS), ("src/commands/fix.rs", FIX_OUTPUTS)] {
        let src = std::fs::read_to_string(root().join(file)).ok();
        for n in names {
            assert!(action.outputs.contains_key(*n), "action.yml lacks the {file} output `{n}`");
            if let Some(src) = &src {
                assert!(src.contains(&format!("\"{n}\"")), "{file} never names the output `{n}`");
            }
        }
    }

    // Nothing else: every action output is accounted for.
    let known: BTreeSet<&str> = review
        .iter()
        .chain(&cost)
        .map(String::as_str)
        .chain(ROUTE_OUTPUTS.iter().copied())
        .chain(FIX_OUTPUTS.iter().copied())
        .chain(TOKEN_OUTPUTS.iter().copied())
        .chain(ACTION_OWN_OUTPUTS.iter().copied())
        .collect();
    for (name, step) in &action.outputs {
        assert!(known.contains(name.as_str()), "action output `{name}` (step {step}) is written by nothing");
    }
}

#[test]
fn config_init_points_editors_at_the_schema_of_this_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentctl.yml");
    let out = agentctl().args(["config", "init"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    let url = format!(
        "https://raw.githubusercontent.com/agentctl/agentctl/v{}/schemas/config.schema.json",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(first, format!("# yaml-language-server: $schema={url}"));
    // The URL names the file `config schema` prints, at the path the release tag holds it.
    let in_repo = std::fs::read_to_string(root().join("schemas/config.schema.json")).unwrap();
    let printed = agentctl().args(["config", "schema"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim_end(), in_repo.trim_end());
    // And the file with that line is still a valid config.
    let ok = agentctl().args(["config", "validate"]).arg(&path).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// zizmor's `secrets-outside-env` (auditor persona), checked without zizmor: an example job that
/// reads a secret names a dedicated environment, so the secret can be an environment secret
/// behind its protection rules, and the README documents that environment.
#[test]
fn example_jobs_that_read_secrets_name_a_documented_environment() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut problems = vec![];
    let mut gated = 0;
    for e in std::fs::read_dir(root().join("examples/workflows")).unwrap() {
        let p = e.unwrap().path();
        let wf = yaml(&p);
        let Some(jobs) = key(&wf, "jobs").and_then(Value::as_mapping) else { continue };
        for (id, job) in jobs {
            let mut text = String::new();
            strings(job, &mut text);
            if !text.contains("secrets.") {
                continue;
            }
            let env = key(job, "environment").and_then(|v| v.as_str().or_else(|| key(v, "name")?.as_str()));
            match env {
                None => problems.push(format!("{}: job {id:?} reads secrets without `environment:`", p.display())),
                Some(name) if !readme.contains(&format!("`environment: {name}`")) => {
                    problems.push(format!("{}: environment {name:?} is not documented in the README", p.display()))
                }
                Some(_) => gated += 1,
            }
        }
    }
    assert!(gated >= 5, "the examples' secret-reading jobs: {gated}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
