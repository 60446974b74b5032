//! A snapshot's entries read straight from its manifest, for restoring one
//! article: the article is found in the chunk its URL's range names, and
//! what it brought in through the manifest's key index (formats 3 and 4), so
//! nothing is laid out first. Building the view file of a two-million-entry
//! snapshot takes seconds; this takes a few chunk reads.
//!
//! Positions are those of the manifest, as in a view file: chunk by chunk,
//! in file order.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use super::catalog::Entries;
use crate::store::archive::{ArchiveError, SnapshotReader};
use crate::store::manifest::Entry;
use crate::store::{KeyKind, Line};

/// Decoded chunks kept: an article's own entries, its images' chunk or two,
/// a shared logo's, and a few stylesheets'.
const CACHED_CHUNKS: usize = 8;

/// The entries of a snapshot whose manifest has a key index, read a chunk
/// at a time as lookups ask for them.
pub(super) struct Direct<'r, 'a> {
    reader: &'r SnapshotReader<'a>,
    /// Position of each chunk's first entry, and the count after the last.
    starts: Vec<u64>,
    /// Most recently used last.
    cache: RefCell<Vec<(usize, Rc<Vec<Line>>)>>,
    /// The first chunk or key frame that could not be read: lookups go on
    /// without it, and the restore fails with it at the end.
    error: RefCell<Option<ArchiveError>>,
}

impl<'r, 'a> Direct<'r, 'a> {
    /// The entries of `reader`'s snapshot; `None` when its manifest has no
    /// key index (formats 1 and 2), where finding an article's entries
    /// takes reading all of them.
    pub(super) fn new(reader: &'r SnapshotReader<'a>) -> Option<Self> {
        if !reader.has_keys() {
            return None;
        }
        let mut starts: Vec<u64> = vec![0];
        for n in reader.chunk_sizes() {
            starts.push(starts.last().copied().unwrap_or(0).saturating_add(n));
        }
        Some(Direct { reader, starts, cache: RefCell::new(Vec::new()), error: RefCell::new(None) })
    }

    /// The first read that failed, if any.
    pub(super) fn take_error(&self) -> Option<ArchiveError> {
        self.error.borrow_mut().take()
    }

    fn failed(&self, err: ArchiveError) {
        self.error.borrow_mut().get_or_insert(err);
    }

    fn chunk(&self, c: usize) -> Option<Rc<Vec<Line>>> {
        let mut cache = self.cache.borrow_mut();
        if let Some(at) = cache.iter().position(|(i, _)| *i == c) {
            let hit = cache.remove(at);
            let lines = Rc::clone(&hit.1);
            cache.push(hit);
            return Some(lines);
        }
        let lines = match self.reader.chunk(c) {
            Ok(l) => Rc::new(l),
            Err(err) => {
                drop(cache);
                self.failed(err);
                return None;
            }
        };
        if cache.len() == CACHED_CHUNKS {
            cache.remove(0);
        }
        cache.push((c, Rc::clone(&lines)));
        Some(lines)
    }

    /// Positions in chunks `chunks` of the entries `keep` accepts.
    fn positions(&self, chunks: impl IntoIterator<Item = usize>, keep: impl Fn(&Entry) -> bool) -> Vec<usize> {
        let mut out = Vec::new();
        for c in chunks {
            let Some(lines) = self.chunk(c) else { continue };
            let start = self.starts.get(c).copied().unwrap_or(0);
            out.extend(lines.iter().enumerate().filter(|(_, l)| keep(&l.0)).map(|(j, _)| (start + j as u64) as usize));
        }
        out
    }

    fn keyed(&self, kind: KeyKind, url: &str) -> Vec<usize> {
        match self.reader.chunks_with(kind, url) {
            Ok(chunks) => chunks.unwrap_or_default(),
            Err(err) => {
                self.failed(err);
                Vec::new()
            }
        }
    }
}

impl Entries for Direct<'_, '_> {
    fn entry(&self, i: usize) -> Option<Cow<'_, Entry>> {
        self.line(i).map(|(e, _)| Cow::Owned(e))
    }

    fn line(&self, i: usize) -> Option<Line> {
        if i as u64 >= self.starts.last().copied().unwrap_or(0) {
            return None;
        }
        let c = self.starts.partition_point(|&s| s <= i as u64).checked_sub(1)?;
        let j = i as u64 - self.starts[c];
        self.chunk(c)?.get(usize::try_from(j).ok()?).cloned()
    }

    fn by_url(&self, url: &str) -> Vec<usize> {
        let mut chunks: Vec<usize> = self.reader.chunks_for(url).collect();
        chunks.extend(self.keyed(KeyKind::FinalUrl, url));
        chunks.sort_unstable();
        chunks.dedup();
        self.positions(chunks, |e| e.url == url || e.final_url.as_deref() == Some(url))
    }

    fn by_parent(&self, url: &str) -> Vec<usize> {
        self.positions(self.keyed(KeyKind::Parent, url), |e| e.parents.iter().any(|p| p == url))
    }
}
