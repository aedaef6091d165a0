//! Structural and semantic problems reported together: what the structural
//! pass cannot type is left out, the rest is checked, and no problem that
//! could come from what was left out is reported.

use super::*;

/// Every diagnostic of `text` as `weir validate` prints it.
fn shown(text: &str) -> Vec<String> {
    invalid(text).iter().map(ToString::to_string).collect()
}

/// A listener with a semantic problem at 4:5, which every check below
/// must report alongside the structural ones.
const LISTENERS: &str = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
    maxConnections: 0
";

/// What [`LISTENERS`] gives.
const MAX_CONNECTIONS: &str = "weir.yaml:4:5: listeners[0].maxConnections: `maxConnections` is 0, which would refuse every client; it must be at least 1, e.g. `10000`";

/// A valid route (lines 1 to 4 of a route), named `name`.
fn route(name: &str) -> String {
    format!(
        "  - name: {name}\n    hosts: [{name}.example.com]\n    stable: {{revision: v1, endpoints: [127.0.0.1:23001]}}\n    canary: {{revision: v2, endpoints: [127.0.0.1:23002]}}\n"
    )
}

#[test]
fn an_unknown_key_does_not_hide_a_bad_weight() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: r
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
    canary: {revision: v2, endpoints: [127.0.0.1:23002], weight: 150}
    colour: blue
";
    assert_eq!(
        shown(text),
        vec![
            "weir.yaml:7:58: routes[0].canary.weight: weight 150 is outside 0 to 100; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`",
            "weir.yaml:8:5: routes[0].colour: unknown field `colour`, expected one of `name`, `hosts`, `pathPrefix`, `stable`, `canary`, `stickiness`, `canaryByHeader`, `timeouts`, `upgrades`, `strategy`, `stableFallback`",
        ]
    );

    // The unknown key next to the weight, in the same mapping.
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: r
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
    canary:
      revision: v2
      endpoints: [127.0.0.1:23002]
      weight: 150
      colour: blue
";
    assert_eq!(
        shown(text),
        vec![
            "weir.yaml:10:7: routes[0].canary.weight: weight 150 is outside 0 to 100; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`",
            "weir.yaml:11:7: routes[0].canary.colour: unknown field `colour`, expected one of `revision`, `endpoints`, `service`, `protocol`, `tls`, `weight`",
        ]
    );
}

#[test]
fn wrong_typed_steps_do_not_hide_bad_steps_of_another_route() {
    let text = format!(
        "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
{}    strategy:
      steps:
        - setWeight: '50'
        - pause: 30s
        - setWeight: 20
{}    strategy:
      steps:
        - setWeight: 10
        - pause: {{duration: -5s}}
        - setWeight: 300
",
        route("a"),
        route("b")
    );
    assert_eq!(
        shown(&text),
        vec![
            "weir.yaml:11:22: routes[0].strategy.steps[0].setWeight: invalid type: string \"50\", expected a number",
            "weir.yaml:12:18: routes[0].strategy.steps[1].pause: invalid type: string \"30s\", expected a mapping",
            "weir.yaml:21:19: routes[1].strategy.steps[1].pause.duration: invalid duration \"-5s\": a duration cannot be negative (write e.g. 500ms, 30s, 5m, 1h)",
            "weir.yaml:22:11: routes[1].strategy.steps[2].setWeight: weight 300 is outside 0 to 100; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`",
        ]
    );

    // In the same route: the steps that could be typed are checked.
    let text = format!(
        "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
{}    strategy:
      steps:
        - pause: 30s
        - setWeight: 300
",
        route("a")
    );
    assert_eq!(
        shown(&text),
        vec![
            "weir.yaml:11:18: routes[0].strategy.steps[0].pause: invalid type: string \"30s\", expected a mapping",
            "weir.yaml:12:11: routes[0].strategy.steps[1].setWeight: weight 300 is outside 0 to 100; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`",
        ]
    );
}

#[test]
fn a_wrong_typed_only_step_does_not_make_the_steps_empty() {
    let text = format!(
        "{LISTENERS}routes:\n{}    strategy:\n      steps:\n        - pause: 30s\n",
        route("a")
    );
    assert_eq!(
        shown(&text),
        vec![
            MAX_CONNECTIONS,
            "weir.yaml:12:18: routes[0].strategy.steps[0].pause: invalid type: string \"30s\", expected a mapping",
        ]
    );
}

