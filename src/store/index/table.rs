//! Sorted, immutable table files: where the index keeps its URL records
//! and blob locations, outside sled.
//!
//! sled stored these records at 3.4 times their size (2.6 times even when
//! written fresh and in order: its leaf layout), and keeps in memory a page
//! table entry for every page it has written, so a tree of millions of URLs
//! cost disk and memory that grew with the archive. URL records are written
//! in large sorted batches (a snapshot's entries, sorted by URL) and never
//! deleted: the case a log-structured merge of sorted files serves best.
//! Each commit writes one table; tables are merged so that few remain
//! ([`super::tables`]); a lookup reads at most one block of each. Blob
//! locations are the same case (one table per pack, its blobs sorted by
//! id) but are mostly asked for ids the archive lacks: their tables carry a
//! filter that answers most such lookups without reading a block. A run's
//! fetch keys, once too many for memory, go to scratch tables of the same
//! kind (`pipeline::seen`).
//!
//! A table file, all integers LEB128 varints unless said otherwise:
//! - blocks of about the set's block size ([`Shape`]), each: records
//!   (`shared`: bytes the key shares with the block's previous key, 0 for
//!   the first; the rest of the key, length-prefixed; the value,
//!   length-prefixed), then the CRC-32 of the block (u32 LE);
//! - the filter, in tables of keys that are hashes (blob ids), else
//!   nothing: a blocked Bloom filter of 64-byte blocks, about 10 bits per
//!   key (one key in ~100 it lacks passes), then its CRC-32 (u32 LE). A key
//!   sets 7 bits of one block: the block is bytes 0-7 of the key (u64 LE)
//!   modulo the block count, bit `j` is 9-bit field `j` of bytes 8-15;
//! - the block index: per block, its offset, its length and its first key
//!   (length-prefixed), then the CRC-32 of the index (u32 LE);
//! - the footer: index offset, index length, record count and filter
//!   length (u64 LE each), then the magic `KURATBL2`.
//!
//! Keys are strictly ascending. The block index and the filter are read
//! into memory at open: a few bytes more than one key per block, and 1.25
//! bytes per key of a filtered table (2.6 MB at two million blobs).

use crate::store::varint;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Target size of a block of URL records.
pub(super) const BLOCK: usize = 8 << 10;
const MAGIC: &[u8; 8] = b"KURATBL2";
const FOOTER: u64 = 40;
/// Filter bits per key: about 1% of absent keys pass.
const FILTER_BITS: u64 = 10;
/// Bytes of a filter block.
const FILTER_BLOCK: usize = 64;

/// How a set of tables is laid out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Target size of a block: a lookup decodes one (unless cached).
    pub block: usize,
    /// Keys are hashes (16 bytes or more): tables carry a filter.
    pub hashed: bool,
}

/// The filter block and bits of a key (hashed keys: see the module docs).
fn filter_bits(key: &[u8], blocks: usize) -> Option<(usize, [u16; 7])> {
    let h0 = u64::from_le_bytes(key.get(..8)?.try_into().ok()?);
    let h1 = u64::from_le_bytes(key.get(8..16)?.try_into().ok()?);
    let bits = std::array::from_fn(|j| ((h1 >> (j * 9)) & 511) as u16);
    Some(((h0 % blocks as u64) as usize, bits))
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("damaged table: {what}"))
}

/// Writes a table; keys must come in strictly ascending order.
pub(crate) struct TableWriter {
    out: BufWriter<File>,
    block_size: usize,
    /// Filter blocks, when keys are hashes.
    filter: Vec<u8>,
    block: Vec<u8>,
    first: Vec<u8>,
    last: Vec<u8>,
    index: Vec<u8>,
    offset: u64,
    records: u64,
}

