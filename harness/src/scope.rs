//! One test's scope: its identity (task ID, test name, name prefix, labels), the registry of
//! what was made under it, its keep policy and budget, and the teardown that removes it all.
//! `TestContext` is the public face of a scope; guards hold it to tell it what they removed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use crate::budget::{Counts, EndedProcess, TeardownReport};
use crate::config::{KeepPolicy, Settings};
use crate::error::{Error, CLI_INSTALL};
use crate::farewell::{self, Farewell, TailReader};
use crate::owner::procs;
use crate::resource::Resource;
use crate::{adopt, blocking, docker, labels, naming, removal, session};

/// Resources this process's scopes track and have not seen gone, over all its contexts.
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(crate) struct Scope {
    pub(crate) task_id: String,
    pub(crate) test_name: String,
    pub(crate) prefix: String,
    labels: HashMap<String, String>,
    tracked: Mutex<Vec<Resource>>,
    /// Every ID the harness created for this scope, removed or not: what adoption skips.
    created_ids: Mutex<HashSet<String>>,
    created: Mutex<Counts>,
    budget: Mutex<Option<Counts>>,
    /// Set once the labels, the prefix, a name or the marker were handed out: a program may
    /// have used them, so teardown has to look for adoptees (one listing of every kind).
    used: AtomicBool,
    /// Set once a context asked Docker for anything (its checks ran): teardown has its own
    /// resources to remove, but nothing to adopt unless `used` is set too.
    prepared: AtomicBool,
    /// Set once the marker was handed to a host process: teardown looks for its tree.
    marks_processes: AtomicBool,
    keep: Mutex<KeepPolicy>,
    keep_ttl: Duration,
    /// Where the scope is recorded for adoption after a kill.
    session_dir: PathBuf,
    /// What is done with its containers just before they go: followers drained, last log
    /// lines read when the test failed.
    pub(crate) farewell: Farewell,
}

impl Scope {
    /// A scope whose containers' last lines are read, when a test fails, with `reader`.
    pub(crate) fn new(
        test_name: &str,
        session: &session::Session,
        settings: &Settings,
        reader: Option<TailReader>,
    ) -> Scope {
        let task_id = uuid::Uuid::new_v4().to_string();
        Scope {
            prefix: naming::prefix(test_name, &task_id),
            labels: labels::for_test(session.id(), test_name, &task_id, settings.ttl),
            session_dir: session.state_dir().to_path_buf(),
            task_id,
            test_name: test_name.to_string(),
            tracked: Mutex::new(Vec::new()),
            created_ids: Mutex::new(HashSet::new()),
            created: Mutex::new(Counts::default()),
            budget: Mutex::new(None),
            used: AtomicBool::new(false),
            prepared: AtomicBool::new(false),
            marks_processes: AtomicBool::new(false),
            keep: Mutex::new(settings.keep),
            keep_ttl: settings.keep_ttl,
            farewell: Farewell::new(settings.logs, settings.log_lines, reader),
        }
    }

    /// The Docker name of a resource of this scope.
    pub(crate) fn name_for(&self, logical: &str) -> String {
        naming::resource_name(&self.prefix, logical)
    }

    /// The scope's labels, handed out: whatever receives them may create resources.
    pub(crate) fn shared_labels(&self) -> &HashMap<String, String> {
        self.mark_used();
        &self.labels
    }

    /// The first time: records the scope in its session, so that what a program made under
    /// its identity is adopted on every exit path, a kill included.
    pub(crate) fn mark_used(&self) {
        if !self.used.swap(true, Ordering::Relaxed) {
            adopt::record(&self.session_dir, &self.task_id, &self.prefix, false);
        }
    }

    /// The marker handed to a host process: `(variable, value)`. The first time, the scope
    /// is recorded as one whose processes every exit path looks for.
    pub(crate) fn process_marker(&self) -> (&'static str, &str) {
        self.mark_used();
        if !self.marks_processes.swap(true, Ordering::Relaxed) {
            adopt::record(&self.session_dir, &self.task_id, &self.prefix, true);
        }
        (procs::MARKER, &self.task_id)
    }

    /// The context's checks ran: it may have made something.
    pub(crate) fn mark_prepared(&self) {
        self.prepared.store(true, Ordering::Relaxed);
    }

    pub(crate) fn prepared(&self) -> bool {
        self.prepared.load(Ordering::Relaxed)
    }

    pub(crate) fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn track(&self, r: Resource) {
        LIVE.fetch_add(1, Ordering::SeqCst);
        session::reinstate_owner();
        if let Ok(mut c) = self.created.lock() {
            c.add(r.kind);
        }
        if let Ok(mut ids) = self.created_ids.lock() {
            ids.insert(r.id.clone());
        }
        if let Ok(mut t) = self.tracked.lock() {
            t.push(r);
        }
    }

