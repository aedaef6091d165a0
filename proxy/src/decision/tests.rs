use super::*;

fn split(percent: u32) -> SplitParams {
    SplitParams {
        has_canary: true,
        weight: Weight::from_percent_int(percent),
        cohort_seed: 42,
    }
}

#[test]
fn header_beats_sticky_and_weight() {
    let key = Some(&b"client-1"[..]);
    assert_eq!(
        decide(split(0), HeaderVerdict::Canary, key, 0),
        Role::Canary
    );
    assert_eq!(
        decide(split(100), HeaderVerdict::Stable, key, 0),
        Role::Stable
    );
}

#[test]
fn no_canary_is_always_stable() {
    let params = SplitParams {
        has_canary: false,
        ..split(100)
    };
    assert_eq!(decide(params, HeaderVerdict::Canary, None, 0), Role::Stable);
}

#[test]
fn weight_bounds_are_exact() {
    assert_eq!(decide(split(0), HeaderVerdict::None, None, 0), Role::Stable);
    assert_eq!(
        decide(split(100), HeaderVerdict::None, None, BUCKETS - 1),
        Role::Canary
    );
    let one_ppm = SplitParams {
        weight: Weight::from_ppm(1).unwrap_or_default(),
        ..split(0)
    };
    assert_eq!(decide(one_ppm, HeaderVerdict::None, None, 0), Role::Canary);
    assert_eq!(decide(one_ppm, HeaderVerdict::None, None, 1), Role::Stable);
}

/// Binomial bound: with n draws at probability p the count lies within
/// n·p ± 5·sqrt(n·p·(1-p)) except with probability below 1e-6.
fn assert_share(canary: u64, n: u64, p: f64) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (canary as f64 - mean).abs() <= 5.0 * sigma + 1.0,
        "canary {canary} of {n}, expected {mean} ± {}",
        5.0 * sigma
    );
}

#[test]
fn weighted_draw_matches_weight_with_seeded_rng() {
    let mut rng = fastrand::Rng::with_seed(7);
    for percent in [1, 10, 50, 90] {
        let n = 200_000;
        let canary = (0..n)
            .filter(|_| {
                decide(
                    split(percent),
                    HeaderVerdict::None,
                    None,
                    rng.u32(..BUCKETS),
                ) == Role::Canary
            })
            .count() as u64;
        assert_share(canary, n, f64::from(percent) / 100.0);
    }
}

#[test]
fn sticky_cohorts_match_weight_and_only_grow() {
    let keys: Vec<String> = (0..100_000).map(|i| format!("client-{i}")).collect();
    let on_canary = |percent| -> Vec<bool> {
        keys.iter()
            .map(|k| {
                decide(split(percent), HeaderVerdict::None, Some(k.as_bytes()), 0) == Role::Canary
            })
            .collect()
    };
    let at5 = on_canary(5);
    let at25 = on_canary(25);
    assert_share(
        at5.iter().filter(|&&c| c).count() as u64,
        keys.len() as u64,
        0.05,
    );
    assert_share(
        at25.iter().filter(|&&c| c).count() as u64,
        keys.len() as u64,
        0.25,
    );
    assert!(
        at5.iter().zip(&at25).all(|(&a, &b)| !a || b),
        "a client moved from canary back to stable"
    );
}

#[test]
fn a_new_rollout_picks_another_cohort() {
    let in_cohort = |seed| {
        (0..10_000)
            .map(|i| cohort_bucket(format!("client-{i}").as_bytes(), seed) < 100_000)
            .collect::<Vec<_>>()
    };
    let (a, b) = (in_cohort(1), in_cohort(2));
    let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count();
    // Independent 10 % cohorts overlap on about 1 % of clients, not 10 %.
    assert!(both < 250, "cohorts overlap on {both} of 10000 clients");
}

