//! Typed requests for publishing a fix: issues, a user's permission on the repository, git
//! references, pull requests, and the GraphQL `createCommitOnBranch` mutation (a commit GitHub
//! signs, made without a checkout push).
//!
//! Sources: "Get an issue" (<https://docs.github.com/en/rest/issues/issues#get-an-issue>), "Get
//! repository permissions for a user"
//! (<https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user>),
//! "Git references" (<https://docs.github.com/en/rest/git/refs>: get, create), "Pulls"
//! (<https://docs.github.com/en/rest/pulls/pulls>: create, update), and the GraphQL
//! `createCommitOnBranch` mutation
//! (<https://docs.github.com/en/graphql/reference/mutations#createcommitonbranch>).
//!
//! Every call goes through the client's policy ([`GitHub`]): GETs retried on 5xx, writes never
//! retried except after a rate limit.

use serde::{Deserialize, Serialize};

use super::error::check;
use super::transport::{decode, encode_path, MEDIA_JSON};
use super::{GitHub, GitHubError};

/// An issue (or the issue side of a pull request).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Issue {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: String,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// A pull request's head and base, with the head's repository (a fork or this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullHeads {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub head_ref: String,
    pub head_sha: String,
    /// `owner/name` of the head's repository; `None` when the fork was deleted.
    pub head_repo: Option<String>,
    pub base_ref: String,
    pub base_sha: String,
}

/// A created or updated pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct CreatedPull {
    pub number: u64,
    pub html_url: String,
}

/// One file of a commit made with [`GitHub::create_commit_on_branch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitFile {
    /// Repository-relative path.
    pub path: String,
    /// New content; `None` deletes the file.
    pub contents: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct RawPullHeads {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    head: RawSide,
    base: RawSide,
}

#[derive(Deserialize)]
struct RawSide {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    repo: Option<RawRepo>,
}

#[derive(Deserialize)]
struct RawRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct RawRef {
    object: RawObject,
}

#[derive(Deserialize)]
struct RawObject {
    sha: String,
}

#[derive(Deserialize)]
struct RawPermission {
    #[serde(default)]
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

#[derive(Serialize)]
struct NewPull<'a> {
    title: &'a str,
    head: &'a str,
    base: &'a str,
    body: &'a str,
    draft: bool,
}

/// The repository fields a fix reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Repository {
    pub default_branch: String,
}

