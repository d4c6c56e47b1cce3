//! Hostile surroundings: a state directory that cannot be made, one that is full, one on a
//! path with spaces and unicode, `TMPDIR` odd or unset, a garbage setting, and two users on one daemon.
//! Each runs in a child process, so its environment is its own.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use docker_harness::labels::Verdict;
use docker_harness::{ContainerSpec, Error, TestContext};

use common::{child, is_child, own_session, raw, reported, scratch_dir};

fn output(cmd: &mut std::process::Command) -> anyhow::Result<(bool, String)> {
    let out = cmd.output()?;
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

#[test]
fn a_state_directory_that_cannot_be_made_is_a_clear_error_naming_it() -> anyhow::Result<()> {
    let dir = scratch_dir("hostile-state");
    std::fs::write(dir.join("a-file"), "not a directory")?;
    let bad = dir.join("a-file").join("state");
    let mut cmd = child("child_makes_a_container", &[]);
    own_session(&mut cmd, "unwritable");
    cmd.env("DOCKER_HARNESS_STATE_DIR", &bad);
    let (ok, text) = output(&mut cmd)?;
    let report = reported(text.as_bytes());
    let error = report.get("error").cloned().unwrap_or_default();
    assert!(ok, "the child reports the error rather than hanging or panicking:\n{text}");
    assert!(error.contains(&bad.display().to_string()) && error.contains("help:"), "{error}");
    Ok(())
}

#[test]
fn a_state_directory_with_spaces_and_unicode_works() -> anyhow::Result<()> {
    let dir = scratch_dir("hostile-unicode").join("state dir ünïcødé ✓");
    let mut cmd = child("child_makes_a_container", &[]);
    own_session(&mut cmd, "unicode");
    cmd.env("DOCKER_HARNESS_STATE_DIR", &dir);
    let (ok, text) = output(&mut cmd)?;
    let report = reported(text.as_bytes());
    assert!(ok && report.contains_key("made"), "{text}");
    assert!(dir.join("sessions").is_dir(), "the session's state went to {}", dir.display());
    Ok(())
}

#[test]
fn an_odd_tmpdir_is_where_the_default_state_goes_and_names_the_user() -> anyhow::Result<()> {
    let tmp = scratch_dir("hostile-tmpdir").join("odd tmp ü");
    std::fs::create_dir_all(&tmp)?;
    let mut cmd = child("child_makes_a_container", &[]);
    own_session(&mut cmd, "tmpdir");
    cmd.env_remove("DOCKER_HARNESS_STATE_DIR").env("TMPDIR", &tmp);
    let (ok, text) = output(&mut cmd)?;
    assert!(ok && reported(text.as_bytes()).contains_key("made"), "{text}");
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m))?;
    assert!(tmp.join(format!("docker-harness-{uid}")).join("sessions").is_dir(), "{text}");
    // Unset: std's temp dir, /tmp. The child's state goes there; removed afterwards.
    let mut cmd = child("child_makes_a_container", &[]);
    let session = own_session(&mut cmd, "notmpdir");
    cmd.env_remove("DOCKER_HARNESS_STATE_DIR").env_remove("TMPDIR");
    let (ok, text) = output(&mut cmd)?;
    assert!(ok && reported(text.as_bytes()).contains_key("made"), "{text}");
    let state = std::path::Path::new("/tmp").join(format!("docker-harness-{uid}")).join("sessions").join(&session);
    assert!(state.is_dir(), "{}", state.display());
    std::fs::remove_dir_all(&state)?;
    Ok(())
}

#[test]
fn a_garbage_setting_is_one_error_naming_the_variable_its_value_and_what_is_accepted() -> anyhow::Result<()> {
    for (var, value, accepted) in [
        ("DOCKER_HARNESS_REQUEST_TIMEOUT", "forever", "seconds"),
        ("DOCKER_HARNESS_PULL", "sometimes", "missing, always or never"),
        ("DOCKER_HARNESS_SESSION", "../up", "letters, digits"),
        ("DOCKER_HARNESS_WAIT_TIMEOUT", "-1", "seconds"),
    ] {
        let mut cmd = child("child_makes_a_container", &[]);
        own_session(&mut cmd, "garbage");
        cmd.env(var, value);
        let (ok, text) = output(&mut cmd)?;
        let error = reported(text.as_bytes()).get("error").cloned().unwrap_or_default();
        assert!(ok, "{text}");
        assert!(
            error.contains(var) && error.contains(&format!("{value:?}")) && error.contains(accepted),
            "{var}: {error}\n{text}"
        );
    }
    Ok(())
}

