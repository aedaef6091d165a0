use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::{
    self, Admin, Analysis, EndpointAddr, HeaderOverride, Listener, Route, Step, Stickiness,
    Strategy, Timeouts, TlsFiles, Upstream,
};
use crate::{HostMatch, RouteOverride, Snapshot, Weight};

const BASE_DIR: &str = "/etc/weir";

/// The example of SPEC.md section 2, with a strategy and so without
/// `canary.weight`.
const SPEC_EXAMPLE: &str = "\
listeners:
  - name: public
    address: 0.0.0.0:8080
    tls:                          # optional; enables HTTPS with ALPN h2 + http/1.1
      certFile: certs/tls.crt
      keyFile: certs/tls.key
admin:
  address: 127.0.0.1:9900
  readerToken: ${WEIR_READER_TOKEN}   # ${VAR} is replaced from the environment
  writerToken: ${WEIR_WRITER_TOKEN}
stateDir: /var/lib/weir           # persisted rollout state; default ./weir-state
routes:
  - name: checkout                # unique, [a-z0-9-], used in URLs and metric labels
    hosts: [shop.example.com]     # optional; empty = any host. Exact names and *.suffix
    pathPrefix: /                 # longest matching prefix wins
    stable:
      revision: v1
      endpoints: [127.0.0.1:9001, 127.0.0.1:9002]
    canary:                       # optional: the new revision
      revision: v2
      endpoints: [127.0.0.1:9101]
    stickiness:                   # optional
      cookie: weir-checkout       # cookie that holds the client's key
      maxAge: 24h
    canaryByHeader:               # optional; beats stickiness and weight
      name: x-canary
      value: always               # header == value -> canary; \"never\" -> stable
    timeouts: { connect: 1s, request: 30s }
    strategy:
      steps:                      # Argo Rollouts canary step syntax
        - setWeight: 5
        - pause: { duration: 30s }
        - setWeight: 25
        - pause: {}               # waits for `weir promote`
        - setWeight: 100
      analysis:                   # runs for the whole rollout
        interval: 1s
        window: 30s
        minRequests: 20
        maxErrorRate: 0.05        # canary 5xx ratio, absolute
        compareToStable: true     # fail when canary is significantly worse than stable
        maxLatencyP99: 500ms
        failureLimit: 0           # as in Argo: abort when failures exceed it
";

/// Lines 1 to 4 of every route case below; the route starts on line 5.
const HEADER: &str = "\
listeners:
  - name: public
    address: 127.0.0.1:8080
routes:
";

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Document, Diagnostics> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    parse(text, "weir.yaml", Path::new(BASE_DIR), &|name| {
        env.get(name).cloned()
    })
}

fn valid(text: &str) -> Config {
    match parse_env(text, &[]) {
        Ok(doc) => doc.config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}\nfor:\n{text}"),
    }
}

fn invalid(text: &str) -> Vec<Diagnostic> {
    match parse_env(text, &[]) {
        Ok(doc) => panic!("expected errors, got {:?}\nfor:\n{text}", doc.config),
        Err(Diagnostics(errors)) => errors,
    }
}

/// Checks that `text` gives exactly one diagnostic, at `path`, `line` and
/// `column`, whose message contains `needle`; describes any mismatch.
fn check_single(
    text: &str,
    path: &str,
    line: usize,
    column: usize,
    needle: &str,
) -> Result<(), String> {
    let errors = match parse_env(text, &[]) {
        Ok(doc) => return Err(format!("{path}: expected an error, got {:?}", doc.config)),
        Err(Diagnostics(errors)) => errors,
    };
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let [d] = errors.as_slice() else {
        return Err(format!("{path}: expected one error, got {shown:#?}"));
    };
    let want = Some(Location { line, column });
    if d.path != path || d.location != want || !d.message.contains(needle) || d.file != "weir.yaml"
    {
        return Err(format!(
            "expected weir.yaml:{line}:{column}: {path}: ...{needle}...\n     got {}",
            shown[0]
        ));
    }
    Ok(())
}

