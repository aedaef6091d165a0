//! A connection's stream that gives hyper's own answers to a request it
//! cannot parse (a bad request line or header field, a head over the
//! limit) a body saying what is wrong, as weir's other refusals have: JSON
//! on the admin API, text on the proxy's listeners (as weir's own HTTP/1
//! path answers).
//!
//! hyper answers such a request itself, before the service sees it, with
//! an empty body: `HTTP/1.1 400 Bad Request`, then exactly
//! `connection: close`, `content-length: 0` and `date`. Neither service
//! writes an error head of that shape (the admin API's errors and weir's
//! own answers have bodies; a forwarded answer keeps its fields before the
//! `connection` hyper adds), so a head of that shape written to the stream
//! is hyper's, and is replaced by the same status with a body. hyper
//! writes that head in one write (alone in a vectored write when the
//! stream takes those) and then closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How the body of a replaced answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorBody {
    /// `{"error": "..."}`, as the admin API's errors.
    Json,
    /// A line of text, as weir's own refusals on the proxy's listeners.
    Text,
}

/// A stream whose bodiless error answers from hyper are given a body.
#[derive(Debug)]
pub struct ExplainedErrors<S> {
    inner: S,
    body: ErrorBody,
    /// The answer written in place of hyper's, and how much of it is out.
    replacement: Vec<u8>,
    sent: usize,
}

// === impl ExplainedErrors ===

