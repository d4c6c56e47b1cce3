//! Reaching the daemon as the docker CLI does: over TLS with DOCKER_TLS_VERIFY and
//! DOCKER_CERT_PATH, through the current docker context when DOCKER_HOST is unset, and over
//! ssh (DOCKER_HOST=ssh://…, `docker system dial-stdio` on the far side). Each test starts
//! what stands for the remote daemon itself, in front of the local one: a socat TLS proxy
//! that verifies client certificates (files from scripts/certs.sh), or an OpenSSH server on
//! loopback (scripts/sshd-setup.sh). The suite's smoke subset through each is `make e2e-tls`
//! and `make e2e-ssh`.

mod common;

use std::path::Path;
use std::process::Command;

use common::services::{port_open, Service, TlsProxy};
use docker_harness::{ContainerSpec, Error, TestContext};

#[test]
#[ignore = "run as a child"]
fn child_runs_a_container() {
    common::as_child(|| async {
        let line = match TestContext::named("daemons") {
            Err(e) => format!("other {e}"),
            Ok(ctx) => match ctx.container(ContainerSpec::new("app").with_cmd(["sleep", "30"])).await {
                Ok(c) => format!(
                    "ok {}",
                    c.exec(["echo", "ran"]).await.map(|o| o.stdout.trim().to_string()).unwrap_or_default()
                ),
                Err(e @ Error::DaemonTls { .. }) => format!("tls {}", e.to_string().replace('\n', " ")),
                Err(e @ Error::DaemonUnreachable { .. }) => format!("unreachable {}", e.to_string().replace('\n', " ")),
                Err(e) => format!("other {}", e.to_string().replace('\n', " ")),
            },
        };
        common::report("result", line);
    });
}

/// A child in a session of its own, talking to the daemon as `env` says (no DOCKER_HOST,
/// TLS or context settings of this process's leak in), and what it said.
fn run_child(env: &[(&str, &str)]) -> String {
    let mut cmd = common::child("child_runs_a_container", &[]);
    for var in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT", "DOCKER_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    // The start-up check would meet the same failure first; the context's error is the one
    // under test.
    cmd.env("DOCKER_HARNESS_NO_HOOK", "1");
    common::own_session(&mut cmd, "daemons");
    let out = cmd.output().unwrap();
    common::reported(&out.stdout)
        .remove("result")
        .unwrap_or_else(|| format!("no report; stderr: {}", String::from_utf8_lossy(&out.stderr)))
}

fn certs(tag: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = common::scratch_dir(tag).join("certs");
    common::services::run_script("certs.sh", &[dir.to_str().unwrap()])?;
    Ok(dir)
}

fn tls_env<'a>(host: &'a str, cert_path: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![("DOCKER_HOST", host), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", cert_path.to_str().unwrap())]
}

#[test]
fn a_daemon_behind_tls_is_reached_with_docker_tls_verify_and_docker_cert_path() -> anyhow::Result<()> {
    let certs = certs("tls")?;
    let proxy = TlsProxy::start(&certs)?;
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    assert_eq!(run_child(&tls_env(&host, &certs.join("client"))), "ok ran");
    Ok(())
}

#[test]
fn a_wrong_ca_fails_at_once_with_a_tls_error_naming_the_cert_path() -> anyhow::Result<()> {
    let certs = certs("wrong-ca")?;
    let proxy = TlsProxy::start(&certs)?;
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    let wrong = certs.join("wrong-ca");
    let said = run_child(&tls_env(&host, &wrong));
    assert!(said.starts_with(&format!("tls cannot reach the Docker daemon at DOCKER_HOST={host} over TLS")), "{said}");
    assert!(said.contains("UnknownIssuer"), "{said}");
    assert!(said.contains(&format!("certificates from: {} (DOCKER_CERT_PATH)", wrong.display())), "{said}");
    assert!(said.contains("help:"), "{said}");
    Ok(())
}

#[test]
fn a_client_certificate_the_daemon_does_not_trust_is_a_tls_error_too() -> anyhow::Result<()> {
    let certs = certs("stranger")?;
    let proxy = TlsProxy::start(&certs)?;
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    let said = run_child(&tls_env(&host, &certs.join("untrusted-client")));
    assert!(said.starts_with("tls cannot reach the Docker daemon"), "{said}");
    Ok(())
}

#[test]
fn a_missing_client_key_is_named_before_any_connection() -> anyhow::Result<()> {
    let dir = common::scratch_dir("no-key");
    std::fs::write(dir.join("ca.pem"), "")?;
    std::fs::write(dir.join("cert.pem"), "")?;
    let said = run_child(&tls_env("tcp://127.0.0.1:1", &dir));
    assert!(said.contains(&format!("{} is missing", dir.join("key.pem").display())), "{said}");
    Ok(())
}

