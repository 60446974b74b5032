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
use crate::store::backend::{BackendError, FileKind};
use crate::store::id::BlobId;
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
    // Dropped first: the archive's lock object goes before the local one.
    _remote: Option<RemoteLock>,
}

impl WriterLock {
    /// Takes the lock for `task`, or says who holds it and what to do.
    /// A local archive has one writer at a time whatever `exclusive` says
    /// (its index is in it); an archive in object storage takes a lock
    /// object, shared (runs: several machines at once) or `exclusive`
    /// (prune, forget, repair), and the local lock guards its cache.
    pub fn take(archive: &Archive, task: &str, exclusive: bool) -> Result<WriterLock, ArchiveError> {
        let local = WriterLock::take_local(archive, task)?;
        let remote = if archive.is_local() { None } else { Some(RemoteLock::take(archive, task, exclusive)?) };
        Ok(WriterLock { _remote: remote, ..local })
    }

    fn take_local(archive: &Archive, task: &str) -> Result<WriterLock, ArchiveError> {
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
        Ok(WriterLock { _file: f, _remote: None })
    }
}

/// What a lock object in an archive in object storage says (restic's lock
/// files): who holds it, for what, and when it was last refreshed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    /// The machine.
    pub hostname: String,
    /// The process on it.
    pub pid: u32,
    /// What it does (`job blog`, `prune`).
    pub task: String,
    /// Exclusive (prune, forget, repair) or shared (runs).
    pub exclusive: bool,
    /// When it was taken or last refreshed.
    pub time: chrono::DateTime<chrono::Utc>,
}

/// A lock not refreshed for this long belongs to a process that died
/// without removing it; others ignore it and `kura unlock` removes it.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// How often a held lock object is renewed.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(5 * 60);

impl LockInfo {
    /// Its holder is gone: the lock was not refreshed for [`STALE_AFTER`],
    /// or it names this machine and a process that no longer exists (as
    /// restic decides; a killed prune then stops no one on its machine).
    pub fn is_stale(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        (now - self.time).to_std().is_ok_and(|age| age > STALE_AFTER)
            || (self.hostname == hostname() && self.pid != std::process::id() && !process_exists(self.pid))
    }

