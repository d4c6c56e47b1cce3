//! The host-side watcher: a process, not a container, that removes a dead test process's
//! resources within a couple of seconds of its death (a SIGKILL, an OOM kill), instead of
//! leaving them to hold ports, memory and disk until the next session's check.
//!
//! The first harness process of a session on a host starts it: this same test binary,
//! re-executed with `DOCKER_HARNESS_WATCHER` set, which the process-start hook turns into
//! the watcher before `main`. It runs detached in a process group of its own, its output
//! in `watcher.log` in the session's state directory, so nextest neither waits for it nor
//! signals it. The others find it through `watcher.json` there, and start a new one if it
//! died. Test processes register themselves as owners in `owners/`; the watcher holds a
//! pidfd on each (`exits`), so an owner's exit wakes it at once, and it removes that
//! owner's resources by their owner label (and adopts what its contexts' programs made
//! under their recorded prefixes), then looks once more a second later. Owners it can get
//! no pidfd for are polled through `/proc` four times a second. Every few seconds it also
//! sweeps the whole session by label, to learn owners it was not told of. It uses the same
//! liveness rules as every sweep, so a live owner's resources and anything
//! without the managed label are never touched. Once the session's runner is gone and no
//! owner is alive, it removes the session's shared resources and exits; with nothing to
//! watch for a minute, it exits too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::owner::{self, procs, Liveness, Owner};
use crate::{adopt, blocking, docker, labels, session, sweep};

mod exits;
use exits::Exits;

/// Set (to the session ID) in the environment of a process that is to be the watcher.
pub(crate) const ENV: &str = "DOCKER_HARNESS_WATCHER";
/// The session's runner, handed to the watcher by the process that starts it.
const RUNNER_ENV: &str = "DOCKER_HARNESS_WATCHER_RUNNER";

const POLL: Duration = Duration::from_millis(250);
/// How long after an owner's death its resources are looked for once more.
const AFTERCARE: Duration = Duration::from_secs(1);
/// More owners than this dead at once are handled by one survey of the session.
const BATCH: usize = 8;
const SURVEY_EVERY: Duration = Duration::from_secs(3);
const IDLE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pid: u32,
    start: u64,
}

/// An owner file holds its owner's whole identity, place included: one session's state
/// directory may be seen from several PID namespaces.
fn read_owner_file(path: &Path) -> Option<Owner> {
    Owner::parse(std::fs::read_to_string(path).ok()?.trim())
}

/// Whether this process was started to be the watcher.
pub(crate) fn requested() -> Option<String> {
    std::env::var(ENV).ok().filter(|s| !s.is_empty() && s != "off")
}

fn disabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "off")
}

/// Registers this process as an owner of the session and makes sure a watcher runs.
/// Cheap after the first call in a process. Never fails the test: without a watcher the
/// next session's check still covers everything.
pub(crate) fn ensure() {
    static DONE: once_cell::sync::OnceCell<()> = once_cell::sync::OnceCell::new();
    DONE.get_or_init(|| {
        // Windows has no kill(0): a process sysinfo cannot see is "unknown" (see `owner`),
        // so a watcher there could rarely tell that a test died.
        if disabled() || cfg!(not(unix)) {
            return;
        }
        if let Err(e) = register_and_start() {
            eprintln!("docker-harness: no watcher for this session ({e}); the next session's check covers what a killed test leaves");
        }
    });
}

fn register_and_start() -> std::io::Result<()> {
    let sess = session::current().map_err(std::io::Error::other)?;
    let dir = sess.state_dir();
    let owners = dir.join("owners");
    std::fs::create_dir_all(&owners)?;
    session::write_owner_file(dir)?;
    session::registered_owner(dir);
    if !Owner::current().is_verified() {
        // It could never tell a dead owner from a live one: expiry does the work instead.
        return Err(std::io::Error::other("this process cannot see the host's processes"));
    }

    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("watcher.lock"))?;
    lock.lock()?; // held only while checking and starting: a few milliseconds
    let record = dir.join("watcher.json");
    if let Some(r) = read_record(&record) {
        if Owner::local(r.pid).is_some_and(|o| o.start == r.start) {
            return Ok(());
        }
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("watcher.log"))?;
    let runner = owner::runner().to_string();
    let mut cmd = Command::new(std::env::current_exe()?);
    // Not a test's host process, whoever started it: no test's teardown may end it.
    cmd.env_remove(procs::MARKER);
    cmd.env(ENV, sess.id()).env(RUNNER_ENV, &runner).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // Its own process group: nextest signals a test's group on timeout, and a terminal's
    // Ctrl-C goes to the foreground group; neither is the watcher's business.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // What decides, a day after, that this session's state may go (see `sweep`).
    std::fs::write(dir.join("runner"), &runner)?;
    let child = cmd.spawn()?;
    let start = Owner::local(child.id()).map_or(0, |o| o.start);
    session::write_json(&record, &Record { pid: child.id(), start }).map_err(std::io::Error::other)?;
    Ok(())
}

