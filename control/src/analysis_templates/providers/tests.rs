use http::StatusCode;
use weir_config::JsonPath;

use super::*;

fn numbers(value: &Value) -> Vec<String> {
    match value {
        Value::List(items) => items.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

#[test]
fn prometheus_answers_become_values() {
    let ok = StatusCode::OK;
    let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"route":"a"},"value":[1700000000.1,"0.25"]},
        {"metric":{"route":"b"},"value":[1700000000.1,"NaN"]},
        {"metric":{"route":"c"},"value":[1700000000.1,"+Inf"]}]}}"#;
    assert_eq!(
        numbers(&prometheus_value(ok, vector).expect("a vector")),
        ["0.25", "NaN", "+Inf"]
    );
    let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(prometheus_value(ok, empty), Ok(Value::List(Vec::new())));
    let scalar =
        br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
    assert_eq!(prometheus_value(ok, scalar), Ok(Value::Number(3.0)));
    let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{},"values":[[1,"1"],[2,"2"]]},{"metric":{},"values":[[1,"3"]]}]}}"#;
    assert_eq!(
        numbers(&prometheus_value(ok, matrix).expect("a matrix")),
        ["1", "2", "3"]
    );
}

#[test]
fn prometheus_errors_carry_its_message() {
    let bad = br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected <by>"}"#;
    let error = prometheus_value(StatusCode::BAD_REQUEST, bad).expect_err("an error answer");
    assert_eq!(
        error,
        "Prometheus answered 400 Bad Request: bad_data: invalid parameter \"query\": 1:5: parse error: unexpected <by>"
    );
    let error = prometheus_value(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>")
        .expect_err("garbage");
    assert!(
        error.contains("502 Bad Gateway with a body that is not its JSON: <html>"),
        "{error}"
    );
    let error = prometheus_value(
        StatusCode::OK,
        br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
    )
    .expect_err("not a number");
    assert!(error.contains("not a number"), "{error}");
    // Another resultType, and JSON that is no query answer, are named.
    let error = prometheus_value(
        StatusCode::OK,
        br#"{"status":"success","data":{"resultType":"histogram","result":[]}}"#,
    )
    .expect_err("a resultType not read");
    assert_eq!(
        error,
        "Prometheus answered a resultType weir does not read: `histogram` (it reads vector, \
         scalar, matrix and string)"
    );
    let error = prometheus_value(StatusCode::OK, b"[1,2,3]").expect_err("not a query answer");
    assert_eq!(
        error,
        "Prometheus answered 200 OK with JSON that is not a query answer (no `status` of \
         `success` or `error`): [1,2,3]"
    );

    // A huge message is quoted cut, not whole.
    let huge = format!(
        r#"{{"status":"error","errorType":"execution","error":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let error = prometheus_value(StatusCode::UNPROCESSABLE_ENTITY, huge.as_bytes())
        .expect_err("an error answer");
    assert!(error.len() < 512, "{} bytes", error.len());
    assert!(error.starts_with("Prometheus answered 422 Unprocessable Entity: execution: xxx"));
}

#[test]
fn web_answers_are_read_at_the_json_path() {
    let mut request = WebRequest {
        url: "http://127.0.0.1:1/".to_owned(),
        method: "GET".to_owned(),
        headers: Vec::new(),
        body: None,
        json_body: false,
        json_path: Some(JsonPath::parse("{$.data.items[1].ok}").expect("parses")),
        timeout: Duration::from_secs(1),
        insecure: false,
    };
    let body = br#"{"data":{"items":[{"ok":false},{"ok":true}]}}"#;
    assert_eq!(web_value(&request, body), Ok(Value::Bool(true)));
    let error = web_value(&request, br#"{"data":{}}"#).expect_err("missing");
    assert!(error.contains("nothing at {$.data.items[1].ok}"), "{error}");
    request.json_path = None;
    assert_eq!(web_value(&request, b"200"), Ok(Value::Number(200.0)));
    assert_eq!(
        web_value(&request, b"all good"),
        Ok(Value::Text("all good".to_owned()))
    );
}

#[test]
fn encodings() {
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(
        form_encode("sum(x{a=\"b c\"})"),
        "sum%28x%7Ba%3D%22b+c%22%7D%29"
    );
}

fn prometheus_at(addr: std::net::SocketAddr, timeout: Duration) -> Provider {
    Provider::Prometheus(PrometheusQuery {
        address: format!("http://{addr}"),
        query: "up".to_owned(),
        timeout,
        headers: vec![("x-scope".to_owned(), "weir".to_owned())],
        basic_auth: Some(("user".to_owned(), "pass".to_owned())),
        insecure: false,
    })
}

/// A server on a real socket that reads one request and sends `answer`
/// (or nothing, when `None`); returns the request it read.
async fn one_answer(
    answer: Option<String>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let addr = listener.local_addr().expect("an address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("a connection");
        let mut read = Vec::new();
        let mut buffer = [0u8; 4096];
        // Head and the short form body arrive together or soon after.
        while !String::from_utf8_lossy(&read).contains("query=") {
            let n = stream.read(&mut buffer).await.expect("reading");
            if n == 0 {
                break;
            }
            read.extend_from_slice(&buffer[..n]);
        }
        match answer {
            Some(answer) => {
                let _ = stream.write_all(answer.as_bytes()).await;
            }
            // Never answers: held open until the client gives up.
            None => {
                let _ = stream.read(&mut buffer).await;
            }
        }
        String::from_utf8_lossy(&read).into_owned()
    });
    (addr, task)
}

#[tokio::test]
async fn prometheus_over_a_socket_error_answers_timeouts_and_refusals() {
    let client = client();
    let body = r#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#;
    let answer = format!(
        "HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (addr, request) = one_answer(Some(answer)).await;
    let measured = measure(&client, &prometheus_at(addr, Duration::from_secs(30))).await;
    assert_eq!(
        measured.value,
        Err("Prometheus answered 422 Unprocessable Entity: execution: query timed out in expression evaluation".to_owned())
    );
    assert_eq!(measured.resolved, "up");
    let request = request.await.expect("the server ran").to_ascii_lowercase();
    assert!(request.starts_with("post /api/v1/query "), "{request}");
    assert!(
        request.contains("authorization: basic dxnlcjpwyxnz"),
        "{request}"
    );
    assert!(request.contains("x-scope: weir"), "{request}");
    assert!(request.ends_with("query=up"), "{request}");

    // A server that never answers: an errored measurement at the timeout.
    let (addr, _held) = one_answer(None).await;
    let measured = measure(&client, &prometheus_at(addr, Duration::from_secs(1))).await;
    assert_eq!(
        measured.value,
        Err("no answer within 1 s (the provider's timeout)".to_owned())
    );

    // Nothing listening.
    let closed = weir_e2e::ClosedPort::bind();
    let measured = measure(
        &client,
        &prometheus_at(closed.addr, Duration::from_secs(30)),
    )
    .await;
    let error = measured.value.expect_err("refused");
    assert!(
        error.starts_with(&format!("cannot reach http://{}/api/v1/query", closed.addr)),
        "{error}"
    );
}