/// Runs [`check_single`] on every case and reports every mismatch at once.
#[track_caller]
fn assert_cases(cases: &[(String, &str, usize, usize, &str)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(text, path, line, column, needle)| {
            check_single(text, path, *line, *column, needle).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn at(line: usize, column: usize) -> Option<Location> {
    Some(Location { line, column })
}

fn endpoint(host: &str, port: u16) -> EndpointAddr {
    EndpointAddr {
        host: host.to_owned(),
        port,
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test addresses are valid")
}

/// A byte order mark before the file, as some editors on Windows write,
/// is not part of the first key; locations stay those the editor shows.
#[test]
fn a_byte_order_mark_before_the_file_is_skipped() {
    let vars = [("WEIR_WRITER_TOKEN", "w"), ("WEIR_READER_TOKEN", "r")];
    let plain = parse_env(SPEC_EXAMPLE, &vars).unwrap_or_else(|e| panic!("{e}"));
    let marked =
        parse_env(&format!("\u{feff}{SPEC_EXAMPLE}"), &vars).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(marked.config, plain.config);
    let errors = invalid("\u{feff}listeners: []\nroutes: []\nbogus: 1\n");
    let bogus = errors
        .iter()
        .find(|d| d.path == "bogus")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!(bogus.location, at(3, 1));
}

#[test]
fn spec_example_parses_into_the_model() {
    let vars = [
        ("WEIR_READER_TOKEN", "reader-secret"),
        ("WEIR_WRITER_TOKEN", "writer-secret"),
    ];
    let doc = parse_env(SPEC_EXAMPLE, &vars).unwrap_or_else(|e| panic!("{e}"));
    let want = Config {
        analysis_templates: Vec::new(),
        listeners: vec![Listener {
            name: "public".to_owned(),
            address: addr("0.0.0.0:8080"),
            tls: Some(TlsFiles {
                cert_file: PathBuf::from("/etc/weir/certs/tls.crt"),
                key_file: PathBuf::from("/etc/weir/certs/tls.key"),
            }),
            max_connections: model::DEFAULT_MAX_CONNECTIONS,
        }],
        admin: Admin {
            address: addr("127.0.0.1:9900"),
            reader_token: Some("reader-secret".to_owned()),
            writer_token: Some("writer-secret".to_owned()),
        },
        state_dir: PathBuf::from("/var/lib/weir"),
        routes: vec![Route {
            name: Arc::from("checkout"),
            hosts: vec![HostMatch::Exact("shop.example.com".to_owned())],
            path_prefix: "/".to_owned(),
            stable: Upstream {
                revision: Arc::from("v1"),
                endpoints: vec![endpoint("127.0.0.1", 9001), endpoint("127.0.0.1", 9002)],
                protocol: crate::UpstreamProtocol::Http1,
                tls: None,
            },
            canary: Some(Upstream {
                revision: Arc::from("v2"),
                endpoints: vec![endpoint("127.0.0.1", 9101)],
                protocol: crate::UpstreamProtocol::Http1,
                tls: None,
            }),
            fixed_weight: Weight::ZERO,
            stickiness: Some(Stickiness {
                cookie: Arc::from("weir-checkout"),
                max_age: Duration::from_secs(24 * 3600),
            }),
            canary_by_header: Some(HeaderOverride {
                name: Arc::from("x-canary"),
                value: Arc::from("always"),
            }),
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                request: Duration::from_secs(30),
                idle: model::DEFAULT_IDLE_TIMEOUT,
            },
            upgrades: vec![Arc::from("websocket")],
            stable_fallback: None,
            strategy: Some(Strategy {
                steps: vec![
                    Step::SetWeight(Weight::from_percent_int(5)),
                    Step::Pause(Some(Duration::from_secs(30))),
                    Step::SetWeight(Weight::from_percent_int(25)),
                    Step::Pause(None),
                    Step::SetWeight(Weight::FULL),
                ],
                analysis: Analysis {
                    interval: Duration::from_secs(1),
                    window: Duration::from_secs(30),
                    min_requests: 20,
                    max_error_rate: 0.05,
                    compare_to_stable: true,
                    max_latency_p99: Some(Duration::from_millis(500)),
                    failure_limit: 0,
                    max_excess_errors: None,
                    grpc_error_codes: crate::GrpcCodeSet::DEFAULT_ERRORS,
                },
                gated_by_analysis: true,
                webhooks: crate::Webhooks::default(),
                background: None,
                blue_green: None,
            }),
        }],
        kubernetes: None,
        notifications: Vec::new(),
    };
    assert_eq!(doc.config, want);
    assert_eq!(doc.file, "weir.yaml");
    assert_eq!(
        doc.index.find("routes[0].strategy.steps[2].setWeight"),
        at(33, 11)
    );
    let d = doc.diagnostic("listeners[0].tls.certFile", "cannot read the file");
    assert_eq!(
        d.to_string(),
        "weir.yaml:5:7: listeners[0].tls.certFile: cannot read the file"
    );
}

#[test]
fn argo_rollouts_steps_parse() {
    // Steps as written in the Argo Rollouts documentation: the getting-started
    // rollout (bare integers are seconds), the canary feature page (`1h`,
    // `pause: {}`) and its list of duration units.
    let text = format!(
        "{HEADER}  - name: rollouts-demo
    stable: {{ revision: blue, endpoints: [127.0.0.1:9001] }}
    canary: {{ revision: yellow, endpoints: [127.0.0.1:9101] }}
    strategy:
      steps:
      - setWeight: 20
      - pause: {{}}
      - setWeight: 40
      - pause: {{duration: 10}}
      - setWeight: 60
      - pause: {{duration: 10}}
      - setWeight: 80
      - pause: {{duration: 10}}
      - setWeight: 10
      - pause:
          duration: 1h # 1 hour
      - setWeight: 20
      - pause: {{}} # pause indefinitely
      - pause: {{ duration: 10 }}  # 10 seconds
      - pause: {{ duration: 10s }} # 10 seconds
      - pause: {{ duration: 10m }} # 10 minutes
      - pause: {{ duration: 10h }} # 10 hours
      - pause: {{ duration: \"10m\" }}
      - setWeight: 33.3333
"
    );
    let config = valid(&text);
    let strategy = config.routes[0].strategy.clone().expect("has a strategy");
    let w = Weight::from_percent_int;
    let secs = |s| Step::Pause(Some(Duration::from_secs(s)));
    assert_eq!(
        strategy.steps,
        vec![
            Step::SetWeight(w(20)),
            Step::Pause(None),
            Step::SetWeight(w(40)),
            secs(10),
            Step::SetWeight(w(60)),
            secs(10),
            Step::SetWeight(w(80)),
            secs(10),
            Step::SetWeight(w(10)),
            secs(3600),
            Step::SetWeight(w(20)),
            Step::Pause(None),
            secs(10),
            secs(10),
            secs(600),
            secs(36_000),
            secs(600),
            Step::SetWeight(Weight::from_ppm(333_333).expect("in range")),
        ]
    );
    assert_eq!(strategy.analysis, Analysis::default());
}

#[test]
fn defaults_apply_when_keys_are_absent() {
    let config = valid(&format!(
        "{HEADER}  - name: web\n    stable: {{ revision: v1, endpoints: [app.internal:80] }}\n"
    ));
    assert_eq!(config.admin.address, addr(model::DEFAULT_ADMIN_ADDRESS));
    assert_eq!(config.admin.reader_token, None);
    assert_eq!(config.admin.writer_token, None);
    assert_eq!(
        config.state_dir,
        Path::new(BASE_DIR).join(model::DEFAULT_STATE_DIR)
    );
    let route = &config.routes[0];
    assert_eq!(route.path_prefix, "/");
    assert!(route.hosts.is_empty());
    assert_eq!(route.canary, None);
    assert_eq!(route.fixed_weight, Weight::ZERO);
    assert_eq!(route.timeouts, Timeouts::default());
    assert_eq!(route.strategy, None);

    let config = valid(&format!(
        "{HEADER}  - name: web
    stable: {{ revision: v1, endpoints: [a:1] }}
    canary: {{ revision: v2, endpoints: [b:1] }}
    stickiness: {{ cookie: k }}
    timeouts: {{ request: 5s, idle: 2s }}
    strategy:
      steps: [{{ setWeight: 50 }}]
      analysis: {{ maxErrorRate: 0.1, maxExcessErrors: 5 }}
"
    ));
    let route = &config.routes[0];
    assert_eq!(
        route.stickiness.as_ref().map(|s| s.max_age),
        Some(model::DEFAULT_STICKY_MAX_AGE)
    );
    assert_eq!(route.timeouts.connect, model::DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(route.timeouts.request, Duration::from_secs(5));
    assert_eq!(route.timeouts.idle, Duration::from_secs(2));
    assert_eq!(
        config.listeners[0].max_connections,
        model::DEFAULT_MAX_CONNECTIONS
    );
    let analysis = route.strategy.as_ref().map(|s| s.analysis);
    assert_eq!(
        analysis,
        Some(Analysis {
            max_error_rate: 0.1,
            max_excess_errors: Some(5),
            ..Analysis::default()
        })
    );
}

#[test]
fn values_are_normalised() {
    let config = valid(&format!(
        "{HEADER}  - name: web
    hosts: [Shop.Example.COM., '*.Example.org', 10.0.0.1, '[2001:DB8:0::1]', '::1']
    pathPrefix: /api/v1
    stable: {{ revision: v1, endpoints: ['[::1]:9000', App.Internal:80, 10.1.2.3:8080] }}
    canary: {{ revision: v2, endpoints: [b:1], weight: 0.0001 }}
    canaryByHeader: {{ name: X-Canary, value: yes please }}
  - name: other
    hosts: ['*.example.org']
    pathPrefix: /api
    stable: {{ revision: v1, endpoints: [a:1] }}
"
    ));
    let route = &config.routes[0];
    assert_eq!(
        route.hosts,
        vec![
            HostMatch::Exact("shop.example.com".to_owned()),
            HostMatch::Suffix(".example.org".to_owned()),
            HostMatch::Exact("10.0.0.1".to_owned()),
            HostMatch::Exact("2001:db8::1".to_owned()),
            HostMatch::Exact("::1".to_owned()),
        ]
    );
    assert_eq!(
        route.stable.endpoints,
        vec![
            endpoint("::1", 9000),
            endpoint("app.internal", 80),
            endpoint("10.1.2.3", 8080)
        ]
    );
    assert_eq!(route.stable.endpoints[0].to_string(), "[::1]:9000");
    assert_eq!(route.fixed_weight, Weight::from_ppm(1).expect("in range"));
    assert_eq!(
        route.canary_by_header,
        Some(HeaderOverride {
            name: Arc::from("x-canary"),
            value: Arc::from("yes please"),
        })
    );
}

#[test]
fn listeners_and_admin_accept_ipv6_and_tokens() {
    let config = valid(
        "\
listeners:
  - { name: v4, address: 0.0.0.0:80 }
  - { name: v6, address: '[::]:80' }
  - { name: ephemeral-a, address: 127.0.0.1:0 }
  - { name: ephemeral-b, address: 127.0.0.1:0 }
admin:
  address: '[::]:9900'
  writerToken: w
routes:
  - { name: r, stable: { revision: v1, endpoints: [a:1] } }
",
    );
    let addresses: Vec<SocketAddr> = config.listeners.iter().map(|l| l.address).collect();
    assert_eq!(
        addresses,
        vec![
            addr("0.0.0.0:80"),
            addr("[::]:80"),
            addr("127.0.0.1:0"),
            addr("127.0.0.1:0")
        ]
    );
    assert_eq!(config.admin.address, addr("[::]:9900"));
    assert_eq!(config.admin.writer_token.as_deref(), Some("w"));
}

#[test]
fn top_level_errors_are_located() {
    let route = "routes:\n  - { name: r, stable: { revision: v1, endpoints: [a:1] } }\n";
    let cases: Vec<(String, &str, usize, usize, &str)> = vec![
        (
            format!("listeners: []\n{route}"),
            "listeners",
            1,
            1,
            "no listeners",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 127.0.0.1:1\n  - name: a\n    address: 127.0.0.1:2\n{route}"
            ),
            "listeners[1].name",
            4,
            5,
            "listener name `a` is already used by listeners[0]",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 127.0.0.1:1\n  - name: b\n    address: 127.0.0.1:1\n{route}"
            ),
            "listeners[1].address",
            5,
            5,
            "address `127.0.0.1:1` is already used by listeners[0]",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\n  - name: b\n    address: 127.0.0.1:1\n{route}"
            ),
            "listeners[1].address",
            5,
            5,
            "address `127.0.0.1:1` overlaps `0.0.0.0:1` of listeners[0]",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: '[::1]:1'\n  - name: b\n    address: '[::]:1'\n{route}"
            ),
            "listeners[1].address",
            5,
            5,
            "address `[::]:1` overlaps `[::1]:1` of listeners[0]",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\nadmin:\n  address: 127.0.0.1:1\n{route}"
            ),
            "admin.address",
            5,
            3,
            "`127.0.0.1:1` overlaps `0.0.0.0:1` of listeners[0]",
        ),
        (
            format!("listeners:\n  - name: a\n    address: 0.0.0.0:9900\n{route}"),
            "listeners[0].address",
            3,
            5,
            "`0.0.0.0:9900` overlaps the admin API's default address",
        ),
        (
            format!("listeners:\n  - name: a\n    address: localhost:8080\n{route}"),
            "listeners[0].address",
            3,
            5,
            "`localhost:8080` names a host; bind an IP address",
        ),
        (
            format!("listeners:\n  - name: a\n    address: 0.0.0.0\n{route}"),
            "listeners[0].address",
            3,
            5,
            "`0.0.0.0` has no port",
        ),
        (
            format!("listeners:\n  - name: a\n    address: 0.0.0.0:65536\n{route}"),
            "listeners[0].address",
            3,
            5,
            "port `65536` is not a number from 0 to 65535",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\n    maxConnections: 0\n{route}"
            ),
            "listeners[0].maxConnections",
            4,
            5,
            "`maxConnections` is 0, which would refuse every client",
        ),
        (
            format!("listeners:\n  - name: ''\n    address: 0.0.0.0:1\n{route}"),
            "listeners[0].name",
            2,
            5,
            "the listener name is empty",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\n    tls:\n      certFile: ''\n      keyFile: k.pem\n{route}"
            ),
            "listeners[0].tls.certFile",
            5,
            7,
            "`certFile` is empty",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\nadmin:\n  address: 127.0.0.1:9900\n  readerToken: r\n{route}"
            ),
            "admin.readerToken",
            6,
            3,
            "`readerToken` is set without `writerToken`",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\nadmin:\n  address: 127.0.0.1:9900\n  writerToken: ''\n{route}"
            ),
            "admin.writerToken",
            6,
            3,
            "the token is empty",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\nadmin:\n  address: 127.0.0.1:9900\n  readerToken: same\n  writerToken: same\n{route}"
            ),
            "admin.readerToken",
            6,
            3,
            "`readerToken` equals `writerToken`",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\nadmin:\n  address: 0.0.0.0:9900\n{route}"
            ),
            "admin.address",
            5,
            3,
            "is not loopback and no tokens are set",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 0.0.0.0:1\nadmin:\n  address: admin.local:9900\n{route}"
            ),
            "admin.address",
            5,
            3,
            "names a host",
        ),
        (
            format!("listeners:\n  - name: a\n    address: 127.0.0.1:9900\n{route}"),
            "listeners[0].address",
            3,
            5,
            "the admin API's default address",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 127.0.0.1:1\nadmin:\n  address: 127.0.0.1:1\n{route}"
            ),
            "admin.address",
            5,
            3,
            "is also the address of listeners[0]",
        ),
        (
            format!("listeners:\n  - name: a\n    address: 127.0.0.1:1\nstateDir: ''\n{route}"),
            "stateDir",
            4,
            1,
            "`stateDir` is empty",
        ),
        (
            format!(
                "listeners:\n  - name: a\n    address: 127.0.0.1:1\nstateDir: \"a\\0b\"\n{route}"
            ),
            "stateDir",
            4,
            1,
            "`stateDir` contains a NUL character",
        ),
        (
            "listeners:\n  - name: a\n    address: 127.0.0.1:1\nroutes: []\n".to_owned(),
            "routes",
            4,
            1,
            "no routes",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn route_errors_are_located() {
    let ok = "    stable: { revision: v1, endpoints: [a:1] }\n";
    let long_name_message = format!(
        "route name `{}…` has 100000 characters; the limit is 63",
        "a".repeat(63)
    );
    let with_canary = "    stable: { revision: v1, endpoints: [a:1] }\n    canary: { revision: v2, endpoints: [b:1] }\n";
    let cases: Vec<(String, &str, usize, usize, &str)> = vec![
        // Names.
        (
            format!("  - name: Checkout\n{ok}"),
            "routes[0].name",
            5,
            5,
            "route name `Checkout` contains `C`",
        ),
        (
            format!("  - name: check_out\n{ok}"),
            "routes[0].name",
            5,
            5,
            "e.g. `check-out`",
        ),
        (
            format!("  - name: api/v2\n{ok}"),
            "routes[0].name",
            5,
            5,
            "route name `api/v2` contains `/`; use lowercase letters, digits and `-` (the name is used in URLs and metric labels), e.g. `api-v2`",
        ),
        (
            format!("  - name: 'café:1'\n{ok}"),
            "routes[0].name",
            5,
            5,
            "contains `é`",
        ),
        (
            format!("  - name: -checkout\n{ok}"),
            "routes[0].name",
            5,
            5,
            "starts or ends with `-` (a command line would read it as an option); use lowercase letters, digits and `-`, e.g. `checkout`",
        ),
        (
            format!("  - name: '-'\n{ok}"),
            "routes[0].name",
            5,
            5,
            "starts or ends with `-` (a command line would read it as an option); use lowercase letters, digits and `-`, e.g. `checkout`",
        ),
        (
            format!("  - name: ''\n{ok}"),
            "routes[0].name",
            5,
            5,
            "a route needs a name",
        ),
        (
            format!("  - name: {}\n{ok}", "a".repeat(64)),
            "routes[0].name",
            5,
            5,
            "the limit is 63",
        ),
        (
            // A long name is shown cut at the limit, not whole.
            format!("  - name: {}\n{ok}", "a".repeat(100_000)),
            "routes[0].name",
            5,
            5,
            long_name_message.as_str(),
        ),
        (
            format!("  - name: web\n{ok}  - name: web\n    pathPrefix: /b\n{ok}"),
            "routes[1].name",
            7,
            5,
            "route name `web` is already used by routes[0]",
        ),
        // Hosts.
        (
            format!("  - name: r\n    hosts: ['*']\n{ok}"),
            "routes[0].hosts[0]",
            6,
            13,
            "`*` alone is not a host pattern",
        ),
        (
            format!("  - name: r\n    hosts: [a.com, 'w*.b.com']\n{ok}"),
            "routes[0].hosts[1]",
            6,
            20,
            "`*` is only allowed as the whole first label",
        ),
        (
            format!("  - name: r\n    hosts: ['a.*.com']\n{ok}"),
            "routes[0].hosts[0]",
            6,
            13,
            "`*` is only allowed",
        ),
        (
            format!("  - name: r\n    hosts:\n      - shop.example.com:8080\n{ok}"),
            "routes[0].hosts[0]",
            7,
            9,
            "has a port",
        ),
        (
            format!("  - name: r\n    hosts: [shop_1.com]\n{ok}"),
            "routes[0].hosts[0]",
            6,
            13,
            "`_` is not allowed in a host name",
        ),
        (
            format!("  - name: r\n    hosts: [a..com]\n{ok}"),
            "routes[0].hosts[0]",
            6,
            13,
            "empty label",
        ),
        (
            format!("  - name: r\n    hosts: [a.com, A.com]\n{ok}"),
            "routes[0].hosts[1]",
            6,
            20,
            "already listed as hosts[0]",
        ),
        // Path prefixes.
        (
            format!("  - name: r\n    pathPrefix: api\n{ok}"),
            "routes[0].pathPrefix",
            6,
            5,
            "must start with `/`, e.g. `/api`",
        ),
        (
            format!("  - name: r\n    pathPrefix: /a?b=1\n{ok}"),
            "routes[0].pathPrefix",
            6,
            5,
            "contains `?`",
        ),
        (
            format!("  - name: r\n    pathPrefix: /a#top\n{ok}"),
            "routes[0].pathPrefix",
            6,
            5,
            "contains `#`",
        ),
        (
            format!("  - name: r\n    pathPrefix: '/a b'\n{ok}"),
            "routes[0].pathPrefix",
            6,
            5,
            "contains a space",
        ),
        (
            format!("  - name: r\n    pathPrefix: /a/../b\n{ok}"),
            "routes[0].pathPrefix",
            6,
            5,
            "has a `.` or `..` segment (or `%2e`); weir refuses every request",
        ),
        (
            format!("  - name: r\n    pathPrefix: /a/%2E\n{ok}"),
            "routes[0].pathPrefix",
            6,
            5,
            "no request could reach this route",
        ),
        // Two routes matching the same requests.
        (
            format!(
                "  - name: a\n    hosts: [x.com, y.com]\n{ok}  - name: b\n    hosts: [Y.com, x.com]\n{ok}"
            ),
            "routes[1].pathPrefix",
            8,
            5,
            "routes[0] (`a`) already matches hosts [x.com, y.com] with pathPrefix `/`",
        ),
        (
            format!(
                "  - name: a\n    pathPrefix: /api\n{ok}  - name: b\n    pathPrefix: /api\n{ok}"
            ),
            "routes[1].pathPrefix",
            9,
            5,
            "already matches any host with pathPrefix `/api`",
        ),
        // A route with a misspelled key or a merge key is not compared by
        // the defaults it may not have meant: its error is the only one.
        (
            format!("  - name: a\n    pathPrefx: /a\n{ok}  - name: b\n{ok}"),
            "routes[0].pathPrefx",
            6,
            5,
            "did you mean `pathPrefix`?",
        ),
        (
            format!("  - name: a\n{ok}  - name: b\n    <<: {{pathPrefix: /b}}\n{ok}"),
            "routes[1].<<",
            8,
            5,
            "YAML merge keys (`<<`) are not supported",
        ),
        // Upstreams.
        (
            "  - name: r\n    stable: { revision: '', endpoints: [a:1] }\n".to_owned(),
            "routes[0].stable.revision",
            6,
            15,
            "the revision is empty",
        ),
        // A plain null is no value, as in YAML's core schema, not the
        // text `null`.
        (
            "  - name: r\n    stable: { revision: null, endpoints: [a:1] }\n".to_owned(),
            "routes[0].stable.revision",
            6,
            15,
            "the revision is empty",
        ),
        (
            "  - name: r\n    stable:\n      revision: ~\n      endpoints: [a:1]\n".to_owned(),
            "routes[0].stable.revision",
            7,
            7,
            "the revision is empty",
        ),
        (
            format!(
                "  - name: r\n    stable: {{ revision: {}, endpoints: [a:1] }}\n",
                "v".repeat(513)
            ),
            "routes[0].stable.revision",
            6,
            15,
            "the revision is 513 bytes long, more than 512",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: [] }\n".to_owned(),
            "routes[0].stable.endpoints",
            6,
            29,
            "no endpoints",
        ),
        (
            "  - name: r\n    stable:\n      revision: v1\n      endpoints:\n        - a:1\n        - app\n".to_owned(),
            "routes[0].stable.endpoints[1]",
            10,
            11,
            "`app` has no port",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: [a:0] }\n".to_owned(),
            "routes[0].stable.endpoints[0]",
            6,
            41,
            "port `0` is not a number from 1 to 65535",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: [a:70000] }\n".to_owned(),
            "routes[0].stable.endpoints[0]",
            6,
            41,
            "port `70000`",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: ['::1:80'] }\n".to_owned(),
            "routes[0].stable.endpoints[0]",
            6,
            41,
            "in brackets",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: ['[fe80::zz]:80'] }\n".to_owned(),
            "routes[0].stable.endpoints[0]",
            6,
            41,
            "is not an IPv6 address",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: ['http://a:80'] }\n".to_owned(),
            "routes[0].stable.endpoints[0]",
            6,
            41,
            "has a scheme",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: [999.1.1.1:80] }\n".to_owned(),
            "routes[0].stable.endpoints[0]",
            6,
            41,
            "neither an IPv4 address nor a host name",
        ),
        (
            "  - name: r\n    stable: { revision: v1, endpoints: [a:1, b:2, A:1] }\n".to_owned(),
            "routes[0].stable.endpoints[2]",
            6,
            51,
            "endpoint `a:1` is already listed as endpoints[0]",
        ),
        (
            format!("  - name: r\n{ok}    canary: {{ revision: v1, endpoints: [b:1] }}\n"),
            "routes[0].canary.revision",
            7,
            15,
            "canary revision `v1` is also the stable revision",
        ),
        // Fixed weights.
        (
            format!(
                "  - name: r\n{ok}    canary: {{ revision: v2, endpoints: [b:1], weight: 150 }}\n"
            ),
            "routes[0].canary.weight",
            7,
            47,
            "weight 150 is outside 0 to 100",
        ),
        (
            format!(
                "  - name: r\n{ok}    canary: {{ revision: v2, endpoints: [b:1], weight: 10.12345 }}\n"
            ),
            "routes[0].canary.weight",
            7,
            47,
            "more than four decimals",
        ),
        (
            format!(
                "  - name: r\n{ok}    canary:\n      revision: v2\n      endpoints: [b:1]\n      weight: 10\n    strategy:\n      steps: [setWeight: 10]\n"
            ),
            "routes[0].canary.weight",
            10,
            7,
            "remove canary.weight: a route with a strategy gets its weight from the steps",
        ),
        // Stickiness and header override.
        (
            format!("  - name: r\n{ok}    stickiness: {{ cookie: 'a;b' }}\n"),
            "routes[0].stickiness.cookie",
            7,
            19,
            "cookie name `a;b` contains `;`",
        ),
        (
            format!("  - name: r\n{ok}    stickiness: {{ cookie: '' }}\n"),
            "routes[0].stickiness.cookie",
            7,
            19,
            "the cookie name is empty",
        ),
        (
            format!("  - name: r\n{ok}    stickiness: {{ cookie: k, maxAge: 0s }}\n"),
            "routes[0].stickiness.maxAge",
            7,
            30,
            "`maxAge` is 0; it must be more than 0",
        ),
        (
            format!("  - name: r\n{ok}    stickiness: {{ cookie: k, maxAge: 500ms }}\n"),
            "routes[0].stickiness.maxAge",
            7,
            30,
            "`maxAge` 500ms is under a second",
        ),
        (
            format!(
                "  - name: r\n{ok}    stickiness: {{ cookie: k, maxAge: 99999999999999999999 }}\n"
            ),
            "routes[0].stickiness.maxAge",
            7,
            38,
            "expected a duration of at most 315360000 seconds (87600h, ten years)",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    canaryByHeader: {{ name: 'x:canary', value: on }}\n"
            ),
            "routes[0].canaryByHeader.name",
            8,
            23,
            "header name `x:canary` contains `:`",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    canaryByHeader: {{ name: x-canary, value: '' }}\n"
            ),
            "routes[0].canaryByHeader.value",
            8,
            39,
            "the header value is empty",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    canaryByHeader: {{ name: x-canary, value: never }}\n"
            ),
            "routes[0].canaryByHeader.value",
            8,
            39,
            "`never` is reserved",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    canaryByHeader: {{ name: x-canary, value: \"caf\u{e9}\" }}\n"
            ),
            "routes[0].canaryByHeader.value",
            8,
            39,
            "use visible ASCII",
        ),
        // Timeouts.
        (
            format!("  - name: r\n{ok}    timeouts: {{ connect: 0 }}\n"),
            "routes[0].timeouts.connect",
            7,
            17,
            "`connect` is 0",
        ),
        (
            format!("  - name: r\n{ok}    timeouts:\n      idle: 0\n"),
            "routes[0].timeouts.idle",
            8,
            7,
            "`idle` is 0",
        ),
        (
            format!("  - name: r\n{ok}    timeouts:\n      request: 1d\n"),
            "routes[0].timeouts.request",
            8,
            7,
            "invalid duration \"1d\": unknown unit",
        ),
        (
            format!("  - name: r\n{ok}    timeouts:\n      request: 18446744073709551615\n"),
            "routes[0].timeouts.request",
            8,
            7,
            "invalid duration \"18446744073709551615\": longer than 87600h",
        ),
        (
            format!("  - name: r\n{ok}    timeouts:\n      idle: 87601h\n"),
            "routes[0].timeouts.idle",
            8,
            7,
            "invalid duration \"87601h\": longer than 87600h",
        ),
        // Strategies.
        (
            format!("  - name: r\n{with_canary}    strategy:\n      steps: []\n"),
            "routes[0].strategy.steps",
            9,
            7,
            "no steps",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps:\n        - setWeight: 10\n        - {{}}\n"
            ),
            "routes[0].strategy.steps[1]",
            11,
            11,
            "a step must set exactly one of `setWeight`, `pause` or `analysis`",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps:\n        - setWeight: 10\n          pause: {{}}\n"
            ),
            "routes[0].strategy.steps[0]",
            10,
            11,
            "this step sets `setWeight` and `pause`",
        ),
        (
            format!("  - name: r\n{with_canary}    strategy:\n      steps:\n        - pause:\n"),
            "routes[0].strategy.steps[0].pause",
            10,
            11,
            "`pause` needs a value: write `pause: {}`",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps:\n        - setWeight:\n"
            ),
            "routes[0].strategy.steps[0].setWeight",
            10,
            11,
            "`setWeight` needs a percentage",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps:\n        - setWeight: 5\n        - setWeight: 101\n"
            ),
            "routes[0].strategy.steps[1].setWeight",
            11,
            11,
            "weight 101 is outside 0 to 100",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps:\n        - pause: {{ duration: 0s }}\n"
            ),
            "routes[0].strategy.steps[0].pause.duration",
            10,
            20,
            "`duration` is 0",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps:\n        - pause: {{ duration: soon }}\n"
            ),
            "routes[0].strategy.steps[0].pause.duration",
            10,
            20,
            "invalid duration \"soon\"",
        ),
        // Analysis.
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        interval: 0s\n"
            ),
            "routes[0].strategy.analysis.interval",
            11,
            9,
            "`interval` is 0",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        interval: 10s\n        window: 5s\n"
            ),
            "routes[0].strategy.analysis.window",
            12,
            9,
            "window 5s is shorter than interval 10s",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        window: 500ms\n"
            ),
            "routes[0].strategy.analysis.window",
            11,
            9,
            "window 500ms is shorter than interval 1s",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        minRequests: 0\n"
            ),
            "routes[0].strategy.analysis.minRequests",
            11,
            9,
            "`minRequests` is 0; it must be at least 1",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        maxExcessErrors: -3\n"
            ),
            "routes[0].strategy.analysis.maxExcessErrors",
            11,
            26,
            "a whole number",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        maxExcessErrors: 2.5\n"
            ),
            "routes[0].strategy.analysis.maxExcessErrors",
            11,
            26,
            "a whole number",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        maxErrorRate: 5\n"
            ),
            "routes[0].strategy.analysis.maxErrorRate",
            11,
            9,
            "`maxErrorRate` 5 is outside 0 to 1; it is a ratio: write `0.05` for 5 %",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        maxErrorRate: -0.1\n"
            ),
            "routes[0].strategy.analysis.maxErrorRate",
            11,
            9,
            "outside 0 to 1",
        ),
        (
            format!(
                "  - name: r\n{with_canary}    strategy:\n      steps: [pause: {{}}]\n      analysis:\n        maxLatencyP99: 0ms\n"
            ),
            "routes[0].strategy.analysis.maxLatencyP99",
            11,
            9,
            "`maxLatencyP99` is 0",
        ),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(route, path, line, column, needle)| {
            (format!("{HEADER}{route}"), path, line, column, needle)
        })
        .collect();
    assert_cases(&cases);
}

