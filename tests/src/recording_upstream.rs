//! [`RecordingUpstream`]: a raw-socket upstream that records the exact bytes
//! of every connection weir opens to it, parses them strictly (RFC 9112,
//! no leniency) into requests, and answers each request with a scripted raw
//! reply. A desync test asserts on what reached it: how many requests, on
//! which connection, with which body boundaries, and that nothing it saw
//! was ambiguous.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a recorded request's body was framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither Content-Length nor Transfer-Encoding: no body.
    None,
    /// `Content-Length: N`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One request as the recording upstream parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// 0-based index of the upstream connection it came on.
    pub connection: usize,
    /// The method token.
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// Header fields as (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
    /// How the body was framed.
    pub framing: Framing,
    /// The body, de-chunked when chunked.
    pub body: Vec<u8>,
}

/// What the upstream writes back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The raw bytes to write.
    pub bytes: Vec<u8>,
    /// Close the connection after writing them.
    pub close: bool,
}

/// Everything one upstream connection carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Every byte weir wrote on it, in order.
    pub bytes: Vec<u8>,
    /// Why strict parsing stopped, when the bytes were not a clean
    /// sequence of well-framed requests.
    pub violation: Option<String>,
}

/// Chooses the reply to a request.
type Script = Arc<dyn Fn(&UpstreamRequest) -> Reply + Send + Sync>;

#[derive(Debug, Default)]
struct Record {
    connections: Vec<ConnectionRecord>,
    requests: Vec<UpstreamRequest>,
}

/// A recording raw upstream on `127.0.0.1:0`; stops accepting when dropped.
pub struct RecordingUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    task: JoinHandle<()>,
}

// === impl UpstreamRequest ===

impl UpstreamRequest {
    /// Every value of header `name` (lower case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

// === impl Reply ===

impl Reply {
    /// These bytes; the connection stays open.
    pub fn keep(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            close: false,
        }
    }

    /// These bytes, then the connection closes.
    pub fn close(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            close: true,
        }
    }

    /// `200 OK` with `body` and its Content-Length; the connection stays
    /// open.
    pub fn ok(body: &str) -> Self {
        Self::keep(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }
}

// === impl RecordingUpstream ===

impl std::fmt::Debug for RecordingUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RecordingUpstream {
    /// Binds and starts serving on the current tokio runtime, answering
    /// each request with `script(request)`.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn start(script: impl Fn(&UpstreamRequest) -> Reply + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a recording upstream");
        let addr = listener.local_addr().expect("bound address");
        let record = Arc::new(Mutex::new(Record::default()));
        let task = tokio::spawn({
            let record = Arc::clone(&record);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let connection = {
                        let mut r = record.lock().expect("record lock");
                        r.connections.push(ConnectionRecord::default());
                        r.connections.len() - 1
                    };
                    tokio::spawn(serve(
                        stream,
                        connection,
                        Arc::clone(&script),
                        Arc::clone(&record),
                    ));
                }
            }
        });
        Self { addr, record, task }
    }

    /// An upstream that answers every request `200` with body `name`.
    pub async fn named(name: &'static str) -> Self {
        Self::start(move |_| Reply::ok(name)).await
    }

    /// Every request parsed so far, in arrival order.
    ///
    /// # Panics
    /// When a connection task panicked while holding the record.
    pub fn requests(&self) -> Vec<UpstreamRequest> {
        self.record.lock().expect("record lock").requests.clone()
    }

    /// Every connection accepted so far, with its bytes.
    ///
    /// # Panics
    /// When a connection task panicked while holding the record.
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.record.lock().expect("record lock").connections.clone()
    }

    /// The strict-parsing violations seen so far, by connection.
    pub fn violations(&self) -> Vec<(usize, String)> {
        self.connections()
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| c.violation.map(|v| (i, v)))
            .collect()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    script: Script,
    record: Arc<Mutex<Record>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match parse_request(&buf) {
            Parse::Done(mut request, used) => {
                buf.drain(..used);
                request.connection = connection;
                let reply = script(&request);
                record.lock().expect("record lock").requests.push(request);
                if stream.write_all(&reply.bytes).await.is_err() || reply.close {
                    return;
                }
                continue;
            }
            Parse::Invalid(why) => {
                record.lock().expect("record lock").connections[connection].violation = Some(why);
                return;
            }
            Parse::Partial => {}
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    record.lock().expect("record lock").connections[connection].violation =
                        Some(format!("closed inside a request after {} bytes", buf.len()));
                }
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                record.lock().expect("record lock").connections[connection]
                    .bytes
                    .extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The outcome of parsing the front of a connection's bytes.
