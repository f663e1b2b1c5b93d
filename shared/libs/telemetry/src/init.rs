//! Installing the tracing subscriber, the tracer and the metrics recorder.

use std::sync::{Mutex, PoisonError};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For a person at a terminal.
    Pretty,
    /// One JSON object per line, for containers and log shippers.
    Json,
}

/// What to set up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` of spans and the `service` of logs.
    pub service_name: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax, e.g. `info,rdkafka=warn`.
    pub log_filter: String,
    /// The full OTLP/HTTP URL spans are posted to (see [`traces_endpoint`]);
    /// `None` exports nothing (trace context is still propagated).
    pub otlp_endpoint: Option<String>,
}

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("log filter {filter:?}: {reason}")]
    LogFilter {
        /// The filter as given.
        filter: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// Another subscriber or recorder was installed first.
    #[error("telemetry is already set up in this process: {0}")]
    AlreadyInstalled(String),
}

/// Keeps the tracer running; dropping it flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("flushing spans at exit: {err}");
        }
    }
}

/// The process's Prometheus recorder, installed on first use; every
/// `metrics::` call in the process records into it. Installed under a lock:
/// threads asking at once (tests running in parallel) share the one that
/// the first of them installs.
pub fn prometheus_handle() -> Result<PrometheusHandle, TelemetryError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut handle = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = handle.as_ref() {
        return Ok(handle.clone());
    }
    let installed = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| TelemetryError::AlreadyInstalled(err.to_string()))?;
    Ok(handle.insert(installed).clone())
}

/// The URL spans are posted to, as the OpenTelemetry spec resolves it: the
/// signal's own variable (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) as it is,
/// else the generic base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`) with
/// `/v1/traces` appended.
pub fn traces_endpoint(base: Option<&str>, traces: Option<&str>) -> Option<String> {
    if let Some(traces) = traces.map(str::trim).filter(|url| !url.is_empty()) {
        return Some(traces.to_owned());
    }
    let base = base.map(str::trim).filter(|url| !url.is_empty())?;
    Some(format!("{}/v1/traces", base.trim_end_matches('/')))
}

/// Installs logging, tracing and the W3C propagator for the whole process.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_new(&config.log_filter).map_err(|err| TelemetryError::LogFilter {
            filter: config.log_filter.clone(),
            reason: err.to_string(),
        })?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|err| TelemetryError::Otlp {
                endpoint: endpoint.clone(),
                reason: err.to_string(),
            })?;
        provider = provider.with_batch_exporter(exporter);
    }
    // Without an exporter the provider still gives spans real ids, so trace
    // context flows through Kafka headers to services that do export.
    let provider = provider.build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    let otel =
        tracing_opentelemetry::layer().with_tracer(provider.tracer(config.service_name.clone()));
    let logs = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => json_logs(std::io::stderr).boxed(),
    };
    // The log filter quiets logs only: spans are always recorded for
    // tracing, or a quiet service would break the traces passing through it.
    tracing_subscriber::registry()
        .with(logs.with_filter(log_filter(filter)))
        .with(otel)
        .try_init()
        .map_err(|err| TelemetryError::AlreadyInstalled(err.to_string()))?;
    Ok(Telemetry { provider })
}

/// What the log lines show: the events `filter` lets through, and Sluice's
/// own spans whatever it says, so that a line kept at `warn` still carries
/// the message span (topic, offset, trace and correlation ids) it was
/// written in.
pub(crate) fn log_filter<S>(filter: EnvFilter) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::FilterExt;
    tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span() && metadata.target().starts_with("sluice")
    })
    .or(filter)
}

/// JSON log lines, each with the fields of the span it was written in
/// (`span`) and of the spans around it (`spans`).
pub(crate) fn json_logs<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

#[cfg(test)]
mod tests {
    use super::traces_endpoint;

    #[test]
    fn the_base_url_gets_the_signal_path_and_the_signal_url_is_taken_as_it_is() {
        let base = |url| traces_endpoint(Some(url), None);
        assert_eq!(
            base("http://c:4318").as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            base("http://c:4318/").as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            base("https://c/otlp").as_deref(),
            Some("https://c/otlp/v1/traces")
        );
        assert_eq!(
            traces_endpoint(Some("http://c:4318"), Some("http://t:4318/custom")).as_deref(),
            Some("http://t:4318/custom")
        );
        assert_eq!(traces_endpoint(Some(" "), None), None);
        assert_eq!(traces_endpoint(None, None), None);
    }
}
