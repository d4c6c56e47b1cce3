//! Host processes a program under test leaves running: a command made by the context
//! carries the test's marker, whatever it starts inherits it however it detaches, and the
//! teardown ends it all, as the watcher does after a SIGKILL and the next session's check
//! does without a watcher. A process without the marker is never signalled.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::marked;
use docker_harness::{Counts, TestContext};
use rstest::rstest;

/// The task runner, run through the context's command: its detached helper daemon is left
/// running when it returns.
async fn run_with_helper_daemon(ctx: &TestContext) -> anyhow::Result<()> {
    let image = docker_harness::session_image().await?.reference;
    let (bait_key, bait_value) = common::bait_label();
    let out = ctx
        .command(env!("CARGO_BIN_EXE_task-runner"))
        .args(["--task-id", "daemon", "--cmd", "true", "--image", &image, "--helper-daemon"])
        .args(["--name-prefix", &format!("{}-", ctx.prefix())])
        .args(["--mark", &format!("{bait_key}={bait_value}")])
        .args(ctx.label_args())
        .output()?;
    anyhow::ensure!(out.status.success(), "the task runner failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A process started without the marker, which nothing of the harness may touch; ended by
/// the test itself when it drops, whatever the test's outcome.
struct Canary(Child);

impl Canary {
    fn start() -> Canary {
        Canary(Command::new("sleep").arg("300").stdin(Stdio::null()).spawn().expect("sleep runs"))
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().is_ok_and(|s| s.is_none())
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[rstest]
#[tokio::test]
async fn a_helper_daemon_the_program_left_is_ended_at_teardown(
    #[values(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)] run: u32,
) -> anyhow::Result<()> {
    let ctx = TestContext::named(&format!("helper-daemon-{run}"))?;
    ctx.declare(Counts::new(1, 1, 1));
    let mut bystander = Canary::start();
    run_with_helper_daemon(&ctx).await?;
    let (_, task) = ctx.process_marker();
    let running = marked(task);
    assert_eq!(running.len(), 1, "the helper daemon, detached, still runs: {running:?}");
    let report = ctx.finish().await?;
    let ended: Vec<u32> = report.processes.iter().map(|p| p.pid).collect();
    let left = marked(task);
    let bystander_alive = bystander.alive();
    assert_eq!(ended, running, "the report names what was ended");
    assert!(report.processes[0].command.contains("serve-helper"), "{:?}", report.processes);
    assert!(left.is_empty(), "still running under the marker: {left:?}");
    assert!(bystander_alive, "a process without the marker was signalled");
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_leaves_a_helper_daemon() {
    common::as_child(|| async {
        let ctx = TestContext::named("helper-daemon-killed").unwrap();
        // A resource of its own first: that waits for its session's pre-test check.
        let _net = ctx.network("own").await.unwrap();
        run_with_helper_daemon(&ctx).await.unwrap();
        common::report("task", ctx.process_marker().1);
        common::report("ready", 1);
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

/// Starts the child in a session of its own under `state`, waits until its daemon runs,
/// SIGKILLs it, and returns the task whose marker the daemon carries.
fn killed_with_its_daemon(state: &std::path::Path, watcher: bool) -> String {
    let mut cmd = common::child("child_leaves_a_helper_daemon", &[]);
    common::own_session(&mut cmd, "daemon");
    cmd.env("DOCKER_HARNESS_STATE_DIR", state);
    if watcher {
        cmd.env_remove("DOCKER_HARNESS_WATCHER");
    }
    let (mut child, held) = common::spawn_holder(&mut cmd);
    assert_eq!(marked(&held.task).len(), 1, "the daemon runs before the kill");
    common::signal(&child, "KILL");
    child.wait().unwrap();
    held.task
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn a_sigkilled_tests_helper_daemon_is_ended_by_the_watcher() -> anyhow::Result<()> {
    let task = killed_with_its_daemon(&common::scratch_dir("daemon-watcher"), true);
    let killed = std::time::Instant::now();
    let gone = common::eventually(Duration::from_secs(30), || async { marked(&task).is_empty() }).await;
    println!("the watcher ended the daemon {:?} after the SIGKILL", killed.elapsed());
    assert!(gone, "the daemon outlived its killed test: {:?}", marked(&task));
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn without_a_watcher_the_next_sessions_check_ends_a_killed_tests_daemon() -> anyhow::Result<()> {
    let state = common::scratch_dir("daemon-check");
    let task = killed_with_its_daemon(&state, false);
    assert_eq!(marked(&task).len(), 1, "nothing ended it yet: no watcher, no check");
    let mut next = common::child("child_leaves_a_helper_daemon", &[]);
    common::own_session(&mut next, "next");
    next.env("DOCKER_HARNESS_STATE_DIR", &state).env("DOCKER_HARNESS_PREFLIGHT", "clean");
    let (mut child, held) = common::spawn_holder(&mut next);
    // Its first resource waited for its pre-test check, which ended the other's daemon.
    let left = marked(&task);
    common::signal(&child, "TERM");
    child.wait()?;
    let own_left = marked(&held.task);
    assert!(left.is_empty(), "the next session's check left the daemon running: {left:?}");
    assert!(own_left.is_empty(), "SIGTERM ends a test's own daemon too: {own_left:?}");
    Ok(())
}
