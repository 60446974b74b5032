//! An external sort: records (key, value) go in in any order and come back
//! out sorted by key, with memory bounded by a buffer, not by the count.
//!
//! A run hands its manifest entries here as they complete; a manifest of a
//! million entries is sorted by URL on disk, in runs of `buffer` bytes
//! (each sorted in memory, written as one zstd stream to an unnamed
//! temporary file) merged at the end with the last buffer, sorted in
//! memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Runs merged at once: each open run holds a decoder (its window, 64 KiB,
/// its buffers and context) and two 32 KiB buffers, so runs are merged
/// in levels, as an LSM tree compacts: 32 runs of one level become one run
/// of the next, and every record is rewritten once a level. A run of an
/// 8 MiB buffer holds some 25,000 entries of `benches/scale.sh` (an
/// image's record, its blob's hint included, is about 330 bytes), so at two
/// million entries 32 rewrites 73% of the records once, 16 rewrote 91%.
const FAN_IN: usize = 32;

/// zstd window of the runs, as log2 bytes: small, so that many runs can be
/// read at once (64 KiB, not 128: a run of two million entries peaked 7 MB
/// lower, its records as small and as fast).
const WINDOW_LOG: u32 = 16;

/// zstd level of the runs: one of its fast levels. Runs are read once
/// and deleted, so speed matters more than size: at level 1, writing and
/// reading the runs of an unchanged 10,000-page re-run took about a tenth
/// of its CPU.
const LEVEL: i32 = -3;

/// A key longer than this is an error (URLs are capped long before).
const MAX_KEY: usize = 1 << 20;

/// A value longer than this is an error.
const MAX_VALUE: usize = 64 << 20;

/// Records waiting to be sorted.
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    buffer: usize,
    /// The keys and values of the records not yet in a run, one after
    /// another: one allocation for all of them, where a key and a value of
    /// their own cost two allocations a record (and more memory than the
    /// bytes counted, so runs were shorter than the buffer meant).
    arena: Vec<u8>,
    /// Where each of those records is in `arena`.
    records: Vec<Slot>,
    /// Sorted runs with their level, oldest first.
    runs: Vec<(u32, RunFile)>,
    count: u64,
    /// Full buffers are sorted and written by a thread of their own.
    background: bool,
    /// When not 0: of records whose keys begin with the same this many
    /// bytes, runs keep only the first (see [`Spill::first_of_each`]).
    first_of: usize,
    /// That thread, writing the last full buffer: the run's file, and the
    /// buffer's memory back for reuse.
    writing: Option<std::thread::JoinHandle<io::Result<Written>>>,
}

/// The runs, a buffer's run added in the background, and the memory of
/// that buffer.
type Written = (Vec<(u32, RunFile)>, Vec<u8>, Vec<Slot>);

/// A sorted run: written, or being merged from a level's runs by a thread
/// of its own (a spill writing in the background: a merge of a level took
/// long enough for the next buffers to fill, and for the run to wait).
#[derive(Debug)]
enum RunFile {
    Ready(File),
    Merging(std::thread::JoinHandle<io::Result<File>>),
}

impl RunFile {
    fn file(self) -> io::Result<File> {
        match self {
            RunFile::Ready(f) => Ok(f),
            RunFile::Merging(m) => m.join().map_err(|_| io::Error::other("the thread merging sorted runs panicked"))?,
        }
    }
}

/// A record in [`Spill::arena`]: its key, then its value, from `at`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: usize,
    key: u32,
    value: u32,
}

impl Slot {
    fn key<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at..self.at + self.key as usize]
    }

    fn value<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        let start = self.at + self.key as usize;
        &arena[start..start + self.value as usize]
    }
}

impl Spill {
    /// A spill whose runs are temporary files in `dir` (never a tmpfs
    /// unless `dir` is one: memory is what it saves), each sorting about
    /// `buffer` bytes of records in memory.
    pub fn new(dir: &Path, buffer: usize) -> Spill {
        Spill {
            dir: dir.to_path_buf(),
            buffer: buffer.max(1),
            arena: Vec::new(),
            records: Vec::new(),
            runs: Vec::new(),
            count: 0,
            background: false,
            first_of: 0,
            writing: None,
        }
    }

