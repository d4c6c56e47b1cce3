//! Following a container's output as it happens: every line goes to the spec's log
//! consumers (the test's stderr prefixed with the logical name, or a callback), from its
//! first line to its last, which is read before the container is removed.
//!
//! Docker ends a follow stream whenever the container is not running (not started yet,
//! stopped, restarting), so the follower follows again after a pause, from the second of
//! the last line it saw. Docker's timestamps tell lines seen from new ones: every line
//! delivered is counted under its timestamp, and a repeat is skipped. Draining stops the
//! follower and reads once more without following, so nothing printed before the removal
//! is lost.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::StreamExt;

use super::logs::{demux, LogLine, LogStream};
use crate::blocking;
use crate::engine::is_404;
use crate::farewell::Drain;

/// How long draining a follower may take: it stops following and reads what is left once.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The pauses between follows while the container is not running.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);

type Callback = dyn Fn(&LogLine) + Send + Sync;

/// Where a followed container's lines go.
#[derive(Clone)]
pub(crate) struct Consumer {
    what: String,
    call: Arc<Callback>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Consumer {
    pub(crate) fn callback(f: impl Fn(&LogLine) + Send + Sync + 'static) -> Consumer {
        Consumer { what: "a callback".into(), call: Arc::new(f) }
    }

    /// The test's stderr, each line prefixed `[logical] ` (`[logical:stderr] ` for what the
    /// container wrote to its stderr). Written to the process's stderr itself: the harness's
    /// threads are no test's, so libtest's capture would give the lines to whichever test
    /// started them (nextest captures each test process's stderr whole).
    pub(crate) fn stderr(logical: &str) -> Consumer {
        let (out, err) = (format!("[{logical}] "), format!("[{logical}:stderr] "));
        let call = move |l: &LogLine| {
            let prefix = if l.stream == LogStream::Stderr { &err } else { &out };
            let _ = writeln!(std::io::stderr().lock(), "{prefix}{}", l.text);
        };
        Consumer { what: format!("stderr as [{logical}]"), call: Arc::new(call) }
    }
}

/// A point in Docker's log timeline: unix seconds and nanoseconds.
type Stamp = (i64, u32);

/// What the follower has delivered: how many lines under each timestamp of the latest
/// second (earlier ones are never read again), and each stream's unfinished line.
#[derive(Default)]
struct Cursor {
    seen: HashMap<Stamp, usize>,
    latest: i64,
    partial: [String; 2],
}

impl Cursor {
    /// Where the next read starts: the latest second seen (Docker's `since` is whole
    /// seconds, inclusive).
    fn since(&self) -> i32 {
        i32::try_from(self.latest).unwrap_or(0)
    }

    /// Whether a line under this stamp is new, given how many under it this read has
    /// skipped so far; counts it when it is.
    fn admit(&mut self, stamp: Option<Stamp>, skipped: &mut HashMap<Stamp, usize>) -> bool {
        let Some(stamp) = stamp else { return true };
        let seen = self.seen.get(&stamp).copied().unwrap_or(0);
        let done = skipped.entry(stamp).or_insert(0);
        if *done < seen {
            *done += 1;
            return false;
        }
        if stamp.0 > self.latest {
            self.latest = stamp.0;
            let latest = self.latest;
            self.seen.retain(|s, _| s.0 >= latest);
        }
        *self.seen.entry(stamp).or_insert(0) += 1;
        *done += 1;
        true
    }

    /// Appends a chunk of one stream; returns the lines it completes.
    fn lines(&mut self, stream: LogStream, chunk: &str) -> Vec<LogLine> {
        let buf = &mut self.partial[usize::from(stream == LogStream::Stderr)];
        buf.push_str(chunk);
        let Some(end) = buf.rfind('\n') else { return Vec::new() };
        let done: String = buf.drain(..=end).collect();
        done.lines().map(|l| LogLine::new(stream, l)).collect()
    }

    /// The unfinished lines, once nothing more will come.
    fn rest(&mut self) -> Vec<LogLine> {
        let [out, err] = std::mem::take(&mut self.partial);
        [(LogStream::Stdout, out), (LogStream::Stderr, err)]
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(s, t)| LogLine::new(s, t.trim_end_matches('\r')))
            .collect()
    }
}

