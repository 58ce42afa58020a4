//! The response cache of `review` (issue #20 "Pay once"): a chunk whose answer was validated
//! before, for the same request, is answered from the state store with no provider call and
//! $0. A re-run of a failed job, or a rebase that keeps the content, pays only for what changed.
//!
//! The key ([`CacheKey`]) is a SHA-256 (`ring`, already a dependency) over a canonical,
//! length-prefixed encoding of everything that shapes the answer: the scope (the repository by
//! default, the owner with `cache.scope: owner`), the provider kind and model, the prompt
//! template version ([`PROMPT_TEMPLATE_VERSION`]), the system prompt, the shared prefix (PR
//! title and description), the chunk's annotated diff, the output schema and the config keys
//! that change the answer (`review.instructions`, `review.max_output_tokens`, the temperature).
//! Nothing that a rebase changes without changing the content is in it: no commit SHA, no
//! "chunk i of n" (the prompt no longer says it, so the prefix is byte-identical too).
//!
//! Decisions:
//! - Only an answer that passed the schema *and* reads as a review output is stored, and only
//!   when the primary provider answered (a fallback's answer is not filed under the primary's
//!   model). A hit is validated again; a row that fails (bad JSON, schema, shape) is deleted
//!   with one warning per run and the chunk is asked again. It is never replayed.
//! - The TTL (`cache.ttl`, 7 days) is checked on read; expired rows and the oldest rows past
//!   `cache.max_bytes` (50 MiB: tens of thousands of answers of a few KB, small next to a
//!   runner's tool cache) are evicted on write, in the same transaction.
//! - A store that fails on read or write turns the cache off for the rest of the run with one
//!   warning; the review goes on as without a cache.
//! - `--dry-run` never reads or writes the cache (a run without a token is a dry run too but
//!   still uses it: that is the local `--diff` workflow it pays off in). `fix` is never cached:
//!   its rounds depend on the checkout.
//! - Nothing in the cache is readable through any output: the store keeps it, `review` alone
//!   reads it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{CacheConfig, CacheScope};
use crate::context::Repo;
use crate::findings::ReviewOutput;
use crate::log;
use crate::store::Store;
use crate::usage::Usage;

/// The version of the review prompt's template and of how answers are read. Bump it whenever
/// the prompt text, the chunk rendering or the answer handling changes: every earlier answer
/// then misses.
pub(crate) const PROMPT_TEMPLATE_VERSION: &str = "review/2";

/// What a cache key is computed over (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct CacheKey<'a> {
    /// The config's `kind` of the primary provider entry (`anthropic`, `openai`, ...).
    pub(crate) provider_kind: &'a str,
    /// The model asked for.
    pub(crate) model: &'a str,
    /// The system prompt.
    pub(crate) system: &'a str,
    /// The shared prefix of the user prompt (PR header and the instruction line).
    pub(crate) prefix: &'a str,
    /// The chunk's annotated diff.
    pub(crate) chunk: &'a str,
    /// The output schema's JSON text.
    pub(crate) schema: &'a str,
    /// `review.instructions`.
    pub(crate) instructions: Option<&'a str>,
    /// `review.max_output_tokens`, tokens.
    pub(crate) max_output_tokens: u32,
    /// The sampling temperature sent.
    pub(crate) temperature: Option<f32>,
}

/// The response cache of one review run over the run's state store.
#[derive(Debug)]
pub(crate) struct ResponseCache {
    store: Arc<Store>,
    /// `repo:owner/name`, `owner:owner`, or `none` outside a repository.
    scope: String,
    ttl_s: i64,
    max_bytes: u64,
    /// Set once a store error turned the cache off for the run.
    broken: AtomicBool,
    /// Set once a corrupt row was reported.
    warned_corrupt: AtomicBool,
}

impl ResponseCache {
    /// The cache of `store` for a run on `repository` with `config`'s TTL, cap and scope.
    pub(crate) fn new(store: Arc<Store>, config: &CacheConfig, repository: Option<&Repo>) -> Self {
        let scope = match (repository, config.scope) {
            (Some(r), CacheScope::Repository) => format!("repo:{}/{}", r.owner, r.name),
            (Some(r), CacheScope::Owner) => format!("owner:{}", r.owner),
            (None, _) => "none".to_owned(),
        };
        let ttl_s = i64::try_from(config.ttl_duration().as_secs()).unwrap_or(i64::MAX);
        Self {
            store,
            scope,
            ttl_s,
            max_bytes: config.max_bytes,
            broken: AtomicBool::new(false),
            warned_corrupt: AtomicBool::new(false),
        }
    }

