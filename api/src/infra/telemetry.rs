//! The service's logs and traces. Logs go to stderr as text or JSON lines (`--log-format`);
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans also go over OTLP/HTTP (the exporter reads
//! the standard `OTEL_*` variables): one per request (continuing a caller's `traceparent`),
//! per training task (its progress as events), per deploy and rollback, and per Kubernetes
//! call (kube's own `HTTP` spans). Log lines inside a span carry its `trace_id`.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// The target of training progress events: exported as span events, kept out of the log
/// (two lines a second per task would drown it).
pub const PROGRESS: &str = "berth::progress";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object a line, with the current span's fields (`trace_id` among them).
    Json,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter's settings (the `OTEL_EXPORTER_OTLP_*` variables).
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Another subscriber was installed first.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installed telemetry; [`Telemetry::shutdown`] flushes the spans not yet exported.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is left.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!("flushing spans at exit: {e}");
        }
    }
}

/// Installs the process's subscriber: logs in `format` to stderr, and spans over OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(format: LogFormat) -> Result<Telemetry, TelemetryError> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
    let provider = match endpoint {
        None => None,
        Some(_) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("berth").build();
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
    };
    let subscriber = subscriber(format, provider.as_ref(), std::io::stderr);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider })
}

/// The subscriber: a log layer writing to `writer`, and with a provider an OpenTelemetry
/// layer. berth's own events at INFO and up, other crates' at WARN; spans for export are
/// berth's and kube's per-call `HTTP` spans (DEBUG in kube).
pub fn subscriber<W>(
    format: LogFormat,
    provider: Option<&SdkTracerProvider>,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let logs = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("berth", LevelFilter::INFO)
        .with_target(PROGRESS, LevelFilter::WARN);
    let log_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
    .with_filter(logs);
    let otel_layer = provider.map(|provider| {
        let spans = Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("berth", LevelFilter::INFO)
            .with_target("kube_client", LevelFilter::DEBUG);
        tracing_opentelemetry::layer().with_tracer(provider.tracer("berth")).with_filter(spans)
    });
    Registry::default().with(log_layer).with(otel_layer)
}

/// Records the span's OpenTelemetry trace id in its `trace_id` field (declared empty), so
/// the JSON log lines inside it carry it. Nothing without an exporter.
pub fn record_trace_id(span: &Span) {
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// A training task's span; the runner runs the task inside it.
pub fn training_span(task: &crate::store::TaskDoc) -> Span {
    let span = tracing::info_span!(
        "training",
        otel.name = "training",
        task_id = %task.id,
        agent = task.agent.name(),
        scenario = %task.scenario.name,
        trace_id = tracing::field::Empty,
    );
    record_trace_id(&span);
    span
}

/// The request's headers, for reading a caller's `traceparent`.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Middleware: a span per request, named after its route template (`GET /api/v1/training/{id}`),
/// a child of the caller's trace when the request carries a W3C `traceparent`.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    record_trace_id(&span);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", i64::from(response.status().as_u16()));
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// A `MakeWriter` into a shared buffer, for tests reading the log lines.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct SharedBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'w> MakeWriter<'w> for SharedBuffer {
    type Writer = SharedBuffer;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}
