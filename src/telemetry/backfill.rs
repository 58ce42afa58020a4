//! `cost export --format otlp`: the ledger's history as OTLP metrics, for backfilling a
//! collector with what ran before telemetry was configured (issue #19).
//!
//! The SDK's instruments stamp every point "now", so the request is built directly from the
//! OpenTelemetry project's protobuf types (`opentelemetry-proto`): every data point carries its
//! record's own time. Two delta, monotonic Sums: `gen_ai.client.token.usage` per
//! `gen_ai.token.type` (`input` — all input, cached included, as runs count it —, `output`,
//! `cache_read`, `cache_creation`: the last two are parts of `input`) and `agentctl.cost.usd`
//! (records without a known cost are left out of it). The endpoint, headers and protocol are
//! the run's ([`Settings`]); the resource is the run's ([`super::resource`]).
//! OTLP specification: "OTLP/HTTP" (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::{Protocol, Settings, TelemetryConfig};
use crate::context::Env;
use crate::usage::UsageRecord;

/// Records per request: a few hundred kilobytes of protobuf, well under collectors' default
/// 4 MiB request limit.
pub const BATCH: usize = 1000;

/// How long one batch's POST may take (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// No endpoint is configured (or telemetry is disabled): nothing could be sent.
    #[error(
        "no OTLP endpoint configured\nhelp: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, or `telemetry.endpoint` in the config)"
    )]
    NoEndpoint,
    /// The collector refused a batch or could not be reached. `message` names no header value.
    #[error("the OTLP collector at {endpoint} {message} (sent {sent} of {batches} batches)")]
    Send { endpoint: String, message: String, sent: usize, batches: usize },
}

/// A backfill that stopped ends `cost export` with exit 2 (usage: no endpoint) or 1 (failure:
/// the collector refused or was not reached).
impl From<BackfillError> for crate::exit::ExitError {
    fn from(e: BackfillError) -> Self {
        let exit = match e {
            BackfillError::NoEndpoint => crate::exit::Exit::Usage,
            BackfillError::Send { .. } => crate::exit::Exit::Failure,
        };
        crate::exit::ExitError::new(exit, e)
    }
}

/// What was sent: records, data points, batches, records left out of the cost metric, and to
/// which collector (scheme, host, port). Displayed as the command's info line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub records: usize,
    pub points: usize,
    pub batches: usize,
    pub unpriced: usize,
    pub collector: String,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} usage record(s) as {} OTLP data point(s) in {} batch(es) to {}",
            self.records, self.points, self.batches, self.collector
        )?;
        match self.unpriced {
            0 => Ok(()),
            n => write!(f, "; {n} record(s) without a known cost are not in agentctl.cost.usd"),
        }
    }
}

/// The settings a backfill sends with: the run's ([`Settings::read`]); only the metrics
/// endpoint is needed. Errors: [`BackfillError::NoEndpoint`].
pub fn settings(env: &Env, config: &TelemetryConfig) -> Result<Settings, BackfillError> {
    Settings::read_for_metrics(env, Some(config)).ok_or(BackfillError::NoEndpoint)
}

/// The `gen_ai.provider.name` of each `providers:` entry name (the ledger stores the entry
/// only), built by the caller from the config; an entry not in it gets no such attribute.
pub type ProviderNames = std::collections::BTreeMap<String, &'static str>;

