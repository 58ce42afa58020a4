//! GitHub REST client: octocrab for transport and auth, with its retry layer off (it would
//! repeat POSTs at once and duplicate comments), our own policy on top, and typed requests for
//! what octocrab lacks (review comments with `line`/`side`/`start_line`/`start_side`, the diff
//! media type, contents at a ref).
//!
//! Every URL is built from `GITHUB_API_URL` by appending, so a GHES path prefix
//! (`https://host/api/v3`) is kept on every request.

pub mod apps;
pub mod client;
pub mod jwt;
pub mod markers;
pub mod publish;
pub mod runners;

pub use client::{
    ClientPolicy, GitHub, GitHubError, IssueComment, PullRequest, Review, ReviewComment, ReviewEvent, ReviewRequest,
};