impl TableWriter {
    /// Starts a table at `path` (a new file), of about `keys` records (the
    /// filter's size; more still land, with more false passes).
    pub(crate) fn create(path: &Path, shape: Shape, keys: u64) -> io::Result<TableWriter> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let filter_blocks = (keys.max(1) * FILTER_BITS).div_ceil(FILTER_BLOCK as u64 * 8);
        Ok(TableWriter {
            out: BufWriter::with_capacity(64 << 10, file),
            block_size: shape.block,
            filter: if shape.hashed { vec![0; filter_blocks as usize * FILTER_BLOCK] } else { Vec::new() },
            block: Vec::with_capacity(shape.block + 1024),
            first: Vec::new(),
            last: Vec::new(),
            index: Vec::new(),
            offset: 0,
            records: 0,
        })
    }

    /// The key written last, if any.
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        (self.records > 0).then_some(self.last.as_slice())
    }

    /// Appends a record; its key must be greater than the last one.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if self.last_key().is_some_and(|l| l >= key) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "table keys out of order"));
        }
        if !self.filter.is_empty() {
            let (b, bits) = filter_bits(key, self.filter.len() / FILTER_BLOCK)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a hashed key of under 16 bytes"))?;
            for bit in bits {
                self.filter[b * FILTER_BLOCK + usize::from(bit / 8)] |= 1 << (bit % 8);
            }
        }
        let shared = if self.block.is_empty() {
            self.first.clear();
            self.first.extend_from_slice(key);
            0
        } else {
            self.last.iter().zip(key).take_while(|(a, b)| a == b).count()
        };
        varint::put(&mut self.block, shared as u64);
        varint::put(&mut self.block, (key.len() - shared) as u64);
        self.block.extend_from_slice(&key[shared..]);
        varint::put(&mut self.block, value.len() as u64);
        self.block.extend_from_slice(value);
        self.last.clear();
        self.last.extend_from_slice(key);
        self.records += 1;
        if self.block.len() >= self.block_size {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let crc = crc32fast::hash(&self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.block)?;
        varint::put(&mut self.index, self.offset);
        varint::put(&mut self.index, self.block.len() as u64);
        varint::put(&mut self.index, self.first.len() as u64);
        self.index.extend_from_slice(&self.first);
        self.offset += self.block.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Writes the filter, index and footer and syncs the file; returns its
    /// size.
    pub(crate) fn finish(self) -> io::Result<u64> {
        self.end(true)
    }

    fn end(mut self, sync: bool) -> io::Result<u64> {
        self.end_block()?;
        let filter_len = if self.filter.is_empty() {
            0
        } else {
            let crc = crc32fast::hash(&self.filter);
            self.filter.extend_from_slice(&crc.to_le_bytes());
            self.out.write_all(&self.filter)?;
            self.filter.len() as u64
        };
        let index_at = self.offset + filter_len;
        let crc = crc32fast::hash(&self.index);
        self.index.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.index)?;
        let mut footer = Vec::with_capacity(FOOTER as usize);
        for v in [index_at, self.index.len() as u64, self.records, filter_len] {
            footer.extend_from_slice(&v.to_le_bytes());
        }
        footer.extend_from_slice(MAGIC);
        self.out.write_all(&footer)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        if sync {
            file.sync_all()?;
        }
        Ok(index_at + self.index.len() as u64 + FOOTER)
    }
}

/// An open table: its file and block index.
pub(crate) struct Table {
    path: PathBuf,
    file: File,
    size: u64,
    records: u64,
    /// The block index as stored (without its CRC).
    index: Vec<u8>,
    /// Where each block's entry starts in `index`.
    starts: Vec<u32>,
    /// Where each block's first key starts and ends in `index`: the
    /// binary search of a lookup compares keys without decoding entries
    /// (their varints were 8% of `kura stats` at two million blobs).
    firsts: Vec<[u32; 2]>,
    /// The filter's blocks (without its CRC), if the keys are hashes.
    filter: Vec<u8>,
}

/// One block's entry in the index (its first key is in `Table::firsts`).
struct BlockRef {
    offset: u64,
    len: u64,
}

