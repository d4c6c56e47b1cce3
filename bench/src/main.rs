//! `make bench`: what the harness costs next to the Docker work it wraps, measured against
//! the real daemon. It reports figures and whether each target was met; it is not a test
//! and never fails because a target was missed (only when it cannot measure).
//!
//! Raw and harness samples are interleaved so that the daemon's drift (other users of a
//! shared daemon, page cache, log rotation) lands on both sides of every ratio.

mod raw;
mod stats;
mod watcher;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use bollard::query_parameters::{EventsOptions, RemoveImageOptions, TagImageOptions};
use docker_harness::{labels, ContainerSpec, NetworkSpec, TestContext, VolumeSpec};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use raw::{Kind, Raw, RUN_LABEL};
use stats::{Op, Report, Samples};

const CHILD_FLAG: &str = "--child-session-image";
const CHILD_START_AT: &str = "BENCH_CHILD_START_AT_MS";

/// Samples per path in the interleaved comparisons (1 and 5), after `WARMUP` rounds that
/// are thrown away: the first ones pay for connections, the session image and the
/// session's pre-test check.
const N: usize = 20;
const WARMUP: usize = 2;
/// Cleanup latency: the stop path waits out Docker's 10 s default each time, so its few
/// samples run at the same time, after the others: ten seconds of waiting, not thirty.
const N_CLEANUP: usize = 8;
const N_STOP: usize = 3;
const LEVELS: [usize; 4] = [1, 2, 4, 8];
/// What phase 3 may take; beyond it, fewer lifecycles per level (said in the output).
const THROUGHPUT_BUDGET: Duration = Duration::from_secs(60);
const PULL_PROCESSES: usize = 8;

struct Bench {
    raw: Raw,
    run_id: String,
    image: String,
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some(CHILD_FLAG) => return child(),
        Some(watcher::HOLDER_FLAG) => return watcher::holder_main(),
        Some(watcher::RUNNER_FLAG) => return watcher::runner_main(),
        _ => {}
    }
    // The bench measures; on a shared daemon it must not remove other sessions' orphans.
    // With no orphans present, `warn` makes exactly the Docker calls `clean` makes.
    if std::env::var_os("DOCKER_HARNESS_PREFLIGHT").is_none() {
        std::env::set_var("DOCKER_HARNESS_PREFLIGHT", "warn");
    }
    // Two workers, like the harness's own runtime, so neither side has more threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<()> {
    let wall = Instant::now();
    let started_at = unix_secs();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let docker = raw::connect().await?;
    let (version, api) = docker_harness::daemon_version().await?;
    progress(&format!(
        "Docker {version} (API {api}); run {run_id}; resolving the session image"
    ));
    let img = docker_harness::session_image()
        .await
        .context("resolve the session image")?;
    let session = docker_harness::session::current()?.id().to_string();
    let b = Bench {
        raw: Raw::new(docker, img.reference.clone(), run_id.clone(), session),
        run_id,
        image: img.reference,
    };

    let mut r = Report::default();
    r.line(format!(
        "docker-harness bench: Docker {version} (API {api}), image {}, {} cores",
        b.image,
        cores()
    ));
    let load_before = daemon_load(&b).await;
    let cpu_before = loadavg();
    r.line("times are wall-clock ms per operation; ratios are harness/raw; targets are goals, not tests");

    let mut raw_median_ms = f64::NAN;
    match lifecycle(&b, &mut r).await {
        Ok(m) => raw_median_ms = m,
        Err(e) => failed(&mut r, "1. container lifecycle", &e),
    }
    if let Err(e) = attribution(&b, &mut r).await {
        failed(&mut r, "1b. overhead attribution", &e);
    }
    if let Err(e) = cleanup_latency(&b, &mut r).await {
        failed(&mut r, "2. cleanup latency", &e);
    }
    if let Err(e) = throughput(&b, &mut r, raw_median_ms).await {
        failed(&mut r, "3. parallel throughput", &e);
    }
    if let Err(e) = networks_and_volumes(&b, &mut r).await {
        failed(&mut r, "5. networks and volumes", &e);
    }
    // Before the pulls: its test processes need the session image.
    if let Err(e) = watcher::phase(&b, &mut r).await {
        failed(&mut r, "6. watcher", &e);
    }
    // Last: it takes the session image away for a moment.
    if let Err(e) = pulls(&b, &mut r).await {
        failed(&mut r, "4. pulls per session", &e);
    }
    let left = leftovers(&b, &mut r).await;

    let load_after = daemon_load(&b).await;
    let wall_s = wall.elapsed().as_secs_f64();
    r.line(String::new());
    r.line(format!(
        "bench wall time (without the build): {wall_s:.1} s"
    ));
    r.line(format!(
        "other users of the daemon: {} running containers ({} of other harness sessions) at the start, {} ({}) at the end",
        load_before.0, load_before.1, load_after.0, load_after.1
    ));
    r.line(format!(
        "load average (1 min) at the start {cpu_before}, at the end {}",
        loadavg()
    ));
    if load_before.0 + load_after.0 > 0 {
        r.notes.push("the daemon had other work running: figures are noisier than on an idle one, the paired ratios less so".into());
    }
    let meta = json!({
        "run_id": b.run_id,
        "started_at_unix": started_at,
        "wall_seconds": wall_s,
        "docker_version": version,
        "docker_api": api,
        "image": b.image,
        "image_id": img.id,
        "cores": cores(),
        "samples_per_path": N,
        "warmup_rounds_discarded": WARMUP,
        "percentiles": "nearest rank over the kept samples",
        "preflight_policy": std::env::var("DOCKER_HARNESS_PREFLIGHT").unwrap_or_default(),
        "loadavg_1min": { "at_start": cpu_before, "at_end": loadavg() },
        "other_running_containers": { "at_start": load_before.0, "at_end": load_after.0 },
        "other_harness_containers": { "at_start": load_before.1, "at_end": load_after.1 },
    });
    let path = out_path();
    std::fs::create_dir_all(path.parent().expect("the output has a parent directory"))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&r.json(meta))?)?;
    println!("{}", r.table());
    println!("figures: target/bench/latest.json");
    left?;
    // A missed target is a figure; a phase that could not measure is a failed run.
    ensure!(
        r.unmeasured == 0,
        "{} phase(s) could not be measured; see the notes above",
        r.unmeasured
    );
    Ok(())
}

