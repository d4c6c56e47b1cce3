//! Finding leftovers by label, sorting them by owner liveness, and removing the orphans.
//! Used by the pre-test check, by each context before it creates anything, and by the CLI.
//!
//! Only resources labelled `docker-harness.managed=true` are ever listed, and resources are
//! found by exact label filters, never by Docker's name filter (which matches substrings).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;

use crate::config::{settings, PreflightPolicy};
use crate::docker::calls;
use crate::error::{CleanupFailure, Error, Result};
use crate::labels::{self, classify, Verdict};
use crate::owner::{Liveness, Owner};
use crate::resource::{Kind, Resource};
use crate::{adopt, blocking, docker, removal, session};

/// A managed resource and what the liveness rules make of it.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// The resource, with its labels.
    pub resource: Resource,
    /// Owned, kept or orphaned.
    pub verdict: Verdict,
}

/// What a sweep did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SweepReport {
    /// Orphans that were removed.
    pub removed: Vec<Resource>,
    /// Orphans that could not be removed.
    pub failed: Vec<CleanupFailure>,
    /// Resources spared because their owner is alive (or not yet expired).
    pub owned: usize,
    /// Resources spared because they are kept for debugging.
    pub kept: usize,
}

impl SweepReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "removed {} orphaned resource(s) ({} failed); spared {} of live owners and {} kept",
            self.removed.len(),
            self.failed.len(),
            self.owned,
            self.kept
        )
    }
}

/// Lists every managed resource (optionally only those with more `key=value` labels) and
/// classifies it.
pub(crate) async fn survey_with(docker: &Docker, extra: &[String]) -> Result<Vec<Leftover>> {
    survey_kinds(docker, extra, &Kind::TEARDOWN_ORDER).await
}

/// As [`survey_with`], of these kinds only.
async fn survey_kinds(docker: &Docker, extra: &[String], kinds: &[Kind]) -> Result<Vec<Leftover>> {
    let mut filters = vec![format!("{}=true", labels::MANAGED)];
    filters.extend_from_slice(extra);
    let now = labels::unix_now();
    Ok(removal::list_kinds(docker, &filters, kinds)
        .await?
        .into_iter()
        .map(|r| {
            let verdict = classify(&r.labels, now, &Owner::liveness);
            Leftover { resource: r, verdict }
        })
        .collect())
}

/// Every managed resource on the daemon, classified.
///
/// # Errors
/// [`Error::DaemonUnreachable`] and API errors.
pub async fn survey() -> Result<Vec<Leftover>> {
    blocking::run(async { survey_with(&docker::client().await?, &[]).await }).await
}

/// Removes every orphan now: resources whose owner process is gone (on this host) or whose
/// expiry has passed (another host's), sparing kept ones.
///
/// # Errors
/// [`Error::DaemonUnreachable`] and API errors while listing; removal failures are in the
/// report.
pub async fn reap() -> Result<SweepReport> {
    blocking::run(async { sweep(&docker::client().await?, &[]).await }).await
}

pub(crate) async fn sweep(docker: &Docker, extra: &[String]) -> Result<SweepReport> {
    let all = survey_with(docker, extra).await?;
    Ok(remove_orphans(docker, all).await)
}

/// Removes the orphans among surveyed leftovers; counts the rest.
pub(crate) async fn remove_orphans(docker: &Docker, all: Vec<Leftover>) -> SweepReport {
    let mut report = SweepReport::default();
    let mut orphans = Vec::new();
    for l in all {
        match l.verdict {
            Verdict::Owned => report.owned += 1,
            Verdict::Kept => report.kept += 1,
            Verdict::Orphan => orphans.push(l.resource),
        }
    }
    report.failed = removal::remove_in_order(docker, &orphans).await;
    report.removed = orphans.into_iter().filter(|r| !removal::failed_to_remove(&report.failed, r)).collect();
    report
}

/// Removes resources by label whatever their owner: for `clean`. Only ever resources with
/// the managed label. `extra` narrows it (`docker-harness.session=ID`, …).
pub async fn clean(extra: Vec<String>) -> Result<(Vec<Resource>, Vec<CleanupFailure>)> {
    blocking::run(async move {
        let docker = docker::client().await?;
        let all: Vec<Resource> = survey_with(&docker, &extra).await?.into_iter().map(|l| l.resource).collect();
        let failed = removal::remove_in_order(&docker, &all).await;
        let removed = all.into_iter().filter(|r| !removal::failed_to_remove(&failed, r)).collect();
        Ok((removed, failed))
    })
    .await
}

