use std::time::{Duration, Instant};

use anyhow::Result;
use docker_harness::{ContainerSpec, TestContext};

use crate::raw::{Kind, RUN_LABEL};
use crate::stats::{dist_rows, Op, Report, Samples};
use crate::{progress, Bench};

/// Cleanup latency: the stop path waits out Docker's 10 s default each time, so its few
/// samples run at the same time, after the others: ten seconds of waiting, not thirty.
const N_CLEANUP: usize = 8;
const N_STOP: usize = 3;

/// 2. Removing a container whose PID 1 ignores SIGTERM.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    progress(&format!(
        "2. cleanup latency: {N_CLEANUP} harness, {N_CLEANUP} raw force, {N_STOP} stop-then-remove (~10 s, together)"
    ));
    r.section("2. cleanup latency of a running `sleep 3600` (PID 1 ignores SIGTERM), from the call to the 404");
    r.line(format!("{:<36}{:>9}{:>9}{:>7}", "path", "median", "p95", "n"));
    let ctx = TestContext::named("bench-cleanup")?;
    let settle = Duration::from_millis(200);
    let (mut harness, mut force, mut stop) = (Samples::default(), Samples::default(), Samples::default());
    for i in 0..N_CLEANUP {
        let g = ctx
            .container(ContainerSpec::new(format!("c{i}")).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, &b.run_id))
            .await?;
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        g.remove().await?;
        harness.push(t.elapsed());

        let id = b.raw.container_started("bench-raw-cleanup").await?;
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        b.raw.remove_confirmed(Kind::Container, &id).await?;
        force.push(t.elapsed());
    }
    let mut ids = Vec::new();
    for _ in 0..N_STOP {
        match b.raw.container_started("bench-raw-cleanup").await {
            Ok(id) => ids.push(id),
            Err(e) => {
                for id in &ids {
                    let _ = b.raw.remove_confirmed(Kind::Container, id).await;
                }
                return Err(e);
            }
        }
    }
    tokio::time::sleep(settle).await;
    let stops = ids.iter().map(|id| async move {
        let t = Instant::now();
        let res = b.raw.stop_then_remove(id).await;
        if res.is_err() {
            let _ = b.raw.remove_confirmed(Kind::Container, id).await;
        }
        res.map(|()| t.elapsed())
    });
    for d in futures_util::future::join_all(stops).await {
        stop.push(d?);
    }
    ctx.cleanup().await?;
    dist_rows(
        r,
        "cleanup.harness",
        "harness guard.remove()",
        "removal of a running sleep container through guard.remove()",
        &harness,
    );
    dist_rows(
        r,
        "cleanup.raw_force",
        "raw force-remove",
        "raw remove_container(force, v) then inspect until 404",
        &force,
    );
    dist_rows(r, "cleanup.stop_then_remove", "raw stop (default 10 s) + remove", "raw stop_container with the default timeout, then remove and inspect until 404 (the samples run at the same time)", &stop);
    let v = r.figure(
        "cleanup.harness.max",
        "slowest harness removal of a SIGTERM-ignoring container",
        "s",
        harness.len(),
        harness.max() / 1000.0,
        Some((Op::Below, 0.5)),
    );
    r.line(format!("{:<36}{:>9.3}   {v}", "  harness slowest, s", harness.max() / 1000.0));
    let speedup = stop.median() / harness.median();
    r.figure("cleanup.speedup", "stop-then-remove median / harness removal median", "ratio", stop.len(), speedup, None);
    r.line(format!("{:<36}{:>9.1}x", "  harness faster than stop+remove", speedup));
    r.line(format!(
        "  only {N_STOP} stop-then-remove samples, run at the same time: each waits out the 10 s stop timeout"
    ));
    Ok(())
}