    /// Runs keep, of records whose keys begin with the same `prefix`
    /// bytes, only the first in key order: for a caller that wants the
    /// first of each (its key's rest an order), the disk its runs take
    /// follows the distinct prefixes, not the records pushed. What
    /// [`Spill::finish`] gives still has repeats across runs.
    pub fn first_of_each(self, prefix: usize) -> Spill {
        Spill { first_of: prefix, ..self }
    }

    /// A spill that sorts and writes a full buffer on a thread of its own
    /// while the next fills, so whoever pushes records waits only when a
    /// second buffer fills first (memory: two buffers). A run's records
    /// arrive from many tasks through one channel; sorting and compressing
    /// 8 MiB in line stopped the intake long enough for them all to wait.
    pub fn new_background(dir: &Path, buffer: usize) -> Spill {
        Spill { background: true, ..Spill::new(dir, buffer) }
    }

    /// Adds a record. Records with equal keys come out in the order they
    /// went in only within one run, so callers make keys unique.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "spill record too large"));
        }
        let at = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        self.records.push(Slot { at, key: key.len() as u32, value: value.len() as u32 });
        self.count += 1;
        if self.arena.len() + self.records.len() * std::mem::size_of::<Slot>() >= self.buffer {
            self.write_run()?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// The records in memory, sorted by key (and by arrival, for equal keys).
    fn sort(&mut self) {
        sort(&self.arena, &mut self.records);
    }

    fn write_run(&mut self) -> io::Result<()> {
        if self.background {
            let (arena, records) = self.written()?.unwrap_or_default();
            let full = (std::mem::replace(&mut self.arena, arena), std::mem::replace(&mut self.records, records));
            // The runs go with it: merging a level is its work too.
            let (dir, mut runs) = (self.dir.clone(), std::mem::take(&mut self.runs));
            let first_of = self.first_of;
            let spawned = std::thread::Builder::new().name("kura-spill-run".into()).spawn(move || {
                let (arena, mut records) = full;
                sort(&arena, &mut records);
                let sorted = records.iter().map(|s| Ok((s.key(&arena), s.value(&arena))));
                let run = write_run(&dir, sorted, first_of)?;
                add_run(&dir, &mut runs, run, true, first_of)?;
                Ok((runs, arena, records))
            })?;
            self.writing = Some(spawned);
            return Ok(());
        }
        self.sort();
        let arena = &self.arena;
        let run = write_run(&self.dir, self.records.iter().map(|s| Ok((s.key(arena), s.value(arena)))), self.first_of)?;
        self.arena = emptied(std::mem::take(&mut self.arena), self.buffer);
        self.records.clear();
        add_run(&self.dir, &mut self.runs, run, false, self.first_of)
    }

    /// Waits for the buffer being written, adds its run, and returns its
    /// memory, emptied.
    fn written(&mut self) -> io::Result<Option<(Vec<u8>, Vec<Slot>)>> {
        let Some(writing) = self.writing.take() else { return Ok(None) };
        let (runs, arena, mut records) =
            writing.join().map_err(|_| io::Error::other("the thread writing a sorted run panicked"))??;
        records.clear();
        self.runs = runs;
        Ok(Some((emptied(arena, self.buffer), records)))
    }

    /// Every record, sorted by key.
    pub fn finish(mut self) -> io::Result<Sorted> {
        self.written()?;
        self.sort();
        if self.runs.is_empty() {
            // Everything fits in memory: no file at all.
            return Ok(Sorted(Source::Memory(Run::Memory { arena: self.arena, records: self.records.into_iter() })));
        }
        // The last buffer is merged from memory, not written and read back.
        let last = (!self.records.is_empty()).then_some((self.arena, self.records));
        // At most FAN_IN - 1 runs of each level are left.
        let runs = self.runs.into_iter().map(|(_, f)| f.file()).collect::<io::Result<Vec<_>>>()?;
        Ok(Sorted(Source::Merge(Merge::with_memory(runs, last)?)))
    }
}