struct Follower {
    cursor: Cursor,
    consumers: Vec<Option<Consumer>>,
    name: String,
}

impl Follower {
    /// One frame of a read: its new lines go to every consumer. A consumer that panics is
    /// said once and dropped; the follower goes on for the others. True when it was new.
    fn take(&mut self, frame: LogOutput, skipped: &mut HashMap<Stamp, usize>) -> bool {
        let Some((stream, text)) = demux(frame) else { return false };
        let (stamp, chunk) = split_stamp(&text);
        let new = self.cursor.admit(stamp, skipped);
        if new {
            let lines = self.cursor.lines(stream, chunk);
            self.deliver(&lines);
        }
        new
    }

    fn deliver(&mut self, lines: &[LogLine]) {
        for slot in &mut self.consumers {
            let Some(c) = slot else { continue };
            if catch_unwind(AssertUnwindSafe(|| lines.iter().for_each(|l| (c.call)(l)))).is_err() {
                eprintln!(
                    "docker-harness: the log consumer {c:?} of container {} panicked; it gets no more lines",
                    self.name
                );
                *slot = None;
            }
        }
    }
}

/// Starts following a container (created, started or not) for `consumers`; returns what
/// stops it, to be run before the container is removed.
pub(crate) fn start(docker: Docker, id: &str, name: &str, consumers: Vec<Consumer>) -> Drain {
    let state = Arc::new(Mutex::new(Follower {
        cursor: Cursor::default(),
        consumers: consumers.into_iter().map(Some).collect(),
        name: name.to_string(),
    }));
    let task = blocking::handle().spawn(follow(docker.clone(), id.to_string(), state.clone()));
    let id = id.to_string();
    Box::new(move || {
        Box::pin(async move {
            task.abort();
            // Ended before the last read, so no two reads deliver at once.
            let _ = task.await;
            let _ = tokio::time::timeout(DRAIN_LIMIT, read(&docker, &id, &state, false)).await;
            if let Ok(mut f) = state.lock() {
                let rest = f.cursor.rest();
                f.deliver(&rest);
            }
        })
    })
}

/// Follows until the container is gone (or the follower is stopped).
async fn follow(docker: Docker, id: String, state: Arc<Mutex<Follower>>) {
    let mut pause = FIRST_PAUSE;
    loop {
        match read(&docker, &id, &state, true).await {
            Err(()) => return,
            Ok(true) => pause = FIRST_PAUSE,
            Ok(false) => pause = (pause * 2).min(MAX_PAUSE),
        }
        tokio::time::sleep(pause).await;
    }
}

/// One read from where the cursor is, following or not. `Ok(true)` when it delivered
/// something, `Err` once the container is gone.
async fn read(docker: &Docker, id: &str, state: &Mutex<Follower>, follow: bool) -> Result<bool, ()> {
    let since = state.lock().map(|f| f.cursor.since()).unwrap_or(0);
    let opts = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        timestamps: true,
        since,
        tail: "all".into(),
        ..Default::default()
    };
    let mut frames = docker.logs(id, Some(opts));
    let mut skipped = HashMap::new();
    let mut any = false;
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(frame) => {
                let Ok(mut f) = state.lock() else { return Err(()) };
                any |= f.take(frame, &mut skipped);
            }
            Err(e) if is_404(&e) => return Err(()),
            // Anything else (a stream cut short, a container not started yet) is read again.
            Err(_) => break,
        }
    }
    Ok(any)
}

/// Splits Docker's `timestamps` prefix (`2024-05-01T12:00:00.123456789Z `) off a chunk.
fn split_stamp(text: &str) -> (Option<Stamp>, &str) {
    match text.split_once(' ') {
        Some((head, rest)) => match parse_stamp(head) {
            Some(s) => (Some(s), rest),
            None => (None, text),
        },
        None => (parse_stamp(text.trim_end()), ""),
    }
}

