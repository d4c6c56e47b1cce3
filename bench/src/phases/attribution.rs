use std::time::Instant;

use anyhow::Result;

use super::N;
use crate::stats::{dist_rows, ms, Report, Samples};
use crate::{progress, Bench};

/// 1b. The Docker calls and local work the harness adds to a lifecycle, timed on their own,
/// so that the ratio above can be explained and not only stated.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    progress("1b. overhead attribution");
    r.section("1b. what the harness adds per container, timed alone (interleaved)");
    r.line(format!("{:<36}{:>9}{:>9}{:>7}", "extra work", "median", "p95", "n"));
    let (mut lists, mut lookup) = (Samples::default(), Samples::default());
    for _ in 0..N {
        let t = Instant::now();
        b.raw.context_check_list("bench-lifecycle").await?;
        lists.push(t.elapsed());
        let t = Instant::now();
        docker_harness::session_image().await?;
        lookup.push(t.elapsed());
    }
    dist_rows(
        r,
        "overhead.context_check",
        "per test name: 1 label-filtered list",
        "the per-test leftover check: containers (all) listed by the test's label; once per test name per process",
        &lists,
    );
    dist_rows(
        r,
        "overhead.session_lookup",
        "per container: session record read",
        "the session image once resolved (its ID and declared volumes): a hop to the harness runtime and a read of the session's state file, no Docker call",
        &lookup,
    );
    let per_ctx = lists.median() + lookup.median();
    let per_reuse = lookup.median();
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
        "the lookup's median: expected extra ms per lifecycle with a reused context",
        "ms",
        N,
        per_reuse,
        None,
    );
    r.line(format!("{:<36}{}", "  expected extra, fresh context", ms(per_ctx)));
    r.line(format!("{:<36}{}", "  expected extra, reused context", ms(per_reuse)));
    Ok(())
}
