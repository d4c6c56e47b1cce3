//! Running one trial: nextest on the plan's tests, the kills at their moments, then waiting
//! for the trial's test processes to be gone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::plan::{Kill, Plan};
use crate::procs::{self, Proc};
use crate::rng::Rng;

/// A trial whose nextest runs longer than this is hung: it is killed and the trial fails.
const HANG: Duration = Duration::from_secs(240);
/// How long test processes orphaned by a killed nextest may take to finish on their own.
const ORPHANS: Duration = Duration::from_secs(60);

/// Where the driver finds the prebuilt tests and keeps its files.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) workspace: PathBuf,
    pub(crate) binaries: PathBuf,
    pub(crate) metadata: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) jobs: u32,
}

/// What a trial did, before the daemon is asked what it left.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub(crate) timeouts: u64,
    pub(crate) sigterm: u64,
    pub(crate) sigkill: u64,
    pub(crate) faults: u64,
    pub(crate) nextest_killed: u64,
    pub(crate) watcher_killed: u64,
    /// Session IDs and owners (`pid`, `start`) seen among the trial's processes.
    pub(crate) sessions: HashSet<String>,
    pub(crate) owners: HashSet<(u32, u64)>,
    /// Test processes still running once nextest and the orphan wait were over.
    pub(crate) stuck: Vec<String>,
    pub(crate) hung: bool,
    pub(crate) log: PathBuf,
}

fn observe(token: &str, done: &mut Done) -> Vec<Proc> {
    let ps = procs::of_trial(token);
    for p in &ps {
        done.owners.insert((p.pid, p.start));
        for key in ["NEXTEST_RUN_ID", "DOCKER_HARNESS_SESSION", procs::WATCHER_ENV] {
            if let Some(v) = p.var(key).filter(|v| !v.is_empty() && *v != "off") {
                done.sessions.insert(v.to_string());
            }
        }
    }
    ps
}

/// Session IDs: the directories under every `sessions` directory below `root`.
pub(crate) fn session_dirs(root: &Path, depth: u32, out: &mut HashSet<String>) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if !t.is_dir() || depth == 0 {
            continue;
        }
        if root.file_name().is_some_and(|n| n == "sessions") {
            out.insert(e.file_name().to_string_lossy().into_owned());
        }
        session_dirs(&e.path(), depth - 1, out);
    }
}

fn spawn(setup: &Setup, plan: &Plan, token: &str, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut cmd = Command::new("cargo-nextest");
    cmd.current_dir(&setup.workspace)
        .args(["nextest", "run", "--no-fail-fast", "--no-tests", "pass", "--color", "never"])
        .arg("--binaries-metadata")
        .arg(&setup.binaries)
        .arg("--cargo-metadata")
        .arg(&setup.metadata)
        .arg(format!("-j{}", setup.jobs))
        .args(["-E", &plan.filter()])
        .env(procs::TRIAL_ENV, token)
        .env("DOCKER_HARNESS_STATE_DIR", &setup.state)
        .env_remove("NEXTEST_PROFILE")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    match &plan.kill {
        Kill::Timeout { period_ms, grace_ms } => {
            let base = std::fs::read_to_string(setup.workspace.join(".config/nextest.toml")).unwrap_or_default();
            let config = setup.dir.join(format!("{token}.toml"));
            let profile = format!(
                "\n[profile.chaos]\nslow-timeout = {{ period = \"{period_ms}ms\", terminate-after = 1, grace-period = \"{grace_ms}ms\" }}\n"
            );
            std::fs::write(&config, base + &profile)?;
            cmd.arg("--config-file").arg(&config).args(["--profile", "chaos"]);
        }
        Kill::Fault { fault, at } => {
            cmd.env("DH_CHAOS_FAULT", fault).env("DH_CHAOS_AT", at.to_string());
        }
        Kill::Signals { .. } => {}
    }
    cmd.spawn().context("start cargo-nextest (help: `make deps` installs it)")
}

