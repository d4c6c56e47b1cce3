//! A daemon shared with other machines (a remote `DOCKER_HOST`, a CI daemon several hosts
//! use): this host cannot tell whether another host's process is alive, so that host's
//! resources are swept only once their expiry has passed, and never before, whatever
//! this host's process table says about the PID in their owner label.
//!
//! The resources are made with raw bollard, labelled as another host would label them.
//! They carry a session ID of their own, not this run's, and names without the `dh-`
//! prefix or a task ID, so this run's ledger never counts them as its own. They also carry
//! the suite's bait label, and expire within two minutes, so a run killed midway leaves
//! them to the next run's bait sweep, or to any harness sweep two minutes on. Like the
//! sweep tests they hold orphans (or near-orphans) on purpose, so they take the same file
//! lock: another test's sweep running meanwhile would remove them early.

mod common;

use std::collections::HashMap;

use bollard::Docker;
use docker_harness::labels::{EXPIRES, MANAGED, OWNER, SESSION};
use docker_harness::sweep;

use common::{raw, unix_now, RawTrio};

/// The owner label of a process on a machine that is not this one.
const OTHER_HOST_OWNER: &str = "other-host.example/1/1";

/// A container, a network and a volume of another host, all under one name, expiring at
/// `expires` (unix seconds).
async fn foreign(docker: &Docker, expires: u64) -> anyhow::Result<RawTrio> {
    let name = format!("remote-bait-{}", uuid::Uuid::new_v4().simple());
    let labels = HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (SESSION.to_string(), format!("remote-other-{}", uuid::Uuid::new_v4().simple())),
        (OWNER.to_string(), OTHER_HOST_OWNER.to_string()),
        (EXPIRES.to_string(), expires.to_string()),
    ]);
    RawTrio::create(docker, &name, labels).await
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn another_hosts_resources_survive_a_sweep_until_they_expire() -> anyhow::Result<()> {
    let docker = raw().await;
    // Two minutes ahead: far past the sweep just below, whatever the machine's load, and
    // soon enough that a run killed here leaves them for no longer than that.
    let foreign = foreign(&docker, unix_now() + 120).await?;
    let swept = sweep::reap().await;
    let present = foreign.present(&docker).await;
    // Removed here rather than left for a later sweep: unexpired, no sweep would take them.
    foreign.remove(&docker).await;
    let report = swept?;
    assert_eq!(present, (true, true, true), "a sweep removed another host's unexpired {}", foreign.name);
    assert!(report.owned >= 3, "{}", report.summary());
    assert!(!report.removed.iter().any(|r| r.name == foreign.name), "{}", report.summary());
    assert_eq!(foreign.present(&docker).await, (false, false, false), "{foreign:?} could not be removed");
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn another_hosts_resources_are_swept_once_expired() -> anyhow::Result<()> {
    let docker = raw().await;
    let foreign = foreign(&docker, unix_now() - 60).await?;
    let swept = sweep::reap().await;
    let present = foreign.present(&docker).await;
    foreign.remove(&docker).await;
    swept?;
    // Only absence is asserted, not this sweep's report: another session's pre-test check
    // on the same daemon (a parallel CI shard) may legitimately sweep them first.
    assert_eq!(present, (false, false, false), "a sweep spared another host's expired {}", foreign.name);
    Ok(())
}