fn read_record(path: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The watcher's life. Returns the process's exit code.
pub(crate) fn main(session_id: &str) -> i32 {
    let runner = std::env::var(RUNNER_ENV).ok().and_then(|r| Owner::parse(&r));
    let dir = session::state_root().join("sessions").join(session_id);
    say(&format!(
        "watching session {session_id} (runner {})",
        runner.as_ref().map_or("unknown".into(), |r| r.to_string())
    ));
    let code = match blocking::wait(watch(session_id.to_string(), dir, runner), Duration::from_secs(7 * 24 * 3600)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => {
            say(&format!("stopped: {e}"));
            1
        }
        None => 1,
    };
    say("exiting");
    code
}

fn say(msg: &str) {
    eprintln!("docker-harness watcher [{}]: {msg}", labels::unix_now());
}

async fn watch(session_id: String, dir: PathBuf, runner: Option<Owner>) -> Result<()> {
    let docker = docker::client().await?;
    let session = format!("{}={session_id}", labels::SESSION);
    let host = Owner::current().host.clone();
    let mut exits = Exits::new();
    exits::raise_open_file_limit();
    // The runner's exit wakes the loop too, which then sees whether the session is over.
    if let Some(r) = &runner {
        exits.watch(r);
    }
    let mut known: HashSet<Owner> = HashSet::new();
    // Owners seen dead whose resources were removed once, looked at again a second later
    // for what a create the daemon finished after the owner's death made (`None`: the
    // whole session, after a batch).
    let mut aftercare: Vec<(Option<Owner>, Instant)> = Vec::new();
    let mut told: Vec<Owner> = Vec::new();
    let mut files: HashSet<std::ffi::OsString> = HashSet::new();
    // Owners that registered by a file, rather than learned from a resource's label.
    let mut registered: HashSet<Owner> = HashSet::new();
    let mut last_survey: Option<Instant> = None;
    let mut idle_since = Instant::now();
    loop {
        // Only files not read before: with hundreds of owners, reading them all four times a
        // second would be most of the watcher's work. One caught half-written is read again.
        for entry in std::fs::read_dir(dir.join("owners")).into_iter().flatten().flatten() {
            if files.contains(&entry.file_name()) {
                continue;
            }
            let Some(o) = read_owner_file(&entry.path()) else { continue };
            files.insert(entry.file_name());
            if o.host == host && known.insert(o.clone()) {
                exits.watch(&o);
                registered.insert(o);
            }
        }
        // Owners whose exit is told are not polled; the rest are, every round. A told exit
        // is still judged by the same rules as every sweep: only the dead are handled. The
        // runner too: under `cargo test` it is the test binary, an owner like any other.
        let mut dead: HashSet<Owner> = exits.drain().into_iter().collect();
        dead.extend(told.drain(..));
        dead.extend(known.iter().filter(|o| !exits.is_notified(o)).cloned());
        dead.retain(|o| o.liveness() == Liveness::Dead);
        // A registered owner that withdrew its file had nothing of its own left when it
        // ended (see `session::withdraw_owner`): nothing to look for. The session's survey
        // still covers it, as every owner.
        let clean: Vec<Owner> = dead
            .iter()
            .filter(|o| registered.contains(*o) && !session::owner_file(&dir, o).exists())
            .cloned()
            .collect();
        for o in &clean {
            dead.remove(o);
            known.remove(o);
            registered.remove(o);
        }
        if dead.len() > BATCH {
            // Many at once (a runner killed with its tests): one survey of the session, which
            // judges every resource, rather than a listing per owner.
            if let Err(e) = survey(&docker, &session, &dir, &host, &mut known, &mut exits).await {
                say(&format!("could not survey the session: {e}"));
            }
            aftercare.push((None, Instant::now()));
        } else {
            for o in &dead {
                remove_owned_by(&docker, &session, &dir, o).await;
                aftercare.push((Some(o.clone()), Instant::now()));
            }
        }
        for o in &dead {
            forget_owner(&dir, o);
            known.remove(o);
            registered.remove(o);
        }
        let (due, later): (Vec<_>, Vec<_>) = aftercare.into_iter().partition(|(_, at)| at.elapsed() >= AFTERCARE);
        aftercare = later;
        for (o, _) in due {
            match o {
                Some(o) => remove_owned_by(&docker, &session, &dir, &o).await,
                None => last_survey = None,
            }
        }
        let runner_alive = runner.as_ref().is_some_and(|r| r.liveness() != Liveness::Dead);
        let session_over = !runner_alive && known.is_empty();
        if session_over || last_survey.is_none_or(|t| t.elapsed() >= SURVEY_EVERY) {
            last_survey = Some(Instant::now());
            // A daemon that does not answer for a moment is no reason to stop watching.
            let live_resources = match survey(&docker, &session, &dir, &host, &mut known, &mut exits).await {
                Ok(live) => live,
                Err(e) => {
                    say(&format!("could not survey the session: {e}"));
                    true
                }
            };
            let runner_alive = runner.as_ref().is_some_and(|r| r.liveness() != Liveness::Dead);
            if !runner_alive && known.is_empty() {
                return end_of_session(&docker, &session, &dir).await;
            }
            if known.is_empty() && !live_resources {
                if idle_since.elapsed() >= IDLE_LIMIT {
                    say("idle: no owner and nothing to watch");
                    return Ok(());
                }
            } else {
                idle_since = Instant::now();
            }
        }
        // Woken at once by an exit; else a short sleep, which bounds how late a new owner's
        // file and an owner left to polling are seen.
        tokio::select! {
            o = exits.next() => told.push(o),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One owner's resources, by its owner label, and what its contexts' programs made under
/// their identity (adopted by the prefixes and task IDs they recorded).
async fn remove_owned_by(docker: &Docker, session: &str, dir: &Path, o: &Owner) {
    let filter = vec![session.to_string(), format!("{}={o}", labels::OWNER)];
    match sweep::survey_with(docker, &filter).await {
        Ok(leftovers) => {
            let report = sweep::remove_orphans(docker, leftovers).await;
            if !report.removed.is_empty() || !report.failed.is_empty() {
                say(&format!("owner {o} exited: {}", report.summary()));
            }
        }
        Err(e) => say(&format!("could not list what owner {o} left: {e}")),
    }
    let theirs: Vec<_> = adopt::orphaned_records(dir).into_iter().filter(|(_, r)| r.owner == o.to_string()).collect();
    if !theirs.is_empty() {
        match adopt::adopt_recorded(docker, theirs).await {
            Ok(adopted) if !adopted.is_empty() => {
                let names: Vec<String> = adopted.iter().map(ToString::to_string).collect();
                say(&format!("adopted and removed what owner {o} left: {}", names.join(", ")));
            }
            Ok(_) => {}
            Err(e) => say(&format!("adoption for owner {o} failed: {e}")),
        }
    }
}

fn forget_owner(dir: &Path, o: &Owner) {
    let _ = std::fs::remove_file(session::owner_file(dir, o));
}

/// The whole session, by label, every few seconds: it learns owners nobody registered (a
/// process that only handed out labels), and is the fallback for anything a told exit
/// missed. Returns whether live owners still hold resources.
async fn survey(
    docker: &Docker,
    session: &str,
    dir: &Path,
    host: &str,
    known: &mut HashSet<Owner>,
    exits: &mut Exits,
) -> Result<bool> {
    let leftovers = sweep::survey_with(docker, &[session.to_string()]).await?;
    for o in leftovers.iter().filter_map(|l| labels::judged_by(&l.resource.labels)).filter(|o| o.host == host) {
        if known.insert(o.clone()) {
            exits.watch(&o);
        }
    }
    let report = sweep::remove_orphans(docker, leftovers).await;
    if !report.removed.is_empty() || !report.failed.is_empty() {
        say(&report.summary());
    }
    // What a killed test's program made under its identity without its labels.
    if let Err(e) = sweep::adopt_for_the_dead(docker, std::slice::from_ref(&dir.to_path_buf()), "watcher").await {
        say(&format!("adoption failed: {e}"));
    }
    for o in known.iter().filter(|o| o.liveness() == Liveness::Dead) {
        forget_owner(dir, o);
    }
    known.retain(|o| o.liveness() != Liveness::Dead);
    Ok(report.owned + report.kept > 0)
}

/// The session is over: one more sweep (an owner that died while the last round was
/// judging may have been counted alive), then its working state, unless a context
/// recorded in it may still live (a process that only handed out its labels never
/// registered here).
async fn end_of_session(docker: &Docker, session: &str, dir: &Path) -> Result<()> {
    let last = sweep::survey_with(docker, &[session.to_string()]).await?;
    let report = sweep::remove_orphans(docker, last).await;
    if !report.removed.is_empty() {
        say(&report.summary());
    }
    if adopt::records(dir, |o| o.liveness() != Liveness::Dead).is_empty() {
        session::clear_working_state(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_files_round_trip_with_their_place() {
        let dir = std::env::temp_dir().join(format!("dh-unit-owners-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let o = Owner { host: "h~b00t~42".into(), pid: 42, start: 9000 };
        let path = session::owner_file(&dir, &o);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, o.to_string()).unwrap();
        assert_eq!(read_owner_file(&path), Some(o));
        std::fs::write(&path, "").unwrap(); // an older release's empty file names no place
        assert_eq!(read_owner_file(&path), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn this_process_is_alive_and_one_of_another_place_is_unknown() {
        let me = Owner::current();
        if me.is_verified() {
            assert_eq!(me.liveness(), Liveness::Alive);
        }
        assert_eq!(Owner { host: "h".into(), ..me.clone() }.liveness(), Liveness::Unknown);
    }
}
