//! The ledger writer every command shares: one usage record per provider call (SPEC §3.4),
//! priced with the run's price table, appended to the state store.
//!
//! Decision: a record that cannot be written is a warning that says "usage not recorded" and
//! names the store, never a silent loss; [`Ledger::lost`] counts them so a command run with
//! `--require-state` (or `state_required: true`) can fail instead. The review itself is not
//! undone: the tokens were spent, and they are also in the summary and the step outputs.
//!
//! Decision (issue #17): what a budget adds up is never trusted blindly. A provider-reported
//! cost that is negative, NaN or infinite is replaced by the price table's; the store refuses
//! any record failing [`crate::usage::UsageRecord::check`] (exit 2 for a direct caller, "usage
//! not recorded" here), so no negative cost can lower a budget's total.

pub(crate) mod import;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::context::Context;
use crate::log;
use crate::store::{self, Store, StoreError};
use crate::usage::pricing::PriceTable;
use crate::usage::{CostSource, Usage, UsageRecord};

/// One provider call to record. Token counts are tokens; `latency` is the answered attempt's
/// wall time (zero for a call that got no answer).
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Provider config entry name.
    pub provider: &'a str,
    /// The model that answered (or was asked, for a failed call).
    pub model: &'a str,
    /// The model the provider entry asked for, used for the price when the answered model
    /// name is not in the price table (a dated snapshot name, a deployment name).
    pub asked_model: &'a str,
    /// Tokens of the call.
    pub usage: Usage,
    /// Wall time of the call.
    pub latency: Duration,
    /// `ok`, or the error class ([`crate::providers::ProviderError::class`]).
    pub outcome: &'a str,
    /// Cost in USD the provider reported itself (`claude`'s `total_cost_usd`); when set it is
    /// recorded as is (`cost_source: reported`) instead of tokens × the price table.
    pub reported_cost_usd: Option<f64>,
}

impl<'a> Call<'a> {
    /// A call that failed before any link of the chain answered: no tokens, no latency,
    /// `outcome` the error class, priced at nothing — recorded so failures show in reports.
    pub fn failed(provider: &'a str, model: &'a str, outcome: &'a str) -> Self {
        Call {
            provider,
            model,
            asked_model: model,
            usage: Usage::default(),
            latency: Duration::ZERO,
            outcome,
            reported_cost_usd: None,
        }
    }
}

/// Appends usage records for one command run: the run's repository, workflow, run, job, PR or
/// issue and task are filled in from the [`Context`].
pub(crate) struct Ledger {
    store: Result<Arc<Store>, String>,
    prices: PriceTable,
    template: UsageRecord,
    lost: AtomicUsize,
    /// Every record of this run with its stable id, written to the store or not
    /// (`--usage-out` carries them off a hosted runner).
    written: Mutex<Vec<(String, UsageRecord)>>,
}

impl Ledger {
    /// A ledger over `store` (or the reason there is none) for `task` (`review`, `fix`, ...)
    /// on PR or issue `number`, pricing with `prices`.
    pub(crate) fn new(
        store: &Result<Arc<Store>, StoreError>,
        ctx: &Context,
        number: Option<u64>,
        task: &str,
        prices: PriceTable,
    ) -> Self {
        let template = UsageRecord {
            ts_ms: 0,
            repo: ctx.repository.as_ref().map(|r| r.to_string()),
            workflow: ctx.workflow.clone(),
            run_id: ctx.run_id.clone(),
            job: ctx.job.clone(),
            pr: number,
            task: task.to_owned(),
            provider: String::new(),
            model: String::new(),
            usage: Usage::default(),
            cost_usd: None,
            cost_source: CostSource::Computed,
            price_table: Some(prices.effective_date.clone()),
            latency_ms: 0,
            outcome: String::new(),
            cached: false,
        };
        let store = store.as_ref().map(Arc::clone).map_err(|e| log::error_chain(e));
        Self { store, prices, template, lost: AtomicUsize::new(0), written: Mutex::new(Vec::new()) }
    }

