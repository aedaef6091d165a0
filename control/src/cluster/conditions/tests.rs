use super::*;

const T0: u64 = 1_700_000_000_000;

fn problem(field_or_role: &str, reason: &'static str, message: &str) -> RouteProblem {
    RouteProblem {
        field_or_role: field_or_role.to_owned(),
        reason,
        message: message.to_owned(),
    }
}

fn condition(type_: &str, status: &str, message: &str, at: u64) -> StatusCondition {
    StatusCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: if status == "True" {
            type_.to_owned()
        } else {
            "Other".to_owned()
        },
        message: message.to_owned(),
        last_transition_time: Some(format_time(at)),
    }
}

#[test]
fn a_problem_becomes_a_true_condition_beside_the_phase_conditions() {
    let previous = vec![condition("Ready", "True", "no rollout", T0)];
    let problems = [
        problem(
            "stable",
            SERVICE_MISSING,
            "the stable Service `shop/a` does not exist",
        ),
        problem(
            "canary",
            SERVICE_MISSING,
            "the canary Service `shop/b` does not exist",
        ),
    ];
    let update = update(&previous, &problems, true, T0 + 5).expect("a change");
    assert_eq!(update.conditions.len(), 2, "{update:?}");
    assert_eq!(update.conditions[0], previous[0]);
    let missing = &update.conditions[1];
    assert_eq!(missing.type_, "ServiceMissing");
    assert_eq!(missing.status, "True");
    assert_eq!(missing.reason, "ServiceMissing");
    assert_eq!(
        missing.message,
        "stable: the stable Service `shop/a` does not exist; canary: the canary Service `shop/b` does not exist"
    );
    assert_eq!(missing.last_transition_time, Some(format_time(T0 + 5)));
    assert_eq!(
        update.appeared,
        vec![("ServiceMissing", missing.message.clone())]
    );
}

#[test]
fn a_condition_already_written_changes_nothing_and_tells_no_event() {
    let problems = [problem(
        "spec.strategy.steps[0].pause.duration",
        INVALID,
        "not a duration",
    )];
    let first = update(&[], &problems, true, T0).expect("a change");
    assert_eq!(first.appeared.len(), 1);
    assert_eq!(update(&first.conditions, &problems, true, T0 + 1000), None);
}

#[test]
fn a_problem_gone_sets_its_condition_false_and_one_never_set_stays_absent() {
    let previous = vec![
        condition("Invalid", "True", "spec.pathPrefix: bad", T0),
        condition("Progressing", "False", "no rollout", T0),
    ];
    let update = update(&previous, &[], true, T0 + 10).expect("a change");
    assert_eq!(update.conditions.len(), 2, "{update:?}");
    let invalid = &update.conditions[0];
    assert_eq!(
        (
            invalid.type_.as_str(),
            invalid.status.as_str(),
            invalid.reason.as_str()
        ),
        ("Invalid", "False", "Valid")
    );
    assert_eq!(invalid.last_transition_time, Some(format_time(T0 + 10)));
    assert!(update.appeared.is_empty());
    assert_eq!(super::update(&update.conditions, &[], true, T0 + 20), None);
}

#[test]
fn a_changed_message_is_told_again_and_keeps_the_transition_time() {
    let previous = vec![condition(
        "PortMissing",
        "True",
        "stable: no port `web`",
        T0,
    )];
    let problems = [problem("stable", PORT_MISSING, "no port `admin`")];
    let update = update(&previous, &problems, true, T0 + 10).expect("a change");
    assert_eq!(update.conditions[0].message, "stable: no port `admin`");
    assert_eq!(
        update.conditions[0].last_transition_time,
        Some(format_time(T0))
    );
    assert_eq!(update.appeared.len(), 1);
}

mod against_the_api {
    //! The requests of [`ProblemReporter`] against kube's mocked client.

    use std::sync::Arc;
    use std::time::Duration;

    use http::{Request, Response};
    use http_body_util::BodyExt as _;
    use kube::client::Body;
    use serde_json::{Value, json};
    use tokio::runtime::Handle;
    use tower_test::mock;

    use super::*;

    const GUARD: Duration = Duration::from_secs(10);
    const STATUS_PATH: &str = "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/broken/status";
    const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

    type ApiHandle = mock::Handle<Request<Body>, Response<Body>>;

