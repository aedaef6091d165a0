//! The whole `/metrics` page of a process in memory: every family once,
//! with its type, the registry's and the control state's merged.

use std::path::PathBuf;
use std::time::Duration;

use weir_proxy::Role;
use weir_proxy::metrics::exposition::PROXY_FAMILIES;

use super::{CANARY_WEIGHT, CONFIG_RELOADS};
use crate::controller::metrics::ROLLOUT_FAMILIES;
use crate::fixtures::{config_text, process, route};

/// The value of the sample line that starts with `series` (name and labels).
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_page_has_every_family_once_with_its_type() {
    let text = config_text(
        None,
        &format!(
            "{}{}",
            route("fixed", None),
            route("rolling", Some("[{setWeight: 5}, {pause: {}}]"))
        ),
    );
    let in_memory = process(&text, PathBuf::from("/nonexistent/weir.yaml")).await;
    let process = &in_memory.process;
    let metrics = process.proxy.metrics();
    metrics
        .role(&"fixed".into(), Role::Canary)
        .record(503, Duration::from_millis(3));
    // Held as a serve loop holds it: a listener no one uses is not shown.
    let _listener = metrics.listener("public");
    // As a snapshot with `stableFallback` on the route would.
    metrics.fallback(&"fixed".into());
    process.reloads.failure.inc();

    let page = process.render_metrics().await;

    let families = PROXY_FAMILIES
        .iter()
        .chain(&ROLLOUT_FAMILIES)
        .chain([&CANARY_WEIGHT, &CONFIG_RELOADS]);
    for family in families {
        let kind = format!("{:?}", family.kind).to_lowercase();
        let type_line = format!("# TYPE {} {kind}\n", family.name);
        assert_eq!(
            page.matches(&type_line).count(),
            1,
            "{type_line:?} once in\n{page}"
        );
    }
    let type_lines: Vec<&str> = page.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut sorted = type_lines.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(type_lines, sorted, "families in name order, none twice");

    for (series, want) in [
        ("weir_canary_weight{route=\"fixed\"}", 10.0),
        ("weir_canary_weight{route=\"rolling\"}", 5.0),
        (
            "weir_rollout_phase{route=\"rolling\",phase=\"Progressing\"}",
            1.0,
        ),
        (
            "weir_rollout_phase{route=\"rolling\",phase=\"Healthy\"}",
            0.0,
        ),
        ("weir_rollout_phase{route=\"fixed\",phase=\"Healthy\"}", 1.0),
        ("weir_rollout_step{route=\"rolling\"}", 0.0),
        (
            "weir_rollout_aborts_total{route=\"rolling\",reason=\"manual\"}",
            0.0,
        ),
        ("weir_config_reloads_total{result=\"failure\"}", 1.0),
        ("weir_config_reloads_total{result=\"success\"}", 0.0),
        (
            "weir_http_requests_total{route=\"fixed\",role=\"canary\",code=\"503\"}",
            1.0,
        ),
        ("weir_connections_open{listener=\"public\"}", 0.0),
    ] {
        assert_eq!(value(&page, series), Some(want), "{series} in\n{page}");
    }
    assert_eq!(
        page.matches("weir_rollout_phase{route=\"rolling\"").count(),
        5,
        "every phase exported:\n{page}"
    );
}

#[tokio::test]
async fn a_blue_green_route_exports_its_stage() {
    let blue_green = "  - name: shop\n    stable: {revision: v1, endpoints: [127.0.0.1:9001]}\n    \
         canary: {revision: v2, endpoints: [127.0.0.1:9002]}\n    strategy:\n      \
         blueGreen: {preview: {header: {name: x-preview, value: '1'}}, autoPromotionEnabled: false}\n";
    let text = config_text(None, &format!("{}{blue_green}", route("fixed", None)));
    let in_memory = process(&text, PathBuf::from("/nonexistent/weir.yaml")).await;
    let page = in_memory.process.render_metrics().await;
    assert_eq!(
        page.matches("# TYPE weir_blue_green_stage gauge\n").count(),
        1,
        "{page}"
    );
    for (stage, want) in [
        ("Preview", 1.0),
        ("PrePromotion", 0.0),
        ("AwaitingPromotion", 0.0),
        ("PostPromotion", 0.0),
        ("Done", 0.0),
    ] {
        let series = format!("weir_blue_green_stage{{route=\"shop\",stage=\"{stage}\"}}");
        assert_eq!(value(&page, &series), Some(want), "{series} in\n{page}");
    }
    assert!(
        !page.contains("weir_blue_green_stage{route=\"fixed\""),
        "only blue-green routes have a stage:\n{page}"
    );
}

