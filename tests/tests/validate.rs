//! `weir validate FILE`: a one-line summary and exit 0 for the shipped
//! example; every error with FILE:LINE:COLUMN and its key path, and a
//! non-zero exit, for a bad file.

use std::process::Output;

use weir_e2e::{weir_command, workspace_root};

fn validate(file: &std::path::Path) -> Output {
    weir_command()
        .arg("validate")
        .arg(file)
        // The example may name these; validation fails on unset variables.
        .env("WEIR_READER_TOKEN", "e2e-reader")
        .env("WEIR_WRITER_TOKEN", "e2e-writer")
        .output()
        .expect("running weir validate")
}

#[test]
fn example_config_is_valid() {
    let example = workspace_root().join("examples/weir.yaml");
    assert!(example.is_file(), "{} is missing", example.display());
    let out = validate(&example);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weir validate failed: {stdout}{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want a one-line summary, got: {stdout:?}");
}

#[test]
fn bad_config_reports_every_error_with_location_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:18080
admin:
  address: 127.0.0.1:19900
routes:
  - name: web
    stable:
      revision: v1
      endpoints: [127.0.0.1:9001]
    canary:
      revision: v2
      endpoints: [127.0.0.1:9101]
      weight: 150
  - name: api
    pathPrefix: /api
    stable:
      revision: v1
      endpoints: [127.0.0.1:9002]
    canary:
      revision: v2
      endpoints: [127.0.0.1:9102]
    strategy:
      steps:
        - setWeight: 10
        - setWeight: 200
"#;
    std::fs::write(&file, text).unwrap();
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    let expected = [
        (line_of("weight: 150"), "routes[0].canary.weight"),
        (
            line_of("setWeight: 200"),
            "routes[1].strategy.steps[1].setWeight",
        ),
    ];

    let out = validate(&file);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "weir validate accepted a bad file: {all}"
    );
    for (line, path) in expected {
        let located = all.lines().any(|l| {
            l.split_once(&format!("bad.yaml:{line}:"))
                .is_some_and(|(_, rest)| {
                    rest.starts_with(|c: char| c.is_ascii_digit()) && l.contains(path)
                })
        });
        assert!(
            located,
            "no line with bad.yaml:{line}:COLUMN and {path} in:\n{all}"
        );
    }
}

/// Writes `text` to a temporary `name` and validates it; returns the exit
/// code and everything printed.
fn validate_text(name: &str, text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join(name);
    std::fs::write(&file, text).expect("writing the config");
    let out = validate(&file);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

#[test]
fn a_route_name_with_a_slash_colon_or_accent_is_an_error_not_a_crash() {
    for name in ["api/v2", "\"api:v2\"", "café", "shop/checkout"] {
        let text = format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:18080\nroutes:\n  - name: {name}\n    stable: {{ revision: v1, endpoints: [127.0.0.1:9001] }}\n"
        );
        let (code, all) = validate_text("names.yaml", &text);
        assert_eq!(code, Some(1), "weir validate on `name: {name}`: {all}");
        assert!(
            all.contains("names.yaml:5:5: routes[0].name: route name"),
            "`name: {name}` not reported at routes[0].name:\n{all}"
        );
    }
}

#[test]
fn several_structural_errors_are_reported_together_each_located() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:18080
    maxConections: 100
routes:
  - name: web
    stable: { revision: v1, endpoints: [127.0.0.1:9001] }
    canary: { revision: v2, endpoints: [127.0.0.1:9101], weight: ten }
    strategy:
      steps:
        - setWeight: 10
        - pause: { duration: 30s }
        - setWieght: 20
";
    let (code, all) = validate_text("structure.yaml", text);
    assert_eq!(code, Some(1), "{all}");
    for located in [
        "structure.yaml:4:5: listeners[0].maxConections: unknown field `maxConections`",
        "structure.yaml:8:66: routes[0].canary.weight: invalid type: string \"ten\", expected a number",
        "structure.yaml:13:11: routes[0].strategy.steps[2].setWieght: unknown field `setWieght`",
    ] {
        assert!(all.contains(located), "missing `{located}` in:\n{all}");
    }
    assert!(all.contains("3 error(s)"), "{all}");
}

