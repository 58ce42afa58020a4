//! Redaction and workflow-command safety end to end: the real binary in Actions mode against
//! loopback fakes of GitHub and an OpenAI-compatible server (and a fake agent CLI), with
//! secrets and hostile text planted wherever untrusted input enters.
//!
//! Every secret value here is built at run time, so the repository never holds a
//! token-shaped string.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::common::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OWNER: &str = "Codertocat";
const REPO: &str = "Hello-World";
const PR: u64 = 2;
const PAYLOAD: &str = "webhooks/examples/pull_request/opened.payload.json";
const FILE: &str = "src/settings.rs";

/// A leak is reported when any run of this many consecutive characters of a form's
/// secret-dependent part shows up in a channel (the whole part when it is shorter). Long
/// enough never to match by chance; short enough to catch half a secret.
const WINDOW: usize = 16;

// ---------------------------------------------------------------------------------------------
// Secrets and their derived forms
// ---------------------------------------------------------------------------------------------

/// The OpenAI-style project key: matches the `sk-` token pattern as well as being known.
fn openai_key() -> String {
    format!("sk-proj-{}{}", "Zq9Xw2Lm7Pt4Rv8Ns1Kd6Hb3", "Jf5Gc0YaTe7Ui2")
}

/// A key with every character some escaping changes (space, `/`, `+`, `&`, `=`, `"`, `\`,
/// `%`, `~`), so that the URL-encoded and JSON-escaped forms differ from the raw value. The
/// `/` early on keeps the `sk-` token pattern from matching it: only the known-secret layer
/// can catch it.
fn odd_key() -> String {
    format!("sk-proj-{}", "Zq9/Xw+2 Lm&7=Pt\"4\\Rv%8Ns~Kd6Hb3")
}

/// An installation-token-shaped GitHub token.
fn github_token() -> String {
    format!("ghs_{}{}", "Wm4Tq8Zr2Ln6Xp0Kv3Bh7Jd", "1Fs5Gc9Ny2Ea")
}

/// One derived form of a secret: `text` is what gets planted (the form inside a longer
/// encoded text, as it would really occur), `core` the part of `text` that depends on the
/// secret alone: what must never come out.
#[derive(Debug, Clone)]
struct Form {
    name: &'static str,
    text: String,
    core: String,
}

/// The character range of `enc` (base64 of some bytes) whose characters carry bits of
/// `bytes` (a byte range of the encoded input) and of nothing else. Computed from the bit
/// layout, independently of `agentctl::redact`: character `i` carries input bits
/// `6i..6i+6`.
fn secret_only(enc: &str, bytes: Range<usize>) -> Range<usize> {
    let (lo, hi) = (bytes.start * 8, bytes.end * 8);
    let idx: Vec<usize> =
        (0..enc.len()).filter(|&i| enc.as_bytes()[i] != b'=' && 6 * i >= lo && 6 * i + 6 <= hi).collect();
    idx[0]..idx[idx.len() - 1] + 1
}