    /// The price table records are priced with.
    pub(crate) fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Records `call` and returns its cost in USD: the provider's reported cost when it gave
    /// one, else tokens × the price table (`None` when neither model has a price).
    ///
    /// A reported cost that is negative, NaN or infinite is not trusted (it would lower the
    /// budget's total): the call is priced by the table instead, with a warning. A record the
    /// store refuses ([`UsageRecord::check`](crate::usage::UsageRecord::check): absurd token
    /// counts) is "usage not recorded", counted in [`Ledger::lost`].
    pub(crate) fn record(&self, call: &Call<'_>) -> Option<f64> {
        let reported = call.reported_cost_usd.filter(|c| {
            let usable = c.is_finite() && *c >= 0.0;
            if !usable {
                log::warn(&format!(
                    "{} reported a cost of {c} USD, which cannot be a cost; pricing the call with the price table instead",
                    call.provider
                ));
            }
            usable
        });
        let (cost, cost_source) = match reported {
            Some(reported) => (Some(reported), CostSource::Reported),
            None => (
                self.prices
                    .cost_usd(call.model, &call.usage)
                    .or_else(|| self.prices.cost_usd(call.asked_model, &call.usage)),
                CostSource::Computed,
            ),
        };
        let record = UsageRecord {
            ts_ms: crate::clock::now_ms(),
            provider: call.provider.to_owned(),
            model: call.model.to_owned(),
            usage: call.usage,
            cost_usd: cost,
            cost_source,
            // A reported cost was priced by no table of ours.
            price_table: if cost_source == CostSource::Reported { None } else { self.template.price_table.clone() },
            latency_ms: u64::try_from(call.latency.as_millis()).unwrap_or(u64::MAX),
            outcome: call.outcome.to_owned(),
            ..self.template.clone()
        };
        self.append(record);
        cost
    }

    /// Records a chunk answered from the response cache (issue #20) for `provider`'s `model`:
    /// no provider call, so no tokens, no latency and $0, flagged `cached: true`.
    pub(crate) fn record_cache_hit(&self, provider: &str, model: &str) {
        self.append(UsageRecord {
            ts_ms: crate::clock::now_ms(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            cost_usd: Some(0.0),
            outcome: "ok".to_owned(),
            cached: true,
            ..self.template.clone()
        });
    }

    /// Appends `record` under a new id, keeps it for `--usage-out`, and counts it lost (with
    /// a warning) when the store does not take it.
    fn append(&self, record: UsageRecord) {
        let uid = store::new_usage_id();
        let written = match &self.store {
            Ok(store) => store.record_usage_with_id(&uid, &record).map_err(|e| log::error_chain(&e)),
            Err(why) => Err(format!("no usable state store: {why}")),
        };
        if let Ok(mut kept) = self.written.lock() {
            kept.push((uid, record.clone()));
        }
        if let Err(why) = written {
            self.lost.fetch_add(1, Ordering::Relaxed);
            log::warn(&format!(
                "usage not recorded in the ledger ({} {} tokens in, {} out): {why}",
                record.model,
                record.usage.total_input(),
                record.usage.output_tokens
            ));
        }
    }

    /// This run's records as JSON Lines ([`crate::usage::jsonl`]), with the ids the store has
    /// them under, in call order.
    pub(crate) fn jsonl(&self) -> String {
        match self.written.lock() {
            Ok(kept) => kept.iter().map(|(id, r)| crate::usage::jsonl::to_line(id, r)).collect(),
            Err(_) => String::new(),
        }
    }

    /// Writes [`Ledger::jsonl`] to `path` (atomically; an empty file when no call was made).
    ///
    /// Errors: the folder is missing or read-only, the disk is full.
    pub(crate) fn write_jsonl(&self, path: &std::path::Path) -> std::io::Result<()> {
        crate::files::write_atomically(path, self.jsonl().as_bytes())
    }

    /// How many records could not be written.
    pub(crate) fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }

    /// The end-of-run ledger sinks every command shares: `--usage-out` (this run's records as
    /// JSON Lines at `usage_out`) and `--require-state` (records the store did not take fail
    /// the run). Returns one sentence per failure, empty when all went well; the caller names
    /// them and exits 1 after its other sinks were tried.
    pub(crate) fn finish(&self, usage_out: Option<&std::path::Path>, require_state: bool) -> Vec<String> {
        let mut failures = vec![];
        if let Some(path) = usage_out {
            if let Err(e) = self.write_jsonl(path) {
                failures.push(format!("cannot write usage records to {} (--usage-out): {e}", path.display()));
            }
        }
        if self.lost() > 0 && require_state {
            failures.push(format!("{} usage record(s) not written to the ledger (--require-state)", self.lost()));
        }
        failures
    }
}

