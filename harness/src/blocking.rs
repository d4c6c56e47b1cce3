//! All of the async-from-anywhere machinery lives here.
//!
//! Every Docker call runs on one small runtime owned by the harness. That keeps the
//! process's single Docker client valid whatever runtime a test uses (a hyper connection
//! pool spawned on a test's runtime dies with it, and `cargo test` gives every
//! `#[tokio::test]` its own), and it lets `Drop` wait for a removal without ever calling
//! `block_on` inside a caller's runtime: the caller's thread only waits on a channel, with
//! a deadline, while the harness's threads do the work.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use once_cell::sync::Lazy;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("docker-harness")
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            // Without threads nothing in the harness can work; say so plainly.
            eprintln!("docker-harness: cannot start its runtime threads: {e}");
            std::process::abort()
        })
});

pub(crate) fn handle() -> &'static Handle {
    RUNTIME.handle()
}

fn on_harness_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.id() == RUNTIME.handle().id())
}

/// Runs `fut` on the harness runtime and awaits it from whatever runtime the caller uses.
pub(crate) async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if on_harness_runtime() {
        return fut.await;
    }
    match RUNTIME.spawn(fut).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("docker-harness runtime task was cancelled: {e}"),
    }
}

/// Runs `fut` on the harness runtime and waits for it from synchronous code, for at most
/// `limit`. Returns `None` on timeout. Safe from a plain thread, a current-thread runtime
/// and a multi-thread runtime alike; never panics.
pub(crate) fn wait<F>(fut: F, limit: Duration) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    RUNTIME.spawn(async move {
        if let Ok(v) = tokio::time::timeout(limit, fut).await {
            let _ = tx.send(v);
        }
    });
    let recv = move || rx.recv_timeout(limit + Duration::from_millis(250)).ok();
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        // Give the worker's other tasks to another thread while this one waits.
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(recv),
        _ => recv(),
    }
}

/// Runs a future to completion from synchronous code, such as a plain `#[test]`: the
/// async API from a test with no runtime of its own.
///
/// The future runs on a small runtime made for the call (as `#[tokio::test]` makes one),
/// so it can use tokio's timers, tasks and sockets; every Docker call in it runs on the
/// harness's own runtime whatever happens to this one, and guards or a context dropped
/// inside it or after it clean up as anywhere else.
///
/// ```no_run
/// use docker_harness::{ContainerSpec, TestContext};
///
/// #[test]
/// fn greets() -> anyhow::Result<()> {
///     docker_harness::block_on(async {
///         let ctx = TestContext::new()?;
///         let c = ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "3600"])).await?;
///         assert_eq!(c.exec(["echo", "hi"]).await?.stdout, "hi\n");
///         Ok(())
///     })
/// }
/// ```
///
/// # Panics
/// When called from async code (inside a runtime, where blocking the thread would stall
/// it): await the future there instead. And, as `#[tokio::test]` would, when the
/// system refuses a thread's resources for the runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    assert!(
        Handle::try_current().is_err(),
        "docker_harness::block_on is for synchronous code (a plain #[test]); inside a runtime, `.await` the future"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("docker-harness: cannot start a runtime for block_on: {e}"));
    runtime.block_on(fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer() -> u32 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        42
    }

    #[test]
    fn waits_outside_any_runtime() {
        assert_eq!(wait(answer(), Duration::from_secs(5)), Some(42));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waits_inside_a_current_thread_runtime() {
        assert_eq!(wait(answer(), Duration::from_secs(5)), Some(42));
        assert_eq!(run(answer()).await, 42);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_inside_a_multi_thread_runtime() {
        assert_eq!(wait(answer(), Duration::from_secs(5)), Some(42));
        assert_eq!(run(answer()).await, 42);
    }

    #[test]
    fn gives_up_at_its_deadline() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
        };
        let started = std::time::Instant::now();
        assert_eq!(wait(slow, Duration::from_millis(100)), None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn block_on_runs_a_future_with_timers_from_a_plain_thread() {
        assert_eq!(block_on(async { run(answer()).await + answer().await }), 84);
    }

    #[tokio::test]
    async fn block_on_inside_a_runtime_says_to_await_instead() {
        let refused = std::panic::catch_unwind(|| block_on(answer())).unwrap_err();
        let text = refused
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| refused.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(text.contains(".await"), "{text}");
    }

    #[test]
    fn works_from_inside_the_harness_runtime() {
        let v = wait(async { run(answer()).await }, Duration::from_secs(5));
        assert_eq!(v, Some(42));
    }
}
