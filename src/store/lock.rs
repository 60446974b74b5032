//! The writer lock, `locks/writer`: one process writes an archive at a
//! time (a job, prune, forget, repair), and anyone can ask who without
//! getting in its way.
//!
//! It is an open-file-description lock (Linux `F_OFD_SETLK`): the kernel
//! drops it when the holder exits or is killed, so a crash never leaves a
//! stale lock, and `F_OFD_GETLK` tests it without taking it, so looking
//! (`kura jobs`) can never make a writer that starts at that moment fail.
//! The writer also takes `flock(2)` on the file, the lock earlier builds
//! used, so they and this one never write at once.
//! The file holds one line naming the holder (`pid N TASK since TIME`).

use crate::store::archive::{Archive, ArchiveError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file under an archive's root.
fn path(root: &Path) -> PathBuf {
    root.join("locks").join("writer")
}

/// A held writer lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock for `task`, or says who holds it and what to do.
    pub fn take(archive: &Archive, task: &str) -> Result<WriterLock, ArchiveError> {
        let path = path(archive.root());
        let io = |source| ArchiveError::Io { path: path.clone(), source };
        std::fs::create_dir_all(path.parent().expect("lock has a parent")).map_err(io)?;
        let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // A lock held for a moment is waited for: a process this one spawns
        // shares the lock's file description between fork and exec, so a
        // writer reopened at that instant would otherwise be refused.
        let mut taken = sys::try_lock(&f).map_err(io)?;
        for _ in 0..10 {
            if taken {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            taken = sys::try_lock(&f).map_err(io)?;
        }
        if !taken {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(ArchiveError::Locked(format!(
                "archive {} is being written by another Kura process ({}); wait for it to finish, then run again. \
                 Read-only commands (snapshots, ls, cat, restore, verify) work meanwhile.",
                archive.root().display(),
                if holder.is_empty() { "unknown pid" } else { holder }
            )));
        }
        f.set_len(0).map_err(io)?;
        f.rewind().map_err(io)?;
        write!(f, "pid {} {task} since {}", std::process::id(), chrono::Utc::now().to_rfc3339()).map_err(io)?;
        Ok(WriterLock { _file: f })
    }
}

/// Who holds the writer lock of the archive at `root` (the line its holder
/// wrote), or `None` when nobody does. Never takes the lock.
pub fn holder(root: &Path) -> Option<String> {
    let path = path(root);
    let f = File::open(&path).ok()?;
    sys::is_locked(&f).ok()?.then(|| std::fs::read_to_string(&path).unwrap_or_default().trim().to_string())
}

#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// A write lock over the whole file.
    fn whole_file() -> libc::flock {
        // SAFETY: flock is plain old data; all-zero is a valid value.
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = libc::F_WRLCK as libc::c_short;
        l.l_whence = libc::SEEK_SET as libc::c_short;
        l
    }

    /// Takes the lock if free: `Ok(false)` when someone else holds it.
    /// Builds before this one locked with `flock(2)`, which is independent
    /// of OFD locks on Linux; taking both keeps such a writer out too.
    pub fn try_lock(f: &File) -> std::io::Result<bool> {
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let l = whole_file();
        // SAFETY: a valid fd and a pointer to a live flock struct.
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &l) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }

    /// Whether another open file description holds the lock.
    pub fn is_locked(f: &File) -> std::io::Result<bool> {
        let mut l = whole_file();
        // SAFETY: a valid fd and a pointer to a live flock struct.
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut l) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(l.l_type != libc::F_UNLCK as libc::c_short)
    }
}

/// Elsewhere: `flock` through std. It cannot be observed without taking
/// it, so `holder` reports nobody rather than risk failing a writer.
#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::{File, TryLockError};

    pub fn try_lock(f: &File) -> std::io::Result<bool> {
        match f.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    pub fn is_locked(_: &File) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_looking_never_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        assert_eq!(holder(dir.path()), None);
        let lock = WriterLock::take(&a, "job blog").unwrap();
        let h = holder(dir.path()).expect("held");
        assert!(h.starts_with(&format!("pid {} job blog since ", std::process::id())), "{h}");
        // OFD locks belong to open file descriptions, so a second take in
        // the same process is refused as one from another process would be.
        let err = WriterLock::take(&a, "other").unwrap_err().to_string();
        assert!(err.contains("being written by another Kura process") && err.contains("job blog"), "{err}");
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        // Looking left nothing behind that would stop a writer.
        for _ in 0..3 {
            assert_eq!(holder(dir.path()), None);
        }
        drop(WriterLock::take(&a, "again").expect("free after looking"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_writer_of_an_earlier_build_holding_flock_keeps_this_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        let old = File::options().read(true).write(true).create(true).truncate(false).open(path(dir.path())).unwrap();
        old.try_lock().unwrap();
        assert!(WriterLock::take(&a, "new").is_err());
        drop(old);
        let held = WriterLock::take(&a, "new").unwrap();
        let other = File::open(path(dir.path())).unwrap();
        assert!(other.try_lock().is_err(), "an earlier build's flock is refused while this one writes");
        drop(held);
    }
}
