//! A small Kubernetes API server for end-to-end tests: enough of the real
//! one's semantics that several `weir run` processes can be pointed at it
//! through a kubeconfig and act as replicas.
//!
//! It keeps objects of any kind in memory, keyed by their collection path,
//! and answers:
//!
//! - `GET` of a collection (all namespaces or one; `labelSelector` with
//!   `k=v`, `k!=v` and `k`; `fieldSelector` on `metadata.name` and
//!   `metadata.namespace`) with the list's `resourceVersion`;
//! - `GET ...?watch=true&resourceVersion=N`: every change after `N` as
//!   newline-separated watch events, then new ones as they happen until
//!   `timeoutSeconds`; a version older than [`KubeApi::compact`] gets an
//!   `ERROR` event with a 410 `Status`, as the real server does;
//! - `GET`, `POST` (create; 409 if it exists), `PUT` (replace; 409 when the
//!   body's `resourceVersion` is not the stored one), `PATCH` (merge, strategic
//!   merge taken as merge, server-side apply taken as merge, and JSON patch;
//!   409 when the patch carries a stale `resourceVersion`), `DELETE`;
//! - the `status` subresource for kinds that have one: a write to `/status`
//!   changes only `status`, a write to the object leaves `status` alone and
//!   bumps `metadata.generation` when the rest changed;
//! - `/version`.
//!
//! Tests can seed and read objects directly, make the server answer 503 or
//! drop its watches ([`KubeApi::set_down`]), and read the log of requests it
//! served ([`KubeApi::requests`]) to assert exactly what a client sent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Collections whose objects have a `status` subresource.
const STATUS_SUBRESOURCE: [&str; 7] = [
    "canaryroutes",
    "services",
    "pods",
    "deployments",
    "gatewayclasses",
    "gateways",
    "httproutes",
];

/// How long a watch runs when the client names no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The response body type: whole JSON documents or a watch stream.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A test Kubernetes API server on `127.0.0.1:0`; stops when dropped.
#[derive(Debug)]
pub struct KubeApi {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Shared>,
    task: JoinHandle<()>,
}

/// One request the server answered, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, empty when there was none.
    pub query: String,
    /// The request's `content-type`, empty when absent.
    pub content_type: String,
    /// The request body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The status the server answered.
    pub status: u16,
}

/// Where an object lives: its collection path and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// `api/v1/services` or `apis/weir.dev/v1alpha1/canaryroutes`.
    collection: String,
    /// Empty for cluster-scoped objects.
    namespace: String,
    name: String,
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    collection: String,
    /// `None`: every namespace.
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// One change, kept for watches.
#[derive(Debug, Clone)]
struct Change {
    version: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    changes: Vec<Change>,
    /// The last resource version handed out.
    version: u64,
    /// Watches from before this version get 410 Gone.
    compacted: u64,
    down: bool,
    /// How many of the next rollout-state writes to fail (see
    /// [`KubeApi::fail_state_writes`]).
    failing_state_writes: usize,
    /// Whether discovery lists the Gateway API kinds (its CRDs installed).
    gateway_api_served: bool,
    uid: u64,
    log: Vec<Recorded>,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    /// The latest resource version (and every `set_down`), for watches.
    changed: watch::Sender<u64>,
}

/// A failed request: the status code and a `Status` body.
#[derive(Debug)]
struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

// === impl KubeApi ===

