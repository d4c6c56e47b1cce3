//! Helpers shared by the e2e tests: an independent Docker client (raw bollard, not the
//! harness's) to witness what exists, a way to re-run this test binary as a child, the
//! suite's bait label, and the one directory for temporary files.
#![allow(dead_code, unreachable_pub)]

mod holder;
pub mod proxy;
pub mod services;
pub mod web;

#[allow(unused_imports)]
pub use holder::{holder_role, spawn_holder, Held};

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions};
use bollard::Docker;

/// A raw bollard client, negotiated, independent of the harness: `DOCKER_HOST` (and TLS) as
/// bollard reads it, or `DH_E2E_WITNESS_HOST` when set. scripts/e2e-ssh.sh sets that to the
/// daemon's own socket, since bollard is built here without an ssh transport; the witness
/// sees the same daemon that the harness reaches over ssh.
pub async fn raw() -> Docker {
    match std::env::var("DH_E2E_WITNESS_HOST") {
        Ok(host) if !host.is_empty() => Docker::connect_with_host(&host),
        _ => Docker::connect_with_defaults(),
    }
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
        // Podman answers 500 for a container caught mid-removal; it is as good as gone.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 500, message })
            if message.contains("no such container") =>
        {
            false
        }
        // Podman's `stopped` (exited, not yet cleaned up) is a state bollard cannot read;
        // the container is there all the same.
        Err(e) if e.to_string().contains("unknown variant `stopped`") => true,
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
/// A child outlives no parent: once its parent test is gone (killed by a timeout, or by
/// `make chaos`), it sends itself SIGTERM, which the harness answers by removing what it
/// made, instead of holding it and its session's watcher for as long as it would wait.
pub fn is_child() -> bool {
    let child = std::env::var_os("DOCKER_HARNESS_E2E_CHILD").is_some();
    if child {
        static WATCH: std::sync::Once = std::sync::Once::new();
        WATCH.call_once(|| {
            let parent = std::os::unix::process::parent_id();
            std::thread::spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if std::os::unix::process::parent_id() != parent {
                    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
                    // No handler answered within its bound: go anyway.
                    std::thread::sleep(std::time::Duration::from_secs(40));
                    std::process::exit(1);
                }
            });
        });
    }
    child
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

/// The one directory for the suite's temporary files: `e2e-tmp` in this harness session's
/// state directory, which goes with the session's state, so a test killed midway leaves
/// nothing in the system's temp directory. Never `std::env::temp_dir()` directly.
pub fn e2e_tmp() -> PathBuf {
    let dir = docker_harness::session::current().expect("a usable session").state_dir().join("e2e-tmp");
    std::fs::create_dir_all(&dir).expect("the suite's temporary directory");
    dir
}

/// A fresh, empty directory of the suite's under [`e2e_tmp`], named after `tag`.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = e2e_tmp().join(unique(tag));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// The state directory (`DOCKER_HARNESS_STATE_DIR`) of a child's own session `id`, as set
/// by [`own_session`].
pub fn own_session_state(id: &str) -> PathBuf {
    e2e_tmp().join(id)
}

/// Makes a child start a session of its own, with fresh state.
pub fn own_session(cmd: &mut Command, tag: &str) -> String {
    let id = format!("e2e-{tag}-{}", uuid::Uuid::new_v4().simple());
    join_own_session(cmd, &id);
    id
}

/// Makes a child join the session `id` that [`own_session`] made for another child, as the
/// processes of one test run share theirs.
pub fn join_own_session(cmd: &mut Command, id: &str) {
    let dir = own_session_state(id);
    cmd.env_remove("NEXTEST_RUN_ID").env("DOCKER_HARNESS_SESSION", id).env("DOCKER_HARNESS_STATE_DIR", dir);
    // A new session's pre-test check would sweep every orphan on the daemon, including
    // those other tests make on purpose; tests of the check itself set the policy again.
    cmd.env("DOCKER_HARNESS_PREFLIGHT", "warn");
    // Likewise its own watcher would remove on its own what tests kill on purpose; the
    // watcher's tests turn it back on.
    cmd.env("DOCKER_HARNESS_WATCHER", "off");
}

/// Sends a signal by PID with the system's `kill`, which the tests' processes may use.
pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(ok.success(), "kill -{sig} failed");
}

/// PIDs of the live processes whose environment carries `DOCKER_HARNESS_TASK=<task>`: the
/// host processes a test started through its context, read from `/proc` independently of
/// the harness.
pub fn marked(task: &str) -> Vec<u32> {
    let needle = format!("DOCKER_HARNESS_TASK={task}");
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        })
        .filter(|pid| !is_zombie(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) == Some("Z")
}

