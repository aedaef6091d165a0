//! The rule of [`super`] on its own, then on the admin port with real
//! sockets: clients holding unfinished request heads cannot keep a probe out.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn closed(place: &Place) -> bool {
    let connections = place.connections.lock();
    !connections.open.iter().any(|o| o.id == place.id)
}

#[test]
fn a_source_keeps_its_share_of_waiting_connections_and_no_more() {
    let connections = Arc::new(Connections::new(Limits {
        connections: 100,
        waiting_per_source: 3,
    }));
    // Past their grace (young ones are the next test's).
    let grown = |place: &Place| connections.grace_over(place.id);
    let a: Vec<Place> = (0..3).map(|_| connections.add(ip("10.0.0.1"))).collect();
    let other = connections.add(ip("10.0.0.2"));
    a.iter().chain([&other]).for_each(grown);
    assert!(a.iter().all(|p| !closed(p)));
    // A fourth from 10.0.0.1 closes its own oldest, not another's.
    let fourth = connections.add(ip("10.0.0.1"));
    assert!(closed(&a[0]));
    assert!(!closed(&a[1]) && !closed(&a[2]) && !closed(&other) && !closed(&fourth));
    grown(&fourth);
    // A connection being answered is not counted, nor closed.
    let _answering = a[1].answering();
    let fifth = connections.add(ip("10.0.0.1"));
    assert!(!closed(&a[1]) && !closed(&a[2]));
    grown(&fifth);
    let _sixth = connections.add(ip("10.0.0.1"));
    assert!(!closed(&a[1]), "answering");
    assert!(closed(&a[2]));
    assert_eq!(connections.counts(), (5, 4, 1));
}

#[test]
fn a_young_connection_over_its_share_is_closed_only_once_its_grace_is_over() {
    let connections = Arc::new(Connections::new(Limits {
        connections: 100,
        waiting_per_source: 3,
    }));
    let burst: Vec<Place> = (0..6).map(|_| connections.add(ip("127.0.0.1"))).collect();
    // Three over the share, none closed while young.
    assert!(burst.iter().all(|p| !closed(p)));
    assert_eq!(connections.counts(), (6, 6, 0));
    // The oldest has its head whole within its grace: kept. The next two
    // are still waiting when theirs is over: closed then, and only then.
    let answering = burst[0].answering();
    burst[1].spoke();
    connections.grace_over(burst[0].id);
    connections.grace_over(burst[1].id);
    assert!(!closed(&burst[0]) && closed(&burst[1]) && !closed(&burst[2]));
    for place in &burst[2..] {
        connections.grace_over(place.id);
    }
    assert!(closed(&burst[2]));
    assert!(burst[3..].iter().all(|p| !closed(p)), "within the share");
    // Answered, waiting again for its next head. Past their grace, the
    // oldest over the share are closed as soon as a new one comes.
    drop(answering);
    let late = connections.add(ip("127.0.0.1"));
    assert!(closed(&burst[0]) && closed(&burst[3]));
    assert!(!closed(&burst[4]) && !closed(&burst[5]) && !closed(&late));
    // Another source has a share of its own.
    let other: Vec<Place> = (0..3).map(|_| connections.add(ip("10.0.0.2"))).collect();
    assert!(other.iter().all(|p| !closed(p)));
    assert!(!closed(&burst[4]) && !closed(&burst[5]) && !closed(&late));
    assert_eq!(connections.counts(), (6, 6, 0));
}

#[test]
fn a_young_connection_is_kept_when_its_source_is_back_within_its_share() {
    let connections = Arc::new(Connections::new(Limits {
        connections: 100,
        waiting_per_source: 3,
    }));
    let mut burst: Vec<Place> = (0..5).map(|_| connections.add(ip("127.0.0.1"))).collect();
    // Two over the share, marked while young; then the client closes two
    // others before their grace is over.
    burst.truncate(3);
    for place in &burst {
        connections.grace_over(place.id);
    }
    assert!(burst.iter().all(|p| !closed(p)), "back within the share");
    // Marked once only: over the share later, the oldest go as usual.
    let late = connections.add(ip("127.0.0.1"));
    assert!(closed(&burst[0]) && !closed(&burst[1]) && !closed(&late));
}