    pub(crate) fn untrack(&self, id: &str) {
        if let Ok(mut t) = self.tracked.lock() {
            let before = t.len();
            t.retain(|r| r.id != id);
            if t.len() < before {
                self.gone(before - t.len());
            }
        }
    }

    /// `n` tracked resources are confirmed gone. When nothing of this process's own is left,
    /// its owner file is withdrawn (see `session::withdraw_owner`). Released resources stay
    /// counted: they outlive their context on purpose, and go with the process's death.
    fn gone(&self, n: usize) {
        let left =
            if n == 0 { LIVE.load(Ordering::SeqCst) } else { LIVE.fetch_sub(n, Ordering::SeqCst).saturating_sub(n) };
        let me = crate::owner::Owner::current().to_string();
        if left == 0 && adopt::records(&self.session_dir, |_| true).iter().all(|(_, r)| r.owner != me) {
            session::withdraw_owner();
        }
    }

    pub(crate) fn has_tracked(&self) -> bool {
        self.tracked.lock().map(|t| !t.is_empty()).unwrap_or(false)
    }

    pub(crate) fn tracked_count(&self) -> usize {
        self.tracked.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// Stops tracking everything: the caller takes it over.
    pub(crate) fn release(&self) -> Vec<Resource> {
        self.tracked.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }

    /// The labels for a new resource: the scope's over the caller's own, plus a keep label
    /// when keeping is on.
    pub(crate) fn labels_for_new(&self, extra: &HashMap<String, String>) -> HashMap<String, String> {
        session::reinstate_owner();
        let mut l = extra.clone();
        l.extend(self.labels.clone());
        if self.keep_policy() != KeepPolicy::Never {
            let until = labels::unix_now() + self.keep_ttl.as_secs();
            l.insert(labels::KEEP_UNTIL.to_string(), until.to_string());
        }
        l
    }

    pub(crate) fn set_keep(&self, policy: KeepPolicy) {
        if let Ok(mut k) = self.keep.lock() {
            *k = policy;
        }
    }

    fn keep_policy(&self) -> KeepPolicy {
        self.keep.lock().map(|k| *k).unwrap_or(KeepPolicy::Never)
    }

    /// Whether teardown should leave things in place now. Asked on the caller's thread:
    /// whether a test failed is whether *its* thread is panicking, which the harness's own
    /// threads cannot see.
    pub(crate) fn keeping_now(&self) -> bool {
        match self.keep_policy() {
            KeepPolicy::Never => false,
            KeepPolicy::Always => true,
            KeepPolicy::OnFailure => std::thread::panicking(),
        }
    }

    pub(crate) fn set_budget(&self, budget: Counts) {
        if let Ok(mut b) = self.budget.lock() {
            *b = Some(budget);
        }
        self.record_counts("budget", budget);
    }

    /// Appends the counts to the session's `declared.jsonl`, which audits read.
    pub(crate) fn record_counts(&self, what: &str, c: Counts) {
        if let Ok(sess) = session::current() {
            let record = serde_json::json!({
                "what": what, "task": self.task_id, "test": self.test_name,
                "containers": c.containers, "networks": c.networks, "volumes": c.volumes, "images": c.images,
            });
            if let Err(e) = session::append_record(&sess.state_dir().join("declared.jsonl"), &record) {
                eprintln!("docker-harness: could not record the {what} counts of {}: {e}", self.test_name);
            }
        }
    }

    /// Removes everything tracked and everything adoptable (the task label, or a name that
    /// starts with the prefix), in dependency order, unless `keep`. What could not be
    /// removed stays tracked, for a later attempt. First, followers are drained and, when
    /// `show_logs`, every container's last lines are held for the caller to print.
    pub(crate) async fn teardown(
        &self,
        docker: &Docker,
        keep: bool,
        show_logs: bool,
    ) -> crate::error::Result<TeardownReport> {
        let mut report = TeardownReport {
            created: self.created.lock().map(|c| *c).unwrap_or_default(),
            budget: self.budget.lock().map(|b| *b).unwrap_or_default(),
            ..Default::default()
        };
        if !self.used() && !self.prepared() {
            return Ok(report);
        }
        if !keep && self.marks_processes.load(Ordering::Relaxed) {
            // First: a daemon left running could go on creating what is removed below.
            let (ended, survivors) = adopt::end_processes(vec![self.task_id.clone()]).await;
            for p in &survivors {
                eprintln!("docker-harness: host process {} ({}) of {} outlived SIGKILL", p.pid, p.command, self.prefix);
            }
            report.created.processes = ended.len() + survivors.len();
            report.processes = ended.into_iter().map(|p| EndedProcess::new(p.pid, p.command)).collect();
        }
        let known = self.created_ids.lock().map(|k| k.clone()).unwrap_or_default();
        // Only an identity that was handed out can have been used by anything but the
        // harness, whose own resources are tracked: the listing is skipped otherwise (what a
        // create cut off mid-answer left carries this process's owner label, for the
        // watcher and the sweeps).
        if self.used() {
            report.adopted = adopt::find(docker, &[(&self.task_id, &self.prefix)], &known).await?;
        }
        for r in &report.adopted {
            report.created.add(r.kind);
        }
        report.unlabelled = report.adopted.iter().filter(|r| adopt::unlabelled(r)).cloned().collect();
        let mut items = self.tracked.lock().map(|t| t.clone()).unwrap_or_default();
        items.extend(report.adopted.iter().cloned());
        let said = self.farewell.before_removal(docker, &items, show_logs).await;
        self.farewell.hold(said);
        if keep {
            report_kept(&self.task_id, &items);
            report.kept = true;
            // Kept on purpose: no adoption after this process is gone either.
            adopt::forget(&self.session_dir, &self.task_id);
            return Ok(report);
        }
        let failures = removal::remove_in_order(docker, &items).await;
        let removed = match self.tracked.lock() {
            Ok(mut t) => {
                let before = t.len();
                t.retain(|r| removal::failed_to_remove(&failures, r));
                before - t.len()
            }
            Err(_) => 0,
        };
        if failures.is_empty() {
            adopt::forget(&self.session_dir, &self.task_id);
        }
        self.gone(removed);
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(Error::Cleanup(failures))
        }
    }
}

