//! The spans the service makes, end to end: a request, a training task and a deploy plan,
//! with kube's calls under it. Here, above both the telemetry it checks and the training and
//! deploy code it drives.

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

use crate::infra::telemetry::*;
use crate::store::{ModelDoc, ScenarioRef, Status, Store, TaskDoc};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;

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
            let uri = std::env::var("BERTH_TEST_MONGODB_URI")
                .expect("BERTH_TEST_MONGODB_URI is not set: `scripts/test.sh` starts MongoDB and sets it");
            let store = Store::connect(&uri, &format!("berth-telemetry-{}", ObjectId::new())).await.unwrap();
            let task = task(ObjectId::new());
            let stop = Arc::new(AtomicBool::new(false));
            let span = training_span(&task);
            let trained = crate::service::training::task::train_here(
                store.clone(),
                task,
                "test".into(),
                stop,
                u64::MAX,
            )
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
            let live = crate::service::cluster::LiveCluster {
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
            let planning = crate::service::deploy::Planning { limits, shield: true };
            let planned = crate::service::deploy::plan_deploy(
                &live,
                scenario,
                &model,
                Vec::new(),
                planning,
                true,
                "test",
            )
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
