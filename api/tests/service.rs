//! `berth serve` end to end, against the real MongoDB-wire server `scripts/mongodb.sh`
//! starts (`scripts/test.sh` starts it and exports `BERTH_TEST_MONGODB_URI`).

use std::process::Command;
use std::time::{Duration, Instant};

use berth_agents::{SavedModel, load_agent};
use berth_env::{Env, PlacementEnv};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

mod common;
use common::*;

fn create(server: &Server, token: &str, body: Value) -> Value {
    let response = server.post("/api/v1/training", token, &body);
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().unwrap()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn a_task_trains_and_its_model_is_listed_downloaded_and_acts() {
    let server = Server::start(&unique_database("flow"));
    // The operator logs in with a password (OAuth2 password grant).
    let response = server
        .http
        .post(server.url("/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", "olga"), ("password", "pw-operator")])
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let operator = response.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_string();
    let wrong = server
        .http
        .post(server.url("/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", "olga"), ("password", "nope")])
        .send()
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json::<Value>().unwrap()["error"], "invalid_grant");

    let task = create(
        &server,
        &operator,
        json!({"agent": "qlearning", "scenario": "tiny", "steps": 30000, "seed": 3}),
    );
    assert_eq!(task["status"], "pending");
    let id = id_of(&task);
    let task = server.wait_task(&id, &operator, Duration::from_secs(60), |t| {
        t["status"] != "pending" && t["status"] != "running"
    });
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["progress"]["step"], 30000);
    assert_eq!(task["progress"]["fraction"], 1.0);
    // The curve it kept while training: evenly thinned, at most 400 points, steps rising.
    let steps: Vec<u64> =
        task["curve"].as_array().unwrap().iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert!((2..=400).contains(&steps.len()), "{} points", steps.len());
    assert!(steps.windows(2).all(|w| w[0] < w[1]) && *steps.last().unwrap() <= 30000, "{steps:?}");
    let last = task["curve"].as_array().unwrap().last().unwrap();
    assert!(last["td_loss"].as_f64().is_some_and(f64::is_finite), "Q-learning's TD loss: {last}");
    assert!(last.get("policy_loss").is_none(), "no PPO loss for Q-learning: {last}");
    let model_id = task["model_id"].as_str().unwrap().to_string();

    let models = server.json("/api/v1/models", &operator);
    assert!(models["items"].as_array().unwrap().iter().any(|m| m["id"] == model_id.as_str()));
    let model = server.json(&format!("/api/v1/models/{model_id}"), &operator);
    let policies: Vec<&str> =
        model["evaluation"].as_array().unwrap().iter().map(|r| r["policy"].as_str().unwrap()).collect();
    let baselines = berth_env::baselines::NAMES;
    assert_eq!(policies[..baselines.len()], baselines, "every baseline, in order");
    assert_eq!(policies[baselines.len()..], ["oracle", "qlearning"]);
    assert_eq!(model["scenario"]["name"], "tiny");

    let bytes = server.get(&format!("/api/v1/models/{model_id}/weights"), &operator).bytes().unwrap();
    let saved = SavedModel::from_bytes(&bytes).unwrap();
    let mut env = PlacementEnv::new(berth_env::shipped::shipped("tiny").unwrap()).unwrap();
    let mut agent = load_agent(&saved, &env).unwrap();
    env.reset(1);
    for _ in 0..20 {
        let action = agent.act(env.observation(), env.action_mask(), berth_agents::ActMode::Greedy);
        assert!(env.action_mask()[action]);
        env.step(action).unwrap();
    }

    // The file uploads back as a model of its own (no task), evaluated the same way.
    let upload = |body: Vec<u8>| {
        server.http.post(server.url("/api/v1/models")).bearer_auth(&operator).body(body).send().unwrap()
    };
    let response = upload(bytes.to_vec());
    assert_eq!(response.status(), StatusCode::CREATED);
    let uploaded: Value = response.json().unwrap();
    assert_ne!(uploaded["id"], model_id.as_str());
    assert_eq!(uploaded["task_id"], Value::Null);
    assert_eq!(
        (uploaded["agent"].clone(), uploaded["scenario"].clone()),
        (model["agent"].clone(), model["scenario"].clone())
    );
    assert_eq!(uploaded["evaluation"], model["evaluation"], "the same policy evaluates the same");
    for (body, why) in [(Vec::new(), "empty"), (b"not a model".to_vec(), "not a berth model file")] {
        let response = upload(body);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let error: Value = response.json().unwrap();
        assert_eq!(error["error"]["field"], "body");
        assert!(error["error"]["message"].as_str().unwrap().contains(why), "{error}");
    }
    let viewer = token("viewer");
    let refused = server
        .http
        .post(server.url("/api/v1/models"))
        .bearer_auth(&viewer)
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let log = server.get(&format!("/api/v1/training/{id}/log"), &operator).text().unwrap();
    assert!(log.starts_with("global_step,"), "{log}");
    assert!(log.lines().count() > 10);
}