impl<S> ExplainedErrors<S> {
    /// Wraps `inner`; replaced answers get bodies written as `body` says.
    pub fn new(inner: S, body: ErrorBody) -> ExplainedErrors<S> {
        ExplainedErrors {
            inner,
            body,
            replacement: Vec::new(),
            sent: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ExplainedErrors<S> {
    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.replacement.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.replacement[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        Poll::Ready(Ok(()))
    }

    /// When `written` is hyper's bodiless error head: starts writing its
    /// replacement and says `written` is taken (the rest goes out on the
    /// flush that follows).
    fn replace(&mut self, cx: &mut Context<'_>, written: &[u8]) -> Option<Poll<io::Result<usize>>> {
        self.replacement = explained(written, self.body)?;
        self.sent = 0;
        Some(match self.poll_replacement(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(written.len())),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ExplainedErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ExplainedErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        if let Some(taken) = self.replace(cx, buf) {
            return taken;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        if let [only] = bufs {
            if let Some(taken) = self.replace(cx, only) {
                return taken;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether `req`'s head, written as an HTTP/1.1 client writes it (one
/// space after each colon), is over [`MAX_REQUEST_HEAD`](crate::server::MAX_REQUEST_HEAD).
/// hyper checks its limit only while a head is incomplete, and a read can
/// bring far more than the limit at once (heads of 112 KiB came whole), so
/// the admin API checks the head it is given.
pub fn head_too_large<B>(req: &http::Request<B>) -> bool {
    let limit = crate::server::MAX_REQUEST_HEAD;
    // "METHOD TARGET HTTP/1.1\r\n", the fields, "\r\n".
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let mut size = req.method().as_str().len() + " ".len() + target + " HTTP/1.1\r\n".len();
    size += "\r\n".len();
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + ": \r\n".len();
        if size > limit {
            return true;
        }
    }
    size > limit
}

/// The answer to write instead of `written` when it is hyper's bodiless
/// answer to a request it could not parse.
fn explained(written: &[u8], body: ErrorBody) -> Option<Vec<u8>> {
    // Most writes are not heads of hyper's errors: one comparison says so.
    if !written.starts_with(b"HTTP/1.1 4") && !written.starts_with(b"HTTP/1.1 5") {
        return None;
    }
    let head = std::str::from_utf8(written)
        .ok()?
        .strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line.strip_prefix("HTTP/1.1 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    if lines.next()? != "connection: close" || lines.next()? != "content-length: 0" {
        return None;
    }
    let date = lines.next()?.strip_prefix("date: ")?;
    if lines.next().is_some() {
        return None;
    }
    let (content_type, text) = match body {
        ErrorBody::Json => {
            let message = match code {
                400 => {
                    "the request is not HTTP/1.1 the admin API can read: its request line or a \
                     header field is malformed (a control character, a space before a colon, a \
                     bad or repeated Content-Length, ...)"
                }
                414 => {
                    "the request target is too long for the admin API (its head is at most 64 KiB)"
                }
                431 => {
                    "the request head has more than 100 header fields or is larger than 64 KiB, \
                     the most the admin API reads"
                }
                _ => "the request could not be read",
            };
            (
                "application/json",
                serde_json::json!({ "error": message }).to_string(),
            )
        }
        ErrorBody::Text => {
            let message = match code {
                400 => {
                    "bad request: the request line or a header field is malformed (a control \
                     character, a space before a colon, a bad or repeated Content-Length, ...)"
                }
                414 => "the request target is too long (a head is at most 64 KiB)",
                431 => "the request head has more than 100 header fields or is larger than 64 KiB",
                _ => "the request could not be read",
            };
            ("text/plain; charset=utf-8", format!("{rest} {message}\n"))
        }
    };
    Some(
        format!(
            "{status_line}\r\nconnection: close\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\ndate: {date}\r\n\r\n{text}",
            text.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// What a hyper HTTP/1 server behind [`ExplainedErrors`] answers to
    /// `request`, up to the close.
    async fn answer_to(request: &[u8]) -> String {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(404)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        b"{\"error\": \"no such path\"}",
                    )))
                    .expect("a response"),
            )
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(64 * 1024);
        let served = tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(ExplainedErrors::new(server, ErrorBody::Json));
            builder.serve_connection(io, service).await
        });
        client.write_all(request).await.expect("written");
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.read_to_end(&mut answer),
        )
        .await
        .expect("answered and closed within 10 s")
        .expect("read");
        served.abort();
        String::from_utf8(answer).expect("UTF-8")
    }

    /// The JSON `error` of `answer`, checking the framing on the way.
    fn error_of(answer: &str) -> String {
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{answer}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{answer}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        json["error"].as_str().expect("an error").to_owned()
    }

    #[tokio::test]
    async fn requests_hyper_cannot_parse_get_a_json_error() {
        let long_target = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(70_000));
        let big_head = format!(
            "GET / HTTP/1.1\r\nhost: a\r\nx: {}\r\n\r\n",
            "a".repeat(200_000)
        );
        let many_fields: String = std::iter::once("GET / HTTP/1.1\r\nhost: a\r\n".to_owned())
            .chain((0..120).map(|i| format!("x-h{i}: v\r\n")))
            .chain(std::iter::once("\r\n".to_owned()))
            .collect();
        let cases: [(&[u8], &str, &str); 6] = [
            (b"BAD\r\n\r\n", "HTTP/1.1 400 ", "malformed"),
            (
                b"GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n",
                "HTTP/1.1 400 ",
                "malformed",
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "HTTP/1.1 400 ",
                "malformed",
            ),
            (long_target.as_bytes(), "HTTP/1.1 414 ", "too long"),
            (big_head.as_bytes(), "HTTP/1.1 431 ", "larger than 64 KiB"),
            (
                many_fields.as_bytes(),
                "HTTP/1.1 431 ",
                "more than 100 header fields",
            ),
        ];
        for (request, status, says) in cases {
            let answer = answer_to(request).await;
            assert!(answer.starts_with(status), "{answer}");
            let error = error_of(&answer);
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn a_head_is_measured_as_written() {
        let request = |value_len: usize| {
            http::Request::get("/healthz")
                .header("host", "a")
                .header("x", "a".repeat(value_len))
                .body(())
                .expect("a request")
        };
        // "GET /healthz HTTP/1.1\r\n" 23, "host: a\r\n" 9, "x: ...\r\n"
        // 5 + n, "\r\n" 2.
        let fits = crate::server::MAX_REQUEST_HEAD - 23 - 9 - 5 - 2;
        assert!(!head_too_large(&request(fits)));
        assert!(head_too_large(&request(fits + 1)));
    }

    #[tokio::test]
    async fn the_services_own_answers_pass_unchanged() {
        let answer = answer_to(b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        assert!(
            answer.ends_with("\r\n\r\n{\"error\": \"no such path\"}"),
            "{answer}"
        );
        assert!(!answer.contains("content-type"), "{answer}");
    }

    #[test]
    fn only_hyper_s_exact_bodiless_error_head_is_replaced() {
        let date = "date: Sat, 05 Dec 2026 11:49:56 GMT";
        let hypers = format!(
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n\r\n"
        );
        assert!(explained(hypers.as_bytes(), ErrorBody::Json).is_some());
        let text = explained(hypers.as_bytes(), ErrorBody::Text).expect("replaced");
        let text = String::from_utf8(text).expect("UTF-8");
        assert!(
            text.ends_with("\r\n\r\n400 Bad Request bad request: the request line or a header field is malformed (a control character, a space before a colon, a bad or repeated Content-Length, ...)\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
        for other in [
            format!("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n\r\n"),
            format!(
                "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 2\r\n{date}\r\n\r\n{{}}"
            ),
            format!(
                "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\nx: y\r\n\r\n"
            ),
            format!(
                "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n"
            ),
        ] {
            assert!(
                explained(other.as_bytes(), ErrorBody::Json).is_none(),
                "{other}"
            );
        }
    }
}
