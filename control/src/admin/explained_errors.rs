//! The admin connection's stream, which gives hyper's own answers to a
//! request it cannot parse (a bad request line or header field, a head over
//! the limit) the JSON body every other admin error has.
//!
//! hyper answers such a request itself, before the admin service sees it,
//! with an empty body: `HTTP/1.1 400 Bad Request`, then exactly
//! `connection: close`, `content-length: 0` and `date`. The service never
//! answers an error without a body, so a head of that shape written to the
//! stream is hyper's, and is replaced by the same status with
//! `{"error": "..."}`. hyper writes the head in one write (the stream is
//! not vectored, so hyper flattens what it writes) and then closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose bodiless error answers from hyper are given a JSON body.
#[derive(Debug)]
pub struct ExplainedErrors<S> {
    inner: S,
    /// The answer written in place of hyper's, and how much of it is out.
    replacement: Vec<u8>,
    sent: usize,
}

// === impl ExplainedErrors ===

impl<S> ExplainedErrors<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> ExplainedErrors<S> {
        ExplainedErrors {
            inner,
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
        if let Some(replacement) = explained(buf) {
            self.replacement = replacement;
            self.sent = 0;
            // The rest goes out on the flush that follows.
            if let Poll::Ready(Err(error)) = self.poll_replacement(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

/// The answer to write instead of `written` when it is hyper's bodiless
/// answer to a request it could not parse.
fn explained(written: &[u8]) -> Option<Vec<u8>> {
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
    let message = match code {
        400 => {
            "the request is not HTTP/1.1 the admin API can read: its request line or a \
             header field is malformed (a control character, a space before a colon, a \
             bad or repeated Content-Length, ...)"
        }
        414 => "the request target is too long for the admin API (its head is at most 64 KiB)",
        431 => {
            "the request head has more than 100 header fields or is larger than 64 KiB, the \
             most the admin API reads"
        }
        _ => "the request could not be read",
    };
    let body = serde_json::json!({ "error": message }).to_string();
    Some(
        format!(
            "{status_line}\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\ndate: {date}\r\n\r\n{body}",
            body.len()
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
            let io = hyper_util::rt::TokioIo::new(ExplainedErrors::new(server));
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
        assert!(explained(hypers.as_bytes()).is_some());
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
            assert!(explained(other.as_bytes()).is_none(), "{other}");
        }
    }
}