/// A route left out takes no part in the checks across routes: its name
/// and match are not compared with the others', and a receiver may name
/// it. The routes that could be typed are checked, at their own indices.
#[test]
fn a_route_left_out_is_not_compared_with_the_others() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: a
    stable: {revision: v1, endpoints: ten}
    canary: {revision: v2, endpoints: [127.0.0.1:23002]}
  - name: a
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
  - name: a
    pathPrefix: /b
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
    canary: {revision: v2, endpoints: [127.0.0.1:23002], weight: 101}
notifications:
  - name: n
    url: http://hooks.example.com/
    triggers: [on-rollout-completed]
    routes: [a, zz]
";
    assert_eq!(
        shown(text),
        vec![
            "weir.yaml:6:39: routes[0].stable.endpoints: invalid type: string \"ten\", expected a list",
            "weir.yaml:10:5: routes[2].name: route name `a` is already used by routes[1]; route names must be unique",
            "weir.yaml:13:58: routes[2].canary.weight: weight 101 is outside 0 to 100; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`",
            "weir.yaml:18:17: notifications[0].routes[1]: no route is named `zz`; the routes are `a`, `a`",
        ]
    );

    // Only the route left out bears the name: no duplicate, and the
    // receiver naming it is not told that no route has that name.
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: a
    stable: {revision: v1, endpoints: ten}
    canary: {revision: v2, endpoints: [127.0.0.1:23002]}
  - name: a
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
  - name: c
    pathPrefix: /c
    stable: [v1]
notifications:
  - name: n
    url: http://hooks.example.com/
    triggers: [on-rollout-completed]
    routes: [c]
";
    assert_eq!(
        shown(text),
        vec![
            "weir.yaml:6:39: routes[0].stable.endpoints: invalid type: string \"ten\", expected a list",
            "weir.yaml:12:13: routes[2].stable: invalid type: a list, expected a mapping",
        ]
    );
}

/// A key that is not known may be a known one misspelled: a check that
/// the known key is absent stays quiet.
#[test]
fn a_misspelled_key_is_not_also_reported_as_missing() {
    let header = format!("{LISTENERS}routes:\n");
    let cases = [
        (
            // A step whose kind is misspelled.
            format!(
                "{header}{}    strategy:\n      steps:\n        - setweight: 10\n",
                route("a")
            ),
            "weir.yaml:12:11: routes[0].strategy.steps[0].setweight: unknown field `setweight`",
        ),
        (
            // `canary` misspelled, with a strategy.
            format!(
                "{header}  - name: a\n    stable: {{revision: v1, endpoints: [127.0.0.1:23001]}}\n    canry: {{revision: v2, endpoints: [127.0.0.1:23002]}}\n    strategy:\n      steps: [{{setWeight: 10}}]\n"
            ),
            "weir.yaml:8:5: routes[0].canry: unknown field `canry`",
        ),
        (
            // `strategy` misspelled, with a canary equal to stable.
            format!(
                "{header}  - name: a\n    stable: {{revision: v1, endpoints: [127.0.0.1:23001]}}\n    canary: {{revision: v1, endpoints: [127.0.0.1:23002]}}\n    stratgy:\n      steps: [{{setWeight: 10}}]\n"
            ),
            "weir.yaml:9:5: routes[0].stratgy: unknown field `stratgy`",
        ),
        (
            // `steps` misspelled.
            format!(
                "{header}{}    strategy:\n      step: [{{setWeight: 10}}]\n",
                route("a")
            ),
            "weir.yaml:11:7: routes[0].strategy.step: unknown field `step`",
        ),
        (
            // `writerToken` misspelled.
            format!(
                "{LISTENERS}admin:\n  address: 127.0.0.1:9900\n  readerToken: reader-token-0123456789abcdef\n  writertoken: writer-token-0123456789abcdef\nroutes:\n{}",
                route("a")
            ),
            "weir.yaml:8:3: admin.writertoken: unknown field `writertoken`",
        ),
    ];
    for (text, want) in cases {
        let got = shown(&text);
        assert!(
            got.len() == 2 && got[0] == MAX_CONNECTIONS && got[1].starts_with(want),
            "want only {MAX_CONNECTIONS}\n and {want}...\n got {got:#?}\nfor:\n{text}"
        );
    }
}