#[test]
fn at_the_cap_the_source_with_the_most_waiting_gives_a_place() {
    let connections = Arc::new(Connections::new(Limits {
        connections: 6,
        waiting_per_source: 6,
    }));
    let first = connections.add(ip("10.0.0.9"));
    let heavy: Vec<Place> = (0..3).map(|_| connections.add(ip("10.0.0.1"))).collect();
    let light: Vec<Place> = (0..2).map(|_| connections.add(ip("10.0.0.2"))).collect();
    // 10.0.0.1 holds the most waiting: its oldest goes, though
    // 10.0.0.9's is older.
    assert!(connections.make_room());
    assert!(closed(&heavy[0]) && !closed(&first));
    // 10.0.0.1 and 10.0.0.2 hold two each: the older one goes.
    assert!(connections.make_room());
    assert!(closed(&heavy[1]) && !closed(&light[0]));
    // Answering connections are never chosen; with none waiting, no
    // room is made.
    let _busy = [&first, &heavy[2], &light[0], &light[1]].map(|p| p.answering());
    assert!(!connections.make_room());
    assert_eq!(connections.counts(), (4, 0, 4));
}

#[test]
fn a_place_is_given_back_and_answering_ends_with_the_body() {
    let connections = Arc::new(Connections::new(Limits::DEFAULT));
    let place = connections.add(ip("127.0.0.1"));
    assert_eq!(connections.counts(), (1, 1, 0));
    place.spoke();
    assert_eq!(connections.counts(), (1, 0, 0));
    let body = place
        .answering()
        .body(AdminBody::from(http_body_util::Full::new(
            Bytes::from_static(b"ok"),
        )));
    assert_eq!(connections.counts(), (1, 0, 1));
    drop(body);
    assert_eq!(connections.counts(), (1, 0, 0));
    drop(place);
    assert_eq!(connections.counts(), (0, 0, 0));
}

#[test]
fn sources_are_addresses_and_ipv6_prefixes() {
    let v6 = |tail: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, tail));
    assert_eq!(Source::of(v6(1)), Source::of(v6(2)));
    assert_ne!(
        Source::of(v6(1)),
        Source::of(ip("2001:db8:1:3::1")),
        "another /64"
    );
    assert_eq!(
        Source::of(ip("::ffff:10.0.0.1")),
        Source::of(ip("10.0.0.1"))
    );
    assert_ne!(Source::of(ip("10.0.0.1")), Source::of(ip("10.0.0.2")));
}

// === on the admin port ===

/// Far less than the 10 s an unfinished head is otherwise given: what is
/// done within this is done to make room.
const AT_ONCE: Duration = Duration::from_secs(5);

/// The start of a request head, never finished.
const UNFINISHED: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: admin.test\r\n";

