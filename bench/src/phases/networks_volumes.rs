use std::time::{Duration, Instant};

use anyhow::Result;
use docker_harness::{NetworkSpec, TestContext, VolumeSpec};

use super::{order, N, WARMUP};
use crate::raw::RUN_LABEL;
use crate::stats::{dist_rows, paired_row, ratio_row, Op, Report, Samples};
use crate::{progress, Bench};

/// 5. Network and volume create-and-remove, raw against the harness, interleaved.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    progress(&format!("5. networks and volumes: {WARMUP} warm-up + {N} rounds each"));
    r.section(&format!(
        "5. network and volume: create, remove, inspect until 404 (interleaved, {WARMUP} warm-up rounds dropped)"
    ));
    r.line(format!("{:<36}{:>9}{:>9}{:>7}", "path", "median", "p95", "n"));
    let reused = TestContext::named("bench-nv-reused")?;
    let run = &b.run_id;
    // One kind at a time: a network's removal leaves the daemon busy for a moment, which
    // would land on whichever volume operation came next.
    for kind in ["network", "volume"] {
        let mut s = [Samples::default(), Samples::default(), Samples::default()];
        for round in 0..WARMUP + N {
            for k in order(round) {
                let d = match (kind, k) {
                    ("network", 0) => b.raw.network_cycle().await?,
                    ("network", 1) => network_cycle(None, run, round).await?,
                    ("network", _) => network_cycle(Some(&reused), run, round).await?,
                    (_, 0) => b.raw.volume_cycle().await?,
                    (_, 1) => volume_cycle(None, run, round).await?,
                    _ => volume_cycle(Some(&reused), run, round).await?,
                };
                if round >= WARMUP {
                    s[k].push(d);
                }
            }
        }
        let [raw, h, hr] = s;
        dist_rows(
            r,
            &format!("{kind}.raw"),
            &format!("{kind}, raw bollard"),
            &format!("{kind} create and remove, raw bollard"),
            &raw,
        );
        dist_rows(
            r,
            &format!("{kind}.harness"),
            &format!("{kind}, harness (context each)"),
            &format!("{kind} create and remove through a fresh TestContext"),
            &h,
        );
        dist_rows(
            r,
            &format!("{kind}.harness_reused_ctx"),
            &format!("{kind}, harness (one context)"),
            &format!("{kind} create and remove through one reused TestContext"),
            &hr,
        );
        ratio_row(
            r,
            &format!("{kind}.ratio"),
            &format!("{kind} median, harness (fresh context) / raw"),
            &h,
            &raw,
            Some((Op::AtMost, 1.05)),
        );
        ratio_row(
            r,
            &format!("{kind}.ratio_reused_ctx"),
            &format!("{kind} median, harness (reused context) / raw"),
            &hr,
            &raw,
            Some((Op::AtMost, 1.05)),
        );
        paired_row(
            r,
            &format!("{kind}.paired_ratio"),
            &format!("median over rounds of {kind} harness (fresh context) / raw, same round"),
            &h,
            &raw,
        );
    }
    reused.cleanup().await?;
    Ok(())
}

async fn network_cycle(reused: Option<&TestContext>, run_id: &str, i: usize) -> Result<Duration> {
    let t = Instant::now();
    let fresh = match reused {
        Some(_) => None,
        None => Some(TestContext::named("bench-network")?),
    };
    let ctx = reused.or(fresh.as_ref()).expect("one of the two is set");
    let g = ctx.create_network(NetworkSpec::new(format!("n{i}")).with_label(RUN_LABEL, run_id)).await?;
    g.remove().await?;
    drop(fresh);
    Ok(t.elapsed())
}

async fn volume_cycle(reused: Option<&TestContext>, run_id: &str, i: usize) -> Result<Duration> {
    let t = Instant::now();
    let fresh = match reused {
        Some(_) => None,
        None => Some(TestContext::named("bench-volume")?),
    };
    let ctx = reused.or(fresh.as_ref()).expect("one of the two is set");
    let g = ctx.create_volume(VolumeSpec::new(format!("v{i}")).with_label(RUN_LABEL, run_id)).await?;
    g.remove().await?;
    drop(fresh);
    Ok(t.elapsed())
}
