//! 6. The watcher (issue 10, item 2): how long after a SIGKILL of a test process its
//! containers, networks and volumes are gone, and what the watcher costs while idle.
//!
//! Three processes play a nextest run. The bench starts a *runner* (this binary with
//! `RUNNER_FLAG`), which stands in for nextest: a long-lived parent of the test processes.
//! The runner starts *holders* (`HOLDER_FLAG`), one per trial, with `NEXTEST_RUN_ID` set to
//! the phase's session: the harness then takes the holder's parent, the runner, for the
//! session's runner, as it takes nextest under nextest. Each holder creates, through one
//! `TestContext`, 2 networks, 2 volumes and 3 `sleep 3600` containers attached to them
//! (every network and volume in use), prints their IDs and sleeps; its first creation
//! starts the session's watcher. The runner SIGKILLs it, reaps it (as nextest would), and
//! inspects all seven with raw bollard every 20 ms until each answers 404. Docker's own
//! event log then says when the watcher's removals reached the daemon, which splits the
//! time into "noticed and listed" and "removed". After the trials the runner idles with
//! the session alive and samples the watcher's CPU time and memory from `/proc`, then
//! exits; the bench checks that the watcher, its runner gone, exits by itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions,
};
use bollard::Docker;
use docker_harness::{labels, ContainerSpec, NetworkSpec, TestContext, VolumeSpec};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::raw::{self, Kind, Raw, RUN_LABEL};
use crate::stats::{Op, Report, Samples};
use crate::{out_path, progress, Bench};

pub(crate) const HOLDER_FLAG: &str = "--child-holder";
pub(crate) const RUNNER_FLAG: &str = "--child-watcher-runner";

/// SIGKILLed holders; the issue asks for at least 10.
const TRIALS: usize = 10;
/// How long the runner idles with the session alive while the watcher is sampled. Well
/// under the watcher's 60 s idle limit, which would end it.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// The target for the median, kill to the last 404.
const TARGET: Duration = Duration::from_secs(2);
/// A trial whose resources are not all gone by then counts as failed (the runner removes
/// them itself so the next trial starts clean).
const TRIAL_LIMIT: Duration = Duration::from_secs(15);
/// What a holder may take to create its seven resources.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Between a holder's ready line and its SIGKILL (plus 0-250 ms at random): a test does
/// some work before it dies, and the watcher learns of the new owner on its next poll.
const SETTLE: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(20);
/// A holder left alone (the runner died) ends by itself, and its context removes what it made.
const HOLDER_LIFETIME: Duration = Duration::from_secs(120);
/// The watcher surveys every 3 s and polls every 250 ms: once its runner is gone it should
/// notice at its next survey. Beyond `EXIT_LIMIT` the bench kills it and says so.
const EXIT_TARGET_S: f64 = 3.5;
const EXIT_LIMIT: Duration = Duration::from_secs(10);

const TEST_NAME: &str = "bench-watcher-holder";

// ---------------------------------------------------------------------------------------
// The bench's side.

pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    let session = format!("bench-watcher-{}", b.run_id);
    let state_root = out_path().with_file_name(format!("state-watcher-{}", b.run_id));
    let _ = std::fs::remove_dir_all(&state_root);
    std::fs::create_dir_all(&state_root)?;
    progress(&format!(
        "6. watcher: {TRIALS} SIGKILLed test processes, then {} s idle; session {session}",
        IDLE_WINDOW.as_secs()
    ));
    r.section(&format!(
        "6. watcher: SIGKILL of a test process holding 3 containers, 2 networks, 2 volumes, until all 7 answer 404 ({TRIALS} trials)"
    ));
    let res = run_runner(b, &session, &state_root).await;
    // Whatever happened: the watcher must not outlive the phase.
    let sess_dir = state_root.join("sessions").join(&session);
    let exit = watcher_exit(&sess_dir).await;
    let _ = std::fs::copy(sess_dir.join("watcher.log"), out_path().with_file_name("watcher.log"));
    let _ = std::fs::remove_dir_all(&state_root);
    let (out, runner_gone_at) = res?;
    report(r, &out, exit, runner_gone_at)
}