/// Writes a table that lives only as long as the process (a command's
/// scratch) at `path`, through `write`, and returns it open. Its name is
/// removed as soon as the file exists, so not even a process killed while
/// writing it leaves it behind.
pub(crate) fn scratch(
    path: &Path,
    shape: Shape,
    keys: u64,
    write: impl FnOnce(&mut TableWriter) -> io::Result<()>,
) -> io::Result<Table> {
    let mut w = TableWriter::create(path, shape, keys)?;
    let read = File::open(path);
    let _ = std::fs::remove_file(path);
    let read = read?;
    write(&mut w)?;
    w.end(false)?;
    Table::from_file(path, read)
}

impl Table {
    /// Opens a table and reads its block index.
    pub(crate) fn open(path: &Path) -> io::Result<Table> {
        Table::from_file(path, File::open(path)?)
    }

    /// A table from its open file (`path` names it in messages).
    fn from_file(path: &Path, file: File) -> io::Result<Table> {
        let size = file.metadata()?.len();
        if size < FOOTER {
            return Err(damaged("shorter than its footer"));
        }
        let mut footer = [0u8; FOOTER as usize];
        file.read_exact_at(&mut footer, size - FOOTER)?;
        if &footer[32..] != MAGIC {
            return Err(damaged("no footer"));
        }
        let word = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (at, len, records, filter_len) = (word(0), word(1), word(2), word(3));
        if len < 4 || at.checked_add(len) != Some(size - FOOTER) || filter_len > at {
            return Err(damaged("index out of place"));
        }
        let mut filter = Vec::new();
        if filter_len > 0 {
            if filter_len <= 4 || (filter_len - 4) % FILTER_BLOCK as u64 != 0 {
                return Err(damaged("filter size"));
            }
            filter = vec![0u8; usize::try_from(filter_len).map_err(|_| damaged("filter size"))?];
            file.read_exact_at(&mut filter, at - filter_len)?;
            let crc = filter.split_off(filter.len() - 4);
            if crc32fast::hash(&filter).to_le_bytes() != crc.as_slice() {
                return Err(damaged("filter checksum"));
            }
        }
        let mut index = vec![0u8; usize::try_from(len).map_err(|_| damaged("index size"))?];
        file.read_exact_at(&mut index, at)?;
        let crc = index.split_off(index.len() - 4);
        if crc32fast::hash(&index).to_le_bytes() != crc.as_slice() {
            return Err(damaged("index checksum"));
        }
        let mut starts = Vec::new();
        let mut firsts = Vec::new();
        let mut r = varint::Reader::new(&index);
        let mut end = 0u64;
        while !r.is_empty() {
            starts.push(u32::try_from(index.len() - r.remaining()).map_err(|_| damaged("index size"))?);
            let (offset, len, key_len) = (r.u64(), r.u64(), r.u64());
            let (Some(offset), Some(len), Some(key_len)) = (offset, len, key_len) else {
                return Err(damaged("index entry"));
            };
            // Blocks follow one another and end where the index starts.
            let key_at = index.len() - r.remaining();
            if offset != end || len < 4 || r.bytes(usize::try_from(key_len).unwrap_or(usize::MAX)).is_none() {
                return Err(damaged("index entry"));
            }
            let key_end = u32::try_from(index.len() - r.remaining()).map_err(|_| damaged("index size"))?;
            // key_at < key_end.
            firsts.push([key_at as u32, key_end]);
            end = offset + len;
        }
        if end != at - filter_len {
            return Err(damaged("blocks and index disagree"));
        }
        Ok(Table { path: path.to_path_buf(), file, size, records, index, starts, firsts, filter })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// Records stored.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    fn block_ref(&self, n: usize) -> BlockRef {
        let mut r = varint::Reader::new(&self.index[self.starts[n] as usize..]);
        // Checked at open.
        let offset = r.u64().unwrap_or_default();
        let len = r.u64().unwrap_or_default();
        BlockRef { offset, len }
    }