/// How a state directory is made full: its blocks (files cannot grow) or its inodes
/// (nothing new can be made in it at all) before the session starts, or its blocks once the
/// session has run a test and recorded its pre-test check and its image (the disk filling
/// up during a run). `$@` is the child's command.
const FULL: [(&str, &str, &str); 3] = [
    ("blocks", "size=16k", r#"dd if=/dev/zero of="$DIR/fill" bs=4k 2>/dev/null"#),
    ("inodes", "size=1m,nr_inodes=16", r#"i=0; while touch "$DIR/fill-$i" 2>/dev/null; do i=$((i+1)); done"#),
    (
        "blocks-midway",
        "size=1m",
        concat!(r#"timeout -s KILL 240 "$@" >/dev/null 2>&1; "#, r#"dd if=/dev/zero of="$DIR/fill" bs=4k 2>/dev/null"#),
    ),
];

/// Mounts a tmpfs on `DIR`, fills it, then becomes the command: the mount lives only in the
/// child's own mount namespace, so nothing on the host sees it and it goes with the child.
const MOUNT_FULL: &str = r#"mount -t tmpfs -o "$OPTS" tmpfs "$DIR" || exit 77; eval "$FILL"; exec "$@""#;

/// Whether this process may make a mount namespace and mount a tmpfs in it (root, and no
/// seccomp or container policy against it); the reason when not.
fn may_mount_tmpfs(dir: &std::path::Path) -> Result<(), String> {
    let probe = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", r#"mount -t tmpfs -o size=16k tmpfs "$0" && umount "$0""#])
        .arg(dir)
        .output();
    match probe {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("unshare: {e}")),
    }
}

/// Runs `cmd` inside a fresh mount namespace where `dir` is a tmpfs made full.
fn in_a_full_tmpfs(
    cmd: &std::process::Command,
    dir: &std::path::Path,
    opts: &str,
    fill: &str,
) -> std::process::Command {
    let mut wrapped = std::process::Command::new("unshare");
    wrapped.args(["-m", "sh", "-c", MOUNT_FULL, "sh"]).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.env("DIR", dir).env("OPTS", opts).env("FILL", fill);
    wrapped
}

#[tokio::test]
async fn a_full_state_directory_is_a_clear_error_or_works_and_never_hangs_or_panics() -> anyhow::Result<()> {
    let root = scratch_dir("hostile-full");
    if let Err(why) = may_mount_tmpfs(&root) {
        eprintln!("skipped: a full state directory needs a tmpfs in a mount namespace of its own ({why})");
        return Ok(());
    }
    for (how, opts, fill) in FULL {
        let dir = root.join(how);
        std::fs::create_dir_all(&dir)?;
        let mut cmd = child("child_makes_a_container", &[]);
        let session = own_session(&mut cmd, &format!("full-{how}"));
        cmd.env("DOCKER_HARNESS_STATE_DIR", &dir);
        let (out, err) = (root.join(format!("{how}.out")), root.join(format!("{how}.err")));
        let mut wrapped = in_a_full_tmpfs(&cmd, &dir, opts, fill);
        wrapped.stdout(std::fs::File::create(&out)?).stderr(std::fs::File::create(&err)?);
        let mut running = wrapped.spawn()?;
        // Generous: a create and a wait take seconds; only a hang comes near this.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let status = loop {
            if let Some(status) = running.try_wait()? {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                running.kill()?; // by its PID: unshare, then sh, exec into the test binary
                running.wait()?;
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let (stdout, stderr) = (std::fs::read_to_string(&out)?, std::fs::read_to_string(&err)?);
        let text = format!("{stdout}\n{stderr}");
        // Whatever the outcome, what the child made goes, by its session's label.
        let left = docker_harness::sweep::clean(vec![format!("docker-harness.session={session}")]).await?.0;
        let status = status.ok_or_else(|| anyhow::anyhow!("{how}: the child hung past 600 s:\n{text}"))?;
        assert_ne!(status.code(), Some(77), "{how}: the tmpfs could not be mounted:\n{text}");
        assert!(!stderr.contains("panicked at"), "{how}: the child panicked:\n{text}");
        assert!(status.success(), "{how}: the child ended {status} (an abort or a signal):\n{text}");
        let report = reported(stdout.as_bytes());
        let said: Vec<&str> = stderr.lines().filter(|l| l.contains("docker-harness:")).collect();
        eprintln!("a state directory full of {how}: {report:?}, left {}; said {said:?}", left.len());
        match (report.get("made"), report.get("error")) {
            (Some(_), None) => assert!(left.is_empty(), "{how}: its teardown left {left:?}:\n{text}"),
            (None, Some(error)) => {
                let named = error.contains(&dir.display().to_string());
                assert!(named && error.contains("No space left") && error.contains("help:"), "{how}: {error}");
            }
            _ => panic!("{how}: the child reported neither a container nor an error:\n{text}"),
        }
    }
    Ok(())
}

/// Makes a container with a wait (so every setting is read) and says what happened: `made`,
/// or the error on one line. With `DH_E2E_HOLD`, waits for that file before it ends.
#[tokio::test]
#[ignore = "run by the tests above"]
async fn child_makes_a_container() -> anyhow::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let result = async {
        let ctx = TestContext::new()?;
        let spec = ContainerSpec::new("app")
            .with_cmd(["sh", "-c", "echo up; exec sleep 3600"])
            .with_wait(docker_harness::WaitFor::log_line("up"));
        let c = ctx.container(spec).await?;
        println!("REPORT made={}", c.name());
        if let Ok(hold) = std::env::var("DH_E2E_HOLD") {
            let others = std::env::var("DH_E2E_OTHER").unwrap_or_default();
            let verdict = docker_harness::sweep::survey()
                .await?
                .into_iter()
                .find(|l| l.resource.name == others)
                .map(|l| format!("{:?}", l.verdict));
            println!("REPORT other={}", verdict.unwrap_or_else(|| "absent".into()));
            for _ in 0..600 {
                if std::path::Path::new(&hold).exists() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        ctx.finish().await.map(drop)
    }
    .await;
    if let Err(e) = result {
        let e: Error = e;
        println!("REPORT error={}", e.to_string().replace('\n', " "));
    }
    Ok(())
}

#[tokio::test]
async fn two_users_on_one_daemon_never_see_each_others_live_resources_as_orphans() -> anyhow::Result<()> {
    let docker_gid = std::fs::metadata("/var/run/docker.sock").map(|m| std::os::unix::fs::MetadataExt::gid(&m))?;
    let ctx = TestContext::new()?;
    let mine = ctx.container(ContainerSpec::new("root-side").with_cmd(["sleep", "3600"])).await?;
    let hold = std::env::temp_dir().join(format!("dh-e2e-hold-{}", uuid::Uuid::new_v4().simple()));
    // `nobody` in the socket's group: an unprivileged user who may talk to the daemon.
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", &format!("--groups={docker_gid}"), "--"]).arg(exe);
    cmd.args(["--exact", "child_makes_a_container", "--ignored", "--nocapture", "--test-threads", "1"]);
    let session = format!("e2e-other-user-{}", uuid::Uuid::new_v4().simple());
    cmd.env("DOCKER_HARNESS_E2E_CHILD", "1")
        .env_remove("NEXTEST_RUN_ID")
        .env_remove("DOCKER_HARNESS_STATE_DIR")
        .env("DOCKER_HARNESS_SESSION", &session)
        .env("DOCKER_HARNESS_WATCHER", "off")
        .env("DOCKER_HARNESS_PREFLIGHT", "warn")
        .env("DOCKER_HARNESS_KEEP", "never")
        .env("HOME", "/nonexistent")
        .env("TMPDIR", "/tmp")
        .env("DH_E2E_HOLD", &hold)
        .env("DH_E2E_OTHER", mine.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut other = cmd.spawn()?;
    let mut theirs = None;
    let mut their_verdict = None;
    for line in BufReader::new(other.stdout.take().expect("piped")).lines() {
        let line = line?;
        let report = reported(line.as_bytes());
        if let Some(v) = report.get("made") {
            theirs = Some(v.clone());
        }
        if let Some(v) = report.get("error") {
            anyhow::bail!("the other user's child failed: {v}");
        }
        if let Some(v) = report.get("other") {
            their_verdict = Some(v.clone());
            // Both alive now: how this side sees theirs.
            let theirs = theirs.clone().unwrap_or_default();
            let seen = docker_harness::sweep::survey().await?.into_iter().find(|l| l.resource.name == theirs);
            assert!(
                matches!(seen.map(|l| l.verdict), Some(Verdict::Owned)),
                "root sees {theirs} as its owner's, alive"
            );
            std::fs::write(&hold, "go")?;
        }
    }
    let status = other.wait()?;
    let _ = std::fs::remove_file(&hold);
    let _ = std::fs::remove_dir_all(format!("/tmp/docker-harness-65534/sessions/{session}"));
    assert!(status.success());
    assert_eq!(their_verdict.as_deref(), Some("Owned"), "the other user sees root's {} as alive", mine.name());
    let theirs = theirs.expect("the other user made a container");
    assert!(!common::container_exists(&raw().await, &theirs).await, "the other user's teardown removed {theirs}");
    Ok(())
}
