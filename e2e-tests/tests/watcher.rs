//! The host-side watcher: when a test process is SIGKILLed, its resources are removed within
//! seconds, with no reaper image; a live owner's resources are never touched; and the
//! watcher leaves by itself once its session is over.

mod common;

use std::time::{Duration, Instant};

use common::{raw, spawn_holder};

#[test]
#[ignore = "run as a child"]
fn child_holds_resources() {
    common::holder_role();
}

fn watcher_pid(state: &std::path::Path, session: &str) -> Option<u32> {
    let text = std::fs::read_to_string(state.join("sessions").join(session).join("watcher.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn a_sigkilled_test_process_is_cleaned_up_by_the_watcher_while_a_live_one_is_spared() -> anyhow::Result<()> {
    let docker = raw().await;
    let mut victim_cmd =
        common::child("child_holds_resources", &[("DH_SHAPE", "3,2,2"), ("DH_TEST_NAME", &common::unique("victim"))]);
    let session = common::own_session(&mut victim_cmd, "watched");
    let state = common::own_session_state(&session);
    victim_cmd.env_remove("DOCKER_HARNESS_WATCHER");
    let (mut victim, killed) = spawn_holder(&mut victim_cmd);

    // A second process of the same session, alive throughout.
    let mut bystander_cmd = common::child("child_holds_resources", &[("DH_TEST_NAME", &common::unique("bystander"))]);
    bystander_cmd
        .env_remove("NEXTEST_RUN_ID")
        .env("DOCKER_HARNESS_SESSION", &session)
        .env("DOCKER_HARNESS_STATE_DIR", &state)
        .env("DOCKER_HARNESS_PREFLIGHT", "warn");
    let (mut bystander, spared) = spawn_holder(&mut bystander_cmd);
    let watcher = watcher_pid(&state, &session).expect("the first process of the session started a watcher");

    victim.kill()?; // SIGKILL: no handler, no Drop
    victim.wait()?;
    let killed_at = Instant::now();
    let gone = common::eventually(Duration::from_secs(30), || async { killed.count_present(&docker).await == 0 }).await;
    println!("watcher: {} resources of the SIGKILLed process gone after {:?}", killed.total(), killed_at.elapsed());
    assert!(gone, "the watcher left {killed:?}");
    assert_eq!(spared.count_present(&docker).await, spared.total(), "the watcher touched a live owner's resources");

    common::signal(&bystander, "TERM");
    bystander.wait()?;
    // Nobody of the session is left: the watcher ends by itself.
    let alive = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    let ended = common::eventually(Duration::from_secs(30), || async { !alive(watcher) }).await;
    assert!(ended, "the watcher {watcher} is still running after its session ended");
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