/// Starts the runner and waits for its one JSON line. Returns it and when the runner was
/// seen gone.
async fn run_runner(b: &Bench, session: &str, state_root: &Path) -> Result<(Value, Instant)> {
    let exe = std::env::current_exe()?;
    let child = Command::new(&exe)
        .arg(RUNNER_FLAG)
        .arg(&b.run_id)
        .env("DOCKER_HARNESS_SESSION", session)
        .env("DOCKER_HARNESS_STATE_DIR", state_root)
        .env_remove("NEXTEST_RUN_ID")
        .env_remove("DOCKER_HARNESS_WATCHER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the runner process")?;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let gone = Instant::now();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'));
    let v: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("the runner printed no result ({})", out.status))?;
    if let Some(e) = v["error"].as_str() {
        bail!("the runner failed: {e}");
    }
    Ok((v, gone))
}

#[derive(Debug)]
struct Exit {
    /// The watcher's record was found.
    pid: Option<u32>,
    /// When it was seen gone (by itself).
    gone_at: Option<Instant>,
    /// It was still there after `EXIT_LIMIT` and the bench killed it.
    killed: bool,
}

/// Waits for the session's watcher to exit; kills it (by its recorded PID and start time,
/// so never another process) when it has not after `EXIT_LIMIT`.
async fn watcher_exit(sess_dir: &Path) -> Exit {
    let Some((pid, start)) = read_record(sess_dir) else {
        return Exit { pid: None, gone_at: None, killed: false };
    };
    let t = Instant::now();
    while t.elapsed() < EXIT_LIMIT {
        if !same_process(pid, start) {
            return Exit { pid: Some(pid), gone_at: Some(Instant::now()), killed: false };
        }
        tokio::time::sleep(POLL).await;
    }
    let mut killed = false;
    if same_process(pid, start) {
        progress(&format!(
            "6. the watcher (pid {pid}) is still running {} s after its runner exited: killing it",
            EXIT_LIMIT.as_secs()
        ));
        killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().is_ok_and(|s| s.success());
    }
    Exit { pid: Some(pid), gone_at: None, killed }
}

fn report(r: &mut Report, out: &Value, exit: Exit, runner_gone_at: Instant) -> Result<()> {
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
        let is_total = key == "kill_to_404_ms";
        let target = is_total.then_some((Op::AtMost, TARGET.as_secs_f64() * 1000.0));
        let verdict = r.figure(&format!("{id}.median"), &format!("{what}: median"), "ms", s.len(), s.median(), target);
        r.figure(&format!("{id}.p95"), &format!("{what}: 95th percentile"), "ms", s.len(), s.pct(95.0), None);
        r.figure(&format!("{id}.max"), &format!("{what}: slowest trial"), "ms", s.len(), s.max(), None);
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
    // remove_in_order goes kind by kind (containers, then networks, then volumes), so the
    // gaps between the kinds' last destroy events are each kind's removal.
    let gap = |from: &str, to: &str| {
        Samples(trials.iter().filter_map(|t| Some(t[to].as_f64()? - t[from].as_f64()?)).collect())
    };
    let c_removal = gap("first_event_ms", "containers_destroyed_ms");
    let n_removal = gap("containers_destroyed_ms", "networks_destroyed_ms");
    let v_removal = gap("networks_destroyed_ms", "volumes_destroyed_ms");
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
        ("detect_and_list", "kill to the sweep's first Docker event: the watcher's poll wait (0-250 ms), its /proc check and its survey", &first),
        ("containers", "the sweep's first event to its last container destroyed (3 force-removals in parallel, each confirmed by 404)", &c_removal),
        ("networks", "the last container destroyed to the last network destroyed (2 removals in parallel, after the containers')", &n_removal),
        ("volumes", "the last network destroyed to the last volume destroyed (2 removals in parallel, after the networks')", &v_removal),
        ("observed", "the last destroy event to the bench seeing the last 404 (its 20 ms polling)", &lag),
    ];
    for (id, what, s) in splits {
        r.series(&format!("watcher.split.{id}"), s);
        r.figure(&format!("watcher.split.{id}"), &format!("{what}: median"), "ms", s.len(), s.median(), None);
    }
    r.line(format!(
        "  where it goes (medians, from Docker's event log): noticed + listed {:.0} ms (poll wait 0-250 ms; a survey alone {:.0} ms) | containers removed {:.0} ms | networks {:.0} ms | volumes {:.0} ms | seen by the bench {:.0} ms",
        first.median(),
        survey.median(),
        c_removal.median(),
        n_removal.median(),
        v_removal.median(),
        lag.median()
    ));
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

fn read_record(sess_dir: &Path) -> Option<(u32, u64)> {
    let v: Value = serde_json::from_slice(&std::fs::read(sess_dir.join("watcher.json")).ok()?).ok()?;
    Some((v["pid"].as_u64()? as u32, v["start"].as_u64()?))
}

