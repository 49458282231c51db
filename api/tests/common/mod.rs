//! What the end-to-end tests of `berth serve` share: a server process on its own database,
//! tokens from `berth token`, and the test database's URI.
#![allow(dead_code)] // each test binary uses its own part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

pub const SECRET: &str = "a-test-secret-of-more-than-32-bytes";
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn mongodb_uri() -> String {
    std::env::var("BERTH_TEST_MONGODB_URI").expect(
        "BERTH_TEST_MONGODB_URI is not set: `scripts/test.sh` starts MongoDB and sets it; by hand, \
         export BERTH_TEST_MONGODB_URI=$(scripts/mongodb.sh start | tail -n1)",
    )
}

/// A running `berth serve` on its own database; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub http: Client,
    /// Its users file, removed when it is dropped.
    users: std::path::PathBuf,
}

pub fn unique_database(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("berth_test_{test}_{}_{nanos}", std::process::id())
}

/// A new users file: a user of each role, every one with the password "pw-operator" (olga is
/// the operator). One per server, so servers started side by side never read a file another
/// is rewriting.
pub fn users_file() -> std::path::PathBuf {
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("berth-users-{}-{n}.toml", std::process::id()));
    let hash = Command::new(BERTH)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"pw-operator\n")?;
            child.wait_with_output()
        });
    let hash = String::from_utf8(hash.unwrap().stdout).unwrap();
    let users: String = [("vera", "viewer"), ("olga", "operator"), ("ada", "admin")]
        .iter()
        .map(|(name, role)| {
            format!("[[users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{}\"\n", hash.trim())
        })
        .collect();
    std::fs::write(&path, users).unwrap();
    path
}

impl Server {
    pub fn start(database: &str) -> Self {
        Self::start_with(database, &[])
    }

    pub fn start_with(database: &str, env: &[(&str, &str)]) -> Self {
        let users = users_file();
        let mut child = Command::new(BERTH)
            .arg("serve")
            .env("BERTH_LISTEN", "127.0.0.1:0")
            .env("BERTH_MONGODB_URI", mongodb_uri())
            .env("BERTH_DATABASE", database)
            .env("BERTH_JWT_SECRET", SECRET)
            .env("BERTH_TASK_LEASE_S", "1")
            .env("BERTH_CLUSTER_TICK_S", "0.01")
            .env("BERTH_METRICS_INTERVAL_S", "0.2")
            .env("BERTH_USERS", &users)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("berth serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "first line: {line:?}");
        Self { child, base, http: Client::new(), users }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, token: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(token).send().unwrap()
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.http.post(self.url(path)).bearer_auth(token).json(body).send().unwrap()
    }

    pub fn json(&self, path: &str, token: &str) -> Value {
        let response = self.get(path, token);
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().unwrap()
    }

    /// Polls a task until `done` holds for it, or panics after `timeout`.
    pub fn wait_task(
        &self,
        id: &str,
        token: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let task = self.json(&format!("/api/v1/training/{id}"), token);
            if done(&task) {
                return task;
            }
            assert!(start.elapsed() < timeout, "task did not get there in {timeout:?}: {task:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.users);
    }
}

/// A token from `berth token`.
pub fn token(role: &str) -> String {
    token_with(&["--role", role], SECRET)
}

pub fn token_with(args: &[&str], secret: &str) -> String {
    let out = Command::new(BERTH)
        .args(["token", "--sub", "tester"])
        .args(args)
        .env("BERTH_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub mod browser;
pub mod cluster;