/// POSTs `records` to the metrics endpoint of `settings`, [`BATCH`] records per request, with
/// the telemetry HTTP client (rustls); each point names its provider by `names`. Errors: the
/// first batch the collector refuses or that does not arrive ([`BackfillError::Send`], with
/// how many were sent before).
pub async fn send(
    settings: &Settings,
    env: &Env,
    records: &[UsageRecord],
    names: &ProviderNames,
) -> Result<Sent, BackfillError> {
    let batches = records.len().div_ceil(BATCH);
    let fail = |message: String, sent: usize| BackfillError::Send {
        endpoint: settings.metrics_collector(),
        message: settings.scrub(&message),
        sent,
        batches,
    };
    let client = super::http_client().map_err(|e| fail(format!("could not be set up: {e}"), 0))?;
    let resource = resource(env, settings);
    let mut sent = Sent { records: 0, points: 0, batches: 0, unpriced: 0, collector: settings.metrics_collector() };
    for batch in records.chunks(BATCH) {
        let (request, points) = request(resource.clone(), batch, names);
        let (content_type, body) = match settings.protocol {
            Protocol::HttpProtobuf => ("application/x-protobuf", request.encode_to_vec()),
            Protocol::HttpJson => ("application/json", serde_json::to_vec(&request).unwrap_or_default()),
        };
        let mut post = client
            .post(&settings.metrics_endpoint)
            .timeout(REQUEST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in settings.headers() {
            post = post.header(name.as_str(), value.as_str());
        }
        let answer = post.send().await.map_err(|e| fail(format!("could not be reached: {e}"), sent.batches))?;
        if !answer.status().is_success() {
            return Err(fail(format!("refused the metrics (HTTP {})", answer.status().as_u16()), sent.batches));
        }
        sent.batches += 1;
        sent.records += batch.len();
        sent.points += points;
        sent.unpriced += batch.iter().filter(|r| r.cost_usd.is_none()).count();
    }
    Ok(sent)
}

/// The run's resource ([`super::resource`]) as protobuf.
fn resource(env: &Env, settings: &Settings) -> Resource {
    let attributes = super::resource(env, settings)
        .iter()
        .map(|(k, v)| {
            let value = match v {
                opentelemetry::Value::Bool(b) => any_value::Value::BoolValue(*b),
                opentelemetry::Value::I64(i) => any_value::Value::IntValue(*i),
                opentelemetry::Value::F64(f) => any_value::Value::DoubleValue(*f),
                other => any_value::Value::StringValue(other.to_string()),
            };
            attribute(k.as_str(), value)
        })
        .collect();
    Resource { attributes, ..Resource::default() }
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..KeyValue::default() }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

/// The attributes every point of `r` carries: the model (`gen_ai.response.model` for an
/// answered call, `gen_ai.request.model` for a failed one), `gen_ai.provider.name` when the
/// entry is in `names`, the provider entry, task, outcome, whether the response cache
/// answered, and where it ran (repository, run id, workflow, job, PR).
fn attributes(r: &UsageRecord, names: &ProviderNames) -> Vec<KeyValue> {
    let model_key = if r.outcome == "ok" { "gen_ai.response.model" } else { "gen_ai.request.model" };
    let mut a = vec![
        text(model_key, r.model.clone()),
        text("agentctl.provider", r.provider.clone()),
        text("agentctl.task", r.task.clone()),
        text("agentctl.outcome", r.outcome.clone()),
        attribute("agentctl.cached", any_value::Value::BoolValue(r.cached)),
    ];
    let optional = [
        ("gen_ai.provider.name", names.get(&r.provider).map(|n| (*n).to_string())),
        ("vcs.repository.name", r.repo.clone()),
        ("cicd.pipeline.run.id", r.run_id.clone()),
        ("cicd.pipeline.name", r.workflow.clone()),
        ("agentctl.job", r.job.clone()),
        ("vcs.change.id", r.pr.map(|n| n.to_string())),
    ];
    a.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| text(k, v))));
    a
}

