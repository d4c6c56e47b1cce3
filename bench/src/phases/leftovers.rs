use anyhow::{bail, Result};
use docker_harness::labels;

use crate::raw::Kind;
use crate::stats::{Op, Report};
use crate::Bench;

/// Removes whatever of this run is still there (after a failed phase), then checks that
/// nothing of this run or of this process is left.
pub(crate) async fn phase(b: &Bench, r: &mut Report) -> Result<()> {
    r.section("leftovers");
    let mut swept = 0;
    for (kind, id) in b.raw.own().await? {
        if kind == Kind::Container {
            b.raw.remove_confirmed(kind, &id).await?;
            swept += 1;
        }
    }
    for (kind, id) in b.raw.own().await? {
        b.raw.remove_confirmed(kind, &id).await?;
        swept += 1;
    }
    let run_left = b.raw.own().await?.len();
    let mine = b.raw.labelled(format!("{}={}", labels::OWNER, labels::Owner::current())).await?.len();
    r.figure(
        "leftovers.swept",
        "resources of this run the final sweep had to remove (0 when every phase cleaned up)",
        "resources",
        1,
        swept as f64,
        Some((Op::Exactly, 0.0)),
    );
    r.figure(
        "leftovers.remaining",
        "resources of this run or this process still on the daemon at the end",
        "resources",
        1,
        (run_left + mine) as f64,
        Some((Op::Exactly, 0.0)),
    );
    r.line(format!(
        "removed by the final sweep: {swept}; still present (run label or this process's owner label): {}",
        run_left + mine
    ));
    if run_left + mine > 0 {
        bail!("{} resource(s) of this run are still on the daemon", run_left + mine);
    }
    Ok(())
}