impl KubeApi {
    /// Binds and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the test API server");
        let addr = listener.local_addr().expect("bound address");
        let (changed, _) = watch::channel(0);
        let state = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed,
        });
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, Infallible>(state.answer(req).await) }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        KubeApi { addr, state, task }
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this server into `dir` (namespace `default`,
    /// a fixed bearer token) and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: test\n  \
             context:\n    cluster: test\n    user: test\n    namespace: default\n\
             current-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).expect("writing the kubeconfig");
        path
    }

    /// Creates or replaces an object without preconditions, as an operator's
    /// `kubectl apply` would, and returns it as stored. `collection` is the
    /// path of its kind, for example `api/v1/services`.
    ///
    /// # Panics
    /// When `object` has no `metadata.name`.
    pub fn put(&self, collection: &str, object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("an object has metadata.name")
            .to_owned();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = Key {
            collection: collection.trim_matches('/').to_owned(),
            namespace,
            name,
        };
        let mut store = self.state.lock();
        let stored = store.write(&key, object, Write::Whole);
        self.state.notify(&store);
        stored
    }

    /// Creates an object or changes everything of it but `status`, as
    /// `kubectl apply` does for a kind with a status subresource: the status
    /// another client wrote stays, and `metadata.generation` goes up when the
    /// rest changed. Returns the object as stored.
    ///
    /// # Panics
    /// When `object` has no `metadata.name`.
    pub fn apply(&self, collection: &str, object: Value) -> Value {
        let key = Key {
            collection: collection.trim_matches('/').to_owned(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name: object["metadata"]["name"]
                .as_str()
                .expect("an object has metadata.name")
                .to_owned(),
        };
        let mut store = self.state.lock();
        let stored = store.write(&key, object, Write::Spec);
        self.state.notify(&store);
        stored
    }

    /// The stored objects of a collection, in one namespace or (`None`) in
    /// all, ordered by namespace and name.
    pub fn list(&self, collection: &str, namespace: Option<&str>) -> Vec<Value> {
        let collection = collection.trim_matches('/');
        self.state
            .lock()
            .objects
            .iter()
            .filter(|(key, _)| {
                key.collection == collection && namespace.is_none_or(|ns| key.namespace == ns)
            })
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// The stored object, if any.
    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Key {
            collection: collection.trim_matches('/').to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.state.lock().objects.get(&key).cloned()
    }

    /// Deletes an object; returns whether it existed.
    pub fn delete(&self, collection: &str, namespace: &str, name: &str) -> bool {
        let key = Key {
            collection: collection.trim_matches('/').to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let mut store = self.state.lock();
        let existed = store.remove(&key).is_some();
        self.state.notify(&store);
        existed
    }

    /// Forgets the changes up to now: a watch from an older resource version
    /// gets 410 Gone and must list again.
    pub fn compact(&self) {
        let mut store = self.state.lock();
        store.compacted = store.version;
        store.changes.clear();
        self.state.notify(&store);
    }

    /// While down, every request is answered 503 and open watches end.
    pub fn set_down(&self, down: bool) {
        let mut store = self.state.lock();
        store.down = down;
        self.state.notify(&store);
        // Wake the watches even when no version changed.
        self.state.changed.send_modify(|_| {});
    }

    /// The next `n` writes of a rollout state to a `/status` subresource (a
    /// body whose `status` names a `phase`) are answered 500 and change
    /// nothing, as an API server that failed them; other writes (command
    /// inputs, conditions) go through.
    pub fn fail_state_writes(&self, n: usize) {
        self.state.lock().failing_state_writes = n;
    }

    /// Whether discovery of `gateway.networking.k8s.io/v1` lists the Gateway
    /// API kinds (as once its CRDs are installed) or answers 404 (the start).
    pub fn set_gateway_api_served(&self, served: bool) {
        self.state.lock().gateway_api_served = served;
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().log.clone()
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().version
    }

    /// A receiver woken right after every request the server handles (with
    /// the resource version then current): to see a write the moment it is
    /// stored, by the server's own clock.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.state.changed.subscribe()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A test that panicked while holding the lock leaves usable data.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a rollout-state write is to fail, counting it.
    fn take_failing_state_write(&self) -> bool {
        let mut store = self.lock();
        if store.failing_state_writes == 0 {
            return false;
        }
        store.failing_state_writes -= 1;
        true
    }

    fn notify(&self, store: &Store) {
        self.changed.send_replace(store.version);
    }

    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_owned();
        let params = parse_query(&query);

        let is_state_write = matches!(parts.method, Method::PATCH | Method::PUT)
            && path.ends_with("/status")
            && !body["status"]["phase"].is_null();
        let response = if self.lock().down {
            Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the test API server is down",
            ))
        } else if is_state_write && self.take_failing_state_write() {
            Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the test API server failed this write",
            ))
        } else {
            self.route(&parts.method, &path, &params, &content_type, body.clone())
        };
        let status = match &response {
            Ok(Answer::Json(code, _)) => code.as_u16(),
            Ok(Answer::Watch { .. }) => 200,
            Err(failure) => failure.code.as_u16(),
        };
        self.lock().log.push(Recorded {
            method: parts.method.clone(),
            path,
            query,
            content_type,
            body,
            status,
        });
        match response {
            Ok(Answer::Json(code, value)) => json_response(code, &value),
            Ok(Answer::Watch {
                target,
                from,
                selector,
                timeout,
            }) => self.watch(target, from, selector, timeout),
            Err(failure) => json_response(failure.code, &failure.status()),
        }
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        params: &BTreeMap<String, String>,
        content_type: &str,
        body: Value,
    ) -> Result<Answer, Failure> {
        if path == "/version" {
            return Ok(Answer::Json(
                StatusCode::OK,
                json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}),
            ));
        }
        if path == GATEWAY_API_DISCOVERY {
            return if self.lock().gateway_api_served {
                Ok(Answer::Json(StatusCode::OK, gateway_api_resources()))
            } else {
                Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                ))
            };
        }
        let target = parse_path(path).ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no resource at {path}"),
            )
        })?;
        let selector = Selector::parse(params)?;
        let mut store = self.lock();
        let answer = match (method.clone(), &target.name) {
            (Method::GET, None) if is_watch(params) => {
                let from = match params.get("resourceVersion").map(String::as_str) {
                    None | Some("" | "0") => None,
                    Some(text) => Some(text.parse::<u64>().map_err(|_| {
                        Failure::new(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            format!("resourceVersion {text:?} is not a number"),
                        )
                    })?),
                };
                let timeout = params
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
                return Ok(Answer::Watch {
                    target,
                    from,
                    selector,
                    timeout,
                });
            }
            (Method::GET, None) => Answer::Json(StatusCode::OK, store.list(&target, &selector)),
            (Method::POST, None) => {
                let key = target.key_for(&body)?;
                if store.objects.contains_key(&key) {
                    return Err(Failure::new(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("{} {:?} already exists", key.collection, key.name),
                    ));
                }
                Answer::Json(StatusCode::CREATED, store.write(&key, body, Write::Whole))
            }
            (Method::GET, Some(_)) => {
                let key = target.object_key()?;
                Answer::Json(StatusCode::OK, store.existing(&key)?.clone())
            }
            (Method::PUT, Some(_)) => {
                let key = target.object_key()?;
                let current = store.existing(&key)?.clone();
                check_precondition(&current, &body)?;
                Answer::Json(StatusCode::OK, store.write(&key, body, target.write_kind()))
            }
            (Method::PATCH, Some(_)) => {
                let key = target.object_key()?;
                let current = store.existing(&key)?.clone();
                let patched = apply_patch(&current, &body, content_type)?;
                check_precondition(&current, &patched)?;
                Answer::Json(
                    StatusCode::OK,
                    store.write(&key, patched, target.write_kind()),
                )
            }
            (Method::DELETE, Some(_)) => {
                let key = target.object_key()?;
                store.existing(&key)?;
                let removed = store.remove(&key).unwrap_or(Value::Null);
                Answer::Json(StatusCode::OK, removed)
            }
            (method, _) => {
                return Err(Failure::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{method} is not supported on {path}"),
                ));
            }
        };
        self.notify(&store);
        Ok(answer)
    }

    /// A watch response: the changes after `from` (or synthetic `ADDED`
    /// events for every object when `from` is `None`), then new changes
    /// until `timeout`, the server going down, or the client leaving.
    fn watch(
        self: Arc<Self>,
        target: Target,
        from: Option<u64>,
        selector: Selector,
        timeout: Duration,
    ) -> Response<Body> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut changed = self.changed.subscribe();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // The first lines and the version they bring the watch to; `None`
            // when the version asked for is gone.
            let start: Option<(u64, Vec<Bytes>)> = {
                let store = self.lock();
                match from {
                    Some(version) if version < store.compacted => None,
                    Some(version) => Some((version, Vec::new())),
                    None => Some((
                        store.version,
                        store
                            .objects
                            .iter()
                            .filter(|(key, object)| target.holds(key) && selector.matches(object))
                            .map(|(_, object)| event_line("ADDED", object))
                            .collect(),
                    )),
                }
            };
            let Some((mut seen, lines)) = start else {
                let gone = Failure::new(
                    StatusCode::GONE,
                    "Expired",
                    format!("too old resource version: {}", from.unwrap_or_default()),
                );
                let _ = sender.send(event_line("ERROR", &gone.status())).await;
                return;
            };
            for line in lines {
                if sender.send(line).await.is_err() {
                    return;
                }
            }
            loop {
                let (lines, down) = {
                    let store = self.lock();
                    let lines: Vec<(u64, Bytes)> = store
                        .changes
                        .iter()
                        .filter(|c| c.version > seen && target.holds(&c.key))
                        .filter(|c| selector.matches(&c.object))
                        .map(|c| (c.version, event_line(c.kind, &c.object)))
                        .collect();
                    seen = seen.max(store.version);
                    (lines, store.down)
                };
                if down {
                    return;
                }
                for (_, line) in lines {
                    if sender.send(line).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    result = changed.changed() => if result.is_err() { return },
                    () = tokio::time::sleep_until(deadline) => return,
                    () = sender.closed() => return,
                }
            }
        });
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let line = receiver.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(line)), receiver))
        });
        let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(StreamBody::new(
            stream,
        )));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// What a request is answered with.
