//! What one trial does, drawn from its seed alone: the tests it runs and how they are
//! killed. The same seed draws the same plan on any machine (given the same test list).

use crate::rng::Rng;

/// The chaos test (tests/chaos.rs), the only one that takes an injected fault.
pub(crate) const FAULT_TEST: (&str, &str) = ("chaos", "a_test_that_dies_at_a_random_point_leaves_nothing_behind");
/// Points at which the chaos test may die: after 0 to 3 of its creates.
const FAULT_POINTS: u64 = 3;

/// How a trial kills its tests.
#[derive(Debug, Clone)]
pub(crate) enum Kill {
    /// A nextest profile of the trial's own: tests silent for `period_ms` are sent SIGTERM,
    /// and SIGKILL `grace_ms` later.
    Timeout { period_ms: u64, grace_ms: u64 },
    /// The driver signals running test processes at these moments (SIGKILL when `true`),
    /// and perhaps nextest itself and the session's watcher.
    Signals { tests: Vec<(u64, bool)>, nextest: Option<(u64, bool)>, watcher: Option<(u64, bool)> },
    /// The chaos test dies by `fault` (`panic`, `exit`, `abort`) after `at` creates.
    Fault { fault: &'static str, at: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    /// `(binary name, test name)`.
    pub(crate) tests: Vec<(String, String)>,
    pub(crate) kill: Kill,
}

impl Plan {
    pub(crate) fn draw(seed: u64, pool: &[(String, String)], min: usize, max: usize) -> Plan {
        let mut r = Rng::new(seed);
        let n = r.range(min as u64, max.max(min) as u64) as usize;
        let mut tests = r.sample(pool, n);
        let kill = match r.range(0, 2) {
            0 => Kill::Timeout { period_ms: r.range(100, 5000), grace_ms: r.range(0, 5000) },
            1 => {
                let mut at: Vec<(u64, bool)> =
                    (0..r.range(1, 4)).map(|_| (r.range(200, 6000), r.chance(1, 2))).collect();
                at.sort_unstable();
                let nextest = r.chance(1, 4).then(|| (r.range(500, 8000), r.chance(1, 2)));
                let watcher = r.chance(1, 4).then(|| (r.range(500, 8000), r.chance(1, 2)));
                Kill::Signals { tests: at, nextest, watcher }
            }
            _ => {
                let fault = *r.pick(&["panic", "exit", "abort"]).unwrap_or(&"panic");
                tests.push((FAULT_TEST.0.to_string(), FAULT_TEST.1.to_string()));
                Kill::Fault { fault, at: r.range(0, FAULT_POINTS) }
            }
        };
        Plan { seed, tests, kill }
    }

    /// The nextest filterset that runs exactly the plan's tests.
    pub(crate) fn filter(&self) -> String {
        let one = |(b, t): &(String, String)| format!("(binary_id(e2e-tests::{b}) & test(={t}))");
        self.tests.iter().map(one).collect::<Vec<_>>().join(" | ")
    }

    pub(crate) fn describe(&self) -> String {
        let kill = match &self.kill {
            Kill::Timeout { period_ms, grace_ms } => format!("slow-timeout {period_ms} ms, grace {grace_ms} ms"),
            Kill::Signals { tests, nextest, watcher } => {
                let sig = |k: bool| if k { "SIGKILL" } else { "SIGTERM" };
                let mut s: Vec<String> = tests.iter().map(|(t, k)| format!("{} a test at {t} ms", sig(*k))).collect();
                s.extend(nextest.map(|(t, k)| format!("{} nextest at {t} ms", sig(k))));
                s.extend(watcher.map(|(t, k)| format!("{} the watcher at {t} ms", sig(k))));
                s.join(", ")
            }
            Kill::Fault { fault, at } => format!("{fault} in the chaos test after {at} creates"),
        };
        format!("{} tests; {kill}", self.tests.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{Kill, Plan};

    fn pool() -> Vec<(String, String)> {
        (0..20).map(|i| ("cleanup".to_string(), format!("t{i}"))).collect()
    }

    #[test]
    fn a_seed_draws_the_same_plan() {
        let (a, b) = (Plan::draw(99, &pool(), 2, 6), Plan::draw(99, &pool(), 2, 6));
        assert_eq!(a.tests, b.tests);
        assert_eq!(a.describe(), b.describe());
    }

    #[test]
    fn a_fault_plan_runs_the_chaos_test() {
        let plan = (0..64).map(|s| Plan::draw(s, &pool(), 2, 6)).find(|p| matches!(p.kill, Kill::Fault { .. }));
        let plan = plan.expect("some seed among 64 draws a fault");
        assert!(plan.filter().contains("binary_id(e2e-tests::chaos)"), "{}", plan.filter());
    }
}
