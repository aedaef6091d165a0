use super::*;

const MINIMAL: &str = r#"
name: t
duration: 10s
upstreams: [{name: v1}, {name: v2-beta, errorRate: 0.1, latency: 5ms}]
weir:
  config: |
    listeners: [{name: public, address: "${WEIR_LISTEN}"}]
    admin: {address: "${WEIR_ADMIN}"}
load: {rate: 100}
"#;

fn problems(text: &str) -> Vec<String> {
    parse(text, "s.yaml").unwrap_err().problems
}

#[test]
fn minimal_scenario_takes_defaults() {
    let s = parse(MINIMAL, "s.yaml").unwrap();
    assert_eq!(s.duration, Dur(Duration::from_secs(10)));
    assert_eq!(s.load.path, "/");
    assert_eq!(s.load.users, None);
    assert_eq!(
        s.upstreams[1].latency,
        Some(LatencyDist::Fixed(Duration::from_millis(5)))
    );
    assert!(s.timeline.is_empty() && s.expect.is_empty());
    assert_eq!(upstream_env_var("v2-beta"), "UPSTREAM_V2_BETA");
}

#[test]
fn the_demo_parses_and_scales() {
    let s = parse(crate::DEMO_SCENARIO, "demo").unwrap();
    assert_eq!(s.name, "demo");
    assert!(s.duration.secs() >= 45.0 && s.duration.secs() <= 65.0);
    let short = s.scaled(3.0, "demo").unwrap();
    assert_eq!(short.duration, Dur(Duration::from_secs(18)));
    assert_eq!(short.timeline[1].at, Dur(Duration::from_secs(12)));
    // Pauses are scaled inside the weir configs; analysis is not.
    assert!(
        short.weir.config.contains("duration: 2s"),
        "{}",
        short.weir.config
    );
    assert!(
        short.weir.config.contains("window: 5s"),
        "{}",
        short.weir.config
    );
    let next = short.timeline[0].config.as_deref().unwrap();
    assert!(next.contains("duration: 3s"), "{next}");
    assert!(next.contains("${UPSTREAM_V3}"), "{next}");
    // `within` is how fast weir must react: not scaled.
    assert!(short.expect.iter().any(|e| matches!(e,
        Expectation::AbortedWithin(a) if a.within == Dur(Duration::from_secs(2)))));
    // The scaled config is still YAML with the runner's variables.
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&short.weir.config).unwrap();
    assert!(doc.get("routes").is_some());
    assert!(short.weir.config.contains("${WEIR_LISTEN}"));
    assert_eq!(s.scaled(1.0, "demo").unwrap(), s);
    assert!(s.scaled(0.0, "demo").is_err());
    // A speed that leaves less than a second of load is refused, saying
    // the most it may be.
    let most = s.duration.secs().floor();
    let too_fast = s.scaled(1_000_000.0, "demo").unwrap_err().to_string();
    assert!(
        too_fast.contains(&format!(
            "too short to measure; use a speed of at most {most}"
        )),
        "{too_fast}"
    );
    assert!(s.scaled(most, "demo").is_ok());
}

#[test]
fn every_action_and_expectation_kind_parses() {
    let text = format!(
        "{MINIMAL}timeline:
  - at: 1s
    config: 'x: 1'
  - at: 1500ms
    fault: {{upstream: v1, errorRate: 0.3, latency: 50ms}}
  - at: 2
    command: {{route: web, action: promoteFull}}
expect:
  - finalPhase: {{route: web, phase: Promoted}}
  - reachedPhase: {{route: web, phase: Promoted, revision: v2, by: 5s}}
  - reachedStep: {{route: web, step: 3, by: 30s}}
  - abortedWithin: {{route: web, afterAction: 1, within: 2s}}
  - noCanaryAfterAbort: {{route: web, upstream: v1}}
  - maxErrorRate: {{upstream: v1, below: 0.01}}
  - maxErrorRate: {{below: 0.5}}
"
    );
    let s = parse(&text, "s.yaml").unwrap();
    assert_eq!(s.timeline[2].at, Dur(Duration::from_secs(2)));
    assert!(matches!(
        s.timeline[0].kind(),
        Some(ActionKind::Config("x: 1"))
    ));
    assert!(matches!(
        s.timeline[2].kind(),
        Some(ActionKind::Command(CommandSpec {
            action: CommandAction::PromoteFull,
            ..
        }))
    ));
    let kinds: Vec<&str> = s.expect.iter().map(Expectation::kind).collect();
    assert_eq!(
        kinds,
        [
            "finalPhase",
            "reachedPhase",
            "reachedStep",
            "abortedWithin",
            "noCanaryAfterAbort",
            "maxErrorRate",
            "maxErrorRate"
        ]
    );
}