#[test]
fn argo_step_kinds_are_refused_by_name() {
    let kinds = [
        ("experiment", "{ duration: 1h, templates: [] }"),
        ("setCanaryScale", "{ replicas: 3 }"),
        ("setHeaderRoute", "{ name: header-route }"),
        ("setMirrorRoute", "{ name: mirror-route, percentage: 35 }"),
        ("plugin", "{ name: my-plugin }"),
    ];
    for (kind, value) in kinds {
        let text = format!(
            "{HEADER}  - name: r
    stable: {{ revision: v1, endpoints: [a:1] }}
    canary: {{ revision: v2, endpoints: [b:1] }}
    strategy:
      steps:
        - setWeight: 10
        - {kind}: {value}
"
        );
        let path = format!("routes[0].strategy.steps[1].{kind}");
        let needle = format!(
            "step kind `{kind}` is not supported by weir; use setWeight, pause and analysis"
        );
        assert_eq!(check_single(&text, &path, 11, 11, &needle), Ok(()));
    }
}

#[test]
fn each_structural_error_is_located() {
    let cases: Vec<(String, &str, usize, usize, &str)> = vec![
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    canary:\n      revision: v2\n      endpoints: [b:1]\n      weightt: 10\n"
            ),
            "routes[0].canary.weightt",
            10,
            7,
            "unknown field `weightt`, expected one of `revision`, `endpoints`, `service`, `protocol`, `tls`, `weight`; did you mean `weight`?",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    canary: {{ revision: v2, endpoints: [b:1] }}\n    strategy:\n      steps:\n        - setWieght: 10\n"
            ),
            "routes[0].strategy.steps[0].setWieght",
            10,
            11,
            "unknown field `setWieght`, expected one of `setWeight`, `pause`",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\nlistener: []\n"
            ),
            "listener",
            7,
            1,
            "unknown field `listener`",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    canary: {{ revision: v2, endpoints: [b:1], weight: ten }}\n"
            ),
            "routes[0].canary.weight",
            7,
            55,
            "invalid type: string \"ten\", expected a number",
        ),
        (
            format!("{HEADER}  - name: r\n    stable: v1\n"),
            "routes[0].stable",
            6,
            13,
            "invalid type: string \"v1\", expected a mapping",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    timeouts: {{ connect: 1.5 }}\n"
            ),
            "routes[0].timeouts.connect",
            7,
            26,
            "expected a duration such as `500ms`, `30s`, `5m` or `1h`, or a whole number of seconds",
        ),
        (
            format!("{HEADER}  - name: r\n"),
            "routes[0]",
            5,
            5,
            "missing field `stable`",
        ),
        (
            "listeners:\n  - name: a\n    address: 127.0.0.1:1\n".to_owned(),
            "",
            1,
            1,
            "missing field `routes`",
        ),
        (
            // The syntax error is reported even though a wrong key precedes it.
            "listenerz: []\nroutes:\n  - name: r\n    stable: {revision: v1, endpoints: [a:1]\n"
                .to_owned(),
            "routes[0].stable",
            5,
            1,
            "invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'",
        ),
        (
            format!("{HEADER}  - name: r: s\n"),
            "routes[0]",
            5,
            12,
            "invalid YAML: mapping values are not allowed in this context",
        ),
        (
            // The tab itself, not where the scanner's look-ahead stopped.
            "listeners:\n  - name: public\n\taddress: 127.0.0.1:8080\nroutes: []\n".to_owned(),
            "",
            3,
            1,
            "invalid YAML: a tab in the indentation; YAML indents with spaces only",
        ),
        ("".to_owned(), "", 1, 1, "the file has no settings"),
        (
            "# nothing yet\n".to_owned(),
            "",
            1,
            1,
            "the file has no settings",
        ),
        (
            "- listeners\n".to_owned(),
            "",
            1,
            1,
            "the top level is a list",
        ),
        (
            "weir\n".to_owned(),
            "",
            1,
            1,
            "the top level is a single value",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n---\nroutes: []\n"
            ),
            "",
            7,
            1,
            "more than one YAML document",
        ),
        // Everything after a NUL byte would be read as absent: the
        // strategy here, and the unknown key after it.
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    \0strategy: {{ steps: [] }}\n    bogus: 1\n"
            ),
            "",
            7,
            5,
            "a NUL byte (0x00), which YAML does not allow",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn every_semantic_error_in_a_file_is_reported_in_file_order() {
    let text = "\
listeners:
  - name: public
    address: public.example.com:80
admin:
  address: 0.0.0.0:9900
routes:
  - name: Checkout
    hosts: ['*']
    stable:
      revision: v1
      endpoints: [127.0.0.1]
    canary:
      revision: v2
      endpoints: [127.0.0.1:9101]
      weight: 10
    strategy:
      steps:
        - setWeight: 200
        - experiment: {}
  - name: api
    pathPrefix: api
    stable: { revision: v1, endpoints: [] }
";
    let errors = invalid(text);
    let got: Vec<(&str, Option<Location>)> = errors
        .iter()
        .map(|d| (d.path.as_str(), d.location))
        .collect();
    assert_eq!(
        got,
        vec![
            ("listeners[0].address", at(3, 5)),
            ("admin.address", at(5, 3)),
            ("routes[0].name", at(7, 5)),
            ("routes[0].hosts[0]", at(8, 13)),
            ("routes[0].stable.endpoints[0]", at(11, 19)),
            ("routes[0].canary.weight", at(15, 7)),
            ("routes[0].strategy.steps[0].setWeight", at(18, 11)),
            ("routes[0].strategy.steps[1].experiment", at(19, 11)),
            ("routes[1].pathPrefix", at(21, 5)),
            ("routes[1].stable.endpoints", at(22, 29)),
        ]
    );
    let shown = Diagnostics(errors).to_string();
    assert!(
        shown.starts_with(
            "weir.yaml:3:5: listeners[0].address: `public.example.com:80` names a host"
        ),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 10);
}

