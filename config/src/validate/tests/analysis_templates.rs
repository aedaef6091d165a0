//! `analysisTemplates` and the references to them, valid and invalid.

use super::*;
use crate::model::{AnalysisRef, Provider, Step};

/// A file with one template and a route that uses it in a step and in the
/// background; `{COND}`, `{LIMIT}`, `{STEP}` and `{BG}` are replaced.
const TEMPLATE_FILE: &str = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: errors
    args: [{name: route}, {name: max, value: "0.01"}]
    metrics:
      - name: error-ratio
        interval: 5s
        successCondition: {COND}
        failureLimit: {LIMIT}
        provider:
          prometheus:
            address: http://127.0.0.1:9090
            query: 'sum(rate(weir_http_requests_total{route="{{args.route}}"}[1m]))'
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - setWeight: 10
        - analysis: {STEP}
      analysis: {BG}
"#;

const GOOD_CONDITION: &str = "len(result) == 0 || isNaN(result[0]) || result[0] <= {{args.max}}";
const GOOD_STEP: &str =
    "{ templates: [{ templateName: errors }], args: [{ name: route, value: r }] }";
const GOOD_BG: &str = "{ templates: [{ templateName: errors }], args: [{ name: route, value: r }, { name: max, value: '0.5' }] }";

/// The analysis step at `index` of the first route's strategy.
fn analysis_step(config: &Config, index: usize) -> &AnalysisRef {
    let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
    let Step::Analysis(step) = &strategy.steps[index] else {
        panic!(
            "step {} is not an analysis step: {:?}",
            index + 1,
            strategy.steps[index]
        );
    };
    step
}

fn file(condition: &str, limit: &str, step: &str, background: &str) -> String {
    TEMPLATE_FILE
        .replace("{COND}", condition)
        .replace("{LIMIT}", limit)
        .replace("{STEP}", step)
        .replace("{BG}", background)
}

#[test]
fn a_template_resolves_into_steps_and_background_runs() {
    let config = valid(&file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG));
    let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
    let Step::Analysis(step) = &strategy.steps[1] else {
        panic!("step 2 is an analysis step: {:?}", strategy.steps[1]);
    };
    assert_eq!(step.templates, vec![Arc::<str>::from("errors")]);
    assert_eq!(
        step.args,
        vec![
            ("max".to_owned(), "0.01".to_owned()),
            ("route".to_owned(), "r".to_owned())
        ]
    );
    let metric = &step.metrics[0];
    assert_eq!(&*metric.name, "error-ratio");
    assert_eq!(metric.interval, Some(Duration::from_secs(5)));
    assert_eq!(metric.count, None);
    assert_eq!(metric.failure_limit, Some(1));
    assert_eq!(metric.inconclusive_limit, 0);
    assert_eq!(metric.consecutive_error_limit, 4);
    let condition = metric.success_condition.as_ref().expect("a condition");
    assert!(
        condition.text().ends_with("result[0] <= 0.01"),
        "{condition}"
    );
    let Provider::Prometheus(query) = &metric.provider else {
        panic!("a Prometheus metric");
    };
    assert_eq!(
        query.query,
        r#"sum(rate(weir_http_requests_total{route="r"}[1m]))"#
    );
    assert_eq!(query.timeout, Duration::from_secs(30));
    let background = strategy.background.as_ref().expect("a background run");
    let condition = background.metrics[0]
        .success_condition
        .as_ref()
        .expect("a condition");
    assert!(
        condition.text().ends_with("result[0] <= 0.5"),
        "{condition}"
    );
    // Background templates alone do not make steps wait for the built-in judge.
    assert!(!strategy.gated_by_analysis);
    // -1 turns the failure limit off.
    let config = valid(&file(GOOD_CONDITION, "-1", GOOD_STEP, GOOD_BG));
    let step = analysis_step(&config, 1);
    assert_eq!(step.metrics[0].failure_limit, None);
}

