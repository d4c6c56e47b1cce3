//! Phase 7, the suite the way users run it: `cargo nextest run` of many small tests, a
//! process each (bench/tests/suite.rs), through the harness and through raw bollard,
//! interleaved, timed whole; and every process's Docker calls, harness against raw, by phase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::stats::{Op, Report, Samples};
use crate::{progress, Bench};

/// The tests of one run: 24 of them, or all 384.
pub(super) const S24: &str = "test(/^s24::(a::|b::t0[0-7])/)";
pub(super) const S384: &str = "test(/^s384::/)";

/// Interleaved rounds per configuration (each round one harness run and one raw run, in
/// alternating order): `BENCH_SUITE_ROUNDS`, 3 by default.
fn rounds() -> usize {
    std::env::var("BENCH_SUITE_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(3)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo nextest run` of the suite, for one path; its wall time in seconds, and its call log.
fn nextest(run_id: &str, filter: &str, jobs: usize, path: &str, shape: &str, log: &Path) -> Result<f64> {
    let _ = std::fs::remove_file(log);
    let out_dir = root().join("target").join("bench");
    let stderr = std::fs::File::create(out_dir.join("suite-nextest.log"))?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["nextest", "run", "--release", "-p", "docker-harness-bench", "--test", "suite", "--no-fail-fast"])
        .args(["-j", &jobs.to_string(), "-E", filter, "--status-level", "fail", "--final-status-level", "fail"])
        .env("BENCH_SUITE_PATH", path)
        .env("BENCH_SUITE_SHAPE", shape)
        .env("BENCH_RUN_ID", run_id)
        .env("DOCKER_HARNESS_CALL_LOG", log)
        .stdout(Stdio::null())
        .stderr(stderr);
    let t = Instant::now();
    let status = cmd.status().context("run cargo nextest")?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(status.success(), "the suite's {path} run failed; see target/bench/suite-nextest.log");
    Ok(secs)
}

/// The last line of each process in a call log: its calls, summed by phase.
fn per_process(log: &Path) -> Vec<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut last: BTreeMap<u64, Value> = BTreeMap::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(pid) = v["pid"].as_u64() {
                last.insert(pid, v);
            }
        }
    }
    last.values()
        .map(|v| {
            let mut by: BTreeMap<String, u64> = BTreeMap::new();
            for c in v["calls"].as_array().into_iter().flatten() {
                let why = c["why"].as_str().unwrap_or("?").to_string();
                *by.entry(why).or_insert(0) += c["n"].as_u64().unwrap_or(0);
            }
            by
        })
        .collect()
}

/// Per test: the median of each phase and of the total, over the processes of a run.
fn call_medians(procs: &[BTreeMap<String, u64>]) -> BTreeMap<String, f64> {
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in procs {
        for key in ["start", "context", "create", "use", "teardown", "other"] {
            phases.entry(key.into()).or_default().push(*p.get(key).unwrap_or(&0) as f64);
        }
        phases.entry("total".into()).or_default().push(p.values().sum::<u64>() as f64);
    }
    phases.into_iter().map(|(k, v)| (k, Samples(v).median())).collect()
}

/// Which module and operation the harness's calls were, over all its processes of a run.
fn harness_ops(log: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut last: BTreeMap<u64, Value> = BTreeMap::new();
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if let Some(pid) = v["pid"].as_u64() {
            last.insert(pid, v);
        }
    }
    let mut ops = BTreeMap::new();
    for v in last.values() {
        for c in v["calls"].as_array().into_iter().flatten() {
            let key = format!(
                "{} {}.{}",
                c["why"].as_str().unwrap_or("?"),
                c["module"].as_str().unwrap_or("?"),
                c["op"].as_str().unwrap_or("?")
            );
            *ops.entry(key).or_insert(0) += c["n"].as_u64().unwrap_or(0);
        }
    }
    ops
}

/// One configuration's interleaved runs: wall times (ms) and every process's calls.
pub(super) struct Measured {
    pub(super) h: Samples,
    pub(super) raw: Samples,
    pub(super) h_calls: Vec<BTreeMap<String, u64>>,
    pub(super) raw_calls: Vec<BTreeMap<String, u64>>,
    ops: BTreeMap<String, u64>,
}

impl Measured {
    /// Calls per test, harness and raw: medians of the totals over the processes.
    pub(super) fn calls(&self) -> (f64, f64) {
        let total = |p: &[BTreeMap<String, u64>]| call_medians(p).get("total").copied().unwrap_or(f64::NAN);
        (total(&self.h_calls), total(&self.raw_calls))
    }
}

