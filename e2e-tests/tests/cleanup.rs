//! Whatever ends a test, what it created is gone afterwards: guards dropped outside any
//! runtime, inside either tokio flavour, by a panic, or by an explicit `cleanup()`.

mod common;

use std::time::Duration;

use docker_harness::{ContainerSpec, Counts, TestContext};

use common::{assert_all_gone, raw, Made};

/// Creates one container (on the network, with the volume), one network and one volume.
async fn make_three(
    ctx: &TestContext,
) -> anyhow::Result<(docker_harness::ContainerGuard, docker_harness::NetworkGuard, docker_harness::VolumeGuard, Made)> {
    ctx.set_budget(Counts::new(1, 1, 1));
    let net = ctx.network("net").await?;
    let vol = ctx.volume("data").await?;
    let app = ctx
        .container(ContainerSpec::new("app").with_cmd(["sleep", "3600"]).with_network(&net).with_volume(&vol, "/data"))
        .await?;
    let made = Made { container: app.id().into(), network: net.id().into(), volume: vol.name().into() };
    Ok((app, net, vol, made))
}

#[test]
fn guards_dropped_outside_any_runtime_remove_their_resources() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ctx = TestContext::new()?;
    let (app, net, vol, made) = rt.block_on(make_three(&ctx))?;
    drop(rt); // no runtime anywhere on this thread now
    drop(app);
    drop(net);
    drop(vol);
    drop(ctx);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async { assert_all_gone(&raw().await, &made).await });
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn guards_dropped_inside_a_current_thread_runtime_remove_their_resources() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    let (app, net, vol, made) = make_three(&ctx).await?;
    drop((app, net, vol));
    assert_all_gone(&raw().await, &made).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_dropped_inside_a_multi_thread_runtime_remove_their_resources() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    let (app, net, vol, made) = make_three(&ctx).await?;
    drop((app, net, vol));
    assert_all_gone(&raw().await, &made).await;
    Ok(())
}

#[tokio::test]
async fn a_dropped_context_removes_what_its_guards_left_in_dependency_order() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    let (app, net, vol, made) = make_three(&ctx).await?;
    // The guards hand their resources to the context: the network is still in use by the
    // container and the volume still mounted, so only the right order removes all three.
    app.into_context();
    net.into_context();
    vol.into_context();
    drop(ctx);
    assert_all_gone(&raw().await, &made).await;
    Ok(())
}

#[test]
fn a_panicking_test_leaves_nothing_behind() -> anyhow::Result<()> {
    let made = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ctx = TestContext::new().unwrap();
        let (app, net, vol, made) = rt.block_on(make_three(&ctx)).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = (ctx, app, net, vol);
            panic!("the test body fails while holding all three");
        }));
        assert!(result.is_err());
        made
    })
    .join()
    .expect("the panic is caught inside the thread");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async { assert_all_gone(&raw().await, &made).await });
    Ok(())
}

#[tokio::test]
async fn explicit_cleanup_removes_everything_and_reports_success() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    let (app, net, vol, made) = make_three(&ctx).await?;
    app.into_context();
    net.into_context();
    vol.into_context();
    ctx.cleanup().await?;
    assert_all_gone(&raw().await, &made).await;
    // Nothing left to do, and saying so twice is fine.
    ctx.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_resource_removed_behind_the_harness_back_counts_as_cleaned() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 0, 0));
    let app = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
    let docker = raw().await;
    docker
        .remove_container(
            app.id(),
            Some(bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() }),
        )
        .await?;
    app.remove().await?; // Docker says 404: already gone is success
    ctx.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_container_whose_pid_1_ignores_sigterm_is_removed_by_force() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 0, 0));
    let app = ctx.container(ContainerSpec::new("stubborn").with_cmd(["sh", "-c", "trap '' TERM; sleep 3600"])).await?;
    let id = app.id().to_string();
    app.remove().await?;
    assert!(!common::container_exists(&raw().await, &id).await);
    Ok(())
}

#[tokio::test]
async fn exec_captures_stdout_stderr_and_the_exit_code() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 0, 0));
    let app = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
    let out = app.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]).await?;
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.exit_code, 3);
    assert!(!out.success());
    let ok = app.exec(["true"]).await?;
    assert!(ok.success());
    Ok(())
}

#[tokio::test]
async fn logs_hold_what_the_container_printed_on_each_stream() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 0, 0));
    let app = ctx
        .container(ContainerSpec::new("talker").with_cmd([
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; sleep 3600",
        ]))
        .await?;
    let seen = common::eventually(Duration::from_secs(10), || async {
        app.logs().await.map(|l| l.stdout.contains("to-stdout") && l.stderr.contains("to-stderr")).unwrap_or(false)
    })
    .await;
    assert!(seen, "logs were {:?}", app.logs().await?);
    Ok(())
}

#[tokio::test]
async fn env_user_and_workdir_reach_the_container() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 0, 0));
    let app = ctx
        .container(
            ContainerSpec::new("app")
                .with_cmd(["sleep", "3600"])
                .with_env("GREETING", "hello")
                .with_workdir("/tmp")
                .with_label("team", "e2e"),
        )
        .await?;
    assert_eq!(app.exec(["sh", "-c", "echo $GREETING"]).await?.stdout, "hello\n");
    assert_eq!(app.exec(["pwd"]).await?.stdout, "/tmp\n");
    let labels = app.inspect().await?.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("e2e"));
    Ok(())
}

#[tokio::test]
async fn a_container_created_only_is_not_running_until_started() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 0, 0));
    let app = ctx.container(ContainerSpec::new("later").with_cmd(["sleep", "3600"]).created_only()).await?;
    let running = |i: bollard::models::ContainerInspectResponse| i.state.and_then(|s| s.running).unwrap_or(false);
    assert!(!running(app.inspect().await?));
    app.start().await?;
    assert!(running(app.inspect().await?));
    Ok(())
}