/// A rollout waiting at a gate before its first step is at step 0, in the
/// metric as in the status (`stepIndex` is null only without a rollout).
#[tokio::test]
async fn a_rollout_waiting_before_its_first_step_is_at_step_0() {
    let gated = "  - name: gated\n    stable: {revision: v1, endpoints: [127.0.0.1:9001]}\n    \
         canary: {revision: v2, endpoints: [127.0.0.1:9002]}\n    strategy:\n      \
         steps: [{setWeight: 5}]\n      \
         webhooks: [{name: ask, type: confirm-rollout, url: 'http://127.0.0.1:9/'}]\n";
    let text = config_text(None, &format!("{}{gated}", route("fixed", None)));
    let in_memory = process(&text, PathBuf::from("/nonexistent/weir.yaml")).await;
    let page = in_memory.process.render_metrics().await;
    assert_eq!(
        value(&page, "weir_rollout_step{route=\"gated\"}"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            "weir_rollout_phase{route=\"gated\",phase=\"Paused\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(value(&page, "weir_rollout_step{route=\"fixed\"}"), None);
}

/// Series come in label-value order, whatever the config's order of routes
/// or the order of phases in a rollout.
#[tokio::test]
async fn series_are_in_label_value_order() {
    let text = config_text(
        None,
        &format!(
            "{}{}",
            route("zeta", Some("[{setWeight: 5}, {pause: {}}]")),
            route("alpha", Some("[{setWeight: 5}, {pause: {}}]"))
        ),
    );
    let in_memory = process(&text, PathBuf::from("/nonexistent/weir.yaml")).await;
    let page = in_memory.process.render_metrics().await;
    for family in ["weir_rollout_phase{", "weir_rollout_aborts_total{"] {
        let series: Vec<&str> = page
            .lines()
            .filter(|line| line.starts_with(family))
            .map(|line| line.split_once(' ').map_or(line, |(series, _)| series))
            .collect();
        assert!(series.len() >= 4, "{family}: {page}");
        let mut sorted = series.clone();
        sorted.sort_unstable();
        assert_eq!(series, sorted, "{family} in label-value order");
    }
}

/// Before any request, and with no route in a rollout, every family is on
/// the page: those without series by their `# HELP` and `# TYPE` lines
/// alone, in name order with the others.
#[tokio::test]
async fn families_without_series_are_listed_from_the_first_scrape() {
    let text = config_text(None, &route("fixed", None));
    let in_memory = process(&text, PathBuf::from("/nonexistent/weir.yaml")).await;
    let page = in_memory.process.render_metrics().await;
    for family in PROXY_FAMILIES.iter().chain(&ROLLOUT_FAMILIES).chain([
        &CANARY_WEIGHT,
        &CONFIG_RELOADS,
        &crate::webhooks::WEBHOOK_CALLS,
        &crate::notifications::NOTIFICATIONS_DROPPED,
    ]) {
        let kind = format!("{:?}", family.kind).to_lowercase();
        let lines = format!(
            "# HELP {} {}\n# TYPE {} {kind}\n",
            family.name, family.help, family.name
        );
        assert_eq!(page.matches(&lines).count(), 1, "{lines:?} once in\n{page}");
    }
    assert!(!page.contains("weir_rollout_step{"), "no series:\n{page}");
    let type_lines: Vec<&str> = page.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut sorted = type_lines.clone();
    sorted.sort_unstable();
    assert_eq!(type_lines, sorted, "families in name order");
}
