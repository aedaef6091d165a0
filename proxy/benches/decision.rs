//! Criterion benchmarks of the per-request decisions: route matching, cookie
//! parsing and the role decision.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use weir_config::{HostMatch, Weight};
use weir_proxy::decision::{self, HeaderVerdict, SplitParams};
use weir_proxy::routes::RouteTable;

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

criterion_group!(benches, role_decision, route_matching);
criterion_main!(benches);