pub fn unique(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// True when the daemon is Podman's Docker-compatible API.
pub async fn on_podman() -> bool {
    docker_harness::engine().await.expect("the daemon must answer for e2e tests") == docker_harness::Engine::Podman
}

/// For a test whose claim Podman cannot meet (see the README's "Podman" section): prints
/// why on stderr and returns true on Podman, so the test returns early; false elsewhere.
pub async fn skip_on_podman(why: &str) -> bool {
    let skip = on_podman().await;
    if skip {
        eprintln!("skipped on Podman: {why}");
    }
    skip
}

/// The suite's own label, on every piece of bait it makes outside the harness on purpose
/// (raw bollard resources, other-host stand-ins, what the keep test keeps; the canary of
/// scripts/canary.sh carries it too): `scripts/bait.sh sweep`, run first by every make
/// target that runs the suite, removes what a killed run left by it. Its value is
/// [`bait_value`]. Never the harness's `docker-harness.managed` where a test does not
/// need it.
pub const BAIT: &str = "docker-harness-e2e.bait";

/// Set for a child that makes bait on behalf of the test that started it: that test's
/// owner identity, written in the child's bait label instead of its own.
const BAIT_OWNER_ENV: &str = "DH_BAIT_OWNER";

/// The [`BAIT`] label's value for bait made now: `<host>/<pid>/<start>@<unix seconds>`,
/// the owner written as the harness writes its owner label (this process, or the test
/// named by [`bait_owner_env`]) and the time. `scripts/bait.sh sweep` removes bait whose
/// owner is gone on this host, and another host's once it is ten minutes old, so a run
/// going on at the same time keeps its bait.
pub fn bait_value() -> String {
    let owner = std::env::var(BAIT_OWNER_ENV).unwrap_or_else(|_| docker_harness::labels::Owner::current().to_string());
    format!("{owner}@{}", unix_now())
}

/// The [`BAIT`] label for bait made now, as a map entry.
pub fn bait_label() -> (String, String) {
    (BAIT.to_string(), bait_value())
}

/// The environment for a child whose bait is this test's: what it leaves is removed with
/// this test's bait, after this test is gone, not after the child is.
pub fn bait_owner_env() -> (&'static str, String) {
    (BAIT_OWNER_ENV, docker_harness::labels::Owner::current().to_string())
}

/// Unix seconds now, the clock the harness's expiry labels and the bait label use.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A container (never started), a network and a volume made with raw bollard, outside the
/// harness, all under one name and with the given labels plus the suite's [`BAIT`] label:
/// bait and stand-ins for what other tools or other hosts leave on a daemon.
#[derive(Debug)]
pub struct RawTrio {
    pub name: String,
    pub container: String,
    pub network: String,
}

impl RawTrio {
    pub async fn create(d: &Docker, name: &str, mut labels: HashMap<String, String>) -> anyhow::Result<RawTrio> {
        use bollard::models::{ContainerCreateBody, NetworkCreateRequest, VolumeCreateRequest};
        use bollard::query_parameters::CreateContainerOptions;
        let (key, value) = bait_label();
        labels.insert(key, value);
        let image = docker_harness::session_image().await?.reference;
        let opts = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(vec!["true".into()]),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let container = d.create_container(Some(opts), body).await?.id;
        let network = d
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await?
            .id;
        let volume = VolumeCreateRequest { name: Some(name.to_string()), labels: Some(labels), ..Default::default() };
        d.create_volume(volume).await?;
        Ok(RawTrio { name: name.to_string(), container, network })
    }

    /// Which of the three still exist: (container, network, volume).
    pub async fn present(&self, d: &Docker) -> (bool, bool, bool) {
        (
            container_exists(d, &self.container).await,
            network_exists(d, &self.network).await,
            volume_exists(d, &self.name).await,
        )
    }

    /// Removes whatever of them is left; a missing one is fine.
    pub async fn remove(&self, d: &Docker) {
        use bollard::query_parameters::{RemoveContainerOptions, RemoveVolumeOptions};
        let force = RemoveContainerOptions { force: true, ..Default::default() };
        let _ = d.remove_container(&self.container, Some(force)).await;
        let _ = d.remove_network(&self.network).await;
        let _ = d.remove_volume(&self.name, None::<RemoveVolumeOptions>).await;
    }
}

/// A child role's body on a runtime of its own, when this process is such a child.
pub fn as_child<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    if is_child() {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(body());
    }
}

/// Says one `REPORT key=value` line, flushed so the parent reads it before a kill.
pub fn report(key: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    println!("REPORT {key}={value}");
    std::io::stdout().flush().unwrap();
}

/// A child's `REPORT` lines up to `ready`, its output then drained in the background so it
/// never writes into a closed pipe.
pub fn until_ready(child: &mut std::process::Child) -> HashMap<String, String> {
    use std::io::BufRead;
    let mut seen = HashMap::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("a piped stdout")).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some((k, v)) = line.split_once("REPORT ").and_then(|(_, kv)| kv.split_once('=')) {
            seen.insert(k.to_string(), v.to_string());
            if k == "ready" {
                break;
            }
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    seen
}

/// What a shell script printed in a container (trimmed), failing with its stderr when it
/// exits non-zero: for reading a fact from inside (`/proc`, `/sys/fs/cgroup`, `mount`).
pub async fn sh(c: &docker_harness::Container, script: &str) -> anyhow::Result<String> {
    let out = c.exec(["sh", "-c", script]).await?;
    anyhow::ensure!(out.success(), "`{script}` in {} exited {}: {}", c.name(), out.exit_code, out.stderr);
    Ok(out.stdout.trim().to_string())
}
