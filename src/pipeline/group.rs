//! Page groups: the images an unchanged page settled from the archive,
//! kept as one value so that the next run settles them together. Settling
//! an image one by one costs a claim of its fetch key and a lookup of its
//! URL's record; for two million images of unchanged pages that was most
//! of a re-run. A group costs one lookup a page.
//!
//! A group found but not used is replaced (by what this run settles, if
//! anything), so a group never outlives a fetch of its images (`--refetch`,
//! or after the window).
//!
//! A group is derived data in the extraction cache: kept with what
//! extraction found in the page, under what decides every image entry it
//! holds (the page's blob, final URL and policy: the same references,
//! sources and Referers), with the page's URL (their parent). It holds,
//! per image reference, the spill record the page wrote for it: an entry
//! settled from the URL's record
//! (`incremental::reuse_record`), the same a settle would make again while
//! that record stands. It is used whole or not at all: only while its
//! oldest image is inside the freshness window and every pack its images
//! are in is still indexed (prune moves blobs and forgets packs).
//!
//! The records are the spill's (`entries::encode_entry`: a tag and the
//! format-4 manifest record less its URL), copied into a run's spill
//! unread: a change to that encoding bumps `incremental::EXTRACT_VERSION`,
//! so no group of the old one is read. A value's bytes are checked by its
//! table's checksum.
//!
//! Group images are not claimed. Another page that references one of them
//! in the same run claims it as usual (settles it, or fetches it when the
//! URL's record is of another Referer); the two entries of one fetch key
//! become one with both parents when the manifest is written
//! (`entries::Folded`), the one fetched this run if either was. A page
//! that settles an image another page claimed first holds it in its group
//! all the same, so a picture every page shows does not keep the pages
//! but one from being settled whole.

use super::Ctx;
use super::target::Ref;
use crate::store::id::{BlobId, PackId};
use crate::store::varint;
use chrono::{DateTime, Utc};

/// The images of one page settled from the archive, by reference.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Group {
    /// How many references the page has (a check, not a key).
    refs: u32,
    /// When its oldest image was fetched or last confirmed.
    oldest: Option<DateTime<Utc>>,
    /// The packs its images' blobs are in.
    packs: Vec<PackId>,
    /// Sorted by reference.
    members: Vec<Member>,
    /// Members added since it was read.
    added: usize,
    /// The value held a group of this page that was not used (past the
    /// freshness window, a pack gone, `--refetch`): it is replaced, even
    /// by an empty one, so it is never used after its images were fetched
    /// again.
    stale: bool,
}

#[derive(Debug, PartialEq)]
struct Member {
    /// The reference's place in the page's list.
    at: u32,
    /// Its pack, in `packs`.
    pack: u32,
    /// The entry's spill record (`entries::encode_entry`).
    record: Vec<u8>,
}

impl Group {
    fn new(refs: usize) -> Group {
        Group { refs: refs as u32, ..Group::default() }
    }

    /// The spill record of reference `at`, if the group settles it.
    pub(super) fn record(&self, at: usize) -> Option<&[u8]> {
        let n = self.members.binary_search_by_key(&(at as u32), |m| m.at).ok()?;
        Some(&self.members[n].record)
    }

    /// Adds reference `at`, settled as `record` from a blob in `pack`
    /// the server last vouched for (fetched or confirmed) at `seen`.
    pub(super) fn add(&mut self, at: usize, pack: PackId, seen: DateTime<Utc>, record: Vec<u8>) {
        let at = at as u32;
        let Err(n) = self.members.binary_search_by_key(&at, |m| m.at) else { return };
        let pack = match self.packs.iter().position(|p| *p == pack) {
            Some(p) => p,
            None => {
                self.packs.push(pack);
                self.packs.len() - 1
            }
        } as u32;
        self.members.insert(n, Member { at, pack, record });
        self.oldest = Some(self.oldest.map_or(seen, |t| t.min(seen)));
        self.added += 1;
    }

    /// refs, oldest fetch (seconds and nanoseconds), the packs, then each
    /// member's reference, pack and record.
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.members.iter().map(|m| m.record.len() + 8).sum::<usize>());
        varint::put(&mut b, u64::from(self.refs));
        let oldest = self.oldest.unwrap_or_default();
        varint::put_i64(&mut b, oldest.timestamp());
        varint::put(&mut b, u64::from(oldest.timestamp_subsec_nanos()));
        varint::put(&mut b, self.packs.len() as u64);
        for p in &self.packs {
            b.extend_from_slice(p.as_bytes());
        }
        varint::put(&mut b, self.members.len() as u64);
        for m in &self.members {
            varint::put(&mut b, u64::from(m.at));
            varint::put(&mut b, u64::from(m.pack));
            varint::put(&mut b, m.record.len() as u64);
            b.extend_from_slice(&m.record);
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Group> {
        let mut r = varint::Reader::new(b);
        let refs = u32::try_from(r.u64()?).ok()?;
        let oldest = DateTime::from_timestamp(r.i64()?, u32::try_from(r.u64()?).ok()?)?;
        let n = usize::try_from(r.u64()?).ok()?;
        let mut packs = Vec::with_capacity(n.min(r.remaining() / 32));
        for _ in 0..n {
            packs.push(PackId::from_bytes(r.bytes(32)?.try_into().ok()?));
        }
        let n = usize::try_from(r.u64()?).ok()?;
        let mut members: Vec<Member> = Vec::with_capacity(n.min(r.remaining() / 3));
        for _ in 0..n {
            let at = u32::try_from(r.u64()?).ok()?;
            let pack = u32::try_from(r.u64()?).ok()?;
            let len = usize::try_from(r.u64()?).ok()?;
            let record = r.bytes(len)?.to_vec();
            // In order, within the page's references and the packs.
            if at >= refs || pack as usize >= packs.len() || members.last().is_some_and(|m| m.at >= at) {
                return None;
            }
            members.push(Member { at, pack, record });
        }
        r.end()?;
        Some(Group { refs, oldest: Some(oldest), packs, members, added: 0, stale: false })
    }
}