/// Applies the pre-test policy to what a sweep would remove.
async fn apply_policy(docker: &Docker, extra: &[String], scope: &str) -> Result<()> {
    match settings()?.preflight {
        PreflightPolicy::Clean => {
            let report = sweep(docker, extra).await?;
            if !report.removed.is_empty() || !report.failed.is_empty() {
                eprintln!("docker-harness: {scope}: {}", report.summary());
            }
            Ok(())
        }
        policy => {
            let orphans: Vec<String> = survey_with(docker, extra)
                .await?
                .into_iter()
                .filter(|l| l.verdict == Verdict::Orphan)
                .map(|l| describe(&l.resource))
                .collect();
            if orphans.is_empty() {
                Ok(())
            } else if policy == PreflightPolicy::Fail {
                let e = Error::Orphans(orphans);
                // Said here as well as returned: a test may only show the error's Debug form.
                eprintln!("docker-harness: {scope}: {e}");
                Err(e)
            } else {
                eprintln!(
                    "docker-harness: {scope}: {} orphaned resource(s) left in place (DOCKER_HARNESS_PREFLIGHT=warn):\n{}",
                    orphans.len(),
                    orphans.join("\n")
                );
                Ok(())
            }
        }
    }
}

fn describe(r: &Resource) -> String {
    let get = |k: &str| r.labels.get(k).map(String::as_str).unwrap_or("?");
    format!(
        "  {} {} (test {}, session {}, owner {})",
        r.kind,
        r.name,
        get(labels::TEST),
        get(labels::SESSION),
        get(labels::OWNER)
    )
}

/// The pre-test check, once per session across processes: the daemon answers, and orphans
/// of other sessions are handled by `DOCKER_HARNESS_PREFLIGHT`. Its result is recorded in
/// the session's state directory, so every later process reads the record and asks the
/// daemon nothing.
pub(crate) async fn preflight() -> Result<()> {
    let sess = session::current()?;
    let check = || {
        calls::why("start", async {
            let docker = docker::client().await?;
            apply_policy(&docker, &[], "pre-test check").await?;
            if settings()?.preflight == PreflightPolicy::Clean {
                adopt_for_the_dead(&docker, &session::all_dirs(), "pre-test check").await?;
                remove_finished_sessions(session::all_dirs(), sess.state_dir());
            }
            Ok(())
        })
    };
    session::once(sess.state_dir(), "preflight", Duration::from_secs(120), check).await
}

/// This process's pre-test check in the background, started by its first context; `settle`
/// waits for it.
static STARTED: once_cell::sync::OnceCell<std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>> =
    once_cell::sync::OnceCell::new();

