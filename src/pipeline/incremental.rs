//! Re-runs that transfer almost nothing: the latest archived entry of a
//! URL supplies validators for a conditional request (a 304 reuses its
//! blob), images inside the freshness window with the same Referer are not
//! requested at all, and what extraction found in an unchanged article comes
//! from the index's extraction cache instead of a re-parse.

use super::target::{Ref, Target};
use super::{Ctx, group};
use crate::extract::{self, RefKind};
use crate::fetch::{FetchRequest, Response, Validators};
use crate::referrer::Policy;
use crate::store::history::Prior;
use crate::store::id::BlobId;
use crate::store::manifest::binary;
use crate::store::varint;
use bytes::Bytes;
use url::Url;

/// Copies what was archived before into `e` (see [`Ctx::reuse`]) after a
/// 304: the time of its request becomes the check time, and the entry
/// takes the record's fetch time (the response's, not a check's), so that
/// a URL confirmed every run has the same record every run.
pub(super) fn reuse_into(e: &mut crate::store::manifest::Entry, prior: &Prior) {
    // To the millisecond, as the manifest keeps it.
    let asked = e.fetched_at.and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis()));
    reuse_record(e, prior.record.clone());
    e.checked_at = asked;
}

/// Copies what was archived before into `e`, taking the record's fields,
/// and the record's fetch time: an entry settled without a request is the
/// response fetched then (a 304 since does not change it: the entry of the
/// run that checked it had that time too).
pub(super) fn reuse_record(e: &mut crate::store::manifest::Entry, r: crate::store::index::UrlRecord) {
    e.final_url = r.final_url;
    e.status = r.status;
    e.content_type = r.content_type;
    e.etag = r.etag;
    e.last_modified = r.last_modified;
    e.blob = r.blob;
    e.size = r.size;
    e.stored_size = r.stored_size;
    e.image = r.image;
    e.placeholder = r.placeholder;
    e.shown = r.shown;
    e.reused = true;
    e.fetched_at = r.fetched_at;
}

/// Bumped whenever extraction changes, so cached results are not reused
/// (and when the values changed: 3 names its document's blob; 4 is binary,
/// not JSON, which took a twentieth of an unchanged re-run to parse; 5
/// holds the page's group of images, `pipeline::group`, whose records are
/// the spill's: bumped too when `entries::encode_entry` changes).
const EXTRACT_VERSION: u32 = 5;

/// What extraction found in one document, as cached in the index.
#[derive(Debug, PartialEq)]
struct CachedExtract {
    title: Option<String>,
    document_policy: Policy,
    refs: Vec<(String, RefKind, Policy)>,
    /// The page names an icon: no `/favicon.ico` is asked for (whether it
    /// is, is decided per run by `defaults.favicon`, so it is not cached).
    names_icon: bool,
}

impl CachedExtract {
    /// The title (`varint::put_str`), a byte saying whether the page names
    /// an icon, the document's policy, then the references ([`put_refs`]).
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.refs.iter().map(|r| r.0.len() + 4).sum::<usize>());
        varint::put_str(&mut b, self.title.as_deref());
        b.push(u8::from(self.names_icon));
        b.push(binary::policy_code(self.document_policy));
        put_refs(&mut b, self.refs.iter().map(|(u, k, p)| (u.as_str(), *k, *p)));
        b
    }

    /// The value and, if one follows, its page group's part.
    fn decode(b: &[u8]) -> Option<(CachedExtract, &[u8])> {
        let mut r = varint::Reader::new(b);
        let title = r.str()?;
        let names_icon = match r.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let document_policy = binary::policy_of(r.u8()?)?;
        let refs = read_refs(&mut r)?;
        let group = &b[b.len() - r.remaining()..];
        Some((CachedExtract { title, document_policy, refs, names_icon }, group))
    }
}

/// References as the cache keeps them: their count, then each one's URL
/// (`varint::put_str`), kind and policy (a byte each).
fn put_refs<'a>(b: &mut Vec<u8>, refs: impl ExactSizeIterator<Item = (&'a str, RefKind, Policy)>) {
    varint::put(b, refs.len() as u64);
    for (url, kind, policy) in refs {
        varint::put_str(b, Some(url));
        b.push(match kind {
            RefKind::Image => 0,
            RefKind::Stylesheet => 1,
            RefKind::Font => 2,
        });
        b.push(binary::policy_code(policy));
    }
}

