//! Structural errors reported together, `${VAR}` in typed values, and the
//! per-listener and idle-timeout keys.

use super::*;
use crate::location::MAX_NODES;

/// `(path, location, message)` of each diagnostic.
fn summary(errors: &[Diagnostic]) -> Vec<(&str, Option<Location>, &str)> {
    errors
        .iter()
        .map(|d| (d.path.as_str(), d.location, d.message.as_str()))
        .collect()
}

fn errors_with_env(text: &str, vars: &[(&str, &str)]) -> Vec<Diagnostic> {
    match parse_env(text, vars) {
        Ok(doc) => panic!("expected errors, got {:?}\nfor:\n{text}", doc.config),
        Err(Diagnostics(errors)) => errors,
    }
}

#[test]
fn every_structural_error_in_a_file_is_reported_with_its_place() {
    let text = "\
listeners:
  - name: public
    address: 127.0.0.1:8080
    maxConnection: 10
admin:
  adress: 127.0.0.1:9900
routes:
  - name: web
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1], weight: ten }
    timeouts: { connect: 1.5, idle: [1s] }
  - name: api
    stable: v1
    strategy:
      steps:
        - setWeight: 5
        - pause: { duration: 30s }
        - setWieght: 10
      analysis: { compareToStable: maybe, minRequests: -1, failureLimit: 5000000000 }
  - name: admin
stateDir: 7
";
    let errors = invalid(text);
    let got = summary(&errors);
    let want: Vec<(&str, Option<Location>, &str)> = vec![
        (
            "listeners[0].maxConnection",
            at(4, 5),
            "unknown field `maxConnection`, expected one of `name`, `address`, `tls`, `maxConnections`; did you mean `maxConnections`?",
        ),
        (
            "admin.adress",
            at(6, 3),
            "unknown field `adress`, expected one of `address`, `readerToken`, `writerToken`; did you mean `address`?",
        ),
        (
            "routes[0].canary.weight",
            at(10, 55),
            "invalid type: string \"ten\", expected a number",
        ),
        (
            "routes[0].timeouts.connect",
            at(11, 26),
            "invalid type: floating point `1.5`, expected a duration such as `500ms`, `30s`, `5m` or `1h`, or a whole number of seconds",
        ),
        (
            "routes[0].timeouts.idle",
            at(11, 37),
            "invalid type: a list, expected a duration such as `500ms`, `30s`, `5m` or `1h`, or a whole number of seconds",
        ),
        (
            "routes[1].stable",
            at(13, 13),
            "invalid type: string \"v1\", expected a mapping",
        ),
        (
            "routes[1].strategy.steps[2].setWieght",
            at(18, 11),
            "unknown field `setWieght`, expected one of `setWeight`, `pause`, `analysis`, `experiment`, `setCanaryScale`, `setHeaderRoute`, `setMirrorRoute`, `plugin`; did you mean `setWeight`?",
        ),
        (
            "routes[1].strategy.analysis.compareToStable",
            at(19, 36),
            "invalid type: string \"maybe\", expected `true` or `false`",
        ),
        (
            "routes[1].strategy.analysis.minRequests",
            at(19, 56),
            "invalid value: integer `-1`, expected a whole number from 0 to 18446744073709551615",
        ),
        (
            "routes[1].strategy.analysis.failureLimit",
            at(19, 74),
            "invalid value: integer `5000000000`, expected a whole number from 0 to 4294967295",
        ),
        ("routes[2]", at(20, 5), "missing field `stable`"),
    ];
    assert_eq!(got, want);
    // `stateDir: 7` is text (a directory named 7), not a type error.
    let shown = Diagnostics(errors).to_string();
    assert!(
        shown.starts_with("weir.yaml:4:5: listeners[0].maxConnection: unknown field"),
        "{shown}"
    );
}

/// The listener whose `tls` lacks `keyFile` is left out; the variable
/// problem inside it is still reported, and so is the route's bad name.
#[test]
fn structural_errors_come_with_the_variable_problems_and_the_semantic_ones() {
    let text = "\
listeners:
  - name: public
    address: ${BIND}
    tls: { certFile: a }
routes:
  - name: Bad_Name
    stable: { revision: v1, endpoints: [a:1] }
";
    let errors = invalid(text);
    assert_eq!(
        summary(&errors),
        vec![
            (
                "listeners[0].address",
                at(3, 5),
                "environment variable `BIND` is not set; set it, or write the value in place of `${BIND}`"
            ),
            ("listeners[0].tls", at(4, 5), "missing field `keyFile`"),
            (
                "routes[0].name",
                at(6, 5),
                "route name `Bad_Name` contains `B`; use lowercase letters, digits and `-` (the name is used in URLs and metric labels), e.g. `bad-name`"
            ),
        ]
    );
}

