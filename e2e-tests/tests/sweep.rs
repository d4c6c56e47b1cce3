//! Leftovers: what a SIGKILL leaves is swept once its owner is gone; a live owner's
//! resources are never touched, whatever its session; kept resources wait for their
//! expiry; the `fail` policy stops a session; nothing without the managed label is touched.
//! These tests make orphans on purpose, so they run one at a time, within a run (the
//! `daemon-exclusive` test group) and across runs at once on one host (a file lock):
//! another one's sweep would remove them early.

mod common;

use std::collections::HashMap;

use docker_harness::{sweep, Counts, TestContext};

use common::{raw, spawn_holder, Held, RawTrio};

#[test]
#[ignore = "run as a child"]
fn child_holds_resources() {
    common::holder_role();
}

/// A holder that is then SIGKILLed: its resources stay, owned by a dead process.
async fn orphans_of_a_killed_holder(test_name: &str) -> Held {
    let mut cmd = common::child("child_holds_resources", &[("DH_TEST_NAME", test_name)]);
    // A session of its own without a watcher: this session's watcher would remove the
    // orphans on its own before the sweep under test could.
    common::own_session(&mut cmd, "orphans");
    let (mut child, held) = spawn_holder(&mut cmd);
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    assert_eq!(held.count_present(&raw().await).await, held.total(), "SIGKILL ran no cleanup");
    held
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn a_sigkilled_process_leaves_orphans_that_the_sweep_removes() -> anyhow::Result<()> {
    let held = orphans_of_a_killed_holder(&common::unique("killed")).await;
    let report = sweep::reap().await?;
    assert_eq!(held.count_present(&raw().await).await, 0, "{held:?} survived the sweep");
    for id in held.containers.iter().chain(&held.networks).chain(&held.volumes) {
        assert!(report.removed.iter().any(|r| &r.id == id), "{id} not in the report");
    }
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn a_live_owner_of_another_session_is_never_swept() -> anyhow::Result<()> {
    let mut cmd = common::child("child_holds_resources", &[("DH_TEST_NAME", &common::unique("alive"))]);
    common::own_session(&mut cmd, "alive");
    let (mut child, held) = spawn_holder(&mut cmd);
    let report = sweep::reap().await?;
    let docker = raw().await;
    let present = held.count_present(&docker).await;
    common::signal(&child, "TERM");
    child.wait()?;
    assert_eq!(present, held.total(), "the sweep removed a live owner's resources");
    assert!(report.owned >= held.total());
    assert_eq!(held.count_present(&docker).await, 0);
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn an_earlier_run_of_the_same_test_is_cleaned_before_the_test_creates_anything() -> anyhow::Result<()> {
    let name = common::unique("rerun");
    let held = orphans_of_a_killed_holder(&name).await;
    let ctx = TestContext::named(&name)?;
    ctx.set_budget(Counts::new(0, 1, 0));
    let _net = ctx.network("fresh").await?; // the per-test check runs before this
    assert_eq!(held.count_present(&raw().await).await, 0, "the earlier run's orphans are still there");
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_creates_a_network() {
    if !common::is_child() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ctx = TestContext::named("fail-policy").unwrap();
        if let Err(e) = ctx.network("n").await {
            panic!("{e}");
        }
    });
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn the_fail_policy_lists_the_orphans_and_stops_the_session() -> anyhow::Result<()> {
    let held = orphans_of_a_killed_holder(&common::unique("fail")).await;
    let mut cmd = common::child("child_creates_a_network", &[]);
    common::own_session(&mut cmd, "fail");
    cmd.env("DOCKER_HARNESS_PREFLIGHT", "fail");
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child went on despite orphans");
    assert!(stderr.contains("orphaned resource(s)"), "{stderr}");
    assert!(stderr.contains("`docker-harness reap`"), "no removal command: {stderr}");
    assert!(stderr.contains("cargo install docker-harness-cli"), "no way to get the command: {stderr}");
    let docker = raw().await;
    for id in &held.containers {
        let name = docker.inspect_container(id, None).await?.name.unwrap_or_default();
        assert!(stderr.contains(name.trim_start_matches('/')), "{name} not listed: {stderr}");
    }
    assert_eq!(held.count_present(&docker).await, held.total(), "fail must not remove anything");
    sweep::reap().await?;
    assert_eq!(held.count_present(&docker).await, 0);
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn kept_resources_survive_sweeps_until_cleaned_explicitly() -> anyhow::Result<()> {
    use futures_util::FutureExt;
    let name = common::unique("kept");
    let body = async {
        // Kept for a minute, not the default day, and as this test's bait: a run killed
        // before the clean below leaves them to the next run's bait sweep (this process is
        // gone by then) and, after the minute, to any sweep of the harness.
        let (bait_key, bait_owner) = common::bait_owner_env();
        let mut cmd = common::child(
            "child_holds_resources",
            &[
                ("DH_TEST_NAME", &name),
                ("DOCKER_HARNESS_KEEP", "always"),
                ("DOCKER_HARNESS_KEEP_TTL", "60"),
                ("DH_RETURN", "1"),
                (bait_key, &bait_owner),
            ],
        );
        let (child, held) = spawn_holder(&mut cmd);
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("keeping for debugging"), "{stderr}");
        assert!(stderr.contains(&format!("clean --task {}", held.task)), "{stderr}");
        let docker = raw().await;
        assert_eq!(held.count_present(&docker).await, held.total(), "keep=always removed something");
        let report = sweep::reap().await?;
        assert_eq!(held.count_present(&docker).await, held.total(), "the sweep removed kept resources");
        assert!(report.kept >= held.total());
        let (removed, failed) = sweep::clean(vec![format!("docker-harness.task={}", held.task)]).await?;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(removed.len(), held.total());
        assert_eq!(held.count_present(&docker).await, 0);
        anyhow::Ok(())
    };
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    // Kept resources outlive every sweep for their minute: a failure above must not leave them.
    sweep::clean(vec![format!("docker-harness.test={name}")]).await?;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn nothing_without_the_managed_label_is_ever_touched() -> anyhow::Result<()> {
    let docker = raw().await;
    // Bait: a harness-like name and every harness label but `managed`, owned by a dead PID
    // (and the suite's own bait label, which RawTrio adds).
    let name = common::unique("dh-canary");
    let task = uuid::Uuid::new_v4().to_string();
    let labels = HashMap::from([
        ("docker-harness.task".to_string(), task.clone()),
        ("docker-harness.owner".to_string(), format!("{}/999999/1", docker_harness::labels::hostname())),
        ("docker-harness.expires".to_string(), "1".to_string()),
    ]);
    let bait = RawTrio::create(&docker, &name, labels).await?;

    sweep::reap().await?;
    sweep::clean(vec![format!("docker-harness.task={task}")]).await?;
    let ctx = TestContext::named(&name)?; // its per-test check looks for this name too
    ctx.set_budget(Counts::new(0, 1, 0));
    ctx.network("n").await?;

    let survived = bait.present(&docker).await;
    bait.remove(&docker).await;
    assert_eq!(survived, (true, true, true), "an unmanaged resource was removed");
    Ok(())
}
