//! What an image build made besides the image it tagged: the intermediate images of every
//! step of every stage (the classic builder leaves earlier stages as dangling `<none>`
//! images and puts the build's labels on the last stage only) and the intermediate
//! containers its `RUN` steps ran in. None of them carries a label, so no listing can find
//! them again: the build records them here, under the state root (outside any session's
//! directory, so that a session's end does not lose them), by the built image's tag, and
//! whoever removes that tag (its guard, a teardown, the signal path, the watcher, a later
//! sweep) removes them with it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::session;

/// The record of one build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Made {
    /// The tag the build gave its image (unique to the build).
    pub(crate) tag: String,
    /// Image IDs the build reported as its own (each step's `---> <id>` that was neither a
    /// `FROM` nor answered from cache), in the order it made them; the tagged image last.
    pub(crate) images: Vec<String>,
    /// The intermediate containers its steps ran in (`forcerm` removes them; a build cut
    /// off in the middle may not have).
    pub(crate) containers: Vec<String>,
}

fn dir() -> PathBuf {
    session::state_root().join("builds")
}

/// The record's file: the tag, with the characters a file name cannot hold replaced.
fn path(tag: &str) -> PathBuf {
    let file: String =
        tag.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    dir().join(format!("{file}.json"))
}

/// Records (or updates) what a build made so far.
pub(crate) fn record(made: &Made) -> Result<()> {
    let dir = dir();
    std::fs::create_dir_all(&dir).map_err(|source| Error::State {
        action: "create the build records' directory",
        path: dir.clone(),
        source,
    })?;
    session::write_json(&path(&made.tag), made)
}

/// What the build that tagged `tag` made, if it was recorded on this host.
pub(crate) fn read(tag: &str) -> Option<Made> {
    serde_json::from_slice(&std::fs::read(path(tag)).ok()?).ok()
}

/// Forgets a build once everything it made is gone.
pub(crate) fn forget(tag: &str) {
    let _ = std::fs::remove_file(path(tag));
}

/// Where images a build made wait when a removal found them still used: another build of
/// the harness's was answered from them by the daemon's cache. One empty file an image, so
/// that processes never rewrite a shared list.
fn pending_dir() -> PathBuf {
    dir().join("pending")
}

/// Notes an image of the harness's that a removal had to leave (409): whoever removes a
/// build later tries it again, so that once the build standing on it is gone, it goes too.
pub(crate) fn leave_pending(image: &str) {
    let d = pending_dir();
    if std::fs::create_dir_all(&d).is_ok() {
        let _ = std::fs::write(d.join(image.trim_start_matches("sha256:")), b"");
    }
}

/// The images left pending.
pub(crate) fn pending() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pending_dir()) else { return Vec::new() };
    entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

/// Drops an image from the pending ones (it is gone).
pub(crate) fn done_pending(image: &str) {
    let _ = std::fs::remove_file(pending_dir().join(image.trim_start_matches("sha256:")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_becomes_a_plain_file_name() {
        let p = path("127.0.0.1:5000/dh-t-1234abcd-app:0123abcd");
        assert_eq!(p.file_name().unwrap(), "127.0.0.1_5000_dh-t-1234abcd-app_0123abcd.json");
    }
}
