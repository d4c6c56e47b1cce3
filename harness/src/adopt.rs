//! Adoption: what a program under test created under a context's identity (its task label,
//! or a name that starts with its prefix) is removed with the context's own resources,
//! whoever created it. The prefix is checked exactly on the returned names; Docker's name
//! filter is never used, since it matches substrings anywhere in a name.
//!
//! A context that may have handed its identity out is recorded in its session's state
//! (`contexts/<task>.json`, with its owner), so that adoption happens on every exit path:
//! at teardown, on SIGTERM, by the watcher after a SIGKILL, and by a later pre-test check,
//! each only for owners that are gone (or, on SIGTERM, for this very process).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::owner::{procs, Liveness, Owner};
use crate::resource::Resource;
use crate::{labels, removal, session};

/// A context's identity as its session records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) task: String,
    pub(crate) prefix: String,
    pub(crate) owner: String,
    /// Whether the context handed its marker to host processes (see `owner::procs`).
    #[serde(default)]
    pub(crate) processes: bool,
}

impl Record {
    /// A prefix is what adoption matches names against: a record that was damaged (or
    /// written by something else) must never make it match more than one context's names.
    fn is_sound(&self) -> bool {
        let short: String = self.task.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
        short.len() == 8 && self.prefix.starts_with("dh-") && self.prefix.ends_with(&format!("-{short}"))
    }
}

fn records_dir(session_dir: &Path) -> PathBuf {
    session_dir.join("contexts")
}

/// Records a context; a failure is said on stderr and costs only adoption after a kill.
pub(crate) fn record(session_dir: &Path, task: &str, prefix: &str, processes: bool) {
    let owner = Owner::current().to_string();
    let r = Record { task: task.to_string(), prefix: prefix.to_string(), owner, processes };
    let dir = records_dir(session_dir);
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| session::write_json(&dir.join(format!("{task}.json")), &r).map_err(|e| e.to_string()));
    if let Err(e) = written {
        eprintln!("docker-harness: could not record context {prefix} for adoption after a kill: {e}");
    }
}

/// Forgets a context whose teardown is done.
pub(crate) fn forget(session_dir: &Path, task: &str) {
    let _ = std::fs::remove_file(records_dir(session_dir).join(format!("{task}.json")));
}

/// The recorded contexts of one session whose owner `pick` accepts, with their files.
pub(crate) fn records(session_dir: &Path, pick: impl Fn(&Owner) -> bool) -> Vec<(PathBuf, Record)> {
    let entries = std::fs::read_dir(records_dir(session_dir)).into_iter().flatten().flatten();
    entries
        .filter_map(|e| {
            let r: Record = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            (r.is_sound() && pick(&Owner::parse(&r.owner)?)).then(|| (e.path(), r))
        })
        .collect()
}

/// Recorded contexts whose owner is seen dead (never one whose liveness is unknown).
pub(crate) fn orphaned_records(session_dir: &Path) -> Vec<(PathBuf, Record)> {
    records(session_dir, |o| o.liveness() == Liveness::Dead)
}

/// Ends the host processes left under these tasks' markers (their whole trees); returns
/// what was ended and what survived.
pub(crate) async fn end_processes(tasks: Vec<String>) -> (Vec<procs::Found>, Vec<procs::Found>) {
    if tasks.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // Reads /proc and waits out grace periods: not on the runtime's threads.
    let work = move || {
        let found: Vec<procs::Found> = tasks.iter().flat_map(|t| procs::marked(&procs::needle(t))).collect();
        let survivors = procs::end(&found);
        (found.into_iter().filter(|f| !survivors.contains(f)).collect(), survivors)
    };
    tokio::task::spawn_blocking(work).await.unwrap_or_default()
}

