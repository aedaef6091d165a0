//! `strategy.webhooks`, `strategy.threshold` and `notifications`: defaults,
//! every key read into the model, and each bad value refused at its place.

use std::collections::BTreeMap;

use super::*;
use crate::hooks::{Notification, Trigger, Webhook, WebhookKind};

/// A route with a strategy: lines 1 to 11; `webhooks:` goes on line 12.
const ROUTE: &str = "\
listeners:
  - name: public
    address: 127.0.0.1:8080
routes:
  - name: checkout
    stable: { revision: v1, endpoints: [127.0.0.1:9001] }
    canary: { revision: v2, endpoints: [127.0.0.1:9101] }
    strategy:
      steps:
        - setWeight: 50
      threshold: 2
";

#[test]
fn webhooks_and_notifications_are_read_into_the_model() {
    let config = valid(&format!(
        "{ROUTE}      webhooks:
        - name: load-test
          type: pre-rollout
          url: http://flagger-loadtester.test/
          timeout: 30s
          retries: 2
          metadata: {{ type: bash, cmd: \"curl -s http://checkout-canary/\" }}
        - name: gate
          type: confirm-promotion
          url: https://gate.example.com/approve
notifications:
  - name: slack
    url: http://127.0.0.1:9999/hook
    headers: {{ Authorization: Bearer x }}
    triggers: [on-rollout-aborted, on-rollout-completed, on-scaling-replica-set]
    routes: [checkout]
    retryMax: 3
"
    ));
    let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
    assert_eq!(strategy.webhooks.threshold, 2);
    let metadata: BTreeMap<String, String> = [
        (
            "cmd".to_owned(),
            "curl -s http://checkout-canary/".to_owned(),
        ),
        ("type".to_owned(), "bash".to_owned()),
    ]
    .into();
    assert_eq!(
        strategy.webhooks.hooks,
        vec![
            Webhook {
                name: Arc::from("load-test"),
                kind: WebhookKind::PreRollout,
                url: Arc::from("http://flagger-loadtester.test/"),
                timeout: Duration::from_secs(30),
                retries: 2,
                metadata,
            },
            Webhook {
                name: Arc::from("gate"),
                kind: WebhookKind::ConfirmPromotion,
                url: Arc::from("https://gate.example.com/approve"),
                timeout: Duration::from_secs(10),
                retries: 0,
                metadata: BTreeMap::new(),
            },
        ]
    );
    assert_eq!(
        config.notifications,
        vec![Notification {
            name: Arc::from("slack"),
            url: Arc::from("http://127.0.0.1:9999/hook"),
            headers: vec![("Authorization".to_owned(), "Bearer x".to_owned())],
            // Argo's trigger for ReplicaSets, which weir never fires, is
            // accepted: Argo's settings load unchanged.
            triggers: vec![
                Trigger::RolloutAborted,
                Trigger::RolloutCompleted,
                Trigger::ScalingReplicaSet
            ],
            routes: vec!["checkout".to_owned()],
            timeout: Duration::from_secs(10),
            retry_max: 3,
        }]
    );
}

#[test]
fn without_webhooks_the_threshold_is_zero_and_there_are_no_receivers() {
    let config = valid(&ROUTE.replace("      threshold: 2\n", ""));
    let strategy = config.routes[0].strategy.as_ref().expect("a strategy");
    assert_eq!(strategy.webhooks, crate::Webhooks::default());
    assert!(config.notifications.is_empty());
}

#[test]
fn bad_webhooks_are_refused_at_their_place() {
    let hook = |body: &str| format!("{ROUTE}      webhooks:\n{body}");
    let cases = [
        (
            hook("        - { name: a, type: pre-rolout, url: http://x/ }\n"),
            "routes[0].strategy.webhooks[0].type",
            13,
            22,
            "unknown webhook type `pre-rolout`; expected `confirm-rollout`, `pre-rollout`",
        ),
        (
            hook("        - { name: a, type: rollout, url: ftp://x/ }\n"),
            "routes[0].strategy.webhooks[0].url",
            13,
            37,
            "uses the scheme `ftp`",
        ),
        (
            hook("        - { name: a, type: rollout, url: x.example.com }\n"),
            "routes[0].strategy.webhooks[0].url",
            13,
            37,
            "has no scheme",
        ),
        (
            hook("        - { name: a, type: rollout, url: 'http://x:99999/' }\n"),
            "routes[0].strategy.webhooks[0].url",
            13,
            37,
            "has a port outside 1 to 65535",
        ),
        (
            hook(
                "        - { name: a, type: rollout, url: http://x/ }\n        - { name: a, type: event, url: http://y/ }\n",
            ),
            "routes[0].strategy.webhooks[1].name",
            14,
            13,
            "webhook name `a` is already used by webhooks[0]",
        ),
        (
            hook("        - { name: a, type: rollout, url: http://x/, timeout: 0s }\n"),
            "routes[0].strategy.webhooks[0].timeout",
            13,
            53,
            "it must be more than 0",
        ),
        (
            hook("        - { name: a, type: rollout, url: http://x/, retries: 11 }\n"),
            "routes[0].strategy.webhooks[0].retries",
            13,
            53,
            "at most 10",
        ),
        (
            hook("        - { name: a b, type: rollout, url: http://x/ }\n"),
            "routes[0].strategy.webhooks[0].name",
            13,
            13,
            "use letters, digits",
        ),
        (
            hook("        - { name: a, type: rollout, url: http://x/, method: GET }\n"),
            "routes[0].strategy.webhooks[0].method",
            13,
            53,
            "unknown field `method`",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn bad_notifications_are_refused_at_their_place() {
    let receiver = |body: &str| format!("{ROUTE}notifications:\n{body}");
    let cases = [
        (
            receiver(
                "  - { name: n, url: http://x/, triggers: [on-rollout-aborted, on-rollout-finished] }\n",
            ),
            "notifications[0].triggers[1]",
            13,
            63,
            "unknown trigger `on-rollout-finished`; expected `on-rollout-updated`",
        ),
        (
            receiver(
                "  - { name: n, url: http://x/, triggers: [on-rollout-aborted], routes: [checkot] }\n",
            ),
            "notifications[0].routes[0]",
            13,
            73,
            "no route is named `checkot`; the routes are `checkout`",
        ),
        (
            receiver("  - { name: n, url: http://x/, triggers: [] }\n"),
            "notifications[0].triggers",
            13,
            32,
            "no triggers; list at least one of",
        ),
        (
            receiver(
                "  - { name: n, url: http://x/, triggers: [on-rollout-aborted] }\n  - { name: n, url: http://y/, triggers: [on-rollout-aborted] }\n",
            ),
            "notifications[1].name",
            14,
            7,
            "receiver name `n` is already used by notifications[0]",
        ),
        (
            receiver("  - { name: n, url: \"http://\", triggers: [on-rollout-aborted] }\n"),
            "notifications[0].url",
            13,
            16,
            "not a URL",
        ),
        (
            receiver(
                "  - { name: n, url: http://x/, triggers: [on-rollout-aborted], headers: { \"a b\": c } }\n",
            ),
            "notifications[0].headers.a b",
            13,
            75,
            "is not a header name",
        ),
        (
            receiver(
                "  - { name: n, url: http://x/, triggers: [on-rollout-aborted], retryMax: 21 }\n",
            ),
            "notifications[0].retryMax",
            13,
            64,
            "at most 20",
        ),
        (
            receiver("  - { name: n, url: http://x/ }\n"),
            "notifications[0]",
            13,
            5,
            "missing field `triggers`",
        ),
    ];
    assert_cases(&cases);
}

#[test]
fn a_receiver_naming_unknown_routes_lists_some_routes_not_all() {
    // 3,000 routes and 2,000 unknown names: listing every route in each
    // message came to 100 MB of messages (gigabytes at the largest file).
    let routes = 3_000;
    let unknown = 2_000;
    let mut text =
        String::from("listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n");
    for i in 0..routes {
        text.push_str(&format!(
            "  - {{ name: r{i}, pathPrefix: /{i}, stable: {{ revision: v, endpoints: [a:1] }} }}\n"
        ));
    }
    text.push_str(&format!(
        "notifications:\n  - name: n\n    url: http://127.0.0.1:1/\n    triggers: [on-rollout-aborted]\n    routes: [r7, shop/web, {}]\n",
        vec!["zz"; unknown].join(", ")
    ));
    let errors = invalid(&text);
    assert_eq!(errors.len(), unknown, "{:#?}", &errors[..3]);
    assert_eq!(errors[0].path, "notifications[0].routes[2]");
    assert_eq!(
        errors[0].message,
        "no route is named `zz`; the routes are `r0`, `r1`, `r2`, `r3`, `r4`, `r5`, `r6`, `r7`, `r8`, `r9` and 2990 more"
    );
    assert!(errors.iter().all(|e| e.message == errors[0].message));
}
