//! A set of tables (URL records, or blob locations): which exist, lookups
//! across them, adding one and merging them.
//!
//! The list of live tables (newest first) is a value of the `meta` tree
//! (`url_tables`, `blob_tables`); a table file is complete (written,
//! synced and renamed) before the list names it, and a table leaves the
//! list before its file is deleted, so a crash at any point leaves a list
//! of whole tables (files it does not name are removed at open). A newer
//! table's record of a key wins.
//!
//! Merging keeps the count small: after a table is added, the newest
//! tables are merged while together they are at least a quarter of the next
//! older one's size (or while more than [`MAX_TABLES`] remain). A record
//! is thus rewritten about log4(N) times over the archive's life, and a
//! lookup reads at most one block in each of a few tables. A merge drops
//! the records its caller no longer wants (locations in forgotten packs).

use super::table::{Block, Merge, Shape, Table, TableWriter};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Most tables left after a merge.
const MAX_TABLES: usize = 6;

/// Blocks kept for lookups in no order, per set of tables: about 1 MiB of
/// decoded URL blocks. A run looks up a page's images one after another,
/// and their URLs share a block or two, so most of those lookups read
/// nothing.
const CACHED_BLOCKS: usize = 64;

/// An error of a table file, with its path.
#[derive(Debug, thiserror::Error)]
#[error("index table {}: {source}", path.display())]
pub struct TableError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> TableError + '_ {
    move |source| TableError { path: path.to_path_buf(), source }
}

type List = Arc<Vec<(u64, Arc<Table>)>>;

/// The live tables of one kind.
pub(super) struct Tables {
    dir: PathBuf,
    /// The `meta` key listing the live tables.
    list_key: &'static str,
    shape: Shape,
    db: sled::Db,
    meta: sled::Tree,
    list: RwLock<List>,
    /// The next table number; held while a list is written, so that
    /// installs are serial.
    next: Mutex<u64>,
    cache: BlockCache,
}

type CachedBlock = (u64, usize, Arc<Block>);

/// Recently read blocks of a set's tables, by (table number, block number):
/// numbers are never reused while a process has the tables open, so a
/// cached block is never stale. Direct-mapped, one lock a slot.
struct BlockCache {
    slots: Vec<Mutex<Option<CachedBlock>>>,
}

impl BlockCache {
    fn new() -> BlockCache {
        BlockCache { slots: (0..CACHED_BLOCKS).map(|_| Mutex::new(None)).collect() }
    }

    /// Block `n` of table `table`, from the cache or read by `read`.
    fn get(&self, table: u64, n: usize, read: impl FnOnce() -> io::Result<Block>) -> io::Result<Arc<Block>> {
        let slot = &self.slots[(table as usize).wrapping_mul(31).wrapping_add(n) % CACHED_BLOCKS];
        if let Some((t, b, block)) = slot.lock().expect("no panics while held").as_ref()
            && (*t, *b) == (table, n)
        {
            return Ok(block.clone());
        }
        // Read outside the lock: a slow disk stalls only this lookup.
        let block = Arc::new(read()?);
        *slot.lock().expect("no panics while held") = Some((table, n, block.clone()));
        Ok(block)
    }
}

impl Tables {
    /// Opens the tables `meta` lists under `list_key` in `dir`, removing
    /// files it does not list (left by a crash before or after an install).
    pub(super) fn open(
        dir: &Path,
        list_key: &'static str,
        shape: Shape,
        db: &sled::Db,
        meta: &sled::Tree,
    ) -> Result<Tables, super::IndexError> {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let numbers: Vec<u64> = match meta.get(list_key)? {
            None => Vec::new(),
            Some(v) if v.len() % 8 == 0 => {
                v.chunks(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
            }
            Some(_) => return Err(super::IndexError::Damaged { tree: "meta" }),
        };
        for f in std::fs::read_dir(dir).map_err(at(dir))? {
            let f = f.map_err(at(dir))?;
            let name = f.file_name();
            let listed = name.to_str().and_then(|n| n.strip_suffix(".tbl")).and_then(|n| n.parse::<u64>().ok());
            if !listed.is_some_and(|n| numbers.contains(&n)) {
                std::fs::remove_file(f.path()).map_err(at(&f.path()))?;
            }
        }
        let mut list = Vec::with_capacity(numbers.len());
        for n in &numbers {
            let path = table_path(dir, *n);
            list.push((*n, Arc::new(Table::open(&path).map_err(at(&path))?)));
        }
        let next = numbers.iter().max().map_or(1, |n| n + 1);
        Ok(Tables {
            dir: dir.to_path_buf(),
            list_key,
            shape,
            db: db.clone(),
            meta: meta.clone(),
            list: RwLock::new(Arc::new(list)),
            next: Mutex::new(next),
            cache: BlockCache::new(),
        })
    }

    fn current(&self) -> List {
        self.list.read().expect("no panics while held").clone()
    }

    /// A reader over the tables live now, for lookups in ascending key
    /// order (each table's last block is kept).
    pub(super) fn reader(&self) -> Reader {
        let list = self.current();
        let caches = vec![None; list.len()];
        Reader { list, caches }
    }

    /// The value of `key`, from the newest table holding it.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        self.get_where(key, |_| true)
    }