#[test]
fn duplicate_and_complex_keys_and_tags_are_structural_errors() {
    let cases: Vec<(String, &str, usize, usize, &str)> = vec![
        (
            format!(
                "{HEADER}  - name: r\n    name: s\n    stable: {{ revision: v1, endpoints: [a:1] }}\n"
            ),
            "routes[0].name",
            6,
            5,
            "duplicate key `name`; write each key once",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    ? [a]\n    : b\n"
            ),
            "routes[0].?",
            7,
            7,
            "a key must be a plain name",
        ),
        (
            format!(
                "{HEADER}  - name: !!binary cg==\n    stable: {{ revision: v1, endpoints: [a:1] }}\n"
            ),
            "routes[0].name",
            5,
            20,
            "YAML tag `!!binary` is not supported",
        ),
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: !!set [a:1] }}\n"
            ),
            "routes[0].stable.endpoints",
            6,
            46,
            "YAML tag `!!set` is not supported",
        ),
        // A merge key is named as such, and the keys it would have brought
        // are not reported missing.
        (
            format!(
                "{HEADER}  - name: r\n    stable: {{ <<: {{revision: v1}}, endpoints: [a:1] }}\n"
            ),
            "routes[0].stable.<<",
            6,
            15,
            "YAML merge keys (`<<`) are not supported; write the keys out",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn string_tags_and_quotes_make_text() {
    let config = valid(&format!(
        "{HEADER}  - name: r\n    stable: {{ revision: !!str 1.10, endpoints: [a:1] }}\n    canary: {{ revision: 1.20, endpoints: [b:1], weight: 0x0A }}\n"
    ));
    assert_eq!(&*config.routes[0].stable.revision, "1.10");
    let canary = config.routes[0].canary.as_ref().map(|c| &*c.revision);
    assert_eq!(canary, Some("1.20"));
    assert_eq!(config.routes[0].fixed_weight, Weight::from_percent_int(10));
    let errors = invalid(&format!(
        "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    canary: {{ revision: v2, endpoints: [b:1], weight: '10' }}\n"
    ));
    assert_eq!(
        summary(&errors),
        vec![(
            "routes[0].canary.weight",
            at(7, 55),
            "invalid type: string \"10\", expected a number"
        )]
    );
}

#[test]
fn variables_give_numbers_booleans_and_durations() {
    // Block style takes `${VAR}` bare; a flow mapping needs it quoted, as `{`
    // and `}` end a flow value, and a quoted reference is typed by its value.
    let text = format!(
        "{HEADER}  - name: r
    stable: {{ revision: v1, endpoints: [a:1] }}
    canary:
      revision: v2
      endpoints: [b:1]
      weight: ${{CANARY_WEIGHT}}
    timeouts: {{ connect: '${{CONNECT}}', idle: \"${{IDLE}}\" }}
  - name: s
    pathPrefix: /s
    stable: {{ revision: v1, endpoints: [a:1] }}
    canary: {{ revision: v2, endpoints: [b:1] }}
    strategy:
      steps: [{{ setWeight: '${{FIRST}}' }}]
      analysis:
        compareToStable: ${{CMP}}
        minRequests: ${{MIN}}
        maxErrorRate: 0.${{RATE}}
"
    );
    let vars = [
        ("CANARY_WEIGHT", "12.5"),
        ("CONNECT", "3"),
        ("IDLE", "2m"),
        ("FIRST", "5"),
        ("CMP", "false"),
        ("MIN", "50"),
        ("RATE", "01"),
    ];
    let config = parse_env(&text, &vars)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let web = &config.routes[0];
    assert_eq!(web.fixed_weight.ppm(), 125_000);
    assert_eq!(web.timeouts.connect, Duration::from_secs(3));
    assert_eq!(web.timeouts.idle, Duration::from_secs(120));
    let strategy = config.routes[1].strategy.as_ref().expect("a strategy");
    assert_eq!(
        strategy.steps,
        vec![Step::SetWeight(Weight::from_percent_int(5))]
    );
    assert!(!strategy.analysis.compare_to_stable);
    assert_eq!(strategy.analysis.min_requests, 50);
    assert!((strategy.analysis.max_error_rate - 0.01).abs() < 1e-12);
}

#[test]
fn a_variable_of_the_wrong_type_is_located_at_its_key() {
    let text = format!(
        "{HEADER}  - name: r
    stable: {{ revision: v1, endpoints: [a:1] }}
    canary: {{ revision: v2, endpoints: [b:1] }}
    strategy:
      steps:
        - setWeight: ${{W}}
      analysis:
        compareToStable: ${{CMP}}
        minRequests: ${{MISSING}}
"
    );
    let errors = errors_with_env(&text, &[("W", "ten"), ("CMP", "yes")]);
    assert_eq!(
        summary(&errors),
        vec![
            (
                "routes[0].strategy.steps[0].setWeight",
                at(10, 22),
                "invalid type: string \"ten\", expected a number (`${W}` expands to `ten`)"
            ),
            (
                "routes[0].strategy.analysis.compareToStable",
                at(12, 26),
                "invalid type: string \"yes\", expected `true` or `false` (`${CMP}` expands to `yes`)"
            ),
            (
                "routes[0].strategy.analysis.minRequests",
                at(13, 9),
                "environment variable `MISSING` is not set; set it, or write the value in place of `${MISSING}`"
            ),
        ]
    );
}

#[test]
fn a_substituted_value_cannot_add_yaml_structure() {
    let text = format!(
        "{HEADER}  - name: r
    stable: {{ revision: '${{REV}}', endpoints: [a:1] }}
    canary:
      revision: v2
      endpoints: [b:1]
      weight: ${{W}}
"
    );
    // A revision with `: ` and a newline stays one (refused) scalar, and a
    // weight with `, key: {}` stays one (mistyped) scalar: no key appears.
    let errors = errors_with_env(&text, &[("REV", "v1\nweight: 100"), ("W", "5")]);
    assert_eq!(
        summary(&errors),
        vec![(
            "routes[0].stable.revision",
            at(6, 15),
            "revision `v1\\nweight: 100` contains a control character; use a plain label such as `v2`"
        )]
    );
    let errors = errors_with_env(&text, &[("REV", "v1"), ("W", "5, strategy: {}")]);
    assert_eq!(
        summary(&errors),
        vec![(
            "routes[0].canary.weight",
            at(10, 15),
            "invalid type: string \"5, strategy: {}\", expected a number (`${W}` expands to `5, strategy: {}`)"
        )]
    );
    // The same text as a value of a text key is just text.
    let config = parse_env(
        &format!("{HEADER}  - name: r\n    stable: {{ revision: '${{REV}}', endpoints: [a:1] }}\n"),
        &[("REV", "v1: {x: [y]}")],
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .config;
    assert_eq!(&*config.routes[0].stable.revision, "v1: {x: [y]}");
}

#[test]
fn max_connections_and_idle_timeout_have_defaults_and_checks() {
    let config = valid(&format!(
        "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n"
    ));
    assert_eq!(config.listeners[0].max_connections, 10_000);
    assert_eq!(config.routes[0].timeouts.idle, Duration::from_secs(60));

    let config = valid(
        "\
listeners:
  - name: public
    address: 127.0.0.1:8080
    maxConnections: 2
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    timeouts: { request: 5m, idle: 500ms }
",
    );
    assert_eq!(config.listeners[0].max_connections, 2);
    let timeouts = config.routes[0].timeouts;
    assert_eq!(timeouts.request, Duration::from_secs(300));
    assert_eq!(timeouts.idle, Duration::from_millis(500));

    let snapshot = Snapshot::compile(&config, &|_| None, &|_| Vec::new());
    assert_eq!(snapshot.routes[0].timeouts.idle, Duration::from_millis(500));

    let errors = invalid(
        "\
listeners:
  - name: public
    address: 127.0.0.1:8080
    maxConnections: 0
  - name: other
    address: 127.0.0.1:8081
    maxConnections: many
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    timeouts: { idle: 0s }
",
    );
    assert_eq!(
        summary(&errors),
        vec![
            (
                "listeners[0].maxConnections",
                at(4, 5),
                "`maxConnections` is 0, which would refuse every client; it must be at least 1, e.g. `10000`"
            ),
            (
                "listeners[1].maxConnections",
                at(7, 21),
                "invalid type: string \"many\", expected a whole number"
            ),
            (
                "routes[0].timeouts.idle",
                at(11, 17),
                "`idle` is 0; it must be more than 0, e.g. `60s`"
            ),
        ]
    );
    let errors = invalid(
        "\
listeners:
  - name: public
    address: 127.0.0.1:8080
    maxConnections: 0
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    timeouts: { idle: 0s }
",
    );
    assert_eq!(
        summary(&errors),
        vec![
            (
                "listeners[0].maxConnections",
                at(4, 5),
                "`maxConnections` is 0, which would refuse every client; it must be at least 1, e.g. `10000`"
            ),
            (
                "routes[0].timeouts.idle",
                at(8, 17),
                "`idle` is 0; it must be more than 0, e.g. `60s`"
            ),
        ]
    );
}

#[test]
fn deep_nesting_and_alias_bombs_are_refused_quickly() {
    let deep = format!(
        "listeners: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let errors = invalid(&deep);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].message,
        "invalid YAML: the YAML nests deeper than 64 levels"
    );

    let block: String = (0..200)
        .map(|depth| format!("{}- \n", "  ".repeat(depth)))
        .collect();
    let errors = invalid(&format!("listeners:\n{block}"));
    assert!(errors[0].message.contains("nests deeper"), "{errors:#?}");

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let j = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}]\n"
        ));
    }
    let errors = invalid(&bomb);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .message
            .contains("more than 100000 values once aliases are expanded"),
        "{errors:#?}"
    );
}

