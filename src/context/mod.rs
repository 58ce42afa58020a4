//! The run's context: the event payload (typed for the events we act on, raw JSON kept for the
//! rest) and the `GITHUB_*` environment, resolved once before any command logic.
//!
//! Payload shapes follow GitHub's "Webhook events and payloads"
//! (<https://docs.github.com/en/webhooks/webhook-events-and-payloads>); only the fields agentctl
//! reads are typed. A missing, empty, truncated or non-JSON payload is a [`ContextError`] naming
//! the file, raised before any network call.

pub mod catalog;
pub mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::env_vars as ev;

/// A snapshot of the process environment, taken once so that tests can pass their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The current process environment (non-UTF-8 values are skipped).
    pub fn from_process() -> Self {
        Self { vars: std::env::vars().collect() }
    }

    /// An environment made of `pairs` (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// The value of `name`, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Errors loading the context. All are usage errors (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read event payload {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event payload {path} is empty")]
    Empty { path: PathBuf },
    #[error("event payload {path} is not valid JSON (line {line}, column {column}: {message}){hint}")]
    Json { path: PathBuf, line: usize, column: usize, message: String, hint: &'static str },
    #[error("event payload {path} is not a `{event}` payload: at `{at}`: {message}")]
    Shape { path: PathBuf, event: String, at: String, message: String },
    #[error("{name} `{value}` is not a valid API URL: {reason}\nhelp: set it to the REST API root, e.g. https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server")]
    ApiUrl { name: &'static str, value: String, reason: String },
    #[error("GITHUB_REPOSITORY `{value}` is not of the form owner/name")]
    Repository { value: String },
}

impl ContextError {
    /// The exit code: an event payload or variable that cannot be read is `Usage` (2).
    pub fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }
}

/// `owner/name` of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    /// Parses `owner/name`.
    pub fn parse(full: &str) -> Option<Repo> {
        let (owner, name) = full.split_once('/')?;
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Repo { owner: owner.to_string(), name: name.to_string() })
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// `head`/`base` of a pull request payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitRefPayload {
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// The `pull_request` object of a payload (fields agentctl reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestPayload {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub html_url: String,
    pub head: GitRefPayload,
    pub base: GitRefPayload,
}

/// The `repository` object of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositoryPayload {
    pub full_name: String,
}

/// `pull_request` / `pull_request_target` events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequestPayload,
    pub repository: RepositoryPayload,
    /// For `synchronize`: the head sha before the push.
    #[serde(default)]
    pub before: Option<String>,
    /// For `synchronize`: the head sha after the push.
    #[serde(default)]
    pub after: Option<String>,
}

/// The `issue` of an `issue_comment` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssuePayload {
    pub number: u64,
    /// Present (an object) when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// The author of a comment (`user` of a webhook's `comment`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserPayload {
    #[serde(default)]
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// The `comment` of an `issue_comment` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommentPayload {
    #[serde(default)]
    pub body: Option<String>,
    /// `OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `FIRST_TIME_CONTRIBUTOR`,
    /// `FIRST_TIMER`, `MANNEQUIN` or `NONE` (GitHub docs, "author_association").
    #[serde(default)]
    pub author_association: Option<String>,
    #[serde(default)]
    pub user: Option<UserPayload>,
}

/// `issue_comment` events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: IssuePayload,
    pub comment: CommentPayload,
    pub repository: RepositoryPayload,
}

/// `workflow_dispatch` events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowDispatchEvent {
    #[serde(default)]
    pub inputs: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    pub repository: RepositoryPayload,
}

impl WorkflowDispatchEvent {
    /// The PR number from the `pr`, `pr_number`, `pull_request` or `number` input (string or
    /// number).
    pub fn pr_number(&self) -> Option<u64> {
        let inputs = self.inputs.as_ref()?;
        ["pr", "pr_number", "pull_request", "number"].iter().find_map(|k| match inputs.get(*k)? {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
            _ => None,
        })
    }
}

