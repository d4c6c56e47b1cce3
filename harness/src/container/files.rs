//! Files in and out of a container, as tar streams through Docker's archive API.
//!
//! Not bind mounts: a bind mount needs a host path the daemon can see (not so with a remote
//! DOCKER_HOST or a rootless daemon), leaves the host's ownership on the files, and writes
//! back into the host tree. An archive copy works wherever the API does.

use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::labels;

/// What to copy into a container: bytes, or a file or directory on the host.
#[derive(Clone, PartialEq, Eq)]
pub enum FileSource {
    /// These bytes, as one file.
    Bytes(Vec<u8>),
    /// A file or a whole directory (recursively, keeping modes and symlinks).
    Path(PathBuf),
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            FileSource::Path(p) => write!(f, "Path({})", p.display()),
        }
    }
}

impl From<Vec<u8>> for FileSource {
    fn from(b: Vec<u8>) -> Self {
        FileSource::Bytes(b)
    }
}

impl From<&[u8]> for FileSource {
    fn from(b: &[u8]) -> Self {
        FileSource::Bytes(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for FileSource {
    fn from(b: &[u8; N]) -> Self {
        FileSource::Bytes(b.to_vec())
    }
}

impl From<String> for FileSource {
    /// The string's bytes (not a path: use a `PathBuf` or `&Path` for that).
    fn from(s: String) -> Self {
        FileSource::Bytes(s.into_bytes())
    }
}

impl From<PathBuf> for FileSource {
    fn from(p: PathBuf) -> Self {
        FileSource::Path(p)
    }
}

impl From<&Path> for FileSource {
    fn from(p: &Path) -> Self {
        FileSource::Path(p.to_path_buf())
    }
}

/// One copy into a container: what, where (an absolute path), and the mode of a single file
/// (`None` keeps a host file's mode, or 0644 for bytes).
#[derive(Debug, Clone)]
pub(crate) struct FileSpec {
    source: FileSource,
    target: String,
    mode: Option<u32>,
}

impl FileSpec {
    pub(crate) fn new(source: FileSource, target: String, mode: Option<u32>) -> FileSpec {
        FileSpec { source, target, mode }
    }
}

/// The contents of one regular file in the container.
pub(crate) async fn copy_out_bytes(docker: &Docker, id: &str, name: &str, path: &str) -> Result<Vec<u8>> {
    let tar = download(docker, id, name, path).await?;
    let err = |reason: String| Error::Copy {
        action: "copy a file out".into(),
        container: name.to_string(),
        path: path.to_string(),
        reason,
    };
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entries = archive.entries().map_err(|e| err(e.to_string()))?;
    let mut entry = match entries.next() {
        Some(e) => e.map_err(|e| err(e.to_string()))?,
        None => return Err(err("Docker sent an empty archive".into())),
    };
    if !entry.header().entry_type().is_file() {
        return Err(err(format!(
            "it is a {:?}, not a regular file; copy it with copy_out_to(path, local_dir)",
            entry.header().entry_type()
        )));
    }
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
    Ok(bytes)
}

/// A file or directory of the container unpacked into `local_dir`; returns the copy's path.
pub(crate) async fn copy_out_to(
    docker: &Docker,
    id: &str,
    name: &str,
    path: &str,
    local_dir: &Path,
) -> Result<PathBuf> {
    let tar = download(docker, id, name, path).await?;
    let err = |reason: String| Error::Copy {
        action: format!("copy {path} out into {}", local_dir.display()),
        container: name.to_string(),
        path: path.to_string(),
        reason,
    };
    std::fs::create_dir_all(local_dir).map_err(|e| err(e.to_string()))?;
    let mut archive = tar::Archive::new(&tar[..]);
    archive.set_preserve_permissions(true);
    // Ownership stays the caller's: container UIDs mean nothing on the host.
    archive.set_preserve_ownerships(false);
    archive.unpack(local_dir).map_err(|e| err(e.to_string()))?;
    let base = Path::new(path).file_name().map(PathBuf::from).unwrap_or_default();
    Ok(local_dir.join(base))
}

async fn download(docker: &Docker, id: &str, name: &str, path: &str) -> Result<Vec<u8>> {
    let opts = DownloadFromContainerOptions { path: path.to_string() };
    let mut stream = crate::retry::bounded_stream(docker.download_from_container(id, Some(opts)));
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::docker(format!("copy {path} out of container {name}"), e))?;
        tar.extend_from_slice(&chunk);
    }
    Ok(tar)
}

/// Uploads every file spec as one archive, extracted at `/`.
pub(crate) async fn upload_all(docker: &Docker, id: &str, name: &str, files: &[FileSpec]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        append(&mut builder, f).map_err(|reason| Error::Copy {
            action: format!("copy {:?} in", f.source),
            container: name.to_string(),
            path: f.target.clone(),
            reason,
        })?;
    }
    let tar = builder.into_inner().map_err(|e| Error::Copy {
        action: "build the archive to copy in".into(),
        container: name.to_string(),
        path: "/".into(),
        reason: e.to_string(),
    })?;
    let targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
    let opts = UploadToContainerOptions { path: "/".into(), ..Default::default() };
    docker
        .upload_to_container(id, Some(opts), bollard::body_full(tar.into()))
        .await
        .map_err(|e| Error::docker(format!("copy {} into container {name}", targets.join(", ")), e))
}

