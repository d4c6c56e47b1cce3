//! Calls the harness may safely make twice: inspecting, listing and removing (where 404
//! already means gone) are tried again, with backoff, when the answer was lost on the way
//! (a reset connection, half a response) or the daemon answered 500, 502 or 503. A create
//! is never in here: its lost answer may hide a resource that exists, which is found again
//! by its unique name and labels instead (`found_again` in each resource's module).
//!
//! A call that got no answer at all within the client's request timeout is not tried
//! again: the daemon is stalled, and waiting for it once is the bound.

use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as BollardError;

use crate::engine::status_of;

/// How many times one call is made at most.
pub(crate) const ATTEMPTS: u32 = 4;
/// The pause before the first retry; each next one doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Whether a failure is worth one more try of an idempotent call.
pub(crate) fn transient(e: &BollardError) -> bool {
    match e {
        BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. } => true,
        // Through the engine's reading: Podman's 500 that means 404 or 409 is not a 500 here.
        BollardError::DockerResponseServerError { .. } => matches!(status_of(e), Some(500 | 502 | 503)),
        _ => false,
    }
}

/// Makes `call` until it succeeds, fails for good, or has been made [`ATTEMPTS`] times;
/// `what` names it for the line each retry prints.
pub(crate) async fn idempotent<T, F, Fut>(what: &(dyn Fn() -> String + Sync), mut call: F) -> Result<T, BollardError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BollardError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                eprintln!("docker-harness: {}: {e}; trying again ({attempt} of {} retries)", what(), ATTEMPTS - 1);
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError { status_code, message: message.into() }
    }

    #[test]
    fn a_lost_answer_or_a_server_error_is_tried_again_and_an_answer_is_not() {
        let io = BollardError::IOError { err: std::io::Error::from(std::io::ErrorKind::ConnectionReset) };
        assert!(transient(&io));
        assert!(transient(&server(500, "fault-proxy: injected")));
        assert!(transient(&server(503, "")));
        for final_answer in [server(404, "no such container"), server(409, "in use"), server(400, "bad")] {
            assert!(!transient(&final_answer), "{final_answer}");
        }
        assert!(!transient(&BollardError::RequestTimeoutError));
    }

    #[test]
    fn a_call_is_made_at_most_four_times_and_stops_at_its_first_success() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut made = 0;
        let r: Result<(), _> = rt.block_on(idempotent(&|| "inspect container c".into(), || {
            made += 1;
            async { Err(server(500, "down")) }
        }));
        assert!(r.is_err());
        assert_eq!(made, ATTEMPTS);
        let mut made = 0;
        let r = rt.block_on(idempotent(&|| "inspect container c".into(), || {
            made += 1;
            let n = made;
            async move {
                if n < 3 {
                    Err(server(503, ""))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(r.unwrap(), 3);
    }
}
