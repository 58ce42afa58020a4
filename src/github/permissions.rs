//! The permissions a GitHub App installation token may be asked for, and the levels each
//! takes: GitHub's `app-permissions` schema (the `permissions` body of "Create an installation
//! access token for an app",
//! <https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app>).
//!
//! Decision: the table is embedded, generated from the schema in `@octokit/openapi` 23.0.2
//! (`../shared/corpora/github-openapi/api.github.com.subset.json`, `components.schemas.
//! app-permissions`), so `token-refresh app --permission` refuses a typo or a level GitHub
//! does not take (`workflows=read`: `workflows` is write only) with exit 2 before any request,
//! instead of a 422 after the JWT was signed. A unit test checks the table against the corpus
//! when it is present. A permission GitHub adds later needs a table update (regenerate it from
//! a newer description); until then it is refused with the list of known names.

/// `(name, levels)` of every permission in GitHub's `app-permissions` schema, sorted by name;
/// each level list is in the schema's order.
pub(crate) const APP_PERMISSIONS: &[(&str, &[&str])] = &[
    ("actions", &["read", "write"]),
    ("administration", &["read", "write"]),
    ("artifact_metadata", &["read", "write"]),
    ("attestations", &["read", "write"]),
    ("checks", &["read", "write"]),
    ("code_quality", &["read", "write"]),
    ("codespaces", &["read", "write"]),
    ("contents", &["read", "write"]),
    ("custom_properties_for_organizations", &["read", "write"]),
    ("dependabot_secrets", &["read", "write"]),
    ("deployments", &["read", "write"]),
    ("discussions", &["read", "write"]),
    ("email_addresses", &["read", "write"]),
    ("enterprise_custom_properties_for_organizations", &["read", "write", "admin"]),
    ("environments", &["read", "write"]),
    ("followers", &["read", "write"]),
    ("git_ssh_keys", &["read", "write"]),
    ("gpg_keys", &["read", "write"]),
    ("interaction_limits", &["read", "write"]),
    ("issues", &["read", "write"]),
    ("members", &["read", "write"]),
    ("merge_queues", &["read", "write"]),
    ("metadata", &["read", "write"]),
    ("organization_administration", &["read", "write"]),
    ("organization_announcement_banners", &["read", "write"]),
    ("organization_copilot_agent_settings", &["read", "write"]),
    ("organization_copilot_seat_management", &["read", "write"]),
    ("organization_custom_org_roles", &["read", "write"]),
    ("organization_custom_properties", &["read", "write", "admin"]),
    ("organization_custom_roles", &["read", "write"]),
    ("organization_events", &["read"]),
    ("organization_hooks", &["read", "write"]),
    ("organization_packages", &["read", "write"]),
    ("organization_personal_access_token_requests", &["read", "write"]),
    ("organization_personal_access_tokens", &["read", "write"]),
    ("organization_plan", &["read"]),
    ("organization_projects", &["read", "write", "admin"]),
    ("organization_secrets", &["read", "write"]),
    ("organization_self_hosted_runners", &["read", "write"]),
    ("organization_user_blocking", &["read", "write"]),
    ("packages", &["read", "write"]),
    ("pages", &["read", "write"]),
    ("profile", &["write"]),
    ("pull_requests", &["read", "write"]),
    ("repository_custom_properties", &["read", "write"]),
    ("repository_hooks", &["read", "write"]),
    ("repository_projects", &["read", "write", "admin"]),
    ("secret_scanning_alerts", &["read", "write"]),
    ("secrets", &["read", "write"]),
    ("security_events", &["read", "write"]),
    ("single_file", &["read", "write"]),
    ("starring", &["read", "write"]),
    ("statuses", &["read", "write"]),
    ("vulnerability_alerts", &["read", "write"]),
    ("workflows", &["write"]),
];

/// The levels `name` takes (`None`: not a permission GitHub documents).
pub(crate) fn levels(name: &str) -> Option<&'static [&'static str]> {
    APP_PERMISSIONS.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| APP_PERMISSIONS[i].1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_schema() {
        assert_eq!(levels("contents"), Some(&["read", "write"][..]));
        assert_eq!(levels("workflows"), Some(&["write"][..]));
        assert_eq!(levels("repository_projects"), Some(&["read", "write", "admin"][..]));
        assert_eq!(levels("content"), None);
        assert!(APP_PERMISSIONS.windows(2).all(|w| w[0].0 < w[1].0), "sorted, for the binary search");
    }

    /// The embedded table is exactly the corpus's `app-permissions` schema (skipped with a
    /// message on a bare clone, required under `CI=true`).
    #[test]
    fn the_table_matches_the_openapi_description() {
        let Some(dir) = crate::test_support::corpora_dir() else { return };
        let path = dir.join("github-openapi/api.github.com.subset.json");
        let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let props = spec["components"]["schemas"]["app-permissions"]["properties"].as_object().unwrap();
        let mut from_spec: Vec<(String, Vec<String>)> = props
            .iter()
            .map(|(name, p)| {
                let levels = p["enum"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
                (name.clone(), levels)
            })
            .collect();
        from_spec.sort();
        let ours: Vec<(String, Vec<String>)> = APP_PERMISSIONS
            .iter()
            .map(|(n, l)| ((*n).to_string(), l.iter().map(|s| (*s).to_string()).collect()))
            .collect();
        assert_eq!(ours, from_spec, "regenerate APP_PERMISSIONS from the corpus's app-permissions schema");
    }
}
