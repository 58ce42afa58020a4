//! Every environment variable agentctl reads, in one place (uv's `env_vars.rs` habit), so the
//! README's table and `--help` can be checked against a single list.

/// `true` when running as a GitHub Actions step.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
/// Path of the webhook event payload (JSON) that triggered the workflow.
pub const GITHUB_EVENT_PATH: &str = "GITHUB_EVENT_PATH";
/// Name of the triggering event (`pull_request`, `issue_comment`, ...).
pub const GITHUB_EVENT_NAME: &str = "GITHUB_EVENT_NAME";
/// `owner/name` of the repository.
pub const GITHUB_REPOSITORY: &str = "GITHUB_REPOSITORY";
/// REST API root; on GHES it carries a path prefix such as `https://host/api/v3`.
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// Web root, e.g. `https://github.com`.
pub const GITHUB_SERVER_URL: &str = "GITHUB_SERVER_URL";
/// Workflow run id.
pub const GITHUB_RUN_ID: &str = "GITHUB_RUN_ID";
/// Workflow run attempt (1-based).
pub const GITHUB_RUN_ATTEMPT: &str = "GITHUB_RUN_ATTEMPT";
/// Workflow name.
pub const GITHUB_WORKFLOW: &str = "GITHUB_WORKFLOW";
/// Job id.
pub const GITHUB_JOB: &str = "GITHUB_JOB";
/// Login of the user that triggered the run.
pub const GITHUB_ACTOR: &str = "GITHUB_ACTOR";
/// Commit sha of the run.
pub const GITHUB_SHA: &str = "GITHUB_SHA";
/// Git ref of the run.
pub const GITHUB_REF: &str = "GITHUB_REF";
/// File that step outputs are appended to.
pub const GITHUB_OUTPUT: &str = "GITHUB_OUTPUT";
/// File that the job summary (markdown) is appended to.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";
/// Token for the GitHub API (the workflow's `GITHUB_TOKEN` or an installation token); read when `GH_TOKEN` is unset.
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// Token for the GitHub API, as the `gh` CLI names it; wins over `GITHUB_TOKEN` (gh's precedence).
pub const GH_TOKEN: &str = "GH_TOKEN";
/// Default OpenAI API key variable (a provider's `api_key_env` may name another).
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// Default Anthropic API key variable.
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// Default Azure OpenAI API key variable.
pub const AZURE_OPENAI_API_KEY: &str = "AZURE_OPENAI_API_KEY";
/// Default Gemini API key variable.
pub const GEMINI_API_KEY: &str = "GEMINI_API_KEY";
/// Set by the runner: the tool cache folder, where the state store lives on a runner.
pub const RUNNER_TOOL_CACHE: &str = "RUNNER_TOOL_CACHE";
/// The runner's per-job temporary folder, emptied after each job (`fix`'s scratch work tree).
pub const RUNNER_TEMP: &str = "RUNNER_TEMP";
/// XDG data folder, for the state store outside a runner.
pub const XDG_DATA_HOME: &str = "XDG_DATA_HOME";
/// The user's home folder (state store fallback `~/.local/share/agentctl/state.db`).
pub const HOME: &str = "HOME";
/// Folder of the shared test corpora (tests only).
pub const AGENTCTL_CORPORA: &str = "AGENTCTL_CORPORA";
/// The state store: a SQLite file path, or a `postgres://` URL (which may hold a password:
/// set it from a secret). See [`crate::store::Location`].
pub const AGENTCTL_STATE: &str = "AGENTCTL_STATE";
/// libpq's password variable: the PostgreSQL state store's password when its URL has none.
pub const PGPASSWORD: &str = "PGPASSWORD";
/// `true`: fail when usage cannot be recorded in the state store (same as `--require-state`).
pub const AGENTCTL_REQUIRE_STATE: &str = "AGENTCTL_REQUIRE_STATE";
/// Path of the config file (same as `--config`).
pub const AGENTCTL_CONFIG: &str = "AGENTCTL_CONFIG";
/// Provider entry to use (same as `--provider`).
pub const AGENTCTL_PROVIDER: &str = "AGENTCTL_PROVIDER";
/// Model override for the chosen provider (same as `--model`).
pub const AGENTCTL_MODEL: &str = "AGENTCTL_MODEL";
/// Lowest severity that fails the step (same as `--fail-on`).
pub const AGENTCTL_FAIL_ON: &str = "AGENTCTL_FAIL_ON";
/// Seconds between two GitHub writes once a run has made 10 (default 1; 0 to 60; 0 in tests).
pub const AGENTCTL_WRITE_DELAY: &str = "AGENTCTL_WRITE_DELAY";
/// `review`/`fix` `--usage-out`: where to write this run's usage records as JSON Lines.
pub const AGENTCTL_USAGE_OUT: &str = "AGENTCTL_USAGE_OUT";
/// GitHub App client id or app id for `token-refresh` (same as `--app-id`).
pub const AGENTCTL_APP_ID: &str = "AGENTCTL_APP_ID";
/// GitHub App private key, PEM text, for `token-refresh` (else `--private-key-file`).
pub const AGENTCTL_APP_PRIVATE_KEY: &str = "AGENTCTL_APP_PRIVATE_KEY";
/// `[SERVICE/]NAME` of the OS keyring entry holding the app's PEM private key (same as
/// `--private-key-keyring`; the name, never the key).
pub const AGENTCTL_APP_PRIVATE_KEY_KEYRING: &str = "AGENTCTL_APP_PRIVATE_KEY_KEYRING";
/// Disables colour in terminal output.
pub const NO_COLOR: &str = "NO_COLOR";
/// The terminal type; `dumb` hides progress bars (no cursor movement).
pub const TERM: &str = "TERM";

