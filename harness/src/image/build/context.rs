//! A build's context as the daemon is sent it: the directory's files minus what its
//! `.dockerignore` excludes (applied here, since the harness makes the tar), packed with
//! deterministic headers in name order, so that the same files make the same tar and the
//! same content hash. The Dockerfile and `.dockerignore` are always sent, as the docker CLI
//! does, even when the patterns exclude them.

use std::fs;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// Where a Dockerfile given as text goes inside the context.
pub(crate) const TEXT_DOCKERFILE: &str = ".docker-harness.Dockerfile";

/// One `.dockerignore` line: a glob and whether it re-includes (`!`).
#[derive(Debug)]
struct Pattern {
    glob: GlobMatcher,
    include: bool,
}

/// The parsed `.dockerignore` of a context (empty when it has none).
#[derive(Debug, Default)]
pub(crate) struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses `.dockerignore` text: `#` comments and blank lines skipped, `!` re-includes, a
    /// leading `/` and `./` and a trailing `/` mean nothing (the context's root is the root).
    pub(crate) fn parse(text: &str) -> Result<Ignore, String> {
        let mut patterns = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("pattern {line:?}: {e}"))?
                .compile_matcher();
            patterns.push(Pattern { glob, include });
        }
        Ok(Ignore { patterns })
    }

    /// Whether a path (relative, `/`-separated) is left out: the last pattern that matches
    /// it or one of its parent directories decides, as the docker CLI's matcher does.
    pub(crate) fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            let mut hit = p.glob.is_match(rel);
            let mut at = rel;
            while !hit {
                let Some(cut) = at.rfind('/') else { break };
                at = &at[..cut];
                hit = p.glob.is_match(at);
            }
            if hit {
                excluded = !p.include;
            }
        }
        excluded
    }

    /// True when some pattern re-includes: an excluded directory must still be walked.
    fn re_includes(&self) -> bool {
        self.patterns.iter().any(|p| p.include)
    }
}

/// A pattern as the docker CLI cleans it: no leading `/` or `./`, no trailing `/`, no `//`.
fn clean(pat: &str) -> String {
    let parts: Vec<&str> = pat.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    parts.join("/")
}

/// The packed context.
#[derive(Debug)]
pub(crate) struct Packed {
    pub(crate) tar: Vec<u8>,
    /// The Dockerfile's path inside the context.
    pub(crate) dockerfile: String,
    /// The Dockerfile's text.
    pub(crate) dockerfile_text: String,
}

/// What the Dockerfile is: a file in the context, or text the harness adds to it.
#[derive(Debug, Clone)]
pub(crate) enum DockerfileSource {
    Path(String),
    Text(String),
}

