//! Ownership on every host: a check run from another PID namespace, or by a process with no
//! `/proc` at all, never takes a live owner for dead; what such a process leaves goes by
//! expiry; what Docker creates on a test's behalf carries the test's labels; and what a
//! program under test makes under a test's identity is adopted however the test ends.
//! Some of these tests sweep the daemon on purpose, so they take the `orphans` lock that
//! every such test takes.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use docker_harness::labels::{Owner, MANAGED, TASK};
use docker_harness::{sweep, ContainerSpec, Counts, TestContext};

use common::{raw, reported, volume_exists};

/// How the child roles below learn what to do.
fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

#[test]
#[ignore = "run as a child"]
fn child_checks_and_reports() {
    common::as_child(|| async {
        common::report("place", &Owner::current().host);
        let ctx = TestContext::named("ownership-child").unwrap();
        if env("DH_PREPARE").is_some() {
            // A context's first resource waits for the session's pre-test check.
            ctx.network("probe").await.unwrap().remove().await.unwrap();
        }
        if env("DH_CREATE").is_some() {
            let v = ctx.volume("left").await.unwrap();
            common::report("volume", v.name());
            v.keep();
        }
        common::report("removed", sweep::reap().await.unwrap().removed.len());
        if let Some(name) = env("DH_LOOK_AT") {
            let survey = sweep::survey().await.unwrap();
            let seen = survey.iter().find(|l| l.resource.name == name);
            common::report("verdict", seen.map_or("absent".to_string(), |l| format!("{:?}", l.verdict)));
        }
        common::report("ready", 1);
        if env("DH_HOLD").is_some() {
            // A live owner in its own place, until the parent ends it.
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        // Ends as a kill would: no teardown, so what it made is left behind.
        std::process::exit(0);
    });
}

/// `unshare` with these flags around a child run of this test binary, in a session of its
/// own whose pre-test check cleans (as a new CI job's would).
fn unshared(flags: &[&str], shell_prefix: Option<&str>, test: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new("unshare");
    cmd.args(flags);
    let args = ["--exact", test, "--ignored", "--nocapture", "--test-threads", "1"];
    match shell_prefix {
        // `exec "$0" "$@"` after the prefix: the test binary runs as the shell's last step.
        Some(prefix) => cmd.args(["sh", "-c", &format!("{prefix} && exec env -u HOSTNAME \"$0\" \"$@\"")]),
        None => &mut cmd,
    };
    cmd.arg(exe).args(args).env("DOCKER_HARNESS_E2E_CHILD", "1");
    common::own_session(&mut cmd, "ownership");
    cmd.env("DOCKER_HARNESS_PREFLIGHT", "clean");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn run(mut cmd: Command) -> HashMap<String, String> {
    let out = cmd.output().expect("unshare runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    reported(&out.stdout)
}

/// The expiry a child gives its resources: long enough that a slow machine still sweeps
/// before it, short enough to wait out.
const CHILD_TTL: &str = "8";

/// A child's leftover volume is spared by a sweep before its expiry and removed by one
/// after it: nothing but expiry decides for an owner whose liveness is unknown.
async fn goes_by_expiry(volume: &str) -> anyhow::Result<()> {
    let docker = raw().await;
    let expires: u64 = docker.inspect_volume(volume).await?.labels[docker_harness::labels::EXPIRES].parse()?;
    sweep::reap().await?;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    anyhow::ensure!(now() < expires, "the machine took the whole expiry to get here; nothing was shown");
    assert!(volume_exists(&docker, volume).await, "{volume} was swept before its expiry");
    tokio::time::sleep(Duration::from_secs(expires.saturating_sub(now()) + 2)).await;
    sweep::reap().await?;
    assert!(!volume_exists(&docker, volume).await, "{volume} outlived its expiry");
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn two_sessions_one_in_another_pid_namespace_never_touch_each_others_live_resources() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 0, 1));
    let held = ctx.volume("held").await?;
    // --kill-child: ending unshare ends the namespace's first process, and with it the
    // namespace, as a CI job's container ends.
    let mut cmd = unshared(
        &["--pid", "--fork", "--mount-proc", "--kill-child"],
        None,
        "child_checks_and_reports",
        &[("DH_LOOK_AT", held.name()), ("DH_CREATE", "1"), ("DH_HOLD", "1"), ("DOCKER_HARNESS_TTL", CHILD_TTL)],
    );
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("unshare runs (util-linux)");
    let r = common::until_ready(&mut child);
    assert_ne!(r["place"], Owner::current().host, "another PID namespace is another place");
    assert_eq!(r["verdict"], "Owned", "the namespaced check took this live test's volume for an orphan");
    assert!(volume_exists(&raw().await, held.name()).await);

    // This side's sweep, while the namespaced owner lives: its volume is another place's.
    let theirs = r["volume"].clone();
    sweep::reap().await?;
    let spared = volume_exists(&raw().await, &theirs).await;
    common::signal(&child, "KILL");
    child.wait()?;
    assert!(spared, "this session's sweep removed the namespaced session's live volume");

    // With its namespace gone, the kernel ended everything in it, its watcher too. For this
    // host its leftovers are another place's: unknown, so they wait for their expiry (short
    // here; a namespaced CI job sets DOCKER_HARNESS_TTL likewise).
    goes_by_expiry(&theirs).await
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn a_process_without_proc_spares_live_owners_and_its_own_resources_go_by_expiry() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(0, 0, 1));
    let held = ctx.volume("held").await?;
    let child = unshared(
        &["--mount", "--fork"],
        Some("mount -t tmpfs none /proc"),
        "child_checks_and_reports",
        &[("DH_LOOK_AT", held.name()), ("DH_CREATE", "1"), ("DOCKER_HARNESS_TTL", CHILD_TTL)],
    );
    let r = run(child);
    assert!(r["place"].contains("~unverified~"), "no /proc, yet it vouched for its place: {}", r["place"]);
    assert_eq!(r["verdict"], "Owned", "a process without /proc took this live test's volume for an orphan");
    assert!(volume_exists(&raw().await, held.name()).await);
    goes_by_expiry(&r["volume"]).await
}