#[test]
fn a_running_task_stops_within_a_second_of_cancel() {
    let server = Server::start(&unique_database("cancel"));
    let operator = token("operator");
    let task =
        create(&server, &operator, json!({"agent": "dqn", "scenario": "gpu-small", "steps": 50_000_000}));
    let id = id_of(&task);
    // While it trains, its curve grows: the console draws it before the log exists.
    server.wait_task(&id, &operator, Duration::from_secs(60), |t| {
        t["curve"].as_array().is_some_and(|c| !c.is_empty()) && t["status"] == "running"
    });
    let asked = Instant::now();
    let response = server.post(&format!("/api/v1/training/{id}/cancel"), &operator, &json!({}));
    assert_eq!(response.status(), StatusCode::OK);
    let task = server.wait_task(&id, &operator, Duration::from_secs(5), |t| t["status"] == "cancelled");
    assert!(asked.elapsed() < Duration::from_secs(2), "cancel took {:?}", asked.elapsed());
    assert!(task["model_id"].is_null());
    let again = server.post(&format!("/api/v1/training/{id}/cancel"), &operator, &json!({}));
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[test]
fn tasks_of_a_killed_service_are_requeued_at_the_next_start() {
    let database = unique_database("restart");
    let operator = token("operator");
    let mut first = Server::start(&database);
    let task =
        create(&first, &operator, json!({"agent": "ppo", "scenario": "gpu-small", "steps": 50_000_000}));
    let id = id_of(&task);
    first.wait_task(&id, &operator, Duration::from_secs(30), |t| t["status"] == "running");
    first.kill();
    let second = Server::start(&database);
    let task = second.wait_task(&id, &operator, Duration::from_secs(30), |t| {
        t["status"] == "running" && t["attempts"] == 2
    });
    assert!(task["note"].as_str().unwrap().contains("re-queued"), "{task:#}");
    let response = second.post(&format!("/api/v1/training/{id}/cancel"), &operator, &json!({}));
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn a_stopped_service_hands_its_running_tasks_back_to_the_queue() {
    let database = unique_database("sigterm");
    let operator = token("operator");
    let mut first = Server::start(&database);
    let id = id_of(&create(
        &first,
        &operator,
        json!({"agent": "ppo", "scenario": "gpu-small", "steps": 50_000_000}),
    ));
    first.wait_task(&id, &operator, Duration::from_secs(30), |t| t["status"] == "running");
    let status = Command::new("kill").args(["-TERM", &first.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let stopped = Instant::now();
    let exit = first.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(stopped.elapsed() < Duration::from_secs(5), "stopping took {:?}", stopped.elapsed());
    let second = Server::start(&database);
    let task = second.json(&format!("/api/v1/training/{id}"), &operator);
    assert!(task["status"] == "pending" || task["status"] == "running", "{task:#}");
    assert!(task["note"].as_str().unwrap().contains("service stopped"), "{task:#}");
    assert_eq!(
        second.post(&format!("/api/v1/training/{id}/cancel"), &operator, &json!({})).status(),
        StatusCode::OK
    );
}

#[test]
fn each_role_is_allowed_and_refused_where_it_should_be() {
    let server = Server::start(&unique_database("roles"));
    let (viewer, operator, admin) = (token("viewer"), token("operator"), token("admin"));
    let body = json!({"agent": "qlearning", "scenario": "tiny", "steps": 10});
    assert_eq!(server.get("/api/v1/training", &viewer).status(), StatusCode::OK);
    assert_eq!(server.post("/api/v1/training", &viewer, &body).status(), StatusCode::FORBIDDEN);
    let id = id_of(&create(&server, &operator, body.clone()));
    assert_eq!(
        server.post(&format!("/api/v1/training/{id}/cancel"), &viewer, &json!({})).status(),
        StatusCode::FORBIDDEN
    );
    let task = server.wait_task(&id, &viewer, Duration::from_secs(30), |t| t["status"] == "completed");
    let model = task["model_id"].as_str().unwrap();
    let delete = |token: &str| {
        server.http.delete(server.url(&format!("/api/v1/models/{model}"))).bearer_auth(token).send().unwrap()
    };
    assert_eq!(delete(&viewer).status(), StatusCode::FORBIDDEN);
    assert_eq!(delete(&operator).status(), StatusCode::FORBIDDEN);
    assert_eq!(delete(&admin).status(), StatusCode::NO_CONTENT);
    assert_eq!(server.get(&format!("/api/v1/models/{model}"), &admin).status(), StatusCode::NOT_FOUND);
    assert_eq!(delete(&admin).status(), StatusCode::NOT_FOUND);
}

#[test]
fn bad_tokens_are_refused() {
    let server = Server::start(&unique_database("tokens"));
    let no_token = server.http.get(server.url("/api/v1/training")).send().unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    let valid = token("admin");
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    let other_key = token_with(&["--role", "admin"], "another-secret-that-is-long-enough!!");
    let mut wrong_audience = Command::new(BERTH);
    wrong_audience
        .args(["token", "--sub", "t", "--role", "admin", "--jwt-audience", "elsewhere"])
        .env("BERTH_JWT_SECRET", SECRET);
    let wrong_audience =
        String::from_utf8(wrong_audience.output().unwrap().stdout).unwrap().trim().to_string();
    let claims = valid.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
    for (what, bad) in [
        ("tampered", &tampered),
        ("other key", &other_key),
        ("audience", &wrong_audience),
        ("alg none", &unsigned),
    ] {
        let response = server.get("/api/v1/training", bad);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    assert_eq!(server.get("/api/v1/training", &valid).status(), StatusCode::OK);
}

#[test]
fn an_expired_token_is_refused() {
    let server = Server::start(&unique_database("expired"));
    let expired = token_with(&["--role", "admin", "--ttl-s", "1"], SECRET);
    // The service allows 5 s of clock skew.
    std::thread::sleep(Duration::from_secs(7));
    let response = server.get("/api/v1/training", &expired);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().unwrap().contains("xpired"));
}

#[test]
fn bad_input_is_refused_naming_the_problem_and_nothing_is_written() {
    let server = Server::start(&unique_database("input"));
    let operator = token("operator");
    let raw = |body: &str| {
        server
            .http
            .post(server.url("/api/v1/training"))
            .bearer_auth(&operator)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let malformed = raw("{\"agent\": ");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json::<Value>().unwrap()["error"]["code"], "malformed_json");
    let cases = [
        (json!({"agent": "ppo", "scenario": "tiny", "colour": "red"}), "colour"),
        (json!({"agent": "ppo", "scenario": "tiny", "steps": "many"}), "steps"),
        (json!({"agent": "sarsa", "scenario": "tiny"}), "agent"),
        (json!({"agent": "ppo", "scenario": "atlantis"}), "scenario"),
        (json!({"agent": "ppo", "scenario": {"name": "x"}}), "scenario"),
        (json!({"agent": "ppo", "scenario": "tiny", "steps": 0}), "steps"),
        (
            json!({"agent": "ppo", "scenario": "tiny", "hyperparameters": {"learning_rate": -1.0}}),
            "hyperparameters.learning_rate",
        ),
        (
            json!({"agent": "dqn", "scenario": "tiny", "hyperparameters": {"gamma": 2.0}}),
            "hyperparameters.gamma",
        ),
        (json!({"agent": "dqn", "scenario": "tiny", "hyperparameters": {"warp": 9}}), "hyperparameters"),
        (json!({"agent": "dqn", "scenario": "tiny", "device": "tpu"}), "device"),
        // This build trains in-process without LibTorch: CUDA tasks are refused up front.
        (json!({"agent": "dqn", "scenario": "tiny", "device": "cuda"}), "device"),
    ];
    for (body, field) in cases {
        let response = server.post("/api/v1/training", &operator, &body);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = response.json().unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    let huge = format!(
        "{{\"agent\": \"ppo\", \"scenario\": \"tiny\", \"hyperparameters\": {{\"x\": \"{}\"}}}}",
        "y".repeat(2 << 20)
    );
    // On a connection of its own: the server closes it rather than read the rest.
    let response = Client::new()
        .post(server.url("/api/v1/training"))
        .bearer_auth(&operator)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().unwrap()["error"]["code"], "body_too_large");
    let missing = "000000000000000000000000";
    assert_eq!(server.get(&format!("/api/v1/training/{missing}"), &operator).status(), StatusCode::NOT_FOUND);
    assert_eq!(server.get("/api/v1/training/not-an-id", &operator).status(), StatusCode::NOT_FOUND);
    assert_eq!(
        server.get(&format!("/api/v1/models/{missing}/weights"), &operator).status(),
        StatusCode::NOT_FOUND
    );
    let bad_query = server.get("/api/v1/training?status=sleeping", &operator);
    assert_eq!(bad_query.status(), StatusCode::BAD_REQUEST);
    assert!(bad_query.text().unwrap().contains("status"));
    let tasks = server.json("/api/v1/training", &operator);
    assert_eq!(tasks["items"], json!([]), "nothing was written");
    assert_eq!(tasks["next"], Value::Null);
}

#[test]
fn listings_page_with_a_cursor() {
    let server = Server::start(&unique_database("paging"));
    let operator = token("operator");
    let ids: Vec<String> = (0..5)
        .map(|_| {
            id_of(&create(&server, &operator, json!({"agent": "qlearning", "scenario": "tiny", "steps": 10})))
        })
        .collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/training?limit=2&cursor={c}"),
            None => "/api/v1/training?limit=2".into(),
        };
        let page = server.json(&path, &operator);
        seen.extend(page["items"].as_array().unwrap().iter().map(id_of));
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.into()),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.into_iter().rev().collect();
    assert_eq!(seen, newest_first);
    let ready = server.http.get(server.url("/health/ready")).send().unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(server.http.get(server.url("/health/live")).send().unwrap().status(), StatusCode::OK);
    let metrics = server.http.get(server.url("/metrics")).send().unwrap().text().unwrap();
    let created = r#"berth_http_requests_total{method="POST",route="/api/v1/training",status="201"} 5"#;
    assert!(metrics.contains(created), "{metrics}");
    assert!(metrics.contains(r#"route="/api/v1/training","#), "{metrics}");
    assert!(metrics.contains("berth_training_tasks{status=\"completed\"}"), "{metrics}");
}

#[test]
fn cluster_metrics_now_and_their_recorded_history() {
    let server = Server::start(&unique_database("metrics"));
    let viewer = token("viewer");
    let now = server.json("/api/v1/metrics", &viewer);
    assert_eq!(now["source"], "simulator");
    assert_eq!(now["scenario"], "gpu-small");
    assert_eq!(now["nodes"].as_array().unwrap().len(), 8);
    assert_eq!(now["replicas"].as_array().unwrap().len(), 6);
    assert!(now["latency"]["mean_ms"].as_f64().unwrap() > 0.0);
    std::thread::sleep(Duration::from_millis(700));
    let history = server.json("/api/v1/metrics/history", &viewer);
    let items = history["items"].as_array().unwrap();
    assert!(items.len() >= 2, "{history:#}");
    let times: Vec<&str> = items.iter().map(|s| s["timestamp"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let past =
        server.json("/api/v1/metrics/history?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z", &viewer);
    assert_eq!(past["items"], json!([]));
    let bad = server.get("/api/v1/metrics/history?from=yesterday", &viewer);
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().unwrap().contains("from"));
    assert_eq!(
        server.http.get(server.url("/api/v1/metrics")).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn every_operation_of_the_openapi_document_is_routed() {
    let server = Server::start(&unique_database("openapi"));
    let admin = token("admin");
    let document = server.json("/api/v1/openapi.json", &admin);
    assert_eq!(document["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let url = server.url(&path.replace("{id}", "000000000000000000000000"));
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = server.http.request(method.clone(), &url).bearer_auth(&admin).send().unwrap();
            let status = response.status();
            let body = response.text().unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!body.contains("no such route"), "{method} {path}: {body}");
            operations += 1;
        }
    }
    assert_eq!(operations, 22);
}

#[test]
fn a_client_over_its_rate_limit_is_told_when_to_come_back() {
    let limits = [("BERTH_RATE_LIMIT_RPS", "0.5"), ("BERTH_RATE_LIMIT_BURST", "3")];
    let server = Server::start_with(&unique_database("ratelimit"), &limits);
    let (busy, other) = (token("viewer"), token_with(&["--role", "viewer", "--ttl-s", "60"], SECRET));
    for _ in 0..3 {
        assert_eq!(server.get("/api/v1/training", &busy).status(), StatusCode::OK);
    }
    let limited = server.get("/api/v1/training", &busy);
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "2");
    assert_eq!(limited.json::<Value>().unwrap()["error"]["code"], "rate_limited");
    // The bucket is the subject's: `berth token --sub tester` again shares it.
    assert_eq!(server.get("/api/v1/training", &other).status(), StatusCode::TOO_MANY_REQUESTS);
    let mut elsewhere = Command::new(BERTH);
    elsewhere.args(["token", "--sub", "someone-else", "--role", "viewer"]).env("BERTH_JWT_SECRET", SECRET);
    let elsewhere = String::from_utf8(elsewhere.output().unwrap().stdout).unwrap().trim().to_string();
    assert_eq!(server.get("/api/v1/training", &elsewhere).status(), StatusCode::OK);
}

/// Runs `berth backup` or `berth restore` on `database`; its stderr if it failed.
fn database_command(args: &[&str], database: &str) -> Result<(), String> {
    let out = Command::new(BERTH)
        .args(args)
        .env("BERTH_MONGODB_URI", mongodb_uri())
        .env("BERTH_DATABASE", database)
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).to_string()) }
}

#[test]
fn backup_wipe_restore_gives_identical_documents_and_files() {
    let database = unique_database("backup");
    let dir = std::env::temp_dir().join(&database);
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (dir.join("first.berth-backup"), dir.join("second.berth-backup"));
    let operator = token("admin");
    let mut server = Server::start(&database);
    let id =
        id_of(&create(&server, &operator, json!({"agent": "qlearning", "scenario": "tiny", "steps": 20000})));
    let task = server.wait_task(&id, &operator, Duration::from_secs(60), |t| t["status"] == "completed");
    let model = task["model_id"].as_str().unwrap().to_string();
    let weights = server.get(&format!("/api/v1/models/{model}/weights"), &operator).bytes().unwrap();
    // Taken while the service runs (it records cluster metrics meanwhile).
    database_command(&["backup", "--out", first.to_str().unwrap()], &database).unwrap();
    server.kill();

    let refused = database_command(&["restore", first.to_str().unwrap()], &database).unwrap_err();
    assert!(refused.contains("not empty") && refused.contains("--replace"), "{refused}");
    database_command(&["restore", "--replace", first.to_str().unwrap()], &database).unwrap();
    database_command(&["backup", "--out", second.to_str().unwrap()], &database).unwrap();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "backup of the restore differs"
    );

    let server = Server::start(&database);
    assert_eq!(server.json(&format!("/api/v1/training/{id}"), &operator)["model_id"], model.as_str());
    let restored = server.get(&format!("/api/v1/models/{model}/weights"), &operator).bytes().unwrap();
    assert_eq!(restored, weights);
    let log = server.get(&format!("/api/v1/training/{id}/log"), &operator).text().unwrap();
    assert!(log.starts_with("global_step,"));

    std::fs::write(dir.join("cut"), &std::fs::read(&first).unwrap()[..200]).unwrap();
    let cut = database_command(&["restore", "--replace", dir.join("cut").to_str().unwrap()], &database)
        .unwrap_err();
    assert!(cut.contains("damaged") || cut.contains("cut short"), "{cut}");
    assert_eq!(
        server.json(&format!("/api/v1/training/{id}"), &operator)["status"],
        "completed",
        "a refused restore wrote nothing"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_names_each_missing_or_invalid_setting() {
    let run = |env: &[(&str, &str)]| {
        let mut command = Command::new(BERTH);
        command.arg("serve").env_remove("BERTH_MONGODB_URI").env_remove("BERTH_JWT_SECRET");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&[("BERTH_JWT_SECRET", SECRET)]).contains("BERTH_MONGODB_URI"));
    assert!(run(&[("BERTH_MONGODB_URI", "postgres://x")]).contains("mongodb://"));
    assert!(run(&[("BERTH_MONGODB_URI", "mongodb://127.0.0.1:1")]).contains("BERTH_JWT_SECRET"));
    let short = run(&[("BERTH_MONGODB_URI", "mongodb://127.0.0.1:1"), ("BERTH_JWT_SECRET", "short")]);
    assert!(short.contains("jwt_secret") && short.contains("32 bytes"), "{short}");
    assert!(run(&[("BERTH_LISTEN", "nowhere")]).contains("listen"));
}