#[test]
fn template_problems_are_located() {
    let cases = vec![
        (
            file(
                GOOD_CONDITION,
                "1",
                "{ templates: [{ templateName: nope }] }",
                GOOD_BG,
            ),
            "routes[0].strategy.steps[1].analysis.templates[0].templateName",
            23,
            37,
            "unknown template `nope`; defined: errors",
        ),
        (
            file(
                GOOD_CONDITION,
                "1",
                "{ templates: [{ templateName: errors }] }",
                GOOD_BG,
            ),
            "routes[0].strategy.steps[1].analysis",
            23,
            11,
            "template `errors` needs a value for argument `route`",
        ),
        (
            file(
                GOOD_CONDITION,
                "1",
                GOOD_STEP,
                "{ templates: [{ templateName: errors }], args: [{ name: route, value: r }, { name: rout, value: r }] }",
            ),
            "routes[0].strategy.analysis.args[1].name",
            24,
            94,
            "argument `rout` is not declared by template `errors`",
        ),
        (
            file("result[0] <= ", "1", GOOD_STEP, GOOD_BG),
            "analysisTemplates[0].metrics[0].successCondition",
            10,
            9,
            "the condition does not parse: at column 13: expected a value",
        ),
        (
            file("result[0] <= {{args.maximum}}", "1", GOOD_STEP, GOOD_BG),
            "analysisTemplates[0].metrics[0].successCondition",
            10,
            9,
            "`{{args.maximum}}` names no argument of this template (declared: max, route)",
        ),
        (
            file(
                GOOD_CONDITION,
                "1",
                GOOD_STEP,
                "{ templates: [{ templateName: errors }], args: [{ name: route, value: r }, { name: max, value: 'x y' }] }",
            ),
            "routes[0].strategy.analysis.args[1].value",
            24,
            105,
            "with these arguments, analysisTemplates[0].metrics[0].successCondition the condition \
             does not parse (`len(result) == 0 || isNaN(result[0]) || result[0] <= x y` with the \
             arguments in place)",
        ),
        (
            file(GOOD_CONDITION, "-2", GOOD_STEP, GOOD_BG),
            "analysisTemplates[0].metrics[0].failureLimit",
            11,
            23,
            "expected a whole number from -1 to",
        ),
        (
            file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG).replace("interval: 5s", "interval: 0s"),
            "analysisTemplates[0].metrics[0].interval",
            9,
            9,
            "`interval` is 0",
        ),
        (
            file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG).replace("interval: 5s", "count: 3"),
            "analysisTemplates[0].metrics[0].count",
            9,
            9,
            "`count` 3 needs an `interval`",
        ),
        (
            file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG).replace("interval: 5s", "interval: soon"),
            "analysisTemplates[0].metrics[0].interval",
            9,
            9,
            "invalid duration",
        ),
        (
            file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG)
                .replace("http://127.0.0.1:9090", "127.0.0.1:9090"),
            "analysisTemplates[0].metrics[0].provider.prometheus.address",
            14,
            13,
            "not an http:// or https:// URL",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn web_provider_fields_are_read_and_checked() {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: smoke
    metrics:
      - name: smoke
        successCondition: result.failed == 0
        provider:
          web:
            url: http://127.0.0.1:8000/smoke
            method: POST
            headers: [{key: x-token, value: abc}]
            jsonBody: {suite: checkout, retries: 2}
            jsonPath: "{$.summary}"
            timeoutSeconds: 60
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - analysis: { templates: [{ templateName: smoke }] }
"#;
    let config = valid(text);
    let step = analysis_step(&config, 0);
    let Provider::Web(web) = &step.metrics[0].provider else {
        panic!("a web metric");
    };
    assert_eq!(web.method, "POST");
    assert_eq!(web.headers, vec![("x-token".to_owned(), "abc".to_owned())]);
    assert_eq!(
        web.body.as_deref(),
        Some(r#"{"retries":2,"suite":"checkout"}"#)
    );
    assert!(web.json_body);
    assert_eq!(web.timeout, Duration::from_secs(60));
    let path = web.json_path.as_ref().expect("a path");
    let answer = serde_json::json!({"summary": {"failed": 0}});
    assert_eq!(
        path.select(&answer),
        Some(&serde_json::json!({"failed": 0}))
    );

    let bad = text.replace("\"{$.summary}\"", "\"{$.items[?(@.x)]}\"");
    assert_eq!(
        check_single(
            &bad,
            "analysisTemplates[0].metrics[0].provider.web.jsonPath",
            15,
            13,
            "weir reads a whole index"
        ),
        Ok(())
    );
    let bad = text.replace("\"{$.summary}\"", "\"{$.items[\"");
    assert_eq!(
        check_single(
            &bad,
            "analysisTemplates[0].metrics[0].provider.web.jsonPath",
            15,
            13,
            "`{` without a closing `}`"
        ),
        Ok(())
    );
    let bad = text.replace("method: POST", "method: PATCH");
    assert_eq!(
        check_single(
            &bad,
            "analysisTemplates[0].metrics[0].provider.web.method",
            12,
            13,
            "method `PATCH` is not supported"
        ),
        Ok(())
    );
}

#[test]
fn https_addresses_and_argos_insecure_are_read_for_both_providers() {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: both
    metrics:
      - name: smoke
        provider:
          web: { url: "https://smoke.example:8443/smoke", insecure: true }
      - name: errors
        provider:
          prometheus: { address: "https://prometheus.example:9091/", query: up }
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - analysis: { templates: [{ templateName: both }] }
"#;
    let config = valid(text);
    let step = analysis_step(&config, 0);
    let Provider::Web(web) = &step.metrics[0].provider else {
        panic!("a web metric");
    };
    assert_eq!(web.url, "https://smoke.example:8443/smoke");
    assert!(web.insecure);
    let Provider::Prometheus(prometheus) = &step.metrics[1].provider else {
        panic!("a Prometheus metric");
    };
    assert_eq!(prometheus.address, "https://prometheus.example:9091");
    assert!(!prometheus.insecure, "verified unless `insecure: true`");
}

/// Provider headers are checked as HTTP header names and values where they
/// are written (and, with the arguments in place, where they are used), not
/// left to abort the rollout when the run sends its first request.
#[test]
fn provider_headers_must_be_http_header_names_and_values() {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: smoke
    args: [{name: tenant}]
    metrics:
      - name: smoke
        provider:
          web:
            url: http://127.0.0.1:8000/smoke
            headers: [{key: x-tenant, value: "{{args.tenant}}"}]
      - name: errors
        provider:
          prometheus:
            address: http://127.0.0.1:9090
            query: up
            headers: [{key: x-scope, value: a}]
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - analysis: { templates: [{ templateName: smoke }], args: [{ name: tenant, value: t1 }] }
"#;
    let config = valid(text);
    let step = analysis_step(&config, 0);
    let Provider::Web(web) = &step.metrics[0].provider else {
        panic!("a web metric");
    };
    assert_eq!(web.headers, vec![("x-tenant".to_owned(), "t1".to_owned())]);

    let cases = vec![
        (
            text.replace("key: x-tenant", "key: \"X Tenant\""),
            "analysisTemplates[0].metrics[0].provider.web.headers[0].key",
            12,
            24,
            "`X Tenant` is not an HTTP header name",
        ),
        (
            text.replace("key: x-tenant", "key: \"\""),
            "analysisTemplates[0].metrics[0].provider.web.headers[0].key",
            12,
            24,
            "`` is not an HTTP header name",
        ),
        (
            text.replace("key: x-scope", "key: \"x:scope\""),
            "analysisTemplates[0].metrics[1].provider.prometheus.headers[0].key",
            18,
            24,
            "`x:scope` is not an HTTP header name",
        ),
        (
            text.replace("value: a}", "value: \"a\\nb\"}"),
            "analysisTemplates[0].metrics[1].provider.prometheus.headers[0].value",
            18,
            38,
            "is not a valid HTTP header value (control characters or non-ASCII)",
        ),
        (
            text.replace("value: t1", "value: \"t1\\r\\nx-evil: 1\""),
            "routes[0].strategy.steps[0].analysis.args[0].value",
            25,
            84,
            "with these arguments, analysisTemplates[0].metrics[0].provider.web.headers[0].value \
             `{{args.tenant}}` resolves to `t1\\r\\nx-evil: 1`, which is not a valid HTTP header value",
        ),
    ];
    assert_cases(&cases);
}

/// A file with `templates`, and a route whose background analysis is
/// `analysis`.
fn with_templates(templates: &str, analysis: &str) -> String {
    format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nanalysisTemplates:\n{templates}routes:\n  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    canary: {{ revision: v2, endpoints: [b:1] }}\n    strategy:\n      steps:\n        - setWeight: 10\n      analysis: {analysis}\n"
    )
}

