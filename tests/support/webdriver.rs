//! A small W3C WebDriver client for browser tests: Debian's `chromedriver`
//! on a loopback port drives a headless Chromium with a fresh profile, and
//! the few commands a test needs (go, find, click, type, read, script,
//! screenshot) are plain JSON over HTTP. Both processes are stopped when
//! the [`Browser`] is dropped, even if the test fails.

use base64::Engine as _;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait lasts before the test fails (slow machines included).
pub const WAIT: Duration = Duration::from_secs(60);

/// One element of the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Element(String);

/// A headless Chromium driven over WebDriver.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session (no sandbox, no GPU, no
    /// network of its own besides loopback pages).
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver package; scripts/test installs it)");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-crash-reporter",
            "--disable-breakpad",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let mut browser = Browser { http, session: base, driver, profile };
        let created = browser.command(reqwest::Method::POST, "/session", Some(capabilities)).await;
        let id = created["sessionId"].as_str().expect("a session id").to_string();
        browser.session = format!("{}/session/{id}", browser.session);
        browser
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|(error, message)| panic!("WebDriver {path}: {error}: {message}"))
    }

    /// A command; a WebDriver error as (error, message).
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, String)> {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        match value.get("error").and_then(Value::as_str) {
            Some(error) => Err((error.to_string(), value["message"].to_string())),
            None => Ok(value),
        }
    }

    /// What a wait reads of an element: `None` once the page replaced it
    /// (a re-render between finding and reading it), to look again.
    async fn read(&self, element: &Element, what: &str) -> Option<Value> {
        let path = format!("/element/{}/{what}", element.0);
        match self.try_command(reqwest::Method::GET, &path, None).await {
            Ok(value) => Some(value),
            Err((error, _)) if error == "stale element reference" => None,
            Err((error, message)) => panic!("WebDriver {path}: {error}: {message}"),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The elements matching a CSS selector now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.post("/elements", json!({"using": "css selector", "value": css})).await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
            .collect()
    }

    /// The first element matching `css` that is shown, once there is one.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            for element in self.find_all(css).await {
                if self.read(&element, "displayed").await == Some(Value::Bool(true)) {
                    return element;
                }
            }
            assert!(Instant::now() < deadline, "nothing shown matches {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of a shown element matching `css` satisfies
    /// `ok`; returns that text.
    pub async fn wait_for_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            for element in self.find_all(css).await {
                if self.read(&element, "displayed").await != Some(Value::Bool(true)) {
                    continue;
                }
                if let Some(Value::String(text)) = self.read(&element, "text").await {
                    if ok(&text) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if Instant::now() >= deadline {
                let at = self.command(reqwest::Method::GET, "/url", None).await;
                match last {
                    Some(last) => panic!("{css} never had the text wanted on {at}; last {last:?}"),
                    None => panic!("nothing shown on {at} matches {css}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first shown element matching `css`, once there is one.
    pub async fn click(&self, css: &str) {
        self.act(css, "click", json!({})).await;
    }

    /// Clears the first shown element matching `css` and types `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.act(css, "clear", json!({})).await;
        self.act(css, "value", json!({ "text": text })).await;
    }

    /// Sends `action` to the element `css` finds, finding it again if the
    /// page replaced it in between.
    async fn act(&self, css: &str, action: &str, body: Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self.wait_for(css).await;
            let path = format!("/element/{}/{action}", element.0);
            match self.try_command(reqwest::Method::POST, &path, Some(body.clone())).await {
                Ok(_) => return,
                Err((error, _)) if error == "stale element reference" => {}
                Err((error, message)) => panic!("WebDriver {path}: {error}: {message}"),
            }
            assert!(Instant::now() < deadline, "{css} kept being replaced");
        }
    }

    /// Runs `script` in the page; its return value.
    pub async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Saves what the window shows as a PNG.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let shot = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (Chromium quits), then the driver.
    pub async fn close(self) {
        self.command(reqwest::Method::DELETE, "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A Chromium left by a failed test is found by its own profile.
        let profile = self.profile.path().display().to_string();
        let _ = Command::new("pkill").args(["-f", &profile]).status();
    }
}
