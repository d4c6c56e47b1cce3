//! Phase 2b, teardown of a whole test (issue 17): a context holding 3 running containers,
//! 2 networks and 2 volumes (all in use) against one holding 1 container on 1 network,
//! each torn down by `ctx.cleanup()`, interleaved. Containers go first, in parallel; the
//! networks and volumes they held go after them, also in parallel.

use std::time::Instant;

use anyhow::Result;
use docker_harness::{ContainerSpec, NetworkSpec, TestContext, VolumeSpec};

use crate::raw::RUN_LABEL;
use crate::stats::{Op, Report, Samples};
use crate::{progress, Bench};

const N: usize = 8;
/// The target: the whole test's teardown within 1.3x of one container and one network.
const TARGET: f64 = 1.3;

fn sleeper(b: &Bench, name: &str) -> ContainerSpec {
    ContainerSpec::new(name).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, &b.run_id)
}

async fn small(b: &Bench, i: usize) -> Result<f64> {
    let ctx = TestContext::named(&format!("bench-teardown-small-{i}"))?;
    let net = ctx.create_network(NetworkSpec::new("net").with_label(RUN_LABEL, &b.run_id)).await?;
    ctx.container(sleeper(b, "a").with_network(&net)).await?;
    let t = Instant::now();
    ctx.cleanup().await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

async fn whole(b: &Bench, i: usize) -> Result<f64> {
    let ctx = TestContext::named(&format!("bench-teardown-whole-{i}"))?;
    let n1 = ctx.create_network(NetworkSpec::new("n1").with_label(RUN_LABEL, &b.run_id)).await?;
    let n2 = ctx.create_network(NetworkSpec::new("n2").with_label(RUN_LABEL, &b.run_id)).await?;
    let v1 = ctx.create_volume(VolumeSpec::new("v1").with_label(RUN_LABEL, &b.run_id)).await?;
    let v2 = ctx.create_volume(VolumeSpec::new("v2").with_label(RUN_LABEL, &b.run_id)).await?;
    ctx.container(sleeper(b, "a").with_network(&n1).with_volume(&v1, "/data")).await?;
    ctx.container(sleeper(b, "b").with_network(&n1).with_volume(&v2, "/data")).await?;
    ctx.container(sleeper(b, "c").with_network(&n2)).await?;
    let t = Instant::now();
    ctx.cleanup().await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    progress(&format!("2b. teardown of a whole test: {N} interleaved pairs"));
    r.section("2b. teardown of a test by ctx.cleanup(), interleaved: 3 containers, 2 networks, 2 volumes against 1 container and 1 network");
    let (mut s, mut w) = (Samples::default(), Samples::default());
    for i in 0..N {
        if i % 2 == 0 {
            s.0.push(small(b, i).await?);
            w.0.push(whole(b, i).await?);
        } else {
            w.0.push(whole(b, i).await?);
            s.0.push(small(b, i).await?);
        }
    }
    r.figure("teardown.small.median", "teardown of 1 container and 1 network: median", "ms", s.len(), s.median(), None);
    r.figure(
        "teardown.whole.median",
        "teardown of 3 containers, 2 networks, 2 volumes: median",
        "ms",
        w.len(),
        w.median(),
        None,
    );
    let ratio = w.median() / s.median();
    let v = r.figure(
        "teardown.ratio",
        "teardown of 3 containers, 2 networks, 2 volumes / of 1 container and 1 network (medians)",
        "ratio",
        N,
        ratio,
        Some((Op::AtMost, TARGET)),
    );
    r.line(format!(
        "1 container + 1 network: median {:.0} ms (max {:.0}); 3 + 2 + 2: median {:.0} ms (max {:.0}); ratio {ratio:.2}   {v}",
        s.median(),
        s.max(),
        w.median(),
        w.max()
    ));
    Ok(())
}