#[derive(Debug)]
enum Answer {
    Json(StatusCode, Value),
    Watch {
        target: Target,
        from: Option<u64>,
        selector: Selector,
        timeout: Duration,
    },
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Everything (creation, kinds without a status subresource, seeding).
    Whole,
    /// Everything but `status` (the object of a kind with a status subresource).
    Spec,
    /// `status` only (the `/status` subresource).
    Status,
}

// === impl Store ===

impl Store {
    fn existing(&self, key: &Key) -> Result<&Value, Failure> {
        self.objects.get(key).ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} {:?} not found", key.collection, key.name),
            )
        })
    }

    /// Stores `object` at `key` as `write` allows, with fresh metadata, and
    /// records the change for watches. Returns the stored object.
    fn write(&mut self, key: &Key, object: Value, write: Write) -> Value {
        self.version += 1;
        let current = self.objects.get(key).cloned();
        let mut stored = match (&current, write) {
            (Some(current), Write::Status) => {
                let mut next = current.clone();
                next["status"] = object.get("status").cloned().unwrap_or(Value::Null);
                next
            }
            (Some(current), Write::Spec) => {
                let mut next = object;
                if let Some(map) = next.as_object_mut() {
                    match current.get("status") {
                        Some(status) => map.insert("status".to_owned(), status.clone()),
                        None => map.remove("status"),
                    };
                }
                next
            }
            _ => object,
        };
        if !stored.is_object() {
            stored = json!({});
        }
        let generation = match &current {
            None => 1,
            Some(current) => {
                let before = current["metadata"]["generation"].as_u64().unwrap_or(1);
                if write != Write::Status && spec_of(current) != spec_of(&stored) {
                    before + 1
                } else {
                    before
                }
            }
        };
        let uid = match current.as_ref().and_then(|c| c["metadata"]["uid"].as_str()) {
            Some(uid) => uid.to_owned(),
            None => {
                self.uid += 1;
                format!("00000000-0000-4000-8000-{:012}", self.uid)
            }
        };
        let created = current
            .as_ref()
            .and_then(|c| c["metadata"]["creationTimestamp"].as_str())
            .unwrap_or("2026-01-01T00:00:00Z")
            .to_owned();
        let metadata = stored
            .as_object_mut()
            .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
        if let Some(metadata) = metadata {
            if !metadata.is_object() {
                *metadata = json!({});
            }
            metadata["name"] = json!(key.name);
            if let Some(map) = metadata.as_object_mut() {
                if key.namespace.is_empty() {
                    map.remove("namespace");
                } else {
                    map.insert("namespace".to_owned(), json!(key.namespace));
                }
            }
            metadata["resourceVersion"] = json!(self.version.to_string());
            metadata["generation"] = json!(generation);
            metadata["uid"] = json!(uid);
            metadata["creationTimestamp"] = json!(created);
        }
        let kind = if current.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key.clone(), stored.clone());
        self.changes.push(Change {
            version: self.version,
            kind,
            key: key.clone(),
            object: stored.clone(),
        });
        stored
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut removed = self.objects.remove(key)?;
        self.version += 1;
        removed["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.changes.push(Change {
            version: self.version,
            kind: "DELETED",
            key: key.clone(),
            object: removed.clone(),
        });
        Some(removed)
    }

    fn list(&self, target: &Target, selector: &Selector) -> Value {
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(key, object)| target.holds(key) && selector.matches(object))
            .map(|(_, object)| object.clone())
            .collect();
        let kind = items
            .first()
            .and_then(|o| o["kind"].as_str())
            .map_or_else(|| "List".to_owned(), |kind| format!("{kind}List"));
        json!({
            "apiVersion": api_version_of(&target.collection),
            "kind": kind,
            "metadata": {"resourceVersion": self.version.to_string()},
            "items": items,
        })
    }
}