/// The triggering event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `pull_request` or `pull_request_target`.
    PullRequest(Box<PullRequestEvent>),
    IssueComment(Box<IssueCommentEvent>),
    WorkflowDispatch(Box<WorkflowDispatchEvent>),
    /// Any other event, kept as raw JSON.
    Other {
        name: String,
        payload: serde_json::Value,
    },
    /// No payload (a local run).
    None,
}

/// Everything a command needs to know about where it runs.
#[derive(Debug, Clone)]
pub struct Context {
    /// `GITHUB_EVENT_NAME`, `--event-name`, or guessed from the payload's shape.
    pub event_name: Option<String>,
    pub event: Event,
    /// The whole payload as read (`Value::Null` for a local run without one), for the fields
    /// the typed [`Event`] does not carry (labels, draft, the author of a review). Attacker-
    /// written where a PR, issue or comment is: read values, never interpret them.
    pub payload: serde_json::Value,
    /// From `GITHUB_REPOSITORY`, else the payload's `repository.full_name`.
    pub repository: Option<Repo>,
    /// REST API root without a trailing slash (default `https://api.github.com`; GHES keeps its
    /// `/api/v3` prefix).
    pub api_url: String,
    /// Web root (default `https://github.com`).
    pub server_url: String,
    pub run_id: Option<String>,
    pub run_attempt: Option<String>,
    pub workflow: Option<String>,
    pub job: Option<String>,
    pub actor: Option<String>,
    pub sha: Option<String>,
    pub git_ref: Option<String>,
    /// Running as an Actions step (`GITHUB_ACTIONS=true`).
    pub in_actions: bool,
}

impl Context {
    /// Resolves the context from `env`, reading the payload from `event_path` (else
    /// `GITHUB_EVENT_PATH`; none is fine for a local run). `event_name` overrides
    /// `GITHUB_EVENT_NAME`.
    pub fn load(env: &Env, event_path: Option<&Path>, event_name: Option<&str>) -> Result<Context, ContextError> {
        let path = event_path.map(Path::to_path_buf).or_else(|| env.get(ev::GITHUB_EVENT_PATH).map(PathBuf::from));
        let raw = match &path {
            Some(p) => Some(read_payload(p)?),
            None => None,
        };
        let name = event_name
            .map(str::to_string)
            .or_else(|| env.get(ev::GITHUB_EVENT_NAME).map(str::to_string))
            .or_else(|| raw.as_ref().and_then(guess_event_name));
        let event = match (&raw, &path) {
            (Some(value), Some(p)) => typed_event(p, name.as_deref().unwrap_or(""), value)?,
            _ => Event::None,
        };
        let repository = match env.get(ev::GITHUB_REPOSITORY) {
            Some(full) => Some(Repo::parse(full).ok_or_else(|| ContextError::Repository { value: full.to_string() })?),
            None => raw
                .as_ref()
                .and_then(|v| v.pointer("/repository/full_name"))
                .and_then(|v| v.as_str())
                .and_then(Repo::parse),
        };
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        let api_url = match env.get(ev::GITHUB_API_URL) {
            Some(raw) => trim(check_api_url(ev::GITHUB_API_URL, raw)?),
            None => "https://api.github.com".into(),
        };
        Ok(Context {
            event_name: name,
            event,
            payload: raw.unwrap_or(serde_json::Value::Null),
            repository,
            api_url,
            server_url: env.get(ev::GITHUB_SERVER_URL).map(trim).unwrap_or_else(|| "https://github.com".into()),
            run_id: env.get(ev::GITHUB_RUN_ID).map(str::to_string),
            run_attempt: env.get(ev::GITHUB_RUN_ATTEMPT).map(str::to_string),
            workflow: env.get(ev::GITHUB_WORKFLOW).map(str::to_string),
            job: env.get(ev::GITHUB_JOB).map(str::to_string),
            actor: env.get(ev::GITHUB_ACTOR).map(str::to_string),
            sha: env.get(ev::GITHUB_SHA).map(str::to_string),
            git_ref: env.get(ev::GITHUB_REF).map(str::to_string),
            in_actions: env.get(ev::GITHUB_ACTIONS) == Some("true"),
        })
    }

