//! What happens to a test's containers just before they are removed: a follower of their
//! output is drained (so the last lines reach it), and, when the test failed, their last
//! log lines are read to be shown on stderr, since nothing can read them once the
//! containers are gone.
//!
//! Whether a test failed is known on its own thread only: it is panicking there, or it
//! returned `Err` through `TestContext::run`, which marks the scope failed. A guard dropped
//! inside such a run, before its `Err` is seen, has its lines read and held: they are shown
//! when the run fails, and forgotten when it succeeds.
//!
//! Reading a container's logs is the resources layer's business (its one demultiplexer);
//! this layer is handed a reader and the followers' drains, and decides when to use them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::BoxFuture;

use crate::config::LogPolicy;
use crate::resource::{Kind, Resource};

/// Reads a container's last `lines` log lines as one block of text headed by `title` (its
/// logical name, or its Docker name when the harness did not create it).
pub(crate) type TailReader = fn(Docker, Resource, String, usize) -> BoxFuture<'static, String>;

/// Stops a follower of a container's output, delivering what it had not read yet.
pub(crate) type Drain = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// How long reading the last lines of a test's containers may take in all: they are
/// read in parallel, and a daemon that does not answer must not hold up the removal.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// What a removal happening now does with the container's last lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// Nothing: the test is not known to have failed, and nothing waits for its verdict.
    Skip,
    /// Read them and print them now (the test is failing, or every test shows them).
    Print,
    /// Read them and hold them until the run around the test says how it ended.
    Hold,
}

pub(crate) struct Farewell {
    policy: LogPolicy,
    lines: usize,
    reader: Option<TailReader>,
    /// Set when the test returned `Err` through a run.
    failed: AtomicBool,
    /// How many runs are under way: inside one, a guard's lines are held for its verdict.
    runs: AtomicUsize,
    /// The logical names of the containers the harness created, by ID.
    titles: Mutex<HashMap<String, String>>,
    drains: Mutex<HashMap<String, Drain>>,
    /// Blocks read and not yet printed.
    held: Mutex<Vec<String>>,
}

impl Farewell {
    pub(crate) fn new(policy: LogPolicy, lines: usize, reader: Option<TailReader>) -> Farewell {
        Farewell {
            policy,
            lines,
            reader,
            failed: AtomicBool::new(false),
            runs: AtomicUsize::new(0),
            titles: Mutex::new(HashMap::new()),
            drains: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Marks the test failed (it returned `Err`).
    pub(crate) fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether the test failed, asked on its own thread.
    pub(crate) fn failed_now(&self) -> bool {
        std::thread::panicking() || self.failed.load(Ordering::Relaxed)
    }

    /// What a guard's removal now does with its container's lines; asked on the thread
    /// that drops the guard.
    pub(crate) fn moment(&self, kind: Kind) -> Moment {
        if kind != Kind::Container || self.reader.is_none() {
            return Moment::Skip;
        }
        match self.policy {
            LogPolicy::Never => Moment::Skip,
            LogPolicy::Always => Moment::Print,
            LogPolicy::OnFailure if self.failed_now() => Moment::Print,
            LogPolicy::OnFailure if self.runs.load(Ordering::Relaxed) > 0 => Moment::Hold,
            LogPolicy::OnFailure => Moment::Skip,
        }
    }

    /// Whether the context's teardown shows the lines of what is left (and what was held).
    pub(crate) fn shows_at_end(&self) -> bool {
        match self.policy {
            LogPolicy::Never => false,
            LogPolicy::Always => true,
            LogPolicy::OnFailure => self.failed_now(),
        }
    }

    /// A run begins; it ends when the returned value drops (a cancelled run ends too).
    pub(crate) fn enter_run(&self) -> Run<'_> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        Run { farewell: self }
    }

    /// Records the logical name a container's lines are headed by.
    pub(crate) fn name(&self, id: &str, logical: &str) {
        if let Ok(mut t) = self.titles.lock() {
            t.insert(id.to_string(), logical.to_string());
        }
    }

    /// Registers what stops the follower of a container's output before it is removed.
    pub(crate) fn on_removal(&self, id: &str, drain: Drain) {
        if let Ok(mut d) = self.drains.lock() {
            d.insert(id.to_string(), drain);
        }
    }

    /// Before these resources are removed: drains the followers of the containers among
    /// them and, when `read`, returns each container's last lines as a block. Bounded.
    pub(crate) async fn before_removal(&self, docker: &Docker, items: &[Resource], read: bool) -> Vec<String> {
        let containers: Vec<&Resource> = items.iter().filter(|r| r.kind == Kind::Container).collect();
        let drains: Vec<Drain> = match self.drains.lock() {
            Ok(mut d) => containers.iter().filter_map(|r| d.remove(&r.id)).collect(),
            Err(_) => Vec::new(),
        };
        // Each drain bounds itself; the followed lines go before the container does.
        futures_util::future::join_all(drains.into_iter().map(|d| d())).await;
        let Some(reader) = self.reader.filter(|_| read) else { return Vec::new() };
        let titles = self.titles.lock().map(|t| t.clone()).unwrap_or_default();
        let reads = containers.iter().map(|r| {
            let title = titles.get(&r.id).cloned().unwrap_or_else(|| r.name.clone());
            reader(docker.clone(), (*r).clone(), title, self.lines)
        });
        match tokio::time::timeout(READ_LIMIT, futures_util::future::join_all(reads)).await {
            Ok(blocks) => blocks,
            Err(_) => vec![format!(
                "docker-harness: the last log lines of this test's containers could not be read within {}s",
                READ_LIMIT.as_secs()
            )],
        }
    }

    /// Keeps blocks until the run's verdict.
    pub(crate) fn hold(&self, blocks: Vec<String>) {
        if let Ok(mut h) = self.held.lock() {
            h.extend(blocks);
        }
    }

    /// The blocks held so far, handed over once.
    pub(crate) fn take_held(&self) -> Vec<String> {
        self.held.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default()
    }
}

/// A run under way; see [`Farewell::enter_run`].
pub(crate) struct Run<'a> {
    farewell: &'a Farewell,
}