fn read_refs(r: &mut varint::Reader<'_>) -> Option<Vec<(String, RefKind, Policy)>> {
    let n = usize::try_from(r.u64()?).ok()?;
    // Each reference takes at least three bytes: a damaged count cannot
    // make a huge vector.
    let mut refs = Vec::with_capacity(n.min(r.remaining() / 3));
    for _ in 0..n {
        let url = r.str()??;
        let kind = match r.u8()? {
            0 => RefKind::Image,
            1 => RefKind::Stylesheet,
            2 => RefKind::Font,
            _ => return None,
        };
        refs.push((url, kind, binary::policy_of(r.u8()?)?));
    }
    Some(refs)
}

/// What extraction found in an unchanged document, from the cache.
pub(super) struct Cached {
    pub(super) title: Option<String>,
    pub(super) document_policy: Policy,
    pub(super) refs: Vec<Ref>,
    /// Where its page group is kept, with the group.
    pub(super) group: group::Slot,
}

impl Ctx {
    /// The latest archived entry for a URL, if its blob is still in the
    /// archive (a lost pack must not make us point at missing data).
    pub(super) fn prior(&self, url: &str) -> Option<Prior> {
        if self.opts.refetch {
            return None;
        }
        self.history.url(url).ok().flatten()
    }

    /// Copies what was archived before into entry `i`, which keeps its own
    /// URL, kind, parents, policy and Referer.
    pub(super) fn reuse(&self, i: usize, prior: &Prior) {
        self.entries.hint(i, prior.hint());
        self.update(i, |e| reuse_into(e, prior));
    }

    /// Reads a blob back from the archive (for a 304 whose body we need).
    pub(super) async fn read_back(&self, id: BlobId) -> Option<Bytes> {
        let history = self.history.clone();
        tokio::task::spawn_blocking(move || history.read_blob(&id))
            .await
            .expect("reading does not panic")
            .ok()
            .flatten()
            .map(Bytes::from)
    }

    /// Fetches with validators from `prior` when there is one; a 304 then
    /// yields the archived body. Fills the entry's response fields and
    /// returns the response when it succeeded.
    pub(super) async fn fetch_cond(
        &self,
        i: usize,
        mut req: FetchRequest,
        prior: Option<Prior>,
    ) -> Option<(Response, Option<BlobId>)> {
        if let Some(p) = &prior {
            let v = Validators { etag: p.etag.clone(), last_modified: p.last_modified.clone() };
            if v.etag.is_some() || v.last_modified.is_some() {
                req.validators = Some(v);
            }
        }
        let resp = self.fetch_into(i, req).await?;
        if !resp.not_modified {
            return Some((resp, None));
        }
        let Some(p) = prior else {
            self.fail(i, "server answered 304 Not Modified to a request without validators".into(), Some(304));
            return None;
        };
        self.reuse(i, &p);
        Some((resp, p.blob))
    }

    /// The body of a response, read back from the archive after a 304.
    pub(super) async fn body(&self, i: usize, resp: &mut Response, reused: Option<BlobId>) -> bool {
        let Some(blob) = reused else { return true };
        // The archived copy takes a place in memory as a fetched body would.
        resp.slot = Some(self.fetcher.body_slot().await);
        self.progress.add_read_back();
        match self.read_back(blob).await {
            Some(body) => {
                resp.body = body;
                true
            }
            None => {
                self.fail(i, "304 Not Modified, but the archived copy cannot be read (run `kura verify`)".into(), None);
                false
            }
        }
    }

    pub(super) fn extract_key(blob: BlobId, resp: &Response) -> [u8; 32] {
        let policy = resp.referrer_policy.map(|p| p.as_str()).unwrap_or("");
        let key = format!("{EXTRACT_VERSION}\n{blob}\n{}\n{policy}", resp.final_url);
        *BlobId::of(key.as_bytes()).as_bytes()
    }

    /// What extraction found in an unchanged document the last time, and
    /// the group of page `page`; its references stay text until one must
    /// be fetched.
    pub(super) fn cached_extract(&self, blob: BlobId, resp: &Response, page: &str) -> Option<Cached> {
        let key = Self::extract_key(blob, resp);
        let raw = self.history.extract_cache(&key).ok()??;
        let (cached, group) = CachedExtract::decode(&raw)?;
        let split = raw.len() - group.len();
        let group = group::Slot::of(key, blob, raw, split, page);
        let mut refs: Vec<Ref> = cached
            .refs
            .into_iter()
            .map(|(url, kind, policy)| Ref { url: Target::Serialized(url), kind, policy, found_in: "cached" })
            .collect();
        if self.opts.favicon && !cached.names_icon {
            refs.extend(super::crawl::default_icon_ref(&resp.final_url, cached.document_policy));
        }
        Some(Cached { title: cached.title, document_policy: cached.document_policy, refs, group })
    }

