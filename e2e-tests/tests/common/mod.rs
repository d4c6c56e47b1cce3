//! Helpers shared by the e2e tests: an independent Docker client (raw bollard, not the
//! harness's) to witness what exists, and a way to re-run this test binary as a child.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions};
use bollard::Docker;

/// A raw bollard client, negotiated, independent of the harness.
pub async fn raw() -> Docker {
    Docker::connect_with_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("the daemon must answer for e2e tests")
}

pub async fn container_exists(d: &Docker, id: &str) -> bool {
    exists(d.inspect_container(id, None::<InspectContainerOptions>).await.map(drop))
}

pub async fn network_exists(d: &Docker, id: &str) -> bool {
    exists(d.inspect_network(id, None::<InspectNetworkOptions>).await.map(drop))
}

pub async fn volume_exists(d: &Docker, name: &str) -> bool {
    exists(d.inspect_volume(name).await.map(drop))
}

fn exists(r: Result<(), bollard::errors::Error>) -> bool {
    match r {
        Ok(()) => true,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => false,
        Err(e) => panic!("inspect failed with something other than 404: {e}"),
    }
}

/// Names of the three kinds of resource a test made, to check afterwards.
#[derive(Debug, Clone)]
pub struct Made {
    pub container: String,
    pub network: String,
    pub volume: String,
}

pub async fn assert_all_gone(d: &Docker, made: &Made) {
    assert!(!container_exists(d, &made.container).await, "container {} still exists", made.container);
    assert!(!network_exists(d, &made.network).await, "network {} still exists", made.network);
    assert!(!volume_exists(d, &made.volume).await, "volume {} still exists", made.volume);
}

pub async fn assert_all_present(d: &Docker, made: &Made) {
    assert!(container_exists(d, &made.container).await, "container {} is gone", made.container);
    assert!(network_exists(d, &made.network).await, "network {} is gone", made.network);
    assert!(volume_exists(d, &made.volume).await, "volume {} is gone", made.volume);
}

/// This test binary, re-run to execute one ignored `child_*` test with extra environment.
pub fn child(test: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["--exact", test, "--ignored", "--nocapture", "--test-threads", "1"]);
    cmd.env("DOCKER_HARNESS_E2E_CHILD", "1");
    // The child joins this process's session (under nextest NEXTEST_RUN_ID does that too),
    // so it does not run a session's pre-test check of its own unless a test asks.
    if let Ok(s) = docker_harness::session::current() {
        cmd.env("DOCKER_HARNESS_SESSION", s.id());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// True inside a child started with [`child`]; the `child_*` tests do nothing otherwise.
pub fn is_child() -> bool {
    std::env::var_os("DOCKER_HARNESS_E2E_CHILD").is_some()
}

/// Lines `KEY=VALUE` that a child printed, as a map.
pub fn reported(stdout: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        // libtest prints "test NAME ... " on the same line before the first output.
        .filter_map(|l| l.find("REPORT ").map(|i| &l[i + 7..]))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls `f` until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if f().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes a child start a session of its own, with fresh state.
pub fn own_session(cmd: &mut Command, tag: &str) -> String {
    let id = format!("e2e-{tag}-{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join("docker-harness-e2e").join(&id);
    cmd.env_remove("NEXTEST_RUN_ID").env("DOCKER_HARNESS_SESSION", &id).env("DOCKER_HARNESS_STATE_DIR", dir);
    id
}
