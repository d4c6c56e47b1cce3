//! A daemon that stopped answering: its own enum, wrapped by [`super::Error::Daemon`], so
//! that the crate's error stays one page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The daemon was reached but did not answer in time ([`super::Error::Daemon`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// One call got no answer within the client's request timeout (or, for one the harness
    /// retries, no good answer within its attempts).
    #[error(
        "the Docker daemon did not answer in time to {action} ({after:?} allowed{}).\n  \
         help: check that the daemon still answers (`docker info`); a slow one gets more time \
         from DOCKER_HARNESS_REQUEST_TIMEOUT (seconds, default 120)",
        if *.retries > 0 { format!(", after {} retries", .retries) } else { String::new() }
    )]
    Stalled {
        /// What was being done, and to what (`remove container dh-t-1-web`).
        action: String,
        /// How long one attempt was allowed.
        after: Duration,
        /// How many times the call was tried again first.
        retries: u32,
    },
}

/// The client's request timeout in seconds, as the client module set it from the settings
/// (this module sits below them).
pub(crate) static REQUEST_TIMEOUT_SECS: AtomicU64 = AtomicU64::new(120);

/// How long one call to the daemon may wait for its answer.
pub(crate) fn request_timeout() -> Duration {
    Duration::from_secs(REQUEST_TIMEOUT_SECS.load(Ordering::Relaxed))
}