#[test]
fn environment_variables_are_substituted() {
    let text = "\
listeners:
  - name: ${LISTENER}
    address: ${BIND}:8080
admin:
  address: 0.0.0.0:9900
  writerToken: ${TOKEN}
stateDir: ${STATE}/weir
routes:
  - name: r
    hosts: ['${HOST}']
    stable: { revision: '${REV}', endpoints: ['${UPSTREAM}:9001'] }
    stickiness: { cookie: c, maxAge: '${AGE}' }
";
    let vars = [
        ("LISTENER", "public"),
        ("BIND", "0.0.0.0"),
        ("TOKEN", "t0ken"),
        ("STATE", "/var/lib"),
        ("HOST", "shop.example.com"),
        ("REV", "v7"),
        ("UPSTREAM", "app.internal"),
        ("AGE", "1h"),
    ];
    let config = parse_env(text, &vars)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(config.listeners[0].name, "public");
    assert_eq!(config.listeners[0].address, addr("0.0.0.0:8080"));
    assert_eq!(config.admin.writer_token.as_deref(), Some("t0ken"));
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/weir"));
    let route = &config.routes[0];
    assert_eq!(
        route.hosts,
        vec![HostMatch::Exact("shop.example.com".to_owned())]
    );
    assert_eq!(&*route.stable.revision, "v7");
    assert_eq!(route.stable.endpoints, vec![endpoint("app.internal", 9001)]);
    assert_eq!(
        route.stickiness.as_ref().map(|s| s.max_age),
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn unset_and_malformed_variables_are_reported_once_at_their_path() {
    let text = "\
listeners:
  - name: public
    address: ${BIND}:8080
admin:
  address: 127.0.0.1:9900
  readerToken: ${READER}
  writerToken: ${WRITER
routes:
  - name: r
    stable: { revision: '${1REV}', endpoints: [a:1] }
";
    let errors = match parse_env(text, &[("READER", "r")]) {
        Ok(doc) => panic!("expected errors, got {:?}", doc.config),
        Err(Diagnostics(errors)) => errors,
    };
    let got: Vec<(&str, Option<Location>, &str)> = errors
        .iter()
        .map(|d| (d.path.as_str(), d.location, d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "listeners[0].address",
                at(3, 5),
                "environment variable `BIND` is not set; set it, or write the value in place of `${BIND}`"
            ),
            (
                "admin.writerToken",
                at(7, 3),
                "`${` without a closing `}`; write `${NAME}` to use the environment variable NAME"
            ),
            (
                "routes[0].stable.revision",
                at(10, 15),
                "`${1REV}` does not name a variable; write `${NAME}` with letters, digits and `_`, not starting with a digit"
            ),
        ]
    );
}

#[test]
fn the_example_file_is_valid() {
    let config = valid(include_str!("../../../examples/weir.yaml"));
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].address, addr("127.0.0.1:8080"));
    assert_eq!(config.listeners[0].tls, None);
    assert_eq!(config.admin.address, addr("127.0.0.1:9900"));
    assert_eq!(config.admin.writer_token, None);
    assert_eq!(config.state_dir, Path::new(BASE_DIR).join("weir-state"));
    let names: Vec<&str> = config.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["checkout", "api"]);
    let checkout = &config.routes[0];
    assert_eq!(checkout.path_prefix, "/");
    assert_eq!(checkout.fixed_weight, Weight::from_percent_int(10));
    assert_eq!(checkout.stable.endpoints, vec![endpoint("127.0.0.1", 9001)]);
    assert_eq!(
        checkout.canary.as_ref().map(|c| c.endpoints.clone()),
        Some(vec![endpoint("127.0.0.1", 9101)])
    );
    assert_eq!(
        checkout.stickiness.as_ref().map(|s| &*s.cookie),
        Some("weir-checkout")
    );
    let api = &config.routes[1];
    assert_eq!(api.path_prefix, "/api");
    assert_eq!(api.fixed_weight, Weight::from_percent_int(5));
    assert_eq!(
        api.canary_by_header,
        Some(HeaderOverride {
            name: Arc::from("x-canary"),
            value: Arc::from("always"),
        })
    );
}

