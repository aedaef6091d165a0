//! [`HookReceiver`]: an in-process webhook and notification receiver on
//! `127.0.0.1:0` that records every request (path, headers, JSON body, when
//! it arrived) and answers each path by script: a status, a hang, or a
//! connection closed without an answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::wait_until;

/// How the receiver answers a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This status with a short body.
    Status(u16),
    /// Never answers (the caller's timeout must end the call).
    Hang,
    /// Closes the connection without an answer.
    Reset,
    /// These answers in turn, then the last one for ever.
    Sequence(Vec<Answer>),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path.
    pub path: String,
    /// Header names (lowercase) and values.
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub json: serde_json::Value,
    /// When it arrived.
    pub at: Instant,
}

/// The receiver; stops accepting when dropped.
#[derive(Debug)]
pub struct HookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    answers: HashMap<String, Answer>,
    /// Requests per path answered from a `Sequence` so far.
    served: HashMap<String, usize>,
    received: Vec<Received>,
}

// === impl HookReceiver ===

impl HookReceiver {
    /// Binds and serves on the current runtime; every path answers 200
    /// until told otherwise.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the hook receiver");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| answer(Arc::clone(&state), req));
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self { addr, state, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// From now on, `path` gets `answer`.
    pub fn answer(&self, path: &str, answer: Answer) {
        let mut state = self.lock();
        state.served.remove(path);
        state.answers.insert(path.to_owned(), answer);
    }

    /// The requests to `path` so far, in order.
    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.lock()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// How many requests reached `path`.
    pub fn count(&self, path: &str) -> usize {
        self.lock()
            .received
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Waits until `path` got at least `n` requests; returns them.
    ///
    /// # Panics
    /// After `limit`.
    pub async fn wait_for(&self, path: &str, n: usize, limit: Duration) -> Vec<Received> {
        wait_until(limit, &format!("{n} request(s) to /{path}"), || async {
            let got = self.requests(path);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The error that makes hyper close a connection without answering.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed without an answer")
    }
}

impl std::error::Error for Closed {}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Closed> {
    let at = Instant::now();
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let answer = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.received.push(Received {
            path: path.clone(),
            headers,
            json,
            at,
        });
        let answer = state
            .answers
            .get(&path)
            .cloned()
            .unwrap_or(Answer::Status(200));
        match answer {
            Answer::Sequence(all) => {
                let served = state.served.entry(path).or_insert(0);
                let pick = all
                    .get(*served)
                    .or(all.last())
                    .cloned()
                    .unwrap_or(Answer::Status(200));
                *served += 1;
                pick
            }
            other => other,
        }
    };
    match answer {
        Answer::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Ok(Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(format!("answer {code}\n"))))
                .unwrap_or_default())
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(Closed)
        }
        Answer::Reset | Answer::Sequence(_) => Err(Closed),
    }
}
