//! Measures the analysis' false-abort rate and detection time by simulation
//! (see `weir_control::rollout::simulate`):
//!
//! 1. Equal 2 % error rates on both roles, 100 canary and 900 stable requests
//!    per second, judged every second over a 30 s window, `minRequests` 20,
//!    `maxErrorRate` 0.05, `compareToStable`, `failureLimit` 0, ten-minute
//!    rollouts: how many abort (the target is under 1 %).
//! 2. Canary 10 % vs stable 1 %, `maxErrorRate` 0.5 so that only the
//!    comparison can fire: time to abort (the target is under 10 s).
//!
//! `cargo run --release -p weir-control --example false_alarm -- [ROLLOUTS] [SEED]`
//! (defaults: 1000 rollouts per scenario, seed 1).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_config::Analysis;
use weir_control::rollout::simulate::{self, Abort, Scenario};
use weir_control::rollout::stats::clopper_pearson_lower;

fn main() {
    let mut args = std::env::args().skip(1);
    let rollouts: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut uniform = || rng.f64();
    let started = Instant::now();

    let equal = Scenario {
        analysis: Analysis::default(),
        duration: Duration::from_secs(600),
        canary_rps: 100,
        stable_rps: 900,
        canary_error_rate: 0.02,
        stable_error_rate: 0.02,
        canary_turns_bad: None,
    };
    let aborts: Vec<Abort> = (0..rollouts)
        .filter_map(|_| simulate::run(&equal, &mut uniform))
        .collect();
    let n = u64::from(rollouts);
    let k = aborts.len() as u64;
    // One-sided 95 % Clopper–Pearson upper bound of the abort probability.
    let upper = 1.0 - clopper_pearson_lower(n, n - k, 0.05);
    println!(
        "equal 2 % error rates, {rollouts} ten-minute rollouts (100 + 900 rps, judged every 1 s over 30 s, seed {seed}):"
    );
    println!(
        "  false aborts: {k} of {n} = {:.2} % (95 % upper bound {:.2} %)",
        100.0 * k as f64 / n as f64,
        100.0 * upper
    );
    let mut by_reason: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for a in &aborts {
        by_reason
            .entry(a.reason.metric_label())
            .or_default()
            .push(a.after);
    }
    for (reason, times) in &by_reason {
        let secs: Vec<String> = times.iter().map(|t| format!("{}", t.as_secs())).collect();
        println!(
            "    {reason}: {} (after s: {})",
            times.len(),
            secs.join(", ")
        );
    }

    let worse = Scenario {
        analysis: Analysis {
            max_error_rate: 0.5,
            ..Analysis::default()
        },
        canary_error_rate: 0.10,
        stable_error_rate: 0.01,
        ..equal
    };
    let mut times = Vec::new();
    let mut missed = 0;
    let mut reasons: BTreeMap<&str, u32> = BTreeMap::new();
    for _ in 0..rollouts {
        match simulate::run(&worse, &mut uniform) {
            Some(a) => {
                times.push(a.after);
                *reasons.entry(a.reason.metric_label()).or_default() += 1;
            }
            None => missed += 1,
        }
    }
    println!("canary 10 % vs stable 1 % (maxErrorRate 0.5), {rollouts} rollouts: time to abort");
    print_times(&mut times, missed, &reasons);

    // The same regression, five minutes into a rollout that was fine: the
    // change-point mixture costs about ln(301 * 302) = 11.4 nats more evidence.
    let late = Scenario {
        canary_error_rate: 0.01,
        canary_turns_bad: Some((Duration::from_secs(300), 0.10)),
        ..worse
    };
    let mut times = Vec::new();
    let mut missed = 0;
    let mut reasons: BTreeMap<&str, u32> = BTreeMap::new();
    for _ in 0..rollouts {
        match simulate::run(&late, &mut uniform) {
            Some(a) if a.after > Duration::from_secs(300) => {
                times.push(a.after - Duration::from_secs(300));
                *reasons.entry(a.reason.metric_label()).or_default() += 1;
            }
            Some(_) => *reasons.entry("before the change").or_default() += 1,
            None => missed += 1,
        }
    }
    println!(
        "canary 1 % turning 10 % after 5 min, stable 1 %, {rollouts} rollouts: time to abort after the change"
    );
    print_times(&mut times, missed, &reasons);
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}

fn print_times(times: &mut [Duration], missed: u32, reasons: &BTreeMap<&str, u32>) {
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .map_or_else(|| "-".to_owned(), |t| format!("{} s", t.as_secs()))
    };
    println!(
        "  median {}, p99 {}, worst {}; not detected in 10 min: {missed}; aborts {reasons:?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
