use std::time::Instant;

use anyhow::{Context, Result};

use super::N;
use crate::stats::{dist_rows, ms, Report, Samples};
use crate::{progress, Bench};

/// 1b. The Docker calls and local work the harness adds to a lifecycle, timed on their own,
/// so that the ratio above can be explained and not only stated.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    progress("1b. overhead attribution");
    r.section("1b. what the harness adds per container, timed alone (interleaved)");
    r.line(format!("{:<36}{:>9}{:>9}{:>7}", "extra work", "median", "p95", "n"));
    let (mut lists, mut inspect, mut lookup) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..N {
        let t = Instant::now();
        b.raw.context_check_lists("bench-lifecycle").await?;
        lists.push(t.elapsed());
        let t = Instant::now();
        b.raw.docker.inspect_image(&b.image).await.context("inspect the session image")?;
        inspect.push(t.elapsed());
        let t = Instant::now();
        docker_harness::session_image().await?;
        lookup.push(t.elapsed());
    }
    dist_rows(
        r,
        "overhead.context_check",
        "per context: 3 label-filtered lists",
        "the per-context leftover check: containers (all), networks and volumes listed by label, concurrently; once per TestContext",
        &lists,
    );
    dist_rows(
        r,
        "overhead.image_verify",
        "per container: inspect image",
        "the session-image check before each container: one image inspect",
        &inspect,
    );
    dist_rows(
        r,
        "overhead.session_lookup",
        "per container: session record read",
        "session_image() once resolved: a hop to the harness runtime and a read of the session's state file, no Docker call",
        &lookup,
    );
    let per_ctx = lists.median() + inspect.median() + lookup.median();
    let per_reuse = inspect.median() + lookup.median();
    r.figure(
        "overhead.expected_fresh",
        "sum of the medians above: expected extra ms per lifecycle with a fresh context",
        "ms",
        N,
        per_ctx,
        None,
    );
    r.figure(
        "overhead.expected_reused",
        "inspect + lookup medians: expected extra ms per lifecycle with a reused context",
        "ms",
        N,
        per_reuse,
        None,
    );
    r.line(format!("{:<36}{}", "  expected extra, fresh context", ms(per_ctx)));
    r.line(format!("{:<36}{}", "  expected extra, reused context", ms(per_reuse)));
    Ok(())
}
