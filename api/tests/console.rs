//! The operators' console in a real headless Chromium (WebDriver) against a real `berth serve`
//! on the test MongoDB: each role logs in with its password and sees only the controls it may
//! use; an operator starts a task, is shown the API's field error at the field, and sees the
//! task complete with its curve; a service restarted under the page asks for the password again.
//! Screenshots of the pages, and of any wait that fails, go to `target/console-screenshots/`.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::{SECRET, Server, token, unique_database};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Opens a page of the console and waits until `ready` is drawn.
fn open(browser: &Browser, server: &Server, page: &str, ready: &str) {
    browser.goto(&server.url(&format!("/#/{page}")));
    browser.find(ready);
}

/// A model trained through the API (Q-learning on `tiny`), for the pages that list models.
fn trained_model(server: &Server) -> String {
    let operator = token("operator");
    let body = json!({"agent": "qlearning", "scenario": "tiny", "steps": 3000, "seed": 2});
    let response = server.post("/api/v1/training", &operator, &body);
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let task = server.wait_task(&id, &operator, Duration::from_secs(60), |t| t["status"] == "completed");
    task["model_id"].as_str().unwrap().to_string()
}

/// The role-gated controls on the page now, as `data-needs` values.
fn gated_controls(browser: &Browser) -> Vec<String> {
    browser.all("[data-needs]").iter().filter_map(|e| browser.attribute(e, "data-needs")).collect()
}

#[test]
fn the_console_is_served_same_origin_with_a_policy_that_keeps_it_there() {
    let server = Server::start(&unique_database("console_assets"));
    for (path, kind) in
        [("/", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")]
    {
        let response = server.http.get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        assert!(header("content-type").starts_with(kind), "{path}: {}", header("content-type"));
        assert!(header("content-security-policy").contains("script-src 'self'"), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let page = server.http.get(server.url("/")).send().unwrap().text().unwrap();
    assert!(!page.contains("http://") && !page.contains("https://"), "the page fetches nothing from outside");
    // The API is where it was, and an unknown path is still the API's JSON 404.
    assert_eq!(server.get("/api/v1/training", &token("viewer")).status(), StatusCode::OK);
    let missing = server.http.get(server.url("/console/nope.js")).send().unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_viewer_sees_every_page_and_no_control_a_viewer_may_not_use() {
    let server = Server::start(&unique_database("console_viewer"));
    let model = trained_model(&server);
    let browser = Browser::start("viewer", 1280, 800);
    browser.log_in(&server.base, "vera");
    assert!(browser.all("#new-task").is_empty(), "a viewer gets no form to start a task");
    browser.find("#tasks tr[data-task] a[href^='#/training/']");
    open(&browser, &server, "models", &format!("[data-model='{model}'] table"));
    open(&browser, &server, "cluster", "[data-node] .chip");
    open(&browser, &server, "deployments", "#deployments-list p");
    for page in ["training", "models", "cluster", "deployments"] {
        browser.goto(&server.url(&format!("/#/{page}")));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(gated_controls(&browser), Vec::<String>::new(), "#/{page}");
    }
    // The cluster page shows every replica of the simulated cluster on its node.
    open(&browser, &server, "cluster", "[data-node] .chip");
    let now = server.json("/api/v1/metrics", &token("viewer"));
    let chips = browser.all("[data-replica]").len();
    assert_eq!(chips, now["replicas"].as_array().unwrap().len());
    assert_eq!(browser.all("[data-node]").len(), now["nodes"].as_array().unwrap().len());
    browser.find("#latency-history path[data-series='mean_ms']");
    browser.screenshot("cluster");
    // A phone's width still shows the navigation and the page.
    browser.resize(390, 800);
    browser.find("#nav a[href='#/cluster'][aria-current='page']");
    browser.screenshot("cluster-phone");
}

#[test]
fn an_operator_starts_a_task_sees_field_errors_at_the_field_and_the_curve_when_done() {
    let server = Server::start(&unique_database("console_operator"));
    let browser = Browser::start("operator", 1280, 800);
    browser.log_in(&server.base, "olga");
    browser.click(&browser.find("#task-agent option[value='qlearning']"));
    // The form offers every shipped scenario, read from the API's own document.
    browser.find("#task-scenario option[value='gentd26']");
    browser.click(&browser.find("#task-scenario option[value='tiny']"));
    // The API's refusal is shown at the field it names.
    browser.fill(&browser.find("#task-steps"), "0");
    browser.click(&browser.find("#new-task button[type=submit]"));
    let error = browser.wait("the steps field's error", || {
        let text = browser.text(&browser.find("#task-steps-error"));
        (!text.is_empty()).then_some(text)
    });
    assert!(error.contains("steps") || error.contains('1'), "{error}");
    assert_eq!(browser.attribute(&browser.find("#task-steps"), "aria-invalid").as_deref(), Some("true"));
    assert!(browser.text(&browser.find("#task-form-error")).is_empty());

    browser.fill(&browser.find("#task-steps"), "4000");
    browser.fill(&browser.find("#task-seed"), "7");
    browser.click(&browser.find("#new-task button[type=submit]"));
    browser.wait("the task's page", || {
        let hash = browser.run("return location.hash;");
        hash.as_str().filter(|h| h.starts_with("#/training/")).map(str::to_string)
    });
    browser.wait("the task to complete", || {
        (browser.text(&browser.find("#task-status")) == "completed").then_some(())
    });
    // The full log's curve, with the baselines' levels from the model's evaluation.
    let curve = browser.find("#curve path[data-series='episodic_return']");
    let drawn = browser.attribute(&curve, "d").unwrap_or_default();
    assert!(drawn.matches('L').count() >= 2, "{drawn}");
    browser.find("#curve path[data-series='greedy']");
    browser.find("#losses path[data-series='td_loss']");
    browser.screenshot("task");
    // An operator sees no admin control on the models page.
    open(&browser, &server, "models", "[data-model] table");
    browser.screenshot("models");
    assert!(gated_controls(&browser).iter().all(|role| role != "admin"), "{:?}", gated_controls(&browser));
    let operator = token("operator");
    let tasks = server.json("/api/v1/training", &operator);
    assert_eq!(tasks["items"][0]["seed"], 7);
    assert_eq!(tasks["items"][0]["steps"], 4000);
}

#[test]
fn a_service_restarted_with_a_new_key_sends_the_page_back_to_the_login() {
    let database = unique_database("console_restart");
    let mut server = Server::start(&database);
    let browser = Browser::start("restart", 1280, 800);
    browser.log_in(&server.base, "olga");
    let listen = server.base.trim_start_matches("http://").to_string();
    server.kill();
    // The same address and database, a new signing key: the tab's token is no longer valid.
    let new_key = format!("{SECRET}-rotated");
    let _restarted =
        Server::start_with(&database, &[("BERTH_LISTEN", &listen), ("BERTH_JWT_SECRET", &new_key)]);
    let message = browser.wait("the login form again", || {
        let text = browser.all("#login-error").first().map(|e| browser.text(e)).unwrap_or_default();
        (!text.is_empty()).then_some(text)
    });
    assert!(message.contains("log in again"), "{message}");
    // By keyboard alone: the form takes focus, Enter in the password field logs in, and the
    // page the tab was on comes back.
    assert_eq!(browser.run("return document.activeElement.id;"), "username");
    browser.fill(&browser.find("#username"), "olga");
    browser.fill(&browser.find("#password"), "pw-operator\u{E007}");
    browser.find("#new-task");
    assert_eq!(browser.run("return location.hash;"), "#/training");
}
