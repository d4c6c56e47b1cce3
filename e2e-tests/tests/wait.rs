//! A container is handed to the test when it says it is ready, by whichever sign the test
//! trusts: a log line, a healthcheck, a port, an HTTP answer, an exit code or a probe. A wait
//! that cannot succeed says so with the container's state and logs; an exit fails it at once.

mod common;

use std::time::Duration;

use docker_harness::{ctx, ContainerSpec, Counts, Error, LogStream, TestContext, WaitFor};
use rstest::rstest;

use common::web::{get, slow_web, PORT};

fn sleeper(logical: &str, script: &str) -> ContainerSpec {
    ContainerSpec::new(logical).with_cmd(["sh", "-c", script])
}

#[rstest]
#[tokio::test]
async fn a_log_line_wait_hands_over_the_service_once_it_says_ready(ctx: TestContext) -> anyhow::Result<()> {
    // Declared for the suite's audit, which compares it with what Docker saw.
    ctx.declare(Counts::new(1, 0, 0));
    let web = ctx
        .container(slow_web("web", 2, "hello").with_exposed_port(PORT).with_wait(WaitFor::log_line("^ready$")))
        .await?;
    assert!(web.logs().await?.stdout.contains("ready\n"));
    web.wait_for(WaitFor::http(PORT, "/", 200)).await?;
    let (status, body) = get(web.host_port(PORT).await?, "/").await?;
    assert_eq!((status, body.as_str()), (200, "hello"));
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_log_wait_can_ask_for_the_third_line_on_stderr(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let ticker =
        ctx.container(sleeper("ticker", "for i in 1 2 3; do echo tick >&2; sleep 0.3; done; exec sleep 3600")).await?;
    ticker.wait_for(WaitFor::log_line("^tick$").on(LogStream::Stderr).times(3)).await?;
    let on_stdout = WaitFor::log_line("^tick$").on(LogStream::Stdout).with_timeout(Duration::from_secs(1));
    let err = ticker.wait_for(on_stdout).await.unwrap_err();
    assert!(matches!(err, Error::WaitTimeout(_)), "{err}");
    assert!(err.to_string().contains("on stdout"), "{err}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_healthcheck_wait_returns_once_docker_reports_healthy(ctx: TestContext) -> anyhow::Result<()> {
    // Podman runs healthchecks from systemd timers; without systemd none ever runs.
    if !std::path::Path::new("/run/systemd/system").exists()
        && common::skip_on_podman("Podman schedules healthchecks through systemd, which this machine does not run")
            .await
    {
        return Ok(());
    }
    ctx.declare(Counts::new(1, 0, 0));
    let svc = ctx
        .container(
            sleeper("svc", "sleep 1; touch /tmp/ok; exec sleep 3600")
                .with_healthcheck("test -f /tmp/ok", Duration::from_millis(200), 3)
                .with_wait(WaitFor::healthy()),
        )
        .await?;
    let health = svc.inspect().await?.state.and_then(|s| s.health).and_then(|h| h.status);
    assert_eq!(health.map(|h| h.to_string()).as_deref(), Some("healthy"));
    Ok(())
}

#[rstest]
#[tokio::test]
async fn waiting_for_health_without_a_healthcheck_fails_with_the_fix(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let plain = ctx.container(sleeper("plain", "exec sleep 3600")).await?;
    let err = plain.wait_for(WaitFor::healthy()).await.unwrap_err();
    assert!(matches!(err, Error::WaitImpossible { .. }), "{err}");
    assert!(err.to_string().contains("with_healthcheck"), "{err}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_port_wait_from_the_host_sees_the_published_port_open(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let web = ctx.container(slow_web("web", 2, "up").with_exposed_port(PORT).with_wait(WaitFor::port(PORT))).await?;
    // Open means something answers behind the port, not only Docker's proxy.
    let (status, _) = get(web.host_port(PORT).await?, "/").await?;
    assert_eq!(status, 200);
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_port_wait_inside_the_container_needs_no_published_port(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let web = ctx.container(slow_web("web", 2, "up").with_wait(WaitFor::port_inside(PORT))).await?;
    let out = web.exec(["wget", "-q", "-O", "-", &format!("http://127.0.0.1:{PORT}/")]).await?;
    assert_eq!(out.stdout, "up");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn an_http_wait_checks_the_status_it_was_told(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let web = ctx
        .container(slow_web("web", 1, "up").with_exposed_port(PORT).with_wait(WaitFor::http(PORT, "/", 200)))
        .await?;
    web.wait_for(WaitFor::http(PORT, "/missing", 404)).await?;
    let wrong = WaitFor::http(PORT, "/missing", 200).with_timeout(Duration::from_secs(2));
    let err = web.wait_for(wrong).await.unwrap_err();
    assert!(err.to_string().contains("answered 404"), "{err}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn an_exit_code_wait_returns_when_a_job_finishes_as_expected(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let job = ctx.container(sleeper("job", "sleep 1; echo migrated; exit 3").with_wait(WaitFor::exit_code(3))).await?;
    assert_eq!(job.inspect().await?.state.and_then(|s| s.exit_code), Some(3));
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_job_that_exits_with_another_code_fails_the_wait(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let err =
        ctx.container(sleeper("job", "echo boom >&2; exit 1").with_wait(WaitFor::exit_code(0))).await.unwrap_err();
    match &err {
        Error::ExitedWhileWaiting(f) => {
            assert_eq!(f.exit_code, Some(1));
            assert!(f.logs.iter().any(|l| l.contains("boom")), "{err}");
        }
        other => panic!("expected ExitedWhileWaiting, got {other}"),
    }
    Ok(())
}

#[rstest]
#[tokio::test]
async fn an_exec_probe_wait_returns_once_the_probe_succeeds(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let svc = ctx
        .container(
            sleeper("svc", "sleep 1; touch /tmp/ok; exec sleep 3600")
                .with_wait(WaitFor::exec(["test", "-f", "/tmp/ok"])),
        )
        .await?;
    assert!(svc.exec(["test", "-f", "/tmp/ok"]).await?.success());
    Ok(())
}

#[rstest]
#[tokio::test]
async fn strategies_compose_and_all_of_them_hold(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let ready = WaitFor::all([WaitFor::log_line("ready"), WaitFor::port(PORT), WaitFor::http(PORT, "/", 200)]);
    let web = ctx.container(slow_web("web", 1, "all").with_exposed_port(PORT).with_wait(ready)).await?;
    assert_eq!(get(web.host_port(PORT).await?, "/").await?.1, "all");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_timed_out_wait_names_the_strategy_the_state_and_the_last_twenty_log_lines(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let chatty =
        ctx.container(sleeper("chatty", "for i in $(seq 1 30); do echo line-$i; done; exec sleep 3600")).await?;
    chatty.wait_for(WaitFor::log_line("line-30")).await?;
    let err =
        chatty.wait_for(WaitFor::log_line("never-printed").with_timeout(Duration::from_secs(2))).await.unwrap_err();
    let text = err.to_string();
    match &err {
        Error::WaitTimeout(f) => {
            assert!(f.strategy.contains("/never-printed/"), "{text}");
            assert!(f.state.starts_with("running"), "{text}");
            assert_eq!(f.exit_code, None);
            assert_eq!(f.logs.len(), 20, "{text}");
            assert!(f.logs.last().is_some_and(|l| l.ends_with("line-30")), "{text}");
            assert!(!text.contains("line-10\n"), "only the tail is reported: {text}");
        }
        other => panic!("expected WaitTimeout, got {other}"),
    }
    assert!(text.contains(chatty.name()) && text.contains("help:"), "{text}");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_container_that_exits_while_waited_on_fails_the_wait_at_once(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    // The timeout is far longer than any test may take: only the exit can end this wait.
    let ready = WaitFor::log_line("^ready$").with_timeout(Duration::from_secs(600));
    let err = ctx
        .container(sleeper("crashy", "echo starting; echo 'fatal: no config' >&2; exit 7").with_wait(ready))
        .await
        .unwrap_err();
    match &err {
        Error::ExitedWhileWaiting(f) => {
            assert_eq!(f.exit_code, Some(7));
            assert!(f.strategy.contains("/^ready$/"), "{err}");
            assert!(f.logs.iter().any(|l| l == "stderr: fatal: no config"), "{err}");
        }
        other => panic!("expected ExitedWhileWaiting, got {other}"),
    }
    Ok(())
}

#[rstest]
#[tokio::test]
async fn a_failed_wait_at_creation_leaves_no_container_behind(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let name = ctx.name_for("crashy");
    let _ = ctx.container(sleeper("crashy", "exit 1").with_wait(WaitFor::log_line("never"))).await.unwrap_err();
    let d = common::raw().await;
    assert!(!common::container_exists(&d, &name).await, "{name} is still there");
    Ok(())
}
