//! Admin API requests through real curl: the bearer scheme in any case and
//! with several spaces; paths with dot-segments are 404 with a JSON error;
//! a promote body with `full` not a boolean or an unknown field is 400
//! naming it and changes nothing; an empty body and `{}` are a plain
//! promote; HEAD answers as GET without a body; a 405 names the allowed
//! methods in `Allow`; a request that cannot be parsed gets a JSON error.

use weir_e2e::{FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, phase, step_index};

const READER: &str = "reader-5d21e0";
const WRITER: &str = "writer-9c44ab";

/// Runs curl with `args` against the admin API; returns (status, body).
async fn curl(args: &[&str]) -> (u16, String) {
    let (body, code) = weir_e2e::curl(args, "%{http_code}").await;
    (code.parse().expect("an HTTP status"), body)
}

/// The `error` message of a JSON error body.
fn error_of(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not a JSON error body ({e}): {body}"));
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {json}"))
        .to_owned()
}

/// Writes `request` to the admin listener and reads until weir closes the
/// connection (10 s at most): the answer, and all that was read as text.
async fn raw_admin(weir: &Weir, request: &[u8]) -> (weir_e2e::RawResponse, String) {
    let answer = weir_e2e::raw_request(
        weir.addrs.admin,
        request,
        std::time::Duration::from_secs(10),
    )
    .await;
    let shown = String::from_utf8_lossy(&answer.raw).into_owned();
    (answer, shown)
}

