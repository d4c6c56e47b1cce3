//! Phase 7b, flat as things grow (issue 17, item 4): the harness's cost per test in a suite
//! of 384 tests, and in one of 24 while the daemon holds 500 live resources of another
//! session, each against the 24-test run on an empty daemon (phase 7's `-j8` runs). The
//! cost is the harness/raw wall-time ratio, so that what the daemon itself pays for more
//! work hits both sides; the calls per test, which noise does not move, stand beside it.
//!
//! The 500 are what a busy shared daemon holds: containers created and never started,
//! volumes, and ten networks (Docker's default pools allow about thirty bridges), made by
//! a context of this process, whose session is not the suite's, and removed at the end.

use anyhow::Result;
use docker_harness::{ContainerSpec, NetworkSpec, TestContext, VolumeSpec};

use super::suite::{measure, Measured, S24, S384};
use crate::raw::RUN_LABEL;
use crate::stats::{Op, Report};
use crate::{progress, Bench};

const FOREIGN_CONTAINERS: usize = 245;
const FOREIGN_VOLUMES: usize = 245;
const FOREIGN_NETWORKS: usize = 10;

/// Rounds of the 384-test run: each is about a minute per path here.
fn rounds_384() -> usize {
    std::env::var("BENCH_SUITE_384_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn ratio(m: &Measured) -> f64 {
    m.h.median() / m.raw.median()
}

fn row(r: &mut Report, id: &str, what: &str, tests: usize, m: &Measured, base: &Measured) {
    let growth = ratio(m) / ratio(base);
    let v = r.figure(
        &format!("suite.scale.{id}.growth"),
        &format!("{what}: harness/raw against the 24-test run on an empty daemon"),
        "ratio",
        m.h.len(),
        growth,
        Some((Op::AtMost, 1.05)),
    );
    let (hc, rc) = m.calls();
    r.figure(
        &format!("suite.scale.{id}.calls_extra"),
        &format!("{what}: calls per test, harness minus raw"),
        "calls",
        m.h_calls.len(),
        hc - rc,
        Some((Op::AtMost, 2.0)),
    );
    r.figure(
        &format!("suite.scale.{id}.ratio"),
        &format!("{what}: harness/raw wall time, medians"),
        "ratio",
        m.h.len(),
        ratio(m),
        None,
    );
    r.line(format!(
        "{what:<44} per test: raw {:>5.0} ms, harness {:>5.0} ms; harness/raw {:.3}, x{growth:.3} of the baseline   {v}; calls {hc} vs raw {rc}",
        m.raw.median() / tests as f64,
        m.h.median() / tests as f64,
        ratio(m),
    ));
}

pub(super) async fn phase(b: &Bench, r: &mut Report, base: &Measured) -> Result<()> {
    r.section("7b. flat as things grow: -j8, one container per test, against 24 tests on an empty daemon");
    row(r, "base", "24 tests, empty daemon (phase 7)", 24, base, base);

    progress("7b. 384 tests, -j8");
    let big = measure(b, "one", 8, S384, rounds_384()).await?;
    row(r, "s384", "384 tests", 384, &big, base);

    progress(&format!(
        "7b. making {} foreign resources of another session",
        FOREIGN_CONTAINERS + FOREIGN_VOLUMES + FOREIGN_NETWORKS
    ));
    let foreign = TestContext::named("bench-foreign")?;
    let made = async {
        for i in 0..FOREIGN_NETWORKS {
            foreign.create_network(NetworkSpec::new(format!("n{i}")).with_label(RUN_LABEL, &b.run_id)).await?;
        }
        for i in 0..FOREIGN_VOLUMES {
            foreign.create_volume(VolumeSpec::new(format!("v{i}")).with_label(RUN_LABEL, &b.run_id)).await?;
        }
        for i in 0..FOREIGN_CONTAINERS {
            let spec = ContainerSpec::new(format!("c{i}")).with_cmd(["true"]).with_label(RUN_LABEL, &b.run_id);
            foreign.container(spec.created_only()).await?;
        }
        anyhow::Ok(())
    }
    .await;
    let measured = match made {
        Ok(()) => {
            progress("7b. 24 tests, -j8, with 500 foreign resources on the daemon");
            measure(b, "one", 8, S24, 3).await
        }
        Err(e) => Err(e),
    };
    let cleaned = foreign.cleanup().await;
    let crowded = measured?;
    cleaned?;
    row(r, "foreign500", "24 tests, 500 foreign resources", 24, &crowded, base);
    Ok(())
}
