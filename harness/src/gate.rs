//! The creation gate: once the process is shutting down (SIGTERM or SIGINT), nothing new is
//! created. A create that starts afterwards fails at once instead of racing the cleanup
//! (a container made after the cleanup listed this process's resources would be left
//! behind), and the cleanup first waits, bounded, for the creates already sent.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

static CLOSED: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Held while one create is with the daemon.
#[derive(Debug)]
pub(crate) struct Pass(());

impl Drop for Pass {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Lets one create through, unless the process is shutting down. Counted before the check:
/// either the closer sees this create in flight and waits for it, or this sees the gate
/// closed.
pub(crate) fn enter(what: &str) -> Result<Pass> {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let pass = Pass(());
    if CLOSED.load(Ordering::SeqCst) {
        return Err(Error::ShuttingDown { what: what.to_string() });
    }
    Ok(pass)
}

/// Closes the gate for good and waits up to `limit` for the creates in flight; returns how
/// many were still going at the end.
pub(crate) async fn close(limit: Duration) -> usize {
    CLOSED.store(true, Ordering::SeqCst);
    let started = Instant::now();
    loop {
        let n = IN_FLIGHT.load(Ordering::SeqCst);
        if n == 0 || started.elapsed() >= limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the gate is the process's, and closing it is for good.
    #[tokio::test]
    async fn a_closed_gate_refuses_new_creates_and_waits_for_those_in_flight() {
        let inside = enter("create volume a").expect("open before a signal");
        let closing = tokio::spawn(close(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closing.is_finished(), "the close waits for the create in flight");
        let refused = enter("create container b").unwrap_err();
        assert!(refused.to_string().contains("create container b"), "{refused}");
        drop(inside);
        assert_eq!(closing.await.unwrap(), 0);
    }
}