/// The status of route `web`, read with the reader token.
async fn web_status(weir: &Weir) -> serde_json::Value {
    let admin = format!("http://{}", weir.addrs.admin);
    let auth = format!("authorization: Bearer {READER}");
    let (status, body) = curl(&["-H", &auth, &format!("{admin}/api/v1/routes/web")]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not a route status ({e}): {body}"))
}

async fn start() -> (Weir, FakeUpstream, FakeUpstream) {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    // Held at each step: the canary never gets minRequests requests.
    let strategy = Strategy::unjudged([
        Step::SetWeight(10.0),
        Step::SetWeight(20.0),
        Step::SetWeight(30.0),
        Step::Pause(None),
    ]);
    let config = WeirConfig::new([Route::new("web", &[v1.addr])
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)])
    .tokens(Some(READER), Some(WRITER));
    (Weir::start(config).await, v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let (weir, _v1, _v2) = start().await;
    let url = format!("http://{}/api/v1/routes/web", weir.addrs.admin);
    for header in [
        format!("Authorization: Bearer {READER}"),
        format!("Authorization: bearer {READER}"),
        format!("Authorization: BEARER {READER}"),
        format!("Authorization: Bearer    {READER}"),
        format!("authorization: bEaReR {WRITER}"),
    ] {
        let (status, body) = curl(&["-H", &header, &url]).await;
        assert_eq!(status, 200, "{header}: {body}");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(s["name"], "web", "{header}: {body}");
    }
    // Still 401: another scheme, no token, a wrong token in lower case.
    for header in [
        format!("Authorization: Basic {READER}"),
        "Authorization: bearer".to_owned(),
        "Authorization: bearer not-the-token".to_owned(),
        format!("Authorization: Bearer{READER}"),
    ] {
        let (status, body) = curl(&["-H", &header, &url]).await;
        assert_eq!(status, 401, "{header}: {body}");
        assert!(!error_of(&body).is_empty());
    }
    // The reader token in lower case is still a reader: 403 on a write.
    let write = format!("{url}/pause");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: bearer {READER}"),
        &write,
    ])
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_bad_promote_bodies_are_refused_by_name() {
    let (weir, _v1, _v2) = start().await;
    let admin = format!("http://{}", weir.addrs.admin);
    let auth = format!("Authorization: Bearer {WRITER}");

    // Dot-segments, sent as written: 404 naming the segment.
    for path in [
        "/api/v1/routes/../x",
        "/api/v1/routes/web/../promote",
        "/api/v1/routes/%2e%2e/web",
    ] {
        let url = format!("{admin}{path}");
        let (status, body) = curl(&["--path-as-is", "-H", &auth, &url]).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        let message = error_of(&body);
        assert!(message.contains("segment"), "GET {path}: {message}");
    }
    let (status, body) = curl(&["-H", &auth, &format!("{admin}/api/v1/nosuch")]).await;
    assert_eq!(status, 404, "{body}");

    // Bad promote bodies: 400 naming the field; the rollout stays at step 1.
    let promote = format!("{admin}/api/v1/routes/web/promote");
    let json = "Content-Type: application/json";
    for (body, says) in [
        (r#"{"full": "true"}"#, "full must be a boolean"),
        (r#"{"full": 1}"#, "full must be a boolean"),
        (r#"{"fulll": true}"#, "`fulll`"),
        (r#"{"full": true, "force": true}"#, "`force`"),
    ] {
        let (status, answer) =
            curl(&["-X", "POST", "-H", &auth, "-H", json, "-d", body, &promote]).await;
        assert_eq!(status, 400, "promote {body}: {answer}");
        let message = error_of(&answer);
        assert!(message.contains(says), "promote {body}: {message}");
    }
    let (status, answer) = curl(&["-H", &auth, &format!("{admin}/api/v1/routes/web")]).await;
    assert_eq!(status, 200, "{answer}");
    let s: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "a refused promote changed the rollout: {s:#}"
    );

    // An empty body and `{}` are a plain promote: one step each.
    let (status, answer) = curl(&["-X", "POST", "-H", &auth, &promote]).await;
    assert_eq!(status, 200, "promote, empty body: {answer}");
    let s: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(step_index(&s), Some(1), "{s:#}");
    let (status, answer) =
        curl(&["-X", "POST", "-H", &auth, "-H", json, "-d", "{}", &promote]).await;
    assert_eq!(status, 200, "promote {{}}: {answer}");
    let s: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(step_index(&s), Some(2), "{s:#}");
    // `{"full": false}` is a plain promote too.
    let (status, answer) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        json,
        "-d",
        r#"{"full": false}"#,
        &promote,
    ])
    .await;
    assert_eq!(status, 200, "promote full false: {answer}");
    let s: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(3)), "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_a_body() {
    let (weir, _v1, _v2) = start().await;
    let admin = format!("http://{}", weir.addrs.admin);
    let reader = format!("Authorization: Bearer {READER}");
    for (path, auth, status) in [
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/metrics", None, 200),
        ("/api/v1/routes", Some(&reader), 200),
        ("/api/v1/routes/web", Some(&reader), 200),
        ("/api/v1/routes", None, 401),
        ("/api/v1/routes/nosuch", Some(&reader), 404),
    ] {
        let url = format!("{admin}{path}");
        let mut args = vec!["-I"];
        if let Some(auth) = auth {
            args.extend(["-H", auth.as_str()]);
        }
        args.push(&url);
        let (head, code) = weir_e2e::curl(&args, "%{http_code} %{size_download}").await;
        assert_eq!(
            code,
            format!("{status} 0"),
            "HEAD {path}: status and body bytes\n{head}"
        );
    }
    // A command is still POST only.
    let url = format!("{admin}/api/v1/routes/web/promote");
    let (_, code) = weir_e2e::curl(&["-I", "-H", &reader, &url], "%{http_code}").await;
    assert_eq!(code, "405", "HEAD on a command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_405_names_the_methods_the_path_answers() {
    let (weir, _v1, _v2) = start().await;
    let admin = format!("http://{}", weir.addrs.admin);
    let writer = format!("Authorization: Bearer {WRITER}");
    for (method, path, allow) in [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/api/v1/routes/web", "GET, HEAD"),
        ("GET", "/api/v1/routes/web/promote", "POST"),
        ("GET", "/api/v1/reload", "POST"),
    ] {
        let url = format!("{admin}{path}");
        let (head, code) = weir_e2e::curl(
            &[
                "-X",
                method,
                "-H",
                &writer,
                "-D",
                "-",
                "-o",
                "/dev/null",
                &url,
            ],
            "%{http_code}",
        )
        .await;
        assert_eq!(code, "405", "{method} {path}:\n{head}");
        let allowed = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("allow: ")
                    .or_else(|| l.strip_prefix("Allow: "))
            })
            .map(str::trim);
        assert_eq!(allowed, Some(allow), "{method} {path}:\n{head}");
    }
}

