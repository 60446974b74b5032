//! The directory a restore writes into. Every file is created fresh: data
//! goes to a new temporary file (`create_new`, so no existing path is ever
//! opened for writing) that is then renamed over the final name. A symlink
//! or hard link already at that name is replaced, never written through, so
//! nothing outside the target is created or modified. Directories on the
//! way must be real directories. A target inside the archive, or one that
//! contains it, is refused: restored URLs would land among its files.

use super::RestoreError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A checked restore target.
#[derive(Debug)]
pub(super) struct Target {
    root: PathBuf,
}

impl Target {
    /// Checks `dir` against the archive at `archive_root`, then creates it.
    pub fn open(dir: &Path, archive_root: &Path) -> Result<Target, RestoreError> {
        let archive = archive_root
            .canonicalize()
            .map_err(|source| RestoreError::Write { path: archive_root.to_path_buf(), source })?;
        let resolved = resolve(dir).map_err(|source| RestoreError::Write { path: dir.to_path_buf(), source })?;
        if resolved.starts_with(&archive) || archive.starts_with(&resolved) {
            return Err(RestoreError::OverlapsArchive {
                target: dir.to_path_buf(),
                archive: archive_root.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| RestoreError::Write { path: dir.to_path_buf(), source })?;
        Ok(Target { root: dir.to_path_buf() })
    }

    /// The target directory as given.
    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `data` as a new file at `rel` (a safe relative path).
    pub fn write(&self, rel: &Path, data: &[u8]) -> Result<(), RestoreError> {
        let target = prepare_parent(&self.root, rel)?;
        let parent = target.parent().expect("a file under the target has a parent");
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RestoreError::Write { path, source }
        };
        let (tmp, mut file) = loop {
            let tmp = parent.join(format!(".{name}.kura-{}-{:08x}", std::process::id(), fastrand::u32(..)));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(write_err(&tmp)(e)),
            }
        };
        let written = file.write_all(data).and_then(|()| file.flush());
        drop(file);
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &target)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(&target)(e));
        }
        Ok(())
    }
}

/// Creates `rel`'s parent directories under `root`, refusing to pass through
/// a symlink or a file that an earlier restore (or an attacker) left there,
/// and returns the file's path. A directory at the file's own name is refused.
fn prepare_parent(root: &Path, rel: &Path) -> Result<PathBuf, RestoreError> {
    let mut dir = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(RestoreError::Unsafe(dir)),
                Err(_) => {
                    std::fs::create_dir(&dir).map_err(|source| RestoreError::Write { path: dir.clone(), source })?
                }
            }
        }
    }
    let target = root.join(rel);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return Err(RestoreError::Unsafe(target));
    }
    Ok(target)
}

/// `dir` made absolute with symlinks resolved as far as it exists; the
/// components that do not exist yet are appended as they are.
fn resolve(dir: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(dir)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut p) => {
                for c in rest.iter().rev() {
                    p.push(c);
                }
                return Ok(p);
            }
            Err(e) => {
                let (Some(parent), Some(last)) = (existing.parent(), existing.file_name()) else { return Err(e) };
                rest.push(last.to_os_string());
                existing = parent;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, Target) {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("archive");
        std::fs::create_dir(&archive).unwrap();
        let t = Target::open(&tmp.path().join("out"), &archive).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        (tmp, outside, t)
    }

    #[cfg(unix)]
    #[test]
    fn links_at_the_final_name_are_replaced_not_written_through() {
        let (_tmp, outside, t) = setup();
        std::fs::write(outside.join("victim"), "precious").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), t.root().join("a.json")).unwrap();
        std::os::unix::fs::symlink(outside.join("never"), t.root().join("dangling")).unwrap();
        std::fs::hard_link(outside.join("victim"), t.root().join("hard")).unwrap();
        for name in ["a.json", "dangling", "hard"] {
            t.write(Path::new(name), b"restored").unwrap();
            let m = std::fs::symlink_metadata(t.root().join(name)).unwrap();
            assert!(m.is_file(), "{name} is a plain file now");
            assert_eq!(std::fs::read(t.root().join(name)).unwrap(), b"restored");
        }
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"precious");
        assert!(!outside.join("never").exists());
        let left: Vec<_> = std::fs::read_dir(t.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "no temporary files left: {left:?}");
    }

    #[cfg(unix)]
    #[test]
    fn directories_on_the_way_must_be_real() {
        let (_tmp, outside, t) = setup();
        std::os::unix::fs::symlink(&outside, t.root().join("host")).unwrap();
        let err = t.write(Path::new("host/x.png"), b"x").unwrap_err();
        assert!(matches!(err, RestoreError::Unsafe(_)), "{err}");
        std::fs::create_dir(t.root().join("d")).unwrap();
        assert!(matches!(t.write(Path::new("d"), b"x").unwrap_err(), RestoreError::Unsafe(_)));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn targets_overlapping_the_archive_are_refused_before_anything_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("archive");
        std::fs::create_dir_all(archive.join("packs")).unwrap();
        for dir in [archive.clone(), archive.join("packs/new/deeper"), tmp.path().to_path_buf()] {
            let err = Target::open(&dir, &archive).unwrap_err();
            assert!(matches!(err, RestoreError::OverlapsArchive { .. }), "{}: {err}", dir.display());
        }
        assert!(!archive.join("packs/new").exists());
        // Through a symlink to the archive, too.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&archive, tmp.path().join("alias")).unwrap();
            let err = Target::open(&tmp.path().join("alias/out"), &archive).unwrap_err();
            assert!(matches!(err, RestoreError::OverlapsArchive { .. }), "{err}");
        }
        Target::open(&tmp.path().join("elsewhere"), &archive).unwrap();
    }
}