/// Containers running on the daemon that are not this run's, and how many of those belong
/// to other harness sessions: context for how noisy the figures can be.
async fn daemon_load(b: &Bench) -> (usize, usize) {
    use bollard::query_parameters::ListContainersOptions;
    let Ok(all) = b
        .raw
        .docker
        .list_containers(None::<ListContainersOptions>)
        .await
    else {
        return (0, 0);
    };
    let others: Vec<_> = all
        .iter()
        .filter(|c| c.labels.as_ref().and_then(|l| l.get(RUN_LABEL)) != Some(&b.run_id))
        .collect();
    let harness = others
        .iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::MANAGED))
        })
        .count();
    (others.len(), harness)
}

/// The machine's 1-minute load average: on 2 cores, a parallel build next door shows here
/// long before it shows as other containers.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn failed(r: &mut Report, phase: &str, e: &anyhow::Error) {
    r.line(format!("   could not measure: {e:#}"));
    r.notes
        .push(format!("{phase} could not be measured: {e:#}"));
    r.unmeasured += 1;
    progress(&format!("{phase} failed: {e:#}"));
}

fn progress(s: &str) {
    eprintln!("bench: {s}");
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn out_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target").join("bench").join("latest.json")
}

fn ms(v: f64) -> String {
    format!("{v:9.1}")
}

/// One lifecycle as a test writes it: a context (fresh unless `reused`), a `sleep`
/// container, exec `true`, explicit removal. A fresh context is dropped inside the timing,
/// as it is at the end of a test.
async fn harness_lifecycle(
    reused: Option<&TestContext>,
    run_id: &str,
    i: usize,
) -> Result<Duration> {
    let t = Instant::now();
    let fresh = match reused {
        Some(_) => None,
        None => Some(TestContext::named("bench-lifecycle")?),
    };
    let ctx = reused.or(fresh.as_ref()).expect("one of the two is set");
    let spec = ContainerSpec::new(format!("c{i}"))
        .with_cmd(["sleep", "3600"])
        .with_label(RUN_LABEL, run_id);
    let guard = ctx.container(spec).await?;
    let out = guard.exec(["true"]).await?;
    guard.remove().await?;
    drop(fresh);
    let d = t.elapsed();
    ensure!(
        out.exit_code == 0,
        "`true` exited with {} in a harness container",
        out.exit_code
    );
    Ok(d)
}

/// The order of three paths in a round: all six permutations in turn, so that each path
/// runs first, middle and last, and after each of the others, equally often. (A plain
/// rotation would always put the same path after the same one, and some removals leave the
/// daemon busy for a moment: a network's teardown slowed whatever came next.)
fn order(round: usize) -> [usize; 3] {
    const PERMS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [1, 2, 0],
        [2, 0, 1],
        [0, 2, 1],
        [2, 1, 0],
        [1, 0, 2],
    ];
    PERMS[round % PERMS.len()]
}

/// The median of per-round harness/raw ratios: each pair ran back to back, so what the
/// daemon was doing at the time cancels out better than in a ratio of medians.
fn paired_row(r: &mut Report, id: &str, what: &str, h: &Samples, raw: &Samples) {
    let ratios = Samples(h.0.iter().zip(&raw.0).map(|(a, b)| a / b).collect());
    let m = ratios.median();
    r.figure(id, what, "ratio", ratios.len(), m, None);
    r.line(format!("{:<36}{:>9.3}", format!("  paired {id}"), m));
}

