//! Prices per token for known models, from a bundled table (`data/prices.json`, validated by
//! `schemas/pricing.schema.json`) that uses litellm's field names (`input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! `cache_creation_input_token_cost_above_1hr`) and carries an effective date. Config may override or add entries; local models cost 0.
//!
//! The bundled prices are litellm's list prices (standard tier, prompts up to 200k tokens) as of
//! the table's `effective_date`; the file's `source` field names the exact litellm commit. A
//! model name has one entry whichever API serves it: `gemini-2.5-flash` is priced the same
//! through `kind: gemini` and `kind: vertex`, as Google lists it.
//! Models whose price could not be confirmed there are left out, so they report "cost unknown"
//! rather than a guessed number.

use serde::{Deserialize, Serialize};

use super::Usage;

/// The bundled table's JSON text.
const BUNDLED: &str = include_str!("../../data/prices.json");

/// USD per token for one model (litellm field names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_token_cost: Option<f64>,
    /// USD per token written to the prompt cache with the default (5-minute) lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_token_cost: Option<f64>,
    /// USD per token written with Anthropic's 1-hour lifetime (litellm's name for it); absent:
    /// [`ONE_HOUR_WRITE_FACTOR`] × the input price, Anthropic's list ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_token_cost_above_1hr: Option<f64>,
}

/// A 1-hour cache write costs twice the base input price (Anthropic, "Prompt caching" →
/// Pricing: 5-minute writes 1.25×, 1-hour writes 2×, reads 0.1×).
pub const ONE_HOUR_WRITE_FACTOR: f64 = 2.0;

/// The price table: model name → price, plus the table's version (its effective date).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// ISO date the prices took effect, e.g. `2026-11-01`; recorded with every cost.
    pub effective_date: String,
    pub models: std::collections::BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// The bundled table.
    pub fn bundled() -> Self {
        // The unit tests parse and schema-check the bundled file, so this cannot fail in a
        // released build; an empty table would only make every cost "unknown", never wrong.
        serde_json::from_str(BUNDLED).unwrap_or_default()
    }

    /// Price for `model`: exact name, then the name without a `provider/` prefix, then the
    /// longest table key that `model` starts with when the rest is a date suffix (dated
    /// snapshots like `gpt-4o-2024-08-06`, `claude-opus-4-1-20250805`, Vertex's `@20250805`).
    ///
    /// Only a date may follow the key, so `gpt-4o-mini` never falls back to `gpt-4o` and
    /// `claude-opus-4-5` never to a `claude-opus-4` entry: an unknown model is unknown.
    /// Matching ignores ASCII case.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        let model = model.trim().to_ascii_lowercase();
        let bare = model.rsplit('/').next().unwrap_or(&model);
        let find = |name: &str| self.models.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, p)| *p);
        find(&model).or_else(|| find(bare)).or_else(|| {
            self.models
                .iter()
                .filter(|(key, _)| {
                    let key = key.to_ascii_lowercase();
                    bare.strip_prefix(key.as_str()).is_some_and(is_date_suffix)
                })
                .max_by_key(|(key, _)| key.len())
                .map(|(_, p)| *p)
        })
    }

    /// Cost in USD of `usage` on `model`; `None` when the model is unknown (reported as
    /// "cost unknown", never as 0). Cached reads fall back to the input price when the table
    /// has no cache price.
    ///
    /// `input_tokens × input + cached_input_tokens × cache_read + cache_write_tokens ×
    /// cache_creation + cache_write_1h_tokens × cache_creation_above_1hr + output_tokens ×
    /// output`; reasoning tokens are part of `output_tokens` and not charged twice. 5-minute
    /// cache writes without a cache-write price cost the input price; 1-hour writes without
    /// their own price cost [`ONE_HOUR_WRITE_FACTOR`] × input.
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> Option<f64> {
        let p = self.price(model)?;
        let input = p.input_cost_per_token;
        // Token counts are far below 2^53, so the f64 conversion is exact.
        Some(
            usage.input_tokens as f64 * input
                + usage.cached_input_tokens as f64 * p.cache_read_input_token_cost.unwrap_or(input)
                + usage.cache_write_tokens as f64 * p.cache_creation_input_token_cost.unwrap_or(input)
                + usage.cache_write_1h_tokens as f64
                    * p.cache_creation_input_token_cost_above_1hr.unwrap_or(ONE_HOUR_WRITE_FACTOR * input)
                + usage.output_tokens as f64 * p.output_cost_per_token,
        )
    }
}

