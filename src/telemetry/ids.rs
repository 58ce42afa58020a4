//! Which trace a run joins, and the names a span may show: the parent from `TRACEPARENT`, the
//! trace id derived from the workflow run, the run's URLs, and GitHub route templates.

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use crate::context::Env;

/// The parent of the task-run span: the W3C Trace Context in `TRACEPARENT` (and `TRACESTATE`)
/// when set and valid (parsed by the SDK's `TraceContextPropagator`), else none.
pub fn parent_context(env: &Env) -> Context {
    let mut carrier = std::collections::HashMap::new();
    for (var, header) in [("TRACEPARENT", "traceparent"), ("TRACESTATE", "tracestate")] {
        if let Some(v) = env.get(var).filter(|v| !v.trim().is_empty()) {
            carrier.insert(header.to_owned(), v.trim().to_owned());
        }
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// The trace id of a workflow run: the first 16 bytes of SHA-256 over
/// `agentctl-trace-v1`, the repository, the run id and the run attempt (each length-prefixed),
/// so every process of one run attempt computes the same id; `None` outside a workflow run.
pub fn run_trace_id(env: &Env) -> Option<TraceId> {
    let parts =
        [env.get("GITHUB_REPOSITORY")?, env.get("GITHUB_RUN_ID")?, env.get("GITHUB_RUN_ATTEMPT").unwrap_or("1")];
    let mut input = b"agentctl-trace-v1".to_vec();
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_ref()[..16]);
    Some(TraceId::from_bytes(id))
}

/// Span ids at random; trace ids of root spans from [`run_trace_id`] when in a workflow run.
#[derive(Debug)]
pub struct RunIds {
    trace: Option<TraceId>,
    random: RandomIdGenerator,
}

impl RunIds {
    /// The ids of the run `env` describes.
    pub fn new(env: &Env) -> RunIds {
        RunIds { trace: run_trace_id(env), random: RandomIdGenerator::default() }
    }
}

impl IdGenerator for RunIds {
    fn new_trace_id(&self) -> TraceId {
        self.trace.unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

/// `{server}/{owner}/{repo}`, when the repository is known.
pub fn repository_url(env: &Env) -> Option<String> {
    let server = env.get("GITHUB_SERVER_URL").unwrap_or("https://github.com").trim_end_matches('/');
    Some(format!("{server}/{}", env.get("GITHUB_REPOSITORY")?))
}

/// `{repository}/actions/runs/{id}/attempts/{attempt}`, when in a workflow run.
pub fn run_url(env: &Env) -> Option<String> {
    let attempt = env.get("GITHUB_RUN_ATTEMPT").unwrap_or("1");
    Some(format!("{}/actions/runs/{}/attempts/{attempt}", repository_url(env)?, env.get("GITHUB_RUN_ID")?))
}

/// `(server.address, url.template)` of a GitHub API URL: the host, and the path with every
/// value replaced by the name GitHub's REST reference gives it (`/repos/{owner}/{repo}/pulls/{pull_number}`)
/// or a generic `{id}`, `{sha}`, `{path}`; the query is dropped. A span never shows which
/// repository, PR, file or commit a request was for.
pub fn route_template(url: &str) -> (String, String) {
    let Ok(parsed) = reqwest::Url::parse(url) else { return (String::new(), "{url}".into()) };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let segments: Vec<&str> = parsed.path_segments().map(|s| s.collect()).unwrap_or_default();
    // A GitHub Enterprise Server API lives under `/api/v3`; keep the prefix.
    let start =
        segments.iter().position(|s| matches!(*s, "repos" | "app" | "orgs" | "installation" | "graphql" | "user"));
    let (prefix, rest) = segments.split_at(start.unwrap_or(segments.len()));
    let mut out: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
    let mut i = 0;
    while i < rest.len() {
        let s = rest[i];
        let previous = i.checked_sub(1).map(|p| rest[p]);
        let name = match (previous, s) {
            (Some("repos"), _) if i == 1 => "{owner}".to_owned(),
            (_, _) if i == 2 && rest.first() == Some(&"repos") => "{repo}".to_owned(),
            (Some("orgs"), _) => "{org}".to_owned(),
            (Some("contents"), _) => {
                out.push("{path}".into());
                break;
            }
            (Some("ref" | "refs"), _) => {
                out.push("{ref}".into());
                break;
            }
            (Some("pulls"), _) => "{pull_number}".to_owned(),
            (Some("issues"), _) if s.bytes().all(|b| b.is_ascii_digit()) => "{issue_number}".to_owned(),
            (_, s) if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) => "{sha}".to_owned(),
            (_, s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => "{id}".to_owned(),
            (_, s) if s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_') => s.to_owned(),
            _ => "{name}".to_owned(),
        };
        out.push(name);
        i += 1;
    }
    (host, format!("/{}", out.join("/")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn one_run_attempt_is_one_trace_and_traceparent_wins() {
        let run = |attempt: &str| {
            Env::from_pairs([
                ("GITHUB_REPOSITORY", "octo/hello"),
                ("GITHUB_RUN_ID", "42"),
                ("GITHUB_RUN_ATTEMPT", attempt),
            ])
        };
        let id = run_trace_id(&run("1")).unwrap();
        assert_eq!(run_trace_id(&run("1")), Some(id), "deterministic");
        assert_ne!(run_trace_id(&run("2")), Some(id), "a re-run attempt is its own trace");
        assert_ne!(id, TraceId::INVALID);
        assert_eq!(run_trace_id(&Env::from_pairs([])), None);
        let parent = parent_context(&Env::from_pairs([(
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]));
        assert_eq!(parent.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!parent_context(&Env::from_pairs([("TRACEPARENT", "garbage")])).has_active_span());
    }

    #[test]
    fn routes_show_no_values() {
        let t = |url: &str| route_template(url).1;
        assert_eq!(
            t("https://api.github.com/repos/o/r/pulls/12/reviews?per_page=100"),
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"
        );
        assert_eq!(
            t("https://api.github.com/repos/o/r/issues/7/comments"),
            "/repos/{owner}/{repo}/issues/{issue_number}/comments"
        );
        assert_eq!(
            t("https://api.github.com/repos/o/r/issues/comments/99"),
            "/repos/{owner}/{repo}/issues/comments/{id}"
        );
        assert_eq!(
            t("https://api.github.com/repos/o/r/contents/.github/agentctl.yml?ref=abc"),
            "/repos/{owner}/{repo}/contents/{path}"
        );
        assert_eq!(
            t("https://api.github.com/repos/o/r/git/ref/heads/agentctl/fix-1"),
            "/repos/{owner}/{repo}/git/ref/{ref}"
        );
        assert_eq!(
            t("https://ghe.example/api/v3/app/installations/5/access_tokens"),
            "/api/v3/app/installations/{id}/access_tokens"
        );
        assert_eq!(route_template("http://127.0.0.1:9/graphql").0, "127.0.0.1");
        assert_eq!(
            t("https://api.github.com/repos/o/r/commits/0123456789abcdef0123456789abcdef01234567"),
            "/repos/{owner}/{repo}/commits/{sha}"
        );
    }
}
