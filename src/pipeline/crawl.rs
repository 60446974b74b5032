//! What a run fetches, and with which referrer source and policy: sources
//! (URLs or local paths), documents judged by their content (feed, sitemap,
//! article), feed items, and every image and stylesheet an article or
//! stylesheet references. Each resource is its own task.

use super::group::{self, Group};
use super::incremental::reuse_record;
use super::target::{Ref, Target};
use super::{Class, Ctx, Place, Task, entries, seen};
use crate::extract::media;
use crate::extract::{self, RefKind};
use crate::fetch::{Accept, Response};
use crate::referrer::{Policy, referer_for};
use crate::sources::{charset, feed, sitemap};
use crate::store::history::Prior;
use crate::store::manifest::{Entry, Kind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use url::Url;

/// How sitemap indexes may nest before we stop following them.
const MAX_SITEMAP_DEPTH: usize = 3;
/// How deep `@import` chains are followed.
const MAX_IMPORT_DEPTH: usize = 4;

fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

impl Ctx {
    pub(super) async fn source(self: Arc<Self>, source: String) {
        if is_url(&source) {
            match Url::parse(&source) {
                Ok(u) => self.document(u, vec![], 0, None).await,
                Err(e) => {
                    let i = self.push(Entry { url: source.clone(), kind: Some(Kind::Page), ..Default::default() });
                    self.fail(i, format!("not a valid URL: {e}"), None);
                    self.entries.finish(i);
                }
            }
        } else {
            super::local::local_source(self, PathBuf::from(source)).await;
        }
    }

    /// A document named by a source, a feed item or a sitemap: its kind is
    /// judged from its content, not its URL. `place`: its place of queued
    /// work (a source has none). Boxed with an explicit `Send` so that this
    /// recursive task type checks.
    pub(super) fn document(
        self: Arc<Self>,
        url: Url,
        parents: Vec<String>,
        depth: usize,
        place: Option<Place>,
    ) -> Task {
        Box::pin(async move {
            let entry = Entry { url: url.to_string(), kind: Some(Kind::Article), parents, ..Default::default() };
            let Some(i) = self.claim(seen::Key::of(&["doc ", url.as_str()]), entry) else { return };
            Box::pin(self.clone().document_work(i, url, depth, place)).await;
            self.entries.finish(i);
        })
    }

    /// Queues a document a sitemap or feed names, once a place is free.
    async fn queue_document(self: &Arc<Self>, url: Url, parents: Vec<String>, depth: usize) {
        let place = self.place(Class::Document).await;
        self.spawn(self.clone().document(url, parents, depth, Some(place)));
    }

    /// Fetches and handles a document. The body's slot is given up once the
    /// body is stored, before what it names is queued; a sitemap or feed
    /// also gives up its place, since the documents it queues need places
    /// of the same class.
    pub(super) async fn document_work(self: Arc<Self>, i: usize, url: Url, depth: usize, place: Option<Place>) {
        let mut req = self.request(url.clone(), Accept::Document);
        req.referrer_source = None; // a navigation typed or picked from a list: no referrer
        let prior = self.prior(url.as_str());
        let was_article = prior.as_ref().is_some_and(|p| p.kind == Some(Kind::Article));
        let Some((mut resp, reused)) = self.fetch_cond(i, req, prior).await else {
            self.progress.add_article();
            return;
        };
        // An unchanged article whose extraction is cached needs no read-back
        // and no parse: that is most of a re-run's work.
        if let (Some(blob), true) = (reused, was_article)
            && let Some(cached) = self.cached_extract(blob, &resp, url.as_str())
        {
            self.progress.add_article();
            self.update(i, |e| e.title = cached.title);
            let parent = url.to_string();
            drop((resp.body, resp.slot));
            let group = Some(cached.group);
            self.queue_refs(cached.refs, cached.document_policy, Some(resp.final_url), parent, group).await;
            return;
        }
        if !self.body(i, &mut resp, reused).await {
            return;
        }
        let kind = feed::detect(&resp.body, resp.content_type.as_deref());
        match kind {
            feed::DocKind::Feed => {
                self.update(i, |e| e.kind = Some(Kind::Feed));
                let parsed = feed::parse_feed(&resp.body, &resp.final_url);
                let body = resp.body.clone();
                if !self.store_into(i, body).await {
                    return;
                }
                drop((resp.body, resp.slot, place));
                match parsed {
                    Ok(f) => {
                        self.update(i, |e| e.title = f.title.clone());
                        for item in f.items {
                            self.feed_item(i, &resp.final_url, item).await;
                        }
                    }
                    Err(err) => self.fail(i, err.to_string(), None),
                }
            }
            feed::DocKind::Sitemap | feed::DocKind::SitemapIndex => {
                self.update(i, |e| e.kind = Some(Kind::Page));
                let parsed = sitemap::parse_sitemap(&resp.body, &resp.final_url);
                if !self.store_into(i, resp.body).await {
                    return;
                }
                drop((resp.slot, place));
                match parsed {
                    Ok(s) if s.kind == sitemap::SitemapKind::Index && depth >= MAX_SITEMAP_DEPTH => self.fail(
                        i,
                        format!("sitemap index nested deeper than {MAX_SITEMAP_DEPTH}: not followed"),
                        None,
                    ),
                    Ok(s) => {
                        let budget = self.sitemap_budget(s.locs.len());
                        if budget < s.locs.len() {
                            let max = self.opts.max_sitemap_urls;
                            self.fail(
                                i,
                                format!(
                                    "{} of its {} URLs not followed: this run already took {max} URLs from sitemaps \
                                     (raise defaults.max_sitemap_urls to follow more)",
                                    s.locs.len() - budget,
                                    s.locs.len()
                                ),
                                None,
                            );
                        }
                        for loc in s.locs.iter().take(budget) {
                            self.queue_document(loc, vec![url.to_string()], depth + 1).await;
                        }
                    }
                    Err(err) => self.fail(i, err.to_string(), None),
                }
            }
            feed::DocKind::Html => {
                self.progress.add_article();
                self.article(i, resp).await;
            }
            feed::DocKind::Other => {
                self.update(i, |e| e.kind = Some(Kind::Page));
                self.store_into(i, resp.body).await;
            }
        }
    }

    /// How many of `wanted` sitemap URLs this run may still follow; they
    /// are counted as taken.
    fn sitemap_budget(&self, wanted: usize) -> usize {
        let max = self.opts.max_sitemap_urls;
        let before = self
            .sitemap_urls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(wanted).min(max)))
            .expect("the closure always returns Some");
        wanted.min(max.saturating_sub(before))
    }

    /// Queues a feed item's page and, for full-content items, the images
    /// of its content; a content past the parse limits fails the feed's
    /// entry `feed_entry`.
    pub(super) async fn feed_item(self: &Arc<Self>, feed_entry: usize, feed_url: &Url, item: feed::FeedItem) {
        let feed = feed_url.to_string();
        if let Some(link) = item.link.clone() {
            self.queue_document(link, vec![feed.clone()], MAX_SITEMAP_DEPTH).await;
        }
        // Full-content items: their images as a reader of the item's page
        // would load them, with the item link as referrer source.
        if let Some(html) = item.content_html {
            let ex = self.extract_document(html, &item.base, None).await;
            let source = item.link.clone().or_else(|| Some(item.base.clone()));
            let parent = item.link.as_ref().map(|l| l.to_string()).unwrap_or(feed);
            if let Some(why) = ex.limit {
                self.fail(feed_entry, format!("content of item {parent}: {why}"), None);
            }
            for r in ex.refs.into_iter().filter(|r| r.kind == RefKind::Image) {
                self.queue_image(r.url.into(), source.clone(), r.policy, parent.clone(), None).await;
            }
        }
    }

    /// Stores an article and queues everything it references (its body
    /// and slot given up first).
    pub(super) async fn article(self: &Arc<Self>, i: usize, resp: Response) {
        let text = charset::decode(&resp.body, resp.content_type.as_deref()).text;
        let mut ex = self.extract_document(text, &resp.final_url, resp.referrer_policy).await;
        let icon = if self.opts.favicon && ex.limit.is_none() && !names_icon(&ex) {
            default_icon_ref(&resp.final_url, ex.document_policy)
        } else {
            None
        };
        self.update(i, |e| e.title = ex.title.clone());
        let url = self.read(i, |e| e.url.clone());
        if !self.store_into(i, resp.body.clone()).await {
            return;
        }
        if let Some(why) = ex.limit.take() {
            // Stored, but what it references is not all known: a failed
            // entry, and nothing cached, so a later version may read it
            // again. The references found (if any) are still fetched.
            self.fail(i, why, None);
            drop((resp.body, resp.slot));
            self.queue_refs(refs_of(ex.refs), ex.document_policy, Some(resp.final_url), url, None).await;
            return;
        }
        let group = self.read(i, |e| e.blob).map(|blob| self.cache_extract(blob, &resp, &ex, &url));
        drop((resp.body, resp.slot));
        let mut refs = refs_of(ex.refs);
        refs.extend(icon);
        self.queue_refs(refs, ex.document_policy, Some(resp.final_url), url, group).await;
    }

    /// Queues the images and stylesheets of an extracted document, each
    /// once a place of its class is free. An article's images settle from
    /// its page group (kept in `group`) when it has one, and those settled
    /// one by one join it.
    pub(super) async fn queue_refs(
        self: &Arc<Self>,
        refs: Vec<Ref>,
        document_policy: Policy,
        source: Option<Url>,
        parent: String,
        group: Option<group::Slot>,
    ) {
        let mut members = group.as_ref().and_then(|slot| self.load_group(slot, &refs));
        // The page's images, all settled from its group, may be carried
        // from the job's latest snapshot: then none of them is written out.
        let carried = match (&self.carry, &members) {
            (Some(carry), Some(g)) => {
                let images =
                    refs.iter().enumerate().filter(|(_, r)| r.kind == RefKind::Image && r.found_in != DEFAULT_ICON);
                let records: Option<Vec<(&str, &[u8])>> =
                    images.map(|(at, r)| g.record(at).map(|rec| (r.url.as_str(), rec))).collect();
                // Only a page that could be carried waits for the base.
                match records.filter(|r| !r.is_empty()) {
                    Some(r) => {
                        carry.ready().await;
                        carry.page(&parent, r.into_iter())
                    }
                    None => false,
                }
            }
            _ => false,
        };
        for (at, r) in refs.into_iter().enumerate() {
            match r.kind {
                RefKind::Image if r.found_in == DEFAULT_ICON => {
                    let Some(url) = r.url.into_url() else { continue };
                    let (c, parent) = (self.clone(), parent.clone());
                    let place = self.place(Class::Image).await;
                    self.spawn(Box::pin(async move {
                        let _place = place;
                        // One per origin, whichever pages ask, so its
                        // Referer is the origin's, not the first asker's:
                        // a re-run asks the same way whatever the order.
                        let source = url.join("/").ok();
                        let entry = Entry {
                            url: url.to_string(),
                            kind: Some(Kind::Image),
                            parents: vec![parent],
                            policy: Some(Policy::DEFAULT),
                            referer: referer_for(source.as_ref(), &url, Policy::DEFAULT),
                            ..Default::default()
                        };
                        if let Some(i) =
                            c.claim(seen::Key::of(&["favicon ", &url.origin().ascii_serialization()]), entry)
                        {
                            // Asked for by the browser, not the page: a site
                            // without one has lost nothing.
                            c.optional.lock().expect("no panics while held").insert(i);
                            if let Some(prior) = c.unless_fresh(i, &url) {
                                Box::pin(c.clone().image_work(i, url, source, Policy::DEFAULT, prior)).await;
                            }
                            c.entries.finish(i);
                        }
                    }));
                }
                RefKind::Image => {
                    if let Some(record) = members.as_ref().and_then(|g| g.record(at)) {
                        if !carried {
                            self.entries.write_encoded(self.entries.number_done(), r.url.as_str(), record);
                        }
                        self.progress.add_image();
                        self.progress.add_grouped();
                        continue;
                    }
                    let member = members.as_mut().map(|g| (g, at));
                    self.queue_image(r.url, source.clone(), r.policy, parent.clone(), member).await;
                }
                RefKind::Stylesheet => {
                    let Some(url) = r.url.into_url() else { continue };
                    let (c, source, parent) = (self.clone(), source.clone(), parent.clone());
                    let place = self.place(Class::Stylesheet).await;
                    self.spawn(c.stylesheet(url, source, r.policy, document_policy, parent, 0, place));
                }
                // Fonts are not part of what an article shows; left for later.
                RefKind::Font => {}
            }
        }
        if let (Some(slot), Some(g)) = (&group, &members) {
            self.save_group(slot, g);
        }
    }

    /// Claims an image and, unless it is settled at once (a copy fetched
    /// within the freshness window with the same Referer, most images of
    /// an unchanged page), queues its fetch once a place is free. Settling
    /// here costs no task and no place: an unchanged re-run is mostly that.
    /// `member`: the page group a settled image joins, as which reference.
    pub(super) async fn queue_image(
        self: &Arc<Self>,
        url: Target,
        source: Option<Url>,
        policy: Policy,
        parent: String,
        member: Option<(&mut Group, usize)>,
    ) {
        let (key, mut entry) = Self::ref_entry(Kind::Image, &url, source.as_ref(), policy, parent);
        let prior = self.prior(url.as_str()).filter(|p| p.image.is_some());
        if prior.as_ref().is_some_and(|p| self.is_fresh(p, &entry)) {
            // Settled: made whole here from the record (moved, not copied)
            // and written out at once, never an entry in memory that is
            // changed field by field.
            let p = prior.expect("checked above");
            let (hint, seen) = (p.hint(), p.seen_at());
            reuse_record(&mut entry, p.record);
            let record = entries::encode_entry(&entry, &[hint]);
            if self.claim_done(key, url.as_str(), &record, &entry.parents[0]) {
                self.progress.add_image();
            }
            // Claimed by another page or not, the page's group holds it: an
            // image many pages show is settled with each page's group next
            // time (their entries fold into one), so every such page is
            // settled whole, and may be carried (`carry`).
            // The group is as fresh as the last check of its oldest image.
            if let (Some((group, at)), Some(seen)) = (member, seen) {
                group.add(at, hint.1, seen, record);
            }
            return;
        }
        let Some(url) = url.into_url() else { return };
        let Some(i) = self.claim(key, entry) else { return };
        let place = self.place(Class::Image).await;
        let c = self.clone();
        self.spawn(Box::pin(async move {
            // Boxed so that a task waiting for its host stays small.
            Box::pin(c.clone().image_work(i, url, source, policy, prior)).await;
            c.entries.finish(i);
            drop(place);
        }));
    }

    /// What the archive holds of image entry `i`, unless it was fetched
    /// less than the freshness window ago with the same Referer: then the
    /// entry reuses it and is settled (`None`).
    pub(super) fn unless_fresh(&self, i: usize, url: &Url) -> Option<Option<Prior>> {
        let prior = self.prior(url.as_str()).filter(|p| p.image.is_some());
        if let Some(p) = &prior
            && self.read(i, |e| self.is_fresh(p, e))
        {
            self.progress.add_image();
            self.reuse(i, p);
            // Settled without a request: the record's time, and no check.
            self.update(i, |e| {
                e.fetched_at = p.fetched_at;
                e.checked_at = None;
            });
            return None;
        }
        Some(prior)
    }

    /// Whether image entry `e` may reuse `p` without asking: fetched less
    /// than the freshness window ago, with the same Referer.
    fn is_fresh(&self, p: &Prior, e: &Entry) -> bool {
        let fresh = p.seen_at().is_some_and(|t| chrono::Utc::now() - t < self.opts.image_freshness);
        // Only a copy fetched with the same Referer is the same picture:
        // CDNs answer placeholders to some Referers (a same-origin image
        // compares Referers by origin; see `referer_hash`).
        fresh && p.same_referer(&e.url, e.referer.as_deref())
    }

    /// Fetches image entry `i` (conditionally, when the archive holds
    /// `prior`), checks and stores what came.
    pub(super) async fn image_work(
        self: Arc<Self>,
        i: usize,
        url: Url,
        source: Option<Url>,
        policy: Policy,
        prior: Option<Prior>,
    ) {
        self.progress.add_image();
        let mut req = self.request(url, Accept::Image);
        req.referrer_source = source;
        req.policy = policy;
        // Each step is boxed, so a waiting image holds only the step it
        // waits in: the fetch, waiting for its host's place, is a few
        // hundred bytes; storing and the placeholder check would add
        // kilobytes to every one of thousands of queued images.
        let Some((resp, reused)) = Box::pin(self.fetch_cond(i, req, prior)).await else { return };
        if reused.is_some() {
            // A 304 for an image: the archived copy stands, nothing to check.
            return;
        }
        // The check classifies; only an empty body or an HTML page where a
        // picture was expected fails. Every other body is what the server
        // sent as the picture, and is kept; so is an HTML page, as evidence
        // of what the server said instead (dedup makes repeats free).
        match media::classify_image(&resp.body, resp.content_type.as_deref()) {
            Ok(info) => {
                self.update(i, |e| e.image = Some(info));
                if Box::pin(self.store_into(i, resp.body)).await {
                    // The check may ask again, and that answer needs a slot.
                    drop(resp.slot);
                    Box::pin(self.check_placeholder(i, &resp.final_url)).await;
                }
            }
            // A site without a favicon that answers every path with a page.
            Err(media::MediaError::Html(_)) if self.absent_if_optional(i) => {}
            Err(err @ media::MediaError::Html(_)) => {
                if Box::pin(self.store_into(i, resp.body)).await {
                    self.fail(i, err.to_string(), None);
                }
            }
            Err(err) => self.fail(i, err.to_string(), None),
        }
    }

    /// A stylesheet: stored, then its `url()` images fetched with the
    /// stylesheet as referrer source and its own header policy (else the
    /// document's).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stylesheet(
        self: Arc<Self>,
        url: Url,
        source: Option<Url>,
        policy: Policy,
        doc_policy: Policy,
        parent: String,
        depth: usize,
        place: Place,
    ) -> Task {
        Box::pin(async move {
            let Some(i) = self.claim_ref(Kind::Stylesheet, &url, source.as_ref(), policy, parent) else { return };
            let at = Position { depth, doc_policy };
            Box::pin(self.clone().stylesheet_work(i, url, source, policy, at, place)).await;
            self.entries.finish(i);
        })
    }

    /// Fetches and stores a stylesheet, then queues its images (holding
    /// its place) and the stylesheets it imports (having given it up).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stylesheet_work(
        self: Arc<Self>,
        i: usize,
        url: Url,
        source: Option<Url>,
        policy: Policy,
        at: Position,
        place: Place,
    ) {
        let Position { depth, doc_policy } = at;
        let mut req = self.request(url.clone(), Accept::Stylesheet);
        req.referrer_source = source;
        req.policy = policy;
        let prior = self.prior(url.as_str());
        let Some((mut resp, reused)) = self.fetch_cond(i, req, prior).await else { return };
        let css_policy = resp.referrer_policy.unwrap_or(doc_policy);
        // An unchanged stylesheet whose references are cached is neither
        // read back nor parsed (a GET saved per stylesheet in object storage).
        let refs = match reused.and_then(|blob| self.cached_css(blob, &resp, css_policy)) {
            Some(refs) => refs,
            None => {
                if !self.body(i, &mut resp, reused).await {
                    return;
                }
                let text = charset::decode(&resp.body, resp.content_type.as_deref()).text;
                let mut refs = extract::extract_css(&text, &resp.final_url, css_policy);
                if !self.store_into(i, std::mem::take(&mut resp.body)).await {
                    return;
                }
                match self.cap_references(&mut refs) {
                    Some(why) => self.fail(i, format!("the stylesheet {why}"), None),
                    None => {
                        if let Some(blob) = self.read(i, |e| e.blob) {
                            self.cache_css(blob, &resp, css_policy, &refs);
                        }
                    }
                }
                refs
            }
        };
        drop(resp.slot);
        let (images, imports): (Vec<_>, Vec<_>) = refs.into_iter().partition(|r| r.kind == RefKind::Image);
        for r in images {
            self.queue_image(r.url.into(), Some(resp.final_url.clone()), r.policy, url.to_string(), None).await;
        }
        drop(place);
        for r in imports.into_iter().filter(|r| r.kind == RefKind::Stylesheet && depth < MAX_IMPORT_DEPTH) {
            let (c, src, parent) = (self.clone(), Some(resp.final_url.clone()), url.to_string());
            let place = self.place(Class::Stylesheet).await;
            self.spawn(c.stylesheet(r.url, src, r.policy, css_policy, parent, depth + 1, place));
        }
    }
}