#[test]
fn header_verdict_reads_value_and_never() {
    assert_eq!(
        header_verdict("always", Some(b"always")),
        HeaderVerdict::Canary
    );
    assert_eq!(
        header_verdict("always", Some(b"never")),
        HeaderVerdict::Stable
    );
    // Both values are compared exactly, as SPEC 3 writes them (and as
    // ingress-nginx reads `never`): another case is another value.
    assert_eq!(
        header_verdict("always", Some(b"NEVER")),
        HeaderVerdict::None
    );
    assert_eq!(
        header_verdict("always", Some(b"Always")),
        HeaderVerdict::None
    );
    assert_eq!(
        header_verdict("always", Some(b"sometimes")),
        HeaderVerdict::None
    );
    assert_eq!(header_verdict("always", None), HeaderVerdict::None);
}

/// An HTTP/2 field value may keep the whitespace around it, which an
/// HTTP/1 parser takes off: both paths decide alike.
#[test]
fn header_verdict_ignores_whitespace_around_the_value() {
    assert_eq!(
        header_verdict("always", Some(b" \talways ")),
        HeaderVerdict::Canary
    );
    assert_eq!(
        header_verdict("always", Some(b"\tnever ")),
        HeaderVerdict::Stable
    );
    assert_eq!(
        header_verdict("always", Some(b"al ways")),
        HeaderVerdict::None
    );
}

#[test]
fn finds_cookie_among_others_and_rejects_mangled_values() {
    let headers: [&[u8]; 2] = [b"a=1; b=2", b"SRV=abc123 ; other=x"];
    assert_eq!(
        find_cookie(headers.iter().copied(), "SRV"),
        Some(&b"abc123"[..])
    );
    assert_eq!(find_cookie(headers.iter().copied(), "b"), Some(&b"2"[..]));
    assert_eq!(find_cookie(headers.iter().copied(), "missing"), None);
    let quoted: [&[u8]; 1] = [b"SRV=\"k1\""];
    assert_eq!(find_cookie(quoted.iter().copied(), "SRV"), Some(&b"k1"[..]));
    for bad in [&b"SRV="[..], b"SRV=a,b", b"SRV=a\\b"] {
        assert_eq!(
            find_cookie([bad].into_iter(), "SRV"),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("SRV={}", "k".repeat(129));
    assert_eq!(find_cookie([long.as_bytes()].into_iter(), "SRV"), None);
}

#[test]
fn client_keys_are_hex_and_distinct() {
    let a = new_client_key();
    let b = new_client_key();
    let many: std::collections::HashSet<[u8; 32]> = (0..10_000).map(|_| new_client_key()).collect();
    assert_eq!(many.len(), 10_000, "no key repeats");
    assert_ne!(a, b);
    assert!(
        many.iter()
            .flatten()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "lowercase hex digits"
    );
}

#[test]
fn the_cookie_crate_finds_the_same_key_as_the_hand_written_parser() {
    let cases: &[&[&[u8]]] = &[
        &[],
        &[b""],
        &[b"SRV=abc123"],
        &[b"a=1; b=2", b"SRV=abc123 ; other=x"],
        &[b"session=s1; theme=dark; SRV=0123456789abcdef0123456789abcdef; lang=en"],
        &[b"SRV=\"k1\""],
        &[b"SRV="],
        &[b"SRV=a,b"],
        &[b"SRV=a\\b"],
        &[b"SRVX=1; XSRV=2"],
        &[b"XSRV=2; SRV=3"],
        &[b";;  ; SRV=4;"],
        &[b"SRV=first; SRV=second"],
        &[b"noequals; SRV=5"],
        &[b"a=\xff\xfe", b"SRV=6"],
    ];
    for headers in cases {
        let hand = find_cookie(headers.iter().copied(), "SRV");
        let by_crate = find_cookie_by_crate(headers.iter().copied(), "SRV");
        assert_eq!(
            hand,
            by_crate,
            "{:?}",
            headers
                .iter()
                .map(|h| String::from_utf8_lossy(h))
                .collect::<Vec<_>>()
        );
    }
    let long = format!("SRV={}", "k".repeat(129));
    assert_eq!(
        find_cookie_by_crate([long.as_bytes()].into_iter(), "SRV"),
        None
    );
}