    /// Reads block `n` and checks it.
    fn block(&self, n: usize) -> io::Result<Vec<u8>> {
        let b = self.block_ref(n);
        let mut buf = vec![0u8; b.len as usize];
        self.file.read_exact_at(&mut buf, b.offset)?;
        let crc = buf.split_off(buf.len() - 4);
        if crc32fast::hash(&buf).to_le_bytes() != crc.as_slice() {
            return Err(damaged("block checksum"));
        }
        Ok(buf)
    }

    /// The block that would hold `key`, if any.
    fn block_for(&self, key: &[u8]) -> Option<usize> {
        // The last block whose first key is <= key.
        let (mut lo, mut hi) = (0, self.starts.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let [from, to] = self.firsts[mid];
            if self.index[from as usize..to as usize] <= *key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// False when the filter says the table lacks `key` (true when it may
    /// hold it, or has no filter).
    fn may_hold(&self, key: &[u8]) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let Some((b, bits)) = filter_bits(key, self.filter.len() / FILTER_BLOCK) else { return false };
        let block = &self.filter[b * FILTER_BLOCK..(b + 1) * FILTER_BLOCK];
        bits.iter().all(|&bit| block[usize::from(bit / 8)] & (1 << (bit % 8)) != 0)
    }

    /// The value of `key`, reading one block (or the one in `cache`, which
    /// is kept for the next lookup: sorted lookups read each block once).
    pub(crate) fn get(&self, key: &[u8], cache: &mut Option<(usize, Block)>) -> io::Result<Option<Vec<u8>>> {
        let Some(n) = self.block_of(key) else { return Ok(None) };
        if cache.as_ref().is_none_or(|(c, _)| *c != n) {
            *cache = Some((n, self.read_block(n)?));
        }
        Ok(cache.as_ref().expect("filled above").1.get(key).map(<[u8]>::to_vec))
    }

    /// The block that may hold `key` (its number, for [`Table::read_block`]),
    /// or `None` when the table surely lacks it.
    pub(crate) fn block_of(&self, key: &[u8]) -> Option<usize> {
        if !self.may_hold(key) {
            return None;
        }
        self.block_for(key)
    }

    /// Block `n`, checked against its CRC and decoded (`n` from
    /// [`Table::block_of`]).
    pub(crate) fn read_block(&self, n: usize) -> io::Result<Block> {
        Block::decode(self.block(n)?)
    }

    /// Every record in key order, a block in memory at a time.
    pub(super) fn iter(&self) -> TableIter<'_> {
        TableIter { table: self, next_block: 0, block: Vec::new(), pos: 0, key: Vec::new() }
    }
}

/// A block's records decoded once, for lookups by binary search: a run
/// looks up many keys of one block (a page's images), and scanning the
/// prefix-compressed records from the start each time was most of a
/// lookup's cost.
#[derive(Clone)]
pub(crate) struct Block {
    data: Vec<u8>,
    /// The keys, whole, one after another.
    keys: Vec<u8>,
    /// Per record: where its key starts and ends in `keys`, where its
    /// value starts and ends in `data`.
    at: Vec<[u32; 4]>,
}

impl Block {
    fn decode(data: Vec<u8>) -> io::Result<Block> {
        if u32::try_from(data.len()).is_err() {
            return Err(damaged("block length"));
        }
        let mut keys = Vec::with_capacity(data.len());
        let mut at = Vec::new();
        let mut records = Records::new(&data);
        let mut last: Option<std::ops::Range<usize>> = None;
        while let Some(r) = records.next() {
            let (k, v) = r?;
            if last.as_ref().is_some_and(|l| keys[l.clone()] >= *k.as_slice()) {
                return Err(damaged("keys out of order"));
            }
            let start = keys.len();
            keys.extend_from_slice(k);
            last = Some(start..keys.len());
            // Below 4 GiB: the block's length is checked above.
            let value_start = v.as_ptr() as usize - data.as_ptr() as usize;
            at.push([start as u32, keys.len() as u32, value_start as u32, (value_start + v.len()) as u32]);
        }
        Ok(Block { data, keys, at })
    }