/// Runs the plan. Every process signalled is one the trial started (it carries `token`).
pub(crate) fn run(setup: &Setup, plan: &Plan, token: &str) -> anyhow::Result<Done> {
    let log = setup.dir.join(format!("{token}.log"));
    let mut done = Done { log: log.clone(), ..Done::default() };
    let mut before = HashSet::new();
    session_dirs(&setup.state, 6, &mut before);
    let mut child = spawn(setup, plan, token, &log)?;
    let nextest = child.id();
    let started = Instant::now();
    // Which test each kill hits: drawn from the plan's seed too, from the tests running then.
    let mut r = Rng::new(plan.seed ^ 0x5eed);
    let (mut tests, mut on_nextest, mut on_watcher) = match &plan.kill {
        Kill::Signals { tests, nextest, watcher } => (tests.clone(), *nextest, *watcher),
        _ => (Vec::new(), None, None),
    };
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        let ps = observe(token, &mut done);
        let now = started.elapsed().as_millis() as u64;
        if tests.first().is_some_and(|(at, _)| *at <= now) {
            let running: Vec<&Proc> = ps.iter().filter(|p| p.is_test(nextest)).collect();
            if let Some(p) = r.pick(&running) {
                let kill = tests.remove(0).1;
                if procs::signal(p, kill) {
                    *(if kill { &mut done.sigkill } else { &mut done.sigterm }) += 1;
                    eprintln!("chaos:   {} {}", if kill { "SIGKILL" } else { "SIGTERM" }, p.describe());
                }
            }
        }
        if let Some((at, kill)) = on_watcher.filter(|(at, _)| *at <= now) {
            if let Some(w) = ps.iter().find(|p| p.is_watcher()) {
                on_watcher = None;
                if procs::signal(w, kill) {
                    done.watcher_killed += 1;
                    eprintln!(
                        "chaos:   {} the watcher, {} (at {at} ms)",
                        if kill { "SIGKILL" } else { "SIGTERM" },
                        w.describe()
                    );
                }
            }
        }
        if let Some((at, kill)) = on_nextest.filter(|(at, _)| *at <= now) {
            on_nextest = None;
            if let Some(n) = ps.iter().find(|p| p.pid == nextest) {
                if procs::signal(n, kill) {
                    done.nextest_killed += 1;
                    eprintln!("chaos:   {} nextest (at {at} ms)", if kill { "SIGKILL" } else { "SIGTERM" });
                }
            }
        }
        if started.elapsed() > HANG {
            done.hung = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Test processes a killed nextest orphaned finish on their own; wait for them. What a
    // test's program started (the harness's marker) is measured as left, not waited for.
    let orphans = Instant::now();
    loop {
        let left: Vec<Proc> = observe(token, &mut done)
            .into_iter()
            // The watcher carries the test's variables of the process that started it; it is
            // measured on its own ("watchers still running 90 s after the run").
            .filter(|p| p.var("NEXTEST_TEST_NAME").is_some() && p.var(procs::TASK_ENV).is_none() && !p.is_watcher())
            .collect();
        if left.is_empty() {
            break;
        }
        if orphans.elapsed() > ORPHANS {
            for p in &left {
                done.stuck.push(p.describe());
                procs::signal(p, true);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if done.watcher_killed > 0 {
        // With its watcher gone, a session's dead owners wait for the last resort the README
        // names, the next session's check: run it (as `docker-harness reap`) before measuring.
        eprintln!("chaos:   the watcher was killed: the next session's check (docker-harness reap) runs first");
        let status = Command::new("cargo")
            .current_dir(&setup.workspace)
            .args(["run", "-q", "-p", "docker-harness-cli", "--", "reap"])
            .env("DOCKER_HARNESS_STATE_DIR", &setup.state)
            .stdout(std::process::Stdio::null())
            .status()
            .context("run docker-harness reap")?;
        anyhow::ensure!(status.success(), "docker-harness reap failed: {status}");
    }
    let mut after = HashSet::new();
    session_dirs(&setup.state, 6, &mut after);
    done.sessions.extend(after.difference(&before).cloned());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let timed_out: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("TIMEOUT").map(str::trim))
        .filter_map(|l| l.split("] ").nth(1))
        .collect();
    done.timeouts = timed_out.len() as u64;
    if let Kill::Fault { .. } = plan.kill {
        done.faults = u64::from(text.contains("chaos: ") && text.contains("creates"));
    }
    Ok(done)
}