/// Where a stylesheet sits: how deep in `@import`s, and the policy of the
/// document that linked it (the default for its own references).
#[derive(Debug, Clone, Copy)]
pub(super) struct Position {
    depth: usize,
    doc_policy: Policy,
}

/// `found_in` of the `/favicon.ico` a run asks for itself.
pub(super) const DEFAULT_ICON: &str = "default favicon";

/// Whether an entry of `url` and `referer` is the `/favicon.ico` a run asks
/// for itself ([`default_icon_ref`]): no page group holds one.
pub(super) fn is_default_icon(url: &str, referer: Option<&str>) -> bool {
    let Ok(u) = Url::parse(url) else { return false };
    u.path() == "/favicon.ico"
        && u.query().is_none()
        && referer == referer_for(u.join("/").ok().as_ref(), &u, Policy::DEFAULT).as_deref()
}

/// The references of a document just extracted, as the crawl queues them.
fn refs_of(refs: Vec<extract::Reference>) -> Vec<Ref> {
    refs.into_iter().map(Ref::from).collect()
}

/// Whether the page names an icon of its own.
pub(super) fn names_icon(ex: &extract::Extracted) -> bool {
    ex.refs.iter().any(|r| r.found_in == "link icon")
}

/// `/favicon.ico` of `doc`'s origin: a browser asks for it when the page
/// names no icon; so does the run (`defaults.favicon`), once per origin,
/// with the origin's root as referrer source. Never cached with the
/// page's references: whether it is asked for follows the setting.
pub(super) fn default_icon_ref(doc: &Url, policy: Policy) -> Option<Ref> {
    let url = doc.join("/favicon.ico").ok()?;
    Some(Ref { url: url.into(), kind: RefKind::Image, policy, found_in: DEFAULT_ICON })
}