#[derive(Debug)]
enum Parse {
    /// One whole request and the bytes it used.
    Done(UpstreamRequest, usize),
    /// More bytes needed.
    Partial,
    /// Not a strictly valid request: what is wrong.
    Invalid(String),
}

/// Parses one request from the front of `buf`, refusing everything RFC 9112
/// lets a recipient tolerate: bare LF, obs-fold, whitespace before the
/// colon, control characters in values, Content-Length that is not all
/// digits or repeated, Transfer-Encoding other than exactly `chunked`, both
/// framing headers, chunk sizes that are not plain hex.
fn parse_request(buf: &[u8]) -> Parse {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 1 << 20 {
            Parse::Invalid("head longer than 1 MiB".to_owned())
        } else {
            Parse::Partial
        };
    };
    let head = &buf[..head_end];
    let Ok(head) = std::str::from_utf8(head) else {
        return Parse::Invalid("head is not UTF-8".to_owned());
    };
    if head.bytes().any(|b| b == 0) {
        return Parse::Invalid("NUL in head".to_owned());
    }
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Parse::Invalid(format!("request line {request_line:?}"));
    };
    if *version != "HTTP/1.1" && *version != "HTTP/1.0" {
        return Parse::Invalid(format!("version {version:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.contains('\n') || line.contains('\r') {
            return Parse::Invalid(format!("bare CR or LF in {line:?}"));
        }
        if line.starts_with([' ', '\t']) {
            return Parse::Invalid(format!("obs-fold {line:?}"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Parse::Invalid(format!("header line without colon {line:?}"));
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Parse::Invalid(format!("bad header name {name:?}"));
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Parse::Invalid(format!("control character in {line:?}"));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_owned(),
        ));
    }
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let codings: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v.as_str())
        .collect();
    let framing = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Framing::None,
        ([length], []) => {
            if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
                return Parse::Invalid(format!("Content-Length {length:?}"));
            }
            match length.parse() {
                Ok(n) => Framing::Length(n),
                Err(_) => return Parse::Invalid(format!("Content-Length {length:?}")),
            }
        }
        ([], ["chunked"]) => Framing::Chunked,
        ([], _) => return Parse::Invalid(format!("Transfer-Encoding {codings:?}")),
        (_, []) => return Parse::Invalid(format!("Content-Length {lengths:?}")),
        _ => return Parse::Invalid("both Content-Length and Transfer-Encoding".to_owned()),
    };
    let body_start = head_end + 4;
    let (body, used) = match framing {
        Framing::None => (Vec::new(), body_start),
        Framing::Length(n) => {
            if buf.len() < body_start + n {
                return Parse::Partial;
            }
            (buf[body_start..body_start + n].to_vec(), body_start + n)
        }
        Framing::Chunked => match dechunk(&buf[body_start..]) {
            Ok(Some((body, n))) => (body, body_start + n),
            Ok(None) => return Parse::Partial,
            Err(why) => return Parse::Invalid(why),
        },
    };
    Parse::Done(
        UpstreamRequest {
            connection: 0,
            method: (*method).to_owned(),
            target: (*target).to_owned(),
            headers,
            framing,
            body,
        },
        used,
    )
}

/// Decodes a strictly chunked body (plain hex sizes, no extensions, no
/// trailers) from the front of `buf`: the body and the bytes used, `None`
/// when incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = &buf[at..at + line_end];
        if size_text.is_empty()
            || size_text.len() > 16
            || !size_text.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(format!(
                "chunk size line {:?}",
                String::from_utf8_lossy(size_text)
            ));
        }
        let size = usize::from_str_radix(&String::from_utf8_lossy(size_text), 16)
            .map_err(|e| format!("chunk size: {e}"))?;
        at += line_end + 2;
        if size == 0 {
            if buf.len() < at + 2 {
                return Ok(None);
            }
            if &buf[at..at + 2] != b"\r\n" {
                return Err("trailer fields after the last chunk".to_owned());
            }
            return Ok(Some((body, at + 2)));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".to_owned());
        }
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