/// Packs `dir` for a build. Errors are `(path at fault, reason)`.
pub(crate) fn pack(dir: &Path, dockerfile: &DockerfileSource) -> Result<Packed, (PathBuf, String)> {
    let meta = fs::metadata(dir).map_err(|e| (dir.to_path_buf(), format!("the context directory: {e}")))?;
    if !meta.is_dir() {
        return Err((dir.to_path_buf(), "the context is not a directory".into()));
    }
    let ignore_path = dir.join(".dockerignore");
    let ignore = match fs::read_to_string(&ignore_path) {
        Ok(t) => Ignore::parse(&t).map_err(|e| (ignore_path.clone(), e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err((ignore_path, e.to_string())),
    };
    let (dockerfile, dockerfile_text) = match dockerfile {
        DockerfileSource::Text(t) => (TEXT_DOCKERFILE.to_string(), t.clone()),
        DockerfileSource::Path(p) => {
            let rel = clean(p);
            let full = dir.join(&rel);
            let text = fs::read_to_string(&full).map_err(|e| (full.clone(), format!("the Dockerfile: {e}")))?;
            (rel, text)
        }
    };
    let mut files = Vec::new();
    walk(dir, "", &ignore, &mut files).map_err(|(p, e)| (p, e.to_string()))?;
    let always = [dockerfile.as_str(), ".dockerignore"];
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    for rel in files.iter().filter(|r| always.contains(&r.as_str()) || !ignore.excludes(r)) {
        if rel == TEXT_DOCKERFILE {
            continue;
        }
        let full = dir.join(rel);
        builder.append_path_with_name(&full, rel).map_err(|e| (full.clone(), e.to_string()))?;
    }
    if dockerfile == TEXT_DOCKERFILE {
        let mut h = tar::Header::new_gnu();
        h.set_size(dockerfile_text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        builder
            .append_data(&mut h, TEXT_DOCKERFILE, dockerfile_text.as_bytes())
            .map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    }
    let tar = builder.into_inner().map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    Ok(Packed { tar, dockerfile, dockerfile_text })
}

/// Every path under `dir` in name order (directories before their contents), skipping
/// excluded directories when no pattern could bring anything inside them back.
fn walk(dir: &Path, rel: &str, ignore: &Ignore, out: &mut Vec<String>) -> Result<(), (PathBuf, std::io::Error)> {
    let here = if rel.is_empty() { dir.to_path_buf() } else { dir.join(rel) };
    let mut entries: Vec<_> =
        fs::read_dir(&here).map_err(|e| (here.clone(), e))?.collect::<Result<_, _>>().map_err(|e| (here.clone(), e))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let ty = e.file_type().map_err(|err| (e.path(), err))?;
        if ty.is_dir() {
            if ignore.excludes(&child) && !ignore.re_includes() {
                continue;
            }
            out.push(child.clone());
            walk(dir, &child, ignore, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_from_the_root_and_a_star_stays_within_a_directory() {
        let i = ignore("# comment\n\n/secret.txt\n*.tmp\nbuild/\n");
        assert!(i.excludes("secret.txt"));
        assert!(!i.excludes("sub/secret.txt"));
        assert!(i.excludes("a.tmp"));
        assert!(!i.excludes("sub/a.tmp"));
        assert!(i.excludes("build/out/x.o"), "a directory's pattern excludes what is inside it");
        assert!(!i.excludes("builder"));
    }

    #[test]
    fn double_stars_cross_directories_and_the_last_match_decides() {
        let i = ignore("**/*.log\n!keep/**\ndocs\n!docs/README.md\n");
        assert!(i.excludes("a/b/c.log"));
        assert!(i.excludes("c.log"));
        assert!(!i.excludes("keep/x.log"));
        assert!(i.excludes("docs/other.md"));
        assert!(!i.excludes("docs/README.md"));
    }

    #[test]
    fn a_broken_pattern_is_an_error_naming_it() {
        let e = Ignore::parse("[unclosed\n").unwrap_err();
        assert!(e.contains("[unclosed"), "{e}");
    }

    #[test]
    fn the_same_files_pack_to_the_same_bytes_and_ignored_ones_are_left_out() {
        let dir = std::env::temp_dir().join(format!("dh-unit-ctx-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(dir.join(".dockerignore"), "secret.txt\nDockerfile\n").unwrap();
        fs::write(dir.join("secret.txt"), "no").unwrap();
        fs::write(dir.join("sub/a.txt"), "yes").unwrap();
        let df = DockerfileSource::Path("./Dockerfile".into());
        let a = pack(&dir, &df).unwrap();
        let b = pack(&dir, &df).unwrap();
        assert_eq!(a.tar, b.tar);
        assert_eq!(a.dockerfile, "Dockerfile");
        let names: Vec<String> = tar::Archive::new(a.tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"Dockerfile".to_string()), "always sent: {names:?}");
        assert!(names.contains(&"sub/a.txt".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("secret")), "{names:?}");
        let text = pack(&dir, &DockerfileSource::Text("FROM scratch\nCOPY sub /sub\n".into())).unwrap();
        assert_eq!(text.dockerfile, TEXT_DOCKERFILE);
        assert_ne!(text.tar, a.tar);
        fs::write(dir.join("sub/a.txt"), "changed").unwrap();
        assert_ne!(pack(&dir, &df).unwrap().tar, a.tar);
        fs::remove_dir_all(&dir).unwrap();
    }
}
