use super::*;

fn list(items: &[f64]) -> Value {
    Value::List(items.iter().map(|n| Value::Number(*n)).collect())
}

fn json(text: &str) -> Value {
    Value::from_json(&serde_json::from_str(text).expect("test JSON"))
}

fn check(condition: &str, result: &Value) -> Result<bool, EvalError> {
    Condition::parse(condition)
        .unwrap_or_else(|e| panic!("{condition}: {e}"))
        .eval(result)
}

/// The conditions of Argo Rollouts' documentation and examples, each with
/// results that make it true and false.
#[test]
fn argo_documented_conditions() {
    let cases: Vec<(&str, Value, bool)> = vec![
        ("result[0] >= 0.95", list(&[0.97]), true),
        ("result[0] >= 0.95", list(&[0.5]), false),
        ("result[0] <= 0.01", list(&[0.001]), true),
        (
            "len(result) == 0 || isNaN(result[0]) || result[0] <= 0.01",
            list(&[]),
            true,
        ),
        (
            "len(result) == 0 || isNaN(result[0]) || result[0] <= 0.01",
            list(&[f64::NAN]),
            true,
        ),
        (
            "len(result) == 0 || isNaN(result[0]) || result[0] <= 0.01",
            list(&[0.2]),
            false,
        ),
        ("len(result) == 0 || result[0] >= 0.95", list(&[]), true),
        (
            "isNaN(result) || result >= 0.95",
            Value::Number(f64::NAN),
            true,
        ),
        ("isNaN(result) || result >= 0.95", Value::Number(0.5), false),
        ("default(result, 0) >= 0.9", Value::Nil, false),
        ("default(result, 1) >= 0.9", Value::Nil, true),
        ("default(result, 0) >= 0.9", Value::Number(0.95), true),
        ("default(result[0], 0) >= 0.9", list(&[]), false),
        ("all(result, {# < 0.01})", list(&[0.001, 0.002]), true),
        ("all(result, {# < 0.01})", list(&[0.001, 0.2]), false),
        ("any(result, {# > 0.5})", list(&[0.1, 0.7]), true),
        ("any(result, {# > 0.5})", list(&[]), false),
        ("asInt(result) == 200", Value::Text("200".to_owned()), true),
        ("asInt(result) == 200", Value::Number(404.0), false),
        (
            "asFloat(result) >= 0.9",
            Value::Text("0.95".to_owned()),
            true,
        ),
        ("result == true", Value::Bool(true), true),
        (
            "result.failed == 0",
            json(r#"{"failed": 0, "passed": 12}"#),
            true,
        ),
        ("result.failed == 0", json(r#"{"failed": 3}"#), false),
        (
            "result.ok && result.successPercent >= 0.90",
            json(r#"{"ok": true, "successPercent": 0.95}"#),
            true,
        ),
        (
            "result.data.ok and not result.data.degraded",
            json(r#"{"data": {"ok": true, "degraded": false}}"#),
            true,
        ),
        (
            "result['status'] == 'green'",
            json(r#"{"status": "green"}"#),
            true,
        ),
        ("isInf(result[0])", list(&[f64::INFINITY]), true),
        ("isNil(result.missing)", json("{}"), true),
        ("!(result[0] > 5)", list(&[3.0]), true),
        ("result[0] * 100 - 1 > 90 % 7 + 2 * 3", list(&[0.5]), true),
        ("-result[0] < 0", list(&[1.0]), true),
        ("result[-1] == 3", list(&[1.0, 2.0, 3.0]), true),
        ("result ?? 5 == 5", Value::Nil, true),
        (
            "len(result) > 0 && result[0] == result[1]",
            list(&[1.0, 1.0]),
            true,
        ),
        ("result[0] >= 1e-3", list(&[0.002]), true),
    ];
    for (condition, result, want) in cases {
        assert_eq!(
            check(condition, &result),
            Ok(want),
            "{condition} with {result:?}"
        );
    }
}

/// A runtime problem is an error of the measurement, never a panic.
#[test]
fn runtime_errors() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("result[0] >= 0.95", list(&[]), "out of range"),
        ("result.x > 1", Value::Number(1.0), "field `x`"),
        ("result > 1", Value::Text("a".to_owned()), "two numbers"),
        ("result", Value::Number(1.0), "not true or false"),
        ("isNaN(result)", list(&[1.0]), "isNaN needs a number"),
        ("asInt(result) == 1", Value::Text("x".to_owned()), "asInt"),
        ("result[0.5] == 1", list(&[1.0]), "whole number"),
    ];
    for (condition, result, part) in cases {
        let error = check(condition, &result).expect_err(condition);
        assert!(error.0.contains(part), "{condition}: {error}");
    }
}

/// A condition that does not parse names the column and what was expected.
#[test]
fn parse_errors_name_the_column() {
    let cases = [
        ("result[0] >=", 13, "expected a value"),
        ("result[0 >= 1", 14, "expected `]`"),
        ("resutl > 1", 1, "unknown name `resutl`"),
        ("len(result > 1", 15, "expected `)`"),
        ("result > 1 1", 12, "expected an operator"),
        ("all(result, # > 1)", 13, "inside a predicate"),
        ("# > 1", 1, "inside a predicate"),
        ("result == 'a", 11, "closing quote"),
        ("result @ 1", 8, "unexpected character"),
        ("len(result, 1) > 0", 1, "takes 1 argument"),
        ("isNaN > 1", 1, "is a function"),
        ("", 1, "expected a value"),
    ];
    for (condition, column, part) in cases {
        let error = Condition::parse(condition).expect_err(condition);
        assert_eq!(error.column, column, "{condition}: {error}");
        assert!(error.message.contains(part), "{condition}: {error}");
    }
}

/// A condition nested or chained past the bounds is refused with its
/// place, not parsed (or evaluated, or dropped) into a stack overflow that
/// would end the process: deep parentheses, signs, negations, indexes, a
/// long chain of operators, too many tokens.
#[test]
fn deep_or_long_conditions_are_refused_not_overflowed() {
    let deep = |open: &str, close: &str, n: usize| {
        format!("{}result[0]{} > 0", open.repeat(n), close.repeat(n))
    };
    let cases = [
        (deep("(", ")", 500), "nests more than 64 deep"),
        (deep("-", "", 500), "nests more than 64 deep"),
        (deep("!", "", 500), "nests more than 64 deep"),
        (deep("len(", ")", 500), "nests more than 64 deep"),
        (
            format!("result{} > 0", "[0]".repeat(300)),
            "chains or nests more than 256 operations deep",
        ),
        (
            format!("result{} > 0", " + 1".repeat(300)),
            "chains or nests more than 256 operations deep",
        ),
        (
            format!("result > 0{}", " || result > 0".repeat(100_000)),
            "more than 2048 tokens",
        ),
        (deep("(", ")", 100_000), "more than 2048 tokens"),
    ];
    for (condition, part) in cases {
        let error = Condition::parse(&condition).expect_err(part);
        assert!(error.message.contains(part), "{part}: {error}");
    }
    // Nesting within the bound still parses and evaluates.
    let nested = deep("(", ")", 60);
    assert_eq!(check(&nested, &list(&[1.0])), Ok(true), "{nested}");
    let chain = format!("result[0]{} > 0", " + 1".repeat(250));
    assert_eq!(check(&chain, &list(&[1.0])), Ok(true), "{chain}");
    let terms = vec!["result[0] == 1"; 200].join(" || ");
    assert_eq!(check(&terms, &list(&[1.0])), Ok(true), "200 terms");
    // Exactly the most tokens is allowed: `result` alone, then 1,023
    // `+ 1`, 2,048 tokens (which then chain past the depth allowed).
    let longest = format!("result{}", " + 1".repeat(1_023));
    let error = Condition::parse(&longest).expect_err("too deep");
    assert!(error.message.contains("chains or nests"), "{error}");
}

/// `!` binds tighter than comparisons and `&&` tighter than `||`, as in expr.
#[test]
fn precedence_follows_expr() {
    assert_eq!(check("true || false && false", &Value::Nil), Ok(true));
    assert_eq!(check("!false == true", &Value::Nil), Ok(true));
    assert_eq!(check("1 + 2 * 3 == 7", &Value::Nil), Ok(true));
    assert_eq!(check("(1 + 2) * 3 == 9", &Value::Nil), Ok(true));
    // Short-circuit: the right side is not evaluated.
    assert_eq!(
        check("len(result) == 0 || result[0] > 1", &list(&[])),
        Ok(true)
    );
    assert_eq!(
        check("len(result) > 0 && result[0] > 1", &list(&[])),
        Ok(false)
    );
}

/// `result` inside a predicate is borrowed, not copied for each element: a
/// condition over a large vector that names `result` in its predicate takes
/// a few steps per element. Copying the result at each reference would
/// take 100,000 copies of 100,000 elements here.
#[test]
fn result_in_a_predicate_is_not_copied_for_each_element() {
    let n = 100_000;
    let big = Value::List((0..n).map(|k| Value::Number(k as f64 + 1.0)).collect());
    let cases = [
        ("all(result, {# > 0})", true),
        ("all(result, {# > 0 && len(result) == 100000})", true),
        ("all(result, {# >= result[0] && # <= result[-1]})", true),
        ("any(result, {# == result[99999]})", true),
        ("any(result, {# > result[-1] ?? 0})", false),
        ("all(result, {default(#, 0) > 1})", false),
    ];
    for (text, want) in cases {
        let condition = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let (outcome, steps) = condition.eval_within(&big, MAX_STEPS);
        assert_eq!(outcome, Ok(want), "{text}");
        // A step per node of the predicate (13 at most here) and per
        // comparison, for each element; copying `result` for each element
        // would count 100,000 steps per element.
        assert!(steps <= 20 * n, "{text}: {steps} steps for {n} elements");
    }
}

/// Fields and indexes of a borrowed result are borrowed too: reading one
/// element of a large object costs a step, not a copy of the object.
#[test]
fn fields_and_indexes_borrow_from_the_result() {
    let n = 50_000;
    let items: Vec<serde_json::Value> = (0..n).map(|k| serde_json::json!({"v": k})).collect();
    let result = Value::from_json(&serde_json::json!({ "data": { "items": items, "limit": n } }));
    let condition =
        Condition::parse("all(result.data.items, {#.v < result.data.limit})").expect("parses");
    let (outcome, steps) = condition.eval_within(&result, MAX_STEPS);
    assert_eq!(outcome, Ok(true));
    assert!(steps <= 20 * n as u64, "{steps} steps for {n} elements");
    // A list written in the condition copies what it holds, and counts it.
    let copied = Condition::parse("len([result.data.items]) == 1").expect("parses");
    let (outcome, steps) = copied.eval_within(&result, MAX_STEPS);
    assert_eq!(outcome, Ok(true));
    assert!(steps > 2 * n as u64, "the copy is counted: {steps} steps");
}

/// A condition whose work grows with the square of the result (the whole
/// result searched again for each element, or copied into a list for each
/// element) stops at the budget with a message, instead of holding a worker
/// for hours.
#[test]
fn a_condition_quadratic_in_the_result_stops_at_the_budget() {
    let n = 20_000;
    let big = Value::List(vec![Value::Number(1.0); n]);
    let budget = 1_000_000;
    for text in [
        "all(result, {any(result, {# == 2}) || # > 0})",
        "all(result, {len([result]) == 1})",
        "all(result, {result == result})",
    ] {
        let condition = Condition::parse(text).expect("parses");
        let (outcome, steps) = condition.eval_within(&big, budget);
        let error = outcome.expect_err(text);
        assert!(
            error
                .0
                .contains("takes more than 1000000 steps on this result"),
            "{text}: {error}"
        );
        assert!(steps <= budget + 2 * n as u64, "{text}: {steps} steps");
    }
    // `default` does not swallow the budget: its fallback fails too.
    let condition =
        Condition::parse("default(all(result, {any(result, {# == 2}) || # > 0}), true)")
            .expect("parses");
    let error = condition
        .eval_within(&big, budget)
        .0
        .expect_err("over budget");
    assert!(error.0.contains("steps on this result"), "{error}");
    // The same conditions on a small result are fine.
    let small = Value::List(vec![Value::Number(1.0); 100]);
    let condition =
        Condition::parse("all(result, {any(result, {# == 2}) || # > 0})").expect("parses");
    assert_eq!(condition.eval(&small), Ok(true));
}

/// A long string is quoted cut in a message: a predicate failing on each
/// element (inside `default`) builds a message each time.
#[test]
fn long_strings_are_quoted_cut() {
    let long = "x".repeat(1 << 20);
    let error = check("asInt(result) == 1", &Value::Text(long.clone())).expect_err("not a number");
    assert!(error.0.len() < 200, "{} bytes", error.0.len());
    assert!(error.0.contains("(1048576 bytes)"), "{error}");
    let error = check("result > 1", &Value::Text(long)).expect_err("not a number");
    assert!(error.0.len() < 200, "{} bytes", error.0.len());
    assert_eq!(quote("short"), "\"short\"");
}