    /// The hex SHA-256 key of `parts` in this cache's scope.
    pub(crate) fn key(&self, parts: &CacheKey<'_>) -> String {
        key_of(&self.scope, parts)
    }

    /// The answer stored under `key`, validated again against `schema_name`/`schema` and read
    /// as a [`ReviewOutput`]; `None` on a miss. A row that fails either check is deleted (one
    /// warning per run) and is a miss.
    pub(crate) fn lookup(
        &self,
        key: &str,
        schema_name: &str,
        schema: &serde_json::Value,
    ) -> Option<(serde_json::Value, Usage)> {
        if self.broken.load(Ordering::Relaxed) {
            return None;
        }
        let now = crate::clock::now_ms() / 1000;
        let row = match self.store.cache_get(key, now.saturating_sub(self.ttl_s)) {
            Ok(row) => row?,
            Err(e) => {
                self.turn_off(&e);
                return None;
            }
        };
        match replayable(&row.value, schema_name, schema) {
            Ok(value) => Some((value, row.usage)),
            Err(why) => {
                if !self.warned_corrupt.swap(true, Ordering::Relaxed) {
                    log::warn(&format!("dropping a corrupt response-cache row ({why}); the chunk is asked again"));
                }
                if let Err(e) = self.store.cache_delete(key) {
                    self.turn_off(&e);
                }
                None
            }
        }
    }

    /// Stores a validated `value` and the `usage` it took under `key`, evicting expired rows
    /// and the oldest past the cap.
    pub(crate) fn put(&self, key: &str, value: &serde_json::Value, usage: &Usage) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let now = crate::clock::now_ms() / 1000;
        let text = value.to_string();
        if let Err(e) = self.store.cache_put(key, &text, usage, now, now.saturating_sub(self.ttl_s), self.max_bytes) {
            self.turn_off(&e);
        }
    }

    fn turn_off(&self, e: &crate::store::StoreError) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            log::warn(&format!(
                "response cache off for this run: {}; chunks are asked as without a cache",
                log::error_chain(e)
            ));
        }
    }
}

/// A stable key of the prefix every request of a run shares (`system` and the user prompt's
/// `prefix`): 32 hex digits of their SHA-256, for OpenAI's `prompt_cache_key`. It routes
/// requests with the same prefix to the same cache and says nothing readable about them.
pub(crate) fn prefix_key(system: &str, prefix: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [system, prefix] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = hex::encode(ctx.finish().as_ref());
    key.truncate(32);
    key
}

/// `text` as JSON that validates against the schema and reads as a review output.
fn replayable(text: &str, schema_name: &str, schema: &serde_json::Value) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let validator = crate::providers::structured::compiled_validator(schema_name, schema)?;
    if !validator.is_valid(&value) {
        return Err("it fails the review schema".to_owned());
    }
    serde_json::from_value::<ReviewOutput>(value.clone()).map_err(|e| format!("not a review output: {e}"))?;
    Ok(value)
}