    /// Where a stylesheet's references are cached: they depend on its
    /// bytes, its URL and the policy its references are fetched with (the
    /// linking document's, unless the stylesheet's response sets one).
    fn css_key(blob: BlobId, resp: &Response, policy: Policy) -> [u8; 32] {
        let key = format!("{EXTRACT_VERSION}\ncss\n{blob}\n{}\n{}", resp.final_url, policy.as_str());
        *BlobId::of(key.as_bytes()).as_bytes()
    }

    /// The references of an unchanged stylesheet, as found the last time.
    pub(super) fn cached_css(&self, blob: BlobId, resp: &Response, policy: Policy) -> Option<Vec<extract::Reference>> {
        let raw = self.history.extract_cache(&Self::css_key(blob, resp, policy)).ok()??;
        let mut r = varint::Reader::new(&raw);
        let refs = read_refs(&mut r)?;
        r.end()?;
        Some(from_cache(refs))
    }

    /// Remembers a stylesheet's references (all of them: the caller caches
    /// nothing when a limit cut them short).
    pub(super) fn cache_css(&self, blob: BlobId, resp: &Response, policy: Policy, refs: &[extract::Reference]) {
        let mut value = Vec::new();
        put_refs(&mut value, refs.iter().map(|r| (r.url.as_str(), r.kind, r.policy)));
        if let Err(e) = self.history.set_extract_cache(&Self::css_key(blob, resp, policy), &blob, &value) {
            tracing::debug!("extract cache not written: {e}");
        }
    }

    /// Remembers what extraction found in page `page`; returns where its
    /// page group is kept (none yet).
    pub(super) fn cache_extract(
        &self,
        blob: BlobId,
        resp: &Response,
        ex: &extract::Extracted,
        page: &str,
    ) -> group::Slot {
        let cached = CachedExtract {
            title: ex.title.clone(),
            document_policy: ex.document_policy,
            refs: ex.refs.iter().map(|r| (r.url.to_string(), r.kind, r.policy)).collect(),
            names_icon: super::crawl::names_icon(ex),
        };
        let key = Self::extract_key(blob, resp);
        let value = cached.encode();
        let split = value.len();
        // A page answered in full again (no validators) with the same
        // body: the value stands, with its group (which follows what
        // extraction found, the same bytes).
        if let Some(old) = self.history.extract_cache(&key).ok().flatten()
            && old.get(..split) == Some(&value[..])
        {
            return group::Slot::of(key, blob, old, split, page);
        }
        if let Err(e) = self.history.set_extract_cache(&key, &blob, &value) {
            tracing::debug!("extract cache not written: {e}");
        }
        group::Slot::of(key, blob, value, split, page)
    }
}

/// References as the extraction cache keeps them, back as references.
fn from_cache(refs: Vec<(String, RefKind, Policy)>) -> Vec<extract::Reference> {
    refs.into_iter()
        .filter_map(|(url, kind, policy)| {
            Some(extract::Reference { url: Url::parse(&url).ok()?, kind, policy, found_in: "cached" })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_extractions_round_trip_and_damage_is_refused() {
        let refs: Vec<(String, RefKind, Policy)> = Policy::ALL
            .iter()
            .zip([RefKind::Image, RefKind::Stylesheet, RefKind::Font].iter().cycle())
            .enumerate()
            .map(|(n, (p, k))| (format!("https://例え.example/{n}.png?q=\"x\""), *k, *p))
            .collect();
        for (title, names_icon) in [(None, false), (Some("标题 \"quoted\"".to_string()), true)] {
            let c = CachedExtract { title, document_policy: Policy::NoReferrer, refs: refs.clone(), names_icon };
            let b = c.encode();
            assert_eq!(CachedExtract::decode(&b), Some((c, &[][..])));
            // Cut anywhere, it is not a value; what follows is its group's.
            for n in 0..b.len() {
                assert_eq!(CachedExtract::decode(&b[..n]), None, "cut at {n}");
            }
            assert_eq!(CachedExtract::decode(&[b.as_slice(), &[0]].concat()).unwrap().1, &[0]);
        }
        // A kind or policy no writer uses.
        let mut b = Vec::new();
        put_refs(&mut b, [("https://a.example/", RefKind::Image, Policy::DEFAULT)].into_iter());
        let kind_at = b.len() - 2;
        for (at, bad) in [(kind_at, 3), (kind_at + 1, 8)] {
            let mut bad_b = b.clone();
            bad_b[at] = bad;
            assert_eq!(read_refs(&mut varint::Reader::new(&bad_b)), None);
        }
        assert!(read_refs(&mut varint::Reader::new(&b)).is_some());
    }
}