/// A config with one fixed-split route and one route with a strategy.
fn split_config(canary_revision: &str, weight: &str) -> Config {
    valid(&format!(
        "{HEADER}  - name: checkout
    stable: {{ revision: v1, endpoints: [127.0.0.1:9001, app.internal:9002] }}
    canary: {{ revision: {canary_revision}, endpoints: [127.0.0.1:9101], weight: {weight} }}
    stickiness: {{ cookie: weir-checkout }}
  - name: api
    pathPrefix: /api
    stable: {{ revision: v1, endpoints: [127.0.0.1:9002] }}
    canary: {{ revision: v2, endpoints: [127.0.0.1:9102] }}
    strategy:
      steps: [setWeight: 25, pause: {{}}]
"
    ))
}

fn compile(config: &Config, overrides: &dyn Fn(&str) -> Option<RouteOverride>) -> Snapshot {
    // Only IP literals resolve here; a name contributes no address.
    Snapshot::compile(config, overrides, &|e: &EndpointAddr| {
        e.host
            .parse()
            .map(|ip| vec![SocketAddr::new(ip, e.port)])
            .unwrap_or_default()
    })
}

#[test]
fn compiled_snapshot_has_the_configured_split() {
    let config = split_config("v2", "10");
    let snapshot = compile(&config, &|_| None);
    let checkout = &snapshot.routes[0].split;
    assert_eq!(checkout.canary_weight, Weight::from_percent_int(10));
    assert_eq!(&*checkout.stable.revision, "v1");
    assert_eq!(checkout.stable.endpoints, vec![addr("127.0.0.1:9001")]);
    assert_eq!(
        checkout.canary.as_ref().map(|c| c.endpoints.clone()),
        Some(vec![addr("127.0.0.1:9101")])
    );
    assert_eq!(
        checkout.cohort_seed,
        crate::cohort_seed("checkout", "v2", None)
    );

    // A route with a strategy sends nothing to the canary until control
    // decides otherwise.
    let api = &snapshot.routes[1].split;
    assert_eq!(api.canary_weight, Weight::ZERO);
    let decided = compile(&config, &|route| {
        (route == "api").then_some(RouteOverride {
            canary_weight: Weight::from_percent_int(25),
            rollout_seq: 3,
            preview_live: false,
        })
    });
    assert_eq!(
        decided.routes[1].split.canary_weight,
        Weight::from_percent_int(25)
    );
    assert_eq!(
        decided.routes[1].split.cohort_seed,
        crate::cohort_seed("api", "v2", Some(3))
    );
}

