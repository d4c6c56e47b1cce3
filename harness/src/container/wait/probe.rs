//! Checks from the host's side: a TCP connection that stays open, an HTTP status line.
//! Each answers `Ok(())` when ready, else what it saw.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::docker;

/// Docker's userland proxy accepts on the host port even while nothing listens in the
/// container, then closes at once; only a connection that stays open (or speaks) is real.
pub(super) async fn tcp_check(host_port: u16) -> Result<(), String> {
    // The daemon's machine: this one's loopback, or a remote daemon's host.
    let host = docker::host_address();
    let at = docker::endpoint(&host, host_port);
    let conn = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((host.as_str(), host_port))).await;
    let mut stream = match conn {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("{at}: {e}")),
        Err(_) => return Err(format!("{at}: no answer to connect within 2s")),
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
        Err(_) | Ok(Ok(1..)) => Ok(()),
        Ok(Ok(0)) => Err(format!("{at} accepted and closed at once (nothing listens behind it yet)")),
        Ok(Err(e)) => Err(format!("{at}: {e}")),
    }
}

pub(super) async fn http_check(host_port: u16, path: &str, expected: u16) -> Result<(), String> {
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
        Err(_) => Err(format!("GET {path} on {at}: no answer within 5s")),
        Ok(Err(e)) => Err(format!("GET {path} on {at}: {e}")),
        Ok(Ok(status_line)) => match parse_status(&status_line) {
            Some(s) if s == expected => Ok(()),
            Some(s) => Err(format!("GET {path} answered {s}")),
            None if status_line.is_empty() => Err(format!("GET {path}: the connection closed without an answer")),
            None => Err(format!("GET {path}: not an HTTP answer: {status_line:?}")),
        },
    }
}

/// The status code of an HTTP status line (`HTTP/1.1 200 OK`).
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed_and_anything_else_is_not() {
        assert_eq!(parse_status("HTTP/1.0 200 OK"), Some(200));
        assert_eq!(parse_status("HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(parse_status("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(""), None);
    }
}