// Keyless cloud providers (issue #21).
/// Job OIDC token request URL (set by the runner with `permissions: id-token: write`).
pub const ACTIONS_ID_TOKEN_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// Bearer token of the OIDC token request (a secret).
pub const ACTIONS_ID_TOKEN_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// AWS access key id (`aws-actions/configure-aws-credentials` exports it).
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// AWS secret access key (a secret).
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// AWS session token of temporary credentials (a secret).
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// Path of a web identity token file (an OIDC JWT the platform rotates: EKS IRSA, a
/// self-hosted runner's identity), assumed as `AWS_ROLE_ARN` (the AWS SDKs' variables).
pub const AWS_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// The role assumed with `AWS_WEB_IDENTITY_TOKEN_FILE` (else the entry's `role_arn:`).
pub const AWS_ROLE_ARN: &str = "AWS_ROLE_ARN";
/// `RoleSessionName` of an assumed role (else `agentctl-<run id>`).
pub const AWS_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";
/// The container credentials endpoint, relative to `http://169.254.170.2` (ECS, CodeBuild).
pub const AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
/// The container credentials endpoint as a full URL (EKS Pod Identity).
pub const AWS_CONTAINER_CREDENTIALS_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// `Authorization` value of the container credentials endpoint (a secret).
pub const AWS_CONTAINER_AUTHORIZATION_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// File holding that `Authorization` value, read at each request.
pub const AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// `true`: never ask the EC2 instance metadata service for credentials.
pub const AWS_EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
/// The EC2 instance metadata service's endpoint (default `http://169.254.169.254`).
pub const AWS_EC2_METADATA_SERVICE_ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// AWS region (`kind: bedrock` without `region:`).
pub const AWS_REGION: &str = "AWS_REGION";
/// AWS region, the older name.
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// Endpoint of every AWS service (the SDKs' variable), under the service-specific ones.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// Endpoint of AWS STS (`AssumeRoleWithWebIdentity`).
pub const AWS_ENDPOINT_URL_STS: &str = "AWS_ENDPOINT_URL_STS";
/// Endpoint of Bedrock Runtime (under the entry's `base_url`).
pub const AWS_ENDPOINT_URL_BEDROCK_RUNTIME: &str = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME";
/// A Microsoft Entra token for Azure OpenAI, used as is (a secret; the OpenAI SDKs' variable).
pub const AZURE_OPENAI_AD_TOKEN: &str = "AZURE_OPENAI_AD_TOKEN";
/// The app registration (client) id of workload identity federation (not a secret).
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// The Microsoft Entra tenant id of workload identity federation.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// A federated token file (AKS workload identity), read at each refresh.
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The Microsoft Entra authority (default `https://login.microsoftonline.com`).
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Host (and port) of the GCE metadata server (default `metadata.google.internal`).
pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
/// `true`: never ask the GCE metadata server for a token.
pub const NO_GCE_CHECK: &str = "NO_GCE_CHECK";
/// Path of Google Application Default Credentials (`google-github-actions/auth` writes it).
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// A Google OAuth 2.0 access token (a secret), used as is.
pub const GOOGLE_OAUTH_ACCESS_TOKEN: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
/// Google Cloud project (`kind: vertex` without `project:`).
pub const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
/// Google Cloud project, gcloud's name for it.
pub const CLOUDSDK_CORE_PROJECT: &str = "CLOUDSDK_CORE_PROJECT";
/// Vertex AI location (`kind: vertex` without `location:`; default `global`).
pub const GOOGLE_CLOUD_LOCATION: &str = "GOOGLE_CLOUD_LOCATION";