/// Adds a new run of level 0 to `runs` (with their levels, oldest first),
/// merging a level into one run of the next once it has [`FAN_IN`]; in
/// the `background`, by a thread of its own.
fn add_run(dir: &Path, runs: &mut Vec<(u32, RunFile)>, run: File, background: bool, first_of: usize) -> io::Result<()> {
    runs.push((0, RunFile::Ready(run)));
    // Runs of one level are contiguous and their levels fall from the
    // oldest to the newest, so the last FAN_IN runs are of one level
    // whenever the last run's level appears FAN_IN times.
    while runs.len() >= FAN_IN {
        let level = runs[runs.len() - 1].0;
        let start = runs.len() - FAN_IN;
        if runs[start].0 != level {
            break;
        }
        // Equal keys keep their order: older runs come first, and the
        // merged run takes their place.
        let files = runs.drain(start..).map(|(_, f)| f.file()).collect::<io::Result<Vec<_>>>()?;
        let merged = if background {
            let dir = dir.to_path_buf();
            let spawned = std::thread::Builder::new()
                .name("kura-spill-merge".into())
                .spawn(move || write_run(&dir, Merge::new(files)?, first_of))?;
            RunFile::Merging(spawned)
        } else {
            RunFile::Ready(write_run(dir, Merge::new(files)?, first_of)?)
        };
        runs.push((level + 1, merged));
    }
    Ok(())
}

/// A buffer's memory for the next run: cleared, not freed, so the next
/// run fills the same memory; unless a huge record made it grow past the
/// buffer, as it may never again.
fn emptied(mut arena: Vec<u8>, buffer: usize) -> Vec<u8> {
    if arena.capacity() > buffer.saturating_mul(2) {
        return Vec::new();
    }
    arena.clear();
    arena
}

/// Records sorted by key, and by arrival for equal keys.
fn sort(arena: &[u8], records: &mut [Slot]) {
    records.sort_unstable_by(|a, b| a.key(arena).cmp(b.key(arena)).then(a.at.cmp(&b.at)));
}

/// Writes sorted `records` as a run; with `first_of` not 0, only the first
/// of those whose keys share their first `first_of` bytes.
fn write_run<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    dir: &Path,
    records: impl Iterator<Item = io::Result<(K, V)>>,
    first_of: usize,
) -> io::Result<File> {
    let mut file = tempfile::tempfile_in(dir)?;
    {
        let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(&mut file), LEVEL)?;
        enc.window_log(WINDOW_LOG)?;
        // The encoder takes whole buffers, not a record's four small
        // writes: a call into zstd a write cost more than compressing.
        let mut enc = BufWriter::with_capacity(BUFFER, enc);
        let mut last: Option<Vec<u8>> = None;
        for r in records {
            let (k, v) = r?;
            let (k, v) = (k.as_ref(), v.as_ref());
            if first_of > 0 {
                let prefix = &k[..k.len().min(first_of)];
                if last.as_deref() == Some(prefix) {
                    continue;
                }
                last = Some(prefix.to_vec());
            }
            enc.write_all(&(k.len() as u32).to_le_bytes())?;
            enc.write_all(k)?;
            enc.write_all(&(v.len() as u32).to_le_bytes())?;
            enc.write_all(v)?;
        }
        enc.into_inner().map_err(io::IntoInnerError::into_error)?.finish()?.flush()?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// A run being read: the decoder is asked for whole buffers, not for a
/// record's four small reads.
type RunReader = BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>;

/// Bytes between a run and zstd, each way.
const BUFFER: usize = 32 << 10;

fn read_record(r: &mut RunReader) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let klen = u32::from_le_bytes(len) as usize;
    if klen > MAX_KEY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "damaged spill run"));
    }
    let key = read_vec(r, klen)?;
    r.read_exact(&mut len)?;
    let vlen = u32::from_le_bytes(len) as usize;
    if vlen > MAX_VALUE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "damaged spill run"));
    }
    let value = read_vec(r, vlen)?;
    Ok(Some((key, value)))
}