#[test]
fn schema_errors_name_the_key_path() {
    let p = problems(&MINIMAL.replace("load: {rate: 100}", "load: {rate: 100, burst: 3}"));
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("load"), "{p:?}");
    assert!(p[0].contains("burst"), "{p:?}");

    let p = problems(&format!(
        "{MINIMAL}timeline:\n  - at: 1s\n    fault: {{upstream: v1, errorRat: 0.3}}\n"
    ));
    assert!(p[0].starts_with("timeline[0].fault"), "{p:?}");
    assert!(p[0].contains("errorRat"), "{p:?}");

    let p = problems(&format!(
        "{MINIMAL}expect:\n  - finalPhase: {{route: web, phase: Done}}\n"
    ));
    assert!(p[0].starts_with("expect[0]"), "{p:?}");
    assert!(p[0].contains("Done"), "{p:?}");

    let p = problems(&format!(
        "{MINIMAL}expect:\n  - eventually: {{route: web}}\n"
    ));
    assert!(p[0].starts_with("expect[0]"), "{p:?}");
    assert!(p[0].contains("eventually"), "{p:?}");

    let p = problems(&MINIMAL.replace("duration: 10s", "duration: 10 parsecs"));
    assert!(p[0].starts_with("duration"), "{p:?}");

    let p = problems(&format!("{MINIMAL}bogus: 1\n"));
    assert!(p[0].contains("bogus"), "{p:?}");
}

