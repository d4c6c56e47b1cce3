//! Logical names that sanitise alike, or are too long for Docker, still make distinct
//! resources that all work, and a network name already taken is a conflict even on a
//! daemon that would create a second network under it.

mod common;

use std::collections::{HashMap, HashSet};

use bollard::query_parameters::ListNetworksOptions;
use docker_harness::{ContainerSpec, Counts, Engine, TestContext};

/// `über` and `ber` clean to the same name; the long one is over every limit Docker has.
fn logical_names() -> [String; 3] {
    ["über".to_string(), "ber".to_string(), "l".repeat(300)]
}

#[tokio::test]
async fn logical_names_that_clean_alike_or_run_long_make_distinct_working_resources() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(3, 3, 3));
    let d = common::raw().await;
    let (mut volumes, mut networks, mut containers) = (Vec::new(), Vec::new(), Vec::new());
    for logical in logical_names() {
        volumes.push(ctx.volume(&logical).await?);
        networks.push(ctx.network(&logical).await?);
        let spec = ContainerSpec::new(logical.clone()).with_cmd(["sleep", "3600"]);
        containers.push(ctx.container(spec.with_volume(volumes.last().unwrap(), "/data")).await?);
    }

    let names = |v: Vec<&str>| v.into_iter().map(str::to_string).collect::<Vec<_>>();
    for (kind, made) in [
        ("volume", names(volumes.iter().map(|v| v.name()).collect())),
        ("network", names(networks.iter().map(|n| n.name()).collect())),
        ("container", names(containers.iter().map(|c| c.name()).collect())),
    ] {
        assert_eq!(made.iter().collect::<HashSet<_>>().len(), 3, "{kind}s share a name: {made:?}");
        for name in &made {
            assert!(name.len() <= 63 && name.starts_with(ctx.prefix()), "{kind} {name}");
        }
        // A name that needed no change is exactly what it always was.
        assert_eq!(made[1], format!("{}-ber", ctx.prefix()), "{kind}");
    }
    for (c, v) in containers.iter().zip(&volumes) {
        assert!(common::volume_exists(&d, v.name()).await, "volume {} is not there", v.name());
        // Each container writes its own name into its own volume, and reads back only that.
        let out = c.exec(["sh", "-c", &format!("echo {} >> /data/who && cat /data/who", c.name())]).await?;
        assert_eq!(out.stdout, format!("{}\n", c.name()), "{out:?}");
    }
    for n in &networks {
        assert!(common::network_exists(&d, n.id()).await, "network {} is not there", n.name());
    }
    ctx.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_network_name_already_taken_is_a_conflict_and_leaves_one_network() -> anyhow::Result<()> {
    // Docker before API 1.44 creates the second network (which the harness then removes);
    // later Docker and Podman refuse it themselves.
    let (_, api) = docker_harness::daemon_version().await?;
    let twin_made = docker_harness::engine().await? == Engine::Docker && api_before(&api, 1, 44);
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 1 + usize::from(twin_made), 0));
    let first = ctx.network("net").await?;

    let err = ctx.network("net").await.expect_err("a second network under one name must be refused");
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains(first.name()), "{err}");

    let d = common::raw().await;
    let filters = HashMap::from([("name".to_string(), vec![first.name().to_string()])]);
    let listed = d.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await?;
    let same: Vec<_> = listed.iter().filter(|n| n.name.as_deref() == Some(first.name())).collect();
    assert_eq!(same.len(), 1, "networks named {}: {same:?}", first.name());
    assert_eq!(same[0].id.as_deref(), Some(first.id()));
    ctx.cleanup().await?;
    Ok(())
}

/// True when the API version `v` ("1.41") is older than `major.minor`.
fn api_before(v: &str, major: u32, minor: u32) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (major, minor)
}
