//! The fault proxy (src/bin/fault-proxy.rs) started for one test: a misbehaving daemon on a
//! loopback port, its rules in a file the test (or its child) rewrites, stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running proxy; stopped when dropped.
pub struct Proxy {
    child: Option<Child>,
    port: u16,
    pub dir: PathBuf,
}

impl Proxy {
    /// Starts the proxy with `rules` and `seed`; its streams go to `proxy.out` in its directory.
    pub fn start(tag: &str, rules: &str, seed: u64) -> Proxy {
        let dir = super::scratch_dir(tag);
        std::fs::write(dir.join("rules"), rules).expect("rules file");
        let out = std::fs::File::create(dir.join("proxy.out")).expect("proxy output file");
        let child = Command::new(env!("CARGO_BIN_EXE_fault-proxy"))
            .arg("--rules")
            .arg(dir.join("rules"))
            .arg("--port-file")
            .arg(dir.join("port"))
            .arg("--log")
            .arg(dir.join("requests.jsonl"))
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("output file"))
            .stderr(out)
            .spawn()
            .expect("start fault-proxy");
        let port_file = dir.join("port");
        let mut port = None;
        for _ in 0..200 {
            if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|s| s.trim().parse().ok()) {
                port = Some(p);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let port = port.expect("fault-proxy wrote its port within 5 s");
        Proxy { child: Some(child), port, dir }
    }

    /// The `DOCKER_HOST` that reaches the daemon through the proxy.
    pub fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The rules file, for a child to rewrite.
    pub fn rules_file(&self) -> PathBuf {
        self.dir.join("rules")
    }

    /// Every request the proxy saw, as (method, path, fault).
    pub fn requests(&self) -> Vec<(String, String, Option<String>)> {
        read_requests(&self.dir.join("requests.jsonl"))
    }

    /// Stops the proxy (by its PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Replaces the rules a running proxy reads.
pub fn set_rules(file: &Path, rules: &str) {
    // Written whole and renamed: the proxy never reads half a file.
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, rules).expect("rules file");
    std::fs::rename(&tmp, file).expect("rules file");
}

fn read_requests(path: &Path) -> Vec<(String, String, Option<String>)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().map(str::to_string);
            (s("method").unwrap_or_default(), s("path").unwrap_or_default(), s("fault"))
        })
        .collect()
}

/// How many requests were tries again of one that got a fault: the same method and path
/// asked again after it.
pub fn retries(requests: &[(String, String, Option<String>)]) -> usize {
    requests
        .iter()
        .enumerate()
        .filter(|(_, (_, _, f))| f.as_deref().is_some_and(|f| !f.starts_with("delay")))
        .filter(|(i, (m, p, _))| requests[i + 1..].iter().any(|(m2, p2, _)| m2 == m && p2 == p))
        .count()
}
