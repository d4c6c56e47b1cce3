//! Wait strategies: when a container counts as ready.
//!
//! Every strategy polls with a backoff (50 ms doubling to 1 s, never a busy loop), checks the
//! container's state on every round so that one that exits fails the wait at once rather
//! than at the timeout, and gives up after its own timeout with one error that carries the
//! container's state, exit code and the last 20 lines of its logs.

use std::fmt;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{ContainerStateStatusEnum, HealthConfig, HealthStatusEnum};
use bollard::query_parameters::{InspectContainerOptions, LogsOptions};
use bollard::Docker;
use futures_util::StreamExt;
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Env, ProcessEnv};
use crate::container::{ContainerGuard, ContainerSpec, Logs};
use crate::error::{Error, Result, WaitFailure};
use crate::{blocking, docker, ports};

/// The timeout of a strategy without its own, unless `DOCKER_HARNESS_WAIT_TIMEOUT` says
/// otherwise. Generous on purpose: eight parallel test processes starting services on one
/// daemon are much slower than one.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many log lines a failed wait reports.
const TAIL: usize = 20;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Which of a container's output streams a log strategy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
    /// Either (the default).
    Either,
}

/// A condition a container has to meet before a test uses it.
///
/// Give it to [`ContainerSpec::with_wait`] (checked by `ctx.container(..)` right after the
/// start) or to [`ContainerGuard::wait_for`] for a later wait. Each strategy has its own
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
    /// [`ContainerSpec::with_healthcheck`] or use an image that has one).
    pub fn healthy() -> WaitFor {
        WaitFor::of(Strategy::Healthy)
    }

    /// The container port accepts TCP connections from the host, through its published port
    /// ([`ContainerSpec::with_exposed_port`]).
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

impl ContainerSpec {
    /// Waits for this once the container has started; `ctx.container(..)` returns only when
    /// it holds (several calls add up, as [`WaitFor::all`] does). When it fails, the error
    /// is returned and the container is removed.
    pub fn with_wait(mut self, wait: WaitFor) -> Self {
        self.waits.push(wait);
        self
    }

    /// A Docker healthcheck: `cmd` run through the container's shell (`CMD-SHELL`) every
    /// `interval`, each run given at most `interval` too, with `retries` failures in a row
    /// making it unhealthy. Pair it with [`WaitFor::healthy`].
    pub fn with_healthcheck(mut self, cmd: impl Into<String>, interval: Duration, retries: u32) -> Self {
        let nanos = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX).max(1_000_000);
        self.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD-SHELL".to_string(), cmd.into()]),
            interval: Some(nanos),
            timeout: Some(nanos),
            retries: Some(i64::from(retries.max(1))),
            start_period: Some(0),
            ..Default::default()
        });
        self
    }
}

impl ContainerGuard {
    /// Waits until the container meets `wait`.
    ///
    /// # Errors
    /// [`Error::WaitTimeout`] when it does not within the strategy's timeout,
    /// [`Error::ExitedWhileWaiting`] as soon as the container exits (unless the exit is what
    /// was waited for), [`Error::WaitImpossible`] when the strategy cannot succeed (no
    /// healthcheck, port not published, a pattern that does not compile).
    ///
    /// # Example
    /// ```no_run
    /// # use docker_harness::{ContainerGuard, WaitFor};
    /// # async fn f(c: ContainerGuard) -> docker_harness::Result<()> {
    /// c.wait_for(WaitFor::log_line("migrations done")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(&self, wait: WaitFor) -> Result<()> {
        wait_for_id(self.id(), self.name(), wait).await
    }
}

pub(crate) async fn wait_for_id(id: &str, name: &str, wait: WaitFor) -> Result<()> {
    let (id, name) = (id.to_string(), name.to_string());
    blocking::run(async move {
        let docker = docker::client().await?;
        apply(&docker, &id, &name, std::slice::from_ref(&wait)).await
    })
    .await
}