/// Everything of an object but `metadata` and `status`.
fn spec_of(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    rest
}

// === impl Target ===

impl Target {
    fn holds(&self, key: &Key) -> bool {
        key.collection == self.collection
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
            && self.name.as_ref().is_none_or(|name| *name == key.name)
    }

    fn object_key(&self) -> Result<Key, Failure> {
        Ok(Key {
            collection: self.collection.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.clone().ok_or_else(|| {
                Failure::new(StatusCode::BAD_REQUEST, "BadRequest", "no object name")
            })?,
        })
    }

    /// The key of an object created in this collection from `body`.
    fn key_for(&self, body: &Value) -> Result<Key, Failure> {
        let name = body["metadata"]["name"].as_str().ok_or_else(|| {
            Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name: Required value",
            )
        })?;
        Ok(Key {
            collection: self.collection.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
        })
    }

    fn write_kind(&self) -> Write {
        let plural = self.collection.rsplit('/').next().unwrap_or_default();
        match (
            self.subresource.as_deref(),
            STATUS_SUBRESOURCE.contains(&plural),
        ) {
            (Some("status"), _) => Write::Status,
            (_, true) => Write::Spec,
            (_, false) => Write::Whole,
        }
    }
}

/// The discovery path of the Gateway API group at the version weir reads.
const GATEWAY_API_DISCOVERY: &str = "/apis/gateway.networking.k8s.io/v1";