/// A required key misspelled is reported once, as the unknown key that
/// names it (`did you mean ...?`), not also as missing.
#[test]
fn a_misspelled_required_key_is_reported_once() {
    let text = format!("{LISTENERS}routez:\n{}", route("a"));
    let got = shown(&text);
    assert!(
        got.len() == 1
            && got[0].starts_with("weir.yaml:5:1: routez: unknown field `routez`")
            && got[0].ends_with("did you mean `routes`?"),
        "{got:#?}"
    );
    let text = format!(
        "{LISTENERS}routes:\n  - name: a\n    stabel: {{revision: v1, endpoints: [127.0.0.1:23001]}}\n"
    );
    let got = shown(&text);
    assert!(
        got.len() == 2
            && got[0] == MAX_CONNECTIONS
            && got[1].starts_with("weir.yaml:7:5: routes[0].stabel: unknown field `stabel`")
            && got[1].ends_with("did you mean `stable`?"),
        "{got:#?}"
    );
}

/// Outside any list, a wrong-typed optional key is left out, without the
/// problems its absence could bring; a wrong-typed required one leaves
/// nothing to check.
#[test]
fn top_level_keys_left_out_bring_no_problems_of_their_own() {
    // Without `admin`, its default address would clash with the listener;
    // without `analysisTemplates`, the template would be unknown.
    let text = format!(
        "\
listeners:
  - name: public
    address: 127.0.0.1:9900
admin: 7
analysisTemplates: 5
routes:
{}    strategy:
      steps:
        - analysis: {{templates: [{{templateName: t}}]}}
        - setWeight: 300
",
        route("a")
    );
    assert_eq!(
        shown(&text),
        vec![
            "weir.yaml:4:8: admin: invalid type: integer `7`, expected a mapping",
            "weir.yaml:5:20: analysisTemplates: invalid type: integer `5`, expected a list",
            "weir.yaml:14:11: routes[0].strategy.steps[1].setWeight: weight 300 is outside 0 to 100; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`",
        ]
    );

    let text = format!(
        "listeners: 5\nroutes:\n{}    pathPrefix: nope\n",
        route("A")
    );
    assert_eq!(
        shown(&text),
        vec!["weir.yaml:1:12: listeners: invalid type: integer `5`, expected a list"]
    );
}

/// A template left out, or one with a part left out, is neither unknown
/// nor resolved where it is named; an unknown name is still reported.
#[test]
fn references_to_templates_left_out_are_not_unknown() {
    let text = format!(
        "\
listeners:
  - name: public
    address: 127.0.0.1:23080
analysisTemplates:
  - name: t
    args: [{{name: x}}, {{name: [y]}}]
    metrics:
      - name: m
        successCondition: result < {{{{args.y}}}}
        provider: {{prometheus: {{address: 'http://p', query: q}}}}
  - name: u
    metrics: [{{name: m, provider: {{prometheus: {{address: 'http://p', query: q, timeout: x}}}}}}]
  - name: w
    metric: []
routes:
{}    strategy:
      steps:
        - analysis: {{templates: [{{templateName: t}}, {{templateName: u}}, {{templateName: w}}, {{templateName: v}}]}}
",
        route("a")
    );
    assert_eq!(
        shown(&text),
        vec![
            "weir.yaml:6:30: analysisTemplates[0].args[1].name: invalid type: a list, expected a string",
            "weir.yaml:12:89: analysisTemplates[1].metrics[0].provider.prometheus.timeout: invalid type: string \"x\", expected a whole number",
            "weir.yaml:14:5: analysisTemplates[2].metric: unknown field `metric`, expected one of `name`, `args`, `metrics`, `dryRun`; did you mean `metrics`?",
            "weir.yaml:22:92: routes[0].strategy.steps[0].analysis.templates[3].templateName: unknown template `v`; defined: t, u",
        ]
    );
}