#[test]
fn a_kubernetes_block_lets_routes_be_empty_and_its_mistakes_are_located() {
    let listeners = "listeners:\n  - name: public\n    address: 127.0.0.1:18080\n";
    let (code, all) = validate_text(
        "cluster.yaml",
        &format!("{listeners}routes: []\nkubernetes:\n  namespaces: [shop]\n"),
    );
    assert_eq!(code, Some(0), "{all}");
    assert!(
        all.contains("0 route(s)") && all.contains("CanaryRoutes of namespace(s) shop"),
        "{all}"
    );
    let (code, all) = validate_text(
        "cluster.yaml",
        &format!("{listeners}kubernetes:\n  role: leader\n  lease: Weir\n"),
    );
    assert_eq!(code, Some(1), "{all}");
    for (line, path) in [(5, "kubernetes.role"), (6, "kubernetes.lease")] {
        assert!(
            all.contains(&format!("cluster.yaml:{line}:3: {path}: ")),
            "no error at cluster.yaml:{line}:3 for {path} in:\n{all}"
        );
    }
    let (code, all) = validate_text("plain.yaml", &format!("{listeners}routes: []\n"));
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("plain.yaml:4:1: routes: no routes"), "{all}");
}

#[test]
fn small_files_that_would_take_gigabytes_are_refused_in_bounded_memory() {
    let nested = |items: &str| {
        let open: String = (0..63).map(|i| format!("&a{i} [")).collect();
        format!("a: {open}{items}{}\n", "]".repeat(63))
    };
    let cases = [
        // 240 kB: one key of 200,000 bytes over a list of 20,000 items. A
        // key path held whole for each item takes 2.9 GB.
        (
            format!(
                "? {}\n: [{}]\n",
                "k".repeat(200_000),
                vec!["1"; 20_000].join(",")
            ),
            "long-key.yaml:1:1: missing field `listeners`",
        ),
        // 200 kB: 63 anchors, one inside the other, over 99,000 items. A
        // copy of each anchored list takes 600 MB.
        (
            nested(&vec!["1"; 99_000].join(",")),
            "long-key.yaml:1:1: missing field `listeners`",
        ),
        // 350 kB: 50,000 aliases of a scalar of 200,000 bytes, 10 GB once
        // expanded.
        (
            format!(
                "a: &a {}\nb: [{}]\n",
                "k".repeat(200_000),
                vec!["*a"; 50_000].join(",")
            ),
            "long-key.yaml:2:65: b[20]: the aliases repeat more than 4 MiB of text",
        ),
    ];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("long-key.yaml");
    for (text, want) in cases {
        std::fs::write(&file, &text).expect("writing the config");
        // At most 512 MiB of address space: past it the allocator fails,
        // which aborts weir.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 524288 && exec \"$0\" \"$@\"")
            .arg(weir_e2e::binary("weir"))
            .arg("validate")
            .arg(&file)
            .output()
            .expect("running weir validate");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: String = all.chars().take(2_000).collect();
        assert_eq!(out.status.code(), Some(1), "{want}: {shown}");
        assert!(all.contains(want), "{want}: {shown}");
    }
}

/// The files and names a file names are checked even when the file has
/// errors of its own: one run says every error, in file order.
#[test]
fn missing_files_and_unknown_names_are_reported_beside_the_files_own_errors() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:18080\n    tls:\n      \
                certFile: no-such.crt\n      keyFile: no-such.key\nadmin:\n  address: \
                127.0.0.1:19900\nroutes:\n  - name: web\n    pathPrefix: nope\n    stable: { \
                revision: v1, endpoints: [no-such-host.invalid:80] }\n";
    let (code, stderr) = validate_text("every.yaml", text);
    assert_eq!(code, Some(1), "{stderr}");
    let paths: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.ends_with("error(s)"))
        .filter_map(|line| line.split(": ").nth(1))
        .collect();
    assert_eq!(
        paths,
        [
            "listeners[0].tls.certFile",
            "listeners[0].tls.keyFile",
            "routes[0].pathPrefix",
            "routes[0].stable.endpoints[0]",
        ],
        "{stderr}"
    );
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(stderr.contains("no-such-host.invalid"), "{stderr}");
    assert!(stderr.contains("every.yaml: 4 error(s)"), "{stderr}");
}

/// Each name is looked up once, whatever its ports: every endpoint of a
/// name that does not resolve is reported at its place, with its port, and
/// the endpoints of a name that does are fine.
#[test]
fn every_endpoint_of_an_unknown_name_is_reported_with_its_port() {
    let text = "admin:\n  address: 127.0.0.1:19900\nroutes:\n  - name: web\n    stable: { \
                revision: v1, endpoints: [gone.invalid:80, localhost:81, gone.invalid:81] }\n    \
                canary: { revision: v2, endpoints: [gone.invalid:82, other.invalid:80] }\n";
    let (code, stderr) = validate_text("names.yaml", text);
    assert_eq!(code, Some(1), "{stderr}");
    let problems: Vec<(&str, &str)> = stderr
        .lines()
        .filter(|line| !line.ends_with("error(s)"))
        .filter_map(|line| {
            let mut parts = line.splitn(3, ": ");
            Some((parts.nth(1)?, parts.next()?))
        })
        .collect();
    let paths: Vec<&str> = problems.iter().map(|(path, _)| *path).collect();
    assert_eq!(
        paths,
        [
            "routes[0].stable.endpoints[0]",
            "routes[0].stable.endpoints[2]",
            "routes[0].canary.endpoints[0]",
            "routes[0].canary.endpoints[1]",
        ],
        "{stderr}"
    );
    for ((_, message), endpoint) in problems.iter().zip([
        "gone.invalid:80",
        "gone.invalid:81",
        "gone.invalid:82",
        "other.invalid:80",
    ]) {
        assert!(message.contains(endpoint), "{endpoint}: {stderr}");
    }
}