/// The forms `src/redact.rs` promises to catch, each planted inside realistic surroundings.
/// Every value used here is at least `MIN_DERIVED_LEN` (8) bytes, so all forms are in scope.
fn forms(secret: &str) -> Vec<Form> {
    assert!(secret.len() >= agentctl::redact::MIN_DERIVED_LEN.max(24));
    let n = secret.len();
    let mut out = vec![Form { name: "raw", text: format!("token={secret};"), core: secret.to_owned() }];
    for (k, name) in ["base64 offset 0", "base64 offset 1", "base64 offset 2"].into_iter().enumerate() {
        // The secret after a k-byte prefix, encoded as a whole (`echo "x$KEY" | base64`).
        let whole = format!("{}{secret}\n", &"xy"[..k]);
        let text = STANDARD.encode(&whole);
        let core = text[secret_only(&text, k..k + n)].to_owned();
        out.push(Form { name, text, core });
    }
    let whole = format!("u:{secret}!!");
    let text = URL_SAFE_NO_PAD.encode(&whole);
    let core = text[secret_only(&text, 2..2 + n)].to_owned();
    out.push(Form { name: "base64url", text, core });

    let inner = STANDARD.encode(format!("k={secret}\n"));
    let inner_core = secret_only(&inner, 2..2 + n);
    let text = STANDARD.encode(&inner);
    let core = text[secret_only(&text, inner_core)].to_owned();
    out.push(Form { name: "double base64", text, core });

    let url = urlencoding::encode(secret).into_owned();
    out.push(Form { name: "URL-encoded", text: format!("https://hooks.example.test/cb?key={url}&x=1"), core: url });

    let json = serde_json::to_string(secret).unwrap();
    out.push(Form {
        name: "JSON-escaped",
        text: json!({ "apiKey": secret }).to_string(),
        core: json[1..json.len() - 1].to_owned(),
    });
    // JSON `\uXXXX` escapes, for every character or for every other one, lower- and upper-case
    // hex; and every byte percent-encoded, in both cases.
    let u = |c: char, upper: bool| {
        let mut units = [0u16; 2];
        c.encode_utf16(&mut units)
            .iter()
            .map(|u| if upper { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") })
            .collect::<String>()
    };
    let all_u: String = secret.chars().map(|c| u(c, false)).collect();
    out.push(Form { name: "JSON \\u-escaped, every char", text: format!("{{\"apiKey\": \"{all_u}\"}}"), core: all_u });
    let all_u_upper: String = secret.chars().map(|c| u(c, true)).collect();
    out.push(Form {
        name: "JSON \\u-escaped, every char, upper-case hex",
        text: format!("{{\"apiKey\": \"{all_u_upper}\"}}"),
        core: all_u_upper,
    });
    let some_u: String = secret
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            _ if i % 2 == 1 => u(c, i % 4 == 1),
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c => c.to_string(),
        })
        .collect();
    out.push(Form {
        name: "JSON \\u-escaped, some chars",
        text: format!("{{\"apiKey\": \"{some_u}\"}}"),
        core: some_u,
    });
    let pct: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
    out.push(Form {
        name: "%-encoded, every byte",
        text: format!("https://hooks.example.test/cb?key={pct}"),
        core: pct,
    });
    let pct_lower: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
    out.push(Form {
        name: "%-encoded, every byte, lower-case hex",
        text: format!("https://hooks.example.test/cb?key={pct_lower}"),
        core: pct_lower,
    });
    out.push(Form { name: "hex", text: format!("0x{}", hex::encode(secret)), core: hex::encode(secret) });
    out.push(Form { name: "HEX", text: format!("0X{}", hex::encode_upper(secret)), core: hex::encode_upper(secret) });
    for f in &out {
        assert!(f.text.contains(&f.core) && f.core.len() >= WINDOW, "{f:?}");
    }
    out
}

/// The windows of `core` that must not appear anywhere.
fn windows(core: &str) -> Vec<&str> {
    let w = WINDOW.min(core.len());
    (0..=core.len() - w)
        .filter(|&i| core.is_char_boundary(i) && core.is_char_boundary(i + w))
        .map(|i| &core[i..i + w])
        .collect()
}

/// The first window of `core` found in `text`.
fn leaked<'a>(core: &'a str, text: &str) -> Option<&'a str> {
    windows(core).into_iter().find(|w| text.contains(w))
}

// ---------------------------------------------------------------------------------------------
// What the runner sees: workflow commands on stdout/stderr
// ---------------------------------------------------------------------------------------------

/// Commands the runner knows (`ActionCommandManager` extensions in actions/runner).
const REGISTERED: [&str; 15] = [
    "add-mask",
    "add-matcher",
    "remove-matcher",
    "add-path",
    "set-env",
    "set-output",
    "save-state",
    "debug",
    "notice",
    "warning",
    "error",
    "group",
    "endgroup",
    "echo",
    "stop-commands",
];

/// A command the runner would execute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunnerCommand {
    /// Index of the output line.
    line: usize,
    name: String,
    props: String,
    /// Unescaped as the runner does.
    data: String,
    /// `##[name]data` (found anywhere in a line) rather than `::name::data`.
    legacy: bool,
}

/// The runner's line view: `StreamReader.ReadLine` ends a line at `\n`, `\r` or `\r\n`.
fn runner_lines(text: &str) -> Vec<&str> {
    text.split('\n').flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r')).collect()
}

fn unescape(s: &str, legacy: bool) -> String {
    // `ActionCommand.UnescapeData` (and the legacy `Unescape`, which also knows `;` and `]`),
    // in the runner's order.
    let mut s = s.replace("%0D", "\r").replace("%0A", "\n");
    if legacy {
        s = s.replace("%3B", ";").replace("%5D", "]");
    }
    s.replace("%25", "%")
}

