//! Where and how telemetry is exported: the OTLP variables of the OpenTelemetry specification
//! ("OpenTelemetry Protocol Exporter", <https://opentelemetry.io/docs/specs/otel/protocol/exporter/>)
//! over the config's `telemetry:` (the variables win, as args > env > config > defaults).

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use serde::{Deserialize, Serialize};

use crate::context::Env;

/// `telemetry:` in the config (schema `#/properties/telemetry`). Nothing is exported unless an
/// endpoint is given here or in `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://localhost:4318`); `/v1/traces` and `/v1/metrics` are
    /// appended. Headers (credentials) are never taken from the config: use
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    pub endpoint: Option<String>,
    /// `http/protobuf` (default) or `http/json`.
    pub protocol: Option<Protocol>,
    /// `service.name`; default `agentctl`.
    pub service_name: Option<String>,
    /// Extra resource attributes.
    pub resource_attributes: BTreeMap<String, String>,
    /// Turns telemetry off even when the variables configure it.
    pub disabled: bool,
    /// Put prompts and answers on spans (redacted); default off.
    pub capture_content: bool,
    /// Seconds the export at the end of the run may take, in (0, 60]; default 2.
    pub flush_timeout: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            endpoint: None,
            protocol: None,
            service_name: None,
            resource_attributes: BTreeMap::new(),
            disabled: false,
            capture_content: false,
            flush_timeout: DEFAULT_FLUSH_SECS,
        }
    }
}

/// The flush deadline when none is configured, seconds.
pub(super) const DEFAULT_FLUSH_SECS: f64 = 2.0;

/// The OTLP/HTTP encodings agentctl sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// The resolved telemetry settings of a run.
#[derive(Clone)]
pub struct Settings {
    /// Full URL spans are posted to.
    pub traces_endpoint: String,
    /// Full URL metrics are posted to.
    pub metrics_endpoint: String,
    pub protocol: Protocol,
    /// Exporter headers; the values are secrets (never in `Debug`, never printed).
    headers: Vec<(String, String)>,
    pub service_name: String,
    pub resource_attributes: BTreeMap<String, String>,
    pub capture_content: bool,
    pub flush_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("traces_endpoint", &self.traces_endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The settings `env` and `config` give, or `None` when nothing is to be exported: no
    /// endpoint, `OTEL_SDK_DISABLED=true`, `telemetry.disabled`, or a protocol agentctl does
    /// not send (`grpc`: a warning says so).
    pub fn read(env: &Env, config: Option<&TelemetryConfig>) -> Option<Settings> {
        Self::read_signals(env, config, true)
    }

    /// Like [`Settings::read`], for a metrics-only export (`cost export --format otlp`): a
    /// metrics endpoint (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, or the base endpoint's
    /// `/v1/metrics`) is enough.
    pub fn read_for_metrics(env: &Env, config: Option<&TelemetryConfig>) -> Option<Settings> {
        Self::read_signals(env, config, false)
    }

    fn read_signals(env: &Env, config: Option<&TelemetryConfig>, traces: bool) -> Option<Settings> {
        let default = TelemetryConfig::default();
        let config = config.unwrap_or(&default);
        if env.get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) || config.disabled {
            return None;
        }
        let base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty()).map(str::to_owned);
        let base = base.or_else(|| config.endpoint.clone());
        let signal = |var: &str, path: &str| {
            env.get(var)
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_owned())
                .or_else(|| base.as_deref().map(|b| format!("{}/{path}", b.trim().trim_end_matches('/'))))
        };
        let metrics_endpoint = signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "v1/metrics");
        let traces_endpoint = match signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "v1/traces") {
            Some(t) => t,
            None if !traces => metrics_endpoint.clone()?,
            None => return None,
        };
        let metrics_endpoint = metrics_endpoint?;
        let protocol = match env.get("OTEL_EXPORTER_OTLP_PROTOCOL").map(str::trim) {
            Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("http/json") => Protocol::HttpJson,
            Some(other) if !other.is_empty() => {
                crate::log::warn(&format!(
                    "telemetry: OTEL_EXPORTER_OTLP_PROTOCOL={} is not sent by agentctl (http/protobuf or http/json); telemetry is off",
                    printable(other)
                ));
                return None;
            }
            _ => config.protocol.unwrap_or(Protocol::HttpProtobuf),
        };
        let service_name = env
            .get("OTEL_SERVICE_NAME")
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .or_else(|| config.service_name.clone())
            .unwrap_or_else(|| "agentctl".into());
        Some(Settings {
            traces_endpoint,
            metrics_endpoint,
            protocol,
            headers: headers(env),
            service_name,
            resource_attributes: config.resource_attributes.clone(),
            capture_content: config.capture_content,
            flush_timeout: flush_timeout(config),
        })
    }

    /// The collector for messages: scheme, host and port of the traces endpoint (no path, no
    /// query, no userinfo).
    pub fn collector(&self) -> String {
        origin(&self.traces_endpoint)
    }

    /// Scheme, host and port of the metrics endpoint, as [`Settings::collector`].
    pub fn metrics_collector(&self) -> String {
        origin(&self.metrics_endpoint)
    }

    /// The exporter headers (name, value); the values are secrets, sent and never printed.
    pub(super) fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// `message` cut to one line of at most 200 characters, with every header value replaced.
    pub fn scrub(&self, message: &str) -> String {
        let mut out: String = message.lines().next().unwrap_or_default().chars().take(200).collect();
        for (_, value) in &self.headers {
            if value.len() >= 4 {
                out = out.replace(value.as_str(), "***");
            }
        }
        printable(&out)
    }

    fn header_map(&self) -> std::collections::HashMap<String, String> {
        self.headers.iter().cloned().collect()
    }

    fn otlp_protocol(&self) -> opentelemetry_otlp::Protocol {
        match self.protocol {
            Protocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
            Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        }
    }

    /// The OTLP/HTTP span exporter on `client`. Errors: the builder's message.
    pub fn span_exporter(&self, client: reqwest::Client) -> Result<opentelemetry_otlp::SpanExporter, String> {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(self.traces_endpoint.clone())
            .with_protocol(self.otlp_protocol())
            .with_headers(self.header_map())
            .with_timeout(self.flush_timeout)
            .build()
            .map_err(|e| e.to_string())
    }

    /// The OTLP/HTTP metric exporter on `client` (delta temporality: one run's values).
    pub fn metric_exporter(&self, client: reqwest::Client) -> Result<opentelemetry_otlp::MetricExporter, String> {
        opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(self.metrics_endpoint.clone())
            .with_protocol(self.otlp_protocol())
            .with_headers(self.header_map())
            .with_timeout(self.flush_timeout)
            .with_temporality(opentelemetry_sdk::metrics::Temporality::Delta)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// The config's flush deadline: `flush_timeout` seconds in (0, 60], else the default.
pub(super) fn flush_timeout(config: &TelemetryConfig) -> Duration {
    let secs = config.flush_timeout;
    Duration::from_secs_f64(if secs.is_finite() && secs > 0.0 { secs.min(60.0) } else { DEFAULT_FLUSH_SECS })
}

/// `text` without control characters (a message line is never two).
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `OTEL_EXPORTER_OTLP_HEADERS` (and `_TRACES_HEADERS`): `key=value` pairs separated by commas,
/// values percent-decoded (the W3C Baggage format the specification names). Malformed pairs
/// are skipped.
fn headers(env: &Env) -> Vec<(String, String)> {
    let mut out = vec![];
    for var in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
        for pair in env.get(var).unwrap_or_default().split(',') {
            if let Some((k, v)) = pair.split_once('=') {
                let (k, v) = (k.trim(), v.trim());
                if !k.is_empty() {
                    let v = urlencoding::decode(v).map(|c| c.into_owned()).unwrap_or_else(|_| v.to_owned());
                    out.push((k.to_owned(), v));
                }
            }
        }
    }
    out
}

