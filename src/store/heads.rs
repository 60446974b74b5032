//! The heads cache: every snapshot's header and counts in one file of the
//! index directory, so that a listing, `latest` and `latest:JOB~N` read one
//! small file instead of every snapshot's root.
//!
//! A snapshot never changes (its id is its root's hash), so what was read
//! of it once stays true until it is forgotten. An archive of a year of
//! runs has thousands of snapshots; reading each root again (hashed whole,
//! its header decoded) made resolving `latest` cost about 0.2 ms a snapshot
//! for 220,000 entries, and four requests a snapshot in object storage.
//!
//! The file is a cache: it can be deleted at any time, and what in it is
//! not whole is read from the archive again. Its first line is
//! [`VERSION`]; each further line is `<snapshot id> <SHA-256 of the JSON>
//! <JSON of the header and counts>`. Writers only append, a listing's new
//! lines in one `write_all` on a file opened to append, so several
//! processes may add to it at once; a line cut by a crash, changed, or run
//! into by another (a write the system split) fails its hash and counts as
//! absent. Lines of forgotten snapshots, repeats and damaged
//! lines are dropped once they are more than 64 and more than the lines
//! still used (a new file renamed over the old one; a line appended to the
//! old one meanwhile is read from the archive again next time).

use crate::store::archive::SnapshotInfo;
use crate::store::id::{BlobId, SnapshotId};
use crate::store::manifest::{ManifestHeader, Summary};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The file's first line. Bumped whenever the fields of a header or its
/// counts change (a test pins them): a line an older Kura wrote lacks what
/// a newer one adds, and would be read as defaults, not as a miss.
const VERSION: &str = "kura-snapshot-heads 1";

/// What a rewrite's temporary file is named from; one a killed rewrite
/// left is removed by a later one an hour on.
const TEMPORARY: &str = ".snapshot-heads-";

/// A larger file is not read (a listing reads the roots instead): at about
/// a kilobyte a snapshot, over 200,000 snapshots.
const MAX_FILE: u64 = 256 << 20;

/// Dropped lines are tolerated up to this many before the file is rewritten,
/// however few it holds in use.
const SLACK: usize = 64;

/// What the cache file held when read.
pub(crate) struct Heads {
    path: PathBuf,
    found: HashMap<SnapshotId, (ManifestHeader, Summary)>,
    /// Lines after the first, whole or not.
    lines: usize,
    /// Whether the first line is [`VERSION`] (else the file is rewritten).
    current: bool,
}