#[test]
fn each_value_counts_once_however_deep() {
    // 240 routes shaped like SPEC section 2's example: some 18,700 values,
    // the deepest six levels down.
    let (header, route) = SPEC_EXAMPLE
        .split_once("routes:\n")
        .expect("the example has routes");
    let routes: String = (0..240)
        .map(|i| {
            route
                .replace("name: checkout", &format!("name: checkout-{i}"))
                .replace("pathPrefix: / ", &format!("pathPrefix: /{i} "))
        })
        .collect();
    let text = format!("{header}routes:\n{routes}");
    let vars = [("WEIR_READER_TOKEN", "r"), ("WEIR_WRITER_TOKEN", "w")];
    match parse_env(&text, &vars) {
        Ok(doc) => assert_eq!(doc.config.routes.len(), 240),
        Err(errors) => panic!("240 routes are refused:\n{errors}"),
    }

    // At the limit: a mapping, two keys, two lists and a mapping, then items.
    let hosts = |n: usize| format!("routes:\n  - hosts: [{}]\n", vec!["a"; n].join(","));
    let errors = invalid(&hosts(MAX_NODES - 6));
    assert!(
        errors.iter().all(|e| !e.message.contains("values")),
        "{errors:#?}"
    );
    let errors = invalid(&hosts(MAX_NODES - 5));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].location, at(2, 13 + 2 * (MAX_NODES - 6)));
    assert!(
        errors[0].message.contains("more than 100000 values"),
        "{errors:#?}"
    );
    assert!(!errors[0].message.contains("alias"), "{errors:#?}");
}

