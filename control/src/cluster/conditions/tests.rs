use super::*;

const T0: u64 = 1_700_000_000_000;

fn problem(field_or_role: &str, reason: &'static str, message: &str) -> RouteProblem {
    RouteProblem {
        field_or_role: field_or_role.to_owned(),
        reason,
        message: message.to_owned(),
    }
}

fn condition(type_: &str, status: &str, message: &str, at: u64) -> StatusCondition {
    StatusCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: if status == "True" {
            type_.to_owned()
        } else {
            "Other".to_owned()
        },
        message: message.to_owned(),
        last_transition_time: Some(format_time(at)),
    }
}

#[test]
fn a_problem_becomes_a_true_condition_beside_the_phase_conditions() {
    let previous = vec![condition("Ready", "True", "no rollout", T0)];
    let problems = [
        problem(
            "stable",
            SERVICE_MISSING,
            "the stable Service `shop/a` does not exist",
        ),
        problem(
            "canary",
            SERVICE_MISSING,
            "the canary Service `shop/b` does not exist",
        ),
    ];
    let update = update(&previous, &problems, T0 + 5).expect("a change");
    assert_eq!(update.conditions.len(), 2, "{update:?}");
    assert_eq!(update.conditions[0], previous[0]);
    let missing = &update.conditions[1];
    assert_eq!(missing.type_, "ServiceMissing");
    assert_eq!(missing.status, "True");
    assert_eq!(missing.reason, "ServiceMissing");
    assert_eq!(
        missing.message,
        "stable: the stable Service `shop/a` does not exist; canary: the canary Service `shop/b` does not exist"
    );
    assert_eq!(missing.last_transition_time, Some(format_time(T0 + 5)));
    assert_eq!(
        update.appeared,
        vec![("ServiceMissing", missing.message.clone())]
    );
}

#[test]
fn a_condition_already_written_changes_nothing_and_tells_no_event() {
    let problems = [problem(
        "spec.strategy.steps[0].pause.duration",
        INVALID,
        "not a duration",
    )];
    let first = update(&[], &problems, T0).expect("a change");
    assert_eq!(first.appeared.len(), 1);
    assert_eq!(update(&first.conditions, &problems, T0 + 1000), None);
}

#[test]
fn a_problem_gone_sets_its_condition_false_and_one_never_set_stays_absent() {
    let previous = vec![
        condition("Invalid", "True", "spec.pathPrefix: bad", T0),
        condition("Progressing", "False", "no rollout", T0),
    ];
    let update = update(&previous, &[], T0 + 10).expect("a change");
    assert_eq!(update.conditions.len(), 2, "{update:?}");
    let invalid = &update.conditions[0];
    assert_eq!(
        (
            invalid.type_.as_str(),
            invalid.status.as_str(),
            invalid.reason.as_str()
        ),
        ("Invalid", "False", "Valid")
    );
    assert_eq!(invalid.last_transition_time, Some(format_time(T0 + 10)));
    assert!(update.appeared.is_empty());
    assert_eq!(super::update(&update.conditions, &[], T0 + 20), None);
}

#[test]
fn a_changed_message_is_told_again_and_keeps_the_transition_time() {
    let previous = vec![condition(
        "PortMissing",
        "True",
        "stable: no port `web`",
        T0,
    )];
    let problems = [problem("stable", PORT_MISSING, "no port `admin`")];
    let update = update(&previous, &problems, T0 + 10).expect("a change");
    assert_eq!(update.conditions[0].message, "stable: no port `admin`");
    assert_eq!(
        update.conditions[0].last_transition_time,
        Some(format_time(T0))
    );
    assert_eq!(update.appeared.len(), 1);
}
