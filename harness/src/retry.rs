//! Calls the harness may safely make twice: inspecting, listing and removing (where 404
//! already means gone) are tried again, with backoff, when the answer was lost on the way
//! (a reset connection, half a response) or the daemon answered 500, 502 or 503. A create
//! is never in here: its lost answer may hide a resource that exists, which is found again
//! by its unique name and labels instead (`found_again` in each resource's module).
//!
//! A call that got no answer at all within the client's request timeout is not tried
//! again: the daemon is stalled, and waiting for it once is the bound.
//!
//! bollard's request timeout ends when an answer's head arrives; its body is read with no
//! bound at all, so a daemon that sends a head and then stops in the middle of a body (an
//! inspect's JSON, a pull's progress) would hold the call for ever. [`bounded`] gives one
//! call the request timeout for its whole answer, body included, and [`bounded_stream`]
//! gives each item of a streamed body the request timeout since the one before. Past
//! either, the call fails with bollard's `RequestTimeoutError`, which `Error::docker` reads
//! as `DaemonError::Stalled` and [`transient`] never retries.

use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use futures_util::{Stream, StreamExt};

use crate::engine::status_of;
use crate::error::request_timeout;

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
        match bounded(call()).await {
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

/// One call with the request timeout for its whole answer, body included.
pub(crate) fn bounded<T>(
    call: impl Future<Output = Result<T, BollardError>>,
) -> impl Future<Output = Result<T, BollardError>> {
    within(request_timeout(), call)
}

/// Not an `async fn`, and the call boxed: bollard's futures are large in a debug build, and
/// each layer of `async fn` around one would hold it again in every caller's future, on the
/// stack of the test's thread (2 MiB under nextest).
fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, BollardError>>,
) -> impl Future<Output = Result<T, BollardError>> {
    use futures_util::FutureExt;
    tokio::time::timeout(limit, Box::pin(call)).map(|r| r.unwrap_or(Err(BollardError::RequestTimeoutError)))
}

/// A streamed body (a pull's progress, logs read to their end, an archive) whose every item
/// comes within the request timeout of the one before; else it ends with one
/// `RequestTimeoutError`. Not for what may rightly be silent for long: a followed log, an
/// attached exec, a build's step.
pub(crate) fn bounded_stream<T>(
    stream: impl Stream<Item = Result<T, BollardError>> + Unpin,
) -> impl Stream<Item = Result<T, BollardError>> + Unpin {
    gaps_within(request_timeout(), stream)
}

fn gaps_within<T>(
    limit: Duration,
    stream: impl Stream<Item = Result<T, BollardError>> + Unpin,
) -> impl Stream<Item = Result<T, BollardError>> + Unpin {
    Box::pin(futures_util::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            // Said once; the stream is dropped with its connection.
            Err(_) => Some((Err(BollardError::RequestTimeoutError), None)),
        }
    }))
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

    #[tokio::test]
    async fn a_body_that_stops_coming_ends_the_call_as_a_timeout_never_a_wait() {
        let limit = Duration::from_millis(50);
        let stalled = within(limit, std::future::pending::<Result<(), BollardError>>()).await;
        assert!(matches!(stalled, Err(BollardError::RequestTimeoutError)), "{stalled:?}");
        assert_eq!(within(limit, async { Ok::<_, BollardError>(7) }).await.unwrap(), 7);
        // Two items, then silence: both come through, then one timeout, then the end.
        let items = futures_util::stream::iter([Ok(1), Ok(2)]).chain(futures_util::stream::pending());
        let seen: Vec<_> = gaps_within(limit, Box::pin(items)).collect().await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(matches!(seen[2], Err(BollardError::RequestTimeoutError)), "{seen:?}");
        // A stream that ends by itself ends so.
        let ended: Vec<_> = gaps_within(limit, futures_util::stream::iter([Ok::<_, BollardError>(1)])).collect().await;
        assert_eq!(ended.len(), 1);
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