    /// The pull request payload when the event carries one.
    pub fn pull_request(&self) -> Option<&PullRequestEvent> {
        match &self.event {
            Event::PullRequest(e) => Some(e),
            _ => None,
        }
    }
}

/// `raw` when it is an absolute `http`/`https` URL with a host, else [`ContextError::ApiUrl`]
/// quoting it whole, so a malformed `GITHUB_API_URL` is a usage error (exit 2) at load time
/// instead of a network failure after retries.
fn check_api_url<'a>(name: &'static str, raw: &'a str) -> Result<&'a str, ContextError> {
    let err = |reason: String| ContextError::ApiUrl { name, value: raw.to_string(), reason };
    let url = reqwest::Url::parse(raw).map_err(|e| err(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(format!("the scheme is `{}`, not http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("it has no host".into()));
    }
    Ok(raw)
}

/// A serde message in the user's terms: Rust type names (`u64`, `struct GitRefPayload`) become
/// JSON words, and the whole is cut at 200 characters (it may quote a payload value).
fn json_words(message: &str) -> String {
    static RUST: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\b(?:struct|enum|tuple struct) [A-Za-z_][A-Za-z0-9_]*|\b[ui](?:8|16|32|64|128|size)\b|\bf(?:32|64)\b|\ba sequence\b|\ba map\b")
            .expect("a valid pattern")
    });
    let out = RUST.replace_all(message, |c: &regex::Captures<'_>| {
        let m = &c[0];
        if m.starts_with("enum") {
            "one of the known values"
        } else if m.starts_with("struct") || m.starts_with("tuple") || m == "a map" {
            "an object"
        } else if m == "a sequence" {
            "an array"
        } else if m.starts_with('f') {
            "a number"
        } else if m.starts_with('u') {
            "a whole number (0 or more)"
        } else {
            "a whole number"
        }
    });
    if out.chars().count() > 200 {
        out.chars().take(197).collect::<String>() + "..."
    } else {
        out.into_owned()
    }
}

fn read_payload(path: &Path) -> Result<serde_json::Value, ContextError> {
    let bytes = std::fs::read(path).map_err(|source| ContextError::Read { path: path.to_path_buf(), source })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ContextError::Empty { path: path.to_path_buf() });
    }
    serde_json::from_slice(&bytes).map_err(|e| ContextError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
        hint: if e.is_eof() { " — the file looks truncated" } else { "" },
    })
}

/// Guesses the event name from the payload's shape, for local runs without `GITHUB_EVENT_NAME`.
fn guess_event_name(v: &serde_json::Value) -> Option<String> {
    let has = |k: &str| v.get(k).is_some();
    let name = if has("pull_request") && has("number") {
        "pull_request"
    } else if has("comment") && has("issue") {
        "issue_comment"
    } else if has("inputs") && has("ref") {
        "workflow_dispatch"
    } else {
        return None;
    };
    Some(name.to_string())
}