    /// The value of `key` from the newest table holding one that `accept`
    /// takes.
    pub(super) fn get_where(
        &self,
        key: &[u8],
        mut accept: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<Vec<u8>>, TableError> {
        for (number, t) in self.current().iter() {
            let Some(n) = t.block_of(key) else { continue };
            let block = self.cache.get(*number, n, || t.read_block(n)).map_err(at(t.path()))?;
            if let Some(v) = block.get(key)
                && accept(v)
            {
                return Ok(Some(v.to_vec()));
            }
        }
        Ok(None)
    }

    /// Tables and bytes on disk.
    pub(super) fn stats(&self) -> (usize, u64, u64) {
        let list = self.current();
        (list.len(), list.iter().map(|(_, t)| t.size()).sum(), list.iter().map(|(_, t)| t.records()).sum())
    }

    /// Starts a new table of about `keys` records (not live until
    /// [`Tables::add`]).
    pub(super) fn create(&self, keys: u64) -> Result<NewTable, TableError> {
        let number = {
            let mut next = self.next.lock().expect("no panics while held");
            *next += 1;
            *next - 1
        };
        let tmp = self.dir.join(format!("{number}.tbl.tmp"));
        let writer = TableWriter::create(&tmp, self.shape, keys).map_err(at(&tmp))?;
        Ok(NewTable { number, tmp, writer })
    }

    /// Makes a written table live, as the newest (see [`Tables::merge`]).
    pub(super) fn add(&self, t: NewTable) -> Result<(), super::IndexError> {
        let (number, table) = t.finish(&self.dir)?;
        self.install(number, table, 0)
    }

    /// Replaces the newest `replaced` tables with `table` (placed newest).
    fn install(&self, number: u64, table: Table, replaced: usize) -> Result<(), super::IndexError> {
        let _serial = self.next.lock().expect("no panics while held");
        let old = self.current();
        let mut list = Vec::with_capacity(old.len() + 1 - replaced);
        list.push((number, Arc::new(table)));
        list.extend(old[replaced..].iter().cloned());
        let value: Vec<u8> = list.iter().flat_map(|(n, _)| n.to_le_bytes()).collect();
        self.meta.insert(self.list_key, value)?;
        self.db.flush()?;
        *self.list.write().expect("no panics while held") = Arc::new(list);
        // Readers holding a replaced table keep its open file. The new list
        // is already durable, so a file that will not go is only a stray
        // (removed at the next open), not a failed install.
        for (_, t) in &old[..replaced] {
            if let Err(e) = std::fs::remove_file(t.path()) {
                tracing::warn!(path = %t.path().display(), error = %e, "index: could not remove a merged table");
            }
        }
        Ok(())
    }

    /// How many of the newest tables to merge now (0 or 1: none).
    fn to_merge(sizes: &[u64]) -> usize {
        let mut n = 1;
        let mut sum = *sizes.first().unwrap_or(&0);
        while n < sizes.len() && (sum.saturating_mul(4) >= sizes[n] || sizes.len() - n >= MAX_TABLES) {
            sum += sizes[n];
            n += 1;
        }
        n
    }

    /// Merges the newest tables while the policy asks for it, keeping the
    /// records whose value `keep` takes.
    pub(super) fn merge(&self, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), super::IndexError> {
        loop {
            let list = self.current();
            let sizes: Vec<u64> = list.iter().map(|(_, t)| t.size()).collect();
            let n = Tables::to_merge(&sizes);
            if n < 2 {
                let (tables, bytes, records) = self.stats();
                tracing::debug!(tables, bytes, records, "index: {}", self.list_key);
                return Ok(());
            }
            let mut out = self.create(list[..n].iter().map(|(_, t)| t.records()).sum())?;
            merge_into(list[..n].iter().map(|(_, t)| t.as_ref()), &mut out, keep)?;
            let (number, table) = out.finish(&self.dir)?;
            self.install(number, table, n)?;
        }
    }

    /// Rewrites every table as one, keeping the records whose value `keep`
    /// takes (of each key, the newest it takes).
    pub(super) fn rewrite(&self, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), super::IndexError> {
        let list = self.current();
        if list.is_empty() {
            return Ok(());
        }
        let mut out = self.create(list.iter().map(|(_, t)| t.records()).sum())?;
        merge_into(list.iter().map(|(_, t)| t.as_ref()), &mut out, keep)?;
        let (number, table) = out.finish(&self.dir)?;
        self.install(number, table, list.len())
    }
}

/// Writes the records of `tables` (newest first) to `out`, in key order,
/// the newest record of each key, if `keep` takes it.
fn merge_into<'t>(
    tables: impl Iterator<Item = &'t Table>,
    out: &mut NewTable,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<(), TableError> {
    let tables: Vec<&Table> = tables.collect();
    let failed = |(i, e): (usize, io::Error)| at(tables[i].path())(e);
    let mut merge = Merge::new(&tables).map_err(failed)?;
    while let Some((key, values)) = merge.next().map_err(failed)? {
        // Of its records the newest that `keep` takes (an older one stands
        // when a newer is dropped).
        if let Some(value) = values.iter().find(|v| keep(v)) {
            out.push(&key, value)?;
        }
    }
    Ok(())
}

fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number}.tbl"))
}

