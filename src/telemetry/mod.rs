//! Telemetry (issue #19): OpenTelemetry traces and metrics of a run, exported over OTLP/HTTP —
//! only when configured; nothing is recorded or sent otherwise.
//!
//! Configuration ([`Settings::read`]) by the standard variables of the OpenTelemetry
//! specification ("Environment Variable Specification" and "OTLP Exporter Configuration"):
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (and the `_TRACES_`/`_METRICS_` variants, used as given),
//! `OTEL_EXPORTER_OTLP_HEADERS` (a secret: [`secrets`] hands the values to the redactor),
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `http/json`),
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`; the config's
//! `telemetry:` gives the same (the variables win) plus `capture_content` and `flush_timeout`.
//!
//! What a run records ([`start`] .. [`finish`]):
//! - one task-run span per command, in the CI/CD conventions (`cicd.pipeline.task.*`), on a
//!   resource with the CI/CD and VCS attributes of the workflow run ([`resource`]);
//! - under it, one CLIENT span per provider request in the GenAI conventions ([`model_span`]:
//!   `chat {model}`, or `invoke_agent {name}` for an agent CLI), one `execute_tool verify` span
//!   per verify run, and one HTTP CLIENT span per GitHub request (method and route template,
//!   never the token, never query values; [`http_span`]);
//! - metrics: `gen_ai.client.token.usage`, `gen_ai.client.operation.duration` and
//!   `agentctl.findings`, `agentctl.breaker.opens`, `agentctl.budget.checks` ([`answered`],
//!   [`count_findings`], [`count`]); breaker state changes are events on the task-run span.
//!
//! Context: a run joins its workflow's trace. With `TRACEPARENT` (W3C Trace Context) the
//! task-run span is its child; without, the trace id is derived from (repository, run id, run
//! attempt) ([`ids::run_trace_id`]), so every step and job of one run lands in one trace.
//! Children that agentctl starts (verify, agent CLIs) get `TRACEPARENT` ([`traceparent`]).
//!
//! Export never fails or slows a run: spans and metrics are kept in memory while the run works
//! and sent once at the end, bounded by the flush deadline (default 2 s); a dead or slow
//! collector costs at most that, gives one warning, and leaves the exit code as it was.
//! Decision: one export at the end instead of a background batch exporter, because agentctl's
//! runs are short and a background thread would add work (and a runtime) to every run; the
//! long-lived `token-refresh --watch` exports when it stops.

pub mod backfill;
pub mod ids;
mod settings;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};

use crate::context::Env;
use crate::log;

pub use settings::{Protocol, Settings, TelemetryConfig};

/// The instrumentation scope of every span and instrument.
const SCOPE: &str = "agentctl";

/// One active run's telemetry.
struct Active {
    settings: Settings,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    tracer_provider: SdkTracerProvider,
    spans: Arc<Mutex<Vec<SpanData>>>,
    run: Mutex<Option<Context>>,
    meter_provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    resource: opentelemetry_sdk::Resource,
    tokens: Histogram<u64>,
    duration: Histogram<f64>,
    findings: Counter<u64>,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// Whether this run records telemetry (an endpoint is configured and the SDK not disabled).
pub fn enabled() -> bool {
    ACTIVE.get().is_some()
}

/// Starts the run's telemetry for `task` (`review`, `fix`, …) when `env` configures it (the
/// config's `telemetry:` may still do so later, [`configure`]). Call once per process, before
/// any work; later calls do nothing.
pub fn start(task: &'static str, env: &Env) {
    let started = SystemTime::now();
    let _ = RUN.set(Run { task, started, env: env.clone() });
    if let Some(settings) = Settings::read(env, None) {
        activate(task, env, settings, started);
    }
}

/// Applies the config's `telemetry:` once the config is loaded: starts telemetry when the
/// variables did not but the config names an endpoint (the task-run span backdated to the
/// run's start), and takes its `flush_timeout` and `capture_content` when the variables
/// already started it. Does nothing before [`start`].
pub fn configure(config: &TelemetryConfig) {
    let Some(run) = RUN.get() else { return };
    if enabled() {
        let _ = FROM_CONFIG.set((settings::flush_timeout(config), config.capture_content));
        return;
    }
    if let Some(settings) = Settings::read(&run.env, Some(config)) {
        activate(run.task, &run.env, settings, run.started);
    }
}

/// This process's run ([`start`]): its task, when it began, and its environment.
struct Run {
    task: &'static str,
    started: SystemTime,
    env: Env,
}

static RUN: OnceLock<Run> = OnceLock::new();

/// The config's flush deadline and `capture_content`, when the variables started telemetry
/// before the config was read.
static FROM_CONFIG: OnceLock<(Duration, bool)> = OnceLock::new();

/// The HTTP client of the export: our rustls configuration, built on first use (never when
/// telemetry is off). Errors: reqwest's builder message.
fn http_client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(crate::tls::client_config())
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// The values of the exporter headers (`OTEL_EXPORTER_OTLP_HEADERS`): secrets, registered with
/// the redactor by the session, never printed.
pub fn secrets(env: &Env) -> Vec<secrecy::SecretString> {
    settings::header_secrets(env).into_iter().map(secrecy::SecretString::from).collect()
}

fn activate(task: &str, env: &Env, settings: Settings, started: SystemTime) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let resource = resource(env, &settings);
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(Keep(spans.clone()))
        .with_id_generator(ids::RunIds::new(env))
        .with_resource(resource.clone())
        .build();
    let tracer = tracer_provider.tracer(SCOPE);
    let reader = Arc::new(ManualReader::builder().build());
    let meter_provider =
        SdkMeterProvider::builder().with_reader(SharedReader(reader.clone())).with_resource(resource.clone()).build();
    let meter = meter_provider.meter(SCOPE);
    let tokens = meter
        .u64_histogram("gen_ai.client.token.usage")
        .with_unit("{token}")
        .with_description("Number of input and output tokens used")
        .build();
    let duration = meter
        .f64_histogram("gen_ai.client.operation.duration")
        .with_unit("s")
        .with_description("GenAI operation duration")
        .build();
    let findings =
        meter.u64_counter("agentctl.findings").with_unit("{finding}").with_description("Findings by severity").build();
    let parent = ids::parent_context(env);
    let attributes = task_attributes(task, env);
    let span = tracer
        .span_builder(format!("agentctl {task}"))
        .with_kind(SpanKind::Internal)
        .with_start_time(started)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    let run = Context::new().with_span(span);
    let active = Active {
        settings,
        tracer,
        tracer_provider,
        spans,
        run: Mutex::new(Some(run)),
        meter_provider,
        reader,
        resource,
        tokens,
        duration,
        findings,
    };
    let _ = ACTIVE.set(active);
}

/// `cicd.pipeline.task.*` of the task-run span (the result is added by [`finish`]).
fn task_attributes(task: &str, env: &Env) -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new("cicd.pipeline.task.name", task.to_owned())];
    if let Some(url) = ids::run_url(env) {
        attributes.push(KeyValue::new("cicd.pipeline.task.run.url.full", url));
    }
    let run = [env.get("GITHUB_RUN_ID"), env.get("GITHUB_RUN_ATTEMPT"), env.get("GITHUB_JOB")];
    if run.iter().all(Option::is_some) {
        let id = run.iter().flatten().copied().collect::<Vec<_>>().join("/");
        attributes.push(KeyValue::new("cicd.pipeline.task.run.id", format!("{id}/{task}")));
    }
    attributes
}

/// The resource of every span and metric: `service.name` (`OTEL_SERVICE_NAME`, the config's
/// `service_name`, else `agentctl`), `service.version`, `OTEL_RESOURCE_ATTRIBUTES` and the
/// config's `resource_attributes`, and the CI/CD and VCS attributes of the workflow run
/// (OpenTelemetry semantic conventions, "CICD" and "VCS" registries): `cicd.pipeline.name`,
/// `cicd.pipeline.run.id`, `cicd.pipeline.run.url.full`, `cicd.worker.name`,
/// `vcs.repository.url.full`, `vcs.ref.head.revision`, `vcs.ref.head.name`.
fn resource(env: &Env, settings: &Settings) -> opentelemetry_sdk::Resource {
    let mut attributes = vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
    let mut add = |key: &'static str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            attributes.push(KeyValue::new(key, v));
        }
    };
    let get = |name: &str| env.get(name).map(str::to_owned);
    add("cicd.pipeline.name", get("GITHUB_WORKFLOW"));
    add("cicd.pipeline.run.id", get("GITHUB_RUN_ID"));
    add("cicd.pipeline.run.url.full", ids::run_url(env));
    add("cicd.worker.name", get("RUNNER_NAME"));
    add("vcs.repository.url.full", ids::repository_url(env));
    add("vcs.ref.head.revision", get("GITHUB_SHA"));
    let head = get("GITHUB_HEAD_REF").filter(|h| !h.is_empty()).or_else(|| get("GITHUB_REF_NAME"));
    add("vcs.ref.head.name", head);
    attributes.extend(settings.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())));
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(settings::env_resource_attributes(env))
        .with_attributes(attributes)
        .with_service_name(settings.service_name.clone())
        .build()
}

/// A span of the run (a no-op when telemetry is off): ends when dropped, or with a status by
/// [`Span::end_with`].
pub struct Span(Option<opentelemetry_sdk::trace::Span>);

impl Span {
    /// Adds attributes.
    pub fn set(&mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        if let Some(span) = &mut self.0 {
            span.set_attributes(attributes);
        }
    }

    /// Adds an event (a retry, a fallback) with its attributes.
    pub fn event(&mut self, name: &'static str, attributes: Vec<KeyValue>) {
        if let Some(span) = &mut self.0 {
            span.add_event(name, attributes);
        }
    }

    /// Ends the span, as an error with `error.type` when `error` is given.
    pub fn end_with(mut self, error: Option<&str>) {
        if let Some(mut span) = self.0.take() {
            if let Some(kind) = error {
                span.set_attribute(KeyValue::new("error.type", kind.to_owned()));
                span.set_status(Status::error(kind.to_owned()));
            }
            span.end();
        }
    }
}

/// A child span of the task-run span: `name`, `kind`, `attributes`.
pub fn child_span(name: String, kind: SpanKind, attributes: Vec<KeyValue>) -> Span {
    let Some(active) = ACTIVE.get() else { return Span(None) };
    let parent = active.run.lock().ok().and_then(|r| r.clone()).unwrap_or_default();
    Span(Some(
        active
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&active.tracer, &parent),
    ))
}

/// The CLIENT span of one provider request in the GenAI conventions ("Semantic conventions for
/// generative client AI spans" and "… for GenAI agent spans"): `chat {model}` with
/// `gen_ai.operation.name`, `gen_ai.provider.name` and `gen_ai.request.model`; for an agent CLI
/// (`operation` `invoke_agent`) `invoke_agent {agent}` with `gen_ai.agent.name` = `agent` (the
/// provider entry's name) and `gen_ai.request.model` only when a model is configured. The
/// answer's attributes are added by [`answered`].
pub fn model_span(operation: &'static str, provider: &'static str, agent: &str, model: &str) -> Span {
    if !enabled() {
        return Span(None);
    }
    let mut attributes =
        vec![KeyValue::new("gen_ai.operation.name", operation), KeyValue::new("gen_ai.provider.name", provider)];
    let name = if operation == "invoke_agent" {
        attributes.push(KeyValue::new("gen_ai.agent.name", agent.to_owned()));
        format!("{operation} {agent}")
    } else {
        format!("{operation} {model}")
    };
    if !model.is_empty() {
        attributes.push(KeyValue::new("gen_ai.request.model", model.to_owned()));
    }
    child_span(name, SpanKind::Client, attributes)
}

/// What a provider answered, on its span and in the metrics: the response model and id, the
/// tokens (`gen_ai.usage.input_tokens` counts cached and cache-write input too, as the
/// conventions say), the priced cost in USD (`agentctl.cost.usd`, when known) and the duration.
pub struct Answer<'a> {
    pub operation: &'static str,
    pub provider: &'static str,
    pub request_model: &'a str,
    pub response_model: &'a str,
    pub response_id: Option<&'a str>,
    /// Why the model stopped (`gen_ai.response.finish_reasons`, one entry: one choice asked).
    pub finish_reason: Option<&'a str>,
    pub usage: &'a crate::usage::Usage,
    pub cost_usd: Option<f64>,
    pub duration: Duration,
}

/// Records `answer` on `span` and in the token and duration metrics.
pub fn answered(span: &mut Span, answer: &Answer<'_>) {
    let Some(active) = ACTIVE.get() else { return };
    let u = answer.usage;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut attributes = vec![
        KeyValue::new("gen_ai.response.model", answer.response_model.to_owned()),
        KeyValue::new("gen_ai.usage.input_tokens", as_i64(u.total_input())),
        KeyValue::new("gen_ai.usage.output_tokens", as_i64(u.output_tokens)),
        KeyValue::new("gen_ai.usage.cache_read.input_tokens", as_i64(u.cached_input_tokens)),
        KeyValue::new("gen_ai.usage.cache_creation.input_tokens", as_i64(u.cache_writes())),
    ];
    if let Some(id) = answer.response_id {
        attributes.push(KeyValue::new("gen_ai.response.id", id.to_owned()));
    }
    if let Some(reason) = answer.finish_reason {
        let reasons = opentelemetry::Array::String(vec![reason.to_owned().into()]);
        attributes.push(KeyValue::new("gen_ai.response.finish_reasons", opentelemetry::Value::Array(reasons)));
    }
    if let Some(usd) = answer.cost_usd {
        attributes.push(KeyValue::new("agentctl.cost.usd", usd));
    }
    span.set(attributes);
    let common = [
        KeyValue::new("gen_ai.operation.name", answer.operation),
        KeyValue::new("gen_ai.provider.name", answer.provider),
        KeyValue::new("gen_ai.request.model", answer.request_model.to_owned()),
        KeyValue::new("gen_ai.response.model", answer.response_model.to_owned()),
    ];
    let with = |kind: &'static str| {
        let mut a = common.to_vec();
        a.push(KeyValue::new("gen_ai.token.type", kind));
        a
    };
    active.tokens.record(u.total_input(), &with("input"));
    active.tokens.record(u.output_tokens, &with("output"));
    active.duration.record(answer.duration.as_secs_f64(), &common);
}

tokio::task_local! {
    /// The retries of the provider request running under [`observe_retries`].
    static RETRIES: std::cell::RefCell<Vec<(u32, Option<u16>, Duration)>>;
}

/// Runs `work` (one provider request) and returns its output with the retries it decided:
/// `(failed attempt, HTTP status, wait)`, for span events. Nested concurrent requests each see
/// their own. Nothing is kept when telemetry is off.
pub async fn observe_retries<F: std::future::Future>(work: F) -> (F::Output, Vec<(u32, Option<u16>, Duration)>) {
    if !enabled() {
        return (work.await, vec![]);
    }
    RETRIES
        .scope(std::cell::RefCell::new(vec![]), async move {
            let out = work.await;
            (out, RETRIES.with(|r| r.take()))
        })
        .await
}

/// Notes one retry of the request in flight (called by `resilience` for every retry).
pub fn note_retry(attempt: u32, status: Option<u16>, wait: Duration) {
    let _ = RETRIES.try_with(|r| r.borrow_mut().push((attempt, status, wait)));
}

/// Adds 1 to the counter `name` with one attribute `key=value` (breaker opens, budget checks by
/// state); nothing when telemetry is off.
pub fn count(name: &'static str, key: &'static str, value: &str) {
    if let Some(active) = ACTIVE.get() {
        let counter = active.meter_provider.meter(SCOPE).u64_counter(name).build();
        counter.add(1, &[KeyValue::new(key, value.to_owned())]);
    }
}

/// Adds an event to the task-run span (a circuit breaker's state change).
pub fn run_event(name: &'static str, attributes: Vec<KeyValue>) {
    let Some(active) = ACTIVE.get() else { return };
    if let Some(run) = active.run.lock().ok().and_then(|r| r.clone()) {
        run.span().add_event(name, attributes);
    }
}

/// Counts findings of `severity` (`agentctl.findings`).
pub fn count_findings(severity: &str, n: u64) {
    if let Some(active) = ACTIVE.get() {
        active.findings.add(n, &[KeyValue::new("agentctl.finding.severity", severity.to_owned())]);
    }
}

/// The HTTP CLIENT span of one GitHub request (HTTP client semantic conventions): named
/// `{METHOD} {route}`, with `http.request.method`, `url.template` (the route with every value
/// replaced, [`ids::route_template`]), `server.address`; no header, no query, no path value.
pub fn http_span(method: &str, url: &str) -> Span {
    if !enabled() {
        return Span(None);
    }
    let (server, template) = ids::route_template(url);
    child_span(
        format!("{method} {template}"),
        SpanKind::Client,
        vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("url.template", template),
            KeyValue::new("server.address", server),
        ],
    )
}

/// `TRACEPARENT` for a child agentctl starts: the task-run span's context, W3C Trace Context
/// (`00-{trace id}-{span id}-{flags}`); `None` when telemetry is off.
pub fn traceparent() -> Option<String> {
    let active = ACTIVE.get()?;
    let run = active.run.lock().ok()?.clone()?;
    let sc = run.span().span_context().clone();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// Whether prompts and answers may go on spans (`telemetry.capture_content: true`); they are
/// redacted like every other output when they do.
pub fn capture_content() -> bool {
    ACTIVE.get().is_some_and(|a| FROM_CONFIG.get().map_or(a.settings.capture_content, |c| c.1))
}

/// Ends the task-run span with `cicd.pipeline.task.run.result` (`success`, `failure` for
/// findings at `--fail-on`, `skip` for nothing to do, `error` otherwise) and exports everything,
/// bounded by the flush deadline. A failed or late export is one warning; the run's result is
/// never changed by it.
pub async fn finish(result: &'static str) {
    let Some(active) = ACTIVE.get() else { return };
    if let Some(run) = active.run.lock().ok().and_then(|mut r| r.take()) {
        let span = run.span();
        span.set_attribute(KeyValue::new("cicd.pipeline.task.run.result", result));
        if result == "error" {
            span.set_status(Status::error("the run failed"));
        }
        span.end();
    }
    let deadline = FROM_CONFIG.get().map_or(active.settings.flush_timeout, |c| c.0);
    match tokio::time::timeout(deadline, export(active)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn(&format!(
            "telemetry: the export to {} failed ({}); the run's result is unchanged",
            active.settings.collector(),
            active.settings.scrub(&e)
        )),
        Err(_) => log::warn(&format!(
            "telemetry: the collector at {} did not answer within {:.1} s; the run's result is unchanged",
            active.settings.collector(),
            deadline.as_secs_f64()
        )),
    }
}

/// Sends the kept spans and the collected metrics.
async fn export(active: &Active) -> Result<(), String> {
    use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
    use opentelemetry_sdk::trace::SpanExporter as _;
    let _ = active.tracer_provider.force_flush();
    let spans = active.spans.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
    let client = http_client()?;
    if !spans.is_empty() {
        let mut exporter = active.settings.span_exporter(client.clone())?;
        exporter.set_resource(&active.resource);
        exporter.export(spans).await.map_err(|e| e.to_string())?;
    }
    let mut metrics = opentelemetry_sdk::metrics::data::ResourceMetrics::default();
    active.reader.collect(&mut metrics).map_err(|e| e.to_string())?;
    if metrics.scope_metrics().next().is_some() {
        let exporter = active.settings.metric_exporter(client.clone())?;
        exporter.export(&metrics).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Keeps every ended span in memory for the one export at the end of the run.
#[derive(Debug)]
struct Keep(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Keep {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if let Ok(mut spans) = self.0.lock() {
            spans.push(span);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// The manual reader, shared between the meter provider and [`export`].
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl opentelemetry_sdk::metrics::reader::MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<opentelemetry_sdk::metrics::Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(
        &self,
        rm: &mut opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: opentelemetry_sdk::metrics::InstrumentKind) -> opentelemetry_sdk::metrics::Temporality {
        self.0.temporality(kind)
    }
}