/// `ActionCommand.TryParseV2` then `TryParse` (legacy), for the registered names plus the
/// active stop token.
fn parse_command(line: &str, index: usize, stop_token: Option<&str>) -> Option<RunnerCommand> {
    let known = |name: &str| {
        REGISTERED.iter().any(|r| r.eq_ignore_ascii_case(name))
            || stop_token.is_some_and(|t| !t.is_empty() && t.eq_ignore_ascii_case(name))
    };
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix("::") {
        if let Some(end) = rest.find("::") {
            let info = &rest[..end];
            let (name, props) = info.split_once(' ').unwrap_or((info, ""));
            if known(name) {
                let data = unescape(&rest[end + 2..], false);
                return Some(RunnerCommand {
                    line: index,
                    name: name.into(),
                    props: props.into(),
                    data,
                    legacy: false,
                });
            }
        }
    }
    let start = line.find("##[")?;
    let after = &line[start + 3..];
    let rb = after.find(']')?;
    let info = &after[..rb];
    let (name, props) = info.split_once(' ').unwrap_or((info, ""));
    known(name).then(|| RunnerCommand {
        line: index,
        name: name.into(),
        props: props.into(),
        data: unescape(&after[rb + 1..], true),
        legacy: true,
    })
}

/// The commands the runner executes from one output stream, honouring
/// `::stop-commands::TOKEN` … `::TOKEN::`; and the token still active at the end, if any.
fn runner_view(stream: &str) -> (Vec<RunnerCommand>, Option<String>) {
    let mut stopped: Option<String> = None;
    let mut out = vec![];
    for (i, line) in runner_lines(stream).into_iter().enumerate() {
        let Some(cmd) = parse_command(line, i, stopped.as_deref()) else { continue };
        if let Some(token) = &stopped {
            if !token.is_empty() && cmd.name.eq_ignore_ascii_case(token) {
                stopped = None;
            }
            continue;
        }
        if cmd.name.eq_ignore_ascii_case("stop-commands") {
            stopped = Some(cmd.data.clone());
        }
        out.push(cmd);
    }
    (out, stopped)
}

#[test]
fn the_runner_view_parser_follows_the_runner() {
    let text = "plain\n::add-mask::a%25b\n  ::warning file=x::w%0Ay\nsay ##[error]legacy%5D\n::stop-commands::tok\n::error::hidden\n##[set-output name=x]hidden\n::TOK::\n::unknown::z\r::notice::after-cr";
    let (cmds, stopped) = runner_view(text);
    let got: Vec<(&str, &str, bool)> = cmds.iter().map(|c| (c.name.as_str(), c.data.as_str(), c.legacy)).collect();
    assert_eq!(
        got,
        vec![
            ("add-mask", "a%b", false),
            ("warning", "w\ny", false),
            ("error", "legacy]", true),
            ("stop-commands", "tok", false),
            ("notice", "after-cr", false),
        ]
    );
    assert_eq!(stopped, None);
    assert_eq!(runner_view("::stop-commands::t\n::error::x").1.as_deref(), Some("t"));
}

// ---------------------------------------------------------------------------------------------
// Fakes and runs
// ---------------------------------------------------------------------------------------------

/// The annotated test file: `lines` added in a new file.
fn diff_of(path: &str, lines: &[String]) -> String {
    let mut d = format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in lines {
        let _ = writeln!(d, "+{l}");
    }
    d
}

fn plain_lines(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("let setting_{i} = {i};")).collect()
}

/// A chat-completion response carrying `answer` as the message content.
fn completion(answer: &Value, model: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 150, "total_tokens": 1350}
    })
}

/// An OpenAI-compatible fake: `/v1` answers `answer` (reporting `model`); `/e{i}/v1` fails
/// with a 500 whose error message is `errors[i]` (an upstream echoing what it was sent).
async fn fake_model(answer: &Value, model: &str, errors: &[String]) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(answer, model)))
        .mount(&server)
        .await;
    for (i, message) in errors.iter().enumerate() {
        Mock::given(method("POST"))
            .and(path(format!("/e{i}/v1/chat/completions")))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(json!({"error": {"message": message, "type": "server_error", "code": null}})),
            )
            .mount(&server)
            .await;
    }
    mount_catch_all(&server, "provider").await;
    server
}

