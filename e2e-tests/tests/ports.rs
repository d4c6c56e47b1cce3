//! A published port is an ephemeral port on the host's loopback, found by asking: two
//! containers (or two parallel tests) publishing the same container port never collide.

mod common;

use docker_harness::{ctx, ContainerGuard, Counts, Error, TestContext, WaitFor};
use rstest::rstest;

use common::web::{get, slow_web, PORT};

async fn web_saying(ctx: &TestContext, logical: &str, text: &str) -> anyhow::Result<ContainerGuard> {
    let spec = slow_web(logical, 0, text).with_exposed_port(PORT).with_wait(WaitFor::http(PORT, "/", 200));
    Ok(ctx.container(spec).await?)
}

async fn two_containers_on_one_port_get_two_host_ports(ctx: &TestContext) -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(web_saying(ctx, "a", "from a"), web_saying(ctx, "b", "from b"))?;
    let (pa, pb) = (a.host_port(PORT).await?, b.host_port(PORT).await?);
    assert_ne!(pa, pb);
    assert_eq!(get(pa, "/").await?.1, "from a");
    assert_eq!(get(pb, "/").await?.1, "from b");
    Ok(())
}

#[rstest]
#[tokio::test]
async fn two_containers_publishing_the_same_port_get_different_host_ports(ctx: TestContext) -> anyhow::Result<()> {
    // Declared for the suite's audit, which compares it with what Docker saw.
    ctx.declare(Counts::new(2, 0, 0));
    two_containers_on_one_port_get_two_host_ports(&ctx).await
}

// Run in parallel with the test above under nextest: the same container port in two
// processes at once.
#[rstest]
#[tokio::test]
async fn a_parallel_test_publishing_the_same_port_does_not_collide_either(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(2, 0, 0));
    two_containers_on_one_port_get_two_host_ports(&ctx).await
}

#[rstest]
#[tokio::test]
async fn a_published_port_listens_on_loopback_only(ctx: TestContext) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let web = web_saying(&ctx, "web", "x").await?;
    let port = web.host_port(PORT).await?;
    let ports = web.inspect().await?.network_settings.and_then(|n| n.ports).unwrap_or_default();
    let bindings = ports.get("8080/tcp").cloned().flatten().unwrap_or_default();
    assert!(!bindings.is_empty());
    // A daemon on another machine publishes on that machine's interfaces instead: its
    // loopback is out of this host's reach.
    if docker_harness::host_address() == "127.0.0.1" {
        assert!(bindings.iter().all(|b| b.host_ip.as_deref() == Some("127.0.0.1")), "{bindings:?}");
    }
    assert!(bindings.iter().any(|b| b.host_port.as_deref() == Some(&port.to_string())));
    Ok(())
}

#[rstest]
#[tokio::test]
async fn an_unpublished_port_has_no_host_port_and_the_error_says_how_to_publish_it(
    ctx: TestContext,
) -> anyhow::Result<()> {
    ctx.declare(Counts::new(1, 0, 0));
    let web = web_saying(&ctx, "web", "x").await?;
    let err = web.host_port(9999).await.unwrap_err();
    assert!(matches!(err, Error::PortNotPublished { port: 9999, .. }), "{err}");
    assert!(err.to_string().contains("with_exposed_port(9999)"), "{err}");
    Ok(())
}
