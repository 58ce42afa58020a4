//! What a review of a diff would cost, before any model call (SPEC §3.4 `cost estimate`, and the
//! budget gate of `review`). It packs the diff with the very [`Chunker`] `review` uses, so the
//! chunks and their token counts are the ones that would be sent; no provider is contacted.
//!
//! Decisions:
//! - Input tokens per chunk are the chunk's rendered diff ([`crate::diff::Chunk::tokens`]) plus
//!   a fixed prompt overhead the caller measures (system prompt, output schema, PR header) plus
//!   [`FRAMING_TOKENS`] for the per-chunk instruction and chat message framing. All of it is
//!   priced as uncached input: cache hits only make the real bill smaller.
//! - Output tokens per chunk are `review.max_output_tokens`, the most a provider may return:
//!   an upper bound, so a budget gate never lets a run through that could pass the limit. A
//!   repair round (one more request per invalid answer) is not counted: it is rare, and
//!   counting it for every chunk would double every estimate.
//! - Billing always uses the provider's reported usage; this estimate is never recorded.

use serde::Serialize;

use crate::diff::{Chunker, Diff};
use crate::usage::pricing::PriceTable;
use crate::usage::Usage;

/// Tokens per request beyond the system prompt, schema and diff: the "Review this diff chunk
/// (i of n) …" instruction, the `<diff>` tags and the chat format's per-message framing.
/// Measured at about 35 with o200k; rounded up.
pub(crate) const FRAMING_TOKENS: usize = 64;

/// One chunk's estimate. Tokens are tokens, USD US dollars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkEstimate {
    /// 1-based, in sending order.
    pub chunk: usize,
    /// Paths of the files with lines in this chunk.
    pub files: Vec<String>,
    /// Tokens of the rendered diff alone.
    pub diff_tokens: usize,
    /// Input tokens of the request (diff + prompt overhead + framing).
    pub input_tokens: u64,
    /// Upper bound of output tokens (`review.max_output_tokens`).
    pub output_tokens: u64,
    /// Price of the above; `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

/// A whole review's estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Provider config entry name (`builtin` when no model is called).
    pub provider: String,
    /// Model that would be asked.
    pub model: String,
    /// Per chunk, in sending order.
    pub chunks: Vec<ChunkEstimate>,
    /// Sum of the chunks' input tokens.
    pub input_tokens: u64,
    /// Sum of the chunks' output upper bounds.
    pub output_tokens: u64,
    /// Sum in USD; `None` when the model has no price (0 for `builtin`).
    pub cost_usd: Option<f64>,
    /// Files (paths) that would not be reviewed because they do not fit `max_total_tokens`.
    pub over_budget: Vec<String>,
    /// `cost estimate`: the share (0–1) of recent review chunks the response cache answered
    /// (the ledger's last [`HIT_RATE_WINDOW_DAYS`] days), what a re-run may expect; `None`
    /// when the ledger has no review call in that window or the cache is off. The costs above
    /// are before any hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_cache_hit_rate: Option<f64>,
}

/// How far back `cost estimate` reads the ledger for the response cache's hit rate, days.
pub(crate) const HIT_RATE_WINDOW_DAYS: i64 = 30;

/// The response cache's share of the review chunks the ledger in `store` recorded in the last
/// [`HIT_RATE_WINDOW_DAYS`] days before `now_ms`; `None` when there were none.
///
/// Errors: the store's, when the ledger cannot be read.
pub(crate) fn expected_hit_rate(
    store: &crate::store::Store,
    now_ms: i64,
) -> Result<Option<f64>, crate::store::StoreError> {
    let (calls, hits) = store.cache_share(now_ms - HIT_RATE_WINDOW_DAYS * 86_400_000)?;
    Ok((calls > 0).then(|| hits as f64 / calls as f64))
}

/// Inputs of [`estimate`] besides the diff.
#[derive(Debug, Clone)]
pub(crate) struct EstimateSettings<'a> {
    /// Provider config entry name.
    pub provider: &'a str,
    /// Model that would be asked; priced with `prices`.
    pub model: &'a str,
    /// The same limits `review` packs with.
    pub chunker: Chunker,
    /// `review.max_output_tokens`.
    pub max_output_tokens: u32,
    /// Tokens every request carries besides the diff (system prompt, schema, PR header).
    pub overhead_tokens: usize,
}

