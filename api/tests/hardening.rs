//! `berth serve` against hostile and unlucky traffic, end to end on the real database:
//! requests that would allocate without bound are refused with the field, the value and the
//! limit, and the server stays up and small; password guessing meets 429s; a retried POST
//! with its `Idempotency-Key` makes one task; and every task answered 201 survives MongoDB
//! being killed and restarted under load.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_agents::{AgentKind, Flow, Target, TrainRequest, train};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

mod common;
use common::*;

/// The server's peak resident memory, MiB.
fn peak_rss_mib(server: &Server) -> f64 {
    berth_env::bench::peak_memory_mib(Some(server.child.id())).unwrap()
}

fn refused_field(response: reqwest::blocking::Response) -> (String, String) {
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = response.json().unwrap();
    let field = error["error"]["field"].as_str().unwrap().to_string();
    (field, error["error"]["message"].as_str().unwrap().to_string())
}

#[test]
fn requests_that_would_allocate_without_bound_are_refused_and_the_server_stays_small() {
    let server = Server::start(&unique_database("limits"));
    let operator = token("operator");
    let small: Value = serde_norway::from_str(include_str!("../../scenarios/gpu-small.yaml")).unwrap();
    let with = |path: &[&str], value: Value| {
        let mut scenario = small.clone();
        let mut at = &mut scenario;
        for key in &path[..path.len() - 1] {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        at[path[path.len() - 1]] = value;
        json!({"agent": "ppo", "scenario": scenario})
    };
    let cases = [
        (with(&["nodes", "0", "count"], json!(4_294_967_295u64)), "scenario.nodes[0].count", "8192"),
        (
            with(&["services", "0", "replicas"], json!(4_294_967_295u64)),
            "scenario.services[0].replicas",
            "4096",
        ),
        (with(&["episode_ticks"], json!(4_000_000)), "scenario.episode_ticks", "100000"),
        (
            json!({"agent": "ppo", "scenario": "tiny", "hyperparameters": {"hidden": 1_000_000_000}}),
            "hyperparameters.hidden",
            "4096",
        ),
        (
            json!({"agent": "ppo", "scenario": "tiny", "hyperparameters": {"num_envs": 1000, "num_steps": 50_000}}),
            "hyperparameters.num_steps",
            "1000000",
        ),
        (
            json!({"agent": "dqn", "scenario": "tiny", "hyperparameters": {"buffer_size": 1u64 << 40}}),
            "hyperparameters.buffer_size",
            "10000000",
        ),
        // Valid, but about 5 GB of replay buffer on 1,000 nodes: over the 4 GiB budget.
        (json!({"agent": "dqn", "scenario": "gpu-large"}), "hyperparameters.buffer_size", "4096 MiB"),
    ];
    for (body, field, limit) in cases {
        let (got, message) = refused_field(server.post("/api/v1/training", &operator, &body));
        assert_eq!(got, field, "{message}");
        assert!(message.contains(limit), "{field}: {message}");
    }

    // A model file whose header names a network far wider than its weights.
    let request = TrainRequest {
        agent: AgentKind::Dqn,
        target: Target::Placement(berth_env::shipped::shipped("tiny").unwrap()),
        steps: Some(300),
        seed: 1,
        hyperparameters: json!({"learning_starts": 100, "batch_size": 16, "buffer_size": 200, "hidden": 8}),
        device: Default::default(),
    };
    let mut model = train(&request, &mut |_| Flow::Continue).unwrap().model;
    for (hidden, why) in [(4096, "the weights hold"), (1_000_000_000, "over the limit of 4096")] {
        model.header.config["hidden"] = json!(hidden);
        let response = server
            .http
            .post(server.url("/api/v1/models"))
            .bearer_auth(&operator)
            .body(model.to_bytes())
            .send()
            .unwrap();
        let (field, message) = refused_field(response);
        assert_eq!(field, "body");
        assert!(message.contains(why), "{message}");
    }

    assert_eq!(server.http.get(server.url("/health/live")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(server.json("/api/v1/training", &operator)["items"], json!([]), "nothing was stored");
    let peak = peak_rss_mib(&server);
    assert!(peak < 300.0, "the server peaked at {peak:.0} MiB");
}

#[test]
fn password_guessing_meets_429_per_address_and_per_user() {
    let server = Server::start_with(&unique_database("guessing"), &[("BERTH_LOGIN_RATE_PER_MIN", "5")]);
    let guess = |user: &str| {
        server
            .http
            .post(server.url("/api/v1/auth/token"))
            .form(&[("grant_type", "password"), ("username", user), ("password", "guess")])
            .send()
            .unwrap()
    };
    let started = Instant::now();
    let statuses: Vec<StatusCode> = (0..8).map(|_| guess("olga").status()).collect();
    assert_eq!(&statuses[..5], &[StatusCode::BAD_REQUEST; 5], "the burst is checked");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let limited = guess("olga");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&wait), "Retry-After {wait}");
    assert_eq!(limited.json::<Value>().unwrap()["error"], "slow_down");
    // Other user names from the same address: the address's bucket is empty too.
    assert_eq!(guess("someone-else").status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(started.elapsed() < Duration::from_secs(10), "the limit answers at once");
}

#[test]
fn a_retried_post_with_its_idempotency_key_makes_one_task() {
    let server = Server::start_with(&unique_database("idempotency"), &[("BERTH_WORKERS", "1")]);
    let operator = token("operator");
    let post = |key: &str, body: &Value| {
        server
            .http
            .post(server.url("/api/v1/training"))
            .bearer_auth(&operator)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .unwrap()
    };
    let body = json!({"agent": "qlearning", "scenario": "tiny", "steps": 10});
    let first = post("retry-me", &body);
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().unwrap();
    let again = post("retry-me", &body);
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().unwrap()["id"], first["id"]);
    let other = post("retry-me", &json!({"agent": "qlearning", "scenario": "tiny", "steps": 11}));
    let (field, message) = refused_field(other);
    assert_eq!(field, "Idempotency-Key");
    assert!(message.contains("different request"), "{message}");
    assert_eq!(post("bad key", &body).status(), StatusCode::BAD_REQUEST);
    assert_eq!(post("another", &body).status(), StatusCode::CREATED);
    let tasks = server.json("/api/v1/training", &operator);
    assert_eq!(tasks["items"].as_array().unwrap().len(), 2, "{tasks:#}");
}

/// A MongoDB-wire server of this test's own, from `scripts/mongodb.sh`.
struct OwnDatabase {
    dir: std::path::PathBuf,
}

impl OwnDatabase {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mongodb.sh")
    }

    fn start(&self) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .env("BERTH_MONGODB_DIR", &self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string()
    }

    fn kill_9(&self) {
        let pid = std::fs::read_to_string(self.dir.join("secantusd.pid")).unwrap();
        assert!(Command::new("kill").args(["-9", pid.trim()]).status().unwrap().success());
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        let _ =
            Command::new("bash").arg(Self::script()).arg("stop").env("BERTH_MONGODB_DIR", &self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn every_task_answered_201_survives_a_database_killed_and_restarted_under_load() {
    let database =
        OwnDatabase { dir: std::env::temp_dir().join(format!("berth-restart-{}", std::process::id())) };
    let uri = database.start();
    let server = Server::start_with(
        &unique_database("restart"),
        &[("BERTH_MONGODB_URI", uri.as_str()), ("BERTH_REQUEST_TIMEOUT_S", "5"), ("BERTH_WORKERS", "2")],
    );
    let operator = token("operator");
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, operator, acknowledged, stop) =
            (server.url("/api/v1/training"), operator.clone(), acknowledged.clone(), stop.clone());
        std::thread::spawn(move || {
            let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let mut answers = std::collections::BTreeMap::<String, u32>::new();
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"agent": "qlearning", "scenario": "tiny", "steps": 10});
                let answer = client.post(&url).bearer_auth(&operator).json(&body).send();
                let status = answer.as_ref().map_or("no answer".to_string(), |r| r.status().to_string());
                *answers.entry(status).or_default() += 1;
                if let Ok(response) = answer
                    && response.status() == StatusCode::CREATED
                {
                    let task: Value = response.json().unwrap();
                    acknowledged.lock().unwrap().push(task["id"].as_str().unwrap().to_string());
                }
            }
            answers
        })
    };
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().unwrap().len() < count {
            assert!(Instant::now() < deadline, "the load stalled at {}", acknowledged.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(20);
    database.kill_9();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(database.start(), uri, "restarted on the same port");
    let before = acknowledged.lock().unwrap().len();
    wait_for(before + 20);
    stop.store(true, Ordering::Relaxed);
    let answers = load.join().unwrap();
    let ids = acknowledged.lock().unwrap().clone();
    eprintln!("answers under load: {answers:?}");
    for id in &ids {
        let task = server.wait_task(id, &operator, Duration::from_secs(120), |t| t["status"] == "completed");
        assert!(task["model_id"].is_string(), "{task:#}");
    }
}