/// A table being written.
pub(super) struct NewTable {
    number: u64,
    tmp: PathBuf,
    writer: TableWriter,
}

impl NewTable {
    /// The key written last.
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        self.writer.last_key()
    }

    /// Appends a record (keys strictly ascending).
    pub(super) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        self.writer.push(key, value).map_err(at(&self.tmp))
    }

    /// Completes the file under its final name.
    fn finish(self, dir: &Path) -> Result<(u64, Table), TableError> {
        self.writer.finish().map_err(at(&self.tmp))?;
        let path = table_path(dir, self.number);
        std::fs::rename(&self.tmp, &path).map_err(at(&path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))?;
        Ok((self.number, Table::open(&path).map_err(at(&path))?))
    }
}

/// Lookups in ascending key order over the tables live when it was made.
pub(super) struct Reader {
    list: List,
    caches: Vec<Option<(usize, Block)>>,
}

impl Reader {
    /// The value of `key`, from the newest table holding it.
    pub(super) fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        for ((_, t), cache) in self.list.iter().zip(&mut self.caches) {
            if let Some(v) = t.get(key, cache).map_err(at(t.path()))? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (sled::Db, Tables) {
        let db = sled::Config::new().path(dir.join("db")).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        let shape = Shape { block: super::super::table::BLOCK, hashed: false };
        let t = Tables::open(&dir.join("urls"), "url_tables", shape, &db, &meta).unwrap();
        (db, t)
    }

    fn add(t: &Tables, records: impl IntoIterator<Item = (String, String)>) {
        let mut out = t.create(0).unwrap();
        for (k, v) in records {
            out.push(k.as_bytes(), v.as_bytes()).unwrap();
        }
        t.add(out).unwrap();
        t.merge(&|v| v != b"dropped").unwrap();
    }

    fn get(t: &Tables, k: &str) -> Option<String> {
        t.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn the_newest_record_wins_and_tables_stay_few() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, t) = open(dir.path());
        // A large first run, then many small ones overwriting and adding.
        let mut want = std::collections::BTreeMap::new();
        let run0 = (0..8_000).map(|i| (format!("u{i:06}"), format!("run0-{i}")));
        want.extend(run0.clone());
        add(&t, run0);
        for run in 1..=12usize {
            let mut keys: Vec<usize> = (0..600).map(|j| (j * 97 + run * 13) % 12_000).collect();
            keys.sort();
            keys.dedup();
            let records: Vec<_> = keys.into_iter().map(|i| (format!("u{i:06}"), format!("run{run}-{i}"))).collect();
            want.extend(records.clone());
            add(&t, records);
            let (tables, _, _) = t.stats();
            assert!(tables <= MAX_TABLES, "{tables} tables after run {run}");
        }
        let mut r = t.reader();
        for i in 0..12_000usize {
            let k = format!("u{i:06}");
            let got = r.get(k.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_ref(), want.get(&k), "{k}");
            if i % 101 == 0 {
                assert_eq!(get(&t, &k).as_ref(), want.get(&k), "{k}");
            }
        }
        let (_, bytes, records) = t.stats();
        assert!(records <= 8_000 + 12 * 600, "{records} records");
        assert!(bytes > 0);
    }

