//! `strategy.blueGreen`: the model it parses into, and every error located.

use super::*;
use crate::status::BlueGreenStage;

/// A file with a template and a blue-green route; `{BG}` is replaced by
/// the lines of `blueGreen` (indented by 8), the route starts on line 13.
const BLUE_GREEN_FILE: &str = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: smoke
    args: [{name: route}]
    metrics:
      - name: smoke
        successCondition: result == 1
        provider:
          web: {url: "http://127.0.0.1:8000/{{args.route}}"}
routes:
  - name: shop
    hosts: [shop.example.com]
    stable: { revision: v1, endpoints: [a:1] }
    canary: { revision: v2, endpoints: [b:1] }
    strategy:
      blueGreen:
{BG}
  - name: other
    hosts: [other.example.com]
    stable: { revision: v1, endpoints: [c:1] }
"#;

/// The first line of `blueGreen`'s body.
const FIRST_LINE: usize = 19;

fn file(blue_green: &str) -> String {
    let body: String = blue_green
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    BLUE_GREEN_FILE.replace("{BG}\n", &body)
}

fn blue_green(config: &Config) -> &model::BlueGreen {
    config.routes[0]
        .strategy
        .as_ref()
        .and_then(|s| s.blue_green.as_deref())
        .expect("a blue-green strategy")
}

#[test]
fn the_spec_example_parses_with_its_defaults_and_steps() {
    let config = valid(&file(
        "preview:\n  hosts: [preview.shop.example.com]\n  header: {name: X-Weir-Preview, value: \"1\"}\n\
         prePromotionAnalysis: {templates: [{templateName: smoke}], args: [{name: route, value: shop}]}\n\
         postPromotionAnalysis: {templates: [{templateName: smoke}], args: [{name: route, value: shop}]}",
    ));
    let bg = blue_green(&config);
    assert_eq!(
        bg.preview.hosts,
        vec![HostMatch::Exact("preview.shop.example.com".to_owned())]
    );
    let header = bg.preview.header.as_ref().expect("a preview header");
    assert_eq!((&*header.name, &*header.value), ("x-weir-preview", "1"));
    assert!(bg.auto_promotion_enabled);
    assert_eq!(bg.auto_promotion_delay, Duration::ZERO);
    assert_eq!(bg.scale_down_delay, Duration::from_secs(30));
    let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
    // Preview, pre-promotion analysis, swap, post-promotion analysis.
    assert_eq!(strategy.steps.len(), 4);
    assert_eq!(strategy.steps[0], Step::SetWeight(Weight::ZERO));
    assert!(matches!(strategy.steps[1], Step::Analysis(_)));
    assert_eq!(strategy.steps[2], Step::SetWeight(Weight::FULL));
    assert!(matches!(strategy.steps[3], Step::Analysis(_)));
    assert_eq!(bg.swap_step(), 2);
    let stages: Vec<BlueGreenStage> = (0..=4).map(|i| bg.stage_at(Some(i))).collect();
    assert_eq!(
        stages,
        [
            BlueGreenStage::Preview,
            BlueGreenStage::PrePromotion,
            BlueGreenStage::PostPromotion,
            BlueGreenStage::PostPromotion,
            BlueGreenStage::Done
        ]
    );
}

#[test]
fn manual_and_delayed_promotion_add_a_pause_before_the_swap() {
    let manual = valid(&file(
        "preview: {header: {name: x-preview, value: yes}}\nautoPromotionEnabled: false\nscaleDownDelaySeconds: 5",
    ));
    let bg = blue_green(&manual);
    assert_eq!(bg.scale_down_delay, Duration::from_secs(5));
    let steps = &manual.routes[0].strategy.as_ref().expect("strategy").steps;
    assert_eq!(
        steps,
        &vec![
            Step::SetWeight(Weight::ZERO),
            Step::Pause(None),
            Step::SetWeight(Weight::FULL)
        ]
    );
    assert_eq!(bg.stage_at(Some(1)), BlueGreenStage::AwaitingPromotion);

    let delayed = valid(&file(
        "preview: {hosts: ['*.preview.example.com']}\nautoPromotionSeconds: 20",
    ));
    let steps = &delayed.routes[0].strategy.as_ref().expect("strategy").steps;
    assert_eq!(steps[1], Step::Pause(Some(Duration::from_secs(20))));
    assert_eq!(blue_green(&delayed).swap_step(), 2);
}

#[test]
fn the_snapshot_carries_the_preview_and_whether_it_is_live() {
    let config = valid(&file(
        "preview: {hosts: [p.example.com], header: {name: x-p, value: '1'}}",
    ));
    for live in [false, true] {
        let snapshot = compile(&config, &|name| {
            (name == "shop").then_some(RouteOverride {
                canary_weight: Weight::ZERO,
                rollout_seq: 1,
                preview_live: live,
            })
        });
        let preview = snapshot.routes[0].preview.as_ref().expect("a preview");
        assert_eq!(preview.live, live);
        assert_eq!(
            preview.hosts,
            vec![HostMatch::Exact("p.example.com".to_owned())]
        );
        assert!(snapshot.routes[1].preview.is_none());
    }
}