#[tokio::test]
async fn a_volume_docker_creates_for_a_mount_carries_the_tests_labels() -> anyhow::Result<()> {
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(1, 0, 1));
    let implicit = ctx.name_for("implicit");
    let c =
        ctx.container(ContainerSpec::new("c").with_cmd(["true"]).with_mount(&implicit, "/data").created_only()).await?;
    let docker = raw().await;
    let labels = docker.inspect_volume(&implicit).await?.labels;
    assert_eq!(labels.get(MANAGED).map(String::as_str), Some("true"), "{labels:?}");
    assert_eq!(labels.get(TASK).map(String::as_str), Some(ctx.task_id()), "{labels:?}");
    c.into_context();
    let report = ctx.finish().await?;
    assert_eq!(report.adopted.len(), 1, "the mount's volume is the test's: {:?}", report.adopted);
    assert!(!volume_exists(&docker, &implicit).await);
    Ok(())
}

/// An image that declares a volume, built from the session image under a name of the
/// suite's own (not `dh-`), carrying the suite's bait label, and removed by `Drop`.
struct ImageWithVolume(String);

impl ImageWithVolume {
    async fn build() -> anyhow::Result<ImageWithVolume> {
        use std::io::Write;
        let base = docker_harness::session_image().await?.reference;
        let tag = format!("docker-harness-e2e-volume:{}", uuid::Uuid::new_v4().simple());
        let (bait_key, bait_value) = common::bait_label();
        let mut build = Command::new("docker")
            .args(["build", "--quiet", "--tag", &tag, "--label", &format!("{bait_key}={bait_value}"), "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        write!(build.stdin.take().unwrap(), "FROM {base}\nVOLUME /cache\n")?;
        anyhow::ensure!(build.wait()?.success(), "docker build of a one-line image failed");
        Ok(ImageWithVolume(tag))
    }
}

impl Drop for ImageWithVolume {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["image", "rm", "--force", &self.0]).output();
    }
}