/// A template named `name` declaring `args` (without values), measuring
/// `query`.
fn template(name: &str, args: &[String], query: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{{name: {a}}}")).collect();
    format!(
        "  - name: {name}\n    args: [{}]\n    metrics:\n      - name: m-{name}\n        successCondition: result > 0\n        provider:\n          prometheus:\n            address: http://127.0.0.1:9090\n            query: '{query}'\n",
        args.join(", ")
    )
}

#[test]
fn a_template_named_twice_is_reported_once_not_once_per_argument() {
    // 300 mentions of a template of 300 arguments without values: each
    // mention asked for each value, 90,000 problems.
    let n = 300;
    let args: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let refs = vec!["{templateName: t}"; n].join(", ");
    let errors = invalid(&with_templates(
        &template("t", &args, "up"),
        &format!("{{ templates: [{refs}] }}"),
    ));
    // Each mention after the first once, and each missing value once.
    assert_eq!(errors.len(), 2 * n - 1, "{:#?}", &errors[..3]);
    let twice: Vec<&Diagnostic> = errors
        .iter()
        .filter(|e| e.message == "template `t` is already templates[0]; name each template once")
        .collect();
    assert_eq!(twice.len(), n - 1);
    assert_eq!(
        twice[0].path,
        "routes[0].strategy.analysis.templates[1].templateName"
    );
    let missing = errors
        .iter()
        .filter(|e| e.message.contains("needs a value for argument"))
        .count();
    assert_eq!(missing, n);
    // Named once, it asks for each value once.
    let errors = invalid(&with_templates(
        &template("t", &args, "up"),
        "{ templates: [{templateName: t}] }",
    ));
    assert_eq!(errors.len(), n, "{:#?}", &errors[..3]);
    assert!(
        errors[0]
            .message
            .contains("needs a value for argument `a0`")
    );
}

#[test]
fn messages_list_some_templates_and_arguments_not_all() {
    let n = 40;
    let names: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
    let templates: String = names.iter().map(|t| template(t, &[], "up")).collect();
    let errors = invalid(&with_templates(
        &templates,
        "{ templates: [{templateName: nope}] }",
    ));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].message,
        "unknown template `nope`; defined: t00, t01, t02, t03, t04, t05, t06, t07, t08, t09 and 30 more"
    );

    let refs: Vec<String> = names
        .iter()
        .map(|t| format!("{{templateName: {t}}}"))
        .collect();
    let errors = invalid(&with_templates(
        &templates,
        &format!(
            "{{ templates: [{}], args: [{{name: x, value: v}}, {{name: y, value: v}}] }}",
            refs.join(", ")
        ),
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0].message,
        "argument `x` is not declared by templates `t00`, `t01`, `t02`, `t03`, `t04`, `t05`, `t06`, `t07`, `t08`, `t09` and 30 more; remove it or declare it in the template's `args`"
    );

    let args: Vec<String> = (0..n).map(|i| format!("a{i:02}")).collect();
    let errors = invalid(&with_templates(
        &template("t", &args, "{{args.b}} {{args.c}}"),
        "{ templates: [{templateName: t}] }",
    ));
    let unknown: Vec<&str> = errors
        .iter()
        .filter(|e| e.message.contains("names no argument"))
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        unknown,
        [
            "`{{args.b}}` names no argument of this template (declared: a00, a01, a02, a03, a04, a05, a06, a07, a08, a09 and 30 more); declare it under `args`",
            "`{{args.c}}` names no argument of this template (declared: a00, a01, a02, a03, a04, a05, a06, a07, a08, a09 and 30 more); declare it under `args`",
        ]
    );
}