/// Removes what belongs to `records` (and ends the host processes under their markers),
/// then forgets those whose resources are all gone. Returns what was removed.
pub(crate) async fn adopt_recorded(docker: &Docker, found: Vec<(PathBuf, Record)>) -> Result<Vec<Resource>> {
    let records: Vec<Record> = found.iter().map(|(_, r)| r.clone()).collect();
    let marked: Vec<String> = records.iter().filter(|r| r.processes).map(|r| r.task.clone()).collect();
    let (ended, survivors) = end_processes(marked).await;
    for p in &ended {
        eprintln!("docker-harness: ended host process {} ({}) that a gone test's program left", p.pid, p.command);
    }
    for p in &survivors {
        eprintln!("docker-harness: host process {} ({}) outlived SIGKILL", p.pid, p.command);
    }
    let identities: Vec<(&str, &str)> = records.iter().map(|r| (r.task.as_str(), r.prefix.as_str())).collect();
    let items = find(docker, &identities, &HashSet::new()).await?;
    let failures = removal::remove_in_order(docker, &items).await;
    for (path, r) in &found {
        if !items.iter().any(|i| belongs(i, &r.task, &r.prefix) && removal::failed_to_remove(&failures, i)) {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(items.into_iter().filter(|i| !removal::failed_to_remove(&failures, i)).collect())
}

/// Everything on the daemon under one of these identities (`(task, prefix)`: its task
/// label, or a name that starts with its prefix), in one listing, except the IDs in
/// `known` (a context's own), session-shared resources (no test's) and resources still
/// inside a keep window (kept on purpose, by whoever kept them).
pub(crate) async fn find(
    docker: &Docker,
    identities: &[(&str, &str)],
    known: &HashSet<String>,
) -> Result<Vec<Resource>> {
    if identities.is_empty() {
        return Ok(Vec::new());
    }
    let now = labels::unix_now();
    let kept =
        |r: &Resource| r.labels.get(labels::KEEP_UNTIL).and_then(|v| v.parse::<u64>().ok()).is_some_and(|t| now < t);
    let all = removal::list_labelled(docker, &[]).await?;
    Ok(all
        .into_iter()
        .filter(|r| !known.contains(&r.id) && !r.labels.contains_key(labels::SHARED) && !kept(r))
        .filter(|r| identities.iter().any(|(task, prefix)| belongs(r, task, prefix)))
        .collect())
}

pub(crate) fn belongs(r: &Resource, task_id: &str, prefix: &str) -> bool {
    r.labels.get(labels::TASK).is_some_and(|t| t == task_id) || r.name.starts_with(prefix)
}

/// True when a resource lacks the managed label: the program under test did not stamp the
/// labels it was handed.
pub(crate) fn unlabelled(r: &Resource) -> bool {
    r.labels.get(labels::MANAGED).is_none_or(|v| v != "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Kind;
    use std::collections::HashMap;

    fn res(name: &str, labels: &[(&str, &str)]) -> Resource {
        Resource::new(Kind::Container, name, name)
            .with_labels(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>())
    }

    #[test]
    fn the_task_label_or_a_leading_prefix_makes_a_resource_ours() {
        let p = "dh-t-1234abcd";
        assert!(belongs(&res("anything", &[(labels::TASK, "task-1")]), "task-1", p));
        assert!(belongs(&res("dh-t-1234abcd-worker", &[]), "task-1", p));
        assert!(belongs(&res("dh-t-1234abcdjob", &[]), "task-1", p));
    }

    #[test]
    fn a_prefix_inside_a_name_or_another_task_is_not_ours() {
        let p = "dh-t-1234abcd";
        assert!(!belongs(&res("other-dh-t-1234abcd-x", &[]), "task-1", p));
        assert!(!belongs(&res("dh-t-1234abc", &[]), "task-1", p));
        assert!(!belongs(&res("x", &[(labels::TASK, "task-2")]), "task-1", p));
    }

    #[test]
    fn a_record_whose_prefix_is_not_its_tasks_is_ignored() {
        let dir = std::env::temp_dir().join(format!("dh-unit-adopt-{}", uuid::Uuid::new_v4()));
        for (task, prefix) in [("1234abcd-x", ""), ("1234abcd-x", "dh-"), ("1234abcd-x", "dh-t-99999999")] {
            record(&dir, task, prefix, false);
            assert!(records(&dir, |_| true).is_empty(), "{prefix:?} would adopt others' names");
            forget(&dir, task);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn records_are_read_back_by_their_owner_and_forgotten() {
        let dir = std::env::temp_dir().join(format!("dh-unit-adopt-{}", uuid::Uuid::new_v4()));
        record(&dir, "1234abcd-0000", "dh-t-1234abcd", false);
        let mine = records(&dir, |o| o == Owner::current());
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].1.prefix, "dh-t-1234abcd");
        assert!(records(&dir, |o| o != Owner::current()).is_empty());
        assert!(orphaned_records(&dir).is_empty(), "this process is not dead");
        forget(&dir, "1234abcd-0000");
        assert!(records(&dir, |_| true).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_the_managed_label_set_to_true_counts_as_labelled() {
        assert!(unlabelled(&res("x", &[])));
        assert!(unlabelled(&res("x", &[(labels::MANAGED, "false")])));
        assert!(!unlabelled(&res("x", &[(labels::MANAGED, "true")])));
    }
}