/// The next `len` bytes, copied once from the buffer when it holds them
/// all (most records): not zeroed first, then copied.
fn read_vec(r: &mut RunReader, len: usize) -> io::Result<Vec<u8>> {
    let buf = r.fill_buf()?;
    if buf.len() >= len {
        let v = buf[..len].to_vec();
        r.consume(len);
        return Ok(v);
    }
    let mut v = vec![0; len];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// A k-way merge of sorted runs; equal keys come out in run order.
pub struct Merge {
    readers: Vec<Run>,
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    values: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge").field("runs", &self.readers.len()).finish()
    }
}

/// A run being merged: on disk, or the last buffer, sorted in memory.
enum Run {
    Disk(RunReader),
    Memory { arena: Vec<u8>, records: std::vec::IntoIter<Slot> },
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Run::Disk(_) => "Run::Disk",
            Run::Memory { .. } => "Run::Memory",
        })
    }
}

impl Run {
    fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self {
            Run::Disk(r) => read_record(r),
            Run::Memory { arena, records } => {
                Ok(records.next().map(|s| (s.key(arena).to_vec(), s.value(arena).to_vec())))
            }
        }
    }
}

impl Merge {
    fn new(runs: Vec<File>) -> io::Result<Merge> {
        Merge::with_memory(runs, None)
    }

    /// Merges the runs and, newest of all, a sorted buffer.
    fn with_memory(runs: Vec<File>, memory: Option<(Vec<u8>, Vec<Slot>)>) -> io::Result<Merge> {
        let mut m = Merge { readers: Vec::new(), heap: BinaryHeap::new(), values: Vec::new() };
        let mut all = Vec::with_capacity(runs.len() + 1);
        for f in runs {
            let mut d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUFFER, f))?;
            d.window_log_max(WINDOW_LOG)?;
            all.push(Run::Disk(BufReader::with_capacity(BUFFER, d)));
        }
        all.extend(memory.map(|(arena, records)| Run::Memory { arena, records: records.into_iter() }));
        for (i, mut r) in all.into_iter().enumerate() {
            let first = r.next_record()?;
            m.readers.push(r);
            m.values.push(Vec::new());
            if let Some((k, v)) = first {
                m.values[i] = v;
                m.heap.push(Reverse((k, i)));
            }
        }
        Ok(m)
    }

    fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(Reverse((key, i))) = self.heap.pop() else { return Ok(None) };
        let value = std::mem::take(&mut self.values[i]);
        if let Some((k, v)) = self.readers[i].next_record()? {
            self.values[i] = v;
            self.heap.push(Reverse((k, i)));
        }
        Ok(Some((key, value)))
    }
}