/// A file with template `big` whose query is `query`, and `routes` routes
/// that each name it with argument `x` = `x`.
fn amplifying_file(query: &str, x: &str, routes: usize) -> String {
    let mut text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n\
         analysisTemplates:\n  - name: big\n    args: [{{name: x}}]\n    metrics:\n\
         \x20     - name: m\n        provider:\n          prometheus:\n\
         \x20           address: http://127.0.0.1:9090\n            query: '{query}'\n\
         routes:\n"
    );
    for i in 0..routes {
        text.push_str(&format!(
            "  - name: r{i}\n    pathPrefix: /r{i}\n\
             \x20   stable: {{ revision: v1, endpoints: [a:1] }}\n\
             \x20   canary: {{ revision: v2, endpoints: [b:1] }}\n\
             \x20   strategy:\n      steps:\n        - setWeight: 10\n\
             \x20       - analysis: {{ templates: [{{ templateName: big }}], args: [{{ name: x, value: '{x}' }}] }}\n"
        ));
    }
    text
}

#[test]
fn an_argument_repeated_in_a_field_cannot_make_it_huge() {
    // 200 KB of file; the query would be 2 MB with the argument in place.
    let query = "{{args.x}}".repeat(20_000);
    let errors = invalid(&amplifying_file(&query, &"y".repeat(100), 1));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].path,
        "routes[0].strategy.steps[1].analysis.args[0].value"
    );
    assert!(
        errors[0].message.contains(
            "with these arguments, analysisTemplates[0].metrics[0].provider.prometheus.query \
             is more than 1 MiB"
        ),
        "{}",
        errors[0].message
    );
    // Within the limit, the same template resolves.
    valid(&amplifying_file(
        &"{{args.x}}".repeat(1_000),
        &"y".repeat(100),
        1,
    ));
}

#[test]
fn many_routes_sharing_a_large_template_are_refused_once_past_the_total() {
    // 100 KB of query held once per route: 700 routes come to 70 MB from
    // a file of 200 KB.
    let query = format!("sum(up) + {}0", "0 + ".repeat(25_000));
    let errors = invalid(&amplifying_file(&query, "y", 700));
    assert_eq!(errors.len(), 1, "one error, not one per route: {errors:?}");
    assert!(
        errors[0].message.contains("more than 64 MiB"),
        "{}",
        errors[0].message
    );
    assert!(errors[0].path.ends_with(".strategy.steps[1].analysis"));
    // Far fewer routes stay well within it.
    valid(&amplifying_file(&query, "y", 20));
}

/// A template with a problem of its own still declares its arguments: a
/// reference that leaves one without a value, or gives one it does not
/// declare, is told in the same run.
#[test]
fn the_arguments_of_a_reference_are_checked_even_when_its_template_has_a_problem() {
    let args = ["route".to_owned(), "max".to_owned()];
    let broken = template("t", &args, "sum(up{route=\"{{args.nope}}\"})");
    let errors = invalid(&with_templates(
        &broken,
        "{ templates: [{templateName: t}], args: [{name: max, value: '1'}, {name: bogus, value: x}] }",
    ));
    let said: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 3, "{said:#?}");
    assert!(
        said.iter()
            .any(|(p, m)| p.starts_with("analysisTemplates[0].metrics[0]") && m.contains("nope")),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|(p, m)| *p == "routes[0].strategy.analysis.args"
                && m.contains("needs a value for argument `route`")),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|(p, m)| *p == "routes[0].strategy.analysis.args[1].name"
                && m.contains("argument `bogus` is not declared")),
        "{said:#?}"
    );
}

/// A reference keeps its arguments, defaults included: a long default
/// named by many routes counts against the total even when no field uses
/// it.
#[test]
fn long_arguments_kept_by_many_references_count_against_the_total() {
    let long = "x".repeat(200_000);
    let templates = format!(
        "  - name: big\n    args: [{{name: unused, value: '{long}'}}]\n    metrics:\n      - name: m\n        provider:\n          prometheus:\n            address: http://127.0.0.1:9090\n            query: up\n"
    );
    let mut routes = String::new();
    for i in 0..400 {
        routes.push_str(&format!(
            "  - name: r{i}\n    pathPrefix: /r{i}\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    canary: {{ revision: v2, endpoints: [b:1] }}\n    strategy:\n      steps:\n        - setWeight: 10\n        - analysis: {{ templates: [{{ templateName: big }}] }}\n"
        ));
    }
    let text = format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nanalysisTemplates:\n{templates}routes:\n{routes}"
    );
    let errors = invalid(&text);
    assert_eq!(errors.len(), 1, "{:?}", &errors[..errors.len().min(3)]);
    assert!(
        errors[0].message.contains("more than 64 MiB"),
        "{}",
        errors[0].message
    );
}

/// A template whose Prometheus address and web URL are wholly argument
/// `addr`, and four routes naming it: a canary `analysis` step, a
/// background run, and blue-green pre- and post-promotion analysis, each
/// giving `addr` the value `{ADDR}`. The step's `args` are on line 19,
/// the background's on 20, the blue-green ones on 28 and 29.
const WHOLE_ADDRESS_FILE: &str = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: t
    args: [{name: addr}]
    metrics:
      - {name: m, successCondition: "true", provider: {prometheus: {address: "{{args.addr}}", query: "vector(0.5)"}}}
      - {name: w, successCondition: "true", provider: {web: {url: "{{args.addr}}"}}}
