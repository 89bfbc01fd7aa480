//! A real headless Chromium for the report's tests, driven over W3C
//! WebDriver by Debian's `chromedriver` on a free loopback port, with a
//! small blocking HTTP client (ureq). One [`Browser`] is one chromedriver
//! and one session; dropping it ends the session and kills the driver (and
//! so its Chromium), whatever the test did.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Longest wait for chromedriver to answer, and for one WebDriver command.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    driver: Child,
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    /// Chromium's user data directory, removed at drop.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session of `width` × `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(Path::new(program).exists(), "{program} is missing: scripts/setup.sh installs it");
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Chromium goes with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DRIVER_TIMEOUT))
            .proxy(None)
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser { driver, agent, session: String::new(), profile };
        browser.wait_until_ready(&base);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--allow-file-access-from-files",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let created = browser.call("POST", &format!("{base}/session"), Some(capabilities));
        let id = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    fn wait_until_ready(&self, base: &str) {
        let deadline = Instant::now() + DRIVER_TIMEOUT;
        loop {
            let ready = self
                .agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok());
            if ready.is_some_and(|status| status["value"]["ready"] == true) {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start on {base}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; its `value`, or a panic with the driver's error.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let response = match (method, body) {
            ("POST", body) => self.agent.post(url).send_json(body.unwrap_or_else(|| json!({}))),
            ("DELETE", _) => self.agent.delete(url).call(),
            _ => self.agent.get(url).call(),
        };
        let mut response = response.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
        let status = response.status();
        let value: Value = response.body_mut().read_json().unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
        assert!(status.is_success(), "WebDriver {method} {url}: {status}: {value}");
        value["value"].clone()
    }

    pub fn open(&self, page: &Path) {
        let url = format!("file://{}", page.display());
        self.call("POST", &format!("{}/url", self.session), Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call("POST", &format!("{}/execute/sync", self.session), Some(json!({ "script": script, "args": [] })))
    }

    /// Evaluates `script` until it returns something other than `null` or
    /// `false`, or panics after `timeout` with `what` and its last value.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script);
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            assert!(Instant::now() < deadline, "waited {timeout:?} for {what}; last: {value}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the whole page (Chrome's full-page capture through CDP,
    /// falling back to the viewport).
    pub fn screenshot(&self) -> Vec<u8> {
        let height = self.eval("return Math.ceil(document.documentElement.scrollHeight);").as_u64().unwrap_or(1000);
        let width = self.eval("return Math.ceil(document.documentElement.scrollWidth);").as_u64().unwrap_or(1200);
        let capture = json!({"cmd": "Page.captureScreenshot", "params": {
            "format": "png", "captureBeyondViewport": true,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        }});
        let value = self.call("POST", &format!("{}/goog/cdp/execute", self.session), Some(capture));
        let data = value["data"].as_str().map(str::to_string).unwrap_or_else(|| {
            self.call("GET", &format!("{}/screenshot", self.session), None).as_str().unwrap().to_string()
        });
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).expect("screenshots are base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(&self.session).call();
        }
        // The driver's group: chromedriver, Chromium and Chromium's helpers.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