/// `-YYYY-MM-DD`, `-YYYYMMDD` or `@YYYYMMDD` (optionally followed by more, e.g. `-v1:0`).
fn is_date_suffix(rest: &str) -> bool {
    let Some(rest) = rest.strip_prefix('-').or_else(|| rest.strip_prefix('@')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let dashed = rest.get(..10).is_some_and(|d| {
        digits(&d[..4]) && &d[4..5] == "-" && digits(&d[5..7]) && &d[7..8] == "-" && digits(&d[8..10])
    });
    let compact = rest.get(..8).is_some_and(digits);
    dashed || compact
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::bundled()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn bundled_table_parses_and_is_not_empty() {
        let t: PriceTable = serde_json::from_str(BUNDLED).unwrap();
        assert!(t.models.len() >= 10, "{}", t.models.len());
        assert_eq!(t, table());
        assert_eq!(t.effective_date.len(), 10);
    }

    #[test]
    fn bundled_table_matches_its_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/pricing.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let instance: serde_json::Value = serde_json::from_str(BUNDLED).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&instance).map(|e| format!("{}: {e}", e.instance_path().as_str())).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // The serialized form (what config overrides and `cost` exports hold) validates too.
        let round_trip = serde_json::to_value(table()).unwrap();
        assert!(validator.is_valid(&round_trip));
        // And the schema does reject a broken entry.
        let bad = serde_json::json!({"effective_date": "2026-11-22", "models": {"x": {"input_cost_per_token": -1}}});
        assert!(!validator.is_valid(&bad));
    }

    #[test]
    fn lookup_exact_prefixed_and_dated() {
        let t = table();
        let gpt4o = t.price("gpt-4o").unwrap();
        assert_eq!(t.price("openai/gpt-4o"), Some(gpt4o));
        assert_eq!(t.price("GPT-4o"), Some(gpt4o));
        assert_eq!(t.price("gpt-4o-2024-08-06"), Some(gpt4o));
        assert_eq!(t.price("openrouter/openai/gpt-4o-2024-11-20"), Some(gpt4o));
        assert_eq!(t.price("claude-opus-4-1-20250805"), t.price("claude-opus-4-1"));
        assert_eq!(t.price("claude-haiku-4-5@20251001"), t.price("claude-haiku-4-5"));
        // Longest key wins: gpt-4o-mini snapshots are not priced as gpt-4o.
        assert_eq!(t.price("gpt-4o-mini-2024-07-18"), t.price("gpt-4o-mini"));
        assert_ne!(t.price("gpt-4o-mini"), Some(gpt4o));
    }

    #[test]
    fn unknown_models_are_unknown_not_a_neighbour() {
        let t = table();
        assert_eq!(t.price("llama3.2"), None);
        assert_eq!(t.price("gpt-4o-ultra"), None);
        assert_eq!(t.price("gpt-5-mini"), None, "must not fall back to gpt-5");
        assert_eq!(t.cost_usd("llama3.2", &Usage::default()), None);
    }

    #[test]
    fn cost_with_cached_tokens() {
        let t = table();
        // gpt-4o: $2.50 / 1M input, $1.25 / 1M cached, $10 / 1M output.
        let usage = Usage {
            input_tokens: 464,
            cached_input_tokens: 1536,
            output_tokens: 300,
            reasoning_tokens: 128,
            ..Usage::default()
        };
        let expected = 464.0 * 2.5e-6 + 1536.0 * 1.25e-6 + 300.0 * 1e-5;
        assert!(close(t.cost_usd("gpt-4o", &usage).unwrap(), expected));
        // One million uncached input tokens cost the list price.
        let million = Usage { input_tokens: 1_000_000, ..Usage::default() };
        assert!(close(t.cost_usd("gpt-4.1", &million).unwrap(), 2.0));
    }

    #[test]
    fn cost_with_cache_writes_and_fallbacks() {
        // claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M.
        let t = table();
        let usage = Usage {
            input_tokens: 1000,
            cached_input_tokens: 10_000,
            cache_write_tokens: 2000,
            output_tokens: 500,
            ..Usage::default()
        };
        let expected = 1000.0 * 3e-6 + 10_000.0 * 3e-7 + 2000.0 * 3.75e-6 + 500.0 * 1.5e-5;
        assert!(close(t.cost_usd("claude-sonnet-4-5", &usage).unwrap(), expected));

        // A model without cache prices charges cached reads and writes at the input price.
        let mut custom = PriceTable::default();
        custom.models.insert(
            "local".into(),
            ModelPrice { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, ..ModelPrice::default() },
        );
        assert!(close(custom.cost_usd("local", &usage).unwrap(), 13_000.0 * 1e-6 + 500.0 * 2e-6));
        // Local models priced at 0 cost 0, not "unknown".
        custom.models.insert("llama3.2".into(), ModelPrice::default());
        assert_eq!(custom.cost_usd("llama3.2", &usage), Some(0.0));
    }

    #[test]
    fn one_hour_cache_writes_cost_twice_the_input_unless_the_table_prices_them() {
        let usage = Usage { cache_write_tokens: 1000, cache_write_1h_tokens: 4000, ..Usage::default() };
        let mut custom = PriceTable::default();
        let base = ModelPrice {
            input_cost_per_token: 3e-6,
            output_cost_per_token: 1.5e-5,
            cache_creation_input_token_cost: Some(3.75e-6),
            ..ModelPrice::default()
        };
        custom.models.insert("claude".into(), base);
        // 5-minute writes at their price (1.25×), 1-hour writes at 2× input.
        assert!(close(custom.cost_usd("claude", &usage).unwrap(), 1000.0 * 3.75e-6 + 4000.0 * 6e-6));
        // The explicit litellm field wins over the 2× rule.
        custom
            .models
            .insert("claude".into(), ModelPrice { cache_creation_input_token_cost_above_1hr: Some(5e-6), ..base });
        assert!(close(custom.cost_usd("claude", &usage).unwrap(), 1000.0 * 3.75e-6 + 4000.0 * 5e-6));
        // Without any cache price: 5-minute writes at input, 1-hour writes still at 2× input.
        custom.models.insert("plain".into(), ModelPrice { input_cost_per_token: 1e-6, ..ModelPrice::default() });
        assert!(close(custom.cost_usd("plain", &usage).unwrap(), 1000.0 * 1e-6 + 4000.0 * 2e-6));
        // The field parses under litellm's name.
        let p: ModelPrice = serde_json::from_str(
            r#"{"input_cost_per_token": 1e-6, "output_cost_per_token": 0, "cache_creation_input_token_cost_above_1hr": 3e-6}"#,
        )
        .unwrap();
        assert_eq!(p.cache_creation_input_token_cost_above_1hr, Some(3e-6));
    }

    #[test]
    fn date_suffixes() {
        assert!(is_date_suffix("-2024-08-06"));
        assert!(is_date_suffix("-20250514"));
        assert!(is_date_suffix("@20250514"));
        assert!(is_date_suffix("-20250929-v1:0"));
        assert!(!is_date_suffix("-mini"));
        assert!(!is_date_suffix("-5"));
        assert!(!is_date_suffix(""));
        assert!(!is_date_suffix("-2024"));
    }
}
