//! A real browser for dashboard tests: headless Chromium driven over the
//! Chrome DevTools Protocol (a WebSocket, spoken with tokio-tungstenite).
//! `scripts/test.sh` installs Chromium when it is missing; without it these
//! tests fail and say so.
#![allow(dead_code)]
// The browser is a child process: std's blocking reads of its stderr run on
// a thread of their own.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The browser binary: `LEVEE_CHROMIUM`, else `chromium` on the PATH.
fn binary() -> String {
    std::env::var("LEVEE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// A headless Chromium with one page, stopped on drop.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    page: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Browser {
    /// Start Chromium (loopback only: DevTools on 127.0.0.1, a fresh
    /// profile) and connect to its page.
    pub async fn start(test: &str) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("levee-chromium-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = Command::new(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1300,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {} ({error}): the dashboard test needs Chromium; \
                     scripts/test.sh installs it (apt-get install chromium), or set LEVEE_CHROMIUM",
                    binary()
                )
            });
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Chromium printed its DevTools address");
        let host = browser_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let page_url = page_target(&host).await;
        let tcp = TcpStream::connect(host.as_str())
            .await
            .expect("connect to DevTools");
        let (page, _) = tokio_tungstenite::client_async(page_url.as_str(), tcp)
            .await
            .expect("connect to the page");
        let mut browser = Browser {
            child,
            profile,
            page,
            next_id: 0,
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// Send one DevTools command and wait for its answer (events in
    /// between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(message.to_string()))
            .await
            .expect("send to Chromium");
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(frame) = self.page.next().await {
                let Ok(Message::Text(text)) = frame else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
                if value["id"] == id {
                    return value;
                }
            }
            panic!("Chromium closed the DevTools connection");
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method}"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Open `url` in the page.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Wait until `expression` is true in the page (at most `limit`).
    /// `false` if it never was.
    pub async fn wait_for(&mut self, expression: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.eval(expression).await == Value::Bool(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// A PNG screenshot of the page, saved under `target/test-artifacts/`
    /// (kept for a failed test); returns where.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let result = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap_or_default())
            .expect("base64 PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The WebSocket address of the browser's page.
async fn page_target(host: &str) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for _ in 0..50 {
        let uri: http::Uri = format!("http://{host}/json/list").parse().expect("uri");
        if let Ok(response) = client.get(uri).await {
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            let targets: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(url) = targets.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|target| target["type"] == "page")
                    .and_then(|target| target["webSocketDebuggerUrl"].as_str())
            }) {
                return url.to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Chromium has no page target");
}