fn ratio_row(
    r: &mut Report,
    id: &str,
    what: &str,
    h: &Samples,
    raw: &Samples,
    target: Option<(Op, f64)>,
) -> f64 {
    let ratio = h.median() / raw.median();
    let verdict = r.figure(id, what, "ratio", h.len().min(raw.len()), ratio, target);
    r.line(
        format!("{:<36}{:>9.3}   {verdict}", format!("  ratio {id}"), ratio)
            .trim_end()
            .to_string(),
    );
    ratio
}

fn dist_rows(r: &mut Report, id: &str, label: &str, what: &str, s: &Samples) {
    r.series(id, s);
    r.figure(
        &format!("{id}.median"),
        &format!("{what}: median"),
        "ms",
        s.len(),
        s.median(),
        None,
    );
    r.figure(
        &format!("{id}.p95"),
        &format!("{what}: 95th percentile"),
        "ms",
        s.len(),
        s.pct(95.0),
        None,
    );
    r.line(format!(
        "{label:<36}{}{}{:>7}",
        ms(s.median()),
        ms(s.pct(95.0)),
        s.len()
    ));
}

/// 1. Container lifecycle, raw against the harness, interleaved. Returns the raw median.
async fn lifecycle(b: &Bench, r: &mut Report) -> Result<f64> {
    progress(&format!("1. container lifecycle: {WARMUP} warm-up + {N} rounds of raw, harness, harness (reused context)"));
    r.section(&format!(
        "1. container lifecycle: create, start, exec `true`, force-remove, inspect until 404 (interleaved, {WARMUP} warm-up rounds dropped)"
    ));
    r.line(format!(
        "{:<36}{:>9}{:>9}{:>7}",
        "path", "median", "p95", "n"
    ));
    let reused = TestContext::named("bench-lifecycle-reused")?;
    let (mut raw, mut fresh, mut kept) =
        (Samples::default(), Samples::default(), Samples::default());
    for round in 0..WARMUP + N {
        for k in order(round) {
            let d = match k {
                0 => (b.raw.lifecycle().await?, &mut raw),
                1 => (harness_lifecycle(None, &b.run_id, round).await?, &mut fresh),
                _ => (
                    harness_lifecycle(Some(&reused), &b.run_id, round).await?,
                    &mut kept,
                ),
            };
            if round >= WARMUP {
                d.1.push(d.0);
            }
        }
    }
    reused.cleanup().await?;
    let what = "container lifecycle (create, start, exec true, force-remove, 404)";
    dist_rows(
        r,
        "lifecycle.raw",
        "raw bollard",
        &format!("{what}, raw bollard"),
        &raw,
    );
    dist_rows(
        r,
        "lifecycle.harness",
        "harness, a context per lifecycle",
        &format!("{what}, harness with a fresh TestContext each time (as a test does)"),
        &fresh,
    );
    dist_rows(
        r,
        "lifecycle.harness_reused_ctx",
        "harness, one context for all",
        &format!("{what}, harness with one TestContext reused"),
        &kept,
    );
    ratio_row(
        r,
        "lifecycle.ratio",
        "lifecycle median, harness (fresh context) / raw",
        &fresh,
        &raw,
        Some((Op::AtMost, 1.05)),
    );
    ratio_row(
        r,
        "lifecycle.ratio_p95",
        "lifecycle p95, harness (fresh context) / raw",
        &Samples(vec![fresh.pct(95.0)]),
        &Samples(vec![raw.pct(95.0)]),
        None,
    );
    ratio_row(
        r,
        "lifecycle.ratio_reused_ctx",
        "lifecycle median, harness (reused context) / raw",
        &kept,
        &raw,
        Some((Op::AtMost, 1.05)),
    );
    paired_row(
        r,
        "lifecycle.paired_ratio",
        "median over rounds of harness (fresh context) / raw, same round",
        &fresh,
        &raw,
    );
    Ok(raw.median())
}