routes:
  - name: canary
    pathPrefix: /canary
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - setWeight: 10
        - analysis: {templates: [{templateName: t}],
            args: [{name: addr, value: "{ADDR}"}]}
      analysis: {templates: [{templateName: t}], args: [{name: addr, value: "{ADDR}"}]}
  - name: blue-green
    hosts: [shop.example.com]
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      blueGreen:
        preview: {hosts: [preview.shop.example.com]}
        prePromotionAnalysis: {templates: [{templateName: t}], args: [{name: addr, value: "{ADDR}"}]}
        postPromotionAnalysis: {templates: [{templateName: t}], args: [{name: addr, value: "{ADDR}"}]}
"#;

/// The four references of [`WHOLE_ADDRESS_FILE`]: the key path of each
/// one's argument value, and where it is written.
const WHOLE_ADDRESS_REFERENCES: [(&str, usize, usize); 4] = [
    ("routes[0].strategy.steps[1].analysis.args[0].value", 19, 33),
    ("routes[0].strategy.analysis.args[0].value", 20, 70),
    (
        "routes[1].strategy.blueGreen.prePromotionAnalysis.args[0].value",
        28,
        84,
    ),
    (
        "routes[1].strategy.blueGreen.postPromotionAnalysis.args[0].value",
        29,
        85,
    ),
];

/// The analysis references of [`WHOLE_ADDRESS_FILE`] resolved, in the
/// order of [`WHOLE_ADDRESS_REFERENCES`].
fn whole_address_references(config: &Config) -> Vec<Arc<AnalysisRef>> {
    let canary = config.routes[0].strategy.as_ref().expect("a strategy");
    let Step::Analysis(step) = &canary.steps[1] else {
        panic!("step 2 is an analysis step: {:?}", canary.steps[1]);
    };
    let blue_green = config.routes[1]
        .strategy
        .as_ref()
        .and_then(|s| s.blue_green.as_deref())
        .expect("a blue-green strategy");
    vec![
        Arc::clone(step),
        Arc::clone(canary.background.as_ref().expect("a background run")),
        Arc::clone(blue_green.pre_promotion.as_ref().expect("pre-promotion")),
        Arc::clone(blue_green.post_promotion.as_ref().expect("post-promotion")),
    ]
}

/// An address that is wholly an argument has no value until a reference
/// gives one: it is checked, and resolved, there.
#[test]
fn an_address_wholly_from_an_argument_is_accepted_and_resolved_at_each_reference() {
    let config = valid(&WHOLE_ADDRESS_FILE.replace("{ADDR}", "http://127.0.0.1:50091"));
    for reference in whole_address_references(&config) {
        let Provider::Prometheus(prometheus) = &reference.metrics[0].provider else {
            panic!("a Prometheus metric: {reference:?}");
        };
        assert_eq!(prometheus.address, "http://127.0.0.1:50091");
        let Provider::Web(web) = &reference.metrics[1].provider else {
            panic!("a web metric: {reference:?}");
        };
        assert_eq!(web.url, "http://127.0.0.1:50091");
    }
    // Partly an argument, before or after the scheme.
    let config = valid(
        &WHOLE_ADDRESS_FILE
            .replace("\"{{args.addr}}\"", "\"{{args.addr}}/x\"")
            .replace("{ADDR}", "https://prometheus.example"),
    );
    let Provider::Web(web) = &whole_address_references(&config)[0].metrics[1].provider else {
        panic!("a web metric");
    };
    assert_eq!(web.url, "https://prometheus.example/x");
    valid(
        &WHOLE_ADDRESS_FILE
            .replace("\"{{args.addr}}\"", "\"http://{{args.addr}}\"")
            .replace("{ADDR}", "127.0.0.1:9090"),
    );
}

/// A reference whose value makes the address no URL is told so where it
/// gives the value, with the template's field, its text and what it
/// resolves to.
#[test]
fn a_reference_whose_argument_is_no_url_is_told_where_it_gives_it() {
    let errors = invalid(&WHOLE_ADDRESS_FILE.replace("{ADDR}", "foo"));
    let mut want = Vec::new();
    for (path, line, column) in WHOLE_ADDRESS_REFERENCES {
        for field in [
            "metrics[0].provider.prometheus.address",
            "metrics[1].provider.web.url",
        ] {
            want.push(format!(
                "weir.yaml:{line}:{column}: {path}: with these arguments, \
                 analysisTemplates[0].{field} `{{{{args.addr}}}}` resolves to `foo`, which is \
                 not an http:// or https:// URL with a host, e.g. `http://127.0.0.1:9090`"
            ));
        }
    }
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got, want);
}