/// Waits for every one of `waits`, in parallel, each with its own timeout.
pub(crate) async fn apply(docker: &Docker, id: &str, name: &str, waits: &[WaitFor]) -> Result<()> {
    if waits.is_empty() {
        return Ok(());
    }
    let default = default_timeout_from(&ProcessEnv)?;
    let all = futures_util::future::try_join_all(waits.iter().map(|w| run(docker, id, name, w, default)));
    all.await.map(drop)
}

/// `DOCKER_HARNESS_WAIT_TIMEOUT` (whole seconds, at least 1), else the default.
pub(crate) fn default_timeout_from(env: &dyn Env) -> Result<Duration> {
    match env.var("DOCKER_HARNESS_WAIT_TIMEOUT") {
        None => Ok(DEFAULT_WAIT_TIMEOUT),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(Error::InvalidEnv {
                var: "DOCKER_HARNESS_WAIT_TIMEOUT",
                value: v,
                expected: "a whole number of seconds, at least 1",
            }),
        },
    }
}

fn run<'a>(
    docker: &'a Docker,
    id: &'a str,
    name: &'a str,
    wait: &'a WaitFor,
    inherited: Duration,
) -> futures_util::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let limit = wait.timeout.unwrap_or(inherited);
        match &wait.strategy {
            Strategy::All(list) => {
                let each = list.iter().map(|w| run(docker, id, name, w, limit));
                futures_util::future::try_join_all(each).await.map(drop)
            }
            _ => poll(docker, id, name, wait, limit).await,
        }
    })
}

/// The container's state as one round of polling saw it.
struct Seen {
    status: Option<ContainerStateStatusEnum>,
    exit_code: Option<i64>,
    health: Option<HealthStatusEnum>,
    has_healthcheck: bool,
    ports: Option<bollard::models::PortMap>,
    published: Vec<u16>,
}

impl Seen {
    fn exited(&self) -> bool {
        matches!(self.status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD))
    }

    fn describe(&self) -> String {
        let status = self.status.map(|s| s.to_string()).unwrap_or_else(|| "in an unknown state".into());
        match self.health {
            Some(h) if self.has_healthcheck => format!("{status} (health: {h})"),
            _ => status,
        }
    }
}

async fn look(docker: &Docker, id: &str, name: &str) -> Result<Seen> {
    // Podman reports a container that has exited but is not yet cleaned up as `stopped`, a
    // state the Docker API does not have and bollard cannot read; it becomes `exited` within
    // moments, so the inspect is asked again (bounded) rather than failing the wait.
    let mut pause = Duration::from_millis(20);
    let info = loop {
        match docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Err(e) if e.to_string().contains("unknown variant `stopped`") && pause < Duration::from_secs(2) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            r => break r.map_err(|e| Error::docker(format!("inspect container {name} while waiting for it"), e))?,
        }
    };
    let state = info.state.unwrap_or_default();
    let config_check = info.config.as_ref().and_then(|c| c.healthcheck.as_ref()).and_then(|h| h.test.clone());
    let published = info
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .map(|b| b.keys().filter_map(|k| k.split('/').next()?.parse().ok()).collect())
        .unwrap_or_default();
    Ok(Seen {
        status: state.status,
        exit_code: state.exit_code,
        health: state.health.as_ref().and_then(|h| h.status),
        // Podman reports an empty health status for a container with no healthcheck at all.
        has_healthcheck: config_check.is_some_and(|t| !t.is_empty() && t[0] != "NONE")
            || state.health.as_ref().and_then(|h| h.status).is_some_and(|s| s != HealthStatusEnum::EMPTY),
        ports: info.network_settings.and_then(|n| n.ports),
        published,
    })
}

enum Check {
    Ready,
    NotYet(String),
}