/// 1b. The Docker calls and local work the harness adds to a lifecycle, timed on their own,
/// so that the ratio above can be explained and not only stated.
async fn attribution(b: &Bench, r: &mut Report) -> Result<()> {
    progress("1b. overhead attribution");
    r.section("1b. what the harness adds per container, timed alone (interleaved)");
    r.line(format!(
        "{:<36}{:>9}{:>9}{:>7}",
        "extra work", "median", "p95", "n"
    ));
    let (mut lists, mut inspect, mut lookup) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..N {
        let t = Instant::now();
        b.raw.context_check_lists("bench-lifecycle").await?;
        lists.push(t.elapsed());
        let t = Instant::now();
        b.raw
            .docker
            .inspect_image(&b.image)
            .await
            .context("inspect the session image")?;
        inspect.push(t.elapsed());
        let t = Instant::now();
        docker_harness::session_image().await?;
        lookup.push(t.elapsed());
    }
    dist_rows(
        r,
        "overhead.context_check",
        "per context: 3 label-filtered lists",
        "the per-context leftover check: containers (all), networks and volumes listed by label, concurrently; once per TestContext",
        &lists,
    );
    dist_rows(
        r,
        "overhead.image_verify",
        "per container: inspect image",
        "the session-image check before each container: one image inspect",
        &inspect,
    );
    dist_rows(
        r,
        "overhead.session_lookup",
        "per container: session record read",
        "session_image() once resolved: a hop to the harness runtime and a read of the session's state file, no Docker call",
        &lookup,
    );
    let per_ctx = lists.median() + inspect.median() + lookup.median();
    let per_reuse = inspect.median() + lookup.median();
    r.figure(
        "overhead.expected_fresh",
        "sum of the medians above: expected extra ms per lifecycle with a fresh context",
        "ms",
        N,
        per_ctx,
        None,
    );
    r.figure(
        "overhead.expected_reused",
        "inspect + lookup medians: expected extra ms per lifecycle with a reused context",
        "ms",
        N,
        per_reuse,
        None,
    );
    r.line(format!(
        "{:<36}{}",
        "  expected extra, fresh context",
        ms(per_ctx)
    ));
    r.line(format!(
        "{:<36}{}",
        "  expected extra, reused context",
        ms(per_reuse)
    ));
    Ok(())
}

/// 2. Removing a container whose PID 1 ignores SIGTERM.
async fn cleanup_latency(b: &Bench, r: &mut Report) -> Result<()> {
    progress(&format!("2. cleanup latency: {N_CLEANUP} harness, {N_CLEANUP} raw force, {N_STOP} stop-then-remove (~10 s, together)"));
    r.section("2. cleanup latency of a running `sleep 3600` (PID 1 ignores SIGTERM), from the call to the 404");
    r.line(format!(
        "{:<36}{:>9}{:>9}{:>7}",
        "path", "median", "p95", "n"
    ));
    let ctx = TestContext::named("bench-cleanup")?;
    let settle = Duration::from_millis(200);
    let (mut harness, mut force, mut stop) =
        (Samples::default(), Samples::default(), Samples::default());
    for i in 0..N_CLEANUP {
        let g = ctx
            .container(
                ContainerSpec::new(format!("c{i}"))
                    .with_cmd(["sleep", "3600"])
                    .with_label(RUN_LABEL, &b.run_id),
            )
            .await?;
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        g.remove().await?;
        harness.push(t.elapsed());

        let id = b.raw.container_started("bench-raw-cleanup").await?;
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        b.raw.remove_confirmed(Kind::Container, &id).await?;
        force.push(t.elapsed());
    }
    let mut ids = Vec::new();
    for _ in 0..N_STOP {
        match b.raw.container_started("bench-raw-cleanup").await {
            Ok(id) => ids.push(id),
            Err(e) => {
                for id in &ids {
                    let _ = b.raw.remove_confirmed(Kind::Container, id).await;
                }
                return Err(e);
            }
        }
    }
    tokio::time::sleep(settle).await;
    let stops = ids.iter().map(|id| async move {
        let t = Instant::now();
        let res = b.raw.stop_then_remove(id).await;
        if res.is_err() {
            let _ = b.raw.remove_confirmed(Kind::Container, id).await;
        }
        res.map(|()| t.elapsed())
    });
    for d in futures_util::future::join_all(stops).await {
        stop.push(d?);
    }
    ctx.cleanup().await?;
    dist_rows(
        r,
        "cleanup.harness",
        "harness guard.remove()",
        "removal of a running sleep container through guard.remove()",
        &harness,
    );
    dist_rows(
        r,
        "cleanup.raw_force",
        "raw force-remove",
        "raw remove_container(force, v) then inspect until 404",
        &force,
    );
    dist_rows(r, "cleanup.stop_then_remove", "raw stop (default 10 s) + remove", "raw stop_container with the default timeout, then remove and inspect until 404 (the samples run at the same time)", &stop);
    let v = r.figure(
        "cleanup.harness.max",
        "slowest harness removal of a SIGTERM-ignoring container",
        "s",
        harness.len(),
        harness.max() / 1000.0,
        Some((Op::Below, 0.5)),
    );
    r.line(format!(
        "{:<36}{:>9.3}   {v}",
        "  harness slowest, s",
        harness.max() / 1000.0
    ));
    let speedup = stop.median() / harness.median();
    r.figure(
        "cleanup.speedup",
        "stop-then-remove median / harness removal median",
        "ratio",
        stop.len(),
        speedup,
        None,
    );
    r.line(format!(
        "{:<36}{:>9.1}x",
        "  harness faster than stop+remove", speedup
    ));
    r.line(format!("  only {N_STOP} stop-then-remove samples, run at the same time: each waits out the 10 s stop timeout"));
    Ok(())
}

/// Runs `n` lifecycles with at most `c` at a time, each as its own task; returns the wall time.
async fn batch<F, Fut>(n: usize, c: usize, f: F) -> Result<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Duration>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(c));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i);
        tasks.push(tokio::spawn(async move {
            let res = fut.await;
            drop(permit);
            res
        }));
    }
    // Every task is awaited, even after a failure, so none is still creating when we return.
    let mut first_err = None;
    for task in tasks {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(e.into())),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(t.elapsed()),
    }
}

