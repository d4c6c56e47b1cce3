//! Testing a program that creates its own containers: the sample task runner
//! (`src/bin/task-runner.rs`) gets the test's labels and name prefix; whatever it leaves
//! is adopted and removed at teardown, even when it crashes mid-task; what it failed to
//! label is reported; and a run that creates more than its budget fails with the numbers.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::InspectContainerOptions;
use docker_harness::{Counts, Error, Kind, TestContext};

use common::raw;

/// Runs the task runner with this context's identity plus `extra` arguments. What it makes
/// is also this test's bait (`--mark`), the volume `--unlabelled-volume` leaves without the
/// harness's labels included: a run killed before the teardown leaves nothing that the
/// next run's bait sweep does not find.
async fn task_runner(ctx: &TestContext, task: &str, cmd: &str, extra: &[&str]) -> anyhow::Result<Output> {
    let image = docker_harness::session_image().await?.reference;
    let (bait_key, bait_value) = common::bait_label();
    let out = Command::new(env!("CARGO_BIN_EXE_task-runner"))
        .args(["--task-id", task, "--cmd", cmd, "--image", &image, "--name-prefix", &format!("{}-", ctx.prefix())])
        .args(["--mark", &format!("{bait_key}={bait_value}")])
        .args(ctx.label_args())
        .args(extra)
        .output()?;
    Ok(out)
}

#[tokio::test]
async fn a_task_that_runs_to_the_end_cleans_up_after_itself() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 1, 1));
    let out = task_runner(&ctx, "ok", "echo hello from the task; exit 0", &[]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("hello from the task"), "{stdout}");
    let report = ctx.finish().await?;
    assert!(report.adopted.is_empty(), "the task runner left {:?}", report.adopted);
    Ok(())
}

#[tokio::test]
async fn a_task_runner_that_crashes_mid_task_leaves_nothing_after_the_test() -> anyhow::Result<()> {
    let docker = raw().await;
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 1, 1));
    let out = task_runner(&ctx, "crash", "sleep 3600", &["--crash"]).await?;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));

    // What the crash left: the task container, its anonymous volume, the network, the named volume.
    let name = format!("{}-task-crash", ctx.prefix());
    let info = docker.inspect_container(&name, None::<InspectContainerOptions>).await?;
    let anonymous: Vec<String> = info
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination.as_deref() == Some("/scratch"))
        .filter_map(|m| m.name)
        .collect();
    assert_eq!(anonymous.len(), 1, "the task has one anonymous volume");

    let report = ctx.finish().await?;
    let kinds: Vec<Kind> = report.adopted.iter().map(|r| r.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == Kind::Container).count(), 1, "{:?}", report.adopted);
    assert_eq!(kinds.iter().filter(|k| **k == Kind::Network).count(), 1, "{:?}", report.adopted);
    assert!(report.unlabelled.is_empty(), "everything carried the labels: {:?}", report.unlabelled);
    assert!(!common::container_exists(&docker, &name).await);
    assert!(!common::network_exists(&docker, &format!("{name}-net")).await);
    assert!(!common::volume_exists(&docker, &format!("{name}-data")).await);
    assert!(!common::volume_exists(&docker, &anonymous[0]).await, "the anonymous volume outlived its container");
    Ok(())
}

#[tokio::test]
async fn a_resource_the_program_did_not_label_is_reported_and_still_removed() -> anyhow::Result<()> {
    let docker = raw().await;
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 1, 1));
    let out = task_runner(&ctx, "unlabelled", "sleep 3600", &["--crash", "--unlabelled-volume"]).await?;
    assert_eq!(out.status.code(), Some(3));
    let report = ctx.finish().await?;
    let vol = format!("{}-task-unlabelled-data", ctx.prefix());
    let names: Vec<&str> = report.unlabelled.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec![vol.as_str()], "only the volume lacked the labels");
    assert!(!common::volume_exists(&docker, &vol).await, "adopted by its name prefix and removed");
    Ok(())
}

#[tokio::test]
async fn a_run_that_creates_more_than_its_budget_fails_with_the_numbers() -> anyhow::Result<()> {
    let docker = raw().await;
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 1, 1));
    // What it really creates, for the suite's ledger: this test is about the overrun.
    ctx.declare(Counts::new(4, 1, 1));
    let out = task_runner(&ctx, "greedy", "sleep 3600", &["--crash", "--extra-containers", "3"]).await?;
    assert_eq!(out.status.code(), Some(3));
    match ctx.finish().await {
        Err(Error::BudgetExceeded { over, report }) => {
            assert_eq!(over, vec!["containers: 4 created, budget 1".to_string()]);
            assert_eq!(report.created, Counts::new(4, 1, 1));
            for r in &report.adopted {
                assert!(
                    !match r.kind {
                        Kind::Container => common::container_exists(&docker, &r.id).await,
                        Kind::Network => common::network_exists(&docker, &r.id).await,
                        Kind::Volume => common::volume_exists(&docker, &r.id).await,
                        other => panic!("this test adopts no {other}"),
                    },
                    "{r} was not removed"
                );
            }
        }
        other => panic!("expected the budget to fail, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
#[should_panic(expected = "resource budget exceeded: networks: 2 created, budget 1")]
async fn a_test_relying_on_drop_fails_when_its_budget_is_exceeded() {
    let ctx = TestContext::new().unwrap();
    ctx.set_budget(Counts::new(0, 1, 0));
    ctx.declare(Counts::new(0, 2, 0));
    let _a = ctx.network("a").await.unwrap();
    let _b = ctx.network("b").await.unwrap();
    drop((_a, _b));
    // ctx drops here: its teardown counts two networks against a budget of one.
}

#[tokio::test]
async fn a_name_that_merely_contains_the_prefix_is_not_adopted() -> anyhow::Result<()> {
    let docker = raw().await;
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 1, 0)); // the bait carries the prefix inside its name
    let bait = format!("zz-{}-bait", ctx.prefix());
    let labels = HashMap::from([common::bait_label()]);
    let n = docker
        .create_network(NetworkCreateRequest { name: bait.clone(), labels: Some(labels), ..Default::default() })
        .await?;
    let report = ctx.finish().await;
    let survived = common::network_exists(&docker, &n.id).await;
    docker.remove_network(&n.id).await?;
    assert!(report?.adopted.is_empty());
    assert!(survived, "{bait} was removed by a substring match");
    Ok(())
}