async fn poll(docker: &Docker, id: &str, name: &str, wait: &WaitFor, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let seen = look(docker, id, name).await?;
        let left = limit.saturating_sub(started.elapsed());
        // One check may not outlive the strategy's timeout (an exec probe can hang).
        let bound = left.max(Duration::from_millis(200));
        let last = match tokio::time::timeout(bound, check(docker, id, name, wait, &seen)).await {
            Ok(Ok(Check::Ready)) => return Ok(()),
            Ok(Ok(Check::NotYet(note))) => note,
            Ok(Err(e)) => return Err(e),
            Err(_) => format!("the check itself took over {bound:?}"),
        };
        // State was read before the check, so a container that printed its line and then
        // exited still counts as ready above.
        if seen.exited() {
            return Err(Error::ExitedWhileWaiting(Box::new(WaitFailure {
                container: name.to_string(),
                strategy: wait.to_string(),
                after: started.elapsed(),
                state: seen.describe(),
                exit_code: seen.exit_code,
                last_attempt: last,
                logs: tail(docker, id).await,
            })));
        }
        if started.elapsed() >= limit {
            return Err(Error::WaitTimeout(Box::new(WaitFailure {
                container: name.to_string(),
                strategy: wait.to_string(),
                after: started.elapsed(),
                state: seen.describe(),
                exit_code: seen.exit_code.filter(|_| seen.exited()),
                last_attempt: last,
                logs: tail(docker, id).await,
            })));
        }
        tokio::time::sleep(pause.min(limit.saturating_sub(started.elapsed()))).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn check(docker: &Docker, id: &str, name: &str, wait: &WaitFor, seen: &Seen) -> Result<Check> {
    let impossible = |reason: &str, help: &str| Error::WaitImpossible {
        container: name.to_string(),
        strategy: wait.to_string(),
        reason: reason.to_string(),
        help: help.to_string(),
    };
    match &wait.strategy {
        Strategy::Log { pattern, stream, times, .. } => {
            let re = pattern
                .as_ref()
                .map_err(|e| impossible(&format!("the pattern does not compile: {e}"), "fix the regular expression"))?;
            let lines = read_lines(docker, id, name, None).await?;
            let n = lines
                .iter()
                .filter(|l| *stream == LogStream::Either || l.stream == *stream)
                .filter(|l| re.is_match(&l.text))
                .count();
            Ok(if n >= *times { Check::Ready } else { Check::NotYet(format!("{n} of {times} matching line(s)")) })
        }
        Strategy::Healthy => {
            if !seen.has_healthcheck {
                return Err(impossible(
                    "it has no healthcheck",
                    "add one with ContainerSpec::with_healthcheck(cmd, interval, retries), or wait for \
                     something else (a log line, a port)",
                ));
            }
            Ok(match seen.health {
                Some(HealthStatusEnum::HEALTHY) => Check::Ready,
                h => {
                    Check::NotYet(format!("health is {}", h.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into())))
                }
            })
        }
        Strategy::Exit { code } => {
            if !seen.exited() {
                return Ok(Check::NotYet(format!("still {}", seen.describe())));
            }
            match seen.exit_code {
                Some(c) if c == *code => Ok(Check::Ready),
                // Anything else is an exit while waiting, reported by the caller at once.
                other => Ok(Check::NotYet(format!("exited with {other:?}"))),
            }
        }
        Strategy::Exec { cmd } => {
            if seen.exited() {
                return Ok(Check::NotYet("the container has exited".into()));
            }
            match crate::container::exec(id, name, cmd.clone()).await {
                Ok(out) if out.success() => Ok(Check::Ready),
                Ok(out) => Ok(Check::NotYet(format!(
                    "exit code {}{}",
                    out.exit_code,
                    last_line(&out.stderr).map(|l| format!(", stderr: {l}")).unwrap_or_default()
                ))),
                // The container may be between start and running; the next round sees it.
                Err(e) => Ok(Check::NotYet(e.to_string())),
            }
        }
        Strategy::Port { port, inside: true } => {
            if seen.exited() {
                return Ok(Check::NotYet("the container has exited".into()));
            }
            // busybox's nc lacks -z in some builds; connecting with stdin closed does the same.
            let probe = format!(
                "nc -z -w 2 127.0.0.1 {port} 2>/dev/null || nc -w 2 127.0.0.1 {port} </dev/null >/dev/null 2>&1"
            );
            match crate::container::exec(id, name, vec!["sh".into(), "-c".into(), probe]).await {
                Ok(out) if out.success() => Ok(Check::Ready),
                Ok(out) => Ok(Check::NotYet(format!("nc in the container exited with {}", out.exit_code))),
                Err(e) => Ok(Check::NotYet(e.to_string())),
            }
        }
        Strategy::Port { port, inside: false } | Strategy::Http { port, .. } => {
            if !seen.published.contains(port) {
                return Err(impossible(
                    &format!("port {port} is not published"),
                    &format!(
                        "publish it with ContainerSpec::with_exposed_port({port}), or use WaitFor::port_inside({port})"
                    ),
                ));
            }
            let Some(host_port) = seen.ports.as_ref().and_then(|p| ports::host_port_in(p, *port)) else {
                return Ok(Check::NotYet("its host port is not assigned yet".into()));
            };
            match &wait.strategy {
                Strategy::Http { path, status, .. } => Ok(http_check(host_port, path, *status).await),
                _ => Ok(tcp_check(host_port).await),
            }
        }
        Strategy::All(_) => unreachable!("run() splits composite strategies"),
    }
}