/// 3. Lifecycles per second at several concurrency levels.
async fn throughput(b: &Bench, r: &mut Report, raw_median_ms: f64) -> Result<()> {
    // Budgeted from the measured lifecycle: 2 paths, assuming the speedups stay under ~1.5x
    // at 2 and ~2x at 4 and 8 on a 2-core machine.
    let estimate = |n: usize| {
        Duration::from_secs_f64(
            n as f64 * 2.0 * (1.0 + 1.0 / 1.5 + 0.5 + 0.5) * raw_median_ms / 1000.0,
        )
    };
    let n = if raw_median_ms.is_finite() && estimate(32) <= THROUGHPUT_BUDGET {
        32
    } else {
        16
    };
    progress(&format!(
        "3. parallel throughput: {n} lifecycles per level and path, concurrency {LEVELS:?}"
    ));
    r.section(&format!("3. parallel throughput: {n} lifecycles per level and path, each lifecycle a task (raw and harness alternate going first)"));
    if n < 32 {
        let line = format!(
            "  reduced from 32 to {n} lifecycles per level: 32 were estimated at {:.0} s, over the {} s budget",
            estimate(32).as_secs_f64(),
            THROUGHPUT_BUDGET.as_secs()
        );
        r.line(line.clone());
        r.notes.push(line.trim().to_string());
    }
    r.line(format!(
        "{:<12}{:>12}{:>12}{:>9}{:>11}{:>11}",
        "concurrency", "raw /s", "harness /s", "ratio", "raw x c1", "harn x c1"
    ));
    let (mut raw_c1, mut h_c1) = (f64::NAN, f64::NAN);
    for (k, &c) in LEVELS.iter().enumerate() {
        let raw_run = || {
            let raw = b.raw.clone();
            batch(n, c, move |_| {
                let raw = raw.clone();
                async move { raw.lifecycle().await }
            })
        };
        let harness_run = || {
            let run_id = b.run_id.clone();
            batch(n, c, move |i| {
                let run_id = run_id.clone();
                async move { harness_lifecycle(None, &run_id, i).await }
            })
        };
        let (raw_t, h_t) = if k % 2 == 0 {
            let a = raw_run().await?;
            (a, harness_run().await?)
        } else {
            let h = harness_run().await?;
            (raw_run().await?, h)
        };
        let raw_tp = n as f64 / raw_t.as_secs_f64();
        let h_tp = n as f64 / h_t.as_secs_f64();
        if c == 1 {
            (raw_c1, h_c1) = (raw_tp, h_tp);
        }
        let ratio = h_tp / raw_tp;
        r.figure(
            &format!("throughput.c{c}.raw"),
            &format!("raw lifecycles per second at concurrency {c}"),
            "lifecycles/s",
            n,
            raw_tp,
            None,
        );
        r.figure(
            &format!("throughput.c{c}.harness"),
            &format!("harness lifecycles per second at concurrency {c} (a fresh TestContext each)"),
            "lifecycles/s",
            n,
            h_tp,
            None,
        );
        let v = r.figure(
            &format!("throughput.c{c}.ratio"),
            &format!("harness/raw throughput at concurrency {c}"),
            "ratio",
            n,
            ratio,
            Some((Op::AtLeast, 0.95)),
        );
        r.figure(
            &format!("throughput.c{c}.raw_speedup"),
            &format!("raw throughput at concurrency {c} over concurrency 1"),
            "ratio",
            n,
            raw_tp / raw_c1,
            None,
        );
        r.figure(
            &format!("throughput.c{c}.harness_speedup"),
            &format!("harness throughput at concurrency {c} over concurrency 1"),
            "ratio",
            n,
            h_tp / h_c1,
            None,
        );
        r.line(format!(
            "{c:<12}{raw_tp:>12.2}{h_tp:>12.2}{ratio:>9.3}{:>11.2}{:>11.2}   {v}",
            raw_tp / raw_c1,
            h_tp / h_c1
        ));
    }
    Ok(())
}