impl Run<'_> {
    /// The run ended with this verdict: a failure marks the test failed, and the last run to
    /// succeed forgets what was held for it.
    pub(crate) fn ended(self, ok: bool) {
        if !ok {
            self.farewell.mark_failed();
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let f = self.farewell;
        if f.runs.fetch_sub(1, Ordering::Relaxed) == 1 && !f.failed_now() {
            drop(f.take_held());
        }
    }
}

/// Prints blocks on stderr from the test's own thread, where the test runner captures it.
pub(crate) fn print(blocks: &[String]) {
    for b in blocks {
        eprintln!("{b}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(_: Docker, _: Resource, _: String, _: usize) -> BoxFuture<'static, String> {
        Box::pin(async { String::new() })
    }

    #[test]
    fn on_failure_a_guard_inside_a_run_holds_its_lines_and_outside_one_reads_none() {
        let f = Farewell::new(LogPolicy::OnFailure, 50, Some(reader));
        assert_eq!(f.moment(Kind::Container), Moment::Skip);
        let run = f.enter_run();
        assert_eq!(f.moment(Kind::Container), Moment::Hold);
        assert_eq!(f.moment(Kind::Network), Moment::Skip);
        f.hold(vec!["web said".into()]);
        run.ended(true);
        assert!(f.take_held().is_empty(), "a run that succeeded forgets what it held");
        assert!(!f.shows_at_end());
    }

    #[test]
    fn a_run_that_fails_keeps_what_it_held_and_shows_it_at_the_end() {
        let f = Farewell::new(LogPolicy::OnFailure, 50, Some(reader));
        let run = f.enter_run();
        f.hold(vec!["web said".into()]);
        run.ended(false);
        assert!(f.shows_at_end());
        assert_eq!(f.moment(Kind::Container), Moment::Print);
        assert_eq!(f.take_held(), vec!["web said".to_string()]);
    }

    #[test]
    fn always_prints_and_never_reads_nothing() {
        let always = Farewell::new(LogPolicy::Always, 50, Some(reader));
        assert_eq!(always.moment(Kind::Container), Moment::Print);
        assert!(always.shows_at_end());
        let never = Farewell::new(LogPolicy::Never, 50, Some(reader));
        never.mark_failed();
        assert_eq!(never.moment(Kind::Container), Moment::Skip);
        assert!(!never.shows_at_end());
    }
}