/// Docker's userland proxy accepts on the host port even while nothing listens in the
/// container, then closes at once; only a connection that stays open (or speaks) is real.
async fn tcp_check(host_port: u16) -> Check {
    // The daemon's machine: this one's loopback, or a remote daemon's host.
    let host = docker::host_address();
    let at = docker::endpoint(&host, host_port);
    let conn = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((host.as_str(), host_port))).await;
    let mut stream = match conn {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Check::NotYet(format!("{at}: {e}")),
        Err(_) => return Check::NotYet(format!("{at}: no answer to connect within 2s")),
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
        Err(_) | Ok(Ok(1..)) => Check::Ready,
        Ok(Ok(0)) => Check::NotYet(format!("{at} accepted and closed at once (nothing listens behind it yet)")),
        Ok(Err(e)) => Check::NotYet(format!("{at}: {e}")),
    }
}

async fn http_check(host_port: u16, path: &str, expected: u16) -> Check {
    let host = docker::host_address();
    let at = docker::endpoint(&host, host_port);
    let attempt = async {
        let mut stream = TcpStream::connect((host.as_str(), host_port)).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {at}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Err(_) => Check::NotYet(format!("GET {path} on {at}: no answer within 5s")),
        Ok(Err(e)) => Check::NotYet(format!("GET {path} on {at}: {e}")),
        Ok(Ok(status_line)) => match parse_status(&status_line) {
            Some(s) if s == expected => Check::Ready,
            Some(s) => Check::NotYet(format!("GET {path} answered {s}")),
            None if status_line.is_empty() => {
                Check::NotYet(format!("GET {path}: the connection closed without an answer"))
            }
            None => Check::NotYet(format!("GET {path}: not an HTTP answer: {status_line:?}")),
        },
    }
}

/// The status code of an HTTP status line (`HTTP/1.1 200 OK`).
pub(crate) fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().find(|l| !l.trim().is_empty())
}

/// One line of a container's output.
pub(crate) struct LogLine {
    pub(crate) stream: LogStream,
    pub(crate) text: String,
}