/// Starts the pre-test check in the background, once per process, unless the session
/// already recorded it: a context's first resource then finds it done or under way. Started
/// by a context rather than at process start, so a test that never makes one (nextest runs
/// many such short ones, each in a process of its own) starts nothing it could cut off.
pub(crate) fn start_preflight() {
    STARTED.get_or_init(|| {
        let recorded = session::current().is_ok_and(|s| session::is_done(s.state_dir(), "preflight"));
        if recorded {
            return std::sync::Mutex::new(None);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        blocking::handle().spawn(async move {
            // Errors surface again, with their full text, in the first context that needs it.
            let _ = preflight().await;
            let _ = tx.send(());
        });
        std::sync::Mutex::new(Some(rx))
    });
}

/// Waits, at most `limit`, for a pre-test check this process started and has not seen
/// end: a context dropped before it created anything would otherwise let the process exit
/// with the check cut off, unrecorded, for the next process to run again. Only the first
/// caller waits.
pub(crate) fn settle_preflight(limit: Duration) {
    let pending = STARTED.get().and_then(|m| m.lock().ok().and_then(|mut r| r.take()));
    if let Some(rx) = pending {
        let _ = rx.recv_timeout(limit);
    }
}

/// Adopts what the contexts of dead owners (recorded in these session directories) left
/// under their identity: resources a program under test made with their prefix or task
/// label, labelled or not. Owners whose liveness is unknown are left to their own.
pub(crate) async fn adopt_for_the_dead(docker: &Docker, session_dirs: &[PathBuf], scope: &str) -> Result<()> {
    let dead: Vec<_> = session_dirs.iter().flat_map(|d| adopt::orphaned_records(d)).collect();
    if dead.is_empty() {
        return Ok(());
    }
    let contexts = dead.len();
    let adopted = adopt::adopt_recorded(docker, dead).await?;
    if !adopted.is_empty() {
        let names: Vec<String> = adopted.iter().map(ToString::to_string).collect();
        eprintln!(
            "docker-harness: {scope}: adopted and removed what {contexts} dead test context(s) left: {}",
            names.join(", ")
        );
    }
    Ok(())
}

/// How long a finished session's state stays on the host (its records, for audits).
const SESSION_STATE_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Removes the state directories of other sessions that are over: untouched for a day and
/// nothing recorded in them seen alive (their runner, their contexts' owners). A session of
/// another place (another PID namespace sharing this temp dir) cannot be seen either way;
/// a day without a change is taken as its end, for state files only: its resources still
/// go by their expiry. Keeps the host's state bounded over a laptop's year of runs.
fn remove_finished_sessions(dirs: Vec<PathBuf>, current: &Path) {
    let alive = |o: &Owner| o.liveness() == Liveness::Alive;
    for dir in dirs {
        let old =
            session::last_change(&dir).and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= SESSION_STATE_KEPT);
        let runner = std::fs::read_to_string(dir.join("runner")).ok().and_then(|r| Owner::parse(r.trim()));
        let something_alive = runner.as_ref().is_some_and(alive) || !adopt::records(&dir, alive).is_empty();
        if dir != current && old && !something_alive {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Before a test creates anything: orphans left by an earlier run of the same test.
/// Once per test name per process: earlier contexts of the same test in this process
/// belong to a live owner, so looking again could find nothing new to remove.
///
/// One listing, of containers: a run that died leaves its containers (what holds ports,
/// memory and names), and only when one of a dead owner is there are the other kinds
/// listed and handled. A dead run's networks, volumes and images without a container are
/// the watcher's (at once) and the next session's check's.
pub(crate) async fn same_test(test_name: &str) -> Result<()> {
    static CHECKED: once_cell::sync::Lazy<std::sync::Mutex<std::collections::HashSet<String>>> =
        once_cell::sync::Lazy::new(Default::default);
    if CHECKED.lock().map(|c| c.contains(test_name)).unwrap_or(false) {
        return Ok(());
    }
    let docker = docker::client().await?;
    let filter = vec![format!("{}={}", labels::TEST, test_name)];
    let containers = survey_kinds(&docker, &filter, &[Kind::Container]).await?;
    if containers.iter().any(|l| l.verdict == Verdict::Orphan) {
        apply_policy(&docker, &filter, &format!("leftovers of {test_name}")).await?;
    }
    if let Ok(mut c) = CHECKED.lock() {
        c.insert(test_name.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// A session directory last changed two days ago, with this runner.
    fn old_session(root: &Path, name: &str, runner: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("runner"), runner).unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for p in [dir.join("runner"), dir.clone()] {
            std::fs::File::open(&p).unwrap().set_modified(two_days_ago).unwrap();
        }
        dir
    }

    #[test]
    fn a_session_over_for_a_day_goes_and_one_with_a_live_runner_or_a_recent_change_stays() {
        let root = std::env::temp_dir().join(format!("dh-unit-sessions-{}", uuid::Uuid::new_v4()));
        let me = Owner::current();
        let dead = Owner { start: me.start + 1, ..me.clone() };
        let over = old_session(&root, "over", &dead.to_string());
        let running = old_session(&root, "running", &me.to_string());
        let recent = root.join("recent");
        std::fs::create_dir_all(&recent).unwrap();
        let current = old_session(&root, "current", &dead.to_string());
        remove_finished_sessions(vec![over.clone(), running.clone(), recent.clone(), current.clone()], &current);
        assert!(!over.exists(), "a finished session's state stayed");
        if me.is_verified() {
            assert!(running.exists(), "a live runner's session state went");
        }
        assert!(recent.exists() && current.exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
