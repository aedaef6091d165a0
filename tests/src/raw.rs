//! Raw HTTP/1.1 on both sides of weir, for messages no well-behaved library
//! would write: [`RawUpstream`] answers each request with bytes the test
//! chooses and records what arrived on which connection; [`raw_request`]
//! writes bytes to weir and reads the whole answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Reads from `stream` until what was read holds a whole head (its blank
/// line); everything read so far, which may go past the head.
///
/// # Panics
/// When the stream fails or ends before the head does.
pub async fn read_through_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.expect("reading a head");
        assert_ne!(n, 0, "the stream ended before its head: {seen:?}");
        seen.extend_from_slice(&chunk[..n]);
    }
    seen
}

/// One request as a [`RawUpstream`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// 0-based index of the upstream connection it came on.
    pub connection: usize,
    /// The request head, up to and including the blank line.
    pub head: String,
    /// The body as framed on the wire (chunk sizes included when chunked).
    pub body: Vec<u8>,
}

/// Chooses the raw answer to a request from its head.
type Answer = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

/// An upstream on `127.0.0.1:0` that writes `answer(head)` for every request
/// and keeps each connection open afterwards (so reuse by weir shows).
/// Stops accepting when dropped.
pub struct RawUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

/// A response read from weir in full.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code of the first line (0 when none arrived).
    pub status: u16,
    /// Header lines as (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
    /// The bytes after the head, as sent (not de-chunked).
    pub body: Vec<u8>,
    /// Everything read.
    pub raw: Vec<u8>,
}

// === impl RawUpstream ===

impl std::fmt::Debug for RawUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RawUpstream {
    /// Binds and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn start(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Self {
        let answer: Answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a raw upstream");
        let addr = listener.local_addr().expect("bound address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let received = Arc::clone(&received);
            async move {
                let mut connection = 0;
                while let Ok((stream, _)) = listener.accept().await {
                    let (answer, received) = (Arc::clone(&answer), Arc::clone(&received));
                    tokio::spawn(serve_raw(stream, connection, answer, received));
                    connection += 1;
                }
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// Every request read so far, in arrival order.
    ///
    /// # Panics
    /// When a connection task panicked while holding the record.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("record lock").clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    connection: usize,
    answer: Answer,
    received: Arc<Mutex<Vec<Received>>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = read_until(&mut stream, &mut buf, |b| {
            find(b, b"\r\n\r\n").map(|i| i + 4)
        });
        let Some(head_end) = head_end.await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let lower = head.to_ascii_lowercase();
        let body_end = if lower.contains("transfer-encoding: chunked") {
            read_until(&mut stream, &mut buf, |b| {
                find(b, b"0\r\n\r\n").map(|i| i + 5)
            })
            .await
        } else {
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            read_until(&mut stream, &mut buf, |b| {
                (b.len() >= length).then_some(length)
            })
            .await
        };
        let Some(body_end) = body_end else {
            return;
        };
        let body = buf.drain(..body_end).collect();
        let reply = answer(&head);
        received.lock().expect("record lock").push(Received {
            connection,
            head,
            body,
        });
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Reads into `buf` until `done(buf)` gives the index where the wanted part
/// ends; `None` when the peer closes first.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = done(buf) {
            return Some(end);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// === impl RawResponse ===

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes `request` to `addr` and reads until weir closes the connection or
/// `limit` passes; send `Connection: close` to get a prompt end. Write
/// errors are ignored: weir may answer and close before reading everything.
///
/// # Panics
/// When the connection cannot be made.
pub async fn raw_request(addr: SocketAddr, request: &[u8], limit: Duration) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connecting to weir");
    let deadline = tokio::time::Instant::now() + limit;
    let _ = tokio::time::timeout_at(deadline, stream.write_all(request)).await;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    parse_response(raw)
}

fn parse_response(raw: Vec<u8>) -> RawResponse {
    let head_end = find(&raw, b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: raw[head_end..].to_vec(),
        raw,
    }
}