impl Iterator for Merge {
    type Item = io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// The records of a [`Spill`], sorted by key.
#[derive(Debug)]
pub struct Sorted(Source);

#[derive(Debug)]
enum Source {
    /// They never left memory (a [`Run::Memory`]).
    Memory(Run),
    /// Merged from runs on disk.
    Merge(Merge),
}

impl Iterator for Sorted {
    type Item = io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Source::Memory(run) => run.next_record().transpose(),
            Source::Merge(m) => m.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The records sorted, by a spill writing its runs in line and by one
    /// writing them on a thread of their own (the same either way).
    fn sorted(records: &[(Vec<u8>, Vec<u8>)], buffer: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let mut outs = Vec::new();
        for mut s in [Spill::new(dir.path(), buffer), Spill::new_background(dir.path(), buffer)] {
            for (k, v) in records {
                s.push(k, v).unwrap();
            }
            assert_eq!(s.len(), records.len() as u64);
            outs.push(s.finish().unwrap().map(Result::unwrap).collect::<Vec<_>>());
            // Unnamed files: nothing is left in the directory, even meanwhile.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        let background = outs.pop().unwrap();
        assert!(outs[0] == background, "a spill writing in the background sorted otherwise");
        background
    }

    proptest! {
        #[test]
        fn comes_out_sorted_whatever_the_buffer(
            keys in proptest::collection::hash_set(proptest::collection::vec(any::<u8>(), 0..12), 0..300),
            buffer in 1usize..4000,
        ) {
            let records: Vec<_> = keys.into_iter().map(|k| { let v = [k.as_slice(), b"!"].concat(); (k, v) }).collect();
            let mut want = records.clone();
            want.sort();
            prop_assert_eq!(sorted(&records, buffer), want);
        }
    }

    #[test]
    fn many_runs_are_merged_in_levels() {
        // One record per run: runs are merged FAN_IN at a time, in levels.
        let n = (FAN_IN * FAN_IN + 2 * FAN_IN + 3) as u32;
        let records: Vec<_> = (0..n).rev().map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 3])).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::new(dir.path(), 1);
        for (k, v) in &records {
            s.push(k, v).unwrap();
            assert!(s.runs.len() < 3 * FAN_IN, "{} runs open", s.runs.len());
        }
        // One run of level 2, two of level 1, three of level 0.
        let levels: Vec<u32> = s.runs.iter().map(|(l, _)| *l).collect();
        assert_eq!(levels, [2, 1, 1, 0, 0, 0]);
        let out = sorted(&records, 1);
        assert_eq!(out.len(), n as usize);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(out[7], (7u32.to_be_bytes().to_vec(), vec![7; 3]));
    }

    #[test]
    fn a_huge_record_does_not_keep_its_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::new(dir.path(), 4096);
        s.push(b"big", &vec![7; 1 << 20]).unwrap();
        assert_eq!(s.arena.capacity(), 0);
        for i in 0..100u32 {
            s.push(&i.to_be_bytes(), b"small").unwrap();
            assert!(s.arena.capacity() <= 2 * 4096);
        }
        let out: Vec<_> = s.finish().unwrap().map(Result::unwrap).collect();
        assert_eq!(out.len(), 101);
        assert_eq!(out[100], (b"big".to_vec(), vec![7; 1 << 20]));
    }

    #[test]
    fn equal_keys_in_one_run_keep_their_order() {
        let records: Vec<_> = (0..200u8).map(|i| (vec![i % 3], vec![i])).collect();
        let out = sorted(&records, 1 << 20);
        let mut want = records.clone();
        want.sort_by_key(|(k, _)| k.clone());
        assert_eq!(out, want);
    }

    /// Runs keep the first record of each prefix: what comes out is at
    /// most a few of each (one a run), the first of each is the least key,
    /// and nothing is lost that was first.
    #[test]
    fn runs_keep_the_first_of_each_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for background in [false, true] {
            let s = Spill::new(dir.path(), 4 << 10).first_of_each(2);
            let mut s = if background { Spill { background: true, ..s } } else { s };
            // 100 prefixes, 20,000 records in many runs (merged in levels).
            let mut pushed = 0u32;
            for round in 0..200u32 {
                for p in 0..100u16 {
                    let mut key = p.to_be_bytes().to_vec();
                    key.extend_from_slice(&(round * 7919 % 200).to_be_bytes());
                    s.push(&key, &round.to_le_bytes()).unwrap();
                    pushed += 1;
                }
            }
            let out: Vec<_> = s.finish().unwrap().map(Result::unwrap).collect();
            assert!(out.len() * 4 < pushed as usize, "{} of {pushed}", out.len());
            assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut firsts: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (k, v) in out {
                if firsts.last().is_none_or(|(l, _)| l[..2] != k[..2]) {
                    firsts.push((k, v));
                }
            }
            assert_eq!(firsts.len(), 100);
            for (k, v) in firsts {
                // The least order of a prefix is 0, pushed in round 0.
                assert_eq!((&k[2..], v.as_slice()), (&0u32.to_be_bytes()[..], &0u32.to_le_bytes()[..]));
            }
        }
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(sorted(&[], 10).is_empty());
    }
}
