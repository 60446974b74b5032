//! Who writes an archive. Every writer holds a lock object,
//! `locks/<64 hex>` (restic's lock files: host, pid, task, time; shared for
//! runs, exclusive for prune, forget and repair), in object storage and in a
//! directory alike, so anyone can ask who writes without getting in its way
//! (`kura jobs`, `kura unlock`).
//!
//! A local archive (and the cache of one in object storage) is also held by
//! the writer lock, `locks/writer`: one process writes it at a time, since
//! its index is in it. That lock is an open-file-description lock (Linux
//! `F_OFD_SETLK`): the kernel drops it when the holder exits or is killed,
//! so a crash never leaves a stale lock, and `F_OFD_GETLK` tests it without
//! taking it, so looking can never make a writer that starts at that
//! moment fail.
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
    // Dropped first: the archive's lock object goes before the local one.
    _object: LockObject,
    _file: File,
}

impl WriterLock {
    /// Takes the lock for `task`, or says who holds it and what to do.
    /// A local archive has one writer at a time whatever `exclusive` says
    /// (its index is in it); an archive in object storage admits several
    /// shared holders (runs: several machines at once) or one `exclusive`
    /// (prune, forget, repair), and the local lock guards its cache.
    pub fn take(archive: &Archive, task: &str, exclusive: bool) -> Result<WriterLock, ArchiveError> {
        let file = take_local(archive, task)?;
        let object = LockObject::take(archive, task, exclusive)?;
        Ok(WriterLock { _object: object, _file: file })
    }
}

fn take_local(archive: &Archive, task: &str) -> Result<File, ArchiveError> {
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
    Ok(f)
}

/// What a lock object says (restic's lock files): who holds it, for what,
/// and when it was last refreshed.
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

/// Who writes the archive now: its live lock objects, or for a local
/// archive written by a build from before lock objects, the writer lock's
/// holder line. Never takes a lock.
pub fn writers(archive: &Archive) -> Result<Vec<String>, ArchiveError> {
    let now = chrono::Utc::now();
    let mut out: Vec<String> = lock_objects(archive)?
        .into_iter()
        .filter_map(|(_, info)| info.filter(|i| !i.is_stale(now)))
        .map(|i| format!("host {} pid {} {} since {}", i.hostname, i.pid, i.task, i.time.to_rfc3339()))
        .collect();
    if out.is_empty() && archive.is_local() {
        out.extend(holder(archive.root()));
    }
    Ok(out)
}

/// A held lock object, refreshed by a thread until dropped.
#[derive(Debug)]
struct LockObject {
    stop: std::sync::mpsc::Sender<()>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl LockObject {
    /// Called with the local writer lock held.
    fn take(archive: &Archive, task: &str, exclusive: bool) -> Result<LockObject, ArchiveError> {
        // In a directory the writer lock keeps every other writer out, so
        // any lock object there is one a killed process left, and nothing
        // can conflict; in object storage other machines' locks decide.
        let shared_store = !archive.is_local();
        if !shared_store {
            for (name, _) in archive.backend().list(FileKind::Lock)? {
                match archive.backend().remove(FileKind::Lock, &name) {
                    Ok(()) | Err(BackendError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
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
        if shared_store && let Some(other) = conflict(None)? {
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
        if shared_store && let Some(other) = conflict(Some(&name))? {
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
        Ok(LockObject { stop, refresher: Some(refresher) })
    }
}

fn write_lock(archive: &Archive, info: &LockInfo) -> Result<String, ArchiveError> {
    let json = serde_json::to_vec(info).expect("a lock serializes");
    let name = BlobId::of(format!("{}{}", fastrand::u64(..), String::from_utf8_lossy(&json)).as_bytes()).to_hex();
    archive.backend().write(FileKind::Lock, &name, &json)?;
    Ok(name)
}

impl Drop for LockObject {
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

    #[test]
    fn a_local_writer_holds_a_lock_object_and_clears_what_killed_writers_left() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let now = chrono::Utc::now();
        // What a writer killed on this machine and one on another left.
        let dead =
            LockInfo { hostname: hostname(), pid: u32::MAX - 7, task: "job old".into(), exclusive: false, time: now };
        let away = LockInfo { hostname: "elsewhere".into(), pid: 1, task: "prune".into(), exclusive: true, time: now };
        write_lock(&a, &dead).unwrap();
        write_lock(&a, &away).unwrap();
        assert!(dead.is_stale(now) && !away.is_stale(now));
        // Only the other machine's (not yet stale) counts as a writer.
        assert_eq!(writers(&a).unwrap(), vec![format!("host elsewhere pid 1 prune since {}", now.to_rfc3339())]);

        let lock = WriterLock::take(&a, "job blog", false).unwrap();
        let objects = lock_objects(&a).unwrap();
        assert_eq!(objects.len(), 1, "the leftovers are gone, the writer's own is there: {objects:?}");
        let mine = objects[0].1.as_ref().expect("readable");
        assert_eq!((mine.pid, mine.task.as_str(), mine.exclusive), (std::process::id(), "job blog", false));
        let w = writers(&a).unwrap();
        assert!(w.len() == 1 && w[0].contains(&format!("pid {} job blog since", std::process::id())), "{w:?}");
        drop(lock);
        assert!(lock_objects(&a).unwrap().is_empty(), "released with the lock");
        assert!(writers(&a).unwrap().is_empty());

        // `kura unlock` on a directory: a dead writer's object goes, a live
        // process's stays unless asked.
        write_lock(&a, &dead).unwrap();
        let live = LockInfo { pid: std::process::id(), ..dead.clone() };
        write_lock(&a, &live).unwrap();
        assert_eq!(unlock(&a, false).unwrap().iter().map(|l| l.pid).collect::<Vec<_>>(), vec![dead.pid]);
        assert_eq!(unlock(&a, true).unwrap().iter().map(|l| l.pid).collect::<Vec<_>>(), vec![live.pid]);
        assert!(lock_objects(&a).unwrap().is_empty());
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