/// The container's output as lines, in the order Docker recorded them (the last `tail` only,
/// when given).
pub(crate) async fn read_lines(docker: &Docker, id: &str, name: &str, tail: Option<usize>) -> Result<Vec<LogLine>> {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        tail: tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
        ..Default::default()
    };
    let mut stream = docker.logs(id, Some(opts));
    let mut lines = Vec::new();
    while let Some(chunk) = stream.next().await {
        let (which, bytes) = match chunk.map_err(|e| Error::docker(format!("read the logs of container {name}"), e))? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (LogStream::Stdout, message),
            LogOutput::StdErr { message } => (LogStream::Stderr, message),
            LogOutput::StdIn { .. } => continue,
        };
        for text in String::from_utf8_lossy(&bytes).lines() {
            lines.push(LogLine { stream: which, text: text.to_string() });
        }
    }
    Ok(lines)
}

/// Everything logged so far, split by stream.
pub(crate) async fn read_logs(docker: &Docker, id: &str, name: &str) -> Result<Logs> {
    let mut logs = Logs::default();
    for l in read_lines(docker, id, name, None).await? {
        let s = if l.stream == LogStream::Stderr { &mut logs.stderr } else { &mut logs.stdout };
        s.push_str(&l.text);
        s.push('\n');
    }
    Ok(logs)
}

/// The last lines of the logs for an error message; a failure to read them is said inline,
/// since the wait's own error matters more.
async fn tail(docker: &Docker, id: &str) -> Vec<String> {
    match read_lines(docker, id, id, Some(TAIL)).await {
        Ok(lines) => lines
            .into_iter()
            .map(|l| match l.stream {
                LogStream::Stderr => format!("stderr: {}", l.text),
                _ => format!("stdout: {}", l.text),
            })
            .collect(),
        Err(e) => vec![format!("(the logs could not be read: {e})")],
    }
}

/// Log lines indented under an error message.
pub(crate) fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (no output)".to_string();
    }
    lines.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_strategy_describes_itself_for_its_error() {
        let w = WaitFor::log_line("ready$").on(LogStream::Stdout).times(2);
        assert_eq!(w.to_string(), "print a line matching /ready$/ on stdout 2 times");
        let all = WaitFor::all([WaitFor::healthy(), WaitFor::http(8080, "/", 200)]);
        assert_eq!(all.to_string(), "all of [become healthy; answer GET / on port 8080 with HTTP 200]");
    }

    #[test]
    fn the_default_timeout_is_generous_and_overridable() {
        let none: HashMap<&str, &str> = HashMap::new();
        assert_eq!(default_timeout_from(&none).unwrap(), Duration::from_secs(60));
        let set: HashMap<&str, &str> = [("DOCKER_HARNESS_WAIT_TIMEOUT", "120")].into();
        assert_eq!(default_timeout_from(&set).unwrap(), Duration::from_secs(120));
        let bad: HashMap<&str, &str> = [("DOCKER_HARNESS_WAIT_TIMEOUT", "0")].into();
        let err = default_timeout_from(&bad).unwrap_err().to_string();
        assert!(err.contains("DOCKER_HARNESS_WAIT_TIMEOUT"), "{err}");
    }

    #[test]
    fn status_lines_are_parsed_and_anything_else_is_not() {
        assert_eq!(parse_status("HTTP/1.0 200 OK"), Some(200));
        assert_eq!(parse_status("HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(parse_status("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn a_bad_pattern_is_kept_until_the_wait_reports_it() {
        let w = WaitFor::log_line("(unclosed");
        assert!(matches!(&w.strategy, Strategy::Log { pattern: Err(_), .. }));
    }

    #[test]
    fn a_healthcheck_interval_is_given_in_nanoseconds() {
        let spec = ContainerSpec::new("x").with_healthcheck("true", Duration::from_millis(500), 3);
        let h = spec.healthcheck.unwrap();
        assert_eq!(h.interval, Some(500_000_000));
        assert_eq!(h.retries, Some(3));
        assert_eq!(h.test.unwrap()[0], "CMD-SHELL");
    }
}