#[test]
fn cohort_seed_follows_the_canary_revision_not_the_weight() {
    let seed = |revision: &str, weight: &str| {
        compile(&split_config(revision, weight), &|_| None).routes[0]
            .split
            .cohort_seed
    };
    let base = seed("v2", "10");
    assert_eq!(
        seed("v2", "35.5"),
        base,
        "editing the weight keeps the cohort"
    );
    assert_ne!(
        seed("v3", "10"),
        base,
        "a new canary revision picks a new cohort"
    );
}

#[test]
fn a_canary_equal_to_stable_is_a_caught_up_promotion_only_with_a_strategy() {
    let with_strategy = "\
listeners: [{ name: l, address: 127.0.0.1:8080 }]
routes:
  - name: r
    stable: { revision: v2, endpoints: [127.0.0.1:9101] }
    canary: { revision: v2, endpoints: [127.0.0.1:9101] }
    strategy: { steps: [{ setWeight: 50 }] }
";
    let config = valid(with_strategy);
    assert_eq!(
        config.routes[0].canary.as_ref().map(|c| &*c.revision),
        Some("v2")
    );
    let fixed = with_strategy.replace("    strategy: { steps: [{ setWeight: 50 }] }\n", "");
    let errors = invalid(&fixed);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "routes[0].canary.revision");
}

