//! A headless Chromium driven over W3C WebDriver (Debian's `chromium` and `chromedriver`,
//! installed by `scripts/chromium.sh`, at the paths `scripts/test.sh` exports): a small client of
//! the protocol's JSON over HTTP, enough for the console's tests, with no crate of its own.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: `scripts/test.sh` installs Chromium and sets it; by hand, run \
             scripts/chromium.sh and export BERTH_TEST_CHROMIUM and BERTH_TEST_CHROMEDRIVER as the \
             browser's and the driver's paths it prints"
        )
    })
}

/// A chromedriver process and one browser session of it; both end when dropped.
pub struct Browser {
    name: String,
    driver: Child,
    base: String,
    http: Client,
    /// Where a failing test's screenshots go.
    pub shots: std::path::PathBuf,
    /// Chromium's profile, removed when the browser closes.
    profile: std::path::PathBuf,
}

/// An element of the page.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium window of `width`×`height`.
    pub fn start(name: &str, width: u32, height: u32) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(setting("BERTH_TEST_CHROMEDRIVER"))
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let root = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while http.get(format!("{root}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not answer on {root}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = std::env::temp_dir().join(format!("berth-chromium-{name}-{}", std::process::id()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": setting("BERTH_TEST_CHROMIUM"),
                // As this machine's closed network wants: no background connections at all.
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")],
            },
        }}});
        let answer: Value =
            http.post(format!("{root}/session")).json(&capabilities).send().unwrap().json().unwrap();
        let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
        Self { name: name.to_string(), driver, base: format!("{root}/session/{id}"), http, shots, profile }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().map_err(|e| e.to_string())?.json().map_err(|e| e.to_string())?;
        match answer["value"].get("error") {
            Some(error) => Err(format!("{error}: {}", answer["value"]["message"])),
            None => Ok(answer["value"].clone()),
        }
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).unwrap();
    }

    /// Logs `user` (password `pw-operator`, as every test user has) in through the console at
    /// `base` and waits for its first page.
    pub fn log_in(&self, base: &str, user: &str) {
        self.goto(&format!("{base}/"));
        self.fill(&self.find("#username"), user);
        self.fill(&self.find("#password"), "pw-operator");
        self.click(&self.find("#login-form button[type=submit]"));
        self.find("#tasks-list");
        let who = self.text(&self.find("#who"));
        assert!(who.starts_with(user), "{who}");
    }

    /// Every element `css` matches now.
    pub fn all(&self, css: &str) -> Vec<Element> {
        let found = self.post("/elements", json!({"using": "css selector", "value": css})).unwrap();
        found.as_array().unwrap().iter().map(|e| Element(e[ELEMENT].as_str().unwrap().to_string())).collect()
    }

    /// The first element `css` matches, waiting up to 20 s for it.
    pub fn find(&self, css: &str) -> Element {
        self.wait(&format!("an element `{css}`"), || self.all(css).into_iter().next())
    }

    /// Waits up to 20 s for `check` to give something, polling; panics (with a screenshot) if not.
    pub fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        self.wait_for(what, Duration::from_secs(20), check)
    }

    /// [`Self::wait`] with a time limit of its own, for work that takes longer (a deploy).
    pub fn wait_for<T>(&self, what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(found) = check() {
                return found;
            }
            if start.elapsed() > limit {
                let what_safe = what.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
                let shot = self.screenshot(&format!("{}-{what_safe}", self.name));
                panic!("waited {limit:?} for {what}; screenshot at {}", shot.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({})).unwrap();
    }

    /// Replaces the text of an input with `text`.
    pub fn fill(&self, element: &Element, text: &str) {
        self.post(&format!("/element/{}/clear", element.0), json!({})).unwrap();
        self.post(&format!("/element/{}/value", element.0), json!({"text": text})).unwrap();
    }

    /// The element's rendered text ("" for an element gone since it was found).
    pub fn text(&self, element: &Element) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{}/text", element.0), None)
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// An attribute of the element, if it has it.
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self
            .call(reqwest::Method::GET, &format!("/element/{}/attribute/{name}", element.0), None)
            .ok()?;
        value.as_str().map(str::to_string)
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).unwrap()
    }

    /// Resizes the window, as a phone's screen or a laptop's.
    pub fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height})).unwrap();
    }

    /// Accepts a `confirm()` dialog, waiting for it to open.
    pub fn accept_dialog(&self) {
        self.wait("a dialog", || self.post("/alert/accept", json!({})).ok());
    }

    /// Saves a PNG of the page as `target/console-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let path = self.shots.join(format!("{name}.png"));
        if let Ok(Value::String(png)) = self.call(reqwest::Method::GET, "/screenshot", None) {
            let _ = std::fs::create_dir_all(&self.shots);
            let _ = std::fs::write(&path, decode_base64(&png));
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that fails between waits still leaves the page it failed on.
        if std::thread::panicking() {
            let shot = self.screenshot(&format!("failed-{}", self.name));
            eprintln!("the page when the test failed: {}", shot.display());
        }
        let _ = self.call(reqwest::Method::DELETE, "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (the screenshot's encoding) to bytes.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut bytes = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &s)| n | (u32::from(s) << (18 - 6 * i)));
        bytes.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    bytes
}
