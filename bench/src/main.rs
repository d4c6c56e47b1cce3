//! `make bench`: what the harness costs next to the Docker work it wraps, measured against
//! the real daemon. It reports figures and whether each target was met; it is not a test
//! and never fails because a target was missed (only when it cannot measure).
//!
//! Raw and harness samples are interleaved so that the daemon's drift (other users of a
//! shared daemon, page cache, log rotation) lands on both sides of every ratio.

mod phases;
mod raw;
mod stats;
mod watcher;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use docker_harness::labels;
use serde_json::json;

use phases::{N, WARMUP};
use raw::{Raw, RUN_LABEL};
use stats::Report;

struct Bench {
    raw: Raw,
    run_id: String,
    image: String,
}

/// This binary's path, read once at the start: the suite phase's `cargo nextest` build
/// re-links it in place (its test target builds it with the dev-dependencies' features),
/// after which the kernel names the running one "(deleted)" and children could not start.
static OWN_EXE: std::sync::OnceLock<std::result::Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();

pub(crate) fn own_exe() -> Result<std::path::PathBuf> {
    let exe = OWN_EXE.get_or_init(|| std::env::current_exe().map_err(|e| e.to_string()));
    exe.clone().map_err(|e| anyhow::anyhow!("this binary's path: {e}"))
}

fn main() -> Result<()> {
    let _ = own_exe();
    match std::env::args().nth(1).as_deref() {
        Some(phases::pulls::CHILD_FLAG) => return phases::pulls::child_main(),
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
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> Result<()> {
    let wall = Instant::now();
    let started_at = unix_secs();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let docker = raw::connect().await?;
    let (version, api) = docker_harness::daemon_version().await?;
    progress(&format!("Docker {version} (API {api}); run {run_id}; resolving the session image"));
    let img = docker_harness::session_image().await.context("resolve the session image")?;
    let session = docker_harness::session::current()?.id().to_string();
    let b =
        Bench { raw: Raw::new(docker, img.reference.clone(), run_id.clone(), session), run_id, image: img.reference };

    let mut r = Report::default();
    r.line(format!("docker-harness bench: Docker {version} (API {api}), image {}, {} cores", b.image, cores()));
    let load_before = daemon_load(&b).await;
    let cpu_before = loadavg();
    r.line("times are wall-clock ms per operation; ratios are harness/raw; targets are goals, not tests");

    let mut raw_median_ms = f64::NAN;
    if wanted("lifecycle") {
        match phases::lifecycle::phase(&b, &mut r).await {
            Ok(m) => raw_median_ms = m,
            Err(e) => failed(&mut r, "1. container lifecycle", &e),
        }
    }
    if !wanted("attribution") {
    } else if let Err(e) = phases::attribution::phase(&b, &mut r).await {
        failed(&mut r, "1b. overhead attribution", &e);
    }
    if !wanted("cleanup") {
    } else if let Err(e) = phases::cleanup::phase(&b, &mut r).await {
        failed(&mut r, "2. cleanup latency", &e);
    }
    if !wanted("teardown") {
    } else if let Err(e) = phases::teardown::phase(&b, &mut r).await {
        failed(&mut r, "2b. teardown of a whole test", &e);
    }
    if !wanted("throughput") {
    } else if let Err(e) = phases::throughput::phase(&b, &mut r, raw_median_ms).await {
        failed(&mut r, "3. parallel throughput", &e);
    }
    if !wanted("networks_volumes") {
    } else if let Err(e) = phases::networks_volumes::phase(&b, &mut r).await {
        failed(&mut r, "5. networks and volumes", &e);
    }
    if !wanted("suite") {
    } else if let Err(e) = phases::suite::phase(&b, &mut r).await {
        failed(&mut r, "7. suite under nextest", &e);
    }
    // Before the pulls: its test processes need the session image.
    if !wanted("watcher") {
    } else if let Err(e) = watcher::phase(&b, &mut r).await {
        failed(&mut r, "6. watcher", &e);
    }
    // Last: it takes the session image away for a moment.
    if !wanted("pulls") {
    } else if let Err(e) = phases::pulls::phase(&b, &mut r).await {
        failed(&mut r, "4. pulls per session", &e);
    }
    let left = phases::leftovers::phase(&b, &mut r).await;

    let load_after = daemon_load(&b).await;
    let wall_s = wall.elapsed().as_secs_f64();
    r.line(String::new());
    r.line(format!("bench wall time (without the build): {wall_s:.1} s"));
    r.line(format!(
        "other users of the daemon: {} running containers ({} of other harness sessions) at the start, {} ({}) at the end",
        load_before.0, load_before.1, load_after.0, load_after.1
    ));
    r.line(format!("load average (1 min) at the start {cpu_before}, at the end {}", loadavg()));
    if load_before.0 + load_after.0 > 0 {
        r.notes.push(
            "the daemon had other work running: figures are noisier than on an idle one, the paired ratios less so"
                .into(),
        );
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
    std::fs::write(&path, serde_json::to_vec_pretty(&r.json(&meta))?)?;
    println!("{}", r.table());
    println!("figures: target/bench/latest.json");
    left?;
    // A missed target is a figure; a phase that could not measure is a failed run.
    ensure!(r.unmeasured == 0, "{} phase(s) could not be measured; see the notes above", r.unmeasured);
    Ok(())
}

/// Containers running on the daemon that are not this run's, and how many of those belong
/// to other harness sessions: context for how noisy the figures can be.
async fn daemon_load(b: &Bench) -> (usize, usize) {
    use bollard::query_parameters::ListContainersOptions;
    let Ok(all) = b.raw.docker.list_containers(None::<ListContainersOptions>).await else {
        return (0, 0);
    };
    let others: Vec<_> =
        all.iter().filter(|c| c.labels.as_ref().and_then(|l| l.get(RUN_LABEL)) != Some(&b.run_id)).collect();
    let harness = others.iter().filter(|c| c.labels.as_ref().is_some_and(|l| l.contains_key(labels::MANAGED))).count();
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

/// Whether a phase runs: all of them unless `BENCH_PHASES` names some (comma-separated:
/// lifecycle, attribution, cleanup, teardown, throughput, networks_volumes, suite, watcher, pulls).
fn wanted(phase: &str) -> bool {
    std::env::var("BENCH_PHASES").map_or(true, |v| v.split(',').any(|p| p.trim() == phase))
}

fn failed(r: &mut Report, phase: &str, e: &anyhow::Error) {
    r.line(format!("   could not measure: {e:#}"));
    r.notes.push(format!("{phase} could not be measured: {e:#}"));
    r.unmeasured += 1;
    progress(&format!("{phase} failed: {e:#}"));
}

fn progress(s: &str) {
    eprintln!("bench: {s}");
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn out_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target").join("bench").join("latest.json")
}