/// The current test's name: `NEXTEST_TEST_NAME`, else the thread's name (libtest names each
/// test's thread after it), else `None`.
pub(crate) fn running_test_name() -> Option<String> {
    if let Ok(n) = std::env::var("NEXTEST_TEST_NAME") {
        if !n.is_empty() {
            return Some(n);
        }
    }
    let thread = std::thread::current();
    match thread.name() {
        Some("main") | None => None,
        Some(n) if n.starts_with("tokio-runtime-worker") || n.starts_with("docker-harness") => None,
        Some(n) => Some(n.to_string()),
    }
}

/// A scope's teardown with the process's client.
pub(crate) async fn teardown(scope: Arc<Scope>, keep: bool, show_logs: bool) -> crate::error::Result<TeardownReport> {
    let report =
        docker::calls::why("teardown", async { scope.teardown(&docker::client().await?, keep, show_logs).await }).await;
    docker::calls::flush();
    report
}

/// Teardown from a Drop: bounded by `limit`, every failure said on stderr (one line a
/// resource), never a panic. Returns the report when teardown finished. The containers'
/// last lines, when the test failed, come first, printed from the caller's thread.
pub(crate) fn teardown_bounded(scope: &Arc<Scope>, keep: bool, limit: Duration) -> Option<TeardownReport> {
    let prefix = scope.prefix.clone();
    let show_logs = scope.farewell.shows_at_end();
    let outcome = blocking::wait(teardown(scope.clone(), keep, show_logs), limit);
    // Held blocks are shown only for a failed test (or always): a passing one forgets them.
    let said = scope.farewell.take_held();
    if show_logs {
        farewell::print(&said);
    }
    match outcome {
        Some(Ok(report)) => {
            for r in &report.unlabelled {
                eprintln!("docker-harness: adopted {r}, which lacks the docker-harness labels it was handed");
            }
            Some(report)
        }
        Some(Err(Error::Cleanup(failures))) => {
            for f in failures {
                eprintln!("docker-harness: could not remove {} {}: {}", f.kind, f.name, f.error);
            }
            None
        }
        Some(Err(e)) => {
            eprintln!("docker-harness: teardown of {prefix} failed: {e}");
            None
        }
        None => {
            let secs = limit.as_secs();
            eprintln!("docker-harness: teardown of {prefix} did not finish within {secs}s; the next sweep removes what is left");
            None
        }
    }
}

/// Prints what is being kept and the one command that removes it later.
fn report_kept(task_id: &str, items: &[Resource]) {
    if items.is_empty() {
        return;
    }
    let names: Vec<String> = items.iter().map(ToString::to_string).collect();
    eprintln!(
        "docker-harness: keeping for debugging: {}; remove with: docker-harness clean --task {task_id} ({CLI_INSTALL})",
        names.join(", ")
    );
}