/// 5. Network and volume create-and-remove, raw against the harness, interleaved.
async fn networks_and_volumes(b: &Bench, r: &mut Report) -> Result<()> {
    progress(&format!(
        "5. networks and volumes: {WARMUP} warm-up + {N} rounds each"
    ));
    r.section(&format!("5. network and volume: create, remove, inspect until 404 (interleaved, {WARMUP} warm-up rounds dropped)"));
    r.line(format!(
        "{:<36}{:>9}{:>9}{:>7}",
        "path", "median", "p95", "n"
    ));
    let reused = TestContext::named("bench-nv-reused")?;
    let run = &b.run_id;
    // One kind at a time: a network's removal leaves the daemon busy for a moment, which
    // would land on whichever volume operation came next.
    for kind in ["network", "volume"] {
        let mut s = [Samples::default(), Samples::default(), Samples::default()];
        for round in 0..WARMUP + N {
            for k in order(round) {
                let d = match (kind, k) {
                    ("network", 0) => b.raw.network_cycle().await?,
                    ("network", 1) => network_cycle(None, run, round).await?,
                    ("network", _) => network_cycle(Some(&reused), run, round).await?,
                    (_, 0) => b.raw.volume_cycle().await?,
                    (_, 1) => volume_cycle(None, run, round).await?,
                    _ => volume_cycle(Some(&reused), run, round).await?,
                };
                if round >= WARMUP {
                    s[k].push(d);
                }
            }
        }
        let [raw, h, hr] = s;
        dist_rows(
            r,
            &format!("{kind}.raw"),
            &format!("{kind}, raw bollard"),
            &format!("{kind} create and remove, raw bollard"),
            &raw,
        );
        dist_rows(
            r,
            &format!("{kind}.harness"),
            &format!("{kind}, harness (context each)"),
            &format!("{kind} create and remove through a fresh TestContext"),
            &h,
        );
        dist_rows(
            r,
            &format!("{kind}.harness_reused_ctx"),
            &format!("{kind}, harness (one context)"),
            &format!("{kind} create and remove through one reused TestContext"),
            &hr,
        );
        ratio_row(
            r,
            &format!("{kind}.ratio"),
            &format!("{kind} median, harness (fresh context) / raw"),
            &h,
            &raw,
            Some((Op::AtMost, 1.05)),
        );
        ratio_row(
            r,
            &format!("{kind}.ratio_reused_ctx"),
            &format!("{kind} median, harness (reused context) / raw"),
            &hr,
            &raw,
            Some((Op::AtMost, 1.05)),
        );
        paired_row(
            r,
            &format!("{kind}.paired_ratio"),
            &format!("median over rounds of {kind} harness (fresh context) / raw, same round"),
            &h,
            &raw,
        );
    }
    reused.cleanup().await?;
    Ok(())
}

async fn network_cycle(reused: Option<&TestContext>, run_id: &str, i: usize) -> Result<Duration> {
    let t = Instant::now();
    let fresh = match reused {
        Some(_) => None,
        None => Some(TestContext::named("bench-network")?),
    };
    let ctx = reused.or(fresh.as_ref()).expect("one of the two is set");
    let g = ctx
        .create_network(NetworkSpec::new(format!("n{i}")).with_label(RUN_LABEL, run_id))
        .await?;
    g.remove().await?;
    drop(fresh);
    Ok(t.elapsed())
}

async fn volume_cycle(reused: Option<&TestContext>, run_id: &str, i: usize) -> Result<Duration> {
    let t = Instant::now();
    let fresh = match reused {
        Some(_) => None,
        None => Some(TestContext::named("bench-volume")?),
    };
    let ctx = reused.or(fresh.as_ref()).expect("one of the two is set");
    let g = ctx
        .create_volume(VolumeSpec::new(format!("v{i}")).with_label(RUN_LABEL, run_id))
        .await?;
    g.remove().await?;
    drop(fresh);
    Ok(t.elapsed())
}

/// Child mode: wait for the common start instant, resolve the session image once, print
/// one JSON line. Nothing else: the parent counts.
fn child() -> Result<()> {
    let start_at: u128 = std::env::var(CHILD_START_AT)
        .context(CHILD_START_AT)?
        .parse()?;
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    };
    if let Some(wait) = start_at.checked_sub(now()) {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    let began = now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    let res = rt.block_on(docker_harness::session_image());
    let took = t.elapsed().as_secs_f64() * 1000.0;
    let line = match res {
        Ok(img) => {
            json!({ "ok": true, "began_ms": began, "took_ms": took, "reference": img.reference, "id": img.id })
        }
        Err(e) => {
            json!({ "ok": false, "began_ms": began, "took_ms": took, "error": e.to_string() })
        }
    };
    println!("{line}");
    Ok(())
}

