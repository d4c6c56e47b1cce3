//! A small web service for readiness tests, made from the session image alone: busybox's
//! `httpd`, started after a deliberate delay, announcing itself with a readiness line.

use std::time::Duration;

use docker_harness::ContainerSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PORT: u16 = 8080;

/// Serves `index` at `/` on port 8080 after `delay_secs`, printing `ready` just before.
pub fn slow_web(logical: &str, delay_secs: u32, index: &str) -> ContainerSpec {
    ContainerSpec::new(logical).with_file(index.as_bytes(), "/www/index.html", 0o644).with_cmd([
        "sh",
        "-c",
        &format!("sleep {delay_secs}; echo ready; exec httpd -f -p {PORT} -h /www"),
    ])
}

/// A plain HTTP/1.0 GET to the daemon's machine (the host's loopback unless `DOCKER_HOST`
/// is another machine): status code and body.
pub async fn get(host_port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let host = docker_harness::host_address();
    let work = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), host_port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(20), work).await?
}
