//! Request ids: every request weir forwards carries an `x-request-id`, the
//! client's own when it sent one, a new random one otherwise, so the
//! upstream's logs and weir's name the same request. The response is left
//! as the upstream sent it.

use std::task::{Context, Poll};

use http::Request;
use http::header::{Entry, HeaderName, HeaderValue};
use rand::Rng as _;
use tower::{Layer, Service};

/// The header that carries the request id, upstream and in logs.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives each request an `x-request-id` before the inner service sees it:
/// a non-empty one the client sent is kept as it is, otherwise a new one
/// ([`new_request_id`]) is set.
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

/// Wraps a service in [`RequestId`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

/// A new request id: a random (version 4) UUID in its usual text form,
/// 36 characters. Costs one small allocation, for the header value.
pub fn new_request_id() -> HeaderValue {
    let text = new_request_id_text();
    // Hex digits and dashes are always a valid header value.
    // Owned by a reference-counted buffer from the start, so the copies the
    // request span and the upstream request make cost no further allocation.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .unwrap_or(HeaderValue::from_static("-"))
}

/// The text of a new request id (see [`new_request_id`]), without allocating.
pub fn new_request_id_text() -> [u8; 36] {
    let random: u128 = rand::rng().random();
    // RFC 9562: version 4 in bits 48-51, variant 0b10 in bits 64-65.
    let bits = (random & !(0xf << 76) | (0x4 << 76)) & !(0b11 << 62) | (0b10 << 62);
    // 32 hex digits, most significant first, with dashes after the 8th,
    // 12th, 16th and 20th (8-4-4-4-12).
    let digits = crate::hex::hex_digits_128(bits);
    let mut text = [b'-'; 36];
    text[..8].copy_from_slice(&digits[..8]);
    text[9..13].copy_from_slice(&digits[8..12]);
    text[14..18].copy_from_slice(&digits[12..16]);
    text[19..23].copy_from_slice(&digits[16..20]);
    text[24..].copy_from_slice(&digits[20..]);
    text
}

// === impl RequestId ===

impl<S, B> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // A client's id that its `Connection` names is hop-by-hop: not
        // passed on, so replaced (and the replacement is kept upstream).
        let hop_by_hop = crate::forward::connection_names(req.headers(), X_REQUEST_ID.as_str());
        // One lookup: the entry is either the client's id or where ours goes.
        match req.headers_mut().entry(&X_REQUEST_ID) {
            Entry::Occupied(mut id) => {
                if id.get().is_empty() || hop_by_hop {
                    id.insert(new_request_id());
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(new_request_id());
            }
        }
        self.inner.call(req)
    }
}

// === impl RequestIdLayer ===

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn new_ids_are_version_4_uuids_and_differ() {
        let ids: Vec<String> = (0..100)
            .map(|_| new_request_id().to_str().expect("ASCII").to_owned())
            .collect();
        for id in &ids {
            let groups: Vec<&str> = id.split('-').collect();
            let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{id}"
            );
            assert!(groups[2].starts_with('4'), "version 4: {id}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "variant: {id}"
            );
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[tokio::test]
    async fn a_request_keeps_its_id_or_gets_one() {
        let echo = tower::ServiceBuilder::new()
            .layer(RequestIdLayer)
            .service_fn(|req: Request<()>| async move {
                Ok::<_, Infallible>(req.headers().get(&X_REQUEST_ID).cloned())
            });
        let with = |id: Option<&'static str>| {
            let mut req = Request::new(());
            if let Some(id) = id {
                req.headers_mut()
                    .insert(X_REQUEST_ID.clone(), HeaderValue::from_static(id));
            }
            req
        };
        let kept = echo.clone().oneshot(with(Some("abc-123"))).await;
        assert_eq!(kept, Ok(Some(HeaderValue::from_static("abc-123"))));
        for req in [with(None), with(Some(""))] {
            let made = echo.clone().oneshot(req).await.ok().flatten();
            let made = made.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
            assert_eq!(made.len(), 36, "a new id: {made:?}");
        }
    }
}