/// 4. Pulls per session: many processes of one session, a cold image cache, one pull.
async fn pulls(b: &Bench, r: &mut Report) -> Result<()> {
    r.section(&format!("4. pulls per session: {PULL_PROCESSES} processes of one session call session_image() at once, image tag removed first"));
    let docker = &b.raw.docker;
    let skip = |r: &mut Report, why: String| {
        r.line(format!("  skipped: {why}"));
        r.notes.push(format!("4. pulls per session skipped: {why}"));
        Ok(())
    };
    let mirror = std::env::var("DOCKER_HARNESS_REGISTRY_MIRROR")
        .ok()
        .filter(|m| !m.is_empty());
    let Some(mirror) = mirror.filter(|_| b.image.starts_with("docker-harness-standin:")) else {
        return skip(r, format!("the session image is {}, not the offline stand-in served by a mirror, so it is not the bench's to remove", b.image));
    };
    let (repo, tag) = b
        .image
        .rsplit_once(':')
        .context("the session image has a tag")?;
    if !mirror_serves(&mirror, repo, tag).await {
        return skip(
            r,
            format!("the mirror {mirror} does not serve library/{}", b.image),
        );
    }
    let Some(before) = docker.inspect_image(&b.image).await.ok().and_then(|i| i.id) else {
        return skip(r, format!("{} is not present to begin with", b.image));
    };
    // The daemon is shared and the loopback registry is too: the run that started it stops
    // it when that run ends, perhaps in the middle of this one. So the image stays under a
    // tag of the bench's own while the session's tag is away, and can always be put back
    // without a registry. The children still have to pull (the harness looks the session
    // tag up), but only the manifest and config travel: the layers are present.
    let backup = format!("docker-harness-bench-keep:{}", b.run_id);
    let (brepo, btag) = backup.rsplit_once(':').expect("a literal tag");
    docker
        .tag_image(
            &b.image,
            Some(TagImageOptions {
                repo: Some(brepo.into()),
                tag: Some(btag.into()),
            }),
        )
        .await
        .context("keep the session image under the bench's tag")?;
    let untag = RemoveImageOptions {
        force: false,
        noprune: true,
        ..Default::default()
    };
    let outcome = match docker
        .remove_image(&b.image, Some(untag.clone()), None)
        .await
    {
        Ok(_) => pulls_measured(b, r, &format!("{mirror}/library/{}", b.image)).await,
        Err(e) => Err(e).context("untag the session image"),
    };
    if outcome.is_ok() && !mirror_serves(&mirror, repo, tag).await {
        r.notes.push(format!("4. the mirror {mirror} stopped answering during the phase (the run that started the loopback registry may have ended)"));
    }
    // Whatever happened, the session tag comes back before the bench's own tag goes.
    if docker.inspect_image(&b.image).await.is_err() {
        docker
            .tag_image(
                &backup,
                Some(TagImageOptions {
                    repo: Some(repo.into()),
                    tag: Some(tag.into()),
                }),
            )
            .await
            .context("put the session image back")?;
        r.notes.push(format!(
            "4. {} was put back from the bench's own tag: the children did not pull it",
            b.image
        ));
    }
    docker
        .remove_image(&backup, Some(untag), None)
        .await
        .context("remove the bench's own tag")?;
    let now = docker.inspect_image(&b.image).await.ok().and_then(|i| i.id);
    if now.as_deref() != Some(before.as_str()) {
        r.notes.push(format!(
            "4. {} is now {now:?}; before the bench it was {before}",
            b.image
        ));
    }
    outcome
}