    /// The value of `key`, if the block holds it.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let found = self.at.binary_search_by(|r| self.keys[r[0] as usize..r[1] as usize].cmp(key)).ok()?;
        let [_, _, from, to] = self.at[found];
        Some(&self.data[from as usize..to as usize])
    }
}

/// Decodes a block's records; keys are rebuilt in one buffer.
struct Records<'a> {
    r: varint::Reader<'a>,
    key: Vec<u8>,
}

impl<'a> Records<'a> {
    fn new(block: &'a [u8]) -> Self {
        Records { r: varint::Reader::new(block), key: Vec::new() }
    }

    fn next(&mut self) -> Option<io::Result<(&Vec<u8>, &'a [u8])>> {
        if self.r.is_empty() {
            return None;
        }
        Some(read_record(&mut self.r, &mut self.key).map(|v| (&self.key, v)))
    }
}

/// Reads one record after `r`, rebuilding its key in `key` (which holds
/// the previous key of the block).
fn read_record<'a>(r: &mut varint::Reader<'a>, key: &mut Vec<u8>) -> io::Result<&'a [u8]> {
    let bad = || damaged("record");
    let shared = usize::try_from(r.u64().ok_or_else(bad)?).map_err(|_| bad())?;
    let rest = usize::try_from(r.u64().ok_or_else(bad)?).map_err(|_| bad())?;
    if shared > key.len() {
        return Err(bad());
    }
    key.truncate(shared);
    key.extend_from_slice(r.bytes(rest).ok_or_else(bad)?);
    let len = usize::try_from(r.u64().ok_or_else(bad)?).map_err(|_| bad())?;
    r.bytes(len).ok_or_else(bad)
}

/// A table's records in key order.
pub(super) struct TableIter<'t> {
    table: &'t Table,
    next_block: usize,
    block: Vec<u8>,
    pos: usize,
    key: Vec<u8>,
}

impl TableIter<'_> {
    /// The next record (its key and value), or `None` at the end.
    pub(super) fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
        while self.pos >= self.block.len() {
            if self.next_block >= self.table.starts.len() {
                return Ok(None);
            }
            self.block = self.table.block(self.next_block)?;
            self.next_block += 1;
            self.pos = 0;
            self.key.clear();
        }
        let mut r = varint::Reader::new(&self.block[self.pos..]);
        let before = r.remaining();
        let value = read_record(&mut r, &mut self.key)?;
        let used = before - r.remaining();
        let start = self.pos + used - value.len();
        self.pos += used;
        Ok(Some((&self.key, &self.block[start..start + value.len()])))
    }
}

/// Several tables' records in key order: each key once, with its values
/// in the order the tables were given (the index's merges keep the first
/// one a filter takes; `store::marks` unites them). A block of each table
/// is in memory. An error gives the position of the table that failed.
pub(crate) struct Merge<'t> {
    iters: Vec<TableIter<'t>>,
    /// The next record of each table, copied out; `None` once it is done.
    heads: Vec<Option<(Vec<u8>, Vec<u8>)>>,
}

