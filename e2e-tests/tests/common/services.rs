//! Services the registry, TLS and ssh tests start on loopback for themselves: Debian's
//! `docker-registry` (with htpasswd auth when asked), a socat TLS proxy in front of the
//! local daemon, an OpenSSH server. Each is a child of the test's own thread, on a port the
//! kernel just handed out, its output in a log file of the test's scratch directory,
//! started under `setpriv --pdeathsig KILL` so that it dies with a killed test, and stopped
//! by its PID when its guard drops. The files they need come from the scripts that the
//! Makefile steps use as well (scripts/certs.sh, scripts/sshd-setup.sh).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// The repository's scripts/ directory.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// The daemon's own socket, which the proxies stand in front of.
pub fn daemon_socket() -> String {
    std::env::var("DH_E2E_DAEMON_SOCKET").unwrap_or_else(|_| match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h.trim_start_matches("unix://").to_string(),
        _ => "/var/run/docker.sock".to_string(),
    })
}

/// Runs a preparing script (it makes files, starts nothing) and fails with its output.
pub fn run_script(name: &str, args: &[&str]) -> anyhow::Result<()> {
    let out =
        Command::new("bash").arg(scripts().join(name)).args(args).output().with_context(|| format!("run {name}"))?;
    if !out.status.success() {
        bail!("{name} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A service this test started; stopped by its PID on drop.
#[derive(Debug)]
pub struct Service {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `program args…` detached from the test's streams, dying with the test.
    pub fn start(
        what: &str,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Service> {
        let file = std::fs::File::create(log)?;
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", program])
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("start {what} ({program}; setpriv is util-linux's)"))?;
        Ok(Service { what: what.to_string(), child, log: log.to_path_buf() })
    }

    /// Waits until `ready` says yes, failing with the log's end if the service exits or
    /// never gets there.
    pub fn wait_until(&mut self, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited at start ({status}):\n{}", self.what, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{} did not get ready within 20 s:\n{}", self.what, self.log_tail())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of `GET path` on 127.0.0.1:port, if it answers HTTP.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// A loopback registry of the test's own.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`, the registry part of its references.
    pub addr: String,
    _service: Service,
}

impl Registry {
    /// Starts one storing under `dir`; with `login`, it wants that user and password
    /// (an htpasswd file with a bcrypt entry, as `htpasswd -B` writes it).
    pub fn start(dir: &Path, login: Option<(&str, &str)>) -> anyhow::Result<Registry> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("storage").display()
        );
        if let Some((user, password)) = login {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .context("run htpasswd (apache2-utils)")?;
            anyhow::ensure!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(dir.join("htpasswd"), &out.stdout)?;
            config += &format!(
                "auth:\n  htpasswd:\n    realm: docker-harness-e2e\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)?;
        let mut service = Service::start(
            "docker-registry",
            "docker-registry",
            &["serve", config_path.to_str().unwrap()],
            &[],
            &dir.join("registry.log"),
        )?;
        service.wait_until(|| matches!(http_status(port, "/v2/"), Some(200 | 401)))?;
        Ok(Registry { addr, _service: service })
    }
}

/// A socat TLS proxy on loopback in front of the local daemon: it presents `server.pem`
/// (an IP SAN for 127.0.0.1) and lets in only clients with a certificate its CA signed,
/// as a daemon started with `--tlsverify` does.
#[derive(Debug)]
pub struct TlsProxy {
    pub port: u16,
    _service: Service,
}

impl TlsProxy {
    pub fn start(certs: &Path) -> anyhow::Result<TlsProxy> {
        let port = free_port();
        let c = |f: &str| certs.join(f).display().to_string();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            c("server/cert.pem"),
            c("server/key.pem"),
            c("ca/cert.pem")
        );
        let connect = format!("UNIX-CONNECT:{}", daemon_socket());
        let conf = c("openssl.cnf");
        let envs = [("OPENSSL_CONF", conf.as_str())];
        let mut service =
            Service::start("socat TLS proxy", "socat", &[&listen, &connect], &envs, &certs.join("socat.log"))?;
        service.wait_until(|| port_open(port))?;
        Ok(TlsProxy { port, _service: service })
    }
}