/// A key left out of a metric may be its provider or `interval`; the
/// metric's other problems are reported.
#[test]
fn a_metric_with_a_misspelled_key_is_checked_for_the_rest() {
    let text = format!(
        "\
{LISTENERS}analysisTemplates:
  - name: t
    metrics:
      - name: no-provider
        provider: {{prometheus: {{address: 'http://p', query: q}}}}
        provider: {{prometeus: {{address: 'http://p', query: q}}}}
      - name: no-interval
        intervl: 10s
        count: 5
        provider: {{prometheus: {{address: 'http://p', query: q}}}}
      - name: bad-condition
        colour: blue
        successCondition: 'result <'
        provider: {{prometheus: {{address: 'http://p', query: q}}}}
routes:
{}",
        route("a")
    );
    let got = shown(&text);
    let want = [
        MAX_CONNECTIONS,
        "weir.yaml:10:9: analysisTemplates[0].metrics[0].provider: duplicate key `provider`",
        "weir.yaml:12:9: analysisTemplates[0].metrics[1].intervl: unknown field `intervl`",
        "weir.yaml:16:9: analysisTemplates[0].metrics[2].colour: unknown field `colour`",
        "weir.yaml:17:9: analysisTemplates[0].metrics[2].successCondition: the condition does not parse",
    ];
    assert!(
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.starts_with(w)),
        "want {want:#?}\n got {got:#?}"
    );

    let text = text.replace(
        "        provider: {prometheus: {address: 'http://p', query: q}}\n        provider: {prometeus",
        "        provider: {prometeus",
    );
    let got = shown(&text);
    assert!(
        got.len() == want.len()
            && got[1].starts_with("weir.yaml:9:20: analysisTemplates[0].metrics[0].provider.prometeus: unknown field `prometeus`"),
        "{got:#?}"
    );
}

/// An optional key that cannot be typed is left out alone: the other
/// problems of its route, its analysis and its steps are reported too.
#[test]
fn an_optional_key_that_cannot_be_typed_hides_nothing_else() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: c
    stable: {revision: v1, endpoints: [127.0.0.1:23001], tls: {serverName: 'bad name!', insecureSkipVerify: 'yes'}}
    canary: {revision: v2, endpoints: [127.0.0.1:23002]}
    strategy:
      steps: [{setWeight: 200}]
      analysis: {minRequests: -5, maxErrorRate: 1.5}
";
    let shown = shown(text);
    let paths = key_paths(&shown);
    assert_eq!(
        paths,
        vec![
            "routes[0].stable.tls.serverName",
            "routes[0].stable.tls.insecureSkipVerify",
            "routes[0].strategy.steps[0].setWeight",
            "routes[0].strategy.analysis.minRequests",
            "routes[0].strategy.analysis.maxErrorRate",
        ],
        "{shown:#?}"
    );
}

/// A route whose `hosts` or `pathPrefix` cannot be typed is not compared
/// with the others by the defaults it would otherwise have.
#[test]
fn a_route_whose_match_was_left_out_matches_nothing_else() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: a
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
  - name: b
    hosts: shop.example.com
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
  - name: c
    pathPrefix: [/api]
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
  - name: d
    pathPrefix: /d
    stable: {revision: v1, endpoints: [127.0.0.1:23001]}
";
    let shown = shown(text);
    let paths = key_paths(&shown);
    assert_eq!(
        paths,
        vec!["routes[1].hosts", "routes[2].pathPrefix"],
        "{shown:#?}"
    );
}

/// The key path of each message `shown` prints (`FILE:LINE:COL: PATH: ...`).
fn key_paths(shown: &[String]) -> Vec<&str> {
    shown
        .iter()
        .map(|line| line.split(": ").nth(1).unwrap_or(""))
        .collect()
}

/// A mapping without a required text key (other than a name) still has
/// its other keys checked: every error is printed, not only the missing
/// key.
#[test]
fn a_missing_text_key_does_not_hide_its_siblings_problems() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:23080
routes:
  - name: a
    stable: {endpoints: ['127.0.0.1:0']}
    canary: {revision: v2, endpoints: [127.0.0.1:23002]}
    stickiness:
      maxAge: 1d
    canaryByHeader:
      name: bad header
";
    assert_eq!(
        shown(text),
        vec![
            "weir.yaml:6:5: routes[0].stable: missing field `revision`",
            "weir.yaml:6:26: routes[0].stable.endpoints[0]: endpoint `127.0.0.1:0`: port `0` is not a number from 1 to 65535",
            "weir.yaml:8:5: routes[0].stickiness: missing field `cookie`",
            "weir.yaml:9:7: routes[0].stickiness.maxAge: invalid duration \"1d\": unknown unit (write e.g. 500ms, 30s, 5m, 1h)",
            "weir.yaml:10:5: routes[0].canaryByHeader: missing field `value`",
            "weir.yaml:11:7: routes[0].canaryByHeader.name: header name `bad header` contains a space; use letters, digits and !#$%&'*+-.^_`|~, e.g. `x-canary`",
        ]
    );
}