/// `/proc/PID/stat` fields from the state on (the command name may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process with this PID is the one that started at `start` and is not a zombie.
fn same_process(pid: u32, start: u64) -> bool {
    // After ')': field 3 (state) is index 0, field 22 (starttime) is index 19.
    stat_fields(pid).is_some_and(|f| f[0] != "Z" && f.get(19).and_then(|s| s.parse().ok()) == Some(start))
}

// ---------------------------------------------------------------------------------------
// The runner: nextest's stand-in.

pub(crate) fn runner_main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let res = rt.block_on(runner());
    let line = match res {
        Ok(v) => v,
        Err(e) => json!({ "error": format!("{e:#}") }),
    };
    println!("{line}");
    Ok(())
}

struct Holder {
    child: Child,
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

async fn runner() -> Result<Value> {
    let run_id = std::env::args().nth(2).context("the run ID")?;
    let sess = docker_harness::session::current()?;
    let session = sess.id().to_string();
    let sess_dir = sess.state_dir().to_path_buf();
    let docker = raw::connect().await?;
    let raw = Raw::new(docker.clone(), String::new(), run_id.clone(), session.clone());
    let exe = std::env::current_exe()?;

    // Docker's kill and destroy events, streamed live for the whole phase: the daemon keeps
    // only its last 256 events for a later `since` query, fewer than the trials make.
    let events = EventLog::start(&docker)?;
    let mut trials = Vec::new();
    for i in 0..TRIALS {
        let h = start_holder(&exe, &run_id, &session).await?;
        // Plus a random part of one watcher poll: without it each kill lands at the same
        // phase of the watcher's 250 ms cycle (which restarts when its previous sweep ends,
        // and a holder's setup takes about as long each time), and the poll wait, instead of
        // averaging 125 ms as for a test that dies at any moment, is the same every trial.
        let jitter = Duration::from_millis((uuid::Uuid::new_v4().as_u128() % 250) as u64);
        tokio::time::sleep(SETTLE + jitter).await;
        let t = trial(&docker, &raw, h).await?;
        progress(&format!(
            "6. trial {}/{TRIALS}: all 7 gone {:.0} ms after the SIGKILL",
            i + 1,
            t.0["kill_to_404_ms"].as_f64().unwrap_or(f64::NAN)
        ));
        trials.push(t);
    }
    // A destroy event can reach the stream a moment after the inspect that answers 404.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = events.stop();
    let trials: Vec<Value> = trials.into_iter().map(|(v, wall0, all)| with_events(v, wall0, &all, &events)).collect();

    // Idle: the session's runner (this process) lives, no test process does.
    let (pid, start) = read_record(&sess_dir).context("the session has no watcher.json")?;
    ensure!(same_process(pid, start), "the watcher (pid {pid}) is not running after the trials");
    let clk = clk_tck();
    let ticks0 = cpu_ticks(pid).context("read the watcher's CPU time")?;
    let ns0 = cpu_ns(pid);
    let t0 = Instant::now();
    let (mut rss_max, mut rss_samples) = (0u64, 0usize);
    while t0.elapsed() < IDLE_WINDOW {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(kb) = status_kb(pid, "VmRSS:") {
            rss_max = rss_max.max(kb);
            rss_samples += 1;
        }
    }
    let ticks1 = cpu_ticks(pid).context("read the watcher's CPU time")?;
    let ns1 = cpu_ns(pid);
    let window = t0.elapsed().as_secs_f64();
    let alive_after = same_process(pid, start);
    let hwm = status_kb(pid, "VmHWM:");
    let threads = status_kb(pid, "Threads:");

    // What one of the watcher's surveys costs, timed here with the same filters.
    let mut survey = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        survey_like_watcher(&docker, &session).await?;
        survey.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(json!({
        "trials": trials,
        "survey_ms": survey,
        "watcher": {
            "pid": pid,
            "clk_tck": clk,
            "ticks_before_idle": ticks0,
            "idle_ticks": ticks1 - ticks0,
            "idle_cpu_ns": ns0.zip(ns1).map(|(a, b)| b.saturating_sub(a)),
            "idle_window_s": window,
            "vmrss_kb_max": rss_max,
            "rss_samples": rss_samples,
            "vmhwm_kb": hwm,
            "threads": threads,
            "alive_after_idle": alive_after,
        },
    }))
}

async fn start_holder(exe: &Path, run_id: &str, session: &str) -> Result<Holder> {
    let mut child = Command::new(exe)
        .arg(HOLDER_FLAG)
        .arg(run_id)
        // The harness takes the nearest nextest-named ancestor for the session's runner,
        // else the parent: this process, as nextest is under nextest.
        .env("NEXTEST_RUN_ID", session)
        .env("DOCKER_HARNESS_SESSION", session)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start a holder")?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = child.stdout.take().expect("piped");
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(READY_LIMIT, read).await {
        Ok(Ok(Ok(l))) if !l.trim().is_empty() => l,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_text.join().unwrap_or_default();
            bail!(
                "a holder did not get ready ({}): {}",
                match other {
                    Err(_) => format!("no ready line within {} s", READY_LIMIT.as_secs()),
                    _ => "it ended without a ready line".into(),
                },
                err.trim()
            );
        }
    };
    let v: Value = serde_json::from_str(line.trim()).context("the holder's ready line")?;
    let list = |k: &str| -> Vec<String> {
        v[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let h = Holder { child, containers: list("containers"), networks: list("networks"), volumes: list("volumes") };
    ensure!(h.containers.len() == 3 && h.networks.len() == 2 && h.volumes.len() == 2, "the holder reported {line}");
    Ok(h)
}

/// SIGKILLs the holder and times its resources' disappearance.
/// One trial's 404 timings, the kill's wall-clock time and the seven resources.
type Trial = (Value, Duration, Vec<(Kind, String)>);

async fn trial(docker: &Docker, raw: &Raw, mut h: Holder) -> Result<Trial> {
    let all: Vec<(Kind, String)> = h
        .containers
        .iter()
        .map(|id| (Kind::Container, id.clone()))
        .chain(h.networks.iter().map(|id| (Kind::Network, id.clone())))
        .chain(h.volumes.iter().map(|id| (Kind::Volume, id.clone())))
        .collect();
    let wall0 = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let t0 = Instant::now();
    h.child.kill().context("SIGKILL the holder")?;
    // Reaped at once, as nextest does; the harness counts a zombie as dead anyway.
    h.child.wait()?;
    let mut gone: Vec<Option<f64>> = vec![None; all.len()];
    while gone.iter().any(Option::is_none) && t0.elapsed() < TRIAL_LIMIT {
        let pending: Vec<usize> = (0..all.len()).filter(|&i| gone[i].is_none()).collect();
        let checks = pending.iter().map(|&i| {
            let (kind, id) = &all[i];
            async move { is_gone(docker, *kind, id).await.map(|x| x.then(|| t0.elapsed().as_secs_f64() * 1000.0)) }
        });
        let results = futures_util::future::join_all(checks).await;
        for (i, res) in pending.into_iter().zip(results) {
            if let Some(at) = res? {
                gone[i] = Some(at);
            }
        }
        if gone.iter().any(Option::is_none) {
            tokio::time::sleep(POLL).await;
        }
    }
    let all_gone = gone.iter().all(Option::is_some);
    if !all_gone {
        for ((kind, id), g) in all.iter().zip(&gone) {
            if g.is_none() {
                raw.remove_confirmed(*kind, id).await?;
            }
        }
    }
    let n_c = h.containers.len();
    let last = |v: &[Option<f64>]| {
        v.iter().copied().collect::<Option<Vec<f64>>>().and_then(|v| v.into_iter().reduce(f64::max))
    };
    let v = json!({
        "all_gone": all_gone,
        "kill_to_404_ms": if all_gone { last(&gone) } else { None },
        "containers_404_ms": last(&gone[..n_c]),
        "nv_404_ms": last(&gone[n_c..]),
    });
    Ok((v, wall0, all))
}

/// Adds to a trial when the watcher's removals reached the daemon, in ms after the kill.
fn with_events(
    mut v: Value,
    wall0: Duration,
    all: &[(Kind, String)],
    events: &HashMap<(String, String), f64>,
) -> Value {
    let at = |id: &str, action: &str| {
        events.get(&(id.to_string(), action.to_string())).map(|ns| (ns - wall0.as_nanos() as f64) / 1e6)
    };
    let max_of = |kind: Kind| {
        all.iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| at(id, "destroy"))
            .collect::<Option<Vec<f64>>>()
            .and_then(|v| v.into_iter().reduce(f64::max))
    };
    let first = all.iter().flat_map(|(_, id)| [at(id, "kill"), at(id, "destroy")]).flatten().reduce(f64::min);
    v["first_event_ms"] = json!(first);
    v["containers_destroyed_ms"] = json!(max_of(Kind::Container));
    v["networks_destroyed_ms"] = json!(max_of(Kind::Network));
    v["volumes_destroyed_ms"] = json!(max_of(Kind::Volume));
    v
}

async fn is_gone(docker: &Docker, kind: Kind, id: &str) -> Result<bool> {
    let r = match kind {
        Kind::Container => docker.inspect_container(id, None::<InspectContainerOptions>).await.map(drop),
        Kind::Network => docker.inspect_network(id, None::<InspectNetworkOptions>).await.map(drop),
        Kind::Volume => docker.inspect_volume(id).await.map(drop),
    };
    match r {
        Ok(()) => Ok(false),
        Err(e) if raw::is_404(&e) => Ok(true),
        Err(e) => Err(e).with_context(|| format!("inspect {kind:?} {id}")),
    }
}

/// Container, network and volume `kill` and `destroy` events, as they happen: for each
/// actor ID and action, when it first happened, in ns since the epoch.
struct EventLog {
    seen: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    fn start(docker: &Docker) -> Result<EventLog> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let opts = EventsOptions {
            since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".into(), "network".into(), "volume".into()]),
                ("event".to_string(), vec!["kill".into(), "destroy".into()]),
            ])),
        };
        let mut stream = docker.events(Some(opts));
        let seen: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), f64>>> = Default::default();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let (Some(action), Some(id), Some(t)) = (ev.action, ev.actor.and_then(|a| a.id), ev.time_nano) else {
                    continue;
                };
                if let Ok(mut m) = sink.lock() {
                    let ns = t as f64;
                    m.entry((id, action)).and_modify(|v: &mut f64| *v = v.min(ns)).or_insert(ns);
                }
            }
        });
        Ok(EventLog { seen, task })
    }

    fn stop(self) -> HashMap<(String, String), f64> {
        self.task.abort();
        self.seen.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The three listings of one of the watcher's surveys: managed and this session, concurrently.
async fn survey_like_watcher(docker: &Docker, session: &str) -> Result<()> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}=true", labels::MANAGED), format!("{}={session}", labels::SESSION)],
    )]);
    let (c, n, v) = tokio::join!(
        docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        })),
        docker.list_networks(Some(ListNetworksOptions { filters: Some(filters.clone()) })),
        docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters.clone()) })),
    );
    c?;
    n?;
    v?;
    Ok(())
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime (fields 14 and 15) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Time on a CPU of all the process's threads, in ns, from `/proc/PID/task/*/schedstat`:
/// finer than the 10 ms ticks of `stat`, which an idle watcher barely moves.
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let s = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        sum += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// A `kB` (or plain number) field of `/proc/PID/status`.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------
// The holder: a test process that gets SIGKILLed.