/// The provider entry and model a review would use, by [`crate::config::Config::provider_entry`];
/// `None` for `builtin` (no model call, nothing to pay). The model: `model_flag` > the entry's
/// `model` > `unknown` (unpriced).
pub(crate) fn review_model(
    config: &crate::config::Config,
    provider_flag: Option<&str>,
    model_flag: Option<&str>,
) -> Option<(String, String)> {
    let name = config.provider_entry(provider_flag);
    let entry = config.providers.get(&name)?;
    if name == "builtin" || entry.kind == crate::config::ProviderKind::Builtin {
        return None;
    }
    let model = model_flag.map(str::to_owned).or_else(|| entry.model.clone()).unwrap_or_else(|| "unknown".into());
    Some((name, model))
}

/// The estimate of a `review` of `selected` files of `parsed`: [`for_review`] with the prompt
/// overhead `review` really sends with every chunk — its system prompt and output schema,
/// counted the way `review.token_counting` says (the default estimate is conservative and never
/// builds the ~45 MB, ~0.2 s exact encoder, which a budget gate before every review must not pay).
pub(crate) fn review(
    config: &crate::config::Config,
    parsed: &Diff,
    selected: &[usize],
    provider_flag: Option<&str>,
    model_flag: Option<&str>,
) -> Estimate {
    let counting = config.review.token_counting;
    let overhead = counting.count(&crate::prompt::system_prompt(config.review.instructions.as_deref()))
        + counting.count(crate::prompt::REVIEW_SCHEMA);
    for_review(config, parsed, selected, provider_flag, model_flag, overhead)
}

/// Why `cost estimate` has nothing to price: the input, or the config's file filters (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The bytes hold no file header.
    #[error("the input is not a unified diff (no file header)\nhelp: pass the output of `git diff` or a PR's `.diff`")]
    NotADiff,
    /// `review.include`/`review.exclude` hold a pattern that is not a glob.
    #[error("review.include/exclude: {error}")]
    Filter { error: globset::Error },
}

impl InputError {
    /// Always [`crate::exit::Exit::Usage`]: nothing was sent anywhere.
    pub fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }
}

/// `cost estimate`'s pipeline over a unified diff's `bytes`: parse, keep the files
/// `review.include`/`exclude` keep, and [`review`] them.
///
/// Errors: [`InputError`].
pub(crate) fn review_diff(
    config: &crate::config::Config,
    bytes: &[u8],
    provider_flag: Option<&str>,
    model_flag: Option<&str>,
) -> Result<Estimate, InputError> {
    let parsed = crate::diff::parse(bytes);
    if parsed.files.is_empty() {
        return Err(InputError::NotADiff);
    }
    let filter = crate::diff::FileFilter::new(&config.review.include, &config.review.exclude)
        .map_err(|error| InputError::Filter { error })?;
    let selected: Vec<usize> = (0..parsed.files.len()).filter(|&i| filter.check(&parsed.files[i]).is_none()).collect();
    Ok(review(config, &parsed, &selected, provider_flag, model_flag))
}

/// The estimate of a `fix` with the config's provider: `prompt_tokens` (the first round's
/// system prompt, schema and user prompt, counted by the caller) as input and
/// `fix.max_output_tokens` as output, times `fix.max_rounds` — an upper bound, like the
/// review's. `builtin` (no model) costs 0.
pub(crate) fn fix(
    config: &crate::config::Config,
    prompt_tokens: usize,
    provider_flag: Option<&str>,
    model_flag: Option<&str>,
) -> Estimate {
    let rounds = u64::from(config.fix.max_rounds.max(1));
    let (provider, model) =
        review_model(config, provider_flag, model_flag).unwrap_or_else(|| ("builtin".into(), "builtin".into()));
    let input_tokens = prompt_tokens as u64 * rounds;
    let output_tokens = u64::from(config.fix.max_output_tokens) * rounds;
    let usage = Usage { input_tokens, output_tokens, ..Usage::default() };
    let cost_usd = if provider == "builtin" { Some(0.0) } else { config.price_table().cost_usd(&model, &usage) };
    Estimate {
        provider,
        model,
        chunks: vec![],
        input_tokens,
        output_tokens,
        cost_usd,
        over_budget: vec![],
        expected_cache_hit_rate: None,
    }
}

/// The estimate of a `review` of `selected` files with the config's provider (`provider_flag`,
/// `model_flag` as `--provider`/`--model`), its chunker limits and `max_output_tokens`, priced
/// with [`price_table`]; `overhead_tokens` is what every request carries besides the diff.
/// `builtin` (no model) costs 0 and has no chunks.
pub(crate) fn for_review(
    config: &crate::config::Config,
    diff: &Diff,
    selected: &[usize],
    provider_flag: Option<&str>,
    model_flag: Option<&str>,
    overhead_tokens: usize,
) -> Estimate {
    let review = &config.review;
    let Some((provider, model)) = review_model(config, provider_flag, model_flag) else {
        return Estimate {
            provider: "builtin".into(),
            model: "builtin".into(),
            chunks: vec![],
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Some(0.0),
            over_budget: vec![],
            expected_cache_hit_rate: None,
        };
    };
    let settings = EstimateSettings {
        provider: &provider,
        model: &model,
        chunker: review.chunker(),
        max_output_tokens: review.max_output_tokens,
        overhead_tokens,
    };
    estimate(diff, selected, &settings, &config.price_table())
}