/// Whether the registry at `mirror` answers 200 for the manifest, asked over plain HTTP as
/// scripts/lib.sh does.
async fn mirror_serves(mirror: &str, repo: &str, tag: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(mirror).await?;
        let req = format!(
            "HEAD /v2/library/{repo}/manifests/{tag} HTTP/1.0\r\nHost: {mirror}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let n = conn.read(&mut head).await?;
        Ok::<_, std::io::Error>(
            String::from_utf8_lossy(&head[..n])
                .split_whitespace()
                .nth(1)
                == Some("200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ask).await,
        Ok(Ok(true))
    )
}

async fn pulls_measured(b: &Bench, r: &mut Report, source: &str) -> Result<()> {
    let docker = &b.raw.docker;
    let since = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let opts = EventsOptions {
        // From before the children start, so a pull is seen even if the stream connects late.
        since: Some(format!("{}.{:09}", since.as_secs(), since.subsec_nanos())),
        until: None,
        filters: Some(HashMap::from([
            ("type".to_string(), vec!["image".to_string()]),
            ("event".to_string(), vec!["pull".to_string()]),
        ])),
    };
    let mut stream = docker.events(Some(opts));
    let sink = events.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            if ev.action.as_deref() == Some("pull") {
                let id = ev.actor.and_then(|a| a.id).unwrap_or_default();
                if let Ok(mut v) = sink.lock() {
                    v.push(id);
                }
            }
        }
    });

    let session = format!("bench-pulls-{}", b.run_id);
    let state_root = out_path().with_file_name(format!("state-{}", b.run_id));
    std::fs::create_dir_all(&state_root)?;
    let start_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() + 500;
    let exe = std::env::current_exe()?;
    progress(&format!(
        "4. pulls per session: {PULL_PROCESSES} child processes, session {session}"
    ));
    let t = Instant::now();
    let mut children = Vec::new();
    for _ in 0..PULL_PROCESSES {
        let child = Command::new(&exe)
            .arg(CHILD_FLAG)
            .env("DOCKER_HARNESS_SESSION", &session)
            .env("DOCKER_HARNESS_STATE_DIR", &state_root)
            .env(CHILD_START_AT, start_at.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start a child process")?;
        children.push(tokio::task::spawn_blocking(move || {
            child.wait_with_output()
        }));
    }
    let mut outs = Vec::new();
    for c in children {
        outs.push(c.await??);
    }
    let wall = t.elapsed();
    // Events reach the stream a moment after the call that caused them returns.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    watcher.abort();
    let seen = events.lock().map(|v| v.clone()).unwrap_or_default();
    let records = docker_harness::pull_records(&state_root.join("sessions").join(&session));
    let _ = std::fs::remove_dir_all(&state_root);

    let mut ok = 0;
    let (mut began, mut took) = (Vec::new(), Samples::default());
    for o in &outs {
        let line = String::from_utf8_lossy(&o.stdout);
        let v: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
        if v["ok"] == json!(true) {
            ok += 1;
        } else {
            let err = v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&o.stderr).trim().to_string());
            r.notes.push(format!("4. a child process failed: {err}"));
        }
        if let Some(x) = v["began_ms"].as_u64() {
            began.push(x);
        }
        if let Some(x) = v["took_ms"].as_f64() {
            took.0.push(x);
        }
    }
    let spread = began
        .iter()
        .max()
        .zip(began.iter().min())
        .map(|(a, b)| a - b)
        .unwrap_or(0);
    let ours = seen
        .iter()
        .filter(|id| id.as_str() == source || id.contains("docker-harness-standin"))
        .count();
    let others = seen.len() - ours;

    let v_ev = r.figure(
        "pulls.events",
        "pulls of the session image seen in docker events while the children ran",
        "pulls",
        PULL_PROCESSES,
        ours as f64,
        Some((Op::Exactly, 1.0)),
    );
    let v_rec = r.figure(
        "pulls.records",
        "pulls in the session's record (pull_records)",
        "pulls",
        PULL_PROCESSES,
        records.len() as f64,
        Some((Op::Exactly, 1.0)),
    );
    r.figure(
        "pulls.children_ok",
        "child processes whose session_image() succeeded",
        "processes",
        PULL_PROCESSES,
        ok as f64,
        Some((Op::Exactly, PULL_PROCESSES as f64)),
    );
    r.figure(
        "pulls.start_spread",
        "spread of the children's start instants",
        "ms",
        began.len(),
        spread as f64,
        None,
    );
    r.figure(
        "pulls.wall",
        "from starting the children to the last one exiting (includes a 500 ms start barrier)",
        "ms",
        PULL_PROCESSES,
        wall.as_secs_f64() * 1000.0,
        None,
    );
    r.series("pulls.session_image_ms", &took);
    r.figure(
        "pulls.session_image.max",
        "slowest session_image() call among the children",
        "ms",
        took.len(),
        took.max(),
        None,
    );
    r.line(format!(
        "{:<48}{:>6}   {v_ev}",
        "pulls seen in docker events (type=image, pull)", ours
    ));
    r.line(format!(
        "{:<48}{:>6}   {v_rec}",
        "pulls in the session's pull record",
        records.len()
    ));
    r.line(format!(
        "{:<48}{:>6}",
        "children that got the image",
        format!("{ok}/{PULL_PROCESSES}")
    ));
    r.line(format!(
        "{:<48}{:>6}",
        "children started within, ms", spread
    ));
    r.line(format!(
        "{:<48}{:>6.0}",
        "slowest session_image() in a child, ms",
        took.max()
    ));
    if let Some(rec) = records.first() {
        r.line(format!(
            "  the one pull: {} from {} in {} ms by pid {}",
            rec.image, rec.source, rec.duration_ms, rec.pid
        ));
    }
    if others > 0 {
        r.notes.push(format!("4. {others} pull event(s) of other images happened meanwhile (another user of the daemon); not counted"));
    }
    Ok(())
}

/// Removes whatever of this run is still there (after a failed phase), then checks that
/// nothing of this run or of this process is left.
async fn leftovers(b: &Bench, r: &mut Report) -> Result<()> {
    r.section("leftovers");
    let mut swept = 0;
    for (kind, id) in b.raw.own().await? {
        if kind == Kind::Container {
            b.raw.remove_confirmed(kind, &id).await?;
            swept += 1;
        }
    }
    for (kind, id) in b.raw.own().await? {
        b.raw.remove_confirmed(kind, &id).await?;
        swept += 1;
    }
    let run_left = b.raw.own().await?.len();
    let mine = b
        .raw
        .labelled(format!("{}={}", labels::OWNER, labels::Owner::current()))
        .await?
        .len();
    r.figure(
        "leftovers.swept",
        "resources of this run the final sweep had to remove (0 when every phase cleaned up)",
        "resources",
        1,
        swept as f64,
        Some((Op::Exactly, 0.0)),
    );
    r.figure(
        "leftovers.remaining",
        "resources of this run or this process still on the daemon at the end",
        "resources",
        1,
        (run_left + mine) as f64,
        Some((Op::Exactly, 0.0)),
    );
    r.line(format!("removed by the final sweep: {swept}; still present (run label or this process's owner label): {}", run_left + mine));
    if run_left + mine > 0 {
        bail!(
            "{} resource(s) of this run are still on the daemon",
            run_left + mine
        );
    }
    Ok(())
}