#[test]
fn aliases_repeating_long_text_are_refused_quickly() {
    // 100 kB written once, then repeated by each alias.
    let text = |aliases: usize| {
        format!(
            "a: &a {}\nb: [{}]\n",
            "k".repeat(100_000),
            vec!["*a"; aliases].join(", ")
        )
    };
    let errors = invalid(&text(40));
    assert!(
        errors.iter().all(|e| !e.message.contains("repeat")),
        "{errors:#?}"
    );
    let errors = invalid(&text(50_000));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].message,
        "the aliases repeat more than 4 MiB of text; write the file out more simply"
    );
    assert_eq!(errors[0].location, at(2, 5 + 4 * 41));
}

/// A large variable behind an alias repeated many times: what the
/// substitutions add is bounded as what aliases repeat is, said once, and
/// each diagnostic quoting the value shows its start and end only.
#[test]
fn substitutions_repeated_by_aliases_are_bounded() {
    let big = "h".repeat(100_000);
    let text = |aliases: usize| {
        format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nadmin:\n  address: \
             127.0.0.1:9900\nroutes:\n  - name: web\n    hosts: [&h '${{BIG}}', {}]\n    \
             stable: {{ revision: v1, endpoints: [a:1] }}\n",
            vec!["*h"; aliases].join(", ")
        )
    };
    let errors = errors_with_env(&text(2_000), &[("BIG", &big)]);
    let bounded: Vec<&Diagnostic> = errors
        .iter()
        .filter(|e| e.message.contains("substitutions add more than 4 MiB"))
        .collect();
    assert_eq!(bounded.len(), 1, "said once: {errors:#?}");
    assert!(
        bounded[0].path.starts_with("routes[0].hosts["),
        "{bounded:#?}"
    );
    // The hosts that were substituted are each refused for their text;
    // shown, each keeps the start and end of its message only.
    for error in &errors {
        let shown = error.to_string();
        assert!(
            shown.len() < 4_000,
            "{} bytes: {}",
            shown.len(),
            &shown[..200]
        );
    }
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("characters left out")),
        "a long message is shortened"
    );
}

