//! Phase 2b, teardown of a whole test (issue 17): a context holding 3 running containers,
//! 2 networks and 2 volumes (all in use) against one holding 1 container on 1 network,
//! each torn down by `ctx.cleanup()`, interleaved. Containers go first, in parallel; the
//! networks and volumes they held go after them, also in parallel.

use std::time::Instant;

use anyhow::Result;
use docker_harness::{ContainerSpec, NetworkSpec, TestContext, VolumeSpec};

use crate::raw::{Kind, RUN_LABEL};
use crate::stats::{Op, Report, Samples};
use crate::{progress, Bench};

const N: usize = 8;
/// The target: the whole test's teardown within 1.3x of one container and one network.
const TARGET: f64 = 1.3;

fn sleeper(b: &Bench, name: &str) -> ContainerSpec {
    ContainerSpec::new(name).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, &b.run_id)
}

/// Tears a context down: through the harness, or by raw calls in the same order (its
/// containers in parallel, then its networks and volumes in parallel, each until 404),
/// the resources released from the context first.
async fn teardown(b: &Bench, ctx: TestContext, raw: bool) -> Result<f64> {
    let t = Instant::now();
    if !raw {
        ctx.cleanup().await?;
        return Ok(t.elapsed().as_secs_f64() * 1000.0);
    }
    let all = ctx.release();
    let t = Instant::now();
    let of = |k: docker_harness::Kind| all.iter().filter(move |r| r.kind == k);
    let gone = of(docker_harness::Kind::Container).map(|r| b.raw.remove_confirmed(Kind::Container, &r.id));
    for r in futures_util::future::join_all(gone).await {
        r?;
    }
    let rest = of(docker_harness::Kind::Network)
        .map(|r| (Kind::Network, r))
        .chain(of(docker_harness::Kind::Volume).map(|r| (Kind::Volume, r)))
        .map(|(k, r)| b.raw.remove_confirmed(k, &r.id));
    for r in futures_util::future::join_all(rest).await {
        r?;
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

async fn small(b: &Bench, i: usize, raw: bool) -> Result<f64> {
    let ctx = TestContext::named(&format!("bench-teardown-small-{i}"))?;
    let net = ctx.create_network(NetworkSpec::new("net").with_label(RUN_LABEL, &b.run_id)).await?;
    ctx.container(sleeper(b, "a").with_network(&net)).await?;
    teardown(b, ctx, raw).await
}

async fn whole(b: &Bench, i: usize, raw: bool) -> Result<f64> {
    let ctx = TestContext::named(&format!("bench-teardown-whole-{i}"))?;
    let n1 = ctx.create_network(NetworkSpec::new("n1").with_label(RUN_LABEL, &b.run_id)).await?;
    let n2 = ctx.create_network(NetworkSpec::new("n2").with_label(RUN_LABEL, &b.run_id)).await?;
    let v1 = ctx.create_volume(VolumeSpec::new("v1").with_label(RUN_LABEL, &b.run_id)).await?;
    let v2 = ctx.create_volume(VolumeSpec::new("v2").with_label(RUN_LABEL, &b.run_id)).await?;
    ctx.container(sleeper(b, "a").with_network(&n1).with_volume(&v1, "/data")).await?;
    ctx.container(sleeper(b, "b").with_network(&n1).with_volume(&v2, "/data")).await?;
    ctx.container(sleeper(b, "c").with_network(&n2)).await?;
    teardown(b, ctx, raw).await
}

pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    progress(&format!("2b. teardown of a whole test: {N} interleaved pairs"));
    r.section("2b. teardown of a test by ctx.cleanup(), interleaved: 3 containers, 2 networks, 2 volumes against 1 container and 1 network");
    let (mut s, mut w, mut rs, mut rw) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    for i in 0..N {
        // Alternating which goes first, so that drift hits all four alike.
        if i % 2 == 0 {
            s.0.push(small(b, i, false).await?);
            w.0.push(whole(b, i, false).await?);
            rs.0.push(small(b, i, true).await?);
            rw.0.push(whole(b, i, true).await?);
        } else {
            rw.0.push(whole(b, i, true).await?);
            rs.0.push(small(b, i, true).await?);
            w.0.push(whole(b, i, false).await?);
            s.0.push(small(b, i, false).await?);
        }
    }
    r.figure(
        "teardown.small.median",
        "harness teardown of 1 container and 1 network: median",
        "ms",
        s.len(),
        s.median(),
        None,
    );
    r.figure(
        "teardown.whole.median",
        "harness teardown of 3 containers, 2 networks, 2 volumes: median",
        "ms",
        w.len(),
        w.median(),
        None,
    );
    r.figure(
        "teardown.raw_small.median",
        "raw removal of 1 container and 1 network, same order: median",
        "ms",
        rs.len(),
        rs.median(),
        None,
    );
    r.figure(
        "teardown.raw_whole.median",
        "raw removal of 3 containers, 2 networks, 2 volumes, same order: median",
        "ms",
        rw.len(),
        rw.median(),
        None,
    );
    let ratio = w.median() / s.median();
    let raw_ratio = rw.median() / rs.median();
    let v = r.figure(
        "teardown.ratio",
        "teardown of 3 containers, 2 networks, 2 volumes / of 1 container and 1 network (medians)",
        "ratio",
        N,
        ratio,
        Some((Op::AtMost, TARGET)),
    );
    r.figure(
        "teardown.raw_ratio",
        "the same ratio for raw calls in the same order: the daemon's own",
        "ratio",
        N,
        raw_ratio,
        None,
    );
    r.figure(
        "teardown.whole_vs_raw",
        "harness / raw teardown of 3 containers, 2 networks, 2 volumes (medians)",
        "ratio",
        N,
        w.median() / rw.median(),
        None,
    );
    r.line(format!(
        "harness: 1 container + 1 network {:.0} ms, 3 + 2 + 2 {:.0} ms, ratio {ratio:.2}   {v}",
        s.median(),
        w.median()
    ));
    r.line(format!(
        "raw, same order: 1 + 1 {:.0} ms, 3 + 2 + 2 {:.0} ms, ratio {raw_ratio:.2} (the daemon's own); harness/raw for 3 + 2 + 2: {:.2}",
        rs.median(),
        rw.median(),
        w.median() / rw.median()
    ));
    Ok(())
}