/// The discovery answer for [`GATEWAY_API_DISCOVERY`] once served.
fn gateway_api_resources() -> Value {
    let verbs = json!(["delete", "get", "list", "patch", "update", "watch"]);
    let resource = |name: &str, singular: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs});
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "gateway.networking.k8s.io/v1",
        "resources": [
            resource("gatewayclasses", "gatewayclass", "GatewayClass", false),
            resource("gateways", "gateway", "Gateway", true),
            resource("httproutes", "httproute", "HTTPRoute", true),
        ],
    })
}

/// Reads `/api/v1/...` and `/apis/GROUP/VERSION/...` paths.
fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (format!("api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some((*namespace).to_owned()), rest)
        }
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Target {
        collection: format!("{prefix}/{plural}"),
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

/// `api/v1` → `v1`; `apis/weir.dev/v1alpha1` → `weir.dev/v1alpha1`.
fn api_version_of(collection: &str) -> String {
    let mut parts: Vec<&str> = collection.split('/').collect();
    parts.pop();
    match parts.as_slice() {
        ["api", version] => (*version).to_owned(),
        ["apis", group, version] => format!("{group}/{version}"),
        _ => "v1".to_owned(),
    }
}

fn is_watch(params: &BTreeMap<String, String>) -> bool {
    params.get("watch").is_some_and(|w| w == "true" || w == "1")
}

/// Label and field selectors of a list or watch.
#[derive(Debug, Clone, Default)]
struct Selector {
    /// `(label, Some(value), equal)`, or `(label, None, _)` for existence.
    labels: Vec<(String, Option<String>, bool)>,
    /// `(field path, value)`: `metadata.name` or `metadata.namespace`.
    fields: Vec<(String, String)>,
}

// === impl Selector ===

impl Selector {
    fn parse(params: &BTreeMap<String, String>) -> Result<Selector, Failure> {
        let mut selector = Selector::default();
        for term in params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                (k.trim().to_owned(), Some(v.trim().to_owned()), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.trim().to_owned(), Some(v.trim().to_owned()), true)
            } else {
                (term.trim().to_owned(), None, true)
            };
            selector.labels.push(parsed);
        }
        for term in params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (field, value) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| {
                    Failure::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("field selector {term:?} is not field=value"),
                    )
                })?;
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("field label not supported: {field}"),
                ));
            }
            selector.fields.push((field.to_owned(), value.to_owned()));
        }
        Ok(selector)
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let labels_match = self.labels.iter().all(|(key, value, equal)| {
            let actual = labels.get(key).and_then(Value::as_str);
            match (value, actual) {
                (None, actual) => actual.is_some(),
                (Some(value), Some(actual)) => (value == actual) == *equal,
                (Some(_), None) => !*equal,
            }
        });
        let fields_match = self.fields.iter().all(|(field, value)| {
            let leaf = field.trim_start_matches("metadata.");
            object["metadata"][leaf].as_str() == Some(value.as_str())
        });
        labels_match && fields_match
    }
}

