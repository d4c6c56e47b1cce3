//! Turns the runner's one JSON line into the report's figures and lines. It runs in the
//! bench process once the runner is gone, so it reads numbers and touches nothing else.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde_json::{json, Value};

use super::{Exit, EXIT_LIMIT, EXIT_TARGET_S, TARGET, TRIAL_LIMIT};
use crate::stats::{Op, Report, Samples};

pub(super) fn report(r: &mut Report, out: &Value, exit: &Exit, runner_gone_at: Instant) -> Result<()> {
    let trials = out["trials"].as_array().cloned().unwrap_or_default();
    let series = |key: &str| Samples(trials.iter().filter_map(|t| t[key].as_f64()).collect());
    let total = series("kill_to_404_ms");
    let failed = trials.iter().filter(|t| t["all_gone"] != json!(true)).count();
    ensure!(!total.0.is_empty(), "no trial finished");

    r.line(format!("{:<44}{:>9}{:>9}{:>9}{:>5}", "kill to ...", "median", "p95", "max", "n"));
    let rows: [(&str, &str, &str); 7] = [
        ("first_event_ms", "first Docker event of the sweep", "kill to the first Docker event of the watcher's removal (a container's kill): the watcher noticed the death and listed the session"),
        ("containers_destroyed_ms", "last container destroyed (event)", "kill to the last of the 3 containers' destroy event"),
        ("networks_destroyed_ms", "last network destroyed (event)", "kill to the last of the 2 networks' destroy event"),
        ("volumes_destroyed_ms", "last volume destroyed (event)", "kill to the last of the 2 volumes' destroy event"),
        ("containers_404_ms", "all 3 containers answer 404", "kill to the last container answering 404 to inspect"),
        ("nv_404_ms", "all networks and volumes answer 404", "kill to the last network or volume answering 404 to inspect"),
        ("kill_to_404_ms", "all 7 answer 404", "kill to the last of the 7 answering 404 to inspect"),
    ];
    for (key, label, what) in rows {
        let s = series(key);
        let id = format!("watcher.kill.{}", key.trim_end_matches("_ms"));
        r.series(&id, &s);
        let (target, max_target) = match key {
            "kill_to_404_ms" => (Some((Op::AtMost, TARGET.as_secs_f64() * 1000.0)), None),
            "containers_404_ms" => (
                Some((Op::AtMost, super::crowd::CONTAINERS_MEDIAN_MS)),
                Some((Op::AtMost, super::crowd::CONTAINERS_MAX_MS)),
            ),
            _ => (None, None),
        };
        let verdict = r.figure(&format!("{id}.median"), &format!("{what}: median"), "ms", s.len(), s.median(), target);
        r.figure(&format!("{id}.p95"), &format!("{what}: 95th percentile"), "ms", s.len(), s.pct(95.0), None);
        let max_verdict =
            r.figure(&format!("{id}.max"), &format!("{what}: slowest trial"), "ms", s.len(), s.max(), max_target);
        let verdict = if max_target.is_some() { format!("{verdict}; max {max_verdict}") } else { verdict.to_string() };
        r.line(
            format!("{label:<44}{:>9.0}{:>9.0}{:>9.0}{:>5}   {verdict}", s.median(), s.pct(95.0), s.max(), s.len())
                .trim_end()
                .to_string(),
        );
    }
    let over = total.0.iter().filter(|&&v| v > TARGET.as_secs_f64() * 1000.0).count();
    r.figure(
        "watcher.kill.over_target",
        "trials whose kill-to-last-404 exceeded 2 s",
        "trials",
        total.len(),
        over as f64,
        None,
    );
    r.figure(
        "watcher.kill.trials_failed",
        &format!("trials whose resources were not all gone within {} s of the kill", TRIAL_LIMIT.as_secs()),
        "trials",
        trials.len(),
        failed as f64,
        Some((Op::Exactly, 0.0)),
    );
    r.line(format!(
        "  trials over 2 s: {over} of {}; trials not cleaned within {} s: {failed}",
        total.len(),
        TRIAL_LIMIT.as_secs()
    ));

    let survey =
        Samples(out["survey_ms"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default());
    r.series("watcher.survey_ms", &survey);
    r.figure(
        "watcher.survey.median",
        "one survey as the watcher makes it (containers, networks, volumes listed by the session's label, concurrently), timed by the runner while idle: median",
        "ms",
        survey.len(),
        survey.median(),
        None,
    );
    let first = series("first_event_ms");
    // remove_in_order removes the containers, then the networks and volumes together, so
    // the gaps from the last container's destroy event are those kinds' removals.
    let gap = |from: &str, to: &str| {
        Samples(trials.iter().filter_map(|t| Some(t[to].as_f64()? - t[from].as_f64()?)).collect())
    };
    let c_removal = gap("first_event_ms", "containers_destroyed_ms");
    let n_removal = gap("containers_destroyed_ms", "networks_destroyed_ms");
    let v_removal = gap("containers_destroyed_ms", "volumes_destroyed_ms");
    let lag = Samples(
        trials
            .iter()
            .filter_map(|t| {
                let last = ["containers_destroyed_ms", "networks_destroyed_ms", "volumes_destroyed_ms"]
                    .iter()
                    .filter_map(|k| t[*k].as_f64())
                    .reduce(f64::max)?;
                Some(t["kill_to_404_ms"].as_f64()? - last)
            })
            .collect(),
    );
    let splits: [(&str, &str, &Samples); 5] = [
        ("detect_and_list", "kill to the sweep's first Docker event: the pidfd's word of the exit and the owner's listing", &first),
        ("containers", "the sweep's first event to its last container destroyed (3 force-removals in parallel, each confirmed by 404)", &c_removal),
        ("networks", "the last container destroyed to the last network destroyed (2 removals in parallel, after the containers')", &n_removal),
        ("volumes", "the last container destroyed to the last volume destroyed (2 removals in parallel, with the networks')", &v_removal),
        ("observed", "the last destroy event to the bench seeing the last 404 (its 20 ms polling)", &lag),
    ];
    for (id, what, s) in splits {
        r.series(&format!("watcher.split.{id}"), s);
        r.figure(&format!("watcher.split.{id}"), &format!("{what}: median"), "ms", s.len(), s.median(), None);
    }
    r.line(format!(
        "  where it goes (medians, from Docker's event log): noticed + listed {:.0} ms (a survey alone {:.0} ms) | containers removed {:.0} ms | networks {:.0} ms | volumes {:.0} ms | seen by the bench {:.0} ms",
        first.median(),
        survey.median(),
        c_removal.median(),
        n_removal.median(),
        v_removal.median(),
        lag.median()
    ));
    super::crowd::report(r, &out["crowd"]);
    let w = &out["watcher"];
    let clk = w["clk_tck"].as_f64().unwrap_or(100.0);
    let ticks = w["idle_ticks"].as_f64().unwrap_or(f64::NAN);
    let window = w["idle_window_s"].as_f64().unwrap_or(f64::NAN);
    let ns = w["idle_cpu_ns"].as_f64();
    // schedstat where the kernel has it (ns), else the stat ticks (10 ms each).
    let cpu_pct = match ns {
        Some(ns) => ns / 1e9 / window * 100.0,
        None => ticks / clk / window * 100.0,
    };
    r.figure(
        "watcher.idle.cpu",
        &format!(
            "watcher CPU while the session is alive and idle (its runner lives, no test process does), over the window, as % of one core; from {}",
            if ns.is_some() { "/proc/PID/task/*/schedstat (ns on CPU, all threads)" } else { "utime+stime in /proc/PID/stat" }
        ),
        "% of one core",
        1,
        cpu_pct,
        None,
    );
    r.figure(
        "watcher.idle.cpu_ms",
        "watcher time on a CPU during the idle window (schedstat, all threads)",
        "ms",
        1,
        ns.map_or(f64::NAN, |n| n / 1e6),
        None,
    );
    r.figure("watcher.idle.cpu_ticks", "watcher utime+stime ticks during the idle window", "ticks", 1, ticks, None);
    r.figure("watcher.idle.window", "length of the idle window", "s", 1, window, None);
    let rss = w["vmrss_kb_max"].as_f64().unwrap_or(f64::NAN);
    let hwm = w["vmhwm_kb"].as_f64().unwrap_or(f64::NAN);
    let samples = w["rss_samples"].as_u64().unwrap_or(0) as usize;
    r.figure(
        "watcher.idle.vmrss",
        "watcher resident memory (VmRSS), largest sample in the idle window",
        "KiB",
        samples,
        rss,
        None,
    );
    r.figure(
        "watcher.idle.vmhwm",
        "watcher peak resident memory over its life (VmHWM) at the end of the idle window",
        "KiB",
        1,
        hwm,
        None,
    );
    r.figure(
        "watcher.idle.threads",
        "watcher threads at the end of the idle window",
        "threads",
        1,
        w["threads"].as_f64().unwrap_or(f64::NAN),
        None,
    );
    r.figure(
        "watcher.trials_total_cpu",
        "watcher CPU time from its start to the end of the trials (all sweeps included)",
        "ms",
        1,
        w["ticks_before_idle"].as_f64().unwrap_or(f64::NAN) / clk * 1000.0,
        None,
    );
    r.line(format!(
        "  watcher idle ({window:.1} s, session alive): CPU {cpu_pct:.3} % of one core ({:.1} ms on CPU; {ticks} ticks at {clk}/s in stat), VmRSS {:.1} MiB, VmHWM {:.1} MiB, {} threads",
        ns.map_or(f64::NAN, |n| n / 1e6),
        rss / 1024.0,
        hwm / 1024.0,
        w["threads"]
    ));

    let exit_s = exit.gone_at.map(|g| g.saturating_duration_since(runner_gone_at).as_secs_f64());
    let v = r.figure(
        "watcher.exit_after_runner",
        "from the runner's exit (no owner alive) to the watcher process being gone",
        "s",
        1,
        exit_s.unwrap_or(f64::NAN),
        Some((Op::AtMost, EXIT_TARGET_S)),
    );
    r.figure(
        "watcher.killed_by_bench",
        &format!(
            "the watcher had to be killed by the bench, still running {} s after its runner exited (1 = yes)",
            EXIT_LIMIT.as_secs()
        ),
        "processes",
        1,
        if exit.killed || (exit.pid.is_some() && exit.gone_at.is_none()) { 1.0 } else { 0.0 },
        Some((Op::Exactly, 0.0)),
    );
    match (exit.pid, exit_s) {
        (None, _) => {
            r.line("  watcher exit: no watcher.json was found".to_string());
            r.notes.push("6. no watcher record was found: the holders never started a watcher".into());
        }
        (Some(pid), Some(s)) => r.line(format!("  watcher (pid {pid}) gone {s:.2} s after its runner exited   {v}")),
        (Some(pid), None) => {
            let msg = format!(
                "6. the watcher (pid {pid}) was still running {} s after its runner exited; the bench {} it",
                EXIT_LIMIT.as_secs(),
                if exit.killed { "killed" } else { "could not kill" }
            );
            r.line(format!("  {msg}"));
            r.notes.push(msg);
        }
    }
    if failed > 0 {
        r.notes.push(format!(
            "6. {failed} trial(s): the watcher did not remove everything within {} s; the runner removed the rest",
            TRIAL_LIMIT.as_secs()
        ));
    }
    r.line("  per-trial timings and the watcher's log: target/bench/latest.json, target/bench/watcher.log".to_string());
    Ok(())
}