    fn object(resource_version: &str, conditions: &Value) -> CanaryRoute {
        serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "CanaryRoute",
            "metadata": {"name": "broken", "namespace": "shop", "uid": "uid-broken",
                         "resourceVersion": resource_version},
            "spec": {"stable": {"revision": "v1", "endpoints": ["10.0.0.1:80"]}},
            "status": {"phase": "Healthy", "conditions": conditions},
        }))
        .expect("a CanaryRoute")
    }

    /// A status store and a problem reporter of `weir-0` writing through
    /// kube's mocked client, and the handle that answers for the API server.
    fn reporter() -> (Arc<StatusStore>, Arc<ProblemReporter>, ApiHandle) {
        let (service, api) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let statuses = Arc::new(StatusStore::new(
            client.clone(),
            Handle::current(),
            "weir-0",
        ));
        (
            statuses,
            Arc::new(ProblemReporter::new(client, "weir-0")),
            api,
        )
    }

    async fn next(
        handle: &mut ApiHandle,
    ) -> (String, String, Value, mock::SendResponse<Response<Body>>) {
        let (request, respond) = tokio::time::timeout(GUARD, handle.next_request())
            .await
            .expect("a request before the guard's deadline")
            .expect("the service is still in use");
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.expect("the body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (
            parts.method.to_string(),
            parts.uri.path().to_owned(),
            body,
            respond,
        )
    }

    /// Every CanaryRoute of `objects`, as served.
    fn served_all(objects: &ClusterObjects) -> BTreeSet<String> {
        objects
            .canary_routes
            .keys()
            .map(ToString::to_string)
            .collect()
    }

    fn answer(respond: mock::SendResponse<Response<Body>>, code: u16, body: &Value) {
        let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("JSON")));
        *response.status_mut() = http::StatusCode::from_u16(code).expect("a code");
        respond.send_response(response);
    }

    #[tokio::test]
    async fn the_leader_writes_the_whole_list_with_the_resource_version_then_one_event() {
        let (statuses, reporter, mut api) = reporter();
        let ready = json!([{"type": "Ready", "status": "True", "reason": "NoRollout",
                            "message": "no rollout", "lastTransitionTime": "2023-11-14T22:13:20.000Z"}]);
        let seen = object("7", &ready);
        statuses.observe("shop/broken", &seen);
        let mut objects = ClusterObjects::default();
        objects
            .canary_routes
            .insert(ObjectKey::new("shop", "broken"), Arc::new(seen));
        let problems: BTreeMap<String, Vec<RouteProblem>> = [(
            "shop/broken".to_owned(),
            vec![problem(
                "spec.strategy.steps[1].pause.duration",
                INVALID,
                "`soon` is not a duration",
            )],
        )]
        .into();

        // A follower writes nothing.
        reporter
            .report(
                false,
                &objects,
                problems.clone(),
                served_all(&objects),
                &statuses,
            )
            .await;
        assert!(futures_util::FutureExt::now_or_never(api.next_request()).is_none());

        let reporting = tokio::spawn({
            let (reporter, statuses, objects, problems) = (
                Arc::clone(&reporter),
                Arc::clone(&statuses),
                objects.clone(),
                problems.clone(),
            );
            async move {
                reporter
                    .report(true, &objects, problems, served_all(&objects), &statuses)
                    .await
            }
        });
        let (method, path, body, respond) = next(&mut api).await;
        assert_eq!((method.as_str(), path.as_str()), ("PATCH", STATUS_PATH));
        assert_eq!(body["metadata"], json!({"resourceVersion": "7"}));
        let conditions = body["status"]["conditions"].as_array().expect("a list");
        assert_eq!(conditions.len(), 2, "{body:#}");
        assert_eq!(
            conditions[0], ready[0],
            "the phase conditions read are kept"
        );
        assert_eq!(conditions[1]["type"], "Invalid");
        assert_eq!(conditions[1]["status"], "True");
        assert_eq!(
            conditions[1]["message"],
            "spec.strategy.steps[1].pause.duration: `soon` is not a duration"
        );
        let written = object("8", &body["status"]["conditions"]);
        answer(respond, 200, &serde_json::to_value(&written).expect("JSON"));

        let (method, path, event, respond) = next(&mut api).await;
        assert_eq!((method.as_str(), path.as_str()), ("POST", EVENTS_PATH));
        assert_eq!(event["reason"], "Invalid");
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["regarding"]["uid"], "uid-broken");
        assert_eq!(event["note"], conditions[1]["message"]);
        answer(respond, 201, &event);
        reporting.await.expect("the report ends");

        // Written once: the same problems again send nothing.
        reporter
            .report(true, &objects, problems, served_all(&objects), &statuses)
            .await;
        assert!(futures_util::FutureExt::now_or_never(api.next_request()).is_none());
        assert_eq!(
            statuses.resource_version("shop/broken").as_deref(),
            Some("8")
        );
    }

    /// A missing Service is said once it has lasted [`GRACE`]: a
    /// CanaryRoute applied with its Services may be read before them, and
    /// one that appears meanwhile is never said.
    #[tokio::test(start_paused = true)]
    async fn a_missing_service_is_said_once_it_has_lasted_the_grace() {
        let (statuses, reporter, mut api) = reporter();
        let seen = object("7", &json!([]));
        statuses.observe("shop/broken", &seen);
        let mut objects = ClusterObjects::default();
        objects
            .canary_routes
            .insert(ObjectKey::new("shop", "broken"), Arc::new(seen));
        let missing: BTreeMap<String, Vec<RouteProblem>> = [(
            "shop/broken".to_owned(),
            vec![problem("canary", SERVICE_MISSING, "no Service `shop/v2`")],
        )]
        .into();
        let report = |problems: &BTreeMap<String, Vec<RouteProblem>>| {
            let (reporter, statuses, objects, problems) = (
                Arc::clone(&reporter),
                Arc::clone(&statuses),
                objects.clone(),
                problems.clone(),
            );
            async move {
                reporter
                    .report(true, &objects, problems, served_all(&objects), &statuses)
                    .await;
            }
        };

        // Found within the grace: nothing is written.
        report(&missing).await;
        assert!(futures_util::FutureExt::now_or_never(api.next_request()).is_none());
        tokio::time::advance(GRACE / 2).await;
        report(&BTreeMap::new()).await;
        tokio::time::advance(GRACE).await;
        reporter.retry(true, &statuses).await;
        assert!(futures_util::FutureExt::now_or_never(api.next_request()).is_none());

        // Missing for the whole grace: said at the next retry.
        report(&missing).await;
        tokio::time::advance(GRACE / 2).await;
        reporter.retry(true, &statuses).await;
        assert!(futures_util::FutureExt::now_or_never(api.next_request()).is_none());
        tokio::time::advance(GRACE / 2).await;
        let retrying = tokio::spawn({
            let (reporter, statuses) = (Arc::clone(&reporter), Arc::clone(&statuses));
            async move { reporter.retry(true, &statuses).await }
        });
        let (method, path, body, respond) = next(&mut api).await;
        assert_eq!((method.as_str(), path.as_str()), ("PATCH", STATUS_PATH));
        let conditions = body["status"]["conditions"].as_array().expect("a list");
        assert_eq!(conditions[0]["type"], "ServiceMissing");
        assert_eq!(conditions[0]["status"], "True");
        let written = object("8", &body["status"]["conditions"]);
        answer(respond, 200, &serde_json::to_value(&written).expect("JSON"));
        let (_, path, event, respond) = next(&mut api).await;
        assert_eq!(path, EVENTS_PATH);
        answer(respond, 201, &event);
        retrying.await.expect("the retry ends");
    }

    /// A round over many broken routes writes at most
    /// [`CONCURRENT_WRITES`] of them at once, and all of them in the end.
    #[tokio::test]
    async fn a_round_writes_a_bounded_number_of_routes_at_once() {
        const ROUTES: usize = CONCURRENT_WRITES + 4;
        let (statuses, reporter, mut api) = reporter();
        let mut objects = ClusterObjects::default();
        let mut problems = BTreeMap::new();
        for i in 0..ROUTES {
            let name = format!("broken-{i}");
            let mut seen = object("1", &json!([]));
            seen.metadata.name = Some(name.clone());
            statuses.observe(&format!("shop/{name}"), &seen);
            objects
                .canary_routes
                .insert(ObjectKey::new("shop", &name), Arc::new(seen));
            problems.insert(
                format!("shop/{name}"),
                vec![problem("spec.pathPrefix", INVALID, "not a path")],
            );
        }
        let reporting = tokio::spawn({
            let (reporter, statuses) = (Arc::clone(&reporter), Arc::clone(&statuses));
            async move {
                reporter
                    .report(true, &objects, problems, served_all(&objects), &statuses)
                    .await
            }
        });

        let mut held = Vec::new();
        while held.len() < CONCURRENT_WRITES {
            let (method, path, body, respond) = next(&mut api).await;
            assert_eq!(method, "PATCH", "{path}");
            held.push((path, body, respond));
        }
        let more = tokio::time::timeout(Duration::from_millis(300), api.next_request()).await;
        assert!(
            more.is_err(),
            "a write beyond the first {CONCURRENT_WRITES} started before any ended"
        );

        let (mut patched, mut events) = (std::collections::BTreeSet::new(), 0);
        let mut answer_patch = |path: String, body: Value, respond| {
            let name = path
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .expect("a name")
                .to_owned();
            let mut written = object("2", &body["status"]["conditions"]);
            written.metadata.name = Some(name.clone());
            answer(respond, 200, &serde_json::to_value(&written).expect("JSON"));
            assert!(patched.insert(name), "{path} written twice");
        };
        for (path, body, respond) in held {
            answer_patch(path, body, respond);
        }
        while events < ROUTES {
            let (method, path, body, respond) = next(&mut api).await;
            if method == "PATCH" {
                answer_patch(path, body, respond);
            } else {
                assert_eq!((method.as_str(), path.as_str()), ("POST", EVENTS_PATH));
                answer(respond, 201, &body);
                events += 1;
            }
        }
        reporting.await.expect("the report ends");
        assert_eq!(patched.len(), ROUTES, "{patched:?}");
    }

    /// A state write recorded while a problem write reads the status (the
    /// state writes run off the runtime, beside the status writer)
    /// must never leave the problem write with the conditions of one object
    /// and the `resourceVersion` of the next: its precondition would pass
    /// and its list would replace the conditions the state write made.
    /// Another thread records newer objects as fast as it can while the
    /// reporter writes again and again, until enough writes had a record
    /// land while they ran; each PATCH must carry the conditions of the
    /// version it names.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_problem_write_carries_the_conditions_of_the_version_it_names() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        // Writes during which the other thread recorded a newer object.
        const OVERLAPPING: usize = 200;
        const LIMIT: Duration = Duration::from_secs(30);
        let (statuses, reporter, mut api) = reporter();
        // Each version's `Ready` condition names the version.
        let template = object(
            "1",
            &json!([{"type": "Ready", "status": "True", "reason": "NoRollout",
                     "message": "version 1", "lastTransitionTime": "2023-11-14T22:13:20.000Z"}]),
        );
        statuses.observe("shop/broken", &template);
        let stop = Arc::new(AtomicBool::new(false));
        let recorded = Arc::new(AtomicU64::new(1));
        let recorder = std::thread::spawn({
            let (statuses, stop, recorded) = (
                Arc::clone(&statuses),
                Arc::clone(&stop),
                Arc::clone(&recorded),
            );
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let version = recorded.load(Ordering::Relaxed) + 1;
                    let mut newer = template.clone();
                    newer.metadata.resource_version = Some(version.to_string());
                    if let Some(status) = newer.status.as_mut() {
                        status.conditions[0].message = format!("version {version}");
                    }
                    statuses.observe("shop/broken", &newer);
                    recorded.store(version, Ordering::Relaxed);
                }
            }
        });
        let problems = [problem("spec.pathPrefix", INVALID, "not a path")];
        let mut mismatched = Vec::new();
        let (mut writes, mut overlapping) = (0, 0);
        let started = std::time::Instant::now();
        while overlapping < OVERLAPPING && started.elapsed() < LIMIT {
            writes += 1;
            let before = recorded.load(Ordering::Relaxed);
            let writing = reporter.write(
                "shop/broken",
                Some("uid-broken"),
                &problems,
                true,
                &statuses,
                T0,
            );
            let answering = async {
                let (method, path, body, respond) = next(&mut api).await;
                assert_eq!((method.as_str(), path.as_str()), ("PATCH", STATUS_PATH));
                let version = body["metadata"]["resourceVersion"]
                    .as_str()
                    .expect("a resourceVersion")
                    .to_owned();
                let read = body["status"]["conditions"][0]["message"].clone();
                if read != format!("version {version}") {
                    mismatched.push((version, read));
                }
                // Refused: the next write reads again.
                answer(
                    respond,
                    409,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "Conflict", "code": 409, "message": "changed"}),
                );
            };
            let (written, ()) = tokio::join!(writing, answering);
            assert!(written.is_err(), "a refused write is an error");
            if recorded.load(Ordering::Relaxed) > before {
                overlapping += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        recorder.join().expect("the recorder ends");
        assert!(
            overlapping >= OVERLAPPING,
            "a newer object recorded during only {overlapping} of {writes} writes in {LIMIT:?}"
        );
        assert!(
            mismatched.is_empty(),
            "{} of {writes} writes carried the conditions of another version, e.g. \
             resourceVersion {:?} with {:?}",
            mismatched.len(),
            mismatched.first().map(|m| &m.0),
            mismatched.first().map(|m| &m.1),
        );
    }
}

#[test]
fn a_route_not_served_is_not_ready_and_says_why() {
    let previous = vec![condition("Ready", "True", "no rollout", T0)];
    let problems = [problem("spec.pathPrefix", INVALID, "must start with /")];
    let update = update(&previous, &problems, false, T0 + 5).expect("a change");
    let ready = &update.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "False", NOT_SERVED)
    );
    assert_eq!(
        ready.message,
        "the route is not served: see the Invalid condition"
    );
    assert_eq!(ready.last_transition_time, Some(format_time(T0 + 5)));
    // Written once; served again, Ready is left to the rollout state's
    // write.
    assert_eq!(
        super::update(&update.conditions, &problems, false, T0 + 9),
        None
    );
    assert_eq!(
        super::update(&update.conditions, &problems, true, T0 + 9),
        None
    );
}
