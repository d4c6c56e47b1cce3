//! The holder: a test process that gets SIGKILLed.

use anyhow::{Context, Result};
use docker_harness::{ContainerSpec, NetworkSpec, TestContext, VolumeSpec};
use serde_json::json;

use super::{HOLDER_LIFETIME, TEST_NAME};
use crate::raw::RUN_LABEL;

pub(crate) fn holder_main() -> Result<()> {
    let run_id = std::env::args().nth(2).context("the run ID")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ctx = TestContext::named(TEST_NAME)?;
    let held = rt.block_on(async {
        let net = |n: &str| ctx.create_network(NetworkSpec::new(n).with_label(RUN_LABEL, &run_id));
        let vol = |n: &str| ctx.create_volume(VolumeSpec::new(n).with_label(RUN_LABEL, &run_id));
        // Each kind concurrently, as a test with a fixture per resource would: the trials
        // are set up faster, and nothing is measured while they are.
        let (n0, n1, v0, v1) = tokio::try_join!(net("n0"), net("n1"), vol("v0"), vol("v1"))?;
        let spec = |n: &str| ContainerSpec::new(n).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, &run_id);
        let (c0, c1, c2) = tokio::try_join!(
            ctx.container(spec("c0").with_network(&n0).with_volume(&v0, "/v0")),
            ctx.container(spec("c1").with_network(&n1).with_volume(&v1, "/v1")),
            ctx.container(spec("c2").with_network(&n0).with_volume(&v0, "/v0").with_volume(&v1, "/v1")),
        )?;
        anyhow::Ok((n0, n1, v0, v1, c0, c1, c2))
    })?;
    let (n0, n1, v0, v1, c0, c1, c2) = &held;
    println!(
        "{}",
        json!({
            "pid": std::process::id(),
            "containers": [c0.id(), c1.id(), c2.id()],
            "networks": [n0.id(), n1.id()],
            "volumes": [v0.name(), v1.name()],
        })
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    std::thread::sleep(HOLDER_LIFETIME);
    drop(held);
    drop(ctx);
    Ok(())
}