/// A stateDir that a file stands in the way of is an error where it is
/// written, as `weir run` would fail on it.
#[test]
fn a_state_dir_that_is_a_file_is_an_error() {
    for state_dir in ["occupied", "occupied/rollouts"] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("occupied"), "a file").expect("a file");
        let file = dir.path().join("weir.yaml");
        let text = format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:18080\nstateDir: {state_dir}\nroutes:\n  - name: web\n    stable: {{ revision: v1, endpoints: [127.0.0.1:9001] }}\n"
        );
        std::fs::write(&file, text).expect("writing the config");
        let out = validate(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{state_dir}: {stderr}");
        assert!(
            stderr.contains("weir.yaml:4:1: stateDir: ") && stderr.contains("not a directory"),
            "{state_dir}: {stderr}"
        );
    }
}

/// A device or FIFO named as the config is refused, and nothing reads it
/// afterwards (`/dev/zero` would never end).
#[tokio::test]
async fn a_device_named_as_the_config_is_refused_without_reading_it() {
    let mut command = tokio::process::Command::from(weir_command());
    command
        .args(["validate", "/dev/zero"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .expect("weir validate /dev/zero ends")
        .expect("running weir validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/dev/zero"), "{stderr}");
}

/// A `stateDir` this process cannot write in (a read-only place; here a
/// directory to be made under `/proc/self`, which not even root may write)
/// is a warning when a route has a rollout strategy, as `weir run` could
/// not write its states there; not an error, since `weir validate` may run
/// as another user than `weir run`. Without a strategy, nothing is said.
#[test]
fn a_state_dir_that_cannot_be_written_is_a_warning_for_rollouts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    let route = |strategy: &str| {
        format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:18080\nadmin:\n  address: \
             127.0.0.1:19900\nstateDir: /proc/self/weir-state\nroutes:\n  - name: web\n    \
             stable: {{revision: v1, endpoints: [127.0.0.1:9001]}}\n    canary: {{revision: v2, \
             endpoints: [127.0.0.1:9101]{strategy}}}\n"
        )
    };
    std::fs::write(&file, route(", weight: 10")).unwrap();
    let out = validate(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "no rollout: {stderr}");
    assert!(!stderr.contains("warning"), "no rollout: {stderr}");

    std::fs::write(&file, route("}\n    strategy: {steps: [{setWeight: 10}]")).unwrap();
    let out = validate(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning only: {stderr}");
    assert!(
        stderr.contains(":6:1: stateDir: warning: cannot make /proc/self/weir-state: cannot write in /proc/self: ")
            && stderr.contains("weir run writes the rollout state of web there"),
        "{stderr}"
    );
}

#[test]
fn stickiness_and_canary_by_header_on_a_route_without_a_canary_are_warned_of() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:18080\nroutes:\n  - name: web\n    stable: { revision: v1, endpoints: [127.0.0.1:9001] }\n    stickiness: { cookie: weir-web }\n    canaryByHeader: { name: x-canary, value: always }\n  - name: api\n    pathPrefix: /api\n    stable: { revision: v1, endpoints: [127.0.0.1:9002] }\n    canary: { revision: v2, endpoints: [127.0.0.1:9102], weight: 5 }\n    stickiness: { cookie: weir-api }\n";
    let (code, all) = validate_text("no-canary.yaml", text);
    assert_eq!(code, Some(0), "warnings only: {all}");
    assert!(
        all.contains("no-canary.yaml:7:5: routes[0].stickiness: warning: route web has no canary, so `stickiness` does nothing until it has one"),
        "{all}"
    );
    assert!(
        all.contains(
            "no-canary.yaml:8:5: routes[0].canaryByHeader: warning: route web has no canary"
        ),
        "{all}"
    );
    assert!(!all.contains("route api has no canary"), "{all}");
    // Between rollouts, a route with a strategy keeps them for the next.
    let resting = text.replace(
        "    canaryByHeader: { name: x-canary, value: always }\n",
        "    canaryByHeader: { name: x-canary, value: always }\n    strategy: { steps: [{setWeight: 10}] }\n",
    );
    let (code, all) = validate_text("resting.yaml", &resting);
    assert_eq!(code, Some(0), "{all}");
    assert!(!all.contains("has no canary"), "{all}");
}