/// `--require-state` before any model call: with `required`, a state store that could not be
/// opened fails the run (exit 1, naming the store's error) because usage would not be recorded.
/// A PostgreSQL store (or URL) that cannot be used fails the run even without `required`
/// ([`StoreError::ends_the_run`]): with its own exit code (1, or 4 for refused credentials, or
/// 2 for a URL that cannot be used).
///
/// Errors: [`Exit::Failure`](crate::exit::Exit::Failure) when `required` and `store` is an error;
/// [`StoreError::exit`] for an error that ends the run.
pub(crate) fn require_store(
    store: &Result<Arc<Store>, StoreError>,
    required: bool,
) -> Result<(), crate::exit::ExitError> {
    match (store, required) {
        (Err(e), _) if e.ends_the_run() => Err(crate::exit::ExitError::new(
            e.exit(),
            anyhow::anyhow!("usage would not be recorded: {}", log::error_chain(e)),
        )),
        (Err(e), true) => Err(crate::exit::ExitError::new(
            crate::exit::Exit::Failure,
            anyhow::anyhow!("usage would not be recorded (--require-state): {}", log::error_chain(e)),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn call(usage: Usage) -> Call<'static> {
        Call {
            provider: "main",
            model: "gpt-4o-2024-08-06",
            asked_model: "gpt-4o",
            usage,
            latency: Duration::from_millis(12),
            outcome: "ok",
            reported_cost_usd: None,
        }
    }

    #[test]
    fn a_call_is_priced_and_appended_with_the_run_context() {
        let store = Ok(Arc::new(Store::open_in_memory().unwrap()));
        let env = crate::context::Env::from_pairs([("GITHUB_WORKFLOW", "ci"), ("GITHUB_RUN_ID", "7")]);
        let ctx = Context::load(&env, None, None).unwrap();
        let ledger = Ledger::new(&store, &ctx, Some(12), "review", PriceTable::bundled());
        let usage = Usage { input_tokens: 1000, output_tokens: 100, ..Usage::default() };
        let cost = ledger.record(&call(usage)).expect("gpt-4o has a bundled price");
        assert!(cost > 0.0);
        let rows = store.as_ref().unwrap().usage_since(0).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.task.as_str(), r.pr, r.workflow.as_deref(), r.run_id.as_deref()),
            ("review", Some(12), Some("ci"), Some("7"))
        );
        assert_eq!((r.usage, r.cost_usd, r.latency_ms), (usage, Some(cost), 12));
        assert_eq!(ledger.lost(), 0);
    }

    /// Regression: a negative (or NaN) reported cost was recorded as is and lowered the budget's
    /// total; absurd token counts went into the ledger.
    #[test]
    fn a_negative_or_nan_reported_cost_is_priced_by_the_table_and_absurd_tokens_are_not_recorded() {
        let store = Ok(Arc::new(Store::open_in_memory().unwrap()));
        let ctx = Context::load(&crate::context::Env::from_pairs([]), None, None).unwrap();
        let ledger = Ledger::new(&store, &ctx, None, "review", PriceTable::bundled());
        let usage = Usage { input_tokens: 1000, output_tokens: 100, ..Usage::default() };
        for reported in [-1e9, f64::NAN, f64::INFINITY] {
            let cost = ledger.record(&Call { reported_cost_usd: Some(reported), ..call(usage) }).unwrap();
            assert!(cost.is_finite() && cost > 0.0, "{reported}: {cost}");
        }
        let rows = store.as_ref().unwrap().usage_since(0).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.cost_source == CostSource::Computed && r.cost_usd.unwrap() > 0.0));
        ledger.record(&call(Usage { output_tokens: u64::MAX, ..Usage::default() }));
        assert_eq!(ledger.lost(), 1);
        assert_eq!(store.as_ref().unwrap().usage_since(0).unwrap().len(), 3);
    }

    #[test]
    fn an_unusable_store_counts_the_record_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let store = Store::open(&blocker.join("state.db")).map(Arc::new);
        assert!(store.is_err());
        let ctx = Context::load(&crate::context::Env::from_pairs([]), None, None).unwrap();
        let ledger = Ledger::new(&store, &ctx, None, "review", PriceTable::bundled());
        ledger.record(&call(Usage { input_tokens: 5, ..Usage::default() }));
        assert_eq!(ledger.lost(), 1);
    }
}