#[test]
fn anchors_and_aliases_share_values() {
    let config = valid(
        "\
listeners:
  - name: public
    address: 127.0.0.1:8080
routes:
  - name: a
    pathPrefix: /a
    stable: &v1 { revision: v1, endpoints: [a:1, b:2] }
  - name: b
    pathPrefix: /b
    stable: *v1
",
    );
    assert_eq!(config.routes[1].stable, config.routes[0].stable);
}

#[test]
fn a_mapping_of_the_most_keys_a_file_holds_is_checked_for_duplicates_at_once() {
    // As many `headers` as a document may hold values, every one distinct
    // but the last, which repeats the first: a check comparing each key with
    // every earlier one makes some 1.2 billion comparisons here.
    let keys = (MAX_NODES - 40) / 2;
    let mut text = String::with_capacity(keys * 16);
    text.push_str(
        "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n  - name: web\n    stable: { revision: v1, endpoints: [a:1] }\nnotifications:\n  - name: hook\n    url: http://127.0.0.1:9999/hook\n    triggers: [on-rollout-aborted]\n    headers:\n",
    );
    for i in 0..keys - 1 {
        text.push_str(&format!("      x-{i}: v\n"));
    }
    text.push_str("      x-0: w\n");
    let errors = invalid(&text);
    assert_eq!(
        summary(&errors),
        vec![(
            "notifications[0].headers.x-0",
            at(12 + keys - 1, 7),
            "duplicate key `x-0`; write each key once",
        )]
    );
}

#[test]
fn a_key_is_compared_with_few_others_however_many_came_before() {
    use std::cell::Cell;
    use std::hash::{Hash, Hasher};

    use crate::validate::structure::FirstSeen;

    /// A key that counts how often it is compared.
    struct Counted<'c> {
        key: usize,
        comparisons: &'c Cell<usize>,
    }
    impl PartialEq for Counted<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.comparisons.set(self.comparisons.get() + 1);
            self.key == other.key
        }
    }
    impl Eq for Counted<'_> {}
    impl Hash for Counted<'_> {
        fn hash<H: Hasher>(&self, state: &mut H) {
            self.key.hash(state);
        }
    }

    let comparisons = Cell::new(0);
    let key = |key| Counted {
        key,
        comparisons: &comparisons,
    };
    let n = 5_000;
    let mut seen = FirstSeen::with_capacity(n);
    for k in 0..n {
        assert!(seen.first(key(k)), "key {k} is new");
    }
    for k in (0..n).rev() {
        assert!(!seen.first(key(k)), "key {k} was seen");
    }
    assert!(seen.contains(key(0)));
    assert!(!seen.contains(key(n)));
    // Each duplicate is compared with itself, a new key with about none:
    // comparing with every earlier key would take n² = 25,000,000.
    assert!(
        comparisons.get() <= 3 * n,
        "{} comparisons for {} keys offered",
        comparisons.get(),
        2 * n
    );
}

#[test]
fn long_lists_of_methods_and_protocols_are_checked_for_repeats_at_once() {
    // Some 90,000 names, each distinct but the last of each list: checking
    // each against every earlier one would make 2 billion comparisons.
    let methods = 50_000;
    let protocols = 40_000;
    let list = |prefix: &str, n: usize| {
        let mut names: Vec<String> = (0..n - 1).map(|i| format!("{prefix}{i}")).collect();
        names.push(format!("{prefix}0"));
        names.join(",")
    };
    let text = format!(
        "{HEADER}  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    stableFallback: {{ methods: [{}] }}\n    upgrades: [{}]\n",
        list("M", methods),
        list("p", protocols)
    );
    let errors = invalid(&text);
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|d| (d.path.as_str(), d.message.as_str()))
        .collect();
    let method_at = format!("routes[0].stableFallback.methods[{}]", methods - 1);
    let protocol_at = format!("routes[0].upgrades[{}]", protocols - 1);
    assert_eq!(
        got,
        vec![
            (method_at.as_str(), "`M0` is listed twice"),
            (protocol_at.as_str(), "`p0` is listed twice"),
        ]
    );
}

#[test]
fn a_key_with_nothing_after_it_is_reported_where_the_key_is() {
    let text = "\
admin: { address: 127.0.0.1:9900 }
routes:
  - name: web
    stable:
      revision: v1
      endpoints:

      # the endpoints were to come here
    pathPrefix: /x
listeners:
";
    let errors = invalid(text);
    let got = summary(&errors);
    assert!(
        got.contains(&(
            "routes[0].stable.endpoints",
            at(6, 7),
            "invalid type: nothing (null), expected a list"
        )),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|(path, place, _)| *path == "listeners" && *place == at(10, 1)),
        "{got:#?}"
    );
}
