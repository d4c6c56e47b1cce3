//! The watcher with hundreds of owners registered (issue 17, item 4): what it costs while
//! they live (CPU, memory, open files: it holds a pidfd per owner), how fast it still
//! reacts to one SIGKILLed test among them, and how long it takes when all of them die at
//! once. The crowd is `sleep` processes registered as the session's owners the way a test
//! process registers itself (a file in `owners/` naming its place, PID and start time);
//! they make no resources, so only the watcher's own work is measured.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use docker_harness::labels;
use serde_json::{json, Value};

use super::proc::{cpu_ns, start_time, status_kb};
use super::runner::{start_holder, trial};
use super::{POLL, SETTLE};
use crate::progress;
use crate::raw::Raw;
use crate::stats::{Op, Report, Samples};

/// Owners registered at once.
pub(super) const CROWD: usize = 300;
/// SIGKILLed holders among the crowd.
const TRIALS: usize = 5;
const WINDOW: Duration = Duration::from_secs(10);
/// The targets for a test's containers, kill to 404 (median, slowest).
pub(super) const CONTAINERS_MEDIAN_MS: f64 = 300.0;
pub(super) const CONTAINERS_MAX_MS: f64 = 500.0;

struct Crowd(Vec<Child>);

impl Drop for Crowd {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn open_files(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

pub(super) async fn run(
    docker: &Docker,
    raw: &Raw,
    exe: &Path,
    ids: (&str, &str),
    dir: &Path,
    watcher: u32,
) -> Result<Value> {
    let (run_id, session) = ids;
    progress(&format!("6b. watcher with {CROWD} owners registered"));
    let fds_before = open_files(watcher);
    let first = start_holder(exe, run_id, session).await?;
    // The holder's place, as its labels name it: the crowd's owner files name the same.
    let info = docker.inspect_container(&first.containers[0], None::<InspectContainerOptions>).await?;
    let owner =
        info.config.and_then(|c| c.labels).and_then(|l| l.get(labels::OWNER).cloned()).context("no owner label")?;
    let host = owner.rsplitn(3, '/').nth(2).context("an owner label without a place")?.to_string();
    let mut crowd = Crowd(Vec::new());
    let owners = dir.join("owners");
    for _ in 0..CROWD {
        let child = Command::new("sleep").arg("3600").stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
        let (pid, start) = (child.id(), start_time(child.id()).context("a sleeper's start time")?);
        crowd.0.push(child);
        std::fs::write(owners.join(format!("{pid}-{start}")), format!("{host}/{pid}/{start}"))?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // read at the watcher's next round
    let fds = open_files(watcher);
    let ns0 = cpu_ns(watcher);
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let idle_ms = cpu_ns(watcher).zip(ns0).map(|(b, a)| b.saturating_sub(a) as f64 / 1e6);
    let window = t0.elapsed().as_secs_f64();
    let rss = status_kb(watcher, "VmRSS:");

    let mut trials = Vec::new();
    let mut next = Some(first);
    for i in 0..TRIALS {
        let h = match next.take() {
            Some(h) => h,
            None => start_holder(exe, run_id, session).await?,
        };
        tokio::time::sleep(SETTLE).await;
        let (v, _, _) = trial(docker, raw, h).await?;
        progress(&format!(
            "6b. trial {}/{TRIALS} among {CROWD} owners: containers gone {:.0} ms after the SIGKILL",
            i + 1,
            v["containers_404_ms"].as_f64().unwrap_or(f64::NAN)
        ));
        trials.push(v);
    }

    // All of them at once: until the watcher has forgotten every one (their files gone).
    let ns1 = cpu_ns(watcher);
    let t1 = Instant::now();
    drop(crowd);
    let limit = Duration::from_secs(60);
    let left = || std::fs::read_dir(&owners).map(|d| d.count()).unwrap_or(0);
    while left() > 0 && t1.elapsed() < limit {
        tokio::time::sleep(POLL).await;
    }
    let all_dead_ms = (left() == 0).then(|| t1.elapsed().as_secs_f64() * 1000.0);
    let all_dead_cpu_ms = cpu_ns(watcher).zip(ns1).map(|(b, a)| b.saturating_sub(a) as f64 / 1e6);
    Ok(json!({
        "owners": CROWD,
        "fds_before": fds_before,
        "fds_with_crowd": fds,
        "idle_cpu_ms": idle_ms,
        "idle_window_s": window,
        "vmrss_kb": rss,
        "trials": trials,
        "all_dead_ms": all_dead_ms,
        "all_dead_cpu_ms": all_dead_cpu_ms,
    }))
}

pub(super) fn report(r: &mut Report, c: &Value) {
    let n = c["owners"].as_u64().unwrap_or(0);
    r.line(format!("  with {n} owners registered:"));
    let trials = c["trials"].as_array().cloned().unwrap_or_default();
    let s = Samples(trials.iter().filter_map(|t| t["containers_404_ms"].as_f64()).collect());
    let all = Samples(trials.iter().filter_map(|t| t["kill_to_404_ms"].as_f64()).collect());
    let v1 = r.figure(
        "watcher.crowd.containers_404.median",
        &format!("{n} owners registered: kill to the test's 3 containers answering 404, median"),
        "ms",
        s.len(),
        s.median(),
        Some((Op::AtMost, CONTAINERS_MEDIAN_MS)),
    );
    let v2 = r.figure(
        "watcher.crowd.containers_404.max",
        &format!("{n} owners registered: kill to the test's 3 containers answering 404, slowest"),
        "ms",
        s.len(),
        s.max(),
        Some((Op::AtMost, CONTAINERS_MAX_MS)),
    );
    r.line(format!(
        "    a SIGKILLed test among them: containers gone median {:.0} ms ({v1}), max {:.0} ms ({v2}); all 7 median {:.0} ms (n={})",
        s.median(),
        s.max(),
        all.median(),
        s.len()
    ));
    let window = c["idle_window_s"].as_f64().unwrap_or(f64::NAN);
    let cpu_ms = c["idle_cpu_ms"].as_f64().unwrap_or(f64::NAN);
    let pct = cpu_ms / 1000.0 / window * 100.0;
    r.figure("watcher.crowd.idle_cpu", &format!("watcher CPU with {n} live owners, % of one core"), "%", 1, pct, None);
    let rss = c["vmrss_kb"].as_f64().unwrap_or(f64::NAN);
    r.figure("watcher.crowd.vmrss", &format!("watcher VmRSS with {n} live owners"), "KiB", 1, rss, None);
    let (f0, f1) = (c["fds_before"].as_f64().unwrap_or(f64::NAN), c["fds_with_crowd"].as_f64().unwrap_or(f64::NAN));
    r.figure(
        "watcher.crowd.fds",
        &format!("watcher open files with {n} live owners (one pidfd each)"),
        "fds",
        1,
        f1,
        None,
    );
    let dead = c["all_dead_ms"].as_f64().unwrap_or(f64::NAN);
    r.figure(
        "watcher.crowd.all_dead",
        &format!("{n} owners killed at once, until the watcher forgot all"),
        "ms",
        1,
        dead,
        None,
    );
    r.line(format!(
        "    idle: CPU {pct:.3} % of one core, VmRSS {:.1} MiB, open files {f0} before, {f1} with them; all {n} killed at once: handled in {dead:.0} ms ({:.0} ms on CPU)",
        rss / 1024.0,
        c["all_dead_cpu_ms"].as_f64().unwrap_or(f64::NAN)
    ));
}