/// The header values of [`headers`], for the redactor.
pub(super) fn header_secrets(env: &Env) -> Vec<String> {
    headers(env).into_iter().map(|(_, v)| v).filter(|v| !v.is_empty()).collect()
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs, values percent-decoded.
pub(super) fn env_resource_attributes(env: &Env) -> Vec<KeyValue> {
    env.get("OTEL_RESOURCE_ATTRIBUTES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| {
            let v = urlencoding::decode(v.trim()).map(|c| c.into_owned()).unwrap_or_else(|_| v.trim().to_owned());
            KeyValue::new(k.trim().to_owned(), v)
        })
        .collect()
}

/// Scheme, host and port of `url` (no path, no query, no userinfo).
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(an unparsable endpoint)".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert!(Settings::read(&Env::from_pairs([]), None).is_none());
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")];
        let s = Settings::read(&Env::from_pairs(on), None).unwrap();
        assert_eq!(s.traces_endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(s.metrics_endpoint, "http://127.0.0.1:4318/v1/metrics");
        assert_eq!((s.protocol, s.flush_timeout), (Protocol::HttpProtobuf, Duration::from_secs(2)));
        let off = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "TRUE")];
        assert!(Settings::read(&Env::from_pairs(off), None).is_none());
        let grpc = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        assert!(Settings::read(&Env::from_pairs(grpc), None).is_none());
        let config = TelemetryConfig { endpoint: Some("http://cfg:4318".into()), ..TelemetryConfig::default() };
        assert_eq!(
            Settings::read(&Env::from_pairs([]), Some(&config)).unwrap().traces_endpoint,
            "http://cfg:4318/v1/traces"
        );
        let signal =
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b/t")];
        assert_eq!(Settings::read(&Env::from_pairs(signal), Some(&config)).unwrap().traces_endpoint, "http://b/t");
    }

    #[test]
    fn header_values_are_secrets_never_shown() {
        let env = Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:pw@otlp.example:443/base?x=1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic%20c2VjcmV0LXRva2Vu,x-team = ci ,broken"),
        ]);
        let s = Settings::read(&env, None).unwrap();
        assert_eq!(header_secrets(&env), ["Basic c2VjcmV0LXRva2Vu", "ci"]);
        let debug = format!("{s:?}");
        assert!(!debug.contains("c2VjcmV0") && debug.contains("authorization"), "{debug}");
        assert_eq!(s.collector(), "https://otlp.example");
        assert_eq!(s.scrub("401 for Basic c2VjcmV0LXRva2Vu\nsecond line"), "401 for ***");
    }
}
