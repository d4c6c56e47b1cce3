//! Network isolation: on its own network a container reaches its peer by name; a container
//! of another test's network is neither resolvable nor reachable from it; and a container
//! given no network never ends up on a test network.

mod common;

use docker_harness::{ContainerGuard, ContainerSpec, Counts, NetworkGuard, TestContext};

struct World {
    ctx: TestContext,
    net: NetworkGuard,
    server: ContainerGuard,
    client: ContainerGuard,
}

/// One test's world: a network with a server and a client on it.
async fn world(name: &str) -> anyhow::Result<World> {
    let ctx = TestContext::named(name)?;
    ctx.set_budget(Counts::new(2, 1, 0));
    let net = ctx.network("net").await?;
    let server = ctx.container(ContainerSpec::new("server").with_cmd(["sleep", "3600"]).with_network(&net)).await?;
    let client = ctx.container(ContainerSpec::new("client").with_cmd(["sleep", "3600"]).with_network(&net)).await?;
    Ok(World { ctx, net, server, client })
}

async fn reaches(from: &ContainerGuard, target: &str) -> anyhow::Result<bool> {
    Ok(from.exec(["ping", "-c", "1", "-W", "2", target]).await?.success())
}

async fn resolves(from: &ContainerGuard, name: &str) -> anyhow::Result<bool> {
    Ok(from.exec(["nslookup", name]).await?.success())
}

#[tokio::test]
async fn two_tests_networks_reach_their_own_peers_and_never_each_other() -> anyhow::Result<()> {
    if common::skip_on_podman(
        "Podman 4.3 (netavark 1.4) routes between bridge networks; it has no per-network isolation",
    )
    .await
    {
        return Ok(());
    }
    // Two tests' worlds at once, built alike under the same logical names.
    let (a, b) = tokio::try_join!(world("network-isolation-a"), world("network-isolation-b"))?;

    for w in [&a, &b] {
        assert!(reaches(&w.client, "server").await?, "{}: peer unreachable by logical name", w.ctx.test_name());
        assert!(reaches(&w.client, w.server.name()).await?, "{}: peer unreachable by Docker name", w.ctx.test_name());
    }
    let (a_ip, b_ip) = (a.server.ip_on(&a.net).await?.unwrap(), b.server.ip_on(&b.net).await?.unwrap());
    for (from, other_name, other_ip) in [(&a.client, b.server.name(), &b_ip), (&b.client, a.server.name(), &a_ip)] {
        assert!(!resolves(from, other_name).await?, "{other_name} resolved from {}", from.name());
        // Docker 20.10 rewrites its FORWARD jump rules (delete, then insert) whenever any
        // network is created or removed, and a packet can slip through in between: with a
        // parallel suite churning networks, one probe in a while does. Isolation that holds
        // fails most probes; isolation that is missing answers every one.
        let mut answered = 0;
        for _ in 0..3 {
            answered += usize::from(reaches(from, other_ip).await?);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        if answered == 1 {
            eprintln!("one probe of {other_ip} from {} slipped through Docker's rule rewrite", from.name());
        }
        assert!(answered <= 1, "{other_ip} answered {answered} of 3 probes from {}", from.name());
    }
    Ok(())
}

#[tokio::test]
async fn a_container_given_no_network_stays_off_every_test_network() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(2, 1, 0));
    let net = ctx.network("net").await?;
    let _on = ctx.container(ContainerSpec::new("on").with_cmd(["sleep", "3600"]).with_network(&net)).await?;
    let off = ctx.container(ContainerSpec::new("off").with_cmd(["sleep", "3600"])).await?;
    let networks: Vec<String> = off
        .inspect()
        .await?
        .network_settings
        .and_then(|s| s.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    // The engine's default network: Docker's is `bridge`, Podman's `podman`.
    let default = if common::on_podman().await { "podman" } else { "bridge" };
    assert_eq!(networks, vec![default.to_string()]);
    assert!(off.ip_on(&net).await?.is_none());
    assert!(!resolves(&off, "on").await?, "a container off the network resolved a peer on it");
    Ok(())
}
