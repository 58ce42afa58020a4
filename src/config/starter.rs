//! The starter config `agentctl config init` writes, and the schema URL its first line
//! points editors at.

/// Where editors fetch the config schema from, as a literal (so [`STARTER`] can be built with
/// `concat!`): the raw `schemas/config.schema.json` of this version's release tag, so the
/// schema matches the binary that wrote the file (a newer agentctl's `config init` points at
/// its own). `agentctl config schema` prints the same file; it stays the source. Read by
/// yaml-language-server (VS Code's YAML extension, Neovim, Helix) from the first line of the
/// config: `# yaml-language-server: $schema=<url>`.
macro_rules! schema_url {
    () => {
        concat!(
            "https://raw.githubusercontent.com/agentctl/agentctl/v",
            env!("CARGO_PKG_VERSION"),
            "/schemas/config.schema.json"
        )
    };
}
/// A starter config written by `agentctl config init`; its first line points editors at the
/// schema URL (`schema_url!`).
pub(crate) const STARTER: &str = concat!(
    "# yaml-language-server: $schema=",
    schema_url!(),
    "\n",
    r#"# agentctl config. Reference: the README's "Config reference"; schema: `agentctl config schema`.
# On pull-request events this file is read from the PR's base branch.

# Which entry of `providers` answers. Without one, agentctl runs its offline builtin rules only.
provider: main

providers:
  main:
    kind: openai                 # openai | anthropic | azure-openai | gemini | command | builtin
    model: gpt-4o-mini
    base_url: https://api.openai.com/v1   # any OpenAI-compatible server, e.g. http://localhost:11434/v1
    api_key_env: OPENAI_API_KEY  # the variable's name, never the key

review:
  include: ["**"]
  exclude: []
  max_inline_comments: 30
  fail_on: none                  # or critical | high | medium | low | info

# Spending limits in USD (`agentctl cost check`; `review` checks its estimate before calling a model).
# budgets:
#   - {scope: all, period: month, limit_usd: 200}              # scope: all | repo | workflow | task
#   - {scope: repo, period: day, limit_usd: 10, soft_ratio: 0.8, downgrade_to: main}

# The state store (usage ledger, breakers): a SQLite file by default. Runners that share one
# budget point at a PostgreSQL server; its password comes from PGPASSWORD, never from this file.
# state: postgres://agentctl@ledger.internal:5432/agentctl?sslmode=require
"#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ProviderKind};

    #[test]
    fn starter_and_empty_configs_are_valid_and_give_the_documented_defaults() {
        let c = Config::from_text(STARTER, "starter").unwrap();
        assert_eq!(c.provider.as_deref(), Some("main"));
        assert_eq!(c.providers["main"].kind, ProviderKind::Openai);
        assert_eq!(c.review.max_inline_comments, 30);
        let empty = Config::from_text("", "empty").unwrap();
        assert_eq!(empty, Config::default());
        assert_eq!(Config::from_text("# only a comment\n", "c").unwrap(), Config::default());
    }
}