/// A template is checked alone with the defaults of its arguments; what
/// depends on an argument without a default waits for the references, and
/// no message quotes a value that no one wrote.
#[test]
fn a_template_alone_never_quotes_a_value_no_one_wrote() {
    let template = |args: &str, address: &str, url: &str, condition: &str, header: &str| {
        format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n\
             analysisTemplates:\n  - name: t\n    args: [{args}]\n    metrics:\n\
             \x20     - {{name: m, successCondition: '{condition}', provider: {{prometheus: {{address: '{address}', query: up}}}}}}\n\
             \x20     - {{name: w, provider: {{web: {{url: '{url}', headers: [{{key: x-h, value: '{header}'}}]}}}}}}\n"
        )
    };
    let alone = |template: String| {
        format!(
            "{template}routes:\n  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n"
        )
    };
    // Unreferenced, every field wholly or partly an argument: nothing to
    // check until a reference gives the values.
    for (address, url, condition, header) in [
        ("{{args.a}}", "{{args.a}}", "{{args.a}}", "{{args.a}}"),
        (
            "{{args.a}}/x",
            "{{args.a}}:9090",
            "result {{args.a}} 1",
            "a\t{{args.a}}",
        ),
        (
            "https://{{args.a}}",
            "http:/{{args.a}}",
            "result > {{args.a}}",
            "{{args.a}}",
        ),
    ] {
        valid(&alone(template(
            "{name: a}",
            address,
            url,
            condition,
            header,
        )));
    }
    // What no value can make right is told where it is written, quoting
    // the template's own text.
    let errors = invalid(&alone(template(
        "{name: a}",
        "127.0.0.1:{{args.a}}",
        "ftp://{{args.a}}",
        "true",
        "h",
    )));
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "analysisTemplates[0].metrics[0].provider.prometheus.address",
                "`127.0.0.1:{{args.a}}` cannot be an http:// or https:// URL with a host, \
                 whatever its arguments are, e.g. `http://127.0.0.1:9090`"
            ),
            (
                "analysisTemplates[0].metrics[1].provider.web.url",
                "`ftp://{{args.a}}` cannot be an http:// or https:// URL with a host, \
                 whatever its arguments are, e.g. `http://127.0.0.1:9090`"
            ),
        ]
    );
    // A default is a value written: the template is checked with it.
    let with_default = |address: &str, condition: &str| {
        let errors = invalid(&alone(template(
            "{name: a, value: nope}",
            address,
            "http://h",
            condition,
            "h",
        )));
        let got: Vec<(String, String)> = errors
            .iter()
            .map(|e| (e.path.clone(), e.message.clone()))
            .collect();
        got
    };
    assert_eq!(
        with_default("{{args.a}}", "true"),
        [(
            "analysisTemplates[0].metrics[0].provider.prometheus.address".to_owned(),
            "`{{args.a}}` resolves to `nope`, which is not an http:// or https:// URL with a \
             host, e.g. `http://127.0.0.1:9090`"
                .to_owned()
        )]
    );
    assert_eq!(
        with_default("http://p", "result {{args.a}} 1"),
        [(
            "analysisTemplates[0].metrics[0].successCondition".to_owned(),
            "the condition does not parse (`result nope 1` with the arguments in place): \
             at column 8: unexpected `nope`; expected an operator or the end"
                .to_owned()
        )]
    );
    // What an argument without a default makes of a condition or a
    // header is told at the reference, with its value.
    let referenced = |value: &str| {
        format!(
            "{}routes:\n  - name: r\n    stable: {{ revision: v1, endpoints: [a:1] }}\n    \
             canary: {{ revision: v2, endpoints: [b:1] }}\n    strategy:\n      steps:\n        \
             - analysis: {{templates: [{{templateName: t}}], args: [{{name: a, value: '{value}'}}]}}\n",
            template(
                "{name: a}",
                "http://p",
                "http://w",
                "result {{args.a}} 1",
                "{{args.a}}"
            )
        )
    };
    valid(&referenced(">"));
    let errors = invalid(&referenced("=>"));
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with(
            "weir.yaml:16:71: routes[0].strategy.steps[0].analysis.args[0].value: with these \
             arguments, analysisTemplates[0].metrics[0].successCondition the condition does not \
             parse (`result => 1` with the arguments in place)"
        ),
        "{got:#?}"
    );
    for errors in [
        invalid(&WHOLE_ADDRESS_FILE.replace("{ADDR}", "foo")),
        invalid(
            &WHOLE_ADDRESS_FILE
                .replace("\"{{args.addr}}\"", "\"{{args.addr}}/x\"")
                .replace("{ADDR}", "foo"),
        ),
    ] {
        for error in &errors {
            assert!(
                !error.path.starts_with("analysisTemplates") && !error.message.contains("`0"),
                "{error}"
            );
        }
    }
}

/// A field that takes several arguments of a reference names them all in
/// its error, placed at the first it takes.
#[test]
fn a_field_made_of_several_arguments_names_them_all() {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: t
    args: [{name: scheme}, {name: host}]
    metrics:
      - {name: w, successCondition: "true", provider: {web: {url: "{{args.scheme}}://{{args.host}}/x"}}}
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - analysis: {templates: [{templateName: t}],
            args: [{name: host, value: ""}, {name: scheme, value: http}]}
"#;
    let errors = invalid(text);
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("weir.yaml:16:60: routes[0].strategy.steps[0].analysis.args[1].value:"),
        "{}",
        got[0]
    );
    assert!(
        got[0].ends_with("(it takes `scheme`, `host` from these arguments)"),
        "{}",
        got[0]
    );
}

/// A URL that could never be asked (a space in its host) is refused with
/// the value it resolves to.
#[test]
fn a_url_that_cannot_be_parsed_is_refused() {
    let errors = invalid(&WHOLE_ADDRESS_FILE.replace("{ADDR}", "http://a b/x"));
    assert!(!errors.is_empty());
    for error in &errors {
        let text = error.to_string();
        assert!(
            text.contains("resolves to `http://a b/x`, which is not an http:// or https:// URL"),
            "{text}"
        );
    }
}

