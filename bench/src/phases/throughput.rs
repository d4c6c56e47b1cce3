use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::Semaphore;

use super::lifecycle::harness_lifecycle;
use crate::stats::{Op, Report};
use crate::{progress, Bench};

const LEVELS: [usize; 4] = [1, 2, 4, 8];
/// What phase 3 may take; beyond it, fewer lifecycles per level (said in the output).
const THROUGHPUT_BUDGET: Duration = Duration::from_secs(60);

/// 3. Lifecycles per second at several concurrency levels.
pub(crate) async fn phase(b: &Bench, r: &mut Report, raw_median_ms: f64) -> Result<()> {
    // Budgeted from the measured lifecycle: 2 paths, assuming the speedups stay under ~1.5x
    // at 2 and ~2x at 4 and 8 on a 2-core machine.
    let estimate =
        |n: usize| Duration::from_secs_f64(n as f64 * 2.0 * (1.0 + 1.0 / 1.5 + 0.5 + 0.5) * raw_median_ms / 1000.0);
    let n = if raw_median_ms.is_finite() && estimate(32) <= THROUGHPUT_BUDGET { 32 } else { 16 };
    progress(&format!("3. parallel throughput: {n} lifecycles per level and path, concurrency {LEVELS:?}"));
    r.section(&format!("3. parallel throughput: {n} lifecycles per level and path, each lifecycle a task (raw and harness alternate going first)"));
    if n < 32 {
        let line = format!(
            "  reduced from 32 to {n} lifecycles per level: 32 were estimated at {:.0} s, over the {} s budget",
            estimate(32).as_secs_f64(),
            THROUGHPUT_BUDGET.as_secs()
        );
        r.line(line.clone());
        r.notes.push(line.trim().to_string());
    }
    r.line(format!(
        "{:<12}{:>12}{:>12}{:>9}{:>11}{:>11}",
        "concurrency", "raw /s", "harness /s", "ratio", "raw x c1", "harn x c1"
    ));
    let (mut raw_c1, mut h_c1) = (f64::NAN, f64::NAN);
    for (k, &c) in LEVELS.iter().enumerate() {
        let raw_run = || {
            let raw = b.raw.clone();
            batch(n, c, move |_| {
                let raw = raw.clone();
                async move { raw.lifecycle().await }
            })
        };
        let harness_run = || {
            let run_id = b.run_id.clone();
            batch(n, c, move |i| {
                let run_id = run_id.clone();
                async move { harness_lifecycle(None, &run_id, i).await }
            })
        };
        let (raw_t, h_t) = if k % 2 == 0 {
            let a = raw_run().await?;
            (a, harness_run().await?)
        } else {
            let h = harness_run().await?;
            (raw_run().await?, h)
        };
        let raw_tp = n as f64 / raw_t.as_secs_f64();
        let h_tp = n as f64 / h_t.as_secs_f64();
        if c == 1 {
            (raw_c1, h_c1) = (raw_tp, h_tp);
        }
        let ratio = h_tp / raw_tp;
        r.figure(
            &format!("throughput.c{c}.raw"),
            &format!("raw lifecycles per second at concurrency {c}"),
            "lifecycles/s",
            n,
            raw_tp,
            None,
        );
        r.figure(
            &format!("throughput.c{c}.harness"),
            &format!("harness lifecycles per second at concurrency {c} (a fresh TestContext each)"),
            "lifecycles/s",
            n,
            h_tp,
            None,
        );
        let v = r.figure(
            &format!("throughput.c{c}.ratio"),
            &format!("harness/raw throughput at concurrency {c}"),
            "ratio",
            n,
            ratio,
            Some((Op::AtLeast, 0.95)),
        );
        r.figure(
            &format!("throughput.c{c}.raw_speedup"),
            &format!("raw throughput at concurrency {c} over concurrency 1"),
            "ratio",
            n,
            raw_tp / raw_c1,
            None,
        );
        r.figure(
            &format!("throughput.c{c}.harness_speedup"),
            &format!("harness throughput at concurrency {c} over concurrency 1"),
            "ratio",
            n,
            h_tp / h_c1,
            None,
        );
        r.line(format!(
            "{c:<12}{raw_tp:>12.2}{h_tp:>12.2}{ratio:>9.3}{:>11.2}{:>11.2}   {v}",
            raw_tp / raw_c1,
            h_tp / h_c1
        ));
    }
    Ok(())
}

/// Runs `n` lifecycles with at most `c` at a time, each as its own task; returns the wall time.
async fn batch<F, Fut>(n: usize, c: usize, f: F) -> Result<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Duration>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(c));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i);
        tasks.push(tokio::spawn(async move {
            let res = fut.await;
            drop(permit);
            res
        }));
    }
    // Every task is awaited, even after a failure, so none is still creating when we return.
    let mut first_err = None;
    for task in tasks {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(e.into())),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(t.elapsed()),
    }
}
