//! The API server as tests play it, over kube's mocked client: each test
//! takes the requests one by one and answers them; a request that does not
//! come fails the test at the guard's deadline.

use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock;

/// Only a guard against a hang: requests come at once.
pub(super) const GUARD: Duration = Duration::from_secs(10);

/// The test's end of the mocked client.
pub(super) type ApiHandle = mock::Handle<Request<Body>, Response<Body>>;

/// A kube client whose requests the returned handle takes.
pub(super) fn client() -> (kube::Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// One request the client sent, and the means to answer it.
pub(super) struct Sent {
    /// Its method.
    pub(super) method: http::Method,
    /// Its path.
    pub(super) path: String,
    /// Its `Content-Type`, empty when it has none.
    pub(super) content_type: String,
    /// Its body as JSON (`null` when it is not).
    pub(super) body: Value,
    respond: mock::SendResponse<Response<Body>>,
}

impl Sent {
    /// Answers `code` with `body`.
    pub(super) fn answer(self, code: u16, body: &Value) {
        let mut response =
            Response::new(Body::from(serde_json::to_vec(body).expect("a JSON body")));
        *response.status_mut() = http::StatusCode::from_u16(code).expect("a status code");
        self.respond.send_response(response);
    }
}

/// The next request, within [`GUARD`].
pub(super) async fn next(handle: &mut ApiHandle) -> Sent {
    let (request, respond) = tokio::time::timeout(GUARD, handle.next_request())
        .await
        .expect("a request before the guard's deadline")
        .expect("the service is still in use");
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("the request body").to_bytes();
    Sent {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        respond,
    }
}
