use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use docker_harness::{ContainerSpec, TestContext};

use super::{order, N, WARMUP};
use crate::raw::RUN_LABEL;
use crate::stats::{dist_rows, paired_row, ratio_row, Op, Report, Samples};
use crate::{progress, Bench};

/// 1. Container lifecycle, raw against the harness, interleaved. Returns the raw median.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<f64> {
    progress(&format!(
        "1. container lifecycle: {WARMUP} warm-up + {N} rounds of raw, harness, harness (reused context)"
    ));
    r.section(&format!(
        "1. container lifecycle: create, start, exec `true`, force-remove, inspect until 404 (interleaved, {WARMUP} warm-up rounds dropped)"
    ));
    r.line(format!("{:<36}{:>9}{:>9}{:>7}", "path", "median", "p95", "n"));
    let reused = TestContext::named("bench-lifecycle-reused")?;
    let (mut raw, mut fresh, mut kept) = (Samples::default(), Samples::default(), Samples::default());
    for round in 0..WARMUP + N {
        for k in order(round) {
            let d = match k {
                0 => (b.raw.lifecycle().await?, &mut raw),
                1 => (harness_lifecycle(None, &b.run_id, round).await?, &mut fresh),
                _ => (harness_lifecycle(Some(&reused), &b.run_id, round).await?, &mut kept),
            };
            if round >= WARMUP {
                d.1.push(d.0);
            }
        }
    }
    reused.cleanup().await?;
    let what = "container lifecycle (create, start, exec true, force-remove, 404)";
    dist_rows(r, "lifecycle.raw", "raw bollard", &format!("{what}, raw bollard"), &raw);
    dist_rows(
        r,
        "lifecycle.harness",
        "harness, a context per lifecycle",
        &format!("{what}, harness with a fresh TestContext each time (as a test does)"),
        &fresh,
    );
    dist_rows(
        r,
        "lifecycle.harness_reused_ctx",
        "harness, one context for all",
        &format!("{what}, harness with one TestContext reused"),
        &kept,
    );
    ratio_row(
        r,
        "lifecycle.ratio",
        "lifecycle median, harness (fresh context) / raw",
        &fresh,
        &raw,
        Some((Op::AtMost, 1.05)),
    );
    ratio_row(
        r,
        "lifecycle.ratio_p95",
        "lifecycle p95, harness (fresh context) / raw",
        &Samples(vec![fresh.pct(95.0)]),
        &Samples(vec![raw.pct(95.0)]),
        None,
    );
    ratio_row(
        r,
        "lifecycle.ratio_reused_ctx",
        "lifecycle median, harness (reused context) / raw",
        &kept,
        &raw,
        Some((Op::AtMost, 1.05)),
    );
    paired_row(
        r,
        "lifecycle.paired_ratio",
        "median over rounds of harness (fresh context) / raw, same round",
        &fresh,
        &raw,
    );
    Ok(raw.median())
}

/// One lifecycle as a test writes it: a context (fresh unless `reused`), a `sleep`
/// container, exec `true`, explicit removal. A fresh context is dropped inside the timing,
/// as it is at the end of a test.
pub(crate) async fn harness_lifecycle(reused: Option<&TestContext>, run_id: &str, i: usize) -> Result<Duration> {
    let t = Instant::now();
    let fresh = match reused {
        Some(_) => None,
        None => Some(TestContext::named("bench-lifecycle")?),
    };
    let ctx = reused.or(fresh.as_ref()).expect("one of the two is set");
    let spec = ContainerSpec::new(format!("c{i}")).with_cmd(["sleep", "3600"]).with_label(RUN_LABEL, run_id);
    let guard = ctx.container(spec).await?;
    let out = guard.exec(["true"]).await?;
    guard.remove().await?;
    drop(fresh);
    let d = t.elapsed();
    ensure!(out.exit_code == 0, "`true` exited with {} in a harness container", out.exit_code);
    Ok(d)
}