fn typed_event(path: &Path, name: &str, value: &serde_json::Value) -> Result<Event, ContextError> {
    fn typed<T: serde::de::DeserializeOwned>(
        path: &Path,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<Box<T>, ContextError> {
        serde_path_to_error::deserialize::<_, T>(value).map(Box::new).map_err(|e| {
            let at = e.path().to_string();
            ContextError::Shape {
                path: path.to_path_buf(),
                event: name.to_string(),
                at: if at == "." { "(top level)".into() } else { at },
                message: json_words(&e.into_inner().to_string()),
            }
        })
    }
    Ok(match name {
        "pull_request" | "pull_request_target" => Event::PullRequest(typed(path, name, value)?),
        "issue_comment" => Event::IssueComment(typed(path, name, value)?),
        "workflow_dispatch" => Event::WorkflowDispatch(typed(path, name, value)?),
        _ => Event::Other { name: name.to_string(), payload: value.clone() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::corpora_dir;

    fn load(path: &Path, name: Option<&str>) -> Result<Context, ContextError> {
        Context::load(&Env::default(), Some(path), name)
    }

    #[test]
    fn every_corpus_payload_of_the_events_we_act_on_loads_typed() {
        let Some(dir) = corpora_dir() else { return };
        let mut seen = 0;
        for (folder, name) in [
            ("pull_request", "pull_request"),
            ("issue_comment", "issue_comment"),
            ("workflow_dispatch", "workflow_dispatch"),
        ] {
            let folder = dir.join("webhooks/examples").join(folder);
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                let ctx = load(&path, Some(name)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let typed = match (&ctx.event, name) {
                    (Event::PullRequest(e), "pull_request") => e.number == e.pull_request.number,
                    (Event::IssueComment(e), "issue_comment") => e.issue.number > 0,
                    (Event::WorkflowDispatch(_), "workflow_dispatch") => true,
                    _ => false,
                };
                assert!(typed, "{} did not load as {name}", path.display());
                assert!(ctx.repository.is_some(), "{}: no repository", path.display());
                // The shape alone must tell the event for local runs.
                assert_eq!(load(&path, None).unwrap().event_name.as_deref(), Some(name), "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 37, "only {seen} payloads found");
        let extra = dir.join("webhooks/extra/go-playground-webhooks/pull-request-issue-comment.json");
        let ctx = load(&extra, Some("issue_comment")).unwrap();
        let Event::IssueComment(e) = ctx.event else { panic!("not typed") };
        assert!(e.issue.pull_request.is_some(), "a comment on a PR carries issue.pull_request");
    }

    #[test]
    fn a_truncated_payload_is_an_error_naming_the_file() {
        let Some(dir) = corpora_dir() else { return };
        let full = std::fs::read(dir.join("webhooks/examples/pull_request/opened.payload.json")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("event.json");
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let err = load(&path, None).unwrap_err().to_string();
        assert!(err.contains("event.json") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn non_json_empty_and_missing_payloads_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, "<html>not json</html>").unwrap();
        assert!(matches!(load(&bad, None), Err(ContextError::Json { .. })));
        let empty = tmp.path().join("empty.json");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(matches!(load(&empty, None), Err(ContextError::Empty { .. })));
        assert!(matches!(load(&tmp.path().join("nope.json"), None), Err(ContextError::Read { .. })));
        let wrong = tmp.path().join("wrong.json");
        std::fs::write(&wrong, r#"{"action":"opened","number":"x"}"#).unwrap();
        assert!(matches!(load(&wrong, Some("pull_request")), Err(ContextError::Shape { .. })));
    }

    #[test]
    fn ghes_api_url_keeps_its_prefix_and_env_wins_over_payload() {
        let env = Env::from_pairs([
            (ev::GITHUB_API_URL, "https://ghe.example.com/api/v3/"),
            (ev::GITHUB_REPOSITORY, "acme/widgets"),
            (ev::GITHUB_ACTIONS, "true"),
        ]);
        let ctx = Context::load(&env, None, None).unwrap();
        assert_eq!(ctx.api_url, "https://ghe.example.com/api/v3");
        assert_eq!(ctx.repository, Some(Repo { owner: "acme".into(), name: "widgets".into() }));
        assert!(ctx.in_actions);
        assert!(matches!(ctx.event, Event::None));
        let bad = Env::from_pairs([(ev::GITHUB_REPOSITORY, "nope")]);
        assert!(matches!(Context::load(&bad, None, None), Err(ContextError::Repository { .. })));
    }

    #[test]
    fn dispatch_inputs_give_the_pr_number() {
        let ev: WorkflowDispatchEvent = serde_json::from_value(serde_json::json!({
            "inputs": {"pr": "#42"}, "ref": "refs/heads/main", "repository": {"full_name": "a/b"}
        }))
        .unwrap();
        assert_eq!(ev.pr_number(), Some(42));
    }
}
