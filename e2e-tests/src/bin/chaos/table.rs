//! Measuring what a trial left, from the daemon and `/proc`, and the table of all trials.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::daemon::{self, Canaries, Left, Res};
use crate::procs;
use crate::trial::Done;

/// What one trial left, measured.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    /// Resources of dead owners after 2 s, and after 10 s (measured only when some were left
    /// at 2 s; else 0).
    pub(crate) at2: Vec<Res>,
    pub(crate) at10: Vec<Res>,
    pub(crate) kept: u64,
    pub(crate) shared: u64,
    pub(crate) other_host: u64,
    /// Host processes with the harness's marker, after 2 s and after 10 s.
    pub(crate) procs2: Vec<String>,
    pub(crate) procs10: Vec<String>,
    /// `dh-` names without the harness's label that appeared during the trial.
    pub(crate) unlabelled: Vec<String>,
    /// What of the canaries was touched.
    pub(crate) foreign: Vec<String>,
}

fn the_trials<'a>(all: &'a [Res], done: &'a Done) -> impl Iterator<Item = &'a Res> {
    all.iter()
        .filter(|r| r.labels.contains_key(daemon::MANAGED))
        .filter(|r| done.sessions.contains(r.session()) || r.owner().is_some_and(|o| done.owners.contains(&o)))
}

fn marked(token: &str) -> Vec<procs::Proc> {
    procs::of_trial(token).into_iter().filter(|p| p.var(procs::TASK_ENV).is_some()).collect()
}

pub(crate) async fn measure(
    d: &Docker,
    done: &Done,
    token: &str,
    place: &str,
    canaries: &Canaries,
    unlabelled_before: &HashSet<String>,
) -> anyhow::Result<Leftovers> {
    let ended = Instant::now();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_secs());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = daemon::all(d).await?;
    let mut l = Leftovers::default();
    for r in the_trials(&all, done) {
        match daemon::verdict(r, now(), place) {
            Left::Dead => l.at2.push(r.clone()),
            Left::Kept => l.kept += 1,
            Left::Shared => l.shared += 1,
            Left::OtherHost => l.other_host += 1,
            Left::Live => {}
        }
    }
    l.procs2 = marked(token).iter().map(procs::Proc::describe).collect();
    if !l.at2.is_empty() || !l.procs2.is_empty() {
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(ended.elapsed())).await;
        let all = daemon::all(d).await?;
        l.at10 = the_trials(&all, done).filter(|r| daemon::verdict(r, now(), place) == Left::Dead).cloned().collect();
        let left = marked(token);
        l.procs10 = left.iter().map(procs::Proc::describe).collect();
        // They are the trial's own (they carry its token): end them so the next trial starts clean.
        for p in &left {
            procs::signal(p, true);
        }
    }
    let unlabelled = daemon::unlabelled(&daemon::all(d).await?);
    l.unlabelled = unlabelled.difference(unlabelled_before).cloned().collect();
    l.foreign = canaries.touched(d).await;
    Ok(l)
}

/// Waits for the run's watchers to exit on their own (they do once their session is over),
/// then ends those still there; returns how many had to be ended.
pub(crate) async fn wait_for_watchers(run: &str) -> u64 {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let left = procs::of_run(run);
        if left.is_empty() {
            return 0;
        }
        if Instant::now() > until {
            for p in &left {
                eprintln!("chaos: still running after 90 s, ended: {}", p.describe());
                procs::signal(p, false);
            }
            return left.len() as u64;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) trials: u64,
    kills: [u64; 6],
    left2: (u64, u64),
    left10: (u64, u64),
    kept: u64,
    shared: u64,
    other_host: u64,
    procs: (u64, u64),
    unlabelled: u64,
    foreign: u64,
    pub(crate) failed: Vec<String>,
    pub(crate) wall: Duration,
    pub(crate) watchers_left: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, i: u32, seed: u64, done: &Done, l: &Leftovers) {
        self.trials += 1;
        let k = [done.timeouts, done.sigterm, done.sigkill, done.faults, done.nextest_killed, done.watcher_killed];
        for (sum, n) in self.kills.iter_mut().zip(k) {
            *sum += n;
        }
        let count = |(max, total): &mut (u64, u64), n: usize| {
            *max = (*max).max(n as u64);
            *total += n as u64;
        };
        count(&mut self.left2, l.at2.len());
        count(&mut self.left10, l.at10.len());
        count(&mut self.procs, l.procs10.len());
        self.kept += l.kept;
        self.shared += l.shared;
        self.other_host += l.other_host;
        self.unlabelled += l.unlabelled.len() as u64;
        self.foreign += l.foreign.len() as u64;
        let mut what: Vec<String> = l.at10.iter().map(|r| format!("left after 10 s: {}", r.whose())).collect();
        what.extend(l.procs10.iter().map(|p| format!("process left after 10 s: {p}")));
        what.extend(l.unlabelled.iter().map(|u| format!("made without the harness's labels: {u}")));
        what.extend(l.foreign.iter().cloned());
        what.extend(done.stuck.iter().map(|p| format!("test process still running 60 s after nextest: {p}")));
        if done.hung {
            what.push("nextest ran past 240 s and was killed".into());
        }
        let summary = format!(
            "chaos: trial {i} seed {seed:#x}: {} timed out, {} SIGTERM, {} SIGKILL, {} faults, nextest {}, watcher {}; left at 2 s {} (processes {}), at 10 s {}",
            k[0], k[1], k[2], k[3], k[4], k[5], l.at2.len(), l.procs2.len(), l.at10.len()
        );
        eprintln!("{summary}");
        if !what.is_empty() {
            eprintln!(
                "chaos: trial {i} FAILED (replay: CHAOS_SEED={seed:#x} make chaos TRIALS=1; log {}):",
                done.log.display()
            );
            for w in &what {
                eprintln!("  {w}");
            }
            self.failed.push(format!("trial {i} (seed {seed:#x}): {}", what.join("; ")));
        }
    }

    pub(crate) fn print(&self) {
        let row = |k: &str, v: String| println!("chaos: {k:<44} {v}");
        println!("chaos: {:<44} value", "measure");
        row("trials", self.trials.to_string());
        row("tests killed by their slow-timeout profile", self.kills[0].to_string());
        row("tests sent SIGTERM", self.kills[1].to_string());
        row("tests sent SIGKILL", self.kills[2].to_string());
        row("chaos tests ended by a panic, exit or abort", self.kills[3].to_string());
        row("nextest killed (SIGTERM or SIGKILL)", self.kills[4].to_string());
        row("watchers killed (SIGTERM or SIGKILL)", self.kills[5].to_string());
        row("left at 2 s: max per trial / total", format!("{} / {}", self.left2.0, self.left2.1));
        row("left at 10 s: max per trial / total", format!("{} / {}", self.left10.0, self.left10.1));
        row(
            "  not counted: kept / shared / other-host",
            format!("{} / {} / {}", self.kept, self.shared, self.other_host),
        );
        row("processes left at 10 s: max / total", format!("{} / {}", self.procs.0, self.procs.1));
        row("made without the harness's labels", self.unlabelled.to_string());
        row("foreign resources touched (canaries)", self.foreign.to_string());
        row("watchers still running 90 s after the run", self.watchers_left.to_string());
        row("wall time", format!("{:.0} s", self.wall.as_secs_f64()));
        if self.failed.is_empty() {
            println!("chaos: passed: nothing left, nothing foreign touched");
        } else {
            println!("chaos: FAILED: {} of {} trials left something:", self.failed.len(), self.trials);
            for f in &self.failed {
                println!("  {f}");
            }
        }
    }
}