/// A port past 65535 (which `http::Uri` reads as no port) or 0 is refused;
/// userinfo and IPv6 literals keep their colons.
#[test]
fn a_url_whose_port_is_out_of_range_is_refused() {
    for bad in ["http://p:99999", "http://p:0/", "http://[::1]:70000"] {
        let errors = invalid(&WHOLE_ADDRESS_FILE.replace("{ADDR}", bad));
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("a port outside 1 to 65535")),
            "{bad}: {errors:?}"
        );
    }
    for good in [
        "http://u:pw@p:9090",
        "http://[::1]:9090",
        "http://[::1]",
        "http://p",
    ] {
        valid(&WHOLE_ADDRESS_FILE.replace("{ADDR}", good));
    }
}

/// A template whose numbers, durations, method, JSON path and header names
/// are arguments, as Argo's int-or-string and string fields allow;
/// `{VALUES}` is the reference's argument list.
const NUMBERS_FILE: &str = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: t
    args: [{name: every}, {name: wait, value: 2s}, {name: times}, {name: fails},
           {name: unsure, value: "3"}, {name: errors}, {name: verb}, {name: path}, {name: header}]
    metrics:
      - name: w
        interval: "{{args.every}}"
        initialDelay: "{{args.wait}}"
        count: "{{args.times}}"
        failureLimit: "{{args.fails}}"
        inconclusiveLimit: "{{args.unsure}}"
        consecutiveErrorLimit: "{{args.errors}}"
        successCondition: "true"
        provider:
          web: {url: "http://127.0.0.1:8000/x", method: "{{args.verb}}", jsonPath: "{{args.path}}",
                headers: [{key: "{{args.header}}", value: v}]}
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - analysis: {templates: [{templateName: t}], args: {VALUES}}
"#;

fn numbers_file(every: &str, times: &str, fails: &str, verb: &str) -> String {
    let values = format!(
        "[{{name: every, value: '{every}'}}, {{name: times, value: '{times}'}}, \
         {{name: fails, value: '{fails}'}}, {{name: errors, value: '7'}}, \
         {{name: verb, value: '{verb}'}}, {{name: path, value: '{{$.summary}}'}}, \
         {{name: header, value: x-tenant}}]"
    );
    NUMBERS_FILE.replace("{VALUES}", &values)
}

/// Numbers, durations, the method, the JSON path and header names take
/// `{{args.NAME}}` (Argo's int-or-string counts and limits, its string
/// durations): each reference resolves them, and a value that makes one
/// wrong is refused where the reference gives it, with what it resolves to.
#[test]
fn numbers_durations_and_names_take_arguments() {
    let config = valid(&numbers_file("30s", "5", "-1", "post"));
    let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
    let Step::Analysis(step) = &strategy.steps[0] else {
        panic!("an analysis step: {:?}", strategy.steps[0]);
    };
    let metric = &step.metrics[0];
    assert_eq!(metric.interval, Some(Duration::from_secs(30)));
    assert_eq!(metric.initial_delay, Duration::from_secs(2));
    assert_eq!(metric.count, Some(5));
    assert_eq!(metric.failure_limit, None, "-1 never fails");
    assert_eq!(metric.inconclusive_limit, 3);
    assert_eq!(metric.consecutive_error_limit, 7);
    let Provider::Web(web) = &metric.provider else {
        panic!("a web metric: {metric:?}");
    };
    assert_eq!(web.method, "POST");
    assert_eq!(
        web.json_path.as_ref().map(|p| p.text.as_str()),
        Some("{$.summary}")
    );
    assert_eq!(web.headers, vec![("x-tenant".to_owned(), "v".to_owned())]);

    let cases = [
        (
            numbers_file("soon", "5", "0", "GET"),
            "args[0].value",
            "interval `{{args.every}}` resolves to `soon`: invalid duration",
        ),
        (
            numbers_file("30s", "many", "0", "GET"),
            "args[1].value",
            "count `{{args.times}}` resolves to `many`, which is not a whole number from 0 to 4294967295",
        ),
        (
            numbers_file("30s", "5", "-2", "GET"),
            "args[2].value",
            "failureLimit `{{args.fails}}` resolves to `-2`, which is not -1 (never fail) or a whole number from 0 to 4294967295",
        ),
        (
            numbers_file("30s", "5", "0", "PATCH"),
            "args[4].value",
            "method `{{args.verb}}` resolves to `PATCH`: method `PATCH` is not supported",
        ),
    ];
    for (text, argument, wanted) in cases {
        let got: Vec<String> = invalid(&text).iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains(&format!(
                "routes[0].strategy.steps[0].analysis.{argument}: with these arguments"
            )) && got[0].contains(wanted),
            "wanted {argument} and {wanted:?} in {}",
            got[0]
        );
    }

    // A name that the template does not declare is refused in the template.
    let text = numbers_file("30s", "5", "0", "GET").replace("{{args.times}}", "{{args.time}}");
    let got: Vec<String> = invalid(&text).iter().map(ToString::to_string).collect();
    assert!(
        got.iter().any(|e| e
            .contains("analysisTemplates[0].metrics[0].count: `{{args.time}}` names no argument")),
        "{got:#?}"
    );
}

