//! Every Docker call the harness makes, counted by the module that asked, the operation and
//! why (the phase of a test it served: process start, context, create, teardown; a call
//! outside any of them is the test's own `use`), so
//! that what a test process costs can be read call by call instead of guessed from timings.
//!
//! Counting is always on: a counter bump next to an HTTP round trip costs nothing
//! measurable. With `DOCKER_HARNESS_CALL_LOG=<file>` set, the counts so far are appended to
//! that file as one JSON line (`{"pid":…,"test":…,"calls":[{"module","op","why","n"}]}`)
//! each time a context's teardown ends; a reader keeps the last line of each pid. A line
//! per teardown rather than one at exit: the library has no exit hook without unsafe code,
//! and nothing a test does after its last teardown calls Docker.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::Mutex;

use once_cell::sync::Lazy;

/// The environment variable that names the file to append counts to.
pub(crate) const LOG_ENV: &str = "DOCKER_HARNESS_CALL_LOG";

tokio::task_local! {
    static WHY: &'static str;
}

type Key = (&'static str, &'static str, &'static str);

static COUNTS: Lazy<Mutex<BTreeMap<Key, u64>>> = Lazy::new(Default::default);

/// Runs `fut` with its Docker calls attributed to `why` (the innermost scope wins). Work
/// spawned onto another task leaves the scope: it says its own `why`.
pub(crate) async fn why<F: Future>(why: &'static str, fut: F) -> F::Output {
    WHY.scope(why, fut).await
}

/// One call by `module`, of `op`, for the phase the current task is in.
pub(crate) fn note(module: &'static str, op: &'static str) {
    let why = WHY.try_with(|w| *w).unwrap_or("use");
    note_as(module, op, why);
}

/// One call, for a phase the caller knows whatever task it runs in.
pub(crate) fn note_as(module: &'static str, op: &'static str, why: &'static str) {
    if let Ok(mut c) = COUNTS.lock() {
        *c.entry((module, op, why)).or_insert(0) += 1;
    }
}

/// The counts so far, as `(module, op, why, n)`.
pub(crate) fn snapshot() -> Vec<(&'static str, &'static str, &'static str, u64)> {
    COUNTS.lock().map(|c| c.iter().map(|(&(m, o, w), &n)| (m, o, w, n)).collect()).unwrap_or_default()
}

/// Appends the counts so far to the call log, when one is asked for. Never fails a test:
/// a log that cannot be written is said once on stderr.
pub(crate) fn flush() {
    let Some(path) = std::env::var_os(LOG_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let calls: Vec<serde_json::Value> = snapshot()
        .into_iter()
        .map(|(module, op, why, n)| serde_json::json!({ "module": module, "op": op, "why": why, "n": n }))
        .collect();
    let line = serde_json::json!({
        "pid": std::process::id(),
        "test": std::env::var("NEXTEST_TEST_NAME").unwrap_or_default(),
        "calls": calls,
    });
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    // One write of a line shorter than a pipe buffer on an O_APPEND file: lines of
    // concurrent processes do not interleave.
    let written =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(&bytes));
    if let Err(e) = written {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| eprintln!("docker-harness: could not append to {LOG_ENV} file {}: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(module: &str, op: &str, why: &str) -> u64 {
        snapshot().into_iter().find(|c| (c.0, c.1, c.2) == (module, op, why)).map_or(0, |c| c.3)
    }

    #[tokio::test]
    async fn a_call_is_counted_under_the_innermost_why_and_outside_any_as_use() {
        let before = (count("unit", "op", "outer"), count("unit", "op", "inner"), count("unit", "op", "use"));
        why("outer", async {
            note("unit", "op");
            why("inner", async { note("unit", "op") }).await;
        })
        .await;
        note("unit", "op");
        assert_eq!(count("unit", "op", "outer"), before.0 + 1);
        assert_eq!(count("unit", "op", "inner"), before.1 + 1);
        assert_eq!(count("unit", "op", "use"), before.2 + 1);
    }
}
