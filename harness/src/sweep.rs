//! Finding leftovers by label, sorting them by owner liveness, and removing the orphans.
//! Used by the pre-test check, by each context before it creates anything, and by the CLI.
//!
//! Only resources labelled `docker-harness.managed=true` are ever listed, and resources are
//! found by exact label filters, never by Docker's name filter (which matches substrings).

use std::time::Duration;

use bollard::Docker;

use crate::config::{settings, PreflightPolicy};
use crate::error::{CleanupFailure, Error, Result};
use crate::labels::{self, classify, Verdict};
use crate::resource::Resource;
use crate::{blocking, docker, owner, removal, session};

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
    let mut filters = vec![format!("{}=true", labels::MANAGED)];
    filters.extend_from_slice(extra);
    let host = owner::hostname();
    let now = labels::unix_now();
    let start_of = |pid: u32| owner::process_start(pid);
    Ok(removal::list_labelled(docker, &filters)
        .await?
        .into_iter()
        .map(|r| {
            let verdict = classify(&r.labels, &host, now, &start_of);
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
    report.removed = orphans.into_iter().filter(|r| !report.failed.iter().any(|f| f.name == r.name)).collect();
    report
}

/// Removes resources by label whatever their owner: for `clean`. Only ever resources with
/// the managed label. `extra` narrows it (`docker-harness.session=ID`, …).
pub async fn clean(extra: Vec<String>) -> Result<(Vec<Resource>, Vec<CleanupFailure>)> {
    blocking::run(async move {
        let docker = docker::client().await?;
        let all: Vec<Resource> = survey_with(&docker, &extra).await?.into_iter().map(|l| l.resource).collect();
        let failed = removal::remove_in_order(&docker, &all).await;
        let removed = all.into_iter().filter(|r| !failed.iter().any(|f| f.name == r.name)).collect();
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
/// of other sessions are handled by `DOCKER_HARNESS_PREFLIGHT`.
pub(crate) async fn preflight() -> Result<()> {
    let sess = session::current()?;
    session::once(sess.state_dir(), "preflight", Duration::from_secs(120), || async {
        let docker = docker::client().await?;
        apply_policy(&docker, &[], "pre-test check").await
    })
    .await
}

/// Before a test creates anything: orphans left by an earlier run of the same test.
/// Once per test name per process: earlier contexts of the same test in this process
/// belong to a live owner, so looking again could find nothing new to remove.
pub(crate) async fn same_test(test_name: &str) -> Result<()> {
    static CHECKED: once_cell::sync::Lazy<std::sync::Mutex<std::collections::HashSet<String>>> =
        once_cell::sync::Lazy::new(Default::default);
    if CHECKED.lock().map(|c| c.contains(test_name)).unwrap_or(false) {
        return Ok(());
    }
    let docker = docker::client().await?;
    let filter = vec![format!("{}={}", labels::TEST, test_name)];
    apply_policy(&docker, &filter, &format!("leftovers of {test_name}")).await?;
    if let Ok(mut c) = CHECKED.lock() {
        c.insert(test_name.to_string());
    }
    Ok(())
}
