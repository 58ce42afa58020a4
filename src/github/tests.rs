//! Tests of the GitHub client against a wiremock server that serves GitHub's own REST examples
//! (copied into `tests/fixtures/github/`). Every server has a catch-all mock that answers 599
//! and expects no call, so an unexpected request fails the test when the server drops.

use super::endpoints::*;
use super::error::*;
use super::rate_limit::*;
use super::transport::*;
use crate::findings::Side;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wiremock::matchers::{any, body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PULL_JSON: &str = include_str!("../../tests/fixtures/github/pulls.get.200.default.json");
const COMMENTS_JSON: &str = include_str!("../../tests/fixtures/github/issues.list-comments.200.default.json");
const CREATED_COMMENT_JSON: &str = include_str!("../../tests/fixtures/github/issues.create-comment.201.default.json");
const UPDATED_COMMENT_JSON: &str = include_str!("../../tests/fixtures/github/issues.update-comment.200.default.json");
const REVIEW_JSON: &str = include_str!("../../tests/fixtures/github/pulls.create-review.200.default.json");
const REVIEWS_JSON: &str = include_str!("../../tests/fixtures/github/pulls.list-reviews.200.default.json");
const FILES_JSON: &str = include_str!("../../tests/fixtures/github/pulls.list-files.200.default.json");

/// Every path starts with the GHES prefix: the client must keep it.
const PREFIX: &str = "/api/v3/repos/octo/hello";

/// Policy with tiny backoffs so retry tests are fast.
fn fast_policy() -> ClientPolicy {
    ClientPolicy {
        get_retries: 3,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(5),
        rate_limit_retries: 2,
        primary_max_wait: Duration::from_secs(2),
        secondary_default_wait: Duration::from_millis(10),
        secondary_max_wait: Duration::from_secs(5),
    }
}

/// A server whose unmatched requests fail the test, and a client at `uri()/api/v3`.
async fn setup(write_delay: Duration) -> (MockServer, GitHub) {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599).set_body_string("unexpected request"))
        .with_priority(u8::MAX)
        .expect(0)
        .named("catch-all")
        .mount(&server)
        .await;
    let token = SecretString::from("ghs_testtoken123");
    let gh = GitHub::new(&format!("{}/api/v3/", server.uri()), &token, "octo", "hello", write_delay)
        .expect("client")
        .with_policy(fast_policy());
    (server, gh)
}

