//! The test `make chaos` breaks from the inside: it creates a volume, a network and a
//! container on both, and dies at a point the driver draws (`DH_CHAOS_AT`, 0 to 3: before
//! the first create, then after each) by the fault it draws (`DH_CHAOS_FAULT`: `panic`,
//! `exit` for `std::process::exit`, or `abort`). The driver then checks from the daemon that
//! nothing of it is left. Without those variables it just passes quickly, so plain runs of
//! the binary prove the same creates work. A special binary: only `make chaos` runs it.

mod common;

use docker_harness::{ContainerSpec, Counts, TestContext};

use common::{assert_all_gone, assert_all_present, raw, Made};

/// Where a fault lands: after this many of the three creates.
const POINTS: u32 = 3;

/// The fault the driver asked for, and where; `None` without `DH_CHAOS_FAULT`.
fn drawn() -> anyhow::Result<Option<(String, u32)>> {
    let Ok(fault) = std::env::var("DH_CHAOS_FAULT") else { return Ok(None) };
    anyhow::ensure!(
        ["panic", "exit", "abort"].contains(&fault.as_str()),
        "DH_CHAOS_FAULT={fault} is not a fault; help: use panic, exit or abort"
    );
    let at = std::env::var("DH_CHAOS_AT").unwrap_or_else(|_| "0".into());
    let at: u32 = at
        .parse()
        .ok()
        .filter(|n| *n <= POINTS)
        .ok_or_else(|| anyhow::anyhow!("DH_CHAOS_AT={at} is not a point; help: use 0 to {POINTS}"))?;
    Ok(Some((fault, at)))
}

fn strike(drawn: Option<&(String, u32)>, point: u32) {
    let Some((fault, at)) = drawn else { return };
    if *at != point {
        return;
    }
    eprintln!("chaos: {fault} after {point} of {POINTS} creates");
    match fault.as_str() {
        "panic" => panic!("chaos: a panic injected after {point} creates"),
        "exit" => std::process::exit(3),
        _ => std::process::abort(),
    }
}

#[tokio::test]
async fn a_test_that_dies_at_a_random_point_leaves_nothing_behind() -> anyhow::Result<()> {
    let drawn = drawn()?;
    let ctx = TestContext::new()?;
    ctx.set_budget(Counts::new(1, 1, 1));
    strike(drawn.as_ref(), 0);
    let vol = ctx.volume("data").await?;
    strike(drawn.as_ref(), 1);
    let net = ctx.network("net").await?;
    strike(drawn.as_ref(), 2);
    let app = ctx
        .container(ContainerSpec::new("app").with_cmd(["sleep", "3600"]).with_network(&net).with_volume(&vol, "/data"))
        .await?;
    strike(drawn.as_ref(), 3);
    let made = Made { container: app.id().into(), network: net.id().into(), volume: vol.name().into() };
    let d = raw().await;
    assert_all_present(&d, &made).await;
    ctx.cleanup().await?;
    assert_all_gone(&d, &made).await;
    Ok(())
}
