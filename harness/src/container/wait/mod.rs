//! Wait strategies: when a container counts as ready.
//!
//! Every strategy polls with a backoff (50 ms doubling to 1 s, never a busy loop), checks the
//! container's state on every round so that one that exits fails the wait at once rather
//! than at the timeout, and gives up after its own timeout with one error that carries the
//! container's state, exit code and the last 20 lines of its logs. One round's look and
//! verdict are in `check`; the checks from the host's side (TCP, HTTP) in `probe`; the
//! polling itself in `poll`. This module says what a strategy is and nothing more.

mod check;
pub(crate) mod poll;
mod probe;

use std::fmt;
use std::time::Duration;

use regex::Regex;

use super::logs::LogStream;

/// The timeout of a strategy without its own, unless `DOCKER_HARNESS_WAIT_TIMEOUT` says
/// otherwise. Generous on purpose: eight parallel test processes starting services on one
/// daemon are much slower than one.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A condition a container has to meet before a test uses it.
///
/// Give it to [`ContainerSpec::with_wait`](crate::ContainerSpec::with_wait) (checked by
/// `ctx.container(..)` right after the start) or to
/// [`Container::wait_for`](crate::Container::wait_for) for a later wait. Each strategy has its own
/// timeout ([`with_timeout`](Self::with_timeout), else `DOCKER_HARNESS_WAIT_TIMEOUT` seconds,
/// else 60 s).
///
/// ```
/// use std::time::Duration;
/// use docker_harness::WaitFor;
///
/// let ready = WaitFor::all([
///     WaitFor::log_line("listening on").times(1),
///     WaitFor::http(8080, "/health", 200).with_timeout(Duration::from_secs(30)),
/// ]);
/// assert!(ready.to_string().contains("/health"));
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct WaitFor {
    strategy: Strategy,
    timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Strategy {
    Log { pattern: std::result::Result<Regex, String>, source: String, stream: LogStream, times: usize },
    Healthy,
    Port { port: u16, inside: bool },
    Http { port: u16, path: String, status: u16 },
    Exit { code: i64 },
    Exec { cmd: Vec<String> },
    All(Vec<WaitFor>),
}

impl WaitFor {
    fn of(strategy: Strategy) -> WaitFor {
        WaitFor { strategy, timeout: None }
    }

    /// A line of the logs matches this regular expression (on either stream; see
    /// [`on`](Self::on) and [`times`](Self::times)). A pattern that does not compile fails
    /// the wait at once with the reason.
    pub fn log_line(pattern: &str) -> WaitFor {
        let compiled = Regex::new(pattern).map_err(|e| e.to_string());
        WaitFor::of(Strategy::Log {
            pattern: compiled,
            source: pattern.to_string(),
            stream: LogStream::Either,
            times: 1,
        })
    }

    /// Docker's healthcheck reports `healthy` (set one with
    /// [`ContainerSpec::with_healthcheck`](crate::ContainerSpec::with_healthcheck) or use an
    /// image that has one).
    pub fn healthy() -> WaitFor {
        WaitFor::of(Strategy::Healthy)
    }

    /// The container port accepts TCP connections from the host, through its published port
    /// ([`ContainerSpec::with_exposed_port`](crate::ContainerSpec::with_exposed_port)).
    pub fn port(container_port: u16) -> WaitFor {
        WaitFor::of(Strategy::Port { port: container_port, inside: false })
    }

    /// The port accepts TCP connections inside the container's own network namespace,
    /// probed with `nc` run in the container (the port need not be published).
    pub fn port_inside(container_port: u16) -> WaitFor {
        WaitFor::of(Strategy::Port { port: container_port, inside: true })
    }

    /// A plain HTTP/1.0 `GET path` to the published port answers with `status`.
    pub fn http(container_port: u16, path: impl Into<String>, status: u16) -> WaitFor {
        WaitFor::of(Strategy::Http { port: container_port, path: path.into(), status })
    }

    /// The container exits with this code (for one-shot containers: migrations, jobs).
    pub fn exit_code(code: i64) -> WaitFor {
        WaitFor::of(Strategy::Exit { code })
    }

    /// A command run in the container exits with 0.
    pub fn exec<I, S>(cmd: I) -> WaitFor
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        WaitFor::of(Strategy::Exec { cmd: cmd.into_iter().map(Into::into).collect() })
    }

    /// Every one of these, checked in parallel. Those without a timeout of their own get
    /// this one's.
    pub fn all(waits: impl IntoIterator<Item = WaitFor>) -> WaitFor {
        WaitFor::of(Strategy::All(waits.into_iter().collect()))
    }

    /// Its own timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> WaitFor {
        self.timeout = Some(timeout);
        self
    }

    /// For a log strategy: which stream to read. Ignored by the others.
    pub fn on(mut self, stream: LogStream) -> WaitFor {
        if let Strategy::Log { stream: s, .. } = &mut self.strategy {
            *s = stream;
        }
        self
    }

    /// For a log strategy: wait for the `n`th matching line (at least 1). Ignored by the others.
    pub fn times(mut self, n: usize) -> WaitFor {
        if let Strategy::Log { times, .. } = &mut self.strategy {
            *times = n.max(1);
        }
        self
    }
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.strategy {
            Strategy::Log { source, stream, times, .. } => {
                write!(f, "print a line matching /{source}/")?;
                match stream {
                    LogStream::Stdout => f.write_str(" on stdout")?,
                    LogStream::Stderr => f.write_str(" on stderr")?,
                    LogStream::Either => {}
                }
                if *times > 1 {
                    write!(f, " {times} times")?;
                }
                Ok(())
            }
            Strategy::Healthy => f.write_str("become healthy"),
            Strategy::Port { port, inside: false } => {
                write!(f, "accept TCP connections on port {port} from the host")
            }
            Strategy::Port { port, inside: true } => {
                write!(f, "accept TCP connections on port {port} inside its network")
            }
            Strategy::Http { port, path, status } => {
                write!(f, "answer GET {path} on port {port} with HTTP {status}")
            }
            Strategy::Exit { code } => write!(f, "exit with code {code}"),
            Strategy::Exec { cmd } => write!(f, "succeed at exec {cmd:?}"),
            Strategy::All(list) => {
                f.write_str("all of [")?;
                for (i, w) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{w}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_describes_itself_for_its_error() {
        let w = WaitFor::log_line("ready$").on(LogStream::Stdout).times(2);
        assert_eq!(w.to_string(), "print a line matching /ready$/ on stdout 2 times");
        let all = WaitFor::all([WaitFor::healthy(), WaitFor::http(8080, "/", 200)]);
        assert_eq!(all.to_string(), "all of [become healthy; answer GET / on port 8080 with HTTP 200]");
    }

    #[test]
    fn a_bad_pattern_is_kept_until_the_wait_reports_it() {
        let w = WaitFor::log_line("(unclosed");
        assert!(matches!(&w.strategy, Strategy::Log { pattern: Err(_), .. }));
    }
}