fn json_response(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn sample_review() -> ReviewRequest {
    ReviewRequest {
        commit_id: "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091".into(),
        body: "summary".into(),
        event: ReviewEvent::Comment,
        comments: vec![
            ReviewComment {
                path: "src/lib.rs".into(),
                line: 12,
                side: Side::Right,
                start_line: Some(10),
                start_side: Some(Side::Right),
                body: "multi-line".into(),
            },
            ReviewComment {
                path: "old.rs".into(),
                line: 3,
                side: Side::Left,
                start_line: None,
                start_side: None,
                body: "single".into(),
            },
        ],
    }
}

#[tokio::test]
async fn pull_parses_the_real_example_and_keeps_the_ghes_prefix_and_headers() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/1347")))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", API_VERSION))
        .and(header("authorization", "Bearer ghs_testtoken123"))
        .and(|req: &Request| {
            req.headers.get("user-agent").and_then(|v| v.to_str().ok()).is_some_and(|ua| ua.starts_with("agentctl/"))
        })
        .respond_with(json_response(200, PULL_JSON))
        .expect(1)
        .mount(&server)
        .await;
    let pr = gh.pull(1347).await.expect("pull");
    assert_eq!(
        pr,
        PullRequest {
            number: 1347,
            title: "Amazing new feature".into(),
            body: Some("Please pull these awesome changes in!".into()),
            draft: false,
            html_url: "https://github.com/octocat/Hello-World/pull/1347".into(),
            head_sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e".into(),
            head_ref: "new-topic".into(),
            base_sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e".into(),
            base_ref: "master".into(),
        }
    );
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn pull_diff_asks_for_the_diff_media_type() {
    let (server, gh) = setup(Duration::ZERO).await;
    let diff = b"diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-old\n+new \xff\n".to_vec();
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/7")))
        .and(header("accept", "application/vnd.github.diff"))
        .and(header("x-github-api-version", API_VERSION))
        .and(header("authorization", "Bearer ghs_testtoken123"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(diff.clone(), "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    // Non-UTF-8 bytes come back untouched.
    assert_eq!(gh.pull_diff(7).await.expect("diff"), diff);
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn pull_diff_falls_back_to_paginated_files_when_github_refuses_a_large_diff() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/9")))
        .and(header("accept", "application/vnd.github.diff"))
        .respond_with(json_response(
            406,
            r#"{"message":"Sorry, the diff exceeded the maximum number of files (300).","errors":[{"resource":"PullRequest","field":"diff","code":"too_large"}]}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let page2_url = format!("{}{PREFIX}/pulls/9/files?per_page=100&page=2", server.uri());
    // Page 1: the real example (an added file whose patch lacks a trailing newline) and a rename.
    let mut page1: Vec<Value> = serde_json::from_str(FILES_JSON).expect("fixture");
    page1[0]["patch"] = json!("@@ -0,0 +1,2 @@\n+hello\n+world");
    page1.push(json!({"filename": "src/new_name.rs", "previous_filename": "src/old_name.rs", "status": "renamed",
        "additions": 1, "deletions": 1, "changes": 2, "patch": "@@ -1,2 +1,2 @@\n-a\n+b\n c\n"}));
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/9/files")))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("page"))
        .and(header("accept", "application/vnd.github+json"))
        .respond_with(
            json_response(200, &Value::Array(page1).to_string())
                .insert_header("link", format!("<{page2_url}>; rel=\"next\", <{page2_url}>; rel=\"last\"")),
        )
        .expect(1)
        .mount(&server)
        .await;
    // Page 2: a binary file (no patch), a pure rename, a deletion.
    let page2 = json!([
        {"filename": "img/logo.png", "status": "modified", "additions": 0, "deletions": 0, "changes": 0},
        {"filename": "docs/b.md", "previous_filename": "docs/a.md", "status": "renamed", "additions": 0, "deletions": 0, "changes": 0},
        {"filename": "gone.txt", "status": "removed", "additions": 0, "deletions": 1, "changes": 1, "patch": "@@ -1 +0,0 @@\n-bye"}
    ]);
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/9/files")))
        .and(query_param("page", "2"))
        .respond_with(json_response(200, &page2.to_string()))
        .expect(1)
        .mount(&server)
        .await;

    let diff = String::from_utf8(gh.pull_diff(9).await.expect("diff")).expect("utf-8");
    let expected = "\
diff --git a/file1.txt b/file1.txt
new file mode 100644
--- /dev/null
+++ b/file1.txt
@@ -0,0 +1,2 @@
+hello
+world
diff --git a/src/old_name.rs b/src/new_name.rs
rename from src/old_name.rs
rename to src/new_name.rs
--- a/src/old_name.rs
+++ b/src/new_name.rs
@@ -1,2 +1,2 @@
-a
+b
 c
diff --git a/img/logo.png b/img/logo.png
Binary files a/img/logo.png and b/img/logo.png differ
diff --git a/docs/a.md b/docs/b.md
similarity index 100%
rename from docs/a.md
rename to docs/b.md
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
";
    assert_eq!(diff, expected);
    assert_eq!(gh.request_count(), 3);
}

#[tokio::test]
async fn pull_diff_falls_back_on_422_too_large_but_not_on_other_422() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/3")))
        .respond_with(json_response(422, r#"{"message":"Server Error: Sorry, this diff is taking too long to generate.","errors":[{"resource":"PullRequest","field":"diff","code":"too_large"}]}"#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/3/files")))
        .respond_with(json_response(200, r#"[{"filename":"bin.dat","status":"added","changes":0}]"#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/4")))
        .respond_with(json_response(422, r#"{"message":"Validation Failed"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let diff = String::from_utf8(gh.pull_diff(3).await.expect("diff")).expect("utf-8");
    assert_eq!(
        diff,
        "diff --git a/bin.dat b/bin.dat\nnew file mode 100644\nBinary files /dev/null and b/bin.dat differ\n"
    );
    let err = gh.pull_diff(4).await.expect_err("422");
    assert!(matches!(err, GitHubError::Unprocessable { .. }), "{err:?}");
    assert_eq!(gh.request_count(), 3);
}

#[tokio::test]
async fn create_review_sends_line_and_side_not_position() {
    let (server, gh) = setup(Duration::ZERO).await;
    let expected_body = json!({
        "commit_id": "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091",
        "body": "summary",
        "event": "COMMENT",
        "comments": [
            {"path": "src/lib.rs", "line": 12, "side": "RIGHT", "start_line": 10, "start_side": "RIGHT", "body": "multi-line"},
            {"path": "old.rs", "line": 3, "side": "LEFT", "body": "single"}
        ]
    });
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", API_VERSION))
        .and(header("authorization", "Bearer ghs_testtoken123"))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected_body))
        .respond_with(json_response(200, REVIEW_JSON))
        .expect(1)
        .mount(&server)
        .await;
    let review = gh.create_review(12, &sample_review()).await.expect("review");
    assert_eq!(review.id, 80);
    assert_eq!(review.commit_id.as_deref(), Some("ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091"));
    assert_eq!(review.html_url, "https://github.com/octocat/Hello-World/pull/12#pullrequestreview-80");
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn create_review_422_is_unprocessable_with_githubs_message() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .respond_with(json_response(
            422,
            r#"{"message":"Unprocessable Entity","errors":["Line could not be resolved"],"documentation_url":"https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request","status":"422"}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = gh.create_review(12, &sample_review()).await.expect_err("422");
    match &err {
        GitHubError::Unprocessable { action, message } => {
            assert_eq!(action, "create review on #12");
            assert_eq!(message, "Unprocessable Entity: Line could not be resolved");
        }
        other => panic!("expected Unprocessable, got {other:?}"),
    }
    assert!(err.to_string().contains("create review on #12"));
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn regression_500_on_post_is_not_retried_so_no_duplicate_review() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .respond_with(json_response(500, r#"{"message":"Server Error"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let err = gh.create_review(12, &sample_review()).await.expect_err("500");
    assert!(matches!(err, GitHubError::Status { status: 500, .. }), "{err:?}");
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn get_502_is_retried_then_succeeds() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/1347")))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/1347")))
        .respond_with(json_response(200, PULL_JSON))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let before = crate::resilience::counts().retries;
    assert_eq!(gh.pull(1347).await.expect("pull").number, 1347);
    assert_eq!(gh.request_count(), 3);
    // Counted with every other retry of the process (other tests may add to the same counter).
    assert!(crate::resilience::counts().retries >= before + 2, "GitHub retries are not counted");
}

#[tokio::test]
async fn get_gives_up_after_three_retries() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/5")))
        .respond_with(ResponseTemplate::new(503).set_body_string("unavailable"))
        .expect(4)
        .mount(&server)
        .await;
    let err = gh.pull(5).await.expect_err("503");
    match err {
        GitHubError::Status { status, message, action } => {
            assert_eq!(status, 503);
            assert_eq!(message, "unavailable");
            assert_eq!(action, "get pull request #5");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_eq!(gh.request_count(), 4);
}

#[tokio::test]
async fn secondary_rate_limit_on_post_waits_retry_after_then_retries_once() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .respond_with(
            json_response(403, r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#)
                .insert_header("retry-after", "1"),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .respond_with(json_response(200, REVIEW_JSON))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let (review, retries) = crate::resilience::recording_retries(gh.create_review(12, &sample_review())).await;
    let review = review.expect("review after the wait");
    let waits: Vec<(Duration, bool)> = retries.iter().map(|r| (r.wait, r.server_asked)).collect();
    assert_eq!(waits, [(Duration::from_secs(1), true)], "one wait, the server's retry-after");
    assert_eq!(review.id, 80);
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn secondary_rate_limit_without_retry_after_uses_the_default_wait() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/issues/12/comments")))
        .respond_with(json_response(403, r#"{"message":"You have exceeded a secondary rate limit."}"#))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/issues/12/comments")))
        .respond_with(json_response(201, CREATED_COMMENT_JSON))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    gh.create_issue_comment(12, "hi").await.expect("comment");
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn secondary_rate_limit_longer_than_the_cap_fails_fast() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/issues/12/comments")))
        .respond_with(
            json_response(429, r#"{"message":"You have exceeded a secondary rate limit."}"#)
                .insert_header("retry-after", "3600"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (err, retries) = crate::resilience::recording_retries(gh.create_issue_comment(12, "hi")).await;
    let err = err.expect_err("rate limited");
    assert!(retries.is_empty(), "a wait over the cap is not waited: {retries:?}");
    match err {
        GitHubError::Status { status: 429, message, .. } => assert!(message.contains("3600 s"), "{message}"),
        other => panic!("expected Status 429, got {other:?}"),
    }
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn primary_rate_limit_waits_for_a_near_reset_and_fails_on_a_far_one() {
    let (server, gh) = setup(Duration::ZERO).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/1347")))
        .respond_with(
            json_response(403, r#"{"message":"API rate limit exceeded for installation ID 1."}"#)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", now.to_string()),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/1347")))
        .respond_with(json_response(200, PULL_JSON))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/2")))
        .respond_with(
            json_response(403, r#"{"message":"API rate limit exceeded for installation ID 1."}"#)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", (now + 3000).to_string()),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(gh.pull(1347).await.expect("pull after reset").number, 1347);
    let err = gh.pull(2).await.expect_err("far reset");
    assert!(!err.is_auth(), "a rate limit is not an auth error: {err:?}");
    assert!(err.to_string().contains("primary rate limit exhausted"), "{err}");
    assert_eq!(gh.request_count(), 3);
}

#[tokio::test]
async fn status_401_is_an_auth_error() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .respond_with(json_response(
            401,
            r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = gh.create_review(12, &sample_review()).await.expect_err("401");
    assert!(err.is_auth(), "{err:?}");
    assert!(err.to_string().contains("Bad credentials"));
    assert!(!err.to_string().contains("ghs_testtoken123"));
    assert_eq!(gh.request_count(), 1);
}

#[tokio::test]
async fn issue_comments_follow_link_pagination() {
    let (server, gh) = setup(Duration::ZERO).await;
    // GitHub's next links use the `/repositories/{id}` form; it must still carry the prefix.
    let page2_url = format!("{}/api/v3/repositories/1296269/issues/1347/comments?per_page=100&page=2", server.uri());
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/issues/1347/comments")))
        .and(query_param("per_page", "100"))
        .respond_with(json_response(200, COMMENTS_JSON).insert_header("link", format!("<{page2_url}>; rel=\"next\"")))
        .expect(1)
        .mount(&server)
        .await;
    let mut page2: Vec<Value> = serde_json::from_str(COMMENTS_JSON).expect("fixture");
    page2[0]["id"] = json!(2);
    page2[0]["body"] = json!("<!-- agentctl:summary:v1 sha=abc -->\nsummary");
    Mock::given(method("GET"))
        .and(path("/api/v3/repositories/1296269/issues/1347/comments"))
        .and(query_param("page", "2"))
        .respond_with(json_response(200, &Value::Array(page2).to_string()))
        .expect(1)
        .mount(&server)
        .await;
    let comments = gh.issue_comments(1347).await.expect("comments");
    let ids: Vec<u64> = comments.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(comments[0].body.as_deref(), Some("Me too"));
    assert_eq!(comments[0].html_url, "https://github.com/octocat/Hello-World/issues/1347#issuecomment-1");
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn reviews_are_listed() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/12/reviews")))
        .and(query_param("per_page", "100"))
        .respond_with(json_response(200, REVIEWS_JSON))
        .expect(1)
        .mount(&server)
        .await;
    let reviews = gh.reviews(12).await.expect("reviews");
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].id, 80);
    assert_eq!(reviews[0].body.as_deref(), Some("Here is the body for the review."));
}

#[tokio::test]
async fn create_and_update_comment_send_the_body() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/issues/1347/comments")))
        .and(body_json(json!({"body": "Me too"})))
        .respond_with(json_response(201, CREATED_COMMENT_JSON))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{PREFIX}/issues/comments/1")))
        .and(body_json(json!({"body": "Me too"})))
        .respond_with(json_response(200, UPDATED_COMMENT_JSON))
        .expect(1)
        .mount(&server)
        .await;
    let created = gh.create_issue_comment(1347, "Me too").await.expect("create");
    assert_eq!(created.id, 1);
    let updated = gh.update_issue_comment(1, "Me too").await.expect("update");
    assert_eq!(updated.body.as_deref(), Some("Me too"));
    assert_eq!(gh.request_count(), 2);
}

#[test]
fn write_wait_is_zero_within_the_burst_and_the_rest_of_write_delay_after_it() {
    let delay = Duration::from_secs(1);
    // Within the burst: never a wait, however recent the last write.
    assert_eq!(write_wait(0, None, delay), Duration::ZERO);
    for done in 1..WRITE_BURST {
        assert_eq!(write_wait(done, Some(Duration::ZERO), delay), Duration::ZERO, "write {}", done + 1);
    }
    // From write WRITE_BURST + 1 on: what remains of the delay since the last write.
    assert_eq!(write_wait(WRITE_BURST, Some(Duration::ZERO), delay), delay);
    assert_eq!(write_wait(WRITE_BURST, Some(Duration::from_millis(300)), delay), Duration::from_millis(700));
    assert_eq!(write_wait(WRITE_BURST + 50, Some(Duration::from_secs(2)), delay), Duration::ZERO);
    assert_eq!(write_wait(WRITE_BURST + 1, Some(Duration::from_millis(1)), Duration::ZERO), Duration::ZERO);
    // GitHub's documented ceiling: 80 content-creating requests a minute.
    const { assert!(WRITE_BURST < 80) };
}

/// Regression: every review run slept `write_delay` (1 s) between its review POST and its
/// summary POST, though two writes are far below GitHub's documented limits.
#[tokio::test]
async fn two_writes_in_a_run_do_not_wait_for_write_delay() {
    // An hour of spacing: any wait would hit the timeout below.
    let (server, gh) = setup(Duration::from_secs(3600)).await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/pulls/1347/reviews")))
        .respond_with(json_response(200, REVIEW_JSON))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/issues/1347/comments")))
        .respond_with(json_response(201, CREATED_COMMENT_JSON))
        .expect(1)
        .mount(&server)
        .await;
    let run = async {
        gh.create_review(1347, &sample_review()).await.expect("review");
        gh.create_issue_comment(1347, "summary").await.expect("comment");
    };
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("no write waited for write_delay");
    assert_eq!(gh.spaced_write_count().await, 0);
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn writes_past_the_burst_are_serialized_and_spaced_by_write_delay() {
    let delay = Duration::from_millis(200);
    let (server, gh) = setup(delay).await;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let log = received.clone();
    let total = WRITE_BURST as usize + 2;
    Mock::given(method("POST"))
        .and(path(format!("{PREFIX}/issues/1347/comments")))
        .and(move |_: &Request| {
            log.lock().expect("lock").push(Instant::now());
            true
        })
        .respond_with(json_response(201, CREATED_COMMENT_JSON))
        .expect(total as u64)
        .mount(&server)
        .await;
    // Concurrent callers: the write lock serializes them.
    let results = futures::future::join_all(
        (0..total).map(|i| gh.create_issue_comment(1347, if i % 2 == 0 { "a" } else { "b" })),
    )
    .await;
    for r in results {
        r.expect("write");
    }
    assert_eq!(
        gh.spaced_write_count().await,
        2,
        "writes {} and {} wait, the burst does not",
        WRITE_BURST + 1,
        WRITE_BURST + 2
    );
    let times = received.lock().expect("lock").clone();
    assert_eq!(times.len(), total);
    for pair in times[WRITE_BURST as usize - 1..].windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= delay - Duration::from_millis(20), "writes past the burst only {gap:?} apart");
    }
    assert_eq!(gh.request_count(), total as u64);
}

#[tokio::test]
async fn file_at_encodes_the_path_and_maps_404_to_none() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/contents/.github/agent%20ctl.yml")))
        .and(query_param("ref", "feature/x"))
        .and(header("accept", "application/vnd.github.raw+json"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"model: x\n".to_vec(), "application/vnd.github.raw"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/contents/missing.yml")))
        .respond_with(json_response(404, r#"{"message":"Not Found"}"#))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(gh.file_at(".github/agent ctl.yml", "feature/x").await.expect("file"), Some(b"model: x\n".to_vec()));
    assert_eq!(gh.file_at("missing.yml", "main").await.expect("404"), None);
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn compare_diff_uses_three_dots_and_maps_404_to_none() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/compare/aaa...bbb")))
        .and(header("accept", "application/vnd.github.diff"))
        .respond_with(ResponseTemplate::new(200).set_body_string("diff --git a/x b/x\n"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/compare/gone...bbb")))
        .respond_with(json_response(404, r#"{"message":"Not Found"}"#))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(gh.compare_diff("aaa", "bbb").await.expect("diff"), Some(b"diff --git a/x b/x\n".to_vec()));
    assert_eq!(gh.compare_diff("gone", "bbb").await.expect("404"), None);
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn not_found_and_forbidden_map_to_their_variants() {
    let (server, gh) = setup(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/404")))
        .respond_with(json_response(404, r#"{"message":"Not Found"}"#))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{PREFIX}/issues/comments/9")))
        .respond_with(json_response(403, r#"{"message":"Resource not accessible by integration"}"#))
        .expect(1)
        .mount(&server)
        .await;
    assert!(matches!(gh.pull(404).await, Err(GitHubError::NotFound { .. })));
    let err = gh.update_issue_comment(9, "x").await.expect_err("403");
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(gh.request_count(), 2);
}

#[tokio::test]
async fn connection_errors_on_get_are_retried_then_reported_as_network() {
    // A port nobody listens on: bind, read the port, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let gh =
        GitHub::new(&format!("http://127.0.0.1:{port}/api/v3"), &SecretString::from("t"), "o", "r", Duration::ZERO)
            .expect("client")
            .with_policy(fast_policy());
    let err = gh.pull(1).await.expect_err("refused");
    assert!(matches!(err, GitHubError::Network { .. }), "{err:?}");
    assert_eq!(gh.request_count(), 4);
    // A write is never retried after a transport error: it may have been applied.
    let err = gh.create_issue_comment(1, "x").await.expect_err("refused");
    assert!(matches!(err, GitHubError::Network { .. }), "{err:?}");
    assert_eq!(gh.request_count(), 5);
}

#[test]
fn new_rejects_a_relative_api_url() {
    let err = GitHub::new("api/v3", &SecretString::from("t"), "o", "r", Duration::ZERO).expect_err("relative");
    assert!(err.to_string().contains("invalid API URL"), "{err}");
}

#[test]
fn next_link_finds_rel_next_among_others() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::LINK,
        http::HeaderValue::from_static(
            r#"<https://h/api/v3/x?page=1>; rel="prev", <https://h/api/v3/x?page=3>; rel="next", <https://h/api/v3/x?page=9>; rel="last""#,
        ),
    );
    assert_eq!(next_link(&headers, "https://h/api/v3/x?page=2").as_deref(), Some("https://h/api/v3/x?page=3"));
    headers.insert(http::header::LINK, http::HeaderValue::from_static(r#"<https://h/x?page=1>; rel="first""#));
    assert_eq!(next_link(&headers, "https://h/x?page=2"), None);
    // RFC 8288: several relation types in one `rel`, any case; a relative target resolves
    // against the page's own URL, so it stays on the API host.
    headers.insert(http::header::LINK, http::HeaderValue::from_static(r#"</api/v3/x?page=4>; REL="last next""#));
    assert_eq!(next_link(&headers, "https://h/api/v3/x?page=3").as_deref(), Some("https://h/api/v3/x?page=4"));
}

#[test]
fn github_message_renders_object_errors() {
    let body = br#"{"message":"Validation Failed","errors":[{"resource":"Issue","field":"body","code":"missing_field"},{"message":"custom text"}]}"#;
    assert_eq!(github_message(body), "Validation Failed: Issue body missing_field; custom text");
    assert_eq!(github_message(b""), "(empty body)");
}

#[test]
fn backoff_is_full_jitter_within_the_cap() {
    let policy = ClientPolicy {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(300),
        ..ClientPolicy::default()
    };
    for attempt in 0..10 {
        let ceiling = Duration::from_millis(100 * 2u64.pow(attempt)).min(Duration::from_millis(300));
        assert!(policy.backoff(attempt) <= ceiling);
    }
}

#[test]
fn parse_retry_after_reads_seconds_and_http_dates() {
    let header = |value: &str| {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, value.parse().unwrap());
        h
    };
    assert_eq!(parse_retry_after(&header("7")), Duration::from_secs(7));
    let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let wait = parse_retry_after(&header(&soon));
    assert!(wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28), "{wait:?}");
    assert_eq!(parse_retry_after(&header("soon")), Duration::from_secs(60));
}

#[tokio::test]
async fn get_follows_a_renamed_repository_redirect() {
    let (server, gh) = setup(Duration::ZERO).await;
    let moved = format!("{}/api/v3/repositories/1296269/pulls/1347", server.uri());
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/pulls/1347")))
        .respond_with(
            json_response(301, r#"{"message":"Moved Permanently"}"#).insert_header("location", moved.as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v3/repositories/1296269/pulls/1347"))
        .and(header("authorization", "Bearer ghs_testtoken123"))
        .respond_with(json_response(200, PULL_JSON))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(gh.pull(1347).await.expect("pull").number, 1347);
    assert_eq!(gh.request_count(), 2);
}

/// A loopback server that answers every request with `head` and then streams `chunk` until
/// `total` bytes are sent or the client hangs up; returns its base URL and the bytes it sent.
fn streaming_server(
    head: &'static str,
    chunked: bool,
    total: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            if stream.write_all(head.as_bytes()).is_err() {
                continue;
            }
            let block = vec![b'a'; 1 << 20];
            let mut n = 0;
            while n < total {
                let ok = if chunked {
                    stream.write_all(format!("{:x}\r\n", block.len()).as_bytes()).is_ok()
                        && stream.write_all(&block).is_ok()
                        && stream.write_all(b"\r\n").is_ok()
                } else {
                    stream.write_all(&block).is_ok()
                };
                if !ok {
                    break;
                }
                n += block.len();
                counter.fetch_add(block.len(), std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    (format!("http://127.0.0.1:{port}/api/v3"), sent)
}

#[tokio::test]
async fn every_body_has_a_cap_streamed_or_declared_and_is_refused_without_retry() {
    // Issue #17: a 270 MiB artifact body sent by the API host itself passed the artifact cap;
    // every body read over the network has a cap.
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let (base, sent) = streaming_server(head, true, 64 << 20);
    let gh = GitHub::new(&base, &SecretString::from("t"), "o", "r", Duration::ZERO)
        .expect("client")
        .with_policy(fast_policy());
    let err = gh.pull(1).await.expect_err("over the cap");
    assert!(err.to_string().contains("over 33554432 bytes"), "{err}");
    assert_eq!(gh.request_count(), 1, "not retried");
    let streamed = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(streamed < 48 << 20, "read on after the cap: {streamed} bytes");
    // A direct (non-redirect) artifact declaring 270 MiB is refused before its body is read.
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: 283115520\r\nconnection: close\r\n\r\n";
    let (base, _) = streaming_server(head, false, 4 << 20);
    let gh = GitHub::new(&base, &SecretString::from("t"), "o", "r", Duration::ZERO)
        .expect("client")
        .with_policy(fast_policy());
    let err = gh.download_artifact(5).await.expect_err("over the artifact cap");
    assert!(err.to_string().contains(&format!("over {} bytes", super::artifacts::MAX_ARTIFACT_BYTES)), "{err}");
}

#[tokio::test]
async fn markers_count_only_on_bodies_our_own_identity_wrote() {
    // Issue #17: a marker written by any Bot was trusted. Three comments carry the summary
    // marker: another App's bot, a human, and ours (logins compare case-insensitively).
    const SHA: &str = "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091";
    let (server, gh) = setup(Duration::ZERO).await;
    let marker = crate::markers::Marker::new(crate::markers::SUMMARY_MARKER, &[("sha", SHA)]).render();
    let comment = |id: u64, login: &str, kind: &str| json!({"id": id, "body": format!("summary\n\n{marker}"), "html_url": "u", "user": {"login": login, "type": kind}});
    let comments =
        json!([comment(1, "evil-app[bot]", "Bot"), comment(2, "octocat", "User"), comment(3, "My-App[bot]", "Bot")]);
    Mock::given(method("GET"))
        .and(path(format!("{PREFIX}/issues/7/comments")))
        .respond_with(json_response(200, &comments.to_string()))
        .mount(&server)
        .await;
    let found = crate::github::publish::previous(&gh, 7, SHA, "my-app[bot]", false).await.expect("comments");
    assert_eq!(found.summary.map(|(id, _)| id), Some(3));
    let found = crate::github::publish::previous(&gh, 7, SHA, "github-actions[bot]", false).await.expect("comments");
    assert!(found.summary.is_none(), "no comment of ours: nothing is trusted");
}