impl Heads {
    /// Reads the cache at `path`; an absent, unreadable or over-large file
    /// holds nothing, a damaged line is skipped.
    pub(crate) fn read(path: &Path) -> Heads {
        let mut heads = Heads { path: path.to_path_buf(), found: HashMap::new(), lines: 0, current: false };
        let mut bytes = Vec::new();
        let read = std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes));
        if read.is_err() || bytes.len() as u64 > MAX_FILE {
            return heads;
        }
        let mut lines = bytes.split(|&b| b == b'\n');
        heads.current = lines.next() == Some(VERSION.as_bytes());
        if !heads.current {
            return heads;
        }
        for line in lines.filter(|l| !l.is_empty()) {
            heads.lines += 1;
            if let Some((id, head)) = parse(line) {
                heads.found.entry(id).or_insert(head);
            }
        }
        heads
    }

    /// The cached head of `id`, taken out.
    pub(crate) fn take(&mut self, id: &SnapshotId) -> Option<SnapshotInfo> {
        self.found.remove(id).map(|(header, summary)| SnapshotInfo { id: *id, header, summary })
    }

    /// Appends the heads of `new`, all in one `write_all` (nothing when
    /// empty).
    pub(crate) fn add<'a>(&self, new: impl IntoIterator<Item = &'a SnapshotInfo>) -> std::io::Result<()> {
        let mut out = Vec::new();
        for info in new {
            push_line(&mut out, info);
        }
        if out.is_empty() {
            return Ok(());
        }
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&self.path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            out.splice(0..0, format!("{VERSION}\n").into_bytes());
        } else {
            // After a line a crash cut short, on a line of its own.
            let mut last = [0];
            file.seek(std::io::SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                out.insert(0, b'\n');
            }
        }
        file.write_all(&out)
    }

    /// Whether the file should be rewritten, `used` of its lines being
    /// read into the listing: it is of another version, or its other lines
    /// (forgotten snapshots, repeats, damaged ones) are more than
    /// [`SLACK`] and more than `used`.
    pub(crate) fn untidy(&self, used: usize) -> bool {
        (!self.current && self.path.exists()) || self.lines.saturating_sub(used) > SLACK.max(used)
    }

    /// Replaces the file by one holding `heads` only (none at all past
    /// [`MAX_FILE`], which a listing would not read).
    pub(crate) fn rewrite<'a>(&self, heads: impl IntoIterator<Item = &'a SnapshotInfo>) -> std::io::Result<()> {
        let mut out = format!("{VERSION}\n").into_bytes();
        for info in heads {
            push_line(&mut out, info);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        remove_stale_temporaries(dir);
        if out.len() as u64 > MAX_FILE {
            return std::fs::remove_file(&self.path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            });
        }
        let mut tmp = tempfile::Builder::new().prefix(TEMPORARY).tempfile_in(dir)?;
        tmp.write_all(&out)?;
        // Readable as an appended file is (a temporary file is the owner's
        // alone): other users of the archive read the cache too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.persist(&self.path).map(drop).map_err(|e| e.error)
    }
}