    #[test]
    fn cached_blocks_answer_only_for_their_own_table() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, t) = open(dir.path());
        let key = |i: usize| format!("u{:06}", (i * 7919) % 8_000);
        add(&t, (0..8_000).map(|i| (format!("u{i:06}"), "old".to_string())));
        // Lookups in no order fill the cache with the old table's blocks...
        for i in 0..8_000 {
            assert_eq!(get(&t, &key(i)).as_deref(), Some("old"));
        }
        // ...which must not answer for a newer table's blocks: a small table
        // beside it (not merged), then a merge into a new one.
        add(&t, (0..8_000).step_by(500).map(|i| (format!("u{i:06}"), "new".to_string())));
        assert_eq!(t.stats().0, 2, "the small table stands beside the large one");
        for i in 0..8_000 {
            let want = if (i * 7919) % 8_000 % 500 == 0 { "new" } else { "old" };
            assert_eq!(get(&t, &key(i)).as_deref(), Some(want), "{}", key(i));
        }
        add(&t, (0..8_000).map(|i| (format!("u{i:06}"), "newest".to_string())));
        assert_eq!(t.stats().0, 1, "merged into one new table");
        for i in 0..8_000 {
            assert_eq!(get(&t, &key(i)).as_deref(), Some("newest"));
        }
        // Two tables whose numbers share a slot: block 0 of each is its own.
        let tables: Vec<_> = t.current().iter().map(|(_, t)| t.clone()).collect();
        let cache = BlockCache::new();
        let block = |n: u64| cache.get(n, 0, || tables[0].read_block(0)).unwrap();
        let first = block(1);
        let read_again = std::cell::Cell::new(false);
        let other = cache
            .get(1 + CACHED_BLOCKS as u64, 0, || {
                read_again.set(true);
                tables[0].read_block(0)
            })
            .unwrap();
        assert!(read_again.get() && !Arc::ptr_eq(&first, &other), "table 65's block came from table 1's slot");
        assert!(Arc::ptr_eq(&other, &cache.get(1 + CACHED_BLOCKS as u64, 0, || panic!("cached")).unwrap()));
    }

    #[test]
    fn a_merge_drops_what_is_not_kept_and_an_older_record_stands_for_a_dropped_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, t) = open(dir.path());
        add(&t, [("a".into(), "live".into()), ("b".into(), "dropped".into()), ("c".into(), "1".into())]);
        add(&t, [("a".into(), "dropped".into()), ("c".into(), "2".into())]);
        // Before a merge, lookups choose among the records.
        assert_eq!(t.stats().0, 1, "similar sizes merge");
        assert_eq!(get(&t, "a").as_deref(), Some("live"));
        assert_eq!(get(&t, "b"), None);
        assert_eq!(get(&t, "c").as_deref(), Some("2"));
        assert_eq!(t.stats().2, 2);
        // Unmerged, a lookup can pass over a record the caller refuses.
        let (_db2, u) = open(&dir.path().join("unmerged"));
        for records in [[("k", "old")], [("k", "new")]] {
            let mut out = u.create(1).unwrap();
            for (k, v) in records {
                out.push(k.as_bytes(), v.as_bytes()).unwrap();
            }
            u.add(out).unwrap();
        }
        assert_eq!(u.get(b"k").unwrap(), Some(b"new".to_vec()));
        assert_eq!(u.get_where(b"k", |v| v != b"new").unwrap(), Some(b"old".to_vec()));
        assert_eq!(u.get_where(b"k", |_| false).unwrap(), None);
    }

    #[test]
    fn to_merge_follows_sizes() {
        assert_eq!(Tables::to_merge(&[]), 1);
        assert_eq!(Tables::to_merge(&[100]), 1);
        assert_eq!(Tables::to_merge(&[10, 1000]), 1);
        assert_eq!(Tables::to_merge(&[10, 30, 1000]), 2);
        assert_eq!(Tables::to_merge(&[300, 1000]), 2);
        assert_eq!(Tables::to_merge(&[1, 1000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1 << 40]), 2);
    }

    #[test]
    fn a_reopened_set_has_its_tables_and_drops_strays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, t) = open(dir.path());
            add(&t, [("a".into(), "1".into()), ("b".into(), "2".into())]);
            add(&t, [("b".into(), "3".into())]);
            // A table written but never installed (a crash before the list).
            let mut stray = t.create(1).unwrap();
            stray.push(b"a", b"lost").unwrap();
            drop(stray);
            std::fs::write(dir.path().join("urls/99.tbl"), b"not listed").unwrap();
        }
        let (_db, t) = open(dir.path());
        assert_eq!(get(&t, "a").as_deref(), Some("1"));
        assert_eq!(get(&t, "b").as_deref(), Some("3"));
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path().join("urls")).unwrap().map(|f| f.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names.len(), t.stats().0, "{names:?}");
        // A reader sees the same.
        let mut r = t.reader();
        assert_eq!(r.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(r.get(b"b").unwrap(), Some(b"3".to_vec()));
        assert_eq!(r.get(b"c").unwrap(), None);
    }
}