/// RFC 3339 with optional fraction, `Z` or a `±hh:mm` offset, as unix seconds and nanos.
fn parse_stamp(s: &str) -> Option<Stamp> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    if s.len() < 20 || s.as_bytes()[10] != b'T' {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
        let padded = format!("{:0<9}", &frac[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest.as_bytes().first()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let (oh, om) = (rest.get(1..3)?.parse::<i64>().ok()?, rest.get(4..6)?.parse::<i64>().ok()?);
            (oh * 3600 + om * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// The spec's builders for following live here, beside what they start.
impl super::ContainerSpec {
    /// Streams the container's output into the test's stderr as it happens, each line
    /// prefixed with the logical name: `[web] listening`, `[web:stderr] warning`. Its last
    /// lines are read before the container is removed, so none is lost.
    ///
    /// ```no_run
    /// # use docker_harness::{ContainerSpec, TestContext};
    /// # async fn f(ctx: TestContext) -> docker_harness::Result<()> {
    /// let web = ctx.container(ContainerSpec::new("web").with_cmd(["httpd", "-f"]).with_follow_logs()).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_follow_logs(mut self) -> Self {
        self.consumers.push(Consumer::stderr(&self.logical));
        self
    }

    /// Hands every line of the container's output to `consumer` as it happens (as
    /// testcontainers' log consumers do), from its first line to its last, which is read
    /// before the container is removed. It runs on the harness's threads: keep it short,
    /// and send lines elsewhere through a channel or a `Mutex`. A consumer that panics gets
    /// no more lines. Not for [`shared_container`](crate::shared_container)s, which outlive
    /// the test.
    ///
    /// ```no_run
    /// # use docker_harness::{ContainerSpec, LogStream, TestContext, WaitFor};
    /// # async fn f(ctx: TestContext) -> docker_harness::Result<()> {
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let spec = ContainerSpec::new("job")
    ///     .with_cmd(["sh", "-c", "echo started; echo oops >&2"])
    ///     .with_wait(WaitFor::exit_code(0))
    ///     .with_log_consumer(move |line| {
    ///         if line.stream == LogStream::Stderr {
    ///             let _ = tx.send(line.text.clone());
    ///         }
    ///     });
    /// let job = ctx.container(spec).await?;
    /// job.remove().await?; // its follower is drained first
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["oops"]);
    /// # Ok(()) }
    /// ```
    pub fn with_log_consumer(mut self, consumer: impl Fn(&LogLine) + Send + Sync + 'static) -> Self {
        self.consumers.push(Consumer::callback(consumer));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_offset_timestamps_are_read_to_the_nanosecond() {
        assert_eq!(parse_stamp("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_stamp("2024-05-01T12:00:00.5Z"), Some((1_714_564_800, 500_000_000)));
        assert_eq!(parse_stamp("2024-05-01T14:00:00.000000001+02:00"), Some((1_714_564_800, 1)));
        assert_eq!(parse_stamp("not a time"), None);
        let (stamp, rest) = split_stamp("2024-05-01T12:00:00.123456789Z hello world\n");
        assert_eq!((stamp, rest), (Some((1_714_564_800, 123_456_789)), "hello world\n"));
    }

    #[test]
    fn a_second_read_skips_exactly_the_lines_the_first_delivered() {
        let mut c = Cursor::default();
        let (a, b) = ((100, 1), (100, 2));
        let mut first = HashMap::new();
        assert!(c.admit(Some(a), &mut first) && c.admit(Some(b), &mut first) && c.admit(Some(b), &mut first));
        let mut again = HashMap::new();
        let admitted: Vec<bool> = [a, b, b, b, (101, 0)].into_iter().map(|s| c.admit(Some(s), &mut again)).collect();
        assert_eq!(admitted, [false, false, false, true, true]);
        assert_eq!(c.since(), 101);
    }

    #[test]
    fn lines_are_cut_per_stream_and_an_unfinished_one_comes_at_the_end() {
        let mut c = Cursor::default();
        assert!(c.lines(LogStream::Stdout, "one\ntw").len() == 1);
        assert!(c.lines(LogStream::Stderr, "oops\r\n").iter().all(|l| l.text == "oops"));
        let two = c.lines(LogStream::Stdout, "o\nthr");
        assert_eq!(two, vec![LogLine::new(LogStream::Stdout, "two")]);
        assert_eq!(c.rest(), vec![LogLine::new(LogStream::Stdout, "thr")]);
    }
}