/// References of a page whose images may be kept as a group: a group is
/// held whole while its page's references are queued, up to 256 pages at
/// a time, so a page of thousands of images settles them one by one.
const MAX_REFS: usize = 512;

/// Where a page's group is kept: after what extraction found in the page,
/// in the same value of the extraction cache, so one lookup finds both.
/// The value's group part is the page's URL (`varint::put_str`), then the
/// group; a part of another page (two URLs that end at one document) is
/// not used, and is replaced.
pub(super) struct Slot {
    key: [u8; 32],
    /// The page's blob.
    blob: BlobId,
    /// The value: what extraction found, up to `split`, then the group part.
    value: Vec<u8>,
    split: usize,
    page: String,
}

impl Slot {
    /// The slot of page `page`, whose extraction cache value under `key`
    /// is `value`, its group part from `split`.
    pub(super) fn of(key: [u8; 32], blob: BlobId, value: Vec<u8>, split: usize, page: &str) -> Slot {
        Slot { key, blob, value, split, page: page.to_string() }
    }

    /// The group part's group, if it is this page's.
    fn group(&self) -> Option<&[u8]> {
        let part = &self.value[self.split..];
        let mut r = varint::Reader::new(part);
        (r.str()??.as_str() == self.page).then(|| &part[part.len() - r.remaining()..])
    }

    /// The value holding `group`.
    fn with(&self, group: &Group) -> Vec<u8> {
        let encoded = group.encode();
        let mut v = Vec::with_capacity(self.split + self.page.len() + 4 + encoded.len());
        v.extend_from_slice(&self.value[..self.split]);
        varint::put_str(&mut v, Some(&self.page));
        v.extend_from_slice(&encoded);
        v
    }
}

impl Ctx {
    /// The page's group, to settle its images with and to add to: the
    /// cached one while every image in it may be settled without asking,
    /// else an empty one; none for a page of more than [`MAX_REFS`]
    /// references.
    pub(super) fn load_group(&self, slot: &Slot, refs: &[Ref]) -> Option<Group> {
        if refs.len() > MAX_REFS {
            return None;
        }
        let cached = slot.group().map(Group::decode);
        if let Some(Some(g)) = &cached
            && self.usable(g, refs.len())
        {
            return cached.flatten();
        }
        let mut g = Group::new(refs.len());
        // A group not used is replaced, unless it is empty already: an
        // empty one settles nothing, and rewriting it every run would cost
        // a write a page for nothing.
        g.stale = cached.is_some_and(|old| old.is_none_or(|old| !old.members.is_empty()));
        Some(g)
    }

    /// Whether every image of `g`, a group of a page of `refs` references,
    /// may be settled without asking.
    fn usable(&self, g: &Group, refs: usize) -> bool {
        let fresh = g.oldest.is_some_and(|t| Utc::now() - t < self.opts.image_freshness);
        !self.opts.refetch
            && g.refs as usize == refs
            && fresh
            && g.packs.iter().all(|p| self.history.has_pack(p).unwrap_or(false))
    }

    /// Stores the page's group if it gained images or replaces one not
    /// used.
    pub(super) fn save_group(&self, slot: &Slot, group: &Group) {
        if group.added == 0 && !group.stale {
            return;
        }
        if let Err(e) = self.history.set_extract_cache(&slot.key, &slot.blob, &slot.with(group)) {
            tracing::debug!("page group not written: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(b in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Some(g) = Group::decode(&b) {
                proptest::prop_assert_eq!(Group::decode(&g.encode()), Some(g));
            }
        }
    }

    #[test]
    fn groups_round_trip_and_damage_is_refused() {
        let t = |s: i64| DateTime::from_timestamp(1_764_000_000 + s, 7).unwrap();
        let mut g = Group::new(30);
        g.add(9, PackId::of(b"b"), t(5), vec![1, 2, 3]);
        g.add(2, PackId::of(b"a"), t(3), vec![]);
        g.add(4, PackId::of(b"b"), t(9), vec![4; 300]);
        // A reference added twice keeps its first record.
        g.add(4, PackId::of(b"c"), t(1), vec![5]);
        assert_eq!(g.packs, [PackId::of(b"b"), PackId::of(b"a")]);
        assert_eq!(g.oldest, Some(t(3)));
        assert_eq!(g.record(4), Some(&[4; 300][..]));
        assert_eq!(g.record(2), Some(&[][..]));
        assert_eq!(g.record(3), None);
        let b = g.encode();
        let back = Group::decode(&b).unwrap();
        assert_eq!(back, Group { added: 0, ..g });
        for n in 0..b.len() {
            assert_eq!(Group::decode(&b[..n]), None, "cut at {n}");
        }
        assert_eq!(Group::decode(&[b.as_slice(), &[0]].concat()), None);
        // A member past the page's references, or out of order.
        let mut bad = Group::new(3);
        bad.add(1, PackId::of(b"a"), t(0), vec![]);
        bad.add(2, PackId::of(b"a"), t(0), vec![]);
        bad.refs = 2;
        assert_eq!(Group::decode(&bad.encode()), None);
        bad.refs = 3;
        bad.members.swap(0, 1);
        assert_eq!(Group::decode(&bad.encode()), None);
    }
}
