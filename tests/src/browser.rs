//! A headless Chromium driven over the W3C WebDriver HTTP protocol: Debian's
//! `chromedriver` started on a reserved loopback port, one session, a fresh
//! profile directory, and the few commands the dashboard's test needs
//! (navigate, run a script, click, type, screenshot, window size).
//!
//! Waiting is the caller's: read the page with [`Browser::script`] inside
//! [`crate::wait_until`]. Chromedriver, and the browser it started, are
//! killed with their process group when the [`Browser`] drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use crate::client::{Conn, empty};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C identifier of a web element in a WebDriver answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// A WebDriver command that failed: its error code and message.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    /// The W3C error code, e.g. `no such element`.
    pub error: String,
    /// What the driver said.
    pub message: String,
}

// === impl Browser ===

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh
    /// profile and a `width` × `height` window.
    ///
    /// # Panics
    /// When chromedriver is missing or no session starts within 60 s.
    pub async fn start(width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the browser test needs {CHROMIUM} and {CHROMEDRIVER} \
             (apt-get install chromium chromium-driver; scripts/test does it)"
        );
        // Reserved until chromedriver answers; it binds the port with
        // SO_REUSEADDR, which the reservation allows.
        let reserved = crate::ReservedPort::bind();
        let addr = reserved.addr;
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={}", addr.port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that the browser it starts dies with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        crate::wait_until(Duration::from_secs(30), "chromedriver ready", || async {
            let status = browser.call(Method::GET, "/status", None).await.ok()?;
            (status["ready"] == true).then_some(())
        })
        .await;
        drop(reserved);
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let session = crate::within(
            Duration::from_secs(60),
            "a browser session",
            browser.call(Method::POST, "/session", Some(capabilities)),
        )
        .await
        .unwrap_or_else(|e| panic!("no browser session: {e:?}"));
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {session}"))
            .to_owned();
        browser
    }

    /// Opens `url` and waits for its `load` event.
    ///
    /// # Panics
    /// When the browser refuses.
    pub async fn goto(&self, url: &str) {
        self.command(Method::POST, "url", json!({ "url": url }))
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e:?}"));
    }

    /// Runs `script` (a function body: `return ...;`) in the page with
    /// `args`, and returns what it returned.
    ///
    /// # Errors
    /// When the script throws or the browser refuses.
    pub async fn script(&self, script: &str, args: Value) -> Result<Value, WebDriverError> {
        self.command(
            Method::POST,
            "execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Clicks the first element matching the CSS `selector`.
    ///
    /// # Errors
    /// When there is none, or it cannot be clicked.
    pub async fn click(&self, selector: &str) -> Result<(), WebDriverError> {
        let element = self.find(selector).await?;
        self.command(Method::POST, &format!("element/{element}/click"), json!({}))
            .await
            .map(drop)
    }

    /// Types `text` into the first element matching `selector`.
    ///
    /// # Errors
    /// When there is none, or it takes no input.
    pub async fn type_into(&self, selector: &str, text: &str) -> Result<(), WebDriverError> {
        let element = self.find(selector).await?;
        self.command(
            Method::POST,
            &format!("element/{element}/value"),
            json!({ "text": text }),
        )
        .await
        .map(drop)
    }

    /// Sets the window's outer size.
    ///
    /// # Errors
    /// When the browser refuses.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<(), WebDriverError> {
        self.command(
            Method::POST,
            "window/rect",
            json!({ "width": width, "height": height }),
        )
        .await
        .map(drop)
    }

    /// Saves a PNG of the page's viewport at `path` (directories created).
    ///
    /// # Panics
    /// When the browser refuses or the file cannot be written.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        let shot = self
            .command(Method::GET, "screenshot", Value::Null)
            .await
            .unwrap_or_else(|e| panic!("no screenshot: {e:?}"));
        let png = decode_base64(shot.as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("the screenshot is not base64"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path.to_owned()
    }

    /// Ends the session (the browser exits).
    pub async fn quit(self) {
        let path = format!("/session/{}", self.session);
        let _ = self.call(Method::DELETE, &path, None).await;
    }

    /// The id of the first element matching the CSS `selector`.
    async fn find(&self, selector: &str) -> Result<String, WebDriverError> {
        let found = self
            .command(
                Method::POST,
                "element",
                json!({ "using": "css selector", "value": selector }),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| WebDriverError {
                error: "no element id".to_owned(),
                message: found.to_string(),
            })
    }

    /// A command of this session: `/session/{id}/{path}`.
    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Value, WebDriverError> {
        let path = format!("/session/{}/{path}", self.session);
        let body = (method == Method::POST).then_some(body);
        self.call(method, &path, body).await
    }

    /// One WebDriver request; the answer's `value`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let failed = |error: &str, message: String| WebDriverError {
            error: error.to_owned(),
            message,
        };
        let builder = Request::builder().method(method).uri(path);
        let request = match body {
            Some(json) => builder.header(CONTENT_TYPE, "application/json").body(
                Full::new(Bytes::from(json.to_string()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            None => builder.body(empty()),
        }
        .map_err(|e| failed("bad request", e.to_string()))?;
        let mut conn = Conn::open(self.addr)
            .await
            .map_err(|e| failed("unreachable", format!("{e:?}")))?;
        let answer = conn
            .send(request)
            .await
            .map_err(|e| failed("unreachable", format!("{e:?}")))?;
        let value = serde_json::from_slice::<Value>(&answer.body)
            .map(|mut v| v["value"].take())
            .map_err(|e| failed("not JSON", e.to_string()))?;
        if answer.status.is_success() {
            Ok(value)
        } else {
            Err(WebDriverError {
                error: value["error"].as_str().unwrap_or("unknown").to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes standard base64 (padding optional); `None` for another byte.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut held) = (0u32, 0u32);
    for byte in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push(((bits >> held) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGk"), Some(b"hi".to_vec()));
        assert_eq!(
            decode_base64("iVBORw0KGgo="),
            Some(b"\x89PNG\r\n\x1a\n".to_vec())
        );
        assert_eq!(decode_base64("a*b"), None);
    }
}
