//! A container's output: the one demultiplexer of Docker's stdout/stderr frames, used for
//! logs, for exec output and for the lines a wait reads, so all three agree on what was
//! printed (bytes as written, line endings untouched).

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use crate::error::{Error, Result};

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
fn demux(frame: LogOutput) -> Option<(LogStream, String)> {
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
    collect(docker.logs(id, Some(options(None))), reading(name)).await
}

/// One line of a container's output.
pub(crate) struct LogLine {
    pub(crate) stream: LogStream,
    pub(crate) text: String,
}

/// The output as lines, in the order Docker recorded them (the last `tail` only, when given).
pub(crate) async fn read_lines(docker: &Docker, id: &str, name: &str, tail: Option<usize>) -> Result<Vec<LogLine>> {
    let mut frames = docker.logs(id, Some(options(tail)));
    let mut lines = Vec::new();
    while let Some(frame) = frames.next().await {
        let Some((stream, chunk)) = demux(frame.map_err(|e| Error::docker(reading(name)(), e))?) else { continue };
        for text in chunk.lines() {
            lines.push(LogLine { stream, text: text.to_string() });
        }
    }
    Ok(lines)
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
