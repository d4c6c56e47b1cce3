//! The session: one run of a test suite, which under nextest spans many processes.
//!
//! Its ID comes from `NEXTEST_RUN_ID` (shared by every process of a nextest run), else
//! `DOCKER_HARNESS_SESSION`, else a fresh UUID for this process. Work that must happen
//! once per session (the image pull, the pre-test check) goes through `once`: an
//! advisory file lock in the session's state directory, which the kernel releases when
//! its holder dies, so a lock left by a killed process never blocks the next one.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{Env, ProcessEnv};
use crate::error::{Error, Result};

/// The current session.
#[derive(Debug, Clone)]
pub struct Session {
    id: String,
    state_dir: PathBuf,
}

impl Session {
    /// The session's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directory that holds this session's cross-process state (locks, pull records).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

pub(crate) fn session_id_from(env: &dyn Env) -> Result<String> {
    if let Some(id) = env.var("NEXTEST_RUN_ID") {
        return Ok(id);
    }
    match env.var(SESSION_ENV) {
        Some(id) if crate::naming::is_plain_key(&id) => Ok(id),
        Some(id) => Err(invalid_session_id(id)),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// Where every session's state directory lives: `DOCKER_HARNESS_STATE_DIR`, else
/// `<temp dir>/docker-harness-<uid>`. The default names the user: one user's directory,
/// made with that user's umask, is not another's to write, and two users' sessions on one
/// machine keep apart. `TMPDIR` unset means `/tmp` (std's `temp_dir`); a relative one is
/// taken from the working directory, as every program that reads it does.
pub(crate) fn state_root() -> PathBuf {
    state_root_from(&ProcessEnv, &std::env::temp_dir(), &user_tag())
}

fn state_root_from(env: &dyn Env, temp: &Path, user: &str) -> PathBuf {
    env.var("DOCKER_HARNESS_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.join(format!("docker-harness-{user}")))
}

/// This process's user, as the default state directory names it: its uid where `/proc`
/// says (the owner of `/proc/self`), else `$USER`, else `user`.
fn user_tag() -> String {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .ok()
        .or_else(|| ProcessEnv.var("USER").filter(|u| crate::naming::is_plain_key(u)))
        .unwrap_or_else(|| "user".into())
}

/// The session, or the DOCKER_HARNESS_SESSION value it refused (each caller gets a fresh error).
static CURRENT: Lazy<std::result::Result<Session, String>> = Lazy::new(|| {
    let id = session_id_from(&ProcessEnv).map_err(|_| ProcessEnv.var(SESSION_ENV).unwrap_or_default())?;
    let state_dir = state_root().join("sessions").join(&id);
    Ok(Session { id, state_dir })
});

/// The session this process belongs to.
///
/// # Errors
/// [`Error::InvalidEnv`] when `DOCKER_HARNESS_SESSION` is not a usable ID.
pub fn current() -> Result<&'static Session> {
    CURRENT.as_ref().map_err(|value| invalid_session_id(value.clone()))
}

const SESSION_ENV: &str = "DOCKER_HARNESS_SESSION";

fn invalid_session_id(value: String) -> Error {
    Error::InvalidEnv { var: SESSION_ENV, value, expected: "1 to 64 characters of letters, digits, '-', '_' or '.'" }
}

fn state_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::State { action, path: path.to_path_buf(), source }
}

/// Runs `work` once per session across processes and returns its recorded result to every
/// caller. Concurrent callers wait (polling the lock, up to `limit`) for the first one; a
/// failure is not recorded, so the next caller tries again.
pub(crate) async fn once<T, F, Fut>(dir: &Path, key: &str, limit: Duration, work: F) -> Result<T>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    fs::create_dir_all(dir).map_err(state_err("create the state directory", dir))?;
    let done = dir.join(format!("{key}.done.json"));
    if let Some(v) = read_done(&done) {
        return Ok(v);
    }
    let lock_path = dir.join(format!("{key}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(state_err("open the lock file", &lock_path))?;
    acquire(&lock, &lock_path, limit).await?;
    let result = match read_done(&done) {
        Some(v) => Ok(v),
        None => match work().await {
            Ok(v) => write_json(&done, &v).map(|_| v),
            Err(e) => Err(e),
        },
    };
    let _ = lock.unlock();
    result
}

async fn acquire(lock: &File, path: &Path, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::State { action: "lock", path: path.to_path_buf(), source: e })
            }
        }
        if started.elapsed() >= limit {
            return Err(Error::Timeout {
                what: format!("take the session lock {} (another test process holds it)", path.display()),
                after: limit,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Whether `once` already recorded `key`'s work in `dir`.
pub(crate) fn is_done(dir: &Path, key: &str) -> bool {
    dir.join(format!("{key}.done.json")).is_file()
}

fn read_done<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes JSON atomically (write then rename) so a reader never sees half a file. A write
/// that fails (a full disk: the file could be made but not filled) takes its temporary
/// file with it.
pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(v).expect("state records serialize");
    let written = fs::write(&tmp, bytes).map_err(state_err("write", path));
    let placed = written.and_then(|()| fs::rename(&tmp, path).map_err(state_err("rename into place", path)));
    if placed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    placed
}

/// Where a session's state directory keeps `o`'s owner file: its registration with the
/// session's watcher, present while `o` may leave something of its own behind.
pub(crate) fn owner_file(session_dir: &Path, o: &crate::owner::Owner) -> PathBuf {
    session_dir.join("owners").join(format!("{}-{}", o.pid, o.start))
}

/// Writes this process's owner file whole, then puts it in place: the watcher never reads
/// half of one.
pub(crate) fn write_owner_file(session_dir: &Path) -> std::io::Result<()> {
    let me = crate::owner::Owner::current();
    let file = owner_file(session_dir, me);
    fs::create_dir_all(session_dir.join("owners"))?;
    let tmp = session_dir.join(format!("owner.tmp.{}", std::process::id()));
    fs::write(&tmp, me.to_string())?;
    fs::rename(&tmp, &file)
}

/// The session directory this process registered its owner file in (see `watcher`), and
/// whether the file is withdrawn just now.
static REGISTERED: once_cell::sync::OnceCell<PathBuf> = once_cell::sync::OnceCell::new();
static WITHDRAWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This process's owner file is in `session_dir`, for the watcher.
pub(crate) fn registered_owner(session_dir: &Path) {
    let _ = REGISTERED.set(session_dir.to_path_buf());
}

/// Nothing of this process's own is left (every resource it tracked is gone, no program
/// holds its identity): its owner file goes, so that the watcher, told of its exit, has
/// nothing to look for.
pub(crate) fn withdraw_owner() {
    use std::sync::atomic::Ordering;
    if let Some(dir) = REGISTERED.get() {
        if !WITHDRAWN.swap(true, Ordering::SeqCst) {
            let _ = fs::remove_file(owner_file(dir, crate::owner::Owner::current()));
        }
    }
}

/// About to make something, or just made it: the owner file is back (first, if it was
/// withdrawn), so that a death from here on is looked into.
pub(crate) fn reinstate_owner() {
    use std::sync::atomic::Ordering;
    if let Some(dir) = REGISTERED.get() {
        if WITHDRAWN.swap(false, Ordering::SeqCst) && write_owner_file(dir).is_err() {
            WITHDRAWN.store(true, Ordering::SeqCst);
        }
    }
}

/// Every session's state directory under the state root.
pub(crate) fn all_dirs() -> Vec<PathBuf> {
    let entries = fs::read_dir(state_root().join("sessions")).into_iter().flatten().flatten();
    entries.map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// When anything in a session's directory last changed (the directory, or one level in).
pub(crate) fn last_change(dir: &Path) -> Option<std::time::SystemTime> {
    let children = fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path());
    std::iter::once(dir.to_path_buf()).chain(children).filter_map(|p| p.metadata().ok()?.modified().ok()).max()
}

/// Removes a finished session's working state: its locks, once-records, owners, contexts
/// and temporary files. Its `*.jsonl` records (pulls, declared counts) stay for whoever
/// audits the run; the pre-test check takes them with the rest a day later.
pub(crate) fn clear_working_state(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            continue;
        }
        let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
    }
}

/// Appends one JSON line to a session record (pull records, for audits).
pub(crate) fn append_record<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(state_err("create the state directory", dir))?;
    }
    let mut line = serde_json::to_vec(v).expect("state records serialize");
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(state_err("open", path))?;
    f.write_all(&line).map_err(state_err("append to", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn nextest_run_id_wins_over_the_harness_variable() {
        let env: HashMap<&str, &str> = [("NEXTEST_RUN_ID", "run-1"), ("DOCKER_HARNESS_SESSION", "mine")].into();
        assert_eq!(session_id_from(&env).unwrap(), "run-1");
        let env: HashMap<&str, &str> = [("DOCKER_HARNESS_SESSION", "mine")].into();
        assert_eq!(session_id_from(&env).unwrap(), "mine");
    }

    #[test]
    fn without_either_a_fresh_uuid_is_used() {
        let env: HashMap<&str, &str> = HashMap::new();
        let a = session_id_from(&env).unwrap();
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        assert_ne!(a, session_id_from(&env).unwrap());
    }

    #[test]
    fn the_default_state_directory_names_the_user_and_the_variable_wins() {
        let none: HashMap<&str, &str> = HashMap::new();
        let tmp = PathBuf::from("/tmp/odd dir/ünï");
        assert_eq!(state_root_from(&none, &tmp, "1000"), tmp.join("docker-harness-1000"));
        assert_ne!(state_root_from(&none, &tmp, "0"), state_root_from(&none, &tmp, "1000"));
        let set: HashMap<&str, &str> = [("DOCKER_HARNESS_STATE_DIR", "/srv/state")].into();
        assert_eq!(state_root_from(&set, &tmp, "0"), PathBuf::from("/srv/state"));
        assert!(!user_tag().is_empty());
    }

    #[test]
    fn a_session_id_that_could_escape_its_directory_is_refused() {
        let env: HashMap<&str, &str> = [("DOCKER_HARNESS_SESSION", "../etc")].into();
        let err = session_id_from(&env).unwrap_err();
        assert!(matches!(&err, Error::InvalidEnv { var: "DOCKER_HARNESS_SESSION", value, .. } if value == "../etc"));
        assert!(err.to_string().contains("help: fix or unset DOCKER_HARNESS_SESSION"), "{err}");
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dh-unit-{tag}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn once_runs_the_work_a_single_time_for_concurrent_callers() {
        let dir = temp_dir("once");
        let runs = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (dir, runs) = (dir.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                once(&dir, "work", Duration::from_secs(10), || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(7u32)
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_failed_attempt_is_not_recorded() {
        let dir = temp_dir("fail");
        let first: Result<u32> = once(&dir, "w", Duration::from_secs(5), || async {
            Err(Error::InvalidName { what: "test", value: "x".into(), reason: "a failure to not record" })
        })
        .await;
        assert!(first.is_err());
        let second = once(&dir, "w", Duration::from_secs(5), || async { Ok(3u32) }).await;
        assert_eq!(second.unwrap(), 3);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_finished_sessions_working_state_goes_and_its_records_stay() {
        let dir = temp_dir("clear");
        fs::create_dir_all(dir.join("contexts")).unwrap();
        fs::write(dir.join("contexts/t.json"), "{}").unwrap();
        fs::write(dir.join("preflight.lock"), "").unwrap();
        fs::write(dir.join("pulls.jsonl"), "{}\n").unwrap();
        clear_working_state(&dir);
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("pulls.jsonl")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_record_that_cannot_be_put_in_place_leaves_no_temporary_file() {
        let dir = temp_dir("place");
        // A non-empty directory where the record goes: the rename fails after the write.
        fs::create_dir_all(dir.join("rec.json/in-the-way")).unwrap();
        let err = write_json(&dir.join("rec.json"), &1u32).unwrap_err();
        assert!(matches!(&err, Error::State { action: "rename into place", .. }), "{err}");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("rec.json")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_held_lock_times_out_with_a_clear_error() {
        let dir = temp_dir("held");
        let holder = File::create(dir.join("k.lock")).unwrap();
        holder.lock().unwrap();
        let err = once(&dir, "k", Duration::from_millis(200), || async { Ok(1u32) }).await.unwrap_err();
        assert!(err.to_string().contains("session lock"), "{err}");
        drop(holder); // the kernel releases the lock with its last handle, as when a holder dies
        assert_eq!(once(&dir, "k", Duration::from_secs(5), || async { Ok(2u32) }).await.unwrap(), 2);
        fs::remove_dir_all(dir).unwrap();
    }
}
