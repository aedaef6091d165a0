//! A real Prometheus (Debian's `prometheus` package) for the tests of
//! analysis templates: it scrapes the given targets every second, with its
//! data in a temp dir, on a loopback port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::get;
use crate::{ReservedPort, wait_until};

/// Where the package installs the server.
pub const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    /// Where it answers.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on the `reserved` port (reserved beforehand, so
    /// that a config can name it before it runs) scraping `/metrics` of
    /// `targets` every second, and waits until it is ready; the reservation
    /// is released then.
    ///
    /// # Panics
    /// When the binary is missing (install the `prometheus` package) or it
    /// is not ready within 30 s; the panic message holds its log.
    pub async fn start(reserved: ReservedPort, targets: &[SocketAddr]) -> Prometheus {
        let addr = reserved.addr;
        let dir = tempfile::Builder::new()
            .prefix("weir-prometheus-")
            .tempdir()
            .expect("creating a temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: weir\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("creating the log");
        let child = Command::new(PROMETHEUS_BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {PROMETHEUS_BINARY} (install the `prometheus` package): {e}")
            });
        let prometheus = Prometheus {
            addr,
            child,
            log,
            _dir: dir,
        };
        let ready = tokio::time::timeout(
            Duration::from_secs(30),
            wait_until(Duration::from_secs(30), "Prometheus /-/ready", || async {
                get(addr, "/-/ready")
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|_| ())
            }),
        )
        .await;
        if ready.is_err() {
            panic!("Prometheus was not ready in 30 s:\n{}", prometheus.log());
        }
        // It listens now: nobody else can bind the port.
        drop(reserved);
        prometheus
    }

    /// `http://ADDR`, for an analysis template's `address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The result of the instant query `query` (`data.result`), or `None`
    /// when Prometheus answers an error.
    pub async fn query(&self, query: &str) -> Option<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", encode(query));
        let answer = get(self.addr, &path).await.ok()?;
        let json: serde_json::Value = answer.json();
        (json["status"] == "success").then(|| json["data"]["result"].clone())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
