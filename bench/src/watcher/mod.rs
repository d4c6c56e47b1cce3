//! Phase 6, the watcher (issue 10, item 2): how long after a SIGKILL of a test process its
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

mod crowd;
mod holder;
mod proc;
mod report;
mod runner;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub(crate) use holder::holder_main;
use proc::{read_record, same_process};
pub(crate) use runner::runner_main;

use crate::stats::Report;
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
    report::report(r, &out, &exit, runner_gone_at)
}

/// Starts the runner and waits for its one JSON line. Returns it and when the runner was
/// seen gone.
async fn run_runner(b: &Bench, session: &str, state_root: &Path) -> Result<(Value, Instant)> {
    let exe = crate::own_exe()?;
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
