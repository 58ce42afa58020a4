//! The matchers of a `routes:` rule (events, commands, labels, branches, sizes, file globs) and
//! the choice of a rule's runner.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::routes::{self, LabelsMatcher, OneOrMany, RouteRule, RunnersScope};
use crate::context::catalog::CatalogEvent;
use crate::exit::{Exit, ExitError};
use crate::github::runners::RunnerOwner;
use crate::github::GitHubError;
use crate::log;

use super::{Client, EventFacts};

/// The changed files of the PR, fetched at most once per run.
pub(crate) enum Files {
    NotFetched,
    Fetched(Vec<String>),
    Unavailable(String),
}

/// The route's inputs besides the config.
pub(crate) struct MatchInput<'a> {
    pub(crate) event: &'a CatalogEvent,
    pub(crate) facts: &'a EventFacts,
    /// The slash command's task when one was given by an allowed author.
    pub(crate) command: Option<&'a str>,
    pub(crate) github: &'a dyn Client,
}

/// `Ok(Ok(()))` when every matcher of `rule` holds, `Ok(Err(why))` when one does not.
pub(crate) async fn rule_matches(
    rule: &RouteRule,
    i: &MatchInput<'_>,
    files: &mut Files,
) -> Result<Result<(), String>, ExitError> {
    let globs = |list: &OneOrMany| -> GlobSet {
        let mut b = GlobSetBuilder::new();
        for g in list.values() {
            // Checked at config load (routes::check_references); a bad one matches nothing.
            if let Ok(g) = Glob::new(g) {
                b.add(g);
            }
        }
        b.build().unwrap_or_else(|_| GlobSet::empty())
    };
    let f = i.facts;
    if let Some(ev) = &rule.event {
        if !globs(ev).is_match(i.event.name) {
            return Ok(Err(format!("event {} is not {}", i.event.name, ev.values().join(" or "))));
        }
    }
    if let Some(cmd) = &rule.command {
        match i.command {
            Some(c) if globs(cmd).is_match(c) => {}
            Some(c) => return Ok(Err(format!("command {c} is not {}", cmd.values().join(" or ")))),
            None => return Ok(Err("no /agentctl command".into())),
        }
    }
    if let Some(want) = &rule.labels {
        let Some(have) = &f.labels else { return Ok(Err("the event carries no labels".into())) };
        let has = |l: &String| have.iter().any(|h| h.eq_ignore_ascii_case(l));
        let (any, all): (&[String], &[String]) = match want {
            LabelsMatcher::Any(any) => (any, &[]),
            LabelsMatcher::Sets { any, all } => (any, all),
        };
        if !any.is_empty() && !any.iter().any(has) {
            return Ok(Err(format!("no label of {}", any.join(", "))));
        }
        if let Some(missing) = all.iter().find(|l| !has(l)) {
            return Ok(Err(format!("label {missing} is missing")));
        }
    }
    if let Some(allowed) = &rule.author_association {
        let Some(a) = &f.author_association else { return Ok(Err("the event has no author_association".into())) };
        if !allowed.iter().any(|x| x.eq_ignore_ascii_case(a)) {
            return Ok(Err(format!("author_association {a} is not {}", allowed.join(" or "))));
        }
    }
    if let Some(want) = rule.draft {
        match f.draft {
            Some(d) if d == want => {}
            Some(d) => return Ok(Err(format!("draft is {d}"))),
            None => return Ok(Err("the event has no draft flag (not a pull request)".into())),
        }
    }
    for (key, want, have) in
        [("base_branch", &rule.base_branch, &f.base_branch), ("head_branch", &rule.head_branch, &f.head_branch)]
    {
        if let Some(want) = want {
            let Some(have) = have else { return Ok(Err(format!("the event has no {key}"))) };
            if !globs(want).is_match(have) {
                return Ok(Err(format!("{key} {have} is not {}", want.values().join(" or "))));
            }
        }
    }
    if let Some(size) = rule.diff_size {
        let Some(n) = f.changed_lines else {
            return Ok(Err("the payload has no pull_request.additions/deletions for diff_size".into()));
        };
        if size.max_changed_lines.is_some_and(|m| n > m) || size.min_changed_lines.is_some_and(|m| n < m) {
            return Ok(Err(format!("{n} changed lines are outside diff_size")));
        }
    }
    if let Some(paths) = &rule.paths {
        let set = globs(&OneOrMany::Many(paths.clone()));
        if let Files::NotFetched = files {
            *files = match (i.github.get()?, f.pr) {
                (Some(gh), Some(pr)) => match gh.pull_file_names(pr).await {
                    Ok(list) => Files::Fetched(list),
                    Err(e) => return Err(files_error(pr, e)),
                },
                (None, _) => Files::Unavailable("no GITHUB_TOKEN to list the changed files".into()),
                (_, None) => Files::Unavailable("the event has no pull request to list files of".into()),
            };
        }
        match files {
            Files::Fetched(list) if list.iter().any(|p| set.is_match(p)) => {}
            Files::Fetched(list) => return Ok(Err(format!("none of {} changed files matches paths", list.len()))),
            Files::Unavailable(why) => return Ok(Err(format!("paths cannot be checked: {why}"))),
            Files::NotFetched => return Ok(Err("paths cannot be checked".into())),
        }
    }
    Ok(Ok(()))
}

fn files_error(pr: u64, e: GitHubError) -> ExitError {
    ExitError::new(
        Exit::Failure,
        anyhow::anyhow!("a rule needs the changed files of #{pr}, and they cannot be listed: {}", log::error_chain(&e)),
    )
}

/// The runner labels: the first `runs_on` set with an online, idle runner carrying all its
/// labels (one paginated listing), else `fallback_runs_on`, else the first set (the job then
/// queues for it). A listing error (403 without permission) is a warning and the fallback; only
/// a client that cannot be built at all is an error. The second value says which and why.
pub(crate) async fn choose_runner(rule: &RouteRule, github: &dyn Client) -> Result<(Vec<String>, String), ExitError> {
    let fallback = || {
        rule.fallback_runs_on
            .clone()
            .or_else(|| rule.runs_on.first().cloned())
            .unwrap_or_else(|| vec![routes::DEFAULT_RUNS_ON.into()])
    };
    match rule.runs_on.as_slice() {
        [] => return Ok((fallback(), "the rule names no runners".into())),
        [only] if rule.fallback_runs_on.is_none() => return Ok((only.clone(), "the rule's only label set".into())),
        _ => {}
    }
    let Some(gh) = github.get()? else {
        let labels = fallback();
        log::warn("no GITHUB_TOKEN: self-hosted runners cannot be listed; using the fallback labels");
        return Ok((labels.clone(), format!("fallback {labels:?}: no token to list runners")));
    };
    let owner = match rule.runners_scope {
        RunnersScope::Repo => RunnerOwner::Repo,
        RunnersScope::Org => RunnerOwner::Org,
    };
    Ok(match gh.runners(owner).await {
        Ok(runners) => match rule.runs_on.iter().find(|set| runners.iter().any(|r| r.can_take(set))) {
            Some(set) => (set.clone(), format!("{set:?}: an online idle runner has these labels")),
            None => {
                let labels = fallback();
                (labels.clone(), format!("fallback {labels:?}: no online idle runner for any label set"))
            }
        },
        Err(e) => {
            let labels = fallback();
            log::warn(&format!(
                "cannot list self-hosted runners ({}); using the fallback labels",
                log::error_chain(&e)
            ));
            (labels.clone(), format!("fallback {labels:?}: runners cannot be listed"))
        }
    })
}