/// 409 when `next` names a `resourceVersion` other than `current`'s.
fn check_precondition(current: &Value, next: &Value) -> Result<(), Failure> {
    let wanted = next["metadata"]["resourceVersion"].as_str();
    let actual = current["metadata"]["resourceVersion"].as_str();
    match wanted {
        Some(wanted) if !wanted.is_empty() && Some(wanted) != actual => Err(Failure::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled: the object has been modified; please apply \
                 your changes to the latest version and try again (resourceVersion {wanted}, \
                 stored {})",
                actual.unwrap_or_default()
            ),
        )),
        _ => Ok(()),
    }
}

/// `current` with `patch` applied as its content type says.
fn apply_patch(current: &Value, patch: &Value, content_type: &str) -> Result<Value, Failure> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+yaml"
        | "application/apply-patch+json" => {
            let mut next = current.clone();
            merge_patch(&mut next, patch);
            Ok(next)
        }
        "application/json-patch+json" => json_patch(current, patch),
        other => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the patch content type {other:?} is not supported"),
        )),
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// RFC 6902 with `add`, `replace`, `remove` and `test`.
fn json_patch(current: &Value, patch: &Value) -> Result<Value, Failure> {
    let invalid =
        |message: String| Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    let ops = patch
        .as_array()
        .ok_or_else(|| invalid("a JSON patch is an array".to_owned()))?;
    let mut next = current.clone();
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| invalid(format!("patch operation without a path: {op}")))?;
        let (parent_path, leaf) = path
            .rsplit_once('/')
            .ok_or_else(|| invalid(format!("bad JSON pointer {path:?}")))?;
        let leaf = leaf.replace("~1", "/").replace("~0", "~");
        match op["op"].as_str() {
            Some("test") => {
                if next.pointer(path) != Some(&op["value"]) {
                    return Err(invalid(format!("test of {path} failed")));
                }
            }
            Some(kind @ ("add" | "replace" | "remove")) => {
                let parent = next
                    .pointer_mut(parent_path)
                    .ok_or_else(|| invalid(format!("no parent for {path}")))?;
                match (kind, parent) {
                    ("remove", Value::Object(map)) => {
                        map.remove(&leaf)
                            .ok_or_else(|| invalid(format!("nothing to remove at {path}")))?;
                    }
                    (_, Value::Object(map)) => {
                        if kind == "replace" && !map.contains_key(&leaf) {
                            return Err(invalid(format!("nothing to replace at {path}")));
                        }
                        map.insert(leaf, op["value"].clone());
                    }
                    (_, Value::Array(items)) => {
                        let index = if leaf == "-" {
                            items.len()
                        } else {
                            leaf.parse::<usize>()
                                .map_err(|_| invalid(format!("bad index in {path}")))?
                        };
                        match kind {
                            "add" if index <= items.len() => {
                                items.insert(index, op["value"].clone())
                            }
                            "replace" if index < items.len() => items[index] = op["value"].clone(),
                            "remove" if index < items.len() => {
                                items.remove(index);
                            }
                            _ => return Err(invalid(format!("index out of range in {path}"))),
                        }
                    }
                    _ => return Err(invalid(format!("{path} is not inside an object or array"))),
                }
            }
            _ => return Err(invalid(format!("unsupported patch operation {op}"))),
        }
    }
    Ok(next)
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

// === impl Failure ===

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
        }
    }

    /// The `Status` object the real API server answers errors with.
    fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        })
    }
}

#[cfg(test)]
mod tests;
