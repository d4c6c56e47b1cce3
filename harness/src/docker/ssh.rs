//! `DOCKER_HOST=ssh://[user@]host[:port]`, reached as the docker CLI reaches it: every
//! connection is a child `ssh … -- host docker system dial-stdio`, whose stdin and stdout
//! carry the API, under the machine's own ssh configuration (`~/.ssh/config`, agents,
//! known hosts).
//!
//! Not bollard's `ssh` transport: that one starts an ssh master per connection with
//! `ControlPersist=yes`, detached, which outlives a killed test process for ever. A child
//! here ends with its connection, and when the test process dies its stdin closes, which
//! ends it too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The request timeout bollard's own transports use, in seconds.
const REQUEST_TIMEOUT: u64 = 120;

/// Where to go: what `ssh` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

impl Destination {
    /// Reads `ssh://[user@]host[:port]`, refusing what the CLI refuses (a path, a query).
    pub(crate) fn parse(url: &str) -> Result<Destination, String> {
        let rest = url.strip_prefix("ssh://").ok_or_else(|| format!("{url} is not an ssh:// URL"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(format!("{url} has a path or query after the host, which ssh:// daemon URLs cannot have"));
        }
        let (user, host_port) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()).filter(|u| !u.is_empty()), h),
            None => (None, rest),
        };
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url} has an unclosed '['"))?;
                (h, after.strip_prefix(':'))
            }
            None => match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            },
        };
        let port =
            port.map(|p| p.parse::<u16>().map_err(|_| format!("{url} has a port that is not a number"))).transpose()?;
        if host.is_empty() {
            return Err(format!("{url} names no host"));
        }
        Ok(Destination { user, host: host.to_string(), port })
    }

    /// The arguments the CLI gives ssh, plus BatchMode: a test must fail, not wait on a
    /// password or host-key prompt nobody will answer.
    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T"].map(String::from).to_vec();
        if let Some(u) = &self.user {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        a.extend(["--".into(), self.host.clone(), "docker".into(), "system".into(), "dial-stdio".into()]);
        a
    }
}

/// A client over ssh, and where ssh's last complaint is kept (its stderr is the only place
/// that says "Permission denied (publickey)").
pub(crate) fn connect(url: &str) -> Result<(Docker, Said), String> {
    let dest = Destination::parse(url)?;
    let said = Said::default();
    let connector = Connector { dest: Arc::new(dest), said: said.clone() };
    let client: Client<Connector, Body> = Client::builder(TokioExecutor::new()).build(connector);
    let client = Arc::new(client);
    let transport = move |req: BollardRequest| {
        let client = Arc::clone(&client);
        async move { client.request(req).await.map_err(bollard::errors::Error::from) }
    };
    let docker =
        Docker::connect_with_custom_transport(transport, Some("http://docker"), REQUEST_TIMEOUT, API_DEFAULT_VERSION)
            .map_err(|e| e.to_string())?;
    Ok((docker, said))
}

/// The body type of bollard's requests, which bollard does not name publicly.
trait BodyOf {
    type Body;
}
impl<B> BodyOf for hyper::Request<B> {
    type Body = B;
}
type Body = <BollardRequest as BodyOf>::Body;

/// The last line ssh printed on stderr, from any connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Said(Arc<Mutex<String>>);

impl Said {
    pub(crate) fn last(&self) -> Option<String> {
        self.0.lock().ok().map(|s| s.clone()).filter(|s| !s.is_empty())
    }
}

#[derive(Clone)]
struct Connector {
    dest: Arc<Destination>,
    said: Said,
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (dest, said) = (self.dest.clone(), self.said.clone());
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new("ssh");
            cmd.args(dest.args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            // A group of its own: a Ctrl-C for the test's terminal group must not cut the
            // connection the test's cleanup is about to use.
            #[cfg(unix)]
            cmd.process_group(0);
            let mut child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh: {e}")))?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err(io::Error::other("ssh started without its pipes"));
            };
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut s) = said.0.lock() {
                        *s = line;
                    }
                }
            });
            Ok(Stream { _child: child, stdin: TokioIo::new(stdin), stdout: TokioIo::new(stdout) })
        })
    }
}

/// One connection: ssh's stdout to read, its stdin to write; the child goes with it.
struct Stream {
    _child: Child,
    stdin: TokioIo<ChildStdin>,
    stdout: TokioIo<ChildStdout>,
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdout).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_hosts_and_ports_are_read_as_the_cli_reads_them() {
        let d = Destination::parse("ssh://root@127.0.0.1:2222").unwrap();
        assert_eq!(d, Destination { user: Some("root".into()), host: "127.0.0.1".into(), port: Some(2222) });
        let d = Destination::parse("ssh://build-box/").unwrap();
        assert_eq!(d, Destination { user: None, host: "build-box".into(), port: None });
        let d = Destination::parse("ssh://me@[fd00::5]:22").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("fd00::5", Some(22)));
    }

    #[test]
    fn a_path_a_bad_port_or_no_host_is_refused() {
        assert!(Destination::parse("ssh://h/var/run/docker.sock").unwrap_err().contains("path"));
        assert!(Destination::parse("ssh://h:twenty").unwrap_err().contains("port"));
        assert!(Destination::parse("ssh://me@").unwrap_err().contains("no host"));
    }

    #[test]
    fn ssh_is_run_in_batch_mode_with_the_remote_dial_stdio() {
        let a = Destination::parse("ssh://root@127.0.0.1:2222").unwrap().args().join(" ");
        assert_eq!(a, "-o ConnectTimeout=30 -o BatchMode=yes -T -l root -p 2222 -- 127.0.0.1 docker system dial-stdio");
    }
}