#[test]
fn blue_green_errors_are_located() {
    let line = FIRST_LINE;
    let cases: Vec<(String, &str, usize, usize, &str)> = vec![
        (
            file("preview: {}"),
            "routes[0].strategy.blueGreen.preview",
            line,
            9,
            "needs `hosts`, a `header`, or both",
        ),
        (
            file("preview: {hosts: ['bad host']}"),
            "routes[0].strategy.blueGreen.preview.hosts[0]",
            line,
            27,
            "",
        ),
        (
            file("preview: {header: {name: 'x y', value: '1'}}"),
            "routes[0].strategy.blueGreen.preview.header.name",
            line,
            28,
            "",
        ),
        (
            file("preview: {hosts: [other.example.com]}"),
            "routes[0].strategy.blueGreen.preview.hosts[0]",
            line,
            27,
            "routes[1] (`other`)",
        ),
        (
            file("preview: {hosts: [shop.example.com]}"),
            "routes[0].strategy.blueGreen.preview.hosts[0]",
            line,
            27,
            "this route",
        ),
        (
            file(
                "preview: {hosts: [p.example.com]}\nprePromotionAnalysis: {templates: [{templateName: nope}]}",
            ),
            "routes[0].strategy.blueGreen.prePromotionAnalysis.templates[0].templateName",
            line + 1,
            45,
            "nope",
        ),
        (
            file(
                "preview: {hosts: [p.example.com]}\npostPromotionAnalysis: {templates: [{templateName: smoke}]}",
            ),
            "routes[0].strategy.blueGreen.postPromotionAnalysis",
            line + 1,
            9,
            "argument `route`",
        ),
        (
            file("preview: {hosts: [p.example.com]}\nautoPromotionSeconds: -1"),
            "routes[0].strategy.blueGreen.autoPromotionSeconds",
            line + 1,
            31,
            "",
        ),
        (
            file("preview: {hosts: [p.example.com]}\nscaleDownDelaySeconds: 315360001"),
            "routes[0].strategy.blueGreen.scaleDownDelaySeconds",
            line + 1,
            9,
            "longer than 87600h",
        ),
        (
            file("preview: {hosts: [p.example.com]}\npreview2: 1"),
            "routes[0].strategy.blueGreen.preview2",
            line + 1,
            9,
            "",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn steps_and_blue_green_exclude_each_other_and_either_is_kept_without_a_canary() {
    let both = file("preview: {hosts: [p.example.com]}").replace(
        "      blueGreen:\n",
        "      steps: [{setWeight: 10}]\n      blueGreen:\n",
    );
    check_single(
        &both,
        "routes[0].strategy.blueGreen",
        FIRST_LINE,
        7,
        "either `steps`",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let no_canary = file("preview: {hosts: [p.example.com]}")
        .replace("    canary: { revision: v2, endpoints: [b:1] }\n", "");
    // Between releases a route keeps its strategy: the next canary
    // revision starts a rollout.
    let config = valid(&no_canary);
    assert!(config.routes[0].canary.is_none());
    assert!(config.routes[0].strategy.is_some());
    let steps_only = file("preview: {hosts: [p.example.com]}")
        .replace("    canary: { revision: v2, endpoints: [b:1] }\n", "")
        .replace(
            "      blueGreen:\n        preview: {hosts: [p.example.com]}\n",
            "      steps: [{setWeight: 10}]\n",
        );
    let config = valid(&steps_only);
    assert!(config.routes[0].strategy.is_some(), "{steps_only}");
}

/// Preview hosts are checked against the other routes' hosts even when a
/// route has another error: one run reports every error.
#[test]
fn preview_host_collisions_are_reported_beside_other_errors() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n  \
- name: a\n    hosts: [a.example.com]\n    stable: { revision: v1, endpoints: [a:1] }\n    \
canary: { revision: v2, endpoints: [b:1] }\n    strategy:\n      blueGreen:\n        \
preview: {hosts: [b.example.com]}\n      analysis: {grpcErrorCodes: [BOGUS]}\n  \
- name: b\n    hosts: [b.example.com]\n    stable: { revision: v1, endpoints: [c:1] }\n    \
canary: { revision: v2, endpoints: [d:1] }\n    strategy:\n      blueGreen:\n        \
preview: {hosts: [a.example.com]}\n";
    let errors = invalid(text);
    let paths: Vec<&str> = errors.iter().map(|d| d.path.as_str()).collect();
    assert!(
        paths.contains(&"routes[0].strategy.blueGreen.preview.hosts[0]"),
        "{errors:?}"
    );
    assert!(
        paths.contains(&"routes[1].strategy.blueGreen.preview.hosts[0]"),
        "{errors:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("grpcErrorCodes")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
}

/// A preview host listed twice is one error, the preview's own.
#[test]
fn a_preview_host_listed_twice_is_one_error() {
    let errors = invalid(&file("preview: {hosts: [p.example.com, p.example.com]}"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("already listed"), "{errors:?}");
}