/// A command or an expectation naming a route that neither the weir config
/// nor a config of the timeline has is refused before the run.
#[test]
fn commands_and_expectations_name_routes_of_the_configs() {
    let routes = MINIMAL.replace(
        "    admin: {address: \"${WEIR_ADMIN}\"}\n",
        "    admin: {address: \"${WEIR_ADMIN}\"}\n    routes: [{name: web, stable: {revision: v1, endpoints: [\"${UPSTREAM_V1}\"]}}]\n",
    );
    let text = format!(
        "{routes}timeline:
  - at: 1s
    command: {{route: wbe, action: abort}}
  - at: 2s
    config: |
      routes: [{{name: later, stable: {{revision: v1, endpoints: [\"${{UPSTREAM_V1}}\"]}}}}]
  - at: 3s
    command: {{route: later, action: abort}}
expect:
  - finalPhase: {{route: web, phase: Healthy}}
  - reachedPhase: {{route: nope, phase: Aborted}}
"
    );
    let p = problems(&text);
    assert_eq!(
        p,
        [
            "timeline[0].command.route: names no route of the weir config",
            "expect[1].reachedPhase.route: names no route of the weir config",
        ],
        "{p:#?}"
    );
}

#[test]
fn checks_report_every_problem_with_its_path() {
    let text = format!(
        "{}timeline:
  - at: 11s
    fault: {{upstream: v9, errorRate: 2}}
  - at: 1s
  - at: 1s
    config: 'a: 1'
    command: {{route: web, action: abort}}
expect:
  - abortedWithin: {{route: web, afterAction: 7, within: 2s}}
  - noCanaryAfterAbort: {{route: web, upstream: nope}}
  - maxErrorRate: {{upstream: v1, below: 3}}
",
        MINIMAL
            .replace("{name: v1}", "{name: v1, errorRate: -1}")
            .replace("{name: v2-beta,", "{name: v1,")
            .replace("rate: 100", "rate: 100, users: 0")
            .replace("\"${WEIR_ADMIN}\"", "127.0.0.1:9900")
    );
    let p = problems(&text);
    let expected = [
        "upstreams[0].errorRate: ",
        "upstreams[1].name: another upstream",
        "weir.config: must take its address from ${WEIR_ADMIN}",
        "load.users: ",
        "timeline[0].at: is after the end",
        "timeline[0].fault.upstream: names no upstream",
        "timeline[0].fault.errorRate: ",
        "timeline[1]: needs exactly one",
        "timeline[2]: needs exactly one",
        "expect[0].abortedWithin.afterAction: the timeline has 3 actions",
        "expect[1].noCanaryAfterAbort.upstream: names no upstream",
        "expect[2].maxErrorRate.below: ",
    ];
    for want in expected {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "missing {want:?} in {p:#?}"
        );
    }
    let shown = ScenarioError {
        origin: "s.yaml".into(),
        problems: p,
    }
    .to_string();
    assert!(shown.lines().all(|l| l.starts_with("s.yaml: ")), "{shown}");
}

#[test]
fn durations_parse_and_print() {
    let d: Dur = serde_yaml_ng::from_str("1m30s").unwrap();
    assert_eq!(d, Dur(Duration::from_secs(90)));
    assert_eq!(d.to_string(), "90s");
    assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
    assert_eq!(
        Dur(Duration::from_secs(5)).scaled(3.0).to_string(),
        "1667ms"
    );
    assert_eq!(
        Dur(Duration::from_millis(1)).scaled(100.0),
        Dur(Duration::from_millis(1))
    );
    assert!(serde_yaml_ng::from_str::<Dur>("-3").is_err());
}

#[test]
fn latencies_take_a_distribution() {
    let text = format!(
        "{}timeline:
  - at: 1s
    fault: {{upstream: v1, latency: exp:20ms}}
  - at: 2s
    fault:
      upstream: v1
      latency: 1ms..3ms
",
        MINIMAL.replace("latency: 5ms", "latency: 5ms..50ms")
    );
    let s = parse(&text, "s.yaml").unwrap();
    assert_eq!(
        s.upstreams[1].latency,
        Some(LatencyDist::Uniform {
            min: Duration::from_millis(5),
            max: Duration::from_millis(50)
        })
    );
    assert_eq!(s.upstreams[0].latency, None);
    let latency = |i: usize| s.timeline[i].fault.as_ref().unwrap().latency.unwrap();
    assert_eq!(latency(0).to_string(), "exp:20ms");
    assert_eq!(latency(1).to_string(), "1ms..3ms");
    // Still scaled by nothing: latency is not a timeline duration.
    assert_eq!(s.scaled(3.0, "s.yaml").unwrap().upstreams, s.upstreams);

    let p = problems(&MINIMAL.replace("latency: 5ms", "latency: 50ms..5ms"));
    assert!(p[0].starts_with("upstreams[1].latency"), "{p:?}");
    assert!(p[0].contains("above the maximum"), "{p:?}");
    let p = problems(&format!(
        "{MINIMAL}timeline:\n  - at: 1s\n    fault: {{upstream: v1, latency: exp:0s}}\n"
    ));
    assert!(p[0].starts_with("timeline[0].fault.latency"), "{p:?}");
    assert!(p[0].contains("more than 0"), "{p:?}");
}

#[test]
fn the_blue_green_scenario_parses_and_scales() {
    let s = parse(crate::BLUE_GREEN_SCENARIO, "blue-green").unwrap();
    assert_eq!(s.name, "blue-green");
    assert!(s.prometheus.is_some() && s.smoke_tester.is_some());
    assert!(s.expect.iter().any(|e| matches!(e,
        Expectation::ReachedStage(r) if r.stage == BlueGreenStage::PostPromotion
            && r.revision.as_deref() == Some("v3"))));
    let short = s.scaled(3.0, "blue-green").unwrap();
    assert_eq!(short.duration, Dur(Duration::from_secs(20)));
    assert_eq!(short.timeline[1].at, Dur(Duration::from_secs(12)));
    let next = short.timeline[1].config.as_deref().unwrap();
    for var in ["${PROMETHEUS_URL}", "${SMOKE_TESTER}", "${UPSTREAM_V3}"] {
        assert!(next.contains(var), "{var} in {next}");
    }
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(next).unwrap();
    assert!(
        doc["routes"][0]["strategy"]["blueGreen"].is_mapping(),
        "{next}"
    );
}

#[test]
fn prometheus_and_the_smoke_tester_must_be_asked_for() {
    let text = MINIMAL.replace(
        "admin: {address: \"${WEIR_ADMIN}\"}",
        "admin: {address: \"${WEIR_ADMIN}\"}\n    # ${PROMETHEUS_URL} ${SMOKE_TESTER}",
    );
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p
                == "weir.config: uses ${PROMETHEUS_URL}: add `prometheus: {}` to the scenario"),
        "{found:?}"
    );
    assert!(
        found.iter().any(
            |p| p == "weir.config: uses ${SMOKE_TESTER}: add `smokeTester: {}` to the scenario"
        ),
        "{found:?}"
    );
    let asked = format!("{text}prometheus: {{}}\nsmokeTester: {{requests: 5}}\n");
    let s = parse(&asked, "s.yaml").unwrap();
    assert_eq!(s.smoke_tester.and_then(|t| t.requests), Some(5));
    let stage = "expect: [{reachedStage: {route: web, stage: Previewing}}]\n";
    let found = problems(&format!("{MINIMAL}{stage}"));
    assert!(found[0].contains("expect[0]"), "{found:?}");
}

#[test]
fn every_shipped_scenario_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let origin = path.display().to_string();
        if let Err(e) = parse(&text, &origin) {
            panic!("{origin}: {:#?}", e.problems);
        }
        seen += 1;
    }
    assert!(seen >= 5, "{seen} scenarios in {}", dir.display());
}

#[test]
fn a_yaml_syntax_error_says_where() {
    let garbage = problems(": : :\n\t- [");
    assert_eq!(
        garbage,
        ["did not find expected key, while parsing a block mapping at line 1 column 1"]
    );
    let cut = problems("duration: 10s\nupstreams: [\n");
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(
        cut[0].starts_with("upstreams: ") && cut[0].contains(" at line 3 column 1"),
        "{cut:?}"
    );
}