#[tokio::test]
async fn the_anonymous_volume_of_an_images_volume_carries_the_tests_labels_and_goes_with_its_container(
) -> anyhow::Result<()> {
    let image = ImageWithVolume::build().await?;
    let ctx = TestContext::new()?;
    ctx.declare(Counts::new(1, 0, 0));
    let c = ctx.container(ContainerSpec::new("c").with_image(&image.0).with_cmd(["sleep", "3600"])).await?;
    let mounts = c.inspect().await?.mounts.unwrap_or_default();
    let cache = mounts.iter().find(|m| m.destination.as_deref() == Some("/cache")).expect("the image's volume");
    let name = cache.name.clone().expect("a volume's name");
    let docker = raw().await;
    let labels = docker.inspect_volume(&name).await?.labels;
    assert_eq!(labels.get(TASK).map(String::as_str), Some(ctx.task_id()), "{labels:?}");
    c.remove().await?;
    assert!(!volume_exists(&docker, &name).await, "the anonymous volume outlived its container");
    Ok(())
}

#[test]
#[ignore = "run as a child"]
fn child_creates_until_stopped() {
    common::as_child(|| async {
        let ctx = TestContext::named("ownership-burst").unwrap();
        common::report("prefix", ctx.prefix());
        let seed = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/seed");
        let data = ctx.volume("data").await.unwrap();
        for i in 0.. {
            let made = if env("DH_MODE").as_deref() == Some("seed") {
                ctx.create_volume(docker_harness::VolumeSpec::new(format!("seeded{i}")).with_seed(&seed))
                    .await
                    .map(drop)
            } else {
                let spec = ContainerSpec::new(format!("c{i}")).with_cmd(["true"]).with_volume(&data, "/data");
                ctx.container(spec.created_only()).await.map(|c| c.into_context())
            };
            if i == 0 {
                common::report("ready", 1);
            }
            if let Err(e) = made {
                common::report("refused", e);
            }
        }
    });
}

/// Everything on the daemon whose name starts with `prefix`, labelled or not.
async fn named_with(prefix: &str) -> Vec<String> {
    let docker = raw().await;
    let mut names: Vec<String> = Vec::new();
    let containers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions { all: true, ..Default::default() }))
        .await
        .unwrap();
    names.extend(
        containers.into_iter().flat_map(|c| c.names.unwrap_or_default()).map(|n| n.trim_start_matches('/').to_string()),
    );
    let networks = docker.list_networks(None::<bollard::query_parameters::ListNetworksOptions>).await.unwrap();
    names.extend(networks.into_iter().filter_map(|n| n.name));
    let volumes = docker.list_volumes(None::<bollard::query_parameters::ListVolumesOptions>).await.unwrap();
    names.extend(volumes.volumes.unwrap_or_default().into_iter().map(|v| v.name));
    names.retain(|n| n.starts_with(prefix));
    names
}

/// A child that creates without pause, SIGTERMed once it is going: it exits with 143 and
/// leaves nothing under its prefix, labelled or not.
async fn stopped_mid_creation(mode: &str) -> anyhow::Result<()> {
    let mut cmd = common::child("child_creates_until_stopped", &[("DH_MODE", mode)]);
    common::own_session(&mut cmd, "burst");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let prefix = common::until_ready(&mut child).remove("prefix").expect("the child says its prefix");
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::signal(&child, "TERM");
    let status = child.wait()?;
    assert_eq!(status.code(), Some(143), "SIGTERM ends the process with 128 + 15");
    let left = named_with(&prefix).await;
    assert!(left.is_empty(), "left after SIGTERM mid-{mode}: {left:?}");
    Ok(())
}

