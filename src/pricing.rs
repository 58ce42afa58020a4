//! Prices per token for known models, from a bundled table (`data/prices.json`, validated by
//! `schemas/pricing.schema.json`) that uses litellm's field names (`input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`, `cache_creation_input_token_cost`)
//! and carries an effective date. Config may override or add entries; local models cost 0.

use serde::{Deserialize, Serialize};

use crate::providers::Usage;

/// USD per token for one model (litellm field names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    #[serde(default)]
    pub cache_read_input_token_cost: Option<f64>,
    #[serde(default)]
    pub cache_creation_input_token_cost: Option<f64>,
}

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
        todo!()
    }

    /// Price for `model`: exact name, then the name without a `provider/` prefix, then the
    /// longest table key that `model` starts with (dated snapshots like `gpt-4o-2024-08-06`).
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        let _ = model;
        todo!()
    }

    /// Cost in USD of `usage` on `model`; `None` when the model is unknown (reported as
    /// "cost unknown", never as 0). Cached reads fall back to the input price when the table
    /// has no cache price.
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> Option<f64> {
        let _ = (model, usage);
        todo!()
    }
}