impl GitHub {
    /// `GET /repos/{o}/{r}`.
    pub(crate) async fn repository(&self) -> Result<Repository, GitHubError> {
        let action = "get the repository".to_string();
        let url = self.repo_url("");
        let reply = self.get(url.trim_end_matches('/'), MEDIA_JSON, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `GET /issues/{n}`.
    pub(crate) async fn issue(&self, number: u64) -> Result<Issue, GitHubError> {
        let action = format!("get issue #{number}");
        let reply = self.get(&self.repo_url(&format!("issues/{number}")), MEDIA_JSON, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `GET /pulls/{n}` with the head repository (to tell a fork).
    pub(crate) async fn pull_heads(&self, number: u64) -> Result<PullHeads, GitHubError> {
        let action = format!("get pull request #{number}");
        let reply = self.get(&self.repo_url(&format!("pulls/{number}")), MEDIA_JSON, &action).await?;
        let raw: RawPullHeads = decode(&check(reply, &action)?.body, &action)?;
        Ok(PullHeads {
            number: raw.number,
            title: raw.title,
            body: raw.body,
            head_ref: raw.head.git_ref,
            head_sha: raw.head.sha,
            head_repo: raw.head.repo.map(|r| r.full_name),
            base_ref: raw.base.git_ref,
            base_sha: raw.base.sha,
        })
    }

    /// `GET /collaborators/{user}/permission`: the user's role (`admin`, `maintain`, `write`,
    /// `triage`, `read`, or `none`). The role name is preferred over the legacy `permission`
    /// field, which reports `maintain` as `write` and `triage` as `read`.
    pub(crate) async fn permission(&self, user: &str) -> Result<String, GitHubError> {
        let action = format!("get the permission of {user}");
        let url = self.repo_url(&format!("collaborators/{}/permission", urlencoding::encode(user)));
        let reply = self.get(&url, MEDIA_JSON, &action).await?;
        let raw: RawPermission = decode(&check(reply, &action)?.body, &action)?;
        Ok(raw.role_name.filter(|r| !r.is_empty()).unwrap_or(raw.permission))
    }

    /// The sha `refs/heads/{branch}` points at; `Ok(None)` on 404.
    pub(crate) async fn branch_head(&self, branch: &str) -> Result<Option<String>, GitHubError> {
        let action = format!("get branch {branch}");
        let reply =
            self.get(&self.repo_url(&format!("git/ref/heads/{}", encode_path(branch))), MEDIA_JSON, &action).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let raw: RawRef = decode(&check(reply, &action)?.body, &action)?;
        Ok(Some(raw.object.sha))
    }

    /// Whether commit `sha` can be read in this repository (`GET /git/commits/{sha}`, "Get a
    /// commit object", <https://docs.github.com/en/rest/git/commits#get-a-commit-object>). A
    /// fork's pull-request head is readable in the base repository through `refs/pull/{n}/head`
    /// as long as GitHub keeps that ref. `Ok(false)` on 404 and 422.
    pub(crate) async fn commit_exists(&self, sha: &str) -> Result<bool, GitHubError> {
        let action = format!("get commit {sha}");
        let reply = self.get(&self.repo_url(&format!("git/commits/{}", encode_path(sha))), MEDIA_JSON, &action).await?;
        if reply.status == 404 || reply.status == 422 {
            return Ok(false);
        }
        check(reply, &action).map(|_| true)
    }

    /// `POST /git/refs`: creates `refs/heads/{branch}` at `sha` (never moves an existing one:
    /// GitHub answers 422 when it exists).
    pub(crate) async fn create_branch(&self, branch: &str, sha: &str) -> Result<(), GitHubError> {
        let action = format!("create branch {branch}");
        let body = serde_json::json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        let reply = self.write(http::Method::POST, &self.repo_url("git/refs"), &body, &action).await?;
        check(reply, &action).map(|_| ())
    }

    /// `POST /pulls` as a draft.
    pub(crate) async fn create_draft_pull(
        &self,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<CreatedPull, GitHubError> {
        let action = format!("open a draft pull request from {head} into {base}");
        let req = NewPull { title, head, base, body, draft: true };
        let reply = self.write(http::Method::POST, &self.repo_url("pulls"), &req, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// `PATCH /pulls/{n}`: new title and body.
    pub(crate) async fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<CreatedPull, GitHubError> {
        let action = format!("update pull request #{number}");
        let req = serde_json::json!({"title": title, "body": body});
        let reply = self.write(http::Method::PATCH, &self.repo_url(&format!("pulls/{number}")), &req, &action).await?;
        decode(&check(reply, &action)?.body, &action)
    }

    /// The root a client must be built on (see [`GitHub::new`]) to reach the GraphQL endpoint
    /// `{root}/graphql`: the REST root itself on github.com (`https://api.github.com`), and
    /// `https://HOST/api` for GHES, whose REST root is `https://HOST/api/v3` and GraphQL
    /// endpoint `https://HOST/api/graphql`. A separate client is needed because the transport
    /// keeps the REST root's path prefix on every request.
    pub(crate) fn graphql_root(api_url: &str) -> String {
        let api = api_url.trim_end_matches('/');
        match api.strip_suffix("/v3") {
            Some(root) if root.ends_with("/api") => root.to_string(),
            _ => api.to_string(),
        }
    }

    /// The GraphQL `createCommitOnBranch` mutation, sent to `{root}/graphql` (call it on a client
    /// built on [`GitHub::graphql_root`]): one commit on `branch` whose parent must be
    /// `expected_head` (GitHub refuses otherwise, so nothing is ever overwritten), with file
    /// contents base64-encoded, on repository `repo_of` (`(owner, name)`). Returns the new
    /// commit's oid.
    ///
    /// Errors: GraphQL `errors` in the answer → [`GitHubError::Unprocessable`] with their
    /// messages; HTTP errors as every call.
    pub(crate) async fn create_commit_on_branch(
        &self,
        repo_of: (&str, &str),
        branch: &str,
        expected_head: &str,
        headline: &str,
        body: &str,
        files: &[CommitFile],
    ) -> Result<String, GitHubError> {
        use base64::Engine as _;
        let action = format!("commit on {branch} (createCommitOnBranch)");
        let (owner, repo) = (repo_of.0, repo_of.1);
        let additions: Vec<serde_json::Value> = files
            .iter()
            .filter_map(|f| {
                let c = f.contents.as_ref()?;
                Some(serde_json::json!({"path": f.path, "contents": base64::engine::general_purpose::STANDARD.encode(c)}))
            })
            .collect();
        let deletions: Vec<serde_json::Value> =
            files.iter().filter(|f| f.contents.is_none()).map(|f| serde_json::json!({"path": f.path})).collect();
        let request = serde_json::json!({
            "query": "mutation($input: CreateCommitOnBranchInput!) { createCommitOnBranch(input: $input) { commit { oid url } } }",
            "variables": {"input": {
                "branch": {"repositoryNameWithOwner": format!("{owner}/{repo}"), "branchName": branch},
                "message": {"headline": headline, "body": body},
                "expectedHeadOid": expected_head,
                "fileChanges": {"additions": additions, "deletions": deletions}
            }}
        });
        let url = format!("{}/graphql", self.api_base);
        let reply = self.write(http::Method::POST, &url, &request, &action).await?;
        let value: serde_json::Value = decode(&check(reply, &action)?.body, &action)?;
        if let Some(errors) = value.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors.iter().filter_map(|e| e.get("message")?.as_str()).collect();
            return Err(GitHubError::Unprocessable { action, message: messages.join("; ") });
        }
        value
            .pointer("/data/createCommitOnBranch/commit/oid")
            .and_then(|o| o.as_str())
            .map(str::to_string)
            .ok_or_else(|| GitHubError::Decode { action, message: "no commit oid in the answer".into() })
    }
}
