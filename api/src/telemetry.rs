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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use berth_agents::AgentKind;
    use mongodb::bson::DateTime;
    use mongodb::bson::oid::ObjectId;
    use opentelemetry::Value;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
    use tower::ServiceExt;

    use super::*;
    use crate::store::{ModelDoc, ScenarioRef, Status, Store, TaskDoc};

    fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }

    fn task(id: ObjectId) -> TaskDoc {
        TaskDoc {
            id,
            agent: AgentKind::Qlearning,
            scenario: ScenarioRef { name: "tiny".into(), spec: None, fingerprint: String::new() },
            steps: Some(2_000),
            seed: 1,
            hyperparameters: serde_json::Value::Null,
            status: Status::Running,
            created_by: "test".into(),
            created_at: DateTime::now(),
            started_at: None,
            finished_at: None,
            progress: None,
            model_id: None,
            error: None,
            note: None,
            owner: Some("test".into()),
            lease_until: None,
            attempts: 1,
            cancel_requested: false,
            log_file: None,
            device: Default::default(),
        }
    }

    /// The spans the service makes, through an in-memory exporter: a request (continuing the
    /// caller's trace, its id in the JSON log line), a training task with progress events,
    /// and a deploy plan with kube's per-call spans under it (the test API server and
    /// MongoDB that `scripts/test.sh` starts).
    #[test]
    fn requests_training_deploys_and_kubernetes_calls_make_spans() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let logs = SharedBuffer::default();
        let subscriber = subscriber(LogFormat::Json, Some(&provider), logs.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                // A request, from a caller with a trace of its own.
                let app = Router::new()
                    .route(
                        "/things/{id}",
                        get(|| async {
                            tracing::info!("handled");
                            "ok"
                        }),
                    )
                    .layer(axum::middleware::from_fn(trace_request));
                let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
                let request = axum::http::Request::get("/things/7")
                    .header("traceparent", format!("00-{caller}-00f067aa0ba902b7-01"))
                    .body(Body::empty())
                    .unwrap();
                assert_eq!(app.oneshot(request).await.unwrap().status(), 200);

                // A training task.
                let uri = std::env::var("BERTH_TEST_MONGODB_URI").expect(
                    "BERTH_TEST_MONGODB_URI is not set: `scripts/test.sh` starts MongoDB and sets it",
                );
                let store =
                    Store::connect(&uri, &format!("berth-telemetry-{}", ObjectId::new())).await.unwrap();
                let task = task(ObjectId::new());
                let stop = Arc::new(AtomicBool::new(false));
                let span = training_span(&task);
                let trained = crate::runner::train_here(store.clone(), task, "test".into(), stop, u64::MAX)
                    .instrument(span)
                    .await;
                assert!(trained.is_ok());
                store.database().drop().await.unwrap();

                // A deploy plan, which reads the cluster first (no placed services there:
                // it stops at that, after the calls).
                let kubeconfig = std::env::var("BERTH_TEST_KUBECONFIG").expect(
                    "BERTH_TEST_KUBECONFIG is not set: `scripts/test.sh` starts the API server and sets it",
                );
                let client = berth_env::live::connect(Some(std::path::Path::new(&kubeconfig))).await.unwrap();
                let live = crate::deploy::LiveCluster {
                    client,
                    namespace: "telemetry-empty".into(),
                    move_timeout: std::time::Duration::from_secs(1),
                    owner: "test".into(),
                    lease: std::time::Duration::from_secs(1),
                };
                let model = ModelDoc {
                    id: ObjectId::new(),
                    kind: AgentKind::Qlearning,
                    status: "ready".into(),
                    task_id: None,
                    scenario: ScenarioRef { name: "tiny".into(), spec: None, fingerprint: String::new() },
                    trained_steps: 0,
                    seed: 1,
                    hyperparameters: serde_json::Value::Null,
                    observation_len: 0,
                    action_count: 0,
                    evaluation: serde_json::Value::Null,
                    weights_file: ObjectId::new(),
                    weights_bytes: 0,
                    created_at: DateTime::now(),
                    log_file: None,
                };
                let scenario = berth_env::shipped::load("tiny").unwrap();
                let limits = berth_env::plan::PlanLimits { horizon_ticks: 1, max_moves: 1 };
                let planned =
                    crate::deploy::plan_deploy(&live, scenario, &model, Vec::new(), limits, true, "test")
                        .await;
                assert!(planned.is_err(), "nothing is placed in telemetry-empty");
            });
        });
        let spans = exporter.get_finished_spans().unwrap();
        let named = |name: &str| {
            spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
                panic!("no `{name}` span in {:?}", spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            })
        };

        let request = named("GET /things/{id}");
        assert_eq!(request.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(attribute(request, "http.route"), Some(&Value::from("/things/{id}")));
        assert_eq!(attribute(request, "http.response.status_code"), Some(&Value::I64(200)));
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().find(|l| l.contains("handled")).expect("the handler's log line");
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{line}");

        assert!(!text.contains("\"progress\""), "progress events stay out of the log: {text}");
        let training = named("training");
        assert_eq!(attribute(training, "agent"), Some(&Value::from("qlearning")));
        let progress = training.events.iter().filter(|e| e.name == "progress").count();
        assert!(progress >= 1, "progress events: {:?}", training.events);

        let plan = named("deploy.plan");
        let calls: Vec<&SpanData> =
            spans.iter().filter(|s| s.parent_span_id == plan.span_context.span_id()).collect();
        assert!(!calls.is_empty(), "no Kubernetes call under the deploy plan");
        assert!(calls.iter().all(|c| attribute(c, "http.url").is_some()), "{calls:?}");
        assert!(calls.iter().any(|c| attribute(c, "http.url").unwrap().as_str().contains("/api/v1/nodes")));
    }
}