/// The archive path of an absolute container path (`/www/index.html` → `www/index.html`).
/// Refuses relative paths and `..`, which would land somewhere the caller did not say.
fn archive_path(target: &str) -> std::result::Result<PathBuf, String> {
    let p = Path::new(target);
    if !p.is_absolute() {
        return Err(format!("the target {target:?} must be an absolute path in the container"));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => return Err(format!("the target {target:?} may not contain `..`")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("the target {target:?} names the root directory, not a file"));
    }
    Ok(out)
}

fn append(builder: &mut tar::Builder<Vec<u8>>, f: &FileSpec) -> std::result::Result<(), String> {
    let dest = archive_path(&f.target)?;
    match &f.source {
        FileSource::Bytes(bytes) => append_bytes(builder, &dest, bytes, f.mode.unwrap_or(0o644)),
        FileSource::Path(src) => {
            let meta = std::fs::symlink_metadata(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
            if meta.is_dir() {
                append_tree(builder, src, &dest)
            } else {
                let bytes = std::fs::read(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
                append_bytes(builder, &dest, &bytes, f.mode.unwrap_or_else(|| mode_of(&meta)))
            }
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    // Root-owned in the container, whoever runs the tests on the host.
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(labels::unix_now());
    h
}

fn append_bytes(
    builder: &mut tar::Builder<Vec<u8>>,
    dest: &Path,
    bytes: &[u8],
    mode: u32,
) -> std::result::Result<(), String> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, mode);
    builder.append_data(&mut h, dest, bytes).map_err(|e| e.to_string())
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// No modes to keep: what a Linux container would have made of a fresh file or directory.
#[cfg(not(unix))]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else {
        0o644
    }
}

fn append_tree(builder: &mut tar::Builder<Vec<u8>>, src: &Path, dest: &Path) -> std::result::Result<(), String> {
    let cant = |p: &Path, e: std::io::Error| format!("cannot read {}: {e}", p.display());
    let meta = std::fs::symlink_metadata(src).map_err(|e| cant(src, e))?;
    let mut h = header(tar::EntryType::Directory, 0, mode_of(&meta));
    builder.append_data(&mut h, dest, std::io::empty()).map_err(|e| e.to_string())?;
    let mut children: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| cant(src, e))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| cant(src, e))?;
    // A stable order makes the archive, and so a failure, reproducible.
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let to = dest.join(child.file_name());
        let meta = std::fs::symlink_metadata(&path).map_err(|e| cant(&path, e))?;
        if meta.is_dir() {
            append_tree(builder, &path, &to)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| cant(&path, e))?;
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            builder.append_link(&mut h, &to, &target).map_err(|e| e.to_string())?;
        } else {
            let bytes = std::fs::read(&path).map_err(|e| cant(&path, e))?;
            append_bytes(builder, &to, &bytes, mode_of(&meta))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_targets_without_dotdot_are_accepted() {
        assert_eq!(archive_path("/www/index.html").unwrap(), PathBuf::from("www/index.html"));
        assert!(archive_path("www/index.html").is_err());
        assert!(archive_path("/www/../etc/passwd").is_err());
        assert!(archive_path("/").is_err());
    }

    #[test]
    #[cfg(unix)]
    fn a_directory_is_archived_whole_with_its_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("dh-unit-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("sub/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, &FileSpec { source: FileSource::Path(dir.clone()), target: "/opt/app".into(), mode: None })
            .unwrap();
        let tar = b.into_inner().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let found: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap())
            })
            .collect();
        assert!(found.contains(&("opt/app/sub/run.sh".to_string(), 0o750)), "{found:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