#[tokio::test]
async fn sigterm_during_a_burst_of_container_creation_leaves_nothing_labelled_or_not() -> anyhow::Result<()> {
    stopped_mid_creation("burst").await
}

#[tokio::test]
async fn sigterm_during_volume_seeding_leaves_nothing_labelled_or_not() -> anyhow::Result<()> {
    stopped_mid_creation("seed").await
}

#[test]
#[ignore = "run as a child"]
fn child_hands_its_prefix_to_a_program() {
    common::as_child(|| async {
        let ctx = TestContext::named("ownership-program").unwrap();
        // What a program under test does with a prefix it was handed: names without labels.
        let name = format!("{}-made-by-the-program", ctx.prefix());
        let docker = raw().await;
        // The suite's bait label only, never the harness's: a killed run's copy is swept by
        // scripts/bait.sh, while the harness has to find it by its prefix alone.
        let bait = HashMap::from([common::bait_label()]);
        let volume = VolumeCreateRequest { name: Some(name.clone()), labels: Some(bait.clone()), ..Default::default() };
        docker.create_volume(volume).await.unwrap();
        let network = NetworkCreateRequest { name: name.clone(), labels: Some(bait), ..Default::default() };
        docker.create_network(network).await.unwrap();
        ctx.network("own").await.unwrap(); // something of its own, so its watcher registers it
        common::report("name", &name);
        common::report("ready", 1);
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn what_a_sigkilled_tests_program_made_under_its_prefix_is_adopted_by_the_watcher() -> anyhow::Result<()> {
    let state = common::scratch_dir("adopt-watcher");
    let name = killed_program_named(&state, &common::unique("s"), true)?;
    let killed = Instant::now();
    let gone = common::eventually(Duration::from_secs(30), || async { named_with(&name).await.is_empty() }).await;
    println!("the watcher adopted {name} {:?} after the SIGKILL", killed.elapsed());
    assert!(gone, "{name} outlived its killed test: {:?}", named_with(&name).await);
    Ok(())
}

#[tokio::test]
#[serial_test::file_serial(orphans)]
async fn without_a_watcher_the_next_sessions_check_adopts_what_a_killed_tests_program_made() -> anyhow::Result<()> {
    let state = common::scratch_dir("adopt-check");
    let name = killed_program_named(&state, &common::unique("s1"), false)?;
    assert!(!named_with(&name).await.is_empty(), "nothing removed it yet: no watcher, no check");
    // The next session on this host, with the same state root: its pre-test check adopts.
    let mut next = common::child("child_checks_and_reports", &[("DH_PREPARE", "1")]);
    common::own_session(&mut next, "next");
    next.env("DOCKER_HARNESS_STATE_DIR", &state).env("DOCKER_HARNESS_PREFLIGHT", "clean");
    let out = next.output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let left = named_with(&name).await;
    assert!(left.is_empty(), "the next session's check left {left:?}");
    Ok(())
}

/// Starts the program-like child in `session` under `state` and SIGKILLs it once it made
/// its unlabelled, prefixed volume and network; returns their name.
fn killed_program_named(state: &std::path::Path, session: &str, watcher: bool) -> anyhow::Result<String> {
    let mut cmd = common::child("child_hands_its_prefix_to_a_program", &[]);
    common::own_session(&mut cmd, "program");
    cmd.env("DOCKER_HARNESS_SESSION", session).env("DOCKER_HARNESS_STATE_DIR", state);
    if watcher {
        cmd.env_remove("DOCKER_HARNESS_WATCHER");
    }
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let name = common::until_ready(&mut child).remove("name");
    let name = name.ok_or_else(|| anyhow::anyhow!("the program child never said what it made"))?;
    common::signal(&child, "KILL");
    child.wait()?;
    Ok(name)
}
