//! Re-runs that transfer almost nothing: the latest archived entry of a
//! URL supplies validators for a conditional request (a 304 reuses its
//! blob), images inside the freshness window with the same Referer are not
//! requested at all, and what extraction found in an unchanged article comes
//! from the index's extraction cache instead of a re-parse.

use super::Ctx;
use super::target::{Ref, Target};
use crate::extract::{self, RefKind};
use crate::fetch::{FetchRequest, Response, Validators};
use crate::referrer::Policy;
use crate::store::history::Prior;
use crate::store::id::BlobId;
use bytes::Bytes;
use serde::Serialize;
use url::Url;

/// Copies what was archived before into `e` (see [`Ctx::reuse`]).
pub(super) fn reuse_into(e: &mut crate::store::manifest::Entry, prior: &Prior) {
    e.final_url = prior.final_url.clone();
    e.status = prior.status;
    e.content_type = prior.content_type.clone();
    e.etag = prior.etag.clone();
    e.last_modified = prior.last_modified.clone();
    e.blob = prior.blob;
    e.size = prior.size;
    e.stored_size = prior.stored_size;
    e.image = prior.image.clone();
    e.placeholder = prior.placeholder;
    e.shown = prior.shown;
    e.reused = true;
}

/// Bumped whenever extraction changes, so cached results are not reused
/// (and when the values changed: 3 names its document's blob).
const EXTRACT_VERSION: u32 = 3;

/// What extraction found in one document, as cached in the index.
#[derive(Serialize, serde::Deserialize)]
struct CachedExtract {
    title: Option<String>,
    document_policy: Policy,
    refs: Vec<(String, RefKind, Policy)>,
    /// The page names an icon: no `/favicon.ico` is asked for (whether it
    /// is, is decided per run by `defaults.favicon`, so it is not cached).
    #[serde(default)]
    names_icon: bool,
}

/// What extraction found in an unchanged document, from the cache.
pub(super) struct Cached {
    pub(super) title: Option<String>,
    pub(super) document_policy: Policy,
    pub(super) refs: Vec<Ref>,
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

    /// What extraction found in an unchanged document the last time; its
    /// references stay text until one must be fetched.
    pub(super) fn cached_extract(&self, blob: BlobId, resp: &Response) -> Option<Cached> {
        let raw = self.history.extract_cache(&Self::extract_key(blob, resp));
        let cached: CachedExtract = serde_json::from_slice(&raw.ok()??).ok()?;
        let mut refs: Vec<Ref> = cached
            .refs
            .into_iter()
            .map(|(url, kind, policy)| Ref { url: Target::Serialized(url), kind, policy, found_in: "cached" })
            .collect();
        if self.opts.favicon && !cached.names_icon {
            refs.extend(super::crawl::default_icon_ref(&resp.final_url, cached.document_policy));
        }
        Some(Cached { title: cached.title, document_policy: cached.document_policy, refs })
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
        Some(from_cache(serde_json::from_slice(&raw).ok()?))
    }

    /// Remembers a stylesheet's references (all of them: the caller caches
    /// nothing when a limit cut them short).
    pub(super) fn cache_css(&self, blob: BlobId, resp: &Response, policy: Policy, refs: &[extract::Reference]) {
        let refs: Vec<_> = refs.iter().map(|r| (r.url.to_string(), r.kind, r.policy)).collect();
        let value = serde_json::to_vec(&refs).expect("serialises");
        if let Err(e) = self.history.set_extract_cache(&Self::css_key(blob, resp, policy), &blob, &value) {
            tracing::debug!("extract cache not written: {e}");
        }
    }

    pub(super) fn cache_extract(&self, blob: BlobId, resp: &Response, ex: &extract::Extracted) {
        let cached = CachedExtract {
            title: ex.title.clone(),
            document_policy: ex.document_policy,
            refs: ex
                .refs
                .iter()
                .filter(|r| r.found_in != super::crawl::DEFAULT_ICON)
                .map(|r| (r.url.to_string(), r.kind, r.policy))
                .collect(),
            names_icon: super::crawl::names_icon(ex),
        };
        let value = serde_json::to_vec(&cached).expect("serialises");
        if let Err(e) = self.history.set_extract_cache(&Self::extract_key(blob, resp), &blob, &value) {
            tracing::debug!("extract cache not written: {e}");
        }
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
