//! The router fed random and hostile requests through `oneshot`, on the test database:
//! random JSON bodies for the training route, random bytes for the model upload, random
//! query strings for the listings, with and without a token. None may answer a 5xx, and
//! the process's peak memory stays small.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use mongodb::bson::oid::ObjectId;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::infra::auth::{Jwt, KeyMaterial, Role, Users};
use crate::infra::metrics::Metrics;
use crate::infra::rate_limit::{CostlyWork, RateLimiter};
use crate::service::cluster::{ClusterSource, SimCluster};
use crate::service::training::runner::{Executor, Runner, RunnerConfig};
use crate::store::Store;

const SECRET: &str = "a-test-secret-of-more-than-32-bytes";

/// A router over a fresh database of the test server, its runner not started (tasks stay
/// queued), and an operator's token.
async fn app(test: &str) -> (Router, Store, String) {
    let uri = std::env::var("BERTH_TEST_MONGODB_URI")
        .expect("BERTH_TEST_MONGODB_URI is not set: `scripts/test.sh` starts MongoDB and sets it");
    let store = Store::connect(&uri, &format!("berth-fuzz-{test}-{}", ObjectId::new())).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = RunnerConfig {
        workers: 1,
        lease: Duration::from_secs(30),
        poll: Duration::from_secs(1),
        task_memory_bytes: crate::service::training::runner::DEFAULT_TASK_MEMORY_MIB << 20,
    };
    let runner = Runner::new(store.clone(), Executor::Local, config, metrics.clone());
    let scenario = berth_env::shipped::shipped("tiny").unwrap();
    let jwt = Jwt::new(KeyMaterial::Secret(SECRET.into()), "berth", "berth").unwrap();
    let token = jwt.mint("fuzzer", Role::Operator, 600).unwrap();
    let state = AppState {
        store: store.clone(),
        jwt: Arc::new(jwt),
        users: Arc::new(Users::default()),
        runner,
        token_ttl_s: 600,
        metrics,
        cluster: Arc::new(ClusterSource::Sim(Box::new(
            SimCluster::new(scenario, Duration::from_secs(1)).unwrap(),
        ))),
        limiter: Arc::new(RateLimiter::new(0.0, 1.0)),
        costly: Arc::new(CostlyWork::new(600.0, 2, 2)),
        figures: Arc::default(),
        live: None,
    };
    (router(state, 1 << 20, Duration::from_secs(30)), store, token)
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn post(path: &str, token: Option<&str>, content_type: &str, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::post(path).header("content-type", content_type);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::from(body)).unwrap()
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A training body: the real fields with random values, and random extra ones.
fn training_body() -> impl Strategy<Value = Value> {
    let agent = prop_oneof![Just(json!("ppo")), Just(json!("dqn")), Just(json!("qlearning")), json_value()];
    let scenario = prop_oneof![Just(json!("tiny")), Just(json!("gpu-large")), json_value()];
    let hyperparameters = prop_oneof![
        Just(json!({"hidden": 1_000_000_000u64})),
        Just(json!({"num_envs": 1024, "num_steps": 100_000})),
        Just(json!({"buffer_size": u64::MAX})),
        json_value(),
    ];
    (agent, scenario, prop::option::of(json_value()), prop::option::of(hyperparameters), json_value())
        .prop_map(|(agent, scenario, steps, hyperparameters, extra)| {
            let mut body = json!({"agent": agent, "scenario": scenario});
            if let Some(steps) = steps {
                body["steps"] = steps;
            }
            if let Some(h) = hyperparameters {
                body["hyperparameters"] = h;
            }
            if let Value::Object(extra) = extra {
                body.as_object_mut().unwrap().extend(extra.into_iter().take(1));
            }
            body
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// This test process's peak memory, MiB.
fn peak_rss_mib() -> f64 {
    berth_env::bench::peak_memory_mib(None).unwrap_or(0.0)
}

#[test]
fn random_requests_never_answer_a_server_error() {
    let runtime = runtime();
    let (app, store, token) = runtime.block_on(app("random"));
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 300, ..Default::default() });
    let cases = (training_body(), prop::collection::vec(any::<u8>(), 0..2048), "[ -~]{0,40}", any::<bool>());
    runner
        .run(&cases, |(body, bytes, query, with_token)| {
            let token = with_token.then_some(token.as_str());
            runtime.block_on(async {
                let json_body = serde_json::to_vec(&body).unwrap();
                let (status, answer) =
                    send(&app, post("/api/v1/training", token, "application/json", json_body)).await;
                prop_assert!(!status.is_server_error(), "POST /training {body}: {status} {answer}");
                if status == StatusCode::UNPROCESSABLE_ENTITY {
                    prop_assert!(answer["error"]["field"].is_string(), "{answer}");
                }
                let (status, answer) =
                    send(&app, post("/api/v1/models", token, "application/octet-stream", bytes)).await;
                prop_assert!(!status.is_server_error(), "POST /models: {status} {answer}");
                // Any text, as a client would percent-encode it; `%`, `=`, `&` and `+` stay, so
                // the route still sees malformed escapes and odd pairs.
                let query: String = query
                    .bytes()
                    .map(|b| match b {
                        b'a'..=b'z'
                        | b'A'..=b'Z'
                        | b'0'..=b'9'
                        | b'%'
                        | b'='
                        | b'&'
                        | b'+'
                        | b'-'
                        | b'_'
                        | b'.' => char::from(b).to_string(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                for path in
                    ["/api/v1/training", "/api/v1/models", "/api/v1/deployments", "/api/v1/metrics/history"]
                {
                    let mut request = Request::get(format!("{path}?{query}"));
                    if let Some(token) = token {
                        request = request.header("authorization", format!("Bearer {token}"));
                    }
                    let request = request.body(Body::empty()).unwrap();
                    let (status, answer) = send(&app, request).await;
                    prop_assert!(!status.is_server_error(), "GET {path}?{query}: {status} {answer}");
                }
                Ok(())
            })
        })
        .unwrap();
    // No request made the process allocate at the size it asked for.
    assert!(peak_rss_mib() < 1024.0, "peak memory {:.0} MiB", peak_rss_mib());
    runtime.block_on(async { store.database().drop().await }).unwrap();
}

async fn boom() -> &'static str {
    panic!("secret internals")
}

#[test]
fn a_panicking_handler_answers_a_generic_500_with_the_request_id() {
    let runtime = runtime();
    let app = Router::new()
        .route("/boom", axum::routing::get(boom))
        .layer(axum::middleware::from_fn(crate::http::request_guard::guard));
    let request = Request::get("/boom").header("x-request-id", "req-42").body(Body::empty()).unwrap();
    let response = runtime.block_on(app.oneshot(request)).unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let bytes = runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 16)).unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert_eq!(body["error"]["request_id"], "req-42");
    assert!(!body.to_string().contains("secret internals"), "{body}");
}

#[test]
fn a_huge_template_is_refused_with_its_field_and_the_server_keeps_answering() {
    let runtime = runtime();
    let (app, store, token) = runtime.block_on(app("huge"));
    let mut scenario: Value =
        serde_norway::from_str(include_str!("../../../scenarios/gpu-small.yaml")).unwrap();
    scenario["nodes"][0]["count"] = json!(4_294_967_295u64);
    let body = serde_json::to_vec(&json!({"agent": "ppo", "scenario": scenario})).unwrap();
    let (status, answer) =
        runtime.block_on(send(&app, post("/api/v1/training", Some(&token), "application/json", body)));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "scenario.nodes[0].count");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("4294967295") && message.contains("8192"), "{message}");
    assert!(peak_rss_mib() < 512.0, "peak memory {:.0} MiB", peak_rss_mib());
    runtime.block_on(async { store.database().drop().await }).unwrap();
}
