//! Usage accounting: the token classes of one provider call ([`Usage`]), the ledger's record of
//! a call ([`UsageRecord`]), and the price table that turns tokens into US dollars
//! ([`pricing`]). These are plain data with no dependency on providers, the store or commands,
//! so every layer can use them: adapters fill [`Usage`], the store persists [`UsageRecord`],
//! and [`crate::ledger`] writes one record per call for every command (SPEC §3.4).

pub mod jsonl;
pub mod pricing;
pub mod report;

use serde::{Deserialize, Serialize};

/// Token usage of one call, normalized across providers. All counts are tokens.
///
/// `input_tokens` excludes cached reads and cache writes so that the classes add up to what
/// was billed: OpenAI's `prompt_tokens` = `input_tokens + cached_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache with the default (5-minute) lifetime: Anthropic's
    /// `cache_creation.ephemeral_5m_input_tokens`, or all of `cache_creation_input_tokens` when
    /// the answer does not split them. Priced at `cache_creation_input_token_cost` (1.25× input).
    pub cache_write_tokens: u64,
    /// Input tokens written to the prompt cache with a 1-hour lifetime (Anthropic
    /// `cache_creation.ephemeral_1h_input_tokens`, `review.prompt_cache_ttl: 1h`). Priced at
    /// `cache_creation_input_token_cost_above_1hr`, else 2× input. Absent (0) in JSON Lines
    /// written before it existed.
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// Output tokens, including reasoning tokens.
    pub output_tokens: u64,
    /// Reasoning tokens (a subset of `output_tokens` where the provider reports them).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// All input classes together (tokens).
    /// Saturating: a hostile count cannot overflow it ([`MAX_TOKENS_PER_RECORD`] keeps such
    /// records out of the ledger).
    pub fn total_input(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.cache_write_tokens)
            .saturating_add(self.cache_write_1h_tokens)
    }

    /// Both cache-write classes together (tokens): what OpenTelemetry's
    /// `gen_ai.usage.cache_creation.input_tokens` and Anthropic's `cache_creation_input_tokens` count.
    /// Saturating, like [`Usage::total_input`].
    pub fn cache_writes(&self) -> u64 {
        self.cache_write_tokens.saturating_add(self.cache_write_1h_tokens)
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.cached_input_tokens = self.cached_input_tokens.saturating_add(o.cached_input_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(o.cache_write_tokens);
        self.cache_write_1h_tokens = self.cache_write_1h_tokens.saturating_add(o.cache_write_1h_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(o.reasoning_tokens);
    }
}

/// One provider call, as the usage ledger stores it (SPEC §3.4). Token counts are tokens,
/// `cost_usd` is US dollars (`None` when no price is known), `latency_ms` milliseconds.
/// Serialized with these field names in `cost export` / `--usage-out` JSON Lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the call finished, Unix milliseconds.
    pub ts_ms: i64,
    /// `owner/name`, when known.
    pub repo: Option<String>,
    /// `GITHUB_WORKFLOW`.
    pub workflow: Option<String>,
    /// `GITHUB_RUN_ID`.
    pub run_id: Option<String>,
    /// `GITHUB_JOB`.
    pub job: Option<String>,
    /// Pull request or issue number.
    pub pr: Option<u64>,
    /// What the call was for (`review`, `fix`, `route`, `repair`, ...).
    pub task: String,
    /// Provider config entry name.
    pub provider: String,
    /// Model that answered (or was asked, for a failed call).
    pub model: String,
    /// Token classes of the call.
    pub usage: Usage,
    /// Cost in USD; `None` when the price table has no entry (not the same as free).
    pub cost_usd: Option<f64>,
    /// Where `cost_usd` came from: the provider's own report, or tokens × the price table.
    /// Absent in JSON Lines written before it existed: `computed`.
    #[serde(default)]
    pub cost_source: CostSource,
    /// Version (effective date) of the price table used for `cost_usd`.
    pub price_table: Option<String>,
    /// Wall time of the call, milliseconds.
    pub latency_ms: u64,
    /// `ok`, or the error class (`unavailable`, `network`, `quota`, ...).
    pub outcome: String,
    /// The answer came from agentctl's response cache (`review`): no provider call was made,
    /// and the record costs $0 (its `usage` is zero too). Absent (false) in JSON Lines unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// Most tokens of one class one record may carry: 10 billion, a thousand times the largest
/// context window a provider offers. A count above it is a corrupt or hostile record (it could
/// also overflow a sum), not usage.
pub const MAX_TOKENS_PER_RECORD: u64 = 10_000_000_000;

/// Why a usage record is refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct RecordProblem {
    /// The JSON field (`cost_usd`, `usage.input_tokens`, ...).
    pub field: &'static str,
    /// What is wrong, with the value (numbers only).
    pub problem: String,
}

impl UsageRecord {
    /// Checks what a budget adds up: `cost_usd` (USD) is finite and not negative (a negative
    /// cost would turn a blocked budget into "ok"), and each token count is at most
    /// [`MAX_TOKENS_PER_RECORD`] (token counts are unsigned, so a negative one never parses).
    /// Every path into the ledger checks it: `cost import` (per line) and the store's inserts.
    ///
    /// Errors: the first [`RecordProblem`].
    pub fn check(&self) -> Result<(), RecordProblem> {
        if let Some(cost) = self.cost_usd {
            if !cost.is_finite() || cost < 0.0 {
                let what = if cost.is_nan() {
                    "is not a number".to_string()
                } else if cost.is_infinite() {
                    "is infinite".to_string()
                } else {
                    format!("is negative ({cost})")
                };
                return Err(RecordProblem {
                    field: "cost_usd",
                    problem: format!("{what}; a cost is finite and ≥ 0 USD"),
                });
            }
        }
        let u = &self.usage;
        for (field, n) in [
            ("usage.input_tokens", u.input_tokens),
            ("usage.cached_input_tokens", u.cached_input_tokens),
            ("usage.cache_write_tokens", u.cache_write_tokens),
            ("usage.cache_write_1h_tokens", u.cache_write_1h_tokens),
            ("usage.output_tokens", u.output_tokens),
            ("usage.reasoning_tokens", u.reasoning_tokens),
        ] {
            if n > MAX_TOKENS_PER_RECORD {
                return Err(RecordProblem {
                    field,
                    problem: format!("is {n}, more than the {MAX_TOKENS_PER_RECORD} tokens one call can use"),
                });
            }
        }
        Ok(())
    }
}

/// Where a record's cost came from (SPEC §3.4: a provider-reported cost is the source of truth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostSource {
    /// Tokens × the price table named by the record's `price_table` (or unpriced).
    #[default]
    Computed,
    /// The provider reported the cost itself (`claude -p --output-format json`'s
    /// `total_cost_usd`); `cost report --reprice` leaves it as it is.
    Reported,
}

impl CostSource {
    /// `computed` or `reported`, as stored in the ledger's `cost_source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Computed => "computed",
            CostSource::Reported => "reported",
        }
    }

    /// The ledger column's value back; anything but `reported` is `computed`.
    pub fn from_column(s: &str) -> Self {
        if s == "reported" {
            CostSource::Reported
        } else {
            CostSource::Computed
        }
    }
}
