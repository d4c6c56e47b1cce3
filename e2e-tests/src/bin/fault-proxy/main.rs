//! A Docker daemon that misbehaves on purpose: a loopback TCP proxy in front of the real
//! daemon's unix socket that injects faults on a seeded schedule.
//!
//! `fault-proxy --rules FILE --seed N --log FILE` listens on 127.0.0.1 (port given by
//! `--listen`, or any free one, written to `--port-file`), forwards each HTTP/1.1 request
//! to the daemon, and lets an upgraded connection (exec, attach: `101 Switching Protocols`,
//! or a hijacked raw stream) through byte for byte. The rules file is read again whenever it
//! changes, so a test can turn a healthy daemon into a stalled one in the middle of its
//! teardown. One rule a line, the first that matches and fires wins:
//!
//! ```text
//! # KIND [p=PROBABILITY] [path=REGEX] [method=METHOD] [times=N] [every=N]
//! delay=3s       p=0.2 path=/containers/
//! reset-request  p=0.1 method=GET
//! reset-response p=0.1 path=/containers/create
//! status=500     p=0.3 path=^/v[0-9.]+/(containers|networks|volumes)/[^/]+/json
//! stall          path=/containers/.*/json
//! stall-body     path=/images/create
//! ```
//!
//! `every=N` fires on every Nth request that reaches the rule (and passes `p`): a schedule
//! that never fails one call N times in a row. `reset-request` closes the connection once the request has arrived, without forwarding
//! it (the daemon never saw it); `reset-response` forwards it, reads the daemon's answer and
//! closes after half of its head (the daemon did the work, the answer is lost);
//! `status=CODE` answers itself; `stall` never answers; `stall-body` forwards the daemon's
//! head and the first part of its body (half of a sized body, the first chunk of a chunked
//! one: a pull's first progress line), then holds the connection without another byte. The path a rule's regex sees has no
//! query string. Every request is logged to `--log` as one JSON line: its sequence number,
//! method, path and the fault it got (or `null`).

mod http;
mod rules;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::http::*;
use crate::rules::*;

#[derive(Parser, Debug)]
#[command(about = "A loopback proxy to the Docker daemon that injects faults on a seeded schedule")]
struct Args {
    /// Where to listen (127.0.0.1:0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The daemon's unix socket (default: DOCKER_HOST's unix:// path, else /var/run/docker.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The rules file, read again whenever it changes; absent or empty: no faults.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The seed of the schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the port listened on is written once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Where each request is logged, one JSON line each.
    #[arg(long)]
    log: Option<PathBuf>,
}

/// Serves one client connection, request by request.
async fn serve(client: TcpStream, socket: PathBuf, schedule: Arc<Mutex<Schedule>>) -> anyhow::Result<()> {
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::new(cr);
    let mut daemon: Option<(BufReader<tokio::net::unix::OwnedReadHalf>, tokio::net::unix::OwnedWriteHalf)> = None;
    while let Some(req) = read_head(&mut cr).await? {
        let (method, path) = method_and_path(&req.first);
        let fault = schedule.lock().map_err(|_| anyhow::anyhow!("schedule poisoned"))?.decide(&method, &path);
        match fault {
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::ResetRequest) => return Ok(()),
            Some(Fault::Status(code)) => {
                copy_body(&req, &mut cr, &mut tokio::io::sink(), false).await?;
                let body = format!("{{\"message\":\"fault-proxy: injected {code} on {method} {path}\"}}");
                let answer = format!(
                    "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                cw.write_all(answer.as_bytes()).await?;
                cw.flush().await?;
                continue;
            }
            Some(Fault::Stall) => {
                // Never answer; hold the connection until the client gives up on it.
                let mut sink = Vec::new();
                let _ = cr.read_to_end(&mut sink).await;
                return Ok(());
            }
            Some(Fault::ResetResponse | Fault::StallBody) | None => {}
        }
        if daemon.is_none() {
            let s = UnixStream::connect(&socket).await.with_context(|| format!("connect {}", socket.display()))?;
            let (r, w) = s.into_split();
            daemon = Some((BufReader::new(r), w));
        }
        let Some((dr, dw)) = daemon.as_mut() else { unreachable!("connected above") };
        dw.write_all(&req.raw).await?;
        copy_body(&req, &mut cr, dw, false).await?;
        dw.flush().await?;
        let Some(resp) = read_head(dr).await? else { return Ok(()) };
        if fault == Some(Fault::ResetResponse) {
            // The daemon did the work; the client gets half an answer and a closed connection.
            cw.write_all(&resp.raw[..resp.raw.len() / 2]).await?;
            cw.flush().await?;
            return Ok(());
        }
        cw.write_all(&resp.raw).await?;
        cw.flush().await?;
        let status: u16 = resp.first.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let framed = resp.chunked() || resp.length().is_some();
        if status == 101 || (req.wants_upgrade() && !framed) {
            // A hijacked stream: from here on both ways byte for byte, what is buffered first.
            let Some((dr, dw)) = daemon.take() else { unreachable!("connected above") };
            return splice(cr, cw, dr, dw).await;
        }
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            continue;
        }
        if fault == Some(Fault::StallBody) {
            copy_body_start(&resp, dr, &mut cw).await?;
            // Hold both ends: the client has a head and part of a body, and nothing more comes.
            let mut sink = Vec::new();
            let _ = cr.read_to_end(&mut sink).await;
            return Ok(());
        }
        copy_body(&resp, dr, &mut cw, true).await?;
        if !framed {
            return Ok(());
        }
    }
    Ok(())
}

async fn splice(
    cr: BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut cw: tokio::net::tcp::OwnedWriteHalf,
    dr: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut dw: tokio::net::unix::OwnedWriteHalf,
) -> anyhow::Result<()> {
    let up = async move {
        let mut cr = cr;
        let _ = tokio::io::copy_buf(&mut cr, &mut dw).await;
        let _ = dw.shutdown().await;
    };
    let down = async move {
        let mut dr = dr;
        let _ = tokio::io::copy_buf(&mut dr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
    Ok(())
}

fn default_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(h.trim_start_matches("unix://")),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let socket = args.socket.clone().unwrap_or_else(default_socket);
    let log = match &args.log {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?),
        None => None,
    };
    let schedule = Arc::new(Mutex::new(Schedule {
        rules_file: args.rules.clone(),
        stamp: None,
        rules: Vec::new(),
        state: args.seed,
        seq: 0,
        log,
    }));
    let listener = TcpListener::bind(&args.listen).await.with_context(|| format!("listen on {}", args.listen))?;
    let port = listener.local_addr()?.port();
    if let Some(p) = &args.port_file {
        // Written whole and renamed, so a reader never sees half a number.
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, port.to_string())?;
        std::fs::rename(&tmp, p)?;
    }
    eprintln!("fault-proxy: 127.0.0.1:{port} -> {} (seed {})", socket.display(), args.seed);
    loop {
        let (client, _) = listener.accept().await?;
        let _ = client.set_nodelay(true);
        let (socket, schedule) = (socket.clone(), schedule.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(client, socket, schedule).await {
                eprintln!("fault-proxy: connection ended: {e:#}");
            }
        });
    }
}
