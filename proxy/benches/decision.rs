//! Criterion benchmarks of the per-request decisions: route matching, cookie
//! parsing (weir's own parser beside the `cookie` crate's) and the role
//! decision.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use weir_config::{HostMatch, Weight};
use weir_proxy::decision::{self, HeaderVerdict, SplitParams};
use weir_proxy::routes::RouteTable;
use weir_proxy::routing::StickyCookie;

fn role_decision(c: &mut Criterion) {
    let split = SplitParams {
        has_canary: true,
        weight: Weight::from_percent_int(10),
        cohort_seed: 0x5eed,
    };
    let cookie: &[u8] = b"session=abc; weir-checkout=0123456789abcdef0123456789abcdef; theme=dark";
    c.bench_function("decide/weighted", |b| {
        b.iter(|| {
            decision::decide(
                black_box(split),
                HeaderVerdict::None,
                None,
                decision::draw(),
            )
        })
    });
    c.bench_function("decide/sticky_from_cookie_header", |b| {
        b.iter(|| {
            let key = decision::find_cookie(std::iter::once(black_box(cookie)), "weir-checkout");
            decision::decide(black_box(split), HeaderVerdict::None, key, 0)
        })
    });
    c.bench_function("client_key/new", |b| b.iter(decision::new_client_key));
    c.bench_function("cookie/find", |b| {
        b.iter(|| decision::find_cookie(std::iter::once(black_box(cookie)), "weir-checkout"))
    });
    c.bench_function("cookie/bucket", |b| {
        b.iter(|| {
            decision::cohort_bucket(
                black_box(b"0123456789abcdef0123456789abcdef"),
                black_box(0x5eed),
            )
        })
    });
    c.bench_function("decide/header_override", |b| {
        b.iter(|| {
            let verdict = decision::header_verdict("always", Some(black_box(b"always")));
            decision::decide(black_box(split), verdict, None, 0)
        })
    });
}

/// The sticky cookie read from realistic `Cookie` headers, by weir's own
/// parser (`find_cookie`, on the request path) and through the `cookie`
/// crate (`find_cookie_by_crate`); and the `Set-Cookie` the `cookie` crate
/// builds when a key is issued.
fn sticky_cookie(c: &mut Criterion) {
    const STICKY: &[u8] = b"weir-checkout=0123456789abcdef0123456789abcdef";
    // Ten cookies a shop's pages typically carry, then the sticky one.
    const AMONG_TEN: &[u8] = b"_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; \
        session=eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjoiNDIifQ.c2lnbmF0dXJl; theme=dark; lang=en-US; \
        consent=analytics%3Dyes%2Cads%3Dno; cart=3; tz=Europe%2FBerlin; ab_test=b; \
        csrftoken=Zx9Q2mK7pL4vB8nR1tY6wE3sA5dF0gH; \
        weir-checkout=0123456789abcdef0123456789abcdef";
    let cases: [(&str, &[&[u8]]); 3] = [
        ("no_cookie", &[]),
        ("sticky_alone", &[STICKY]),
        ("sticky_among_10", &[AMONG_TEN]),
    ];
    for (case, headers) in cases {
        c.bench_function(&format!("sticky_cookie/hand_written/{case}"), |b| {
            b.iter(|| decision::find_cookie(black_box(headers).iter().copied(), "weir-checkout"))
        });
        c.bench_function(&format!("sticky_cookie/cookie_crate/{case}"), |b| {
            b.iter(|| {
                decision::find_cookie_by_crate(black_box(headers).iter().copied(), "weir-checkout")
            })
        });
    }
    // A new client: the attributes rendered once per snapshot by the
    // `cookie` crate (what the request path does), against the crate
    // building the whole header for every client.
    let sticky = StickyCookie::new("weir-checkout".into(), cookie::time::Duration::hours(24));
    c.bench_function("sticky_cookie/set_cookie", |b| {
        b.iter(|| sticky.set_cookie(black_box("0123456789abcdef0123456789abcdef"), false))
    });
    c.bench_function("sticky_cookie/set_cookie_by_crate", |b| {
        b.iter(|| sticky.set_cookie_by_crate(black_box("0123456789abcdef0123456789abcdef"), false))
    });
}

fn route_matching(c: &mut Criterion) {
    let hosts: Vec<Vec<HostMatch>> = (0..50)
        .map(|i| vec![HostMatch::Exact(format!("svc{i}.example.com"))])
        .chain([vec![HostMatch::Suffix(".example.com".to_owned())], vec![]])
        .collect();
    let prefixes = ["/", "/api", "/api/v2", "/static"];
    let routes: Vec<(&[HostMatch], &str)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_slice(), prefixes[i % prefixes.len()]))
        .collect();
    let table = RouteTable::new(routes);
    c.bench_function("routes/exact_host", |b| {
        b.iter(|| table.find(black_box("svc17.example.com"), black_box("/api/v2/users")))
    });
    c.bench_function("routes/catch_all", |b| {
        b.iter(|| table.find(black_box("other.test"), black_box("/index.html")))
    });
}

criterion_group!(benches, role_decision, sticky_cookie, route_matching);
criterion_main!(benches);
