//! A container's lifecycle at a resilience test's hand: signals, pause, restart, stop and
//! start, networks joined and left while it runs, and execs with their environment, user,
//! directory, stdin and timeout. Each is read back from inside the container or from
//! Docker's own inspect.

mod common;

use std::time::Duration;

use docker_harness::bollard::models::ContainerStateStatusEnum;
use docker_harness::{ctx, Container, ContainerSpec, Counts, Error, ExecSpec, TestContext};
use rstest::rstest;

use common::{eventually, sh};

fn sleeper(logical: &str) -> ContainerSpec {
    ContainerSpec::new(logical).with_cmd(["sleep", "3600"])
}

async fn status(c: &Container) -> anyhow::Result<Option<ContainerStateStatusEnum>> {
    Ok(c.inspect().await?.state.and_then(|s| s.status))
}

async fn resolves(from: &Container, name: &str) -> anyhow::Result<bool> {
    Ok(from.exec(["nslookup", name]).await?.success())
}

#[rstest]
#[tokio::test]
async fn kill_delivers_the_chosen_signal_to_the_main_process(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let script = "trap 'echo usr1 >> /tmp/got' USR1; while :; do sleep 1 & wait $!; done";
    let app = ctx.container(ContainerSpec::new("app").with_cmd(["sh", "-c", script])).await?;
    app.kill("SIGUSR1").await?;
    let seen = eventually(Duration::from_secs(10), || async {
        app.exec(["cat", "/tmp/got"]).await.is_ok_and(|o| o.stdout == "usr1\n")
    })
    .await;
    assert!(seen, "the trap never ran");
    assert_eq!(status(&app).await?, Some(ContainerStateStatusEnum::RUNNING), "a handled signal ended it");
    match app.kill("SIGNOPE").await {
        Err(Error::InvalidOption { container, option, .. }) => {
            assert_eq!((container.as_str(), option), (app.name(), "signal"));
        }
        other => panic!("expected an invalid signal, got {other:?}"),
    }
    Ok(())
}

#[rstest]
#[tokio::test]
async fn pause_freezes_the_container_and_unpause_thaws_it(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app")).await?;
    app.pause().await?;
    let state = app.inspect().await?.state.unwrap_or_default();
    assert_eq!((state.status, state.paused), (Some(ContainerStateStatusEnum::PAUSED), Some(true)));
    let refused = app.exec(["true"]).await.expect_err("an exec in a paused container");
    assert!(refused.is_conflict(), "{refused}");
    app.unpause().await?;
    assert_eq!(status(&app).await?, Some(ContainerStateStatusEnum::RUNNING));
    assert!(app.exec(["true"]).await?.success());
    Ok(())
}

#[rstest]
#[tokio::test]
async fn restart_starts_the_container_anew(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app")).await?;
    app.exec(["touch", "/tmp/before"]).await?;
    let before = app.inspect().await?.state.and_then(|s| s.started_at);
    app.restart(Duration::from_secs(1)).await?;
    let after = app.inspect().await?.state.and_then(|s| s.started_at);
    assert!(before.is_some() && after.is_some() && before != after, "StartedAt {before:?} -> {after:?}");
    assert_eq!(status(&app).await?, Some(ContainerStateStatusEnum::RUNNING));
    // The same container (its filesystem kept), not a new one.
    assert!(app.exec(["test", "-f", "/tmp/before"]).await?.success());
    Ok(())
}

#[rstest]
#[tokio::test]
async fn stop_and_start_again_are_idempotent(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app")).await?;
    app.stop(Duration::from_secs(1)).await?;
    assert_eq!(status(&app).await?, Some(ContainerStateStatusEnum::EXITED));
    app.stop(Duration::from_secs(1)).await?;
    app.start().await?;
    app.start().await?;
    assert_eq!(status(&app).await?, Some(ContainerStateStatusEnum::RUNNING));
    assert!(app.exec(["true"]).await?.success());
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_network_joined_later_makes_the_alias_resolvable_and_leaving_it_undoes_that(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 1, 0));
    let net = ctx.network("net").await?;
    let client = ctx.container(sleeper("client").with_network(&net)).await?;
    let server = ctx.container(sleeper("server")).await?;
    assert!(!resolves(&client, "db").await?, "db resolved before the server joined");
    server.connect(&net, &["db"]).await?;
    assert!(resolves(&client, "db").await?, "the alias given on connect does not resolve");
    assert!(client.exec(["ping", "-c", "1", "-W", "2", "db"]).await?.success());
    server.disconnect(&net).await?;
    assert!(!resolves(&client, "db").await?, "db still resolves after the server left");
    server.connect_named(net.name(), &["cache"]).await?;
    assert!(resolves(&client, "cache").await?, "connecting by the network's name");
    server.disconnect_named(net.name()).await?;
    Ok(())
}

#[rstest]
#[tokio::test]
async fn exec_runs_with_the_environment_user_and_directory_given(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app").with_env("MODE", "container")).await?;
    let spec = ExecSpec::new(["sh", "-c", "echo $MODE $EXTRA; id -u; id -g; pwd"])
        .with_env("MODE", "exec")
        .with_env("EXTRA", "yes")
        .with_user("1000:1001")
        .with_workdir("/tmp");
    let out = app.exec_with(spec).await?;
    assert_eq!(out.stdout, "exec yes\n1000\n1001\n/tmp\n", "{}", out.stderr);
    assert_eq!(sh(&app, "echo $MODE; id -u; pwd").await?, "container\n0\n/", "the defaults are the container's");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn exec_feeds_stdin_and_then_closes_it(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app")).await?;
    let out = app
        .exec_with(ExecSpec::new(["sh", "-c", "cat; echo end"]).with_stdin(b"line one\nline two\n".to_vec()))
        .await?;
    assert_eq!(out.stdout, "line one\nline two\nend\n");
    // More than any pipe holds, echoed back while it is written: nothing stalls.
    let big: Vec<u8> = (0..4u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let out =
        app.exec_with(ExecSpec::new(["cat"]).with_stdin(big.clone()).with_timeout(Duration::from_secs(60))).await?;
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout.as_bytes() == big.as_slice(), "the bytes came back changed");
    // A command that never reads its stdin is no error.
    assert_eq!(app.exec_with(ExecSpec::new(["echo", "ignored"]).with_stdin(big)).await?.stdout, "ignored\n");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn an_exec_past_its_timeout_is_an_error_naming_the_container_and_command(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let app = ctx.container(sleeper("app")).await?;
    let spec = ExecSpec::new(["sleep", "30"]).with_timeout(Duration::from_millis(500));
    let err = app.exec_with(spec).await.expect_err("sleep 30 within half a second");
    match &err {
        Error::ExecTimeout { container, cmd, after } => {
            assert_eq!((container.as_str(), *after), (app.name(), Duration::from_millis(500)));
            assert_eq!(cmd, &["sleep", "30"]);
        }
        other => panic!("expected ExecTimeout, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(app.name()) && text.contains("\"sleep\", \"30\"") && text.contains("help:"), "{text}");
    // One that ends in time is unaffected by its timeout.
    let quick = app.exec_with(ExecSpec::new(["echo", "on time"]).with_timeout(Duration::from_secs(30))).await?;
    assert_eq!(quick.stdout, "on time\n");
    Ok(())
}