mod analysis_templates;
mod holes;
mod kubernetes;
mod structure;
mod webhooks;

#[test]
fn upgrades_default_to_websocket_and_refuse_h2c_bad_names_and_repeats() {
    let route = "  - name: r\n    stable: { revision: v1, endpoints: [a:1] }\n";
    let names = |config: &Config| -> Vec<String> {
        config.routes[0]
            .upgrades
            .iter()
            .map(|u| u.to_string())
            .collect()
    };
    assert_eq!(names(&valid(&format!("{HEADER}{route}"))), ["websocket"]);
    assert_eq!(
        names(&valid(&format!(
            "{HEADER}{route}    upgrades: [TLS, websocket]\n"
        ))),
        ["tls", "websocket"]
    );
    assert!(names(&valid(&format!("{HEADER}{route}    upgrades: []\n"))).is_empty());
    assert_cases(&[
        (
            format!("{HEADER}{route}    upgrades: [h2c]\n"),
            "routes[0].upgrades[0]",
            7,
            16,
            "cannot be forwarded",
        ),
        (
            format!("{HEADER}{route}    upgrades: [websocket, 'a b']\n"),
            "routes[0].upgrades[1]",
            7,
            27,
            "is not a protocol name",
        ),
        (
            format!("{HEADER}{route}    upgrades: [websocket, WebSocket]\n"),
            "routes[0].upgrades[1]",
            7,
            27,
            "listed twice",
        ),
    ]);
}