/// Config for [`fake_model`]: with `failing` > 0, `main` is the first failing entry and the
/// others follow as its fallback chain, ending with the working `ok`.
fn model_config(uri: &str, failing: usize) -> String {
    let entry = |name: &str, base: &str| {
        format!("  {name}:\n    kind: openai\n    model: gpt-4o-mini\n    base_url: {uri}{base}/v1\n    api_key_env: OPENAI_API_KEY\n    max_retries: 0\n")
    };
    let mut c = String::from("provider: main\nproviders:\n");
    if failing == 0 {
        c.push_str(&entry("main", ""));
    } else {
        c.push_str(&entry("main", "/e0"));
        let chain: Vec<String> = (1..failing).map(|i| format!("e{i}")).chain(["ok".to_string()]).collect();
        let _ = writeln!(c, "    fallback: [{}]", chain.join(", "));
        for i in 1..failing {
            c.push_str(&entry(&format!("e{i}"), &format!("/e{i}")));
        }
        c.push_str(&entry("ok", ""));
    }
    c
}

/// The `opened` payload from the corpora with `body` as the PR description.
fn payload_with_body(corpora: &Path, dir: &Path, body: &str) -> PathBuf {
    let mut payload: Value = serde_json::from_slice(&std::fs::read(corpora.join(PAYLOAD)).unwrap()).unwrap();
    payload["pull_request"]["body"] = Value::String(body.to_owned());
    write(dir, "event.json", serde_json::to_vec_pretty(&payload).unwrap())
}

/// Everything a run produced, by channel.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: String,
    summary: String,
    sarif: String,
    provider_bodies: Vec<String>,
    github_bodies: Vec<String>,
    events: Vec<agentctl::store::Event>,
    usage: Vec<agentctl::usage::UsageRecord>,
}

/// Runs `agentctl -v review --sarif … --format FORMAT` as a `pull_request` step.
async fn run_review(
    gh: &FakeGitHub,
    model: Option<&MockServer>,
    event: &Path,
    dir: &Path,
    env: &[(&str, &str)],
    format: &str,
) -> Run {
    let out_file = dir.join("github_output");
    let summary_file = dir.join("step_summary.md");
    let sarif = dir.join("review.sarif");
    let state = dir.join("state").join("state.db");
    let mut cmd = agentctl();
    cmd.args(["-v", "review", "--format", format, "--sarif"])
        .arg(&sarif)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_API_URL", gh.api_url())
        .env("GITHUB_REPOSITORY", format!("{}/{}", gh.owner, gh.repo))
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", event)
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .env("AGENTCTL_STATE", &state);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let bodies = |reqs: Option<Vec<wiremock::Request>>| -> Vec<String> {
        reqs.unwrap_or_default().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
    };
    let provider_bodies = match model {
        Some(m) => bodies(m.received_requests().await),
        None => vec![],
    };
    let (events, usage) = match agentctl::store::Store::open(&state) {
        Ok(store) => (store.events(0).unwrap(), store.usage_since(0).unwrap()),
        Err(_) => (vec![], vec![]),
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outputs: std::fs::read_to_string(&out_file).unwrap_or_default(),
        summary: std::fs::read_to_string(&summary_file).unwrap_or_default(),
        sarif: std::fs::read_to_string(&sarif).unwrap_or_default(),
        provider_bodies,
        github_bodies: bodies(gh.server.received_requests().await),
        events,
        usage,
    }
}

/// Every string inside `text` if it is JSON (what a consumer decoding it reads), else "".
fn json_strings(text: &str) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                walk(x, out)
            }),
            _ => {}
        }
    }
    let mut out = vec![];
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        walk(&v, &mut out);
    }
    out.join("\n")
}

/// A text as sent and as decoded by its reader (JSON strings; workflow-command data).
fn both_views(text: &str) -> String {
    format!("{text}\n{}", json_strings(text))
}

/// stderr/stdout without the `::add-mask::` lines (the one place a secret may appear), plus
/// the data of every command as the runner unescapes it.
fn log_view(stream: &str) -> String {
    let kept: Vec<&str> =
        runner_lines(stream).into_iter().filter(|l| !l.trim_start().starts_with("::add-mask::")).collect();
    let (cmds, _) = runner_view(stream);
    let data: Vec<String> =
        cmds.into_iter().filter(|c| c.name != "add-mask").map(|c| format!("{} {}", c.props, c.data)).collect();
    format!("{}\n{}\n{}", kept.join("\n"), data.join("\n"), json_strings(stream))
}

