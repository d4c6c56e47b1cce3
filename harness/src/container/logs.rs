//! A container's output: the one demultiplexer of Docker's stdout/stderr frames, used for
//! logs, for exec output, for the lines a wait reads, for a follower and for the last lines
//! a failed test shows, so all of them agree on what was printed (bytes as written, line
//! endings untouched).

use bollard::container::LogOutput;
use bollard::query_parameters::{InspectContainerOptions, LogsOptions};
use bollard::Docker;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};

use crate::engine;
use crate::error::{indent, Error, Result};
use crate::resource::Resource;
use crate::retry;

/// Which of a container's output streams: for a log wait, which one it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
    /// Either (the default of a log wait).
    Either,
}

/// A container's logs so far, or what a command run in it printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// What it wrote to standard output.
    pub stdout: String,
    /// What it wrote to standard error.
    pub stderr: String,
}

/// One frame's stream and text (lossily decoded as UTF-8); stdin echoes are no output. A
/// TTY's console is stdout.
pub(crate) fn demux(frame: LogOutput) -> Option<(LogStream, String)> {
    let (stream, bytes) = match frame {
        LogOutput::StdOut { message } | LogOutput::Console { message } => (LogStream::Stdout, message),
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdIn { .. } => return None,
    };
    Some((stream, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Reads a whole output stream into stdout and stderr.
pub(crate) async fn collect<S>(mut frames: S, what: impl Fn() -> String) -> Result<Logs>
where
    S: Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    let mut logs = Logs::default();
    while let Some(frame) = frames.next().await {
        match demux(frame.map_err(|e| Error::docker(what(), e))?) {
            Some((LogStream::Stderr, text)) => logs.stderr.push_str(&text),
            Some((_, text)) => logs.stdout.push_str(&text),
            None => {}
        }
    }
    Ok(logs)
}

fn options(tail: Option<usize>) -> LogsOptions {
    LogsOptions {
        stdout: true,
        stderr: true,
        tail: tail.map_or_else(|| "all".into(), |n| n.to_string()),
        ..Default::default()
    }
}

fn reading(name: &str) -> impl Fn() -> String + '_ {
    move || format!("read the logs of container {name}")
}

/// Everything logged so far.
pub(crate) async fn read(docker: &Docker, id: &str, name: &str) -> Result<Logs> {
    collect(retry::bounded_stream(docker.logs(id, Some(options(None)))), reading(name)).await
}

/// One line of a container's output, as a log consumer
/// ([`ContainerSpec::with_log_consumer`](crate::ContainerSpec::with_log_consumer)) gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogLine {
    /// The stream it was written to: [`LogStream::Stdout`] or [`LogStream::Stderr`].
    pub stream: LogStream,
    /// The line without its line ending (`\n`, or `\r\n`).
    pub text: String,
}

impl LogLine {
    pub(crate) fn new(stream: LogStream, text: impl Into<String>) -> LogLine {
        LogLine { stream, text: text.into() }
    }

    /// The line marked with its stream, as errors and a failed test's output show it:
    /// `stdout: …` or `stderr: …`.
    pub(crate) fn marked(&self) -> String {
        match self.stream {
            LogStream::Stderr => format!("stderr: {}", self.text),
            _ => format!("stdout: {}", self.text),
        }
    }
}

/// The output as lines, in the order Docker recorded them (the last `tail` only, when given).
pub(crate) async fn read_lines(docker: &Docker, id: &str, name: &str, tail: Option<usize>) -> Result<Vec<LogLine>> {
    let mut frames = retry::bounded_stream(docker.logs(id, Some(options(tail))));
    let mut lines = Vec::new();
    while let Some(frame) = frames.next().await {
        let Some((stream, chunk)) = demux(frame.map_err(|e| Error::docker(reading(name)(), e))?) else { continue };
        for text in chunk.lines() {
            lines.push(LogLine::new(stream, text));
        }
    }
    Ok(lines)
}

/// A container's last `lines` log lines as one block for a failed test's stderr, headed by
/// `title` (its logical name) with its Docker name and state. What cannot be read is said
/// in the block: a test that failed has a better error to show than this one.
pub(crate) fn last_words(docker: Docker, c: Resource, title: String, lines: usize) -> BoxFuture<'static, String> {
    Box::pin(async move {
        let state = match engine::past_stopped(|| {
            retry::bounded(docker.inspect_container(&c.id, None::<InspectContainerOptions>))
        })
        .await
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let status = state.status.map(|s| s.to_string()).unwrap_or_else(|| "in an unknown state".into());
                match state.exit_code {
                    Some(code) if status == "exited" || status == "dead" => format!("{status}, exit code {code}"),
                    _ => status,
                }
            }
            Err(e) => format!("not inspectable: {e}"),
        };
        let body = match read_lines(&docker, &c.id, &c.name, Some(lines)).await {
            Ok(read) => indent(&read.iter().map(LogLine::marked).collect::<Vec<_>>()),
            Err(e) => format!("    (its logs could not be read: {e})"),
        };
        format!("docker-harness: last log lines of {title} (container {}, {state}; at most {lines}):\n{body}", c.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(
        items: Vec<LogOutput>,
    ) -> impl Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Unpin {
        futures_util::stream::iter(items.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn streams_are_kept_apart_and_bytes_kept_as_written() {
        let out = collect(
            frames(vec![
                LogOutput::StdOut { message: "no newline".into() },
                LogOutput::StdErr { message: "err\r\n".into() },
                LogOutput::StdIn { message: "typed".into() },
                LogOutput::Console { message: " tty\n".into() },
            ]),
            || "read".into(),
        )
        .await
        .unwrap();
        assert_eq!(out, Logs { stdout: "no newline tty\n".into(), stderr: "err\r\n".into() });
    }
}