/// Removes what rewrites killed half-way left in `dir`, an hour on (not
/// another process's rewrite in progress).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let stale = e.file_name().to_str().is_some_and(|n| n.starts_with(TEMPORARY))
            && e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok())
                > Some(std::time::Duration::from_secs(3600));
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn push_line(out: &mut Vec<u8>, info: &SnapshotInfo) {
    let json = serde_json::to_vec(&(&info.header, &info.summary)).expect("headers serialise");
    out.extend_from_slice(format!("{} {} ", info.id.to_hex(), BlobId::of(&json).to_hex()).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
}

fn parse(line: &[u8]) -> Option<(SnapshotId, (ManifestHeader, Summary))> {
    let (id, rest) = split_word(line)?;
    let (hash, json) = split_word(rest)?;
    let id: SnapshotId = std::str::from_utf8(id).ok()?.parse().ok()?;
    if std::str::from_utf8(hash).ok()? != BlobId::of(json).to_hex() {
        return None;
    }
    Some((id, serde_json::from_slice(json).ok()?))
}

/// Fuzzing: `data` as a line's JSON (given the hash it needs) and as lines
/// of their own; whatever reads as a head writes back as a line that reads
/// the same.
#[cfg(fuzzing)]
pub(crate) fn fuzz(data: &[u8]) {
    let mut line = format!("{} {} ", "ab".repeat(32), BlobId::of(data).to_hex()).into_bytes();
    line.extend_from_slice(data);
    for line in std::iter::once(line.as_slice()).chain(data.split(|&b| b == b'\n')) {
        let Some((id, (header, summary))) = parse(line) else { continue };
        let info = SnapshotInfo { id, header, summary };
        let mut out = Vec::new();
        push_line(&mut out, &info);
        assert_eq!(out.pop(), Some(b'\n'));
        let (again, (header, summary)) = parse(&out).expect("a line written reads");
        assert_eq!(again, id);
        let json = |h: &ManifestHeader, s: &Summary| serde_json::to_vec(&(h, s)).expect("serialises");
        assert_eq!(json(&header, &summary), json(&info.header, &info.summary));
    }
}

fn split_word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&b| b == b' ')?;
    Some((&s[..at], &s[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::ManifestHeader;

    fn info(n: u8) -> SnapshotInfo {
        let mut header = ManifestHeader::for_tests();
        header.job = format!("job-{n}");
        let summary = Summary { entries: u64::from(n) * 1000, ..Default::default() };
        SnapshotInfo { id: SnapshotId::from_bytes([n; 32]), header, summary }
    }

    fn same(a: &SnapshotInfo, b: &SnapshotInfo) -> bool {
        serde_json::to_string(&(a.id, &a.header, &a.summary)).unwrap()
            == serde_json::to_string(&(b.id, &b.header, &b.summary)).unwrap()
    }

    /// A change to the fields a head holds must bump [`VERSION`]: lines
    /// an older Kura wrote would be read with the new fields defaulted.
    #[test]
    fn the_fields_of_a_head_are_those_of_this_version() {
        let mut info = info(1);
        info.header.tags = vec!["t".into()];
        info.summary.kinds.insert("image".into(), 1);
        let json = serde_json::to_value((&info.header, &info.summary)).unwrap();
        let fields = |v: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(VERSION, "kura-snapshot-heads 1", "bump the version and the fields below together");
        assert_eq!(fields(&json[0]), ["finished", "hostname", "job", "sources", "started", "tags", "version"]);
        assert_eq!(fields(&json[1]), ["bytes", "entries", "failures", "kinds", "placeholders", "recovered"]);
    }

    #[test]
    fn heads_added_are_read_back_and_appends_keep_the_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        let mut empty = Heads::read(&path);
        assert!(empty.take(&info(1).id).is_none() && !empty.untidy(0));
        empty.add([&info(1), &info(2)]).unwrap();
        Heads::read(&path).add([&info(3)]).unwrap();
        let mut heads = Heads::read(&path);
        assert_eq!(heads.lines, 3);
        for n in 1..=3 {
            assert!(same(&heads.take(&info(n).id).unwrap(), &info(n)), "{n}");
        }
        assert!(heads.take(&info(4).id).is_none());
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("kura-snapshot-heads 1\n"));
    }

    #[test]
    fn a_cut_changed_or_foreign_line_is_absent_and_the_rest_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        Heads::read(&path).add([&info(1), &info(2), &info(3)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The second head's job changed; the third cut by a crash.
        let changed = text.replacen("job-2", "job-9", 1);
        std::fs::write(&path, &changed[..changed.len() - 40]).unwrap();
        let mut heads = Heads::read(&path);
        assert!(same(&heads.take(&info(1).id).unwrap(), &info(1)));
        assert!(heads.take(&info(2).id).is_none() && heads.take(&info(3).id).is_none());
        // The next append starts a line of its own after the cut one.
        heads.add([&info(4)]).unwrap();
        let mut heads = Heads::read(&path);
        assert!(same(&heads.take(&info(4).id).unwrap(), &info(4)));
        assert_eq!(heads.lines, 4);
        // A file of another version holds nothing and is rewritten.
        std::fs::write(&path, text.replacen("heads 1", "heads 2", 1)).unwrap();
        let mut other = Heads::read(&path);
        assert!(other.take(&info(1).id).is_none() && other.untidy(0));
        other.rewrite([&info(5)]).unwrap();
        let mut heads = Heads::read(&path);
        assert!(same(&heads.take(&info(5).id).unwrap(), &info(5)) && heads.lines == 1);
    }

    #[test]
    fn a_file_mostly_of_unused_lines_is_untidy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        let all: Vec<SnapshotInfo> = (0..200).map(info).collect();
        Heads::read(&path).add(&all).unwrap();
        let heads = Heads::read(&path);
        assert!(!heads.untidy(200) && !heads.untidy(100) && !heads.untidy(136));
        assert!(heads.untidy(99) && heads.untidy(0));
        // Repeats count as unused lines; the first whole one is read.
        let small: Vec<SnapshotInfo> = (0..3).map(info).collect();
        let path = dir.path().join("small");
        for _ in 0..30 {
            Heads::read(&path).add(&small).unwrap();
        }
        let mut heads = Heads::read(&path);
        assert_eq!(heads.lines, 90);
        assert!(heads.untidy(3) && same(&heads.take(&info(2).id).unwrap(), &info(2)));
    }

    /// A local archive's listing reads each root once, then the cache: a
    /// head the cache holds (whole) is what the listing shows.
    #[test]
    fn listings_read_heads_from_the_cache_and_the_archive_decides_which_snapshots_exist() {
        use crate::store::archive::Archive;
        use crate::store::manifest::{Entry, Manifest};
        use crate::store::writer::{WriteOptions, Writer};
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        for n in 0..3 {
            let mut header = ManifestHeader::for_tests();
            header.version = 5;
            header.job = format!("job-{n}");
            header.started += chrono::Duration::hours(n);
            let entries = vec![Entry { url: format!("https://a.example/{n}"), ..Default::default() }];
            w.commit(&Manifest { header, entries }).unwrap();
        }
        drop(w);
        let path = archive.root().join("index").join("snapshot-heads");
        assert!(!path.exists());
        let (infos, bad) = archive.snapshot_infos().unwrap();
        assert!(bad.is_empty() && infos.len() == 3);
        assert_eq!(infos, archive.snapshot_infos_checked().unwrap().0);
        assert_eq!(Heads::read(&path).lines, 3);
        assert_eq!(archive.snapshot_infos().unwrap().0, infos, "the same from the cache");
        assert_eq!(Heads::read(&path).lines, 3, "nothing appended again");

        let mut forged = infos.clone();
        forged[0].header.job = "from-cache".into();
        Heads::read(&path).rewrite(&forged).unwrap();
        let (listed, _) = archive.snapshot_infos().unwrap();
        assert_eq!(listed, forged);
        assert_eq!(archive.resolve_snapshot("latest:from-cache").unwrap(), infos[0].id);
        assert_eq!(archive.resolve_snapshot("latest~1").unwrap(), infos[1].id);

        // A root damaged after it was listed is still listed from the
        // cache; whatever opens it finds the damage, `stats` leaves it out,
        // and the checked listing (`forget`, `copy`) reports it.
        let root = archive.root().join("snapshots").join(infos[2].id.to_hex());
        let good = std::fs::read(&root).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 30;
        bad[at] ^= 0x40;
        std::fs::write(&root, &bad).unwrap();
        assert_eq!(archive.snapshot_infos().unwrap().0, forged);
        assert!(archive.open_snapshot(&infos[2].id).is_err());
        assert_eq!(crate::inspect::stats::stats(&archive).unwrap().snapshots, 2);
        let (checked, damaged) = archive.snapshot_infos_checked().unwrap();
        assert_eq!((checked.len(), damaged.len(), damaged[0].0), (2, 1, infos[2].id));
        std::fs::write(&root, &good).unwrap();

        // A snapshot gone from the archive is not listed, though the cache
        // names it; a cache that names many such is rewritten.
        std::fs::remove_file(archive.root().join("snapshots").join(infos[1].id.to_hex())).unwrap();
        let (listed, _) = archive.snapshot_infos().unwrap();
        assert_eq!(listed, [forged[0].clone(), forged[2].clone()]);
        assert_eq!(archive.resolve_snapshot("latest~1").unwrap(), infos[0].id);
        let many: Vec<SnapshotInfo> = (0..100).map(info).collect();
        Heads::read(&path).add(&many).unwrap();
        assert_eq!(archive.snapshot_infos().unwrap().0, listed);
        assert_eq!(Heads::read(&path).lines, 2, "rewritten with the listed ones only");

        // Without an index directory the roots are read, and none is made.
        std::fs::remove_dir_all(archive.root().join("index")).unwrap();
        assert_eq!(archive.snapshot_infos().unwrap().0, [infos[0].clone(), infos[2].clone()]);
        assert!(!archive.root().join("index").exists());
    }
}
