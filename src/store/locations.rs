//! Where every blob is now, for a reader that meets many stale hints (a
//! restore, an export or `kura serve` reading an older snapshot after a
//! prune moved its blobs), without holding every blob's location in
//! memory: the packs' entries, sorted on disk by blob id
//! (`store::spill`), written as one scratch index table with a filter
//! (`store::index::table`, unnamed as soon as it exists). Memory holds the table's
//! filter and block index, about 1.5 bytes a blob; a lookup reads one
//! block. [`PackIndex`](crate::store::archive::PackIndex) held some 150
//! bytes a blob.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::{BlobId, PackId};
use crate::store::index::table::{self, Shape, Table};
use crate::store::pack::{self, PackEntry};
use crate::store::spill::Spill;
use std::io;

/// Blob ids are hashes: the table carries a filter.
const SHAPE: Shape = Shape { block: 4 << 10, hashed: true };

/// Bytes of entries sorted in memory at a time.
const SORT_BUFFER: usize = 16 << 20;

/// Every readable pack's blobs, by id.
pub struct Locations {
    table: Table,
}

impl std::fmt::Debug for Locations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locations").field("blobs", &self.table.records()).finish()
    }
}

impl Locations {
    /// Reads every pack's entries (as [`Archive::for_each_pack`] finds
    /// them) into a table in the archive's scratch directory. A blob in
    /// two packs is found in the first one listed.
    pub fn build(archive: &Archive) -> Result<Locations, ArchiveError> {
        let dir = archive.scratch_dir();
        let io = |source| ArchiveError::Io { path: dir.clone(), source };
        let mut sort = Spill::new(&dir, SORT_BUFFER);
        // The spill keeps records of equal keys in no set order: the
        // listing position makes keys unique and the first pack win.
        let mut n: u64 = 0;
        archive.for_each_pack(&mut |r| {
            for e in &r.entries {
                let mut key = e.id.as_bytes().to_vec();
                key.extend_from_slice(&n.to_be_bytes());
                n += 1;
                sort.push(&key, &pack::encode_location(&r.pack, e)).map_err(io)?;
            }
            Ok(())
        })?;
        let keys = sort.len();
        let path = dir.join(format!(".kura-locations-{}-{}.tbl", std::process::id(), unique()));
        let sorted = sort.finish().map_err(io)?;
        let table = table::scratch(&path, SHAPE, keys, |w| {
            let mut last: Option<Vec<u8>> = None;
            for record in sorted {
                let (key, value) = record?;
                let id = &key[..32];
                if last.as_deref() != Some(id) {
                    w.push(id, &value)?;
                    last = Some(id.to_vec());
                }
            }
            Ok(())
        });
        Ok(Locations { table: table.map_err(io)? })
    }

    /// Where blob `id` is, if any pack holds it.
    pub fn get(&self, id: &BlobId) -> Result<Option<(PackId, PackEntry)>, ArchiveError> {
        let io = |source| ArchiveError::Io { path: self.table.path().to_path_buf(), source };
        let Some(v) = self.table.get(id.as_bytes(), &mut None).map_err(io)? else { return Ok(None) };
        let bad = || io(io::Error::new(io::ErrorKind::InvalidData, "damaged blob locations table"));
        pack::decode_location(*id, &v).map(Some).ok_or_else(bad)
    }
}

/// Tells apart the scratch files of tables built at once in one process.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob::{Codec, EncodedBlob};
    use crate::store::writer::{WriteOptions, Writer};

    #[test]
    fn every_blob_is_found_where_the_pack_index_says_and_absent_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let opts = WriteOptions { pack_target: 4 << 10, ..WriteOptions::default() };
        let mut w = Writer::open(&archive, opts).unwrap();
        let ids: Vec<BlobId> =
            (0..2000u32).map(|i| w.add(format!("blob {i} {}", "y".repeat(40)).as_bytes()).unwrap().id).collect();
        // A second copy of some blobs, in packs listed later.
        w.flush_pack().unwrap();
        w.write_index_file().unwrap();
        for i in (0..2000u32).step_by(9) {
            let data = format!("blob {i} {}", "y".repeat(40)).into_bytes();
            w.copy(EncodedBlob { id: BlobId::of(&data), raw_len: data.len() as u64, codec: Codec::Raw, data }).unwrap();
        }
        w.flush_pack().unwrap();
        drop(w);
        let index = archive.pack_index().unwrap();
        let locations = Locations::build(&archive).unwrap();
        for id in &ids {
            let (pack, e) = locations.get(id).unwrap().expect("found");
            let data = archive.read_at(&pack, &e).unwrap();
            assert_eq!(data, archive.read_blob(&index, id).unwrap());
            // Either copy is valid; the table's is one the packs hold.
            assert!(index.packs.iter().any(|(p, _, es)| *p == pack && es.contains(&e)), "{id}");
        }
        assert_eq!(locations.get(&BlobId::of(b"never stored")).unwrap(), None);
        assert_eq!(locations.table.records(), ids.len() as u64, "each blob once");
        // Nothing left behind in the scratch directory.
        assert!(
            !std::fs::read_dir(archive.scratch_dir())
                .unwrap()
                .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with(".kura-locations") })
        );
    }
}