/// The request of one batch and its number of data points. Each point's time and start time
/// are its record's `ts_ms` (the call's end; a delta over the call itself).
fn request(resource: Resource, records: &[UsageRecord], names: &ProviderNames) -> (ExportMetricsServiceRequest, usize) {
    let nanos = |ms: i64| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000);
    let point = |r: &UsageRecord, mut attributes: Vec<KeyValue>, extra: Option<KeyValue>, value| {
        attributes.extend(extra);
        NumberDataPoint {
            attributes,
            start_time_unix_nano: nanos(r.ts_ms),
            time_unix_nano: nanos(r.ts_ms),
            value: Some(value),
            ..NumberDataPoint::default()
        }
    };
    let as_int = |n: u64| number_data_point::Value::AsInt(i64::try_from(n).unwrap_or(i64::MAX));
    let mut tokens = Vec::new();
    let mut cost = Vec::new();
    for r in records {
        let common = attributes(r, names);
        let u = &r.usage;
        for (kind, n) in [
            ("input", u.total_input()),
            ("output", u.output_tokens),
            ("cache_read", u.cached_input_tokens),
            ("cache_creation", u.cache_writes()),
        ] {
            tokens.push(point(r, common.clone(), Some(text("gen_ai.token.type", kind)), as_int(n)));
        }
        if let Some(usd) = r.cost_usd {
            cost.push(point(r, common, None, number_data_point::Value::AsDouble(usd)));
        }
    }
    let points = tokens.len() + cost.len();
    let sum = |name: &str, unit: &str, description: &str, data_points| Metric {
        name: name.to_owned(),
        unit: unit.to_owned(),
        description: description.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    };
    let metrics = vec![
        sum("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used", tokens),
        sum("agentctl.cost.usd", "USD", "Priced cost of provider calls", cost),
    ];
    let scope = InstrumentationScope {
        name: super::SCOPE.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics { scope: Some(scope), metrics, ..ScopeMetrics::default() }],
            ..ResourceMetrics::default()
        }],
    };
    (request, points)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;
    use crate::usage::{CostSource, Usage};

    fn record(ts_ms: i64, cost_usd: Option<f64>) -> UsageRecord {
        UsageRecord {
            ts_ms,
            repo: Some("octo/r".into()),
            workflow: None,
            run_id: Some("7".into()),
            job: None,
            pr: Some(3),
            task: "review".into(),
            provider: "main".into(),
            model: "gpt-4o".into(),
            usage: Usage { input_tokens: 10, cached_input_tokens: 5, output_tokens: 2, ..Usage::default() },
            cost_usd,
            cost_source: CostSource::Computed,
            price_table: None,
            latency_ms: 1,
            outcome: "ok".into(),
            cached: false,
        }
    }

    #[test]
    fn every_point_carries_its_records_time_and_unpriced_records_have_no_cost_point() {
        let names = ProviderNames::from([("main".to_string(), "aws.bedrock")]);
        let mut gone = record(5, None);
        gone.provider = "removed-entry".into();
        let (req, points) = request(Resource::default(), &[record(1_700_000_000_123, Some(0.5)), gone], &names);
        assert_eq!(points, 4 + 1 + 4);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(tokens)) = &metrics[0].data else { panic!() };
        assert_eq!(tokens.aggregation_temporality, AggregationTemporality::Delta as i32);
        assert!(tokens.is_monotonic);
        assert_eq!(tokens.data_points[0].time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(tokens.data_points[0].value, Some(number_data_point::Value::AsInt(15)), "input counts cached");
        assert_eq!(tokens.data_points[4].time_unix_nano, 5_000_000);
        let Some(metric::Data::Sum(cost)) = &metrics[1].data else { panic!() };
        assert_eq!(cost.data_points.len(), 1);
        // The entry's kind names the provider; an entry no longer configured is not guessed.
        let provider = |p: &NumberDataPoint| {
            p.attributes.iter().find(|a| a.key == "gen_ai.provider.name").and_then(|a| a.value.clone())
        };
        let bedrock = Some(AnyValue { value: Some(any_value::Value::StringValue("aws.bedrock".into())) });
        assert_eq!(provider(&tokens.data_points[0]), bedrock);
        assert_eq!(provider(&cost.data_points[0]), bedrock);
        assert_eq!(provider(&tokens.data_points[4]), None);
    }
}