pub(crate) fn holder_main() -> Result<()> {
    let run_id = std::env::args().nth(2).context("the run ID")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ctx = TestContext::named(TEST_NAME)?;
    let held = rt.block_on(async {
        let net = |n: &str| ctx.create_network(NetworkSpec::new(n).with_label(RUN_LABEL, &run_id));
        let vol = |n: &str| ctx.create_volume(VolumeSpec::new(n).with_label(RUN_LABEL, &run_id));
        // Each kind concurrently, as a test with a fixture per resource would: the trials
        // are set up faster, and nothing is measured while they are.
        let (n0, n1, v0, v1) = tokio::try_join!(net("n0"), net("n1"), vol("v0"), vol("v1"))?;
        let spec = |n: &str| ContainerSpec::new(n).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, &run_id);
        let (c0, c1, c2) = tokio::try_join!(
            ctx.container(spec("c0").with_network(&n0).with_volume(&v0, "/v0")),
            ctx.container(spec("c1").with_network(&n1).with_volume(&v1, "/v1")),
            ctx.container(spec("c2").with_network(&n0).with_volume(&v0, "/v0").with_volume(&v1, "/v1")),
        )?;
        anyhow::Ok((n0, n1, v0, v1, c0, c1, c2))
    })?;
    let (n0, n1, v0, v1, c0, c1, c2) = &held;
    println!(
        "{}",
        json!({
            "pid": std::process::id(),
            "containers": [c0.id(), c1.id(), c2.id()],
            "networks": [n0.id(), n1.id()],
            "volumes": [v0.name(), v1.name()],
        })
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    std::thread::sleep(HOLDER_LIFETIME);
    drop(held);
    drop(ctx);
    Ok(())
}
