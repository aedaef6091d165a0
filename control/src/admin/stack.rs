//! The admin listener's tower stack, in one place: health probes first
//! (never limited), then load shedding over a concurrency limit shared by
//! every admin connection, then the API itself ([`AdminState::handle`]).
//!
//! The limit is there for floods: a script gone wrong that calls reload or a
//! command in a loop, or many dashboards polling at once. Over it, a caller
//! gets 503 with `Retry-After` at once instead of waiting in a queue whose
//! wait nobody bounds, and the requests already admitted finish normally.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, header};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::util::{Either, Oneshot};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt as _};
use weir_proxy::request_body::ClientBody;

use super::{AdminBody, AdminState, refusal};
use crate::messages::Refusal;

/// Admin requests answered at once, health probes aside; more are refused
/// with 503 until one ends.
pub const ADMIN_CONCURRENCY: usize = 32;

/// Sends health probes (`GET /healthz`, `GET /readyz`) to `probes` and
/// every other request to the inner service. Probes answer from an atomic
/// and wait on nothing, so they need no limit, and a flood of API calls must
/// not fail a liveness or readiness check.
#[derive(Debug, Clone)]
pub struct Probes<P, S> {
    probes: P,
    inner: S,
}

/// Wraps a service in [`Probes`], with the service that answers probes.
#[derive(Debug, Clone)]
pub struct ProbesLayer<P> {
    probes: P,
}

/// The admin API's tower stack for a connection from `peer`, outermost
/// layer first. Every failure is an answer: the error type is tower's
/// (load shedding works with boxed errors) but no error is ever returned.
pub fn admin_stack(
    state: Arc<AdminState>,
    peer: SocketAddr,
) -> impl Service<Request<ClientBody>, Response = Response<AdminBody>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    let slots = Arc::clone(&state.in_flight);
    let api = tower::service_fn(move |req: Request<ClientBody>| {
        let state = Arc::clone(&state);
        async move { Ok::<_, BoxError>(state.handle(req, peer).await) }
    });
    ServiceBuilder::new()
        .layer(ProbesLayer {
            probes: api.clone(),
        })
        // Over the limit the shed request is an `Overloaded` error: 503.
        .map_result(answer_overload)
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(slots))
        .service(api)
}

/// The answer to a request the load shedder refused (503, `Retry-After: 1`);
/// other answers pass through.
fn answer_overload(
    result: Result<Response<AdminBody>, BoxError>,
) -> Result<Response<AdminBody>, BoxError> {
    let error = match result {
        Ok(response) => return Ok(response),
        Err(error) => error,
    };
    if error.is::<Overloaded>() {
        let mut response = refusal(&Refusal::Busy {
            limit: ADMIN_CONCURRENCY,
        });
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return Ok(response.map(AdminBody::from));
    }
    // The API itself never fails; should a layer below, say so.
    Ok(super::error(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        &format!("the admin API failed: {error}"),
    )
    .map(AdminBody::from))
}

fn is_probe<B>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && matches!(req.uri().path(), "/healthz" | "/readyz")
}

// === impl Probes ===

impl<P, S, B> Service<Request<B>> for Probes<P, S>
where
    P: Service<Request<B>> + Clone,
    S: Service<Request<B>, Response = P::Response, Error = P::Error> + Clone,
{
    type Response = P::Response;
    type Error = P::Error;
    type Future = Oneshot<Either<P, S>, Request<B>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the chosen service's, checked in `call` once the
        // request says which one it is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let chosen = if is_probe(&req) {
            Either::Left(self.probes.clone())
        } else {
            Either::Right(self.inner.clone())
        };
        chosen.oneshot(req)
    }
}

// === impl ProbesLayer ===

impl<P: Clone, S> Layer<S> for ProbesLayer<P> {
    type Service = Probes<P, S>;

    fn layer(&self, inner: S) -> Probes<P, S> {
        Probes {
            probes: self.probes.clone(),
            inner,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;
    use tokio::sync::watch;

    use super::*;
    use crate::fixtures;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_admin_calls_is_shed_with_503_and_probes_still_answer() {
        let text = fixtures::config_text(
            Some(("r", "w")),
            &fixtures::route("web", Some("[{setWeight: 20}]")),
        );
        let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let state = Arc::new(AdminState::new(Arc::clone(&in_memory.process)));
        state.set_ready(true);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(super::super::serve(listener, Arc::clone(&state), stop_rx));
        let reader = weir_e2e::Admin::new(addr, Some("r"));

        // Every status read waits for the control lock, held here: the
        // first ADMIN_CONCURRENCY calls take every slot and stay in flight.
        let control = in_memory.process.control.lock().await;
        let admitted: Vec<_> = (0..ADMIN_CONCURRENCY)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move { reader.get("/api/v1/routes").await })
            })
            .collect();
        weir_e2e::wait_until(Duration::from_secs(20), "every admin slot taken", || {
            let free = state.in_flight.available_permits();
            async move { (free == 0).then_some(()) }
        })
        .await;

        let shed = weir_e2e::within(
            Duration::from_secs(10),
            "an answer over the limit",
            reader.get("/api/v1/routes"),
        )
        .await
        .expect("an answer");
        assert_eq!(shed.status, 503, "{}", shed.text());
        assert!(
            shed.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("the admin API is busy")),
            "{}",
            shed.text()
        );
        for probe in ["/healthz", "/readyz"] {
            let answer = weir_e2e::within(Duration::from_secs(10), probe, reader.get(probe))
                .await
                .expect("an answer");
            assert_eq!(answer.status, 200, "{probe} while the API is flooded");
        }

        // The calls admitted are answered once the lock is free.
        drop(control);
        for call in admitted {
            let answer = weir_e2e::within(Duration::from_secs(20), "an admitted call", call)
                .await
                .expect("the call's task")
                .expect("an answer");
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
        let after = reader.get("/api/v1/routes").await.expect("an answer");
        assert_eq!(after.status, 200, "{}", after.text());
        let _ = stop_tx.send(true);
        let _ = weir_e2e::within(Duration::from_secs(10), "the admin server stops", server).await;
    }
}