    fn describe(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let age = (now - self.time).num_seconds().max(0);
        format!(
            "{} lock of host {} pid {} ({}), refreshed {}m{:02}s ago",
            if self.exclusive { "an exclusive" } else { "a shared" },
            self.hostname,
            self.pid,
            self.task,
            age / 60,
            age % 60
        )
    }
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only asks whether the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists, under another user.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// Every lock object of the archive, with what it says (`None`: unreadable).
pub fn lock_objects(archive: &Archive) -> Result<Vec<(String, Option<LockInfo>)>, ArchiveError> {
    let backend = archive.backend();
    let mut out = Vec::new();
    for (name, _) in backend.list(FileKind::Lock)? {
        match backend.read(FileKind::Lock, &name) {
            Ok(bytes) => out.push((name, serde_json::from_slice(&bytes).ok())),
            // Removed since the listing: its holder finished.
            Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Removes the archive's stale lock objects (or all of them with `all`);
/// returns what was removed.
pub fn unlock(archive: &Archive, all: bool) -> Result<Vec<LockInfo>, ArchiveError> {
    let now = chrono::Utc::now();
    let mut removed = Vec::new();
    for (name, info) in lock_objects(archive)? {
        let stale = info.as_ref().is_none_or(|i| i.is_stale(now));
        if all || stale {
            archive.backend().remove(FileKind::Lock, &name)?;
            removed.extend(info);
        }
    }
    Ok(removed)
}

/// A held lock object, refreshed by a thread until dropped.
#[derive(Debug)]
struct RemoteLock {
    stop: std::sync::mpsc::Sender<()>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl RemoteLock {
    fn take(archive: &Archive, task: &str, exclusive: bool) -> Result<RemoteLock, ArchiveError> {
        let conflict = |mine: Option<&str>| -> Result<Option<LockInfo>, ArchiveError> {
            let now = chrono::Utc::now();
            for (name, info) in lock_objects(archive)? {
                let Some(info) = info else { continue };
                if Some(name.as_str()) == mine || info.is_stale(now) {
                    continue;
                }
                if exclusive || info.exclusive {
                    return Ok(Some(info));
                }
            }
            Ok(None)
        };
        let refuse = |other: LockInfo| {
            ArchiveError::Locked(format!(
                "archive {} is locked: {}; wait for it to finish, then run again. A lock not refreshed for {} minutes, \
                 or of a process gone from this machine, is stale: `kura unlock` removes stale locks. Read-only \
                 commands (snapshots, ls, cat, restore, verify) work meanwhile.",
                archive.location(),
                other.describe(chrono::Utc::now()),
                STALE_AFTER.as_secs() / 60
            ))
        };
        if let Some(other) = conflict(None)? {
            return Err(refuse(other));
        }
        let info = LockInfo {
            hostname: hostname(),
            pid: std::process::id(),
            task: task.into(),
            exclusive,
            time: chrono::Utc::now(),
        };
        let name = write_lock(archive, &info)?;
        // Someone may have taken a conflicting lock between our look and our
        // write: whoever sees the other after writing backs off.
        if let Some(other) = conflict(Some(&name))? {
            let _ = archive.backend().remove(FileKind::Lock, &name);
            return Err(refuse(other));
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let archive = archive.clone();
        let refresher = std::thread::spawn(move || {
            let mut name = name;
            let mut info = info;
            // Woken by the holder dropping the lock (or gone), else on time.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
                // A new object, then the old one removed: the lock is never
                // absent (restic refreshes the same way).
                info.time = chrono::Utc::now();
                match write_lock(&archive, &info) {
                    Ok(new) => {
                        let _ = archive.backend().remove(FileKind::Lock, &name);
                        name = new;
                    }
                    Err(e) => tracing::warn!("refreshing the archive lock failed: {e}"),
                }
            }
            if let Err(e) = archive.backend().remove(FileKind::Lock, &name) {
                tracing::warn!("removing the archive lock failed ({e}); `kura unlock` removes it once stale");
            }
        });
        Ok(RemoteLock { stop, refresher: Some(refresher) })
    }
}

fn write_lock(archive: &Archive, info: &LockInfo) -> Result<String, ArchiveError> {
    let json = serde_json::to_vec(info).expect("a lock serializes");
    let name = BlobId::of(format!("{}{}", fastrand::u64(..), String::from_utf8_lossy(&json)).as_bytes()).to_hex();
    archive.backend().write(FileKind::Lock, &name, &json)?;
    Ok(name)
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
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
        let lock = WriterLock::take(&a, "job blog", false).unwrap();
        let h = holder(dir.path()).expect("held");
        assert!(h.starts_with(&format!("pid {} job blog since ", std::process::id())), "{h}");
        // OFD locks belong to open file descriptions, so a second take in
        // the same process is refused as one from another process would be.
        let err = WriterLock::take(&a, "other", false).unwrap_err().to_string();
        assert!(err.contains("being written by another Kura process") && err.contains("job blog"), "{err}");
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        // Looking left nothing behind that would stop a writer.
        for _ in 0..3 {
            assert_eq!(holder(dir.path()), None);
        }
        drop(WriterLock::take(&a, "again", false).expect("free after looking"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_writer_of_an_earlier_build_holding_flock_keeps_this_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        let old = File::options().read(true).write(true).create(true).truncate(false).open(path(dir.path())).unwrap();
        old.try_lock().unwrap();
        assert!(WriterLock::take(&a, "new", false).is_err());
        drop(old);
        let held = WriterLock::take(&a, "new", false).unwrap();
        let other = File::open(path(dir.path())).unwrap();
        assert!(other.try_lock().is_err(), "an earlier build's flock is refused while this one writes");
        drop(held);
    }
}
