//! Any test name makes valid Docker names, and bad input gets a clear error.

mod common;

use docker_harness::{ContainerSpec, Counts, Error, TestContext};

#[tokio::test]
async fn strange_test_names_still_make_working_resources() -> anyhow::Result<()> {
    let long = "x".repeat(300);
    for name in ["module::sub::test", "spaces and\ttabs", "ünïcödé ✓ 测试", "../../etc/passwd", long.as_str()] {
        let ctx = TestContext::named(name)?;
        ctx.set_budget(Counts::new(1, 1, 0));
        let net = ctx.network("net").await?;
        let app =
            ctx.container(ContainerSpec::new("App Server").with_cmd(["sleep", "3600"]).with_network(&net)).await?;
        assert!(app.name().starts_with("dh-"), "{}", app.name());
        assert!(app.name().len() <= 80, "{} is too long", app.name());
        let labels = app.inspect().await?.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(labels.get("docker-harness.test").map(String::as_str), Some(&name[..name.len().min(512)]));
        ctx.cleanup().await?;
    }
    Ok(())
}

#[tokio::test]
async fn peers_on_a_network_reach_each_other_by_logical_name() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(2, 1, 0));
    let net = ctx.network("net").await?;
    let _server = ctx.container(ContainerSpec::new("server").with_cmd(["sleep", "3600"]).with_network(&net)).await?;
    let client = ctx.container(ContainerSpec::new("client").with_cmd(["sleep", "3600"]).with_network(&net)).await?;
    let out = client.exec(["ping", "-c", "1", "-W", "2", "server"]).await?;
    assert!(out.success(), "ping by logical name failed: {out:?}");
    Ok(())
}

#[tokio::test]
async fn a_missing_image_is_a_pull_error_naming_the_image_and_nothing_is_created() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(0, 0, 0));
    let image = "docker-harness-no-such-image:0";
    // Resolved like the session image: pulled (through the mirror when one is set), and the
    // registry's "no such image" is said once, without retries.
    let err = ctx.container(ContainerSpec::new("ghost").with_image(image)).await.unwrap_err();
    match &err {
        Error::ImagePull { image: named, not_found, attempts, .. } => {
            assert_eq!((named.as_str(), *not_found, *attempts), (image, true, 1), "{err}");
        }
        other => panic!("expected a pull error, got {other}"),
    }
    assert!(err.to_string().starts_with(&format!("pulling {image}")), "{err}");
    Ok(())
}

#[test]
#[ignore = "run as a child by the test below"]
fn child_reports_its_context_error() {
    if !common::is_child() {
        return;
    }
    match TestContext::new() {
        Ok(_) => println!("REPORT result=ok"),
        Err(e) => println!("REPORT result={}", e.to_string().replace('\n', " ")),
    }
}

#[test]
fn a_bad_environment_value_names_the_variable_and_the_fix() {
    let out = common::child("child_reports_its_context_error", &[("DOCKER_HARNESS_PULL", "sometimes")])
        .output()
        .expect("child runs");
    let r = common::reported(&out.stdout);
    let msg = r.get("result").expect("child reported");
    assert!(msg.contains("DOCKER_HARNESS_PULL=\"sometimes\""), "{msg}");
    assert!(msg.contains("missing, always or never"), "{msg}");
}

#[test]
#[ignore = "run as a child by the test below"]
fn child_tries_to_create_a_network() {
    if !common::is_child() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = std::time::Instant::now();
    let result = rt.block_on(async { TestContext::new().unwrap().network("net").await.map(drop) });
    println!("REPORT elapsed_ms={}", started.elapsed().as_millis());
    match result {
        Err(e @ Error::DaemonUnreachable { .. }) => println!("REPORT error={}", e.to_string().replace('\n', " ")),
        other => println!("REPORT error=unexpected {other:?}"),
    }
}

#[test]
fn a_daemon_that_is_down_fails_fast_with_what_was_tried_and_the_fix() {
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"] {
        let out = common::child("child_tries_to_create_a_network", &[("DOCKER_HOST", host)])
            .env("DOCKER_HARNESS_NO_HOOK", "1")
            .output()
            .expect("child runs");
        let r = common::reported(&out.stdout);
        let msg = r.get("error").unwrap_or_else(|| panic!("no report: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(msg.starts_with("cannot reach the Docker daemon"), "{msg}");
        assert!(msg.contains(host), "{msg}");
        assert!(msg.contains("help:"), "{msg}");
        // The bound is 5 s; allow a loaded machine its margin, but never a hang.
        let ms: u128 = r["elapsed_ms"].parse().unwrap();
        assert!(ms < 30_000, "took {ms} ms");
    }
}