impl Run {
    /// Every outbound channel, named, in the view a reader would have of it.
    fn channels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("provider request", self.provider_bodies.iter().map(|b| both_views(b)).collect::<Vec<_>>().join("\n")),
            ("GitHub request", self.github_bodies.iter().map(|b| both_views(b)).collect::<Vec<_>>().join("\n")),
            ("stdout", log_view(&self.stdout)),
            ("stderr", log_view(&self.stderr)),
            ("GITHUB_OUTPUT", self.outputs.clone()),
            ("step summary", self.summary.clone()),
            ("SARIF", both_views(&self.sarif)),
            ("events table", format!("{:?}", self.events)),
            ("usage table", format!("{:?}", self.usage)),
        ]
    }

    /// The executed `::add-mask::` values on stderr.
    fn masks(&self) -> Vec<String> {
        runner_view(&self.stderr).0.into_iter().filter(|c| c.name == "add-mask").map(|c| c.data).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Every derived form through every channel
// ---------------------------------------------------------------------------------------------

/// Where a secret's forms are planted.
#[derive(Debug, Clone, Copy)]
enum Plant {
    /// Added lines of the PR diff served by GitHub.
    Diff,
    /// The PR description in the event payload.
    PrBody,
    /// The model's answer: summary, and each finding's title, body and suggestion.
    ModelAnswer,
    /// A provider's error message (an upstream echoing what it was sent), one failing
    /// fallback entry per form: lands in warnings and the `events` table.
    ProviderError,
}

const PLANTS: [Plant; 4] = [Plant::Diff, Plant::PrBody, Plant::ModelAnswer, Plant::ProviderError];

/// Runs one review per plant location with every form of `secret` planted there, the secret
/// being the value of `var`, and asserts that no form's secret-dependent part (and no part of
/// the raw secret) reaches any channel. All leaks are collected before failing.
async fn every_form_through_every_channel(var: &str, secret: &str) {
    let Some(corpora) = corpora() else { return };
    let forms = forms(secret);
    let other_openai = format!("sk-proj-{}", "Other0Key1For2The3Test4Run5");
    let other_github = format!("ghs_{}", "OtherToken0For1The2Test3Run4Zz5Yy6X");
    let (openai, github) = match var {
        "OPENAI_API_KEY" => (secret.to_owned(), other_github),
        "GITHUB_TOKEN" => (other_openai, secret.to_owned()),
        _ => unreachable!(),
    };

    let mut leaks: Vec<String> = vec![];
    let mut masked_everywhere = true;
    for plant in PLANTS {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = plain_lines(forms.len() + 2);
        let mut body = "Routine settings change.".to_owned();
        let mut answer = json!({"summary": "Looks fine.", "findings": [
            {"path": FILE, "line": 1, "severity": "low", "category": "style", "title": "Name", "body": "Rename it.",
             "suggestion": "let setting_one = 1;"}
        ]});
        let mut errors: Vec<String> = vec![];
        match plant {
            Plant::Diff => {
                for (i, f) in forms.iter().enumerate() {
                    lines[i + 1] = format!("let leak_{i} = \"{}\";", f.text);
                }
            }
            Plant::PrBody => {
                body = forms.iter().map(|f| format!("{}: {}", f.name, f.text)).collect::<Vec<_>>().join("\n");
            }
            Plant::ModelAnswer => {
                let summary = forms.iter().map(|f| format!("{} {}", f.name, f.text)).collect::<Vec<_>>().join("; ");
                let findings: Vec<Value> = forms
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        json!({"path": FILE, "line": i + 2, "severity": "high", "category": "security",
                               "title": format!("{} leak {}", f.name, f.text),
                               "body": format!("The line holds `{}`; rotate it.", f.text),
                               "suggestion": format!("let leak_{i} = \"{}\";", f.text)})
                    })
                    .collect();
                answer = json!({"summary": summary, "findings": findings});
            }
            Plant::ProviderError => {
                errors = forms.iter().map(|f| format!("upstream rejected the request with key {}", f.text)).collect();
            }
        }
        let model = fake_model(&answer, "gpt-4o-mini-2024-07-18", &errors).await;
        let diff = diff_of(FILE, &lines).into_bytes();
        let gh = FakeGitHub::start(OWNER, REPO, PR, diff, Some(model_config(&model.uri(), errors.len()))).await;
        let event = payload_with_body(&corpora, dir.path(), &body);
        let run = run_review(
            &gh,
            Some(&model),
            &event,
            dir.path(),
            &[("GITHUB_TOKEN", &github), ("OPENAI_API_KEY", &openai)],
            "json",
        )
        .await;
        assert_eq!(run.code, 0, "{plant:?}: stderr: {}", run.stderr);
        // The run did what it should, so that a clean result means something.
        assert!(!run.provider_bodies.is_empty() && !run.github_bodies.is_empty(), "{plant:?}");
        assert!(gh.state.lock().unwrap().review_posts.len() == 1, "{plant:?}: no review posted");
        if let Plant::ProviderError = plant {
            let fallbacks = run.events.iter().filter(|e| e.kind == "fallback").count();
            assert_eq!(fallbacks, forms.len(), "{plant:?}: events: {:?}", run.events);
        }
        if let Plant::ModelAnswer = plant {
            let posted = &gh.state.lock().unwrap().review_posts[0];
            assert_eq!(posted["comments"].as_array().unwrap().len(), forms.len(), "{plant:?}: {posted}");
        }
        // The runner learns the secret through `::add-mask::` (and only there may it appear).
        masked_everywhere &= run.masks().iter().any(|m| m == secret);

        for (channel, text) in run.channels() {
            for f in &forms {
                if let Some(w) = leaked(&f.core, &text) {
                    leaks.push(format!("{plant:?} / {} / {channel}: {w:?}", f.name));
                }
            }
        }
    }
    assert!(masked_everywhere, "{var} was not registered with ::add-mask:: in every run");
    assert!(leaks.is_empty(), "{} leak(s) of {var}:\n{}", leaks.len(), leaks.join("\n"));
}