/// Requests that cannot be parsed as HTTP/1.1 (hyper answers them before
/// the admin service sees them) get the same JSON error as every other
/// admin error, with their status: a bad request line, a control
/// character in a header value, two Content-Lengths, a target too long, a
/// head over 64 KiB (however much of it one read brings); a transfer
/// coding other than chunked is refused with 501.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_parsed_get_a_json_error() {
    let (weir, _v1, _v2) = start().await;
    let long_target = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(100_000));
    let authorization = format!("authorization: Bearer {WRITER}\r\n");
    let mut big = format!("POST /api/v1/reload HTTP/1.1\r\nhost: a\r\n{authorization}transfer-encoding: chunked\r\nconnection: close\r\n\r\n10000\r\n").into_bytes();
    big.extend(std::iter::repeat_n(b'x', 0x10000));
    big.extend_from_slice(b"\r\n1\r\nx\r\n0\r\n\r\n");
    let broken = format!(
        "POST /api/v1/routes/web/promote HTTP/1.1\r\nhost: a\r\n{authorization}transfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\n"
    );
    // A head just over 64 KiB, and one far over it, each in one write.
    let head = |value_len: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nhost: a\r\nx: {}\r\n\r\n",
            "a".repeat(value_len)
        )
    };
    let (just_over, far_over) = (head(65_500), head(110_000));
    let gzipped = format!(
        "POST /api/v1/routes/web/pause HTTP/1.1\r\nhost: a\r\n{authorization}transfer-encoding: gzip, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let cases: [(&[u8], u16, &str); 9] = [
        (b"GARBAGE\r\n\r\n", 400, "malformed"),
        (just_over.as_bytes(), 431, "larger than 64 KiB"),
        (far_over.as_bytes(), 431, "larger than 64 KiB"),
        // A broken chunk is not a body too large, and says so.
        (
            broken.as_bytes(),
            400,
            "request body broken",
        ),
        (&big, 413, "too large (limit 64 KiB)"),
        (
            b"GET /healthz HTTP/1.1\r\nhost: a\r\nx: a\x01b\r\n\r\n",
            400,
            "malformed",
        ),
        (
            b"POST /api/v1/reload HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            400,
            "malformed",
        ),
        (long_target.as_bytes(), 414, "too long"),
        // A body under another coding is not decoded: refused, not run.
        (gzipped.as_bytes(), 501, "coding other than chunked"),
    ];
    for (request, status, says) in cases {
        let (answer, shown) = raw_admin(&weir, request).await;
        assert_eq!(answer.status, status, "{shown}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{shown}"
        );
        assert!(error_of(&answer.text()).contains(says), "{shown}");
    }
    let s = web_status(&weir).await;
    assert_ne!(phase(&s), "Paused", "the gzip-coded pause ran: {s:#}");
}

/// A chunked command whose trailer section a bare LF would end for a front
/// end that ends lines there: nothing after its body is read, so the
/// command hidden in the next request's body never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_after_a_chunked_command_is_read() {
    let (weir, _v1, _v2) = start().await;
    let authorization = format!("authorization: Bearer {WRITER}\r\n");
    let hidden = format!(
        "POST /api/v1/routes/web/abort HTTP/1.1\r\nhost: a\r\n{authorization}content-length: 0\r\n\r\n"
    );
    let request = format!(
        "POST /api/v1/routes/web/pause HTTP/1.1\r\nhost: a\r\n{authorization}transfer-encoding: chunked\r\n\r\n\
         0\r\nx-t: 1\n\r\n\
         POST /api/v1/healthz HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let (answer, shown) = raw_admin(&weir, request.as_bytes()).await;
    assert_eq!(answer.status, 200, "{shown}");
    assert_eq!(answer.header("connection"), Some("close"), "{shown}");
    assert_eq!(shown.matches("HTTP/1.1 ").count(), 1, "{shown}");
    let s = web_status(&weir).await;
    assert_eq!(phase(&s), "Paused", "the hidden abort ran: {s:#}");
}

/// A chunked command read to its last chunk without trailers leaves no
/// doubt where the next request starts: the connection stays open and a
/// request pipelined after it is answered. A chunked body the API never
/// reads (a probe's) still closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_chunked_command_keeps_its_connection() {
    let (weir, _v1, _v2) = start().await;
    let request = format!(
        "POST /api/v1/routes/web/pause HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {WRITER}\r\ntransfer-encoding: chunked\r\n\r\n\
         0\r\n\r\n\
         GET /api/v1/routes/web HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {READER}\r\nconnection: close\r\n\r\n"
    );
    let (answer, shown) = raw_admin(&weir, request.as_bytes()).await;
    assert_eq!(answer.status, 200, "{shown}");
    assert_eq!(answer.header("connection"), None, "{shown}");
    assert_eq!(shown.matches("HTTP/1.1 200 ").count(), 2, "{shown}");
    assert!(shown.contains("\"Paused\""), "{shown}");

    let unread = "GET /healthz HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n0\r\n\r\n\
                  GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n";
    let (answer, shown) = raw_admin(&weir, unread.as_bytes()).await;
    assert_eq!(answer.status, 200, "{shown}");
    assert_eq!(answer.header("connection"), Some("close"), "{shown}");
    assert_eq!(shown.matches("HTTP/1.1 ").count(), 1, "{shown}");
}