/// An admin port on 127.0.0.1 with `limits`, and its connections.
struct Port {
    addr: SocketAddr,
    connections: Arc<Connections>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Port {
    async fn start(limits: Limits) -> Port {
        let text = crate::fixtures::config_text(
            Some(("r", "w")),
            &crate::fixtures::route("web", Some("[{setWeight: 20}]")),
        );
        let in_memory = crate::fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let state = Arc::new(super::super::AdminState::new(Arc::clone(
            &in_memory.process,
        )));
        state.set_ready(true);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(Connections::new(limits));
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(super::super::serve_with(
            listener,
            state,
            stop_rx,
            Arc::clone(&connections),
        ));
        Port {
            addr,
            connections,
            stop,
            server,
        }
    }

    /// A connection that sent `bytes`.
    async fn send(&self, bytes: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        stream
    }

    /// Waits until the port holds `open` connections, none of them silent
    /// (each one's first bytes read), `answering` of them answering.
    async fn holds(&self, open: usize, answering: usize) {
        let connections = Arc::clone(&self.connections);
        weir_e2e::wait_until(AT_ONCE, "the connections read", || {
            let counts = connections.counts();
            async move { (counts == (open, 0, answering)).then_some(()) }
        })
        .await;
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = weir_e2e::within(AT_ONCE, "the admin server stops", self.server).await;
    }
}

/// `GET /healthz` on a new connection answers 200 at once.
async fn probe(addr: SocketAddr) {
    let answer = weir_e2e::within(AT_ONCE, "GET /healthz", weir_e2e::get(addr, "/healthz"))
        .await
        .expect("an answer to the probe");
    assert_eq!(answer.status, 200);
}

/// Whether the server closed `stream`, waiting up to [`AT_ONCE`].
async fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(AT_ONCE, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Still open, nothing received.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_connections_from_one_address_is_answered_whole() {
    const BURST: usize = 60;
    const HEALTHZ: &[u8] =
        b"GET /healthz HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n";
    const { assert!(BURST > MAX_WAITING_PER_SOURCE) };
    let port = Port::start(Limits::DEFAULT).await;
    // All connected, and accepted, before any sends its head.
    let mut burst = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        burst.push(TcpStream::connect(port.addr).await.expect("connect"));
    }
    let connections = Arc::clone(&port.connections);
    weir_e2e::wait_until(AT_ONCE, "the burst accepted", || {
        let accepted = connections.lock().next_id;
        async move { (accepted == BURST as u64).then_some(()) }
    })
    .await;
    let mut sent = Vec::with_capacity(BURST);
    for stream in &mut burst {
        sent.push(stream.write_all(HEALTHZ).await);
    }
    let mut unanswered = Vec::new();
    for (k, (stream, sent)) in burst.iter_mut().zip(sent).enumerate() {
        let mut answer = Vec::new();
        let read = weir_e2e::within(AT_ONCE, "an answer", stream.read_to_end(&mut answer)).await;
        if sent.is_err() || read.is_err() || !answer.starts_with(b"HTTP/1.1 200") {
            unanswered.push(k);
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of {BURST} not answered: {unanswered:?}",
        unanswered.len()
    );
    port.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_heads_from_one_address_cannot_keep_a_probe_out() {
    let port = Port::start(Limits::DEFAULT).await;
    let holders = MAX_CONNECTIONS + 44;
    let mut held = Vec::with_capacity(holders);
    for _ in 0..holders {
        held.push(port.send(UNFINISHED).await);
    }
    // The address keeps its newest MAX_WAITING_PER_SOURCE; the others are
    // closed as the new ones come, long before their heads' 10 s are up.
    let kept = holders - MAX_WAITING_PER_SOURCE;
    for (k, stream) in held[..kept].iter_mut().enumerate() {
        assert!(closed_at_once(stream).await, "unfinished head {k} is kept");
    }
    probe(port.addr).await;
    // The probe took the place of the oldest one left.
    assert!(
        closed_at_once(&mut held[kept]).await,
        "the oldest left is kept"
    );
    assert!(held[kept + 1..].iter().all(still_open));
    port.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_port_gives_a_waiting_place_to_a_probe_never_an_answering_one() {
    let limits = Limits {
        connections: 8,
        waiting_per_source: 64,
    };
    let port = Port::start(limits).await;
    // A command whose body never comes is being answered (until its 10 s
    // are up): it is the oldest, but keeps its place.
    let bodiless = port
        .send(
            b"POST /api/v1/routes/web/pause HTTP/1.1\r\nHost: admin.test\r\nAuthorization: Bearer w\r\nContent-Length: 10\r\n\r\n",
        )
        .await;
    port.holds(1, 1).await;
    let mut held = Vec::new();
    for _ in 1..limits.connections {
        held.push(port.send(UNFINISHED).await);
    }
    port.holds(limits.connections, 1).await;
    probe(port.addr).await;
    assert!(
        closed_at_once(&mut held[0]).await,
        "the oldest waiting is kept"
    );
    assert!(still_open(&bodiless), "the command being answered was cut");
    assert!(held[1..].iter().all(still_open));
    // Full again once the probe's connection is gone: the next probe takes
    // the place of the oldest waiting one left.
    port.holds(limits.connections - 1, 1).await;
    held.push(port.send(UNFINISHED).await);
    port.holds(limits.connections, 1).await;
    probe(port.addr).await;
    assert!(closed_at_once(&mut held[1]).await);
    assert!(still_open(&bodiless));
    port.stop().await;
}