/// SHA-256 over the length-prefixed fields: each is its name, then its byte length as 8
/// big-endian bytes, then its bytes, so no two fields can run into each other.
fn key_of(scope: &str, k: &CacheKey<'_>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let max_output_tokens = k.max_output_tokens.to_string();
    let temperature = k.temperature.map(|t| t.to_string()).unwrap_or_default();
    let fields: [(&str, &str); 11] = [
        ("version", PROMPT_TEMPLATE_VERSION),
        ("scope", scope),
        ("provider_kind", k.provider_kind),
        ("model", k.model),
        ("system", k.system),
        ("prefix", k.prefix),
        ("chunk", k.chunk),
        ("schema", k.schema),
        ("instructions", k.instructions.unwrap_or("")),
        ("max_output_tokens", &max_output_tokens),
        ("temperature", &temperature),
    ];
    for (name, value) in fields {
        for part in [name.as_bytes(), value.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    hex::encode(ctx.finish().as_ref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn parts() -> CacheKey<'static> {
        CacheKey {
            provider_kind: "anthropic",
            model: "claude-sonnet-4-5",
            system: "sys",
            prefix: "Pull request #7: t\n",
            chunk: "## src/a.rs\n 1 1  x\n",
            schema: "{}",
            instructions: None,
            max_output_tokens: 4096,
            temperature: Some(0.0),
        }
    }

    #[test]
    fn the_key_is_hex_sha256_and_changes_with_every_field() {
        let base = key_of("repo:o/r", &parts());
        assert_eq!(base.len(), 64);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(base, key_of("repo:o/r", &parts()), "stable");
        let changed = [
            key_of("repo:o/other", &parts()),
            key_of("repo:o/r", &CacheKey { provider_kind: "openai", ..parts() }),
            key_of("repo:o/r", &CacheKey { model: "claude-haiku-4-5", ..parts() }),
            key_of("repo:o/r", &CacheKey { system: "sys2", ..parts() }),
            key_of("repo:o/r", &CacheKey { prefix: "Pull request #8: t\n", ..parts() }),
            key_of("repo:o/r", &CacheKey { chunk: "## src/b.rs\n", ..parts() }),
            key_of("repo:o/r", &CacheKey { schema: "{\"a\":1}", ..parts() }),
            key_of("repo:o/r", &CacheKey { instructions: Some("be strict"), ..parts() }),
            key_of("repo:o/r", &CacheKey { max_output_tokens: 8192, ..parts() }),
            key_of("repo:o/r", &CacheKey { temperature: None, ..parts() }),
        ];
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(k, &base, "field {i} is not in the key");
        }
    }

    /// Length prefixes: moving bytes from one field to the next changes the key.
    #[test]
    fn two_fields_cannot_run_into_each_other() {
        let a = key_of("s", &CacheKey { system: "ab", prefix: "c", ..parts() });
        let b = key_of("s", &CacheKey { system: "a", prefix: "bc", ..parts() });
        assert_ne!(a, b);
    }

    #[test]
    fn a_row_that_is_not_json_or_fails_the_schema_is_not_replayable() {
        let schema: serde_json::Value = serde_json::from_str(crate::prompt::REVIEW_SCHEMA).unwrap();
        assert!(replayable("{\"summary\": \"ok\", \"findings\": []}", "review_output", &schema).is_ok());
        assert!(replayable("{not json", "review_output", &schema).is_err());
        assert!(replayable("{\"summary\": 3}", "review_output", &schema).is_err());
    }

    #[test]
    fn a_corrupt_row_is_deleted_and_missed_and_the_scope_follows_the_config() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let repo = Repo { owner: "o".into(), name: "r".into() };
        let cache = ResponseCache::new(Arc::clone(&store), &CacheConfig::default(), Some(&repo));
        let schema: serde_json::Value = serde_json::from_str(crate::prompt::REVIEW_SCHEMA).unwrap();
        let key = cache.key(&parts());
        let good = serde_json::json!({"summary": "ok", "findings": []});
        cache.put(&key, &good, &Usage { input_tokens: 5, ..Usage::default() });
        assert_eq!(cache.lookup(&key, "review_output", &schema).unwrap().0, good);
        let now = crate::clock::now_ms() / 1000;
        store.cache_put(&key, "{\"summary\": 3}", &Usage::default(), now, 0, u64::MAX).unwrap();
        assert!(cache.lookup(&key, "review_output", &schema).is_none());
        assert!(store.cache_get(&key, 0).unwrap().is_none(), "deleted");
        let owner = CacheConfig { scope: CacheScope::Owner, ..CacheConfig::default() };
        let other = Repo { owner: "o".into(), name: "other".into() };
        let a = ResponseCache::new(Arc::clone(&store), &owner, Some(&repo)).key(&parts());
        let b = ResponseCache::new(Arc::clone(&store), &owner, Some(&other)).key(&parts());
        assert_eq!(a, b, "shared across one owner's repositories");
        assert_ne!(key, ResponseCache::new(store, &CacheConfig::default(), Some(&other)).key(&parts()));
    }
}
