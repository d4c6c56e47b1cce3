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
//! ```
//!
//! `every=N` fires on every Nth request that reaches the rule (and passes `p`): a schedule
//! that never fails one call N times in a row. `reset-request` closes the connection once the request has arrived, without forwarding
//! it (the daemon never saw it); `reset-response` forwards it, reads the daemon's answer and
//! closes after half of its head (the daemon did the work, the answer is lost);
//! `status=CODE` answers itself; `stall` never answers. The path a rule's regex sees has no
//! query string. Every request is logged to `--log` as one JSON line: its sequence number,
//! method, path and the fault it got (or `null`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::Parser;
use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};

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

#[derive(Debug, Clone, PartialEq)]
enum Fault {
    Delay(Duration),
    ResetRequest,
    ResetResponse,
    Status(u16),
    Stall,
}

impl Fault {
    fn label(&self) -> String {
        match self {
            Fault::Delay(d) => format!("delay={}ms", d.as_millis()),
            Fault::ResetRequest => "reset-request".into(),
            Fault::ResetResponse => "reset-response".into(),
            Fault::Status(c) => format!("status={c}"),
            Fault::Stall => "stall".into(),
        }
    }
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    p: f64,
    path: Option<Regex>,
    method: Option<String>,
    times: Option<u64>,
    every: Option<u64>,
    seen: u64,
    fired: u64,
}

fn parse_rule(line: &str) -> anyhow::Result<Rule> {
    let mut words = line.split_whitespace();
    let kind = words.next().context("empty rule")?;
    let fault = match kind.split_once('=') {
        Some(("delay", d)) => {
            let secs: f64 = d.trim_end_matches('s').parse().with_context(|| format!("delay {d:?}"))?;
            Fault::Delay(Duration::from_secs_f64(secs))
        }
        Some(("status", c)) => Fault::Status(c.parse().with_context(|| format!("status {c:?}"))?),
        None if kind == "reset-request" => Fault::ResetRequest,
        None if kind == "reset-response" => Fault::ResetResponse,
        None if kind == "stall" => Fault::Stall,
        _ => bail!("unknown fault {kind:?}: delay=SECS, reset-request, reset-response, status=CODE or stall"),
    };
    let mut rule = Rule { fault, p: 1.0, path: None, method: None, times: None, every: None, seen: 0, fired: 0 };
    for w in words {
        match w.split_once('=') {
            Some(("p", v)) => rule.p = v.parse().with_context(|| format!("p {v:?}"))?,
            Some(("path", v)) => rule.path = Some(Regex::new(v)?),
            Some(("method", v)) => rule.method = Some(v.to_ascii_uppercase()),
            Some(("times", v)) => rule.times = Some(v.parse().with_context(|| format!("times {v:?}"))?),
            Some(("every", v)) => {
                rule.every = Some(v.parse().ok().filter(|n| *n > 0).with_context(|| format!("every {v:?}"))?);
            }
            _ => bail!("unknown rule word {w:?}: p=, path=, method=, times= or every="),
        }
    }
    Ok(rule)
}

/// The schedule: the rules, the seeded generator, the log.
struct Schedule {
    rules_file: Option<PathBuf>,
    stamp: Option<SystemTime>,
    rules: Vec<Rule>,
    state: u64,
    seq: u64,
    log: Option<std::fs::File>,
}

impl Schedule {
    /// splitmix64: small, seedable, good enough to draw faults.
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn reload(&mut self) {
        let Some(path) = &self.rules_file else { return };
        let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if stamp == self.stamp && stamp.is_some() {
            return;
        }
        self.stamp = stamp;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut rules = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            match parse_rule(line) {
                Ok(r) => rules.push(r),
                Err(e) => eprintln!("fault-proxy: rule {line:?} ignored: {e:#}"),
            }
        }
        self.rules = rules;
    }

    fn decide(&mut self, method: &str, path: &str) -> Option<Fault> {
        self.reload();
        self.seq += 1;
        let mut chosen = None;
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let matches = r.method.as_deref().is_none_or(|m| m == method)
                && r.path.as_ref().is_none_or(|re| re.is_match(path))
                && r.times.is_none_or(|t| r.fired < t);
            if !matches {
                continue;
            }
            self.rules[i].seen += 1;
            let r = &self.rules[i];
            if r.every.is_some_and(|n| !r.seen.is_multiple_of(n)) {
                continue;
            }
            let p = r.p;
            if self.next_unit() < p {
                self.rules[i].fired += 1;
                chosen = Some(self.rules[i].fault.clone());
                break;
            }
        }
        if let Some(log) = &mut self.log {
            use std::io::Write;
            let line = serde_json::json!({
                "seq": self.seq, "method": method, "path": path, "fault": chosen.as_ref().map(Fault::label),
            });
            let _ = writeln!(log, "{line}");
        }
        chosen
    }
}

/// A request or response head: its first line and headers, as received.
struct Head {
    raw: Vec<u8>,
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    fn wants_upgrade(&self) -> bool {
        self.header("upgrade").is_some()
            || self.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
    }
}

/// Reads one head; `None` at a clean end of stream before it.
async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> anyhow::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = r.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            bail!("stream ended inside a head");
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // A stray blank line between messages.
                raw.clear();
                continue;
            }
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Ok(Some(Head { raw, first, headers }))
}

/// Copies a message body framed by `head` from `r` to `w` (`w` may be a sink).
async fn copy_body<R, W>(head: &Head, r: &mut R, w: &mut W, to_eof: bool) -> anyhow::Result<()>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin,
{
    if head.chunked() {
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                bail!("stream ended inside a chunked body");
            }
            w.write_all(&line).await?;
            let size_text = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(size_text.trim().split(';').next().unwrap_or("0").trim(), 16)?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t).await? == 0 {
                        break;
                    }
                    w.write_all(&t).await?;
                    if t == b"\r\n" || t == b"\n" {
                        break;
                    }
                }
                w.flush().await?;
                return Ok(());
            }
            copy_exact(r, w, size + 2).await?;
            w.flush().await?;
        }
    } else if let Some(n) = head.length() {
        copy_exact(r, w, n).await?;
    } else if to_eof {
        tokio::io::copy(r, w).await?;
    }
    w.flush().await?;
    Ok(())
}

async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(r: &mut R, w: &mut W, n: u64) -> anyhow::Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), w).await?;
    if copied < n {
        bail!("stream ended after {copied} of {n} body bytes");
    }
    Ok(())
}

fn method_and_path(first: &str) -> (String, String) {
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    (method, path)
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
            Some(Fault::ResetResponse) | None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_its_fault_and_conditions() {
        let r = parse_rule("status=500 p=0.5 path=/containers/.*/json method=get times=3").unwrap();
        assert_eq!(r.fault, Fault::Status(500));
        assert_eq!((r.p, r.method.as_deref(), r.times), (0.5, Some("GET"), Some(3)));
        assert!(r.path.unwrap().is_match("/v1.41/containers/abc/json"));
        assert_eq!(parse_rule("delay=2.5s").unwrap().fault, Fault::Delay(Duration::from_millis(2500)));
        assert_eq!(parse_rule("stall every=3").unwrap().every, Some(3));
        assert!(parse_rule("stall every=0").is_err());
        assert!(parse_rule("explode").is_err());
        assert!(parse_rule("stall p=often").is_err());
    }
}