#[test]
fn every_problem_of_a_metric_is_reported_not_only_the_first() {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: t
    args: [{name: limit}]
    metrics:
      - name: m
        interval: 5q
        failureLimit: "{{args.limit}}"
        successCondition: "result[0] <"
        provider:
          web: { url: nourl, timeoutSeconds: 0 }
      - name: n
        interval: 5s
        successCondition: "result[0] < {{args.other}}"
        initialDelay: soon
        provider:
          prometheus:
            address: "not a url"
            query: " "
            headers: [{ key: "a b", value: x }, { key: "c d", value: y }]
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - setWeight: 10
        - analysis: { templates: [{ templateName: t }], args: [{ name: limit, value: "many" }] }
"#;
    let errors = invalid(text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for path in [
        "analysisTemplates[0].metrics[0].interval",
        "analysisTemplates[0].metrics[0].successCondition",
        "analysisTemplates[0].metrics[0].provider.web.url",
        "analysisTemplates[0].metrics[0].provider.web.timeoutSeconds",
        "analysisTemplates[0].metrics[1].successCondition",
        "analysisTemplates[0].metrics[1].initialDelay",
        "analysisTemplates[0].metrics[1].provider.prometheus.address",
        "analysisTemplates[0].metrics[1].provider.prometheus.query",
        "analysisTemplates[0].metrics[1].provider.prometheus.headers[0].key",
        "analysisTemplates[0].metrics[1].provider.prometheus.headers[1].key",
    ] {
        assert_eq!(
            paths.iter().filter(|p| **p == path).count(),
            1,
            "{path} reported once: {errors:#?}"
        );
    }
}

/// Prometheus' basic credentials take `{{args.NAME}}` like every other
/// field of a provider, and an undeclared name in them is reported there.
#[test]
fn basic_credentials_take_arguments() {
    let with_auth = |password: &str| {
        file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG).replace(
            "            address: http://127.0.0.1:9090\n",
            &format!(
                "            address: http://127.0.0.1:9090\n            authentication: \
                 {{ basic: {{ username: '{{{{args.route}}}}', password: '{password}' }} }}\n"
            ),
        )
    };
    let config = valid(&with_auth("{{args.max}}"));
    let step = analysis_step(&config, 1);
    let Provider::Prometheus(query) = &step.metrics[0].provider else {
        panic!("a Prometheus metric");
    };
    assert_eq!(query.basic_auth, Some(("r".to_owned(), "0.01".to_owned())));

    let errors = invalid(&with_auth("{{args.zzz}}"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].path,
        "analysisTemplates[0].metrics[0].provider.prometheus.authentication.basic.password"
    );
    assert!(
        errors[0]
            .message
            .starts_with("`{{args.zzz}}` names no argument of this template"),
        "{}",
        errors[0].message
    );
}

/// Argo's template-level `dryRun: [{metricName: PATTERN}]`: the metrics a
/// pattern finds in their name are dry runs; a pattern that is no regular
/// expression, or matches no metric, is refused where it is written.
#[test]
fn dry_run_rules_follow_argo() {
    let with_rule = |pattern: &str| {
        file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG).replace(
            "    metrics:\n",
            &format!("    dryRun: [{{ metricName: '{pattern}' }}]\n    metrics:\n"),
        )
    };
    for (pattern, dry_run) in [("ratio", true), (".*", true), ("^error-ratio$", true)] {
        let config = valid(&with_rule(pattern));
        let step = analysis_step(&config, 1);
        assert_eq!(step.metrics[0].dry_run, dry_run, "{pattern}");
        let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
        let background = strategy.background.as_ref().expect("a background run");
        assert_eq!(background.metrics[0].dry_run, dry_run, "{pattern}");
    }
    let config = valid(&file(GOOD_CONDITION, "1", GOOD_STEP, GOOD_BG));
    let step = analysis_step(&config, 1);
    assert!(!step.metrics[0].dry_run, "no rule, no dry run");

    let errors = invalid(&with_rule("("));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "analysisTemplates[0].dryRun[0].metricName");
    assert!(
        errors[0]
            .message
            .starts_with("`(` is not a regular expression"),
        "{}",
        errors[0].message
    );

    // A rule that matches no metric refuses each run that has it.
    let errors = invalid(&with_rule("^latency$"));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[0].strategy.steps[1].analysis",
            "routes[0].strategy.analysis"
        ],
        "{errors:?}"
    );
    for error in &errors {
        assert_eq!(
            error.message,
            "the dryRun rule `^latency$` of template `errors` matches no metric of this run \
             (error-ratio)"
        );
    }
}

/// As Argo, the rules of every template of a run apply to every metric of
/// the run: a rule may name another template's metric.
#[test]
fn dry_run_rules_apply_across_the_templates_of_a_run() {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: a
    dryRun: [{ metricName: '^b$' }]
    metrics:
      - name: a
        provider: { web: { url: 'http://127.0.0.1:1/a' } }
  - name: b
    metrics:
      - name: b
        provider: { web: { url: 'http://127.0.0.1:1/b' } }
routes:
  - name: r
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      steps:
        - setWeight: 10
        - analysis: { templates: [{ templateName: a }, { templateName: b }] }
"#;
    let config = valid(text);
    let step = analysis_step(&config, 1);
    let dry: Vec<(&str, bool)> = step.metrics.iter().map(|m| (&*m.name, m.dry_run)).collect();
    assert_eq!(dry, [("a", false), ("b", true)]);
}