/// Regression: a fallback's `events` row stored the provider's error message, key included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_derived_form_of_the_provider_key_stays_out_of_every_channel_including_events_rows() {
    every_form_through_every_channel("OPENAI_API_KEY", &openai_key()).await;
}

/// Regression: a model that wrote the JSON-escaped key into a finding got it into SARIF and
/// `--format json` (escaped once more by the renderer, which text redaction did not match).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_derived_form_of_a_key_with_special_characters_stays_out_including_json_escaped_twice_in_sarif_and_stdout(
) {
    every_form_through_every_channel("OPENAI_API_KEY", &odd_key()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_derived_form_of_the_github_token_stays_out_of_every_channel() {
    every_form_through_every_channel("GITHUB_TOKEN", &github_token()).await;
}

// ---------------------------------------------------------------------------------------------
// 2. A multi-line passthrough secret is masked line by line before first use
// ---------------------------------------------------------------------------------------------

/// A PEM-like multi-line credential (not a `PRIVATE KEY` block, so no token pattern helps).
fn multi_line_credential() -> (String, Vec<String>) {
    let lines: Vec<String> = vec![
        format!("-----BEGIN {} CREDENTIAL-----", "AGENT"),
        format!("{}{}", "Vq3Lz8Nw1Kp6Xd0Rt5Hm9Jb2", "Fc7Gs4YaQe1Wr"),
        format!("{}{}", "Pe8Ui3Oa6Sd1Fg5Hj9Kl2Zx7", "Cv0Bn4MqTy6Iu"),
        format!("{}{}", "Wr5Ty0Iu4Op8As3D", "f7Gh"),
        format!("-----END {} CREDENTIAL-----", "AGENT"),
    ];
    (format!("{}\n", lines.join("\n")), lines)
}

/// A fake agent CLI: checks that the passed-through variable arrived, saves its stdin (the
/// prompt) to `prompt_file`, and answers `answer` on stdout.
fn fake_agent(dir: &Path, prompt_file: &Path, answer: &Value) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let script = format!(
        "#!/bin/sh\n[ -n \"$MY_TOKEN\" ] || {{ echo 'MY_TOKEN is not set' >&2; exit 3; }}\ncat > '{}'\ncat <<'ANSWER_EOF'\n{}\nANSWER_EOF\n",
        prompt_file.display(),
        answer
    );
    let path = write(dir, "fake-agent.sh", script);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_line_passthrough_secret_is_masked_line_by_line_before_first_use_and_never_leaks() {
    let Some(corpora) = corpora() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (credential, lines) = multi_line_credential();
    let token = github_token();

    // Planted everywhere untrusted text enters: a diff line, the PR body, the agent's answer.
    let answer = json!({"summary": format!("The agent saw {} and {}", lines[1], lines[2]), "findings": [
        {"path": FILE, "line": 2, "severity": "high", "category": "security",
         "title": format!("Credential line {}", lines[3]), "body": format!("Remove:\n{credential}"),
         "suggestion": format!("let k = \"{}\";", lines[2])}
    ]});
    let prompt_file = dir.path().join("agent-stdin.txt");
    let agent = fake_agent(dir.path(), &prompt_file, &answer);
    let config = format!(
        "provider: agent\nproviders:\n  agent:\n    kind: command\n    command: [\"{}\"]\n    output: text\n    env_passthrough: [MY_TOKEN]\n    max_retries: 0\n",
        agent.display()
    );
    let mut diff_lines = plain_lines(4);
    diff_lines[1] = format!("let credential = \"{}\";", lines[1]);
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff_of(FILE, &diff_lines).into_bytes(), Some(config)).await;
    let event = payload_with_body(&corpora, dir.path(), &format!("Here is the key:\n{credential}"));
    let mut run =
        run_review(&gh, None, &event, dir.path(), &[("GITHUB_TOKEN", &token), ("MY_TOKEN", &credential)], "json").await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    run.provider_bodies = vec![std::fs::read_to_string(&prompt_file).expect("the agent was run")];
    assert!(run.provider_bodies[0].contains("let setting_1 = 1;"), "the prompt reached the agent");

    // One executed `::add-mask::` per line, each before the agent is started (the
    // "reviewing … with agent" line precedes the call) and before any line holding it.
    let stderr_lines = runner_lines(&run.stderr);
    let (commands, _) = runner_view(&run.stderr);
    let first_call = stderr_lines
        .iter()
        .position(|l| l.starts_with("reviewing ") && l.contains("agent"))
        .unwrap_or_else(|| panic!("no `reviewing` line: {}", run.stderr));
    let mut problems = vec![];
    for line in &lines {
        let masks: Vec<&RunnerCommand> = commands.iter().filter(|c| c.name == "add-mask" && &c.data == line).collect();
        let Some(mask) = masks.first() else {
            problems.push(format!("no ::add-mask:: for line {line:?}"));
            continue;
        };
        if masks.len() != 1 {
            problems.push(format!("{} ::add-mask:: for line {line:?}", masks.len()));
        }
        if mask.line > first_call {
            problems.push(format!("line {line:?} masked at stderr line {} after the call at {first_call}", mask.line));
        }
        if let Some(i) = stderr_lines.iter().position(|l| l.contains(line.as_str()) && !l.starts_with("::add-mask::")) {
            if i < mask.line {
                problems.push(format!("line {line:?} printed at stderr line {i} before its mask"));
            }
        }
    }
    assert!(problems.is_empty(), "{}\nstderr:\n{}", problems.join("\n"), run.stderr);

    let mut leaks = vec![];
    for (channel, text) in run.channels() {
        for line in &lines {
            if let Some(w) = leaked(line, &text) {
                leaks.push(format!("{channel}: {w:?}"));
            }
        }
    }
    assert!(leaks.is_empty(), "credential lines leaked:\n{}", leaks.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 3. Workflow-command injection
// ---------------------------------------------------------------------------------------------

/// Commands an attacker writes into the PR, the diff or a model's answer.
const INJECTED: [&str; 6] = [
    "::add-mask::x",
    "::set-output name=verdict::approve",
    "::stop-commands::t",
    "##[error]x",
    "::warning::pwned",
    "%0A::error::x",
];

/// The injected commands each on a line of their own, then all on one line after some text,
/// then after a lone carriage return (a line break for the runner).
fn hostile_text() -> String {
    format!("Please review.\n{}\ntext {}\nthen\r{}", INJECTED.join("\n"), INJECTED.join(" "), INJECTED[4])
}

/// Whether agentctl itself would emit `cmd`: masks of our own secrets, its random
/// stop-commands fences, and annotations/groups in the `::name::` form whose data is not one
/// of the injected payloads.
fn is_ours(cmd: &RunnerCommand, secrets: &[&str]) -> bool {
    match cmd.name.as_str() {
        "add-mask" => secrets.contains(&cmd.data.as_str()),
        "stop-commands" => !cmd.legacy && cmd.data.len() == 32 && cmd.data.bytes().all(|b| b.is_ascii_hexdigit()),
        "warning" | "error" | "notice" | "debug" | "group" | "endgroup" => {
            !cmd.legacy && !["x", "pwned", "approve"].contains(&cmd.data.trim())
        }
        _ => false,
    }
}

async fn injection_run(format: &str) {
    let Some(corpora) = corpora() else { return };
    let dir = tempfile::tempdir().unwrap();
    let hostile = hostile_text();
    let (openai, github) = (openai_key(), github_token());
    // Hostile file paths and diff lines.
    let path_a = "docs/::warning::pwned.md";
    let path_b = "docs/##[error]x.md";
    let mut lines = plain_lines(3);
    lines[1] = INJECTED.join(" ");
    let diff = format!(
        "{}{}{}",
        diff_of(FILE, &lines),
        diff_of(path_a, &INJECTED.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        diff_of(path_b, &["::set-output name=verdict::approve".to_string()])
    );
    let answer = json!({"summary": hostile, "findings": [
        {"path": FILE, "line": 2, "severity": "critical", "category": "security",
         "title": format!("Injected {}", INJECTED.join(" ")), "body": hostile, "suggestion": hostile},
        {"path": path_a, "line": 1, "severity": "info", "category": "docs", "title": "::warning::pwned", "body": hostile},
        {"path": "src/##[error]x.rs", "line": 1, "severity": "low", "category": "bug", "title": "##[error]x", "body": "x"}
    ]});
    // The primary fails with a hostile error message; the fallback answers and reports a
    // hostile model name (both are provider-controlled text that reaches the log).
    let model =
        fake_model(&answer, &format!("gpt-4o-mini\n{}", INJECTED.join("\n")), std::slice::from_ref(&hostile)).await;
    let gh = FakeGitHub::start(OWNER, REPO, PR, diff.into_bytes(), Some(model_config(&model.uri(), 1))).await;
    let event = payload_with_body(&corpora, dir.path(), &hostile);
    let run = run_review(
        &gh,
        Some(&model),
        &event,
        dir.path(),
        &[("GITHUB_TOKEN", &github), ("OPENAI_API_KEY", &openai)],
        format,
    )
    .await;
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(gh.state.lock().unwrap().review_posts.len(), 1, "no review posted");

    let mut problems = vec![];
    for (stream, text) in [("stderr", &run.stderr), ("stdout", &run.stdout)] {
        let (commands, stopped) = runner_view(text);
        for c in &commands {
            if !is_ours(c, &[&github, &openai]) {
                let shown = runner_lines(text)[c.line];
                problems.push(format!("{stream} line {}: the runner executes `{}` from {shown:?}", c.line, c.name));
            }
        }
        if let Some(token) = stopped {
            problems.push(format!("{stream}: commands stay stopped at the end (token {token:?})"));
        }
    }
    // Our own masks did reach the runner.
    let masks = run.masks();
    for secret in [&github, &openai] {
        if !masks.contains(secret) {
            problems.push("a secret of ours was not masked".to_string());
        }
    }
    let outputs = parse_github_output(&run.outputs);
    if outputs.get("verdict").map(String::as_str) != Some("pass") {
        problems.push(format!("verdict output is {:?}", outputs.get("verdict")));
    }
    let verdict_lines = run.outputs.lines().filter(|l| l.starts_with("verdict")).count();
    if verdict_lines != 1 {
        problems.push(format!("{verdict_lines} `verdict` entries in GITHUB_OUTPUT:\n{}", run.outputs));
    }
    let names: BTreeSet<&str> = outputs.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "findings",
        "critical",
        "high",
        "medium",
        "low",
        "info",
        "verdict",
        "tokens-in",
        "tokens-out",
        "cost-usd",
        "review-url",
        "sarif-file",
    ]
    .into_iter()
    .collect();
    if names != want {
        problems.push(format!("GITHUB_OUTPUT names {names:?}"));
    }
    assert!(problems.is_empty(), "{}\n--- stderr:\n{}\n--- stdout:\n{}", problems.join("\n"), run.stderr, run.stdout);
}

/// Regression: the "answered by fallback (model …)" line printed a provider-reported model name
/// with line breaks as is, and `##[error]` inside JSON strings on stdout was a legacy command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_commands_in_a_reported_model_name_and_in_json_stdout_are_never_executed() {
    injection_run("json").await;
}

/// Regression: the Markdown report on stdout put model-written `::…::` lines at line starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_commands_in_markdown_stdout_are_never_executed() {
    injection_run("text").await;
}
