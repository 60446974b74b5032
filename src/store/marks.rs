//! Flags per blob for a command that walks every snapshot and every pack
//! (prune: which blobs are live, which are documents or JPEGs, which it
//! has already kept), without holding every blob id in memory.
//!
//! An archive of two million blobs would need some 70 MB of ids alone, and
//! a `HashSet` per flag twice that; memory here holds at most [`IN_MEMORY`]
//! marks (about 18 MB) and, for the rest, what an index table keeps in
//! memory (its filter and block index, about 1.5 bytes a blob). Marks only
//! add flags, so a blob's flags are the union of its marks wherever they
//! are: in memory, or in the scratch tables they were written out to
//! (sorted, with a filter: `store::index::table`, unnamed as soon as it exists). When
//! more than [`MAX_TABLES`] pile up they are merged into one, so a lookup
//! asks a few filters and reads at most a few blocks.
//!
//! Keys are whole blob ids: a flag read for the wrong blob could make
//! prune skip a blob it must keep.

use crate::store::id::BlobId;
use crate::store::index::table::{self, Merge, Shape, Table};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// Marks held in memory before they are written out.
const IN_MEMORY: usize = 1 << 18;

/// Tables kept before they are merged into one.
const MAX_TABLES: usize = 8;

/// Blob ids are hashes: the tables carry a filter.
const WRITTEN: Shape = Shape { block: 1 << 10, hashed: true };

/// Flags per blob, mostly on disk.
pub(crate) struct Marks {
    memory: HashMap<BlobId, u8>,
    limit: usize,
    /// Where tables are written (unnamed as soon as they exist).
    dir: PathBuf,
    /// Marks written out; each blob at most once per table.
    tables: Vec<Table>,
    /// Tables written so far (names scratch files apart).
    written: usize,
}

impl Marks {
    /// Marks whose scratch tables go in `dir`.
    pub(crate) fn new(dir: &Path) -> Marks {
        Marks::with_limit(dir, IN_MEMORY)
    }

    /// Marks that hold at most `limit` in memory.
    pub(crate) fn with_limit(dir: &Path, limit: usize) -> Marks {
        Marks { memory: HashMap::default(), limit, dir: dir.to_path_buf(), tables: Vec::new(), written: 0 }
    }

    /// Adds `flags` to those of `id`.
    pub(crate) fn mark(&mut self, id: &BlobId, flags: u8) -> io::Result<()> {
        *self.memory.entry(*id).or_default() |= flags;
        if self.memory.len() >= self.limit {
            self.write_out()?;
        }
        Ok(())
    }

    /// The flags of `id`: every flag any mark gave it (0: none).
    pub(crate) fn get(&self, id: &BlobId) -> io::Result<u8> {
        let mut flags = self.memory.get(id).copied().unwrap_or(0);
        for t in &self.tables {
            if let Some(v) = t.get(id.as_bytes(), &mut None)? {
                flags |= v.first().copied().unwrap_or(0);
            }
        }
        Ok(flags)
    }

    /// Writes the marks in memory out as one table, then merges the tables
    /// if too many have piled up.
    fn write_out(&mut self) -> io::Result<()> {
        let mut marks: Vec<(BlobId, u8)> = self.memory.drain().collect();
        marks.sort_unstable_by_key(|(id, _)| *id.as_bytes());
        let table =
            self.write_table(marks.len() as u64, &mut marks.into_iter().map(|(id, f)| Ok((*id.as_bytes(), f))))?;
        self.tables.push(table);
        if self.tables.len() > MAX_TABLES {
            self.compact()?;
        }
        Ok(())
    }

    /// Merges every table into one, uniting the flags of a blob marked in
    /// several.
    fn compact(&mut self) -> io::Result<()> {
        let keys: u64 = self.tables.iter().map(|t| t.records()).sum();
        let tables = std::mem::take(&mut self.tables);
        let merged = {
            let refs: Vec<&Table> = tables.iter().collect();
            let mut merge = Merge::new(&refs).map_err(|(_, e)| e)?;
            let mut united = std::iter::from_fn(|| match merge.next() {
                Ok(None) => None,
                Ok(Some((key, values))) => Some(match <[u8; 32]>::try_from(key.as_slice()) {
                    Ok(id) => Ok((id, values.iter().fold(0, |a, v| a | v.first().copied().unwrap_or(0)))),
                    Err(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "damaged marks table")),
                }),
                Err((_, e)) => Some(Err(e)),
            });
            self.write_table(keys, &mut united)?
        };
        self.tables.push(merged);
        Ok(())
    }

    /// Writes marks sorted by id as a scratch table (unnamed as soon as it exists).
    fn write_table(
        &mut self,
        keys: u64,
        marks: &mut dyn Iterator<Item = io::Result<([u8; 32], u8)>>,
    ) -> io::Result<Table> {
        let path = self.dir.join(format!(".kura-marks-{}-{}.tbl", std::process::id(), self.written));
        self.written += 1;
        table::scratch(&path, WRITTEN, keys, |w| {
            for m in marks {
                let (id, flags) = m?;
                w.push(&id, &[flags])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> BlobId {
        BlobId::of(&n.to_le_bytes())
    }

    /// Marks 0..n with flag 1, every third also with 2 (later, so often
    /// in another table), and checks every flag and a few absent ids.
    fn check(marks: &mut Marks, n: u32) {
        for i in 0..n {
            marks.mark(&id(i), 1).unwrap();
        }
        for i in (0..n).step_by(3) {
            marks.mark(&id(i), 2).unwrap();
        }
        for i in 0..n {
            let want = if i % 3 == 0 { 3 } else { 1 };
            assert_eq!(marks.get(&id(i)).unwrap(), want, "blob {i}");
        }
        for i in n..n + 1000 {
            assert_eq!(marks.get(&id(i)).unwrap(), 0, "absent blob {i}");
        }
    }

    #[test]
    fn flags_of_marks_in_memory_are_united() {
        let dir = tempfile::tempdir().unwrap();
        let mut marks = Marks::new(dir.path());
        check(&mut marks, 10_000);
        assert!(marks.tables.is_empty());
    }

    #[test]
    fn flags_written_out_and_merged_are_united_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut marks = Marks::with_limit(dir.path(), 1_000);
        check(&mut marks, 20_000);
        // 26,667 marks at 1,000 a table: merged at least twice.
        assert!(marks.written > 2 * (MAX_TABLES + 1), "{} tables written", marks.written);
        assert!(marks.tables.len() <= MAX_TABLES, "{} tables", marks.tables.len());
        assert!(marks.memory.len() < 1_000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut marks = Marks::with_limit(&dir.path().join("missing"), 10);
        let r: io::Result<()> = (0..10).try_for_each(|i| marks.mark(&id(i), 1));
        assert!(r.is_err());
    }
}