#[test]
fn the_current_docker_context_picks_the_daemon_and_its_certificates_when_docker_host_is_unset() -> anyhow::Result<()> {
    let certs = certs("context")?;
    let proxy = TlsProxy::start(&certs)?;
    let config = common::scratch_dir("context-config");
    let name = "dh-e2e-tls";
    // The directory the docker CLI makes for a context: the SHA-256 of its name.
    let out = Command::new("sh").args(["-c", &format!("printf %s {name} | sha256sum")]).output()?;
    let id = String::from_utf8(out.stdout)?.split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(id.len(), 64, "sha256sum gave {id:?}");
    let meta = config.join("contexts/meta").join(&id);
    let tls = config.join("contexts/tls").join(&id).join("docker");
    std::fs::create_dir_all(&meta)?;
    std::fs::create_dir_all(&tls)?;
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        ),
    )?;
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(certs.join("client").join(f), tls.join(f))?;
    }
    std::fs::write(config.join("config.json"), format!(r#"{{"currentContext": "{name}"}}"#))?;
    assert_eq!(run_child(&[("DOCKER_CONFIG", config.to_str().unwrap())]), "ok ran");
    // DOCKER_CONTEXT names another, missing one: the CLI refuses, and so does the harness.
    let said = run_child(&[("DOCKER_CONFIG", config.to_str().unwrap()), ("DOCKER_CONTEXT", "dh-e2e-gone")]);
    assert!(said.contains("context \"dh-e2e-gone\" (DOCKER_CONTEXT) does not exist"), "{said}");
    Ok(())
}

/// An OpenSSH server of the test's own on loopback, whose account runs dial-stdio.
struct Sshd {
    dir: std::path::PathBuf,
    host: String,
    _service: Service,
}

impl Sshd {
    fn start(tag: &str) -> anyhow::Result<Sshd> {
        let dir = common::scratch_dir(tag).join("sshd");
        let port = common::services::free_port();
        common::services::run_script("sshd-setup.sh", &[dir.to_str().unwrap(), &port.to_string()])?;
        let config = dir.join("sshd_config");
        let mut service = Service::start(
            "sshd",
            "/usr/sbin/sshd",
            &["-D", "-e", "-f", config.to_str().unwrap()],
            &[],
            &dir.join("sshd.log"),
        )?;
        service.wait_until(|| port_open(port))?;
        let host = std::fs::read_to_string(dir.join("docker-host"))?.trim().to_string();
        Ok(Sshd { dir, host, _service: service })
    }

    /// PATH with the wrapper that gives ssh this server's config and `key`'s identity.
    fn path(&self, bin: &str) -> String {
        format!("{}:{}", self.dir.join(bin).display(), std::env::var("PATH").unwrap_or_default())
    }
}

/// Processes whose command line holds every one of `words`.
fn processes_with(words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| line.contains(w)) {
            found.push(line);
        }
    }
    found
}

#[test]
fn a_daemon_over_ssh_runs_containers_and_no_ssh_process_outlives_the_test() -> anyhow::Result<()> {
    let sshd = Sshd::start("ssh")?;
    let path = sshd.path("bin");
    assert_eq!(run_child(&[("DOCKER_HOST", &sshd.host), ("PATH", &path)]), "ok ran");
    let port = sshd.host.rsplit(':').next().unwrap_or_default().to_string();
    // Each connection was a child ssh, ended with its connection or the child process: no
    // ssh to that port is left, dial-stdio or a detached master (ControlPersist) alike.
    let to_port = format!("-p {port} ");
    let left = processes_with(&["ssh", &to_port]);
    let gone = common::eventually(std::time::Duration::from_secs(10), || {
        let left = processes_with(&["ssh", &to_port]);
        async move { left.is_empty() }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    assert!(rt.block_on(gone), "ssh processes are still running: {left:?}");
    Ok(())
}

#[test]
fn an_ssh_key_the_server_refuses_fails_with_what_ssh_said() -> anyhow::Result<()> {
    let sshd = Sshd::start("ssh-refused")?;
    let path = sshd.path("stranger-bin");
    let said = run_child(&[("DOCKER_HOST", &sshd.host), ("PATH", &path)]);
    assert!(
        said.starts_with(&format!("unreachable cannot reach the Docker daemon at DOCKER_HOST={}", sshd.host)),
        "{said}"
    );
    assert!(said.contains("ssh said:") && said.contains("Permission denied (publickey)"), "{said}");
    Ok(())
}