impl<'t> Merge<'t> {
    pub(crate) fn new(tables: &[&'t Table]) -> Result<Self, (usize, io::Error)> {
        let mut iters: Vec<_> = tables.iter().map(|t| t.iter()).collect();
        let heads =
            iters.iter_mut().enumerate().map(|(i, it)| head(it).map_err(|e| (i, e))).collect::<Result<_, _>>()?;
        Ok(Merge { iters, heads })
    }

    /// The least key left and its values, or `None` at the end.
    pub(crate) fn next(&mut self) -> Result<Option<Merged>, (usize, io::Error)> {
        let Some(key) = self.heads.iter().flatten().map(|h| &h.0).min().cloned() else { return Ok(None) };
        let mut values = Vec::new();
        for (i, h) in self.heads.iter_mut().enumerate() {
            if h.as_ref().is_some_and(|h| h.0 == key) {
                let (_, value) = h.take().expect("checked above");
                values.push(value);
                *h = head(&mut self.iters[i]).map_err(|e| (i, e))?;
            }
        }
        Ok(Some((key, values)))
    }
}

/// A key of a [`Merge`] and its values, in the order of the tables.
pub(crate) type Merged = (Vec<u8>, Vec<Vec<u8>>);

fn head(it: &mut TableIter<'_>) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    Ok(it.next_record()?.map(|(k, v)| (k.to_vec(), v.to_vec())))
}

/// Fuzzing: a table written from records the input derives, with one
/// byte of it changed where the input says. It either fails to open, or
/// each lookup and the iteration answer the right record or an error:
/// never a wrong value, never a record lost without an error.
#[cfg(fuzzing)]
pub fn fuzz(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let (head, rest) = data.split_at(5);
    let at = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let (flip, flags) = (head[3], head[4]);
    let hashed = flags & 1 == 1;
    let shape = Shape { block: 64 + usize::from(flags >> 1) * 8, hashed };
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = rest
        .chunks(7)
        .map(|c| {
            let key = if hashed { crate::store::id::BlobId::of(c).as_bytes().to_vec() } else { c.to_vec() };
            (key, c.to_vec())
        })
        .collect();
    records.sort();
    records.dedup_by(|a, b| a.0 == b.0);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("1.tbl");
    let mut w = TableWriter::create(&path, shape, records.len() as u64).expect("created");
    for (k, v) in &records {
        w.push(k, v).expect("ascending keys");
    }
    let size = w.finish().expect("written");
    let mut bytes = std::fs::read(&path).expect("read back");
    assert_eq!(bytes.len() as u64, size);
    if let Some(b) = bytes.get_mut(at % size as usize) {
        *b ^= flip;
    }
    std::fs::write(&path, &bytes).expect("written back");
    let Ok(t) = Table::open(&path) else { return };
    for (k, v) in &records {
        if let Ok(got) = t.get(k, &mut None) {
            assert_eq!(got.as_ref(), Some(v), "a lookup answered wrong");
        }
    }
    let mut it = t.iter();
    let mut n = 0;
    while let Ok(Some((k, v))) = it.next_record() {
        assert!(n < records.len(), "iteration answered more records than written");
        assert_eq!((k, v), (records[n].0.as_slice(), records[n].1.as_slice()), "iteration answered wrong");
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URLS: Shape = Shape { block: BLOCK, hashed: false };

    fn write(path: &Path, records: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        let mut w = TableWriter::create(path, URLS, records.len() as u64).unwrap();
        for (k, v) in records {
            w.push(k, v).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut r: Vec<_> = (0..n)
            .map(|i| {
                let key = format!("https://cdn{}.example/img/{i:07}.png", i % 3).into_bytes();
                (key, vec![(i % 251) as u8; i % 97])
            })
            .collect();
        r.sort();
        r
    }

    #[test]
    fn every_record_is_found_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.tbl");
        let records = sample(20_000);
        let size = write(&path, &records);
        let t = Table::open(&path).unwrap();
        assert_eq!((t.size(), t.records()), (size, 20_000));
        assert!(t.starts.len() > 20, "{} blocks", t.starts.len());
        // Shared prefixes are stored once: well under the keys' size.
        let raw: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!((size as usize) < raw * 3 / 4, "{size} bytes for {raw}");
        let mut cache = None;
        for (k, v) in &records {
            assert_eq!(t.get(k, &mut cache).unwrap().as_ref(), Some(v));
            assert_eq!(t.get(k, &mut None).unwrap().as_ref(), Some(v));
        }
        for missing in [&b""[..], b"a", b"https://cdn0.example/img/0000000.png0", b"zzz"] {
            assert_eq!(t.get(missing, &mut cache).unwrap(), None);
        }
        let mut it = t.iter();
        let mut n = 0;
        while let Some((k, v)) = it.next_record().unwrap() {
            assert_eq!((k, v), (records[n].0.as_slice(), records[n].1.as_slice()));
            n += 1;
        }
        assert_eq!(n, records.len());
    }

    #[test]
    fn a_filter_answers_most_absent_hashes_and_never_hides_a_present_one() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.tbl");
        let hash = |i: u32| sha2::Sha256::digest(i.to_le_bytes()).to_vec();
        let mut records: Vec<_> = (0..5_000).map(|i| (hash(i), i.to_le_bytes().to_vec())).collect();
        records.sort();
        let shape = Shape { block: 2 << 10, hashed: true };
        let mut w = TableWriter::create(&path, shape, records.len() as u64).unwrap();
        for (k, v) in &records {
            w.push(k, v).unwrap();
        }
        assert!(w.push(&[0xff; 8], b"").is_err(), "a short key in a hashed table");
        w.finish().unwrap();
        let t = Table::open(&path).unwrap();
        assert_eq!(t.filter.len(), (5_000 * 10usize).div_ceil(512) * 64);
        for (k, v) in &records {
            assert!(t.may_hold(k));
            assert_eq!(t.get(k, &mut None).unwrap().as_ref(), Some(v));
        }
        let passed = (5_000..25_000).filter(|&i| t.may_hold(&hash(i))).count();
        assert!(passed < 20_000 / 40, "{passed} of 20,000 absent keys passed");
        for i in 5_000..5_100 {
            assert_eq!(t.get(&hash(i), &mut None).unwrap(), None);
        }
        // A damaged filter is refused at open.
        let mut bad = std::fs::read(&path).unwrap();
        let footer = bad.len() - FOOTER as usize;
        // The filter ends where the index starts.
        let index_at = u64::from_le_bytes(bad[footer..footer + 8].try_into().unwrap()) as usize;
        bad[index_at - 10] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = Table::open(&path).err().expect("refused");
        assert!(err.to_string().contains("filter checksum"), "{err}");
    }

    #[test]
    fn a_scratch_table_has_no_name_even_while_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch.tbl");
        let t = scratch(&path, Shape { block: 256, hashed: false }, 100, |w| {
            assert!(!path.exists(), "named while written");
            (0..100u32).try_for_each(|i| w.push(&i.to_be_bytes(), b"v"))
        })
        .unwrap();
        assert_eq!(t.get(&42u32.to_be_bytes(), &mut None).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(t.records(), 100);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn keys_must_ascend() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(&dir.path().join("1.tbl"), URLS, 0).unwrap();
        w.push(b"b", b"1").unwrap();
        assert!(w.push(b"b", b"2").is_err());
        assert!(w.push(b"a", b"2").is_err());
        w.push(b"c", b"").unwrap();
        assert_eq!(w.last_key(), Some(&b"c"[..]));
    }

    #[test]
    fn an_empty_table_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.tbl");
        write(&path, &[]);
        let t = Table::open(&path).unwrap();
        assert_eq!(t.get(b"a", &mut None).unwrap(), None);
        assert!(t.iter().next_record().unwrap().is_none());
    }

    #[test]
    fn damage_is_detected_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.tbl");
        let records = sample(3_000);
        let size = write(&path, &records);
        let good = std::fs::read(&path).unwrap();
        // A flipped byte in a block fails the lookups that read it.
        let mut bad = good.clone();
        bad[100] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let t = Table::open(&path).unwrap();
        let err = t.get(&records[0].0, &mut None).unwrap_err();
        assert!(err.to_string().contains("block checksum"), "{err}");
        assert!(t.get(&records[2_999].0, &mut None).is_ok(), "other blocks read fine");
        // In the index, or cut short: the table does not open.
        for (at, cut) in [(size as usize - FOOTER as usize - 10, false), (size as usize - 5, true)] {
            let mut bad = good.clone();
            if cut {
                bad.truncate(at);
            } else {
                bad[at] ^= 0x40;
            }
            std::fs::write(&path, &bad).unwrap();
            let err = Table::open(&path).err().expect("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }
}