#[test]
fn stable_fallback_has_defaults_and_located_errors() {
    let route = "  - name: r\n    stable: { revision: v1, endpoints: [a:1] }\n";
    let fallback = |config: &Config| config.routes[0].stable_fallback.clone();
    assert_eq!(fallback(&valid(&format!("{HEADER}{route}"))), None);
    assert_eq!(
        fallback(&valid(&format!(
            "{HEADER}{route}    stableFallback: {{}}\n"
        ))),
        Some(model::StableFallback {
            methods: vec![Arc::from("GET"), Arc::from("HEAD"), Arc::from("OPTIONS")],
            max_body_bytes: 65_536,
            budget: 0.2,
        })
    );
    for (written, bytes) in [
        ("64KiB", 65_536),
        ("1MiB", 1_048_576),
        ("100", 100),
        ("0", 0),
        ("2kB", 2_000),
        ("512B", 512),
    ] {
        let config = valid(&format!(
            "{HEADER}{route}    stableFallback: {{ methods: [GET, PUT], maxBodyBytes: {written}, budget: 0.05 }}\n"
        ));
        assert_eq!(
            fallback(&config),
            Some(model::StableFallback {
                methods: vec![Arc::from("GET"), Arc::from("PUT")],
                max_body_bytes: bytes,
                budget: 0.05,
            }),
            "{written}"
        );
    }
    assert_cases(&[
        (
            format!("{HEADER}{route}    stableFallback: {{ budget: 20 }}\n"),
            "routes[0].stableFallback.budget",
            7,
            23,
            "`budget` 20 is outside (0, 1]; it is the ratio of retries to the route's requests: write `0.2` for 20 %",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ budget: 0 }}\n"),
            "routes[0].stableFallback.budget",
            7,
            23,
            "remove `stableFallback` to turn retries off",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ maxBodyBytes: 64KB2 }}\n"),
            "routes[0].stableFallback.maxBodyBytes",
            7,
            23,
            "unknown unit `KB2`",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ maxBodyBytes: 1GiB }}\n"),
            "routes[0].stableFallback.maxBodyBytes",
            7,
            23,
            "unknown unit `GiB`",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ maxBodyBytes: -5 }}\n"),
            "routes[0].stableFallback.maxBodyBytes",
            7,
            23,
            "`-5` is negative",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ maxBodyBytes: 17MiB }}\n"),
            "routes[0].stableFallback.maxBodyBytes",
            7,
            23,
            "is above 16MiB",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ methods: [] }}\n"),
            "routes[0].stableFallback.methods",
            7,
            23,
            "no methods listed",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ methods: [GET, CONNECT] }}\n"),
            "routes[0].stableFallback.methods[1]",
            7,
            38,
            "`CONNECT` cannot be retried",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ methods: [GET, post] }}\n"),
            "routes[0].stableFallback.methods[1]",
            7,
            38,
            "`post` matches no POST request: methods are case-sensitive; write `POST`",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ methods: [GET, GET] }}\n"),
            "routes[0].stableFallback.methods[1]",
            7,
            38,
            "`GET` is listed twice",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ methods: ['G T'] }}\n"),
            "routes[0].stableFallback.methods[0]",
            7,
            33,
            "is not an HTTP method",
        ),
        (
            format!("{HEADER}{route}    stableFallback: {{ retries: 2 }}\n"),
            "routes[0].stableFallback.retries",
            7,
            23,
            "unknown field `retries`",
        ),
    ]);
}

#[test]
fn upstream_protocols_and_tls_parse_into_the_model() {
    let config = valid(&format!(
        "{HEADER}  - name: grpc
    stable:
      revision: v1
      endpoints: [127.0.0.1:9001]
      protocol: h2c
    canary:
      revision: v2
      endpoints: [api.internal:443]
      protocol: h2
      tls: {{ caFile: certs/ca.pem, serverName: API.internal }}
    strategy:
      steps: [{{ setWeight: 10 }}]
      analysis: {{ grpcErrorCodes: [unavailable, INTERNAL] }}
  - name: plain
    pathPrefix: /plain
    stable:
      revision: v1
      endpoints: [127.0.0.1:9002]
      tls: {{ insecureSkipVerify: true }}
  - name: h2-defaults
    pathPrefix: /h2
    stable:
      revision: v1
      endpoints: [127.0.0.1:9003]
      protocol: h2
"
    ));
    let grpc = &config.routes[0];
    assert_eq!(grpc.stable.protocol, crate::UpstreamProtocol::H2c);
    assert_eq!(grpc.stable.tls, None);
    let canary = grpc.canary.as_ref().expect("a canary");
    assert_eq!(canary.protocol, crate::UpstreamProtocol::H2);
    let tls = canary.tls.as_deref().expect("tls");
    assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/weir/certs/ca.pem")));
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    assert!(!tls.insecure_skip_verify);
    let codes = grpc
        .strategy
        .as_ref()
        .expect("a strategy")
        .analysis
        .grpc_error_codes;
    assert_eq!(codes.codes().collect::<Vec<_>>(), [13, 14]);

    let plain = &config.routes[1].stable;
    assert_eq!(plain.protocol, crate::UpstreamProtocol::Http1);
    assert!(plain.tls.as_deref().is_some_and(|t| t.insecure_skip_verify));
    // `h2` alone is TLS with the system's roots and the endpoint's name.
    let defaults = &config.routes[2].stable;
    assert_eq!(
        defaults.tls.as_deref(),
        Some(&crate::UpstreamTls::default())
    );
}

#[test]
fn upstream_protocol_and_tls_errors_are_located() {
    let route = |extra: &str| {
        format!(
            "{HEADER}  - name: r\n    stable:\n      revision: v1\n      endpoints: [127.0.0.1:1]\n{extra}"
        )
    };
    assert_cases(&[
        (
            route("      protocol: http3\n"),
            "routes[0].stable.protocol",
            9,
            7,
            "`http3` is not an upstream protocol; use `http1`",
        ),
        (
            route("      protocol: h2c\n      tls: { serverName: a.test }\n"),
            "routes[0].stable.tls",
            10,
            7,
            "`protocol: h2c` is HTTP/2 without TLS",
        ),
        (
            route("      tls: { caFile: ca.pem, insecureSkipVerify: true }\n"),
            "routes[0].stable.tls.insecureSkipVerify",
            9,
            30,
            "ignores `caFile`",
        ),
        (
            route("      tls: { serverName: 'a b' }\n"),
            "routes[0].stable.tls.serverName",
            9,
            14,
            "is not a host name or IP address",
        ),
        (
            route("      tls: { caFile: '' }\n"),
            "routes[0].stable.tls.caFile",
            9,
            14,
            "`caFile` is empty",
        ),
        (
            route(
                "    canary:\n      revision: v2\n      endpoints: [127.0.0.1:2]\n    strategy:\n      steps: [{ setWeight: 1 }]\n      analysis: { grpcErrorCodes: [UNAVAILABLE, NOPE] }\n",
            ),
            "routes[0].strategy.analysis.grpcErrorCodes[1]",
            14,
            49,
            "`NOPE` is not a gRPC status name; use one of OK, CANCELLED",
        ),
        (
            route(
                "    canary:\n      revision: v2\n      endpoints: [127.0.0.1:2]\n    strategy:\n      steps: [{ setWeight: 1 }]\n      analysis: { grpcErrorCodes: [INTERNAL, internal] }\n",
            ),
            "routes[0].strategy.analysis.grpcErrorCodes[1]",
            14,
            46,
            "`internal` is listed twice",
        ),
    ]);
}
mod blue_green;

/// A control character in a key is shown escaped, not written raw.
#[test]
fn control_characters_are_shown_escaped() {
    let text = format!(
        "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    \u{1}bad: 1\n"
    );
    let errors = invalid(&text);
    let shown = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(shown.contains("\\u{1}bad"), "{shown}");
    assert!(!shown.contains('\u{1}'), "{shown}");
}