/// Runs one configuration `n` times each way, alternating which path goes first.
pub(super) async fn measure(b: &Bench, shape: &str, jobs: usize, filter: &str, n: usize) -> Result<Measured> {
    let logs = root().join("target").join("bench");
    let mut m = Measured {
        h: Samples::default(),
        raw: Samples::default(),
        h_calls: Vec::new(),
        raw_calls: Vec::new(),
        ops: BTreeMap::new(),
    };
    for round in 0..n {
        for path in if round % 2 == 0 { ["raw", "harness"] } else { ["harness", "raw"] } {
            let log = logs.join(format!("suite-calls-{path}.jsonl"));
            let (run_id, filter, shape, log2) = (b.run_id.clone(), filter.to_string(), shape.to_string(), log.clone());
            let run = move || nextest(&run_id, &filter, jobs, path, &shape, &log2);
            let secs = tokio::task::spawn_blocking(run).await??;
            let procs = per_process(&log);
            if path == "harness" {
                m.h.0.push(secs * 1000.0);
                m.h_calls.extend(procs);
                for (k, v) in harness_ops(&log) {
                    *m.ops.entry(k).or_insert(0) += v;
                }
            } else {
                m.raw.0.push(secs * 1000.0);
                m.raw_calls.extend(procs);
            }
        }
    }
    Ok(m)
}

pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    let n = rounds();
    progress(&format!("7. suite under nextest: building, then {n} interleaved rounds per configuration"));
    let build = Command::new("cargo")
        .current_dir(root())
        .args(["nextest", "run", "--release", "-p", "docker-harness-bench", "--test", "suite", "--no-run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("build the suite")?;
    ensure!(build.success(), "could not build bench/tests/suite.rs (cargo nextest run --no-run)");
    r.section(&format!(
        "7. a suite under `cargo nextest run`, one process per test ({n} interleaved rounds; whole run wall time)"
    ));
    r.line("calls per test: medians over the run's processes, by phase: start/context/create/use/teardown");
    let configs = vec![
        ("one", 1, S24, "24 tests, one container each"),
        ("one", 8, S24, "24 tests, one container each"),
        ("shape", 1, S24, "24 tests, network+volume+2 containers"),
        ("shape", 8, S24, "24 tests, network+volume+2 containers"),
    ];
    let mut baseline = None;
    for (shape, jobs, filter, what) in configs {
        progress(&format!("7. {what}, -j{jobs}"));
        let m = measure(b, shape, jobs, filter, n).await?;
        let Measured { h, raw, h_calls, raw_calls, ops } = &m;
        let id = format!("suite.{shape}.j{jobs}");
        let ratios = Samples(h.0.iter().zip(&raw.0).map(|(a, b)| a / b).collect());
        let (lo, hi) = (ratios.0.iter().copied().fold(f64::INFINITY, f64::min), ratios.max());
        let ratio = h.median() / raw.median();
        let verdict = r.figure(
            &format!("{id}.ratio"),
            &format!("{what}, -j{jobs}: harness/raw wall time, medians"),
            "ratio",
            n,
            ratio,
            Some((Op::AtMost, 1.02)),
        );
        r.figure(
            &format!("{id}.paired"),
            &format!("{what}, -j{jobs}: harness/raw paired by round, median"),
            "ratio",
            n,
            ratios.median(),
            None,
        );
        r.figure(
            &format!("{id}.raw_s"),
            &format!("{what}, -j{jobs}: raw run, median"),
            "s",
            n,
            raw.median() / 1000.0,
            None,
        );
        r.figure(
            &format!("{id}.harness_s"),
            &format!("{what}, -j{jobs}: harness run, median"),
            "s",
            n,
            h.median() / 1000.0,
            None,
        );
        r.line(format!(
            "{what}, -j{jobs}: raw {:.2} s, harness {:.2} s, ratio {ratio:.3} (paired {:.3}, {lo:.3}..{hi:.3})   {verdict}",
            raw.median() / 1000.0,
            h.median() / 1000.0,
            ratios.median()
        ));
        let (hc, rc) = (call_medians(h_calls), call_medians(raw_calls));
        let row = |m: &BTreeMap<String, f64>| {
            ["start", "context", "create", "use", "teardown", "other", "total"]
                .map(|k| format!("{:>5}", m.get(k).copied().unwrap_or(0.0)))
                .join(" ")
        };
        r.line("  calls per test        start context create   use teardown other total");
        r.line(format!("  raw bollard           {}", row(&rc)));
        r.line(format!("  harness               {}", row(&hc)));
        let (ht, rt) = (hc.get("total").copied().unwrap_or(f64::NAN), rc.get("total").copied().unwrap_or(f64::NAN));
        let v = r.figure(
            &format!("{id}.calls_extra"),
            &format!("{what}, -j{jobs}: Docker calls per test, harness minus raw (medians)"),
            "calls",
            h_calls.len(),
            ht - rt,
            Some((Op::AtMost, 2.0)),
        );
        r.line(format!("  harness - raw: {:+} calls per test   {v}", ht - rt));
        if jobs == 1 && shape == "one" {
            r.line("  the harness's calls over all its processes (phase module.operation: count):");
            for (k, v) in ops {
                r.line(format!("    {k}: {v}"));
            }
        }
        if jobs == 8 && shape == "one" {
            baseline = Some(m);
        }
    }
    match baseline {
        Some(base) => super::scale::phase(b, r, &base).await,
        None => Ok(()),
    }
}