/// Estimates the review of the files at `selected` (indices into `diff.files`, already
/// filtered by include/exclude) with `settings`, priced with `prices`.
pub(crate) fn estimate(
    diff: &Diff,
    selected: &[usize],
    settings: &EstimateSettings<'_>,
    prices: &PriceTable,
) -> Estimate {
    let plan = settings.chunker.plan(diff, selected);
    let mut chunks = Vec::with_capacity(plan.chunks.len());
    for (i, c) in plan.chunks.iter().enumerate() {
        let mut files: Vec<String> = Vec::new();
        for s in &c.slices {
            if let Some(f) = diff.files.get(s.file) {
                if !files.iter().any(|p| p == f.path()) {
                    files.push(f.path().to_owned());
                }
            }
        }
        let input_tokens = (c.tokens + settings.overhead_tokens + FRAMING_TOKENS) as u64;
        let output_tokens = u64::from(settings.max_output_tokens);
        let usage = Usage { input_tokens, output_tokens, ..Usage::default() };
        chunks.push(ChunkEstimate {
            chunk: i + 1,
            files,
            diff_tokens: c.tokens,
            input_tokens,
            output_tokens,
            cost_usd: prices.cost_usd(settings.model, &usage),
        });
    }
    let cost_usd = chunks.iter().try_fold(0.0, |sum, c| c.cost_usd.map(|v| sum + v));
    Estimate {
        provider: settings.provider.to_owned(),
        model: settings.model.to_owned(),
        input_tokens: chunks.iter().map(|c| c.input_tokens).sum(),
        output_tokens: chunks.iter().map(|c| c.output_tokens).sum(),
        cost_usd,
        chunks,
        over_budget: plan.over_budget.iter().map(|s| s.path.clone()).collect(),
        expected_cache_hit_rate: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::diff::TokenCounting;

    const DIFF: &str = "diff --git a/src/a.rs b/src/a.rs\nindex 1..2 100644\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,2 +1,3 @@\n fn a() {}\n+fn b() { let x = 1; }\n fn c() {}\ndiff --git a/src/b.rs b/src/b.rs\nindex 1..2 100644\n--- a/src/b.rs\n+++ b/src/b.rs\n@@ -1 +1,2 @@\n x\n+y\n";

    fn settings(model: &str, max_chunk_tokens: usize) -> EstimateSettings<'_> {
        EstimateSettings {
            provider: "main",
            model,
            chunker: Chunker { max_chunk_tokens, max_total_tokens: 100_000, counting: TokenCounting::Estimate },
            max_output_tokens: 1000,
            overhead_tokens: 500,
        }
    }

    #[test]
    fn chunks_add_up_and_are_priced_with_the_output_upper_bound() {
        let diff = crate::diff::parse(DIFF.as_bytes());
        let prices = PriceTable::bundled();
        let e = estimate(&diff, &[0, 1], &settings("gpt-4o", 10_000), &prices);
        assert_eq!(e.chunks.len(), 1);
        let c = &e.chunks[0];
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.input_tokens, (c.diff_tokens + 500 + FRAMING_TOKENS) as u64);
        assert_eq!(c.output_tokens, 1000);
        let p = prices.price("gpt-4o").unwrap();
        let want = c.input_tokens as f64 * p.input_cost_per_token + 1000.0 * p.output_cost_per_token;
        assert!((e.cost_usd.unwrap() - want).abs() < 1e-12);
        // Smaller chunks: one request per file, so the overhead and the output bound count twice.
        let e2 = estimate(&diff, &[0, 1], &settings("gpt-4o", 30), &prices);
        assert!(e2.chunks.len() >= 2, "{e2:?}");
        assert_eq!(e2.output_tokens, 1000 * e2.chunks.len() as u64);
        assert!(e2.cost_usd.unwrap() > e.cost_usd.unwrap());
    }

    #[test]
    fn an_unknown_model_is_unpriced_not_free() {
        let diff = crate::diff::parse(DIFF.as_bytes());
        let e = estimate(&diff, &[0, 1], &settings("my-local-model", 10_000), &PriceTable::bundled());
        assert_eq!(e.cost_usd, None);
        assert!(e.input_tokens > 0);
    }
}
