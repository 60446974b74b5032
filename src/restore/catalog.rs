//! Which entry of a snapshot was archived for a URL that a document
//! references, and which entries belong to one article.
//!
//! The same image URL can be listed more than once: once per distinct
//! `Referer` it was fetched with (a WeChat-like CDN answers a Referer with a
//! placeholder), each entry listing the documents it was fetched for in
//! `parents`. A lookup therefore prefers the entry fetched for the asking
//! document; if that fetch failed, the URL has no local copy for this
//! document even when another document's fetch succeeded. Only when no entry
//! names the document as parent is any successful entry for the URL used.
//!
//! It reads no data; it only indexes a manifest's entries.

use std::borrow::Cow;
use std::collections::HashSet;

use url::Url;

use super::rewrite::Want;
use crate::store::manifest::{Entry, Kind};

/// A snapshot's entries indexed by URL (`url` and `final_url`) and by
/// parent: sorted (hash, entry) pairs, 16 bytes each, owned, so a caller
/// that keeps the entries can keep it beside them (`kura serve`). A hash
/// names candidates; each is checked against the entry itself.
#[derive(Debug, Clone, Default)]
pub struct CatalogIndex {
    by_url: Vec<(u64, u32)>,
    children: Vec<(u64, u32)>,
}

fn key(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn lookup<'a>(pairs: &'a [(u64, u32)], s: &str) -> impl Iterator<Item = usize> + 'a {
    let k = key(s);
    let start = pairs.partition_point(|p| p.0 < k);
    pairs[start..].iter().take_while(move |p| p.0 == k).map(|p| p.1 as usize)
}

impl CatalogIndex {
    /// Indexes `entries` (at most 2^32 of them).
    pub fn new(entries: &[Entry]) -> CatalogIndex {
        let mut by_url = Vec::with_capacity(entries.len());
        let mut children = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            for p in &e.parents {
                children.push((key(p), i));
            }
            by_url.push((key(&e.url), i));
            if let Some(f) = e.final_url.as_deref().filter(|f| *f != e.url) {
                by_url.push((key(f), i));
            }
        }
        by_url.sort_unstable();
        children.sort_unstable();
        CatalogIndex { by_url, children }
    }
}

/// The entries of one snapshot, by URL (`url` and `final_url`).
#[derive(Debug)]
pub(crate) struct Catalog<'m> {
    entries: &'m [Entry],
    index: Cow<'m, CatalogIndex>,
}

impl<'m> Catalog<'m> {
    /// Indexes `entries`.
    pub(crate) fn new(entries: &'m [Entry]) -> Self {
        Catalog { entries, index: Cow::Owned(CatalogIndex::new(entries)) }
    }

    /// `entries` with the index built from them earlier.
    pub(crate) fn with_index(entries: &'m [Entry], index: &'m CatalogIndex) -> Self {
        Catalog { entries, index: Cow::Borrowed(index) }
    }

    /// The entries fetched at `url` or redirected to it.
    fn at(&self, url: &str) -> Vec<usize> {
        lookup(&self.index.by_url, url)
            .filter(|&i| {
                let e = &self.entries[i];
                e.url == url || e.final_url.as_deref() == Some(url)
            })
            .collect()
    }

    fn candidates(&self, url: &Url) -> Vec<usize> {
        let found = self.at(url.as_str());
        if !found.is_empty() {
            return found;
        }
        // The fetcher drops fragments; the manifest may list the bare URL.
        let mut bare = url.clone();
        bare.set_fragment(None);
        self.at(bare.as_str())
    }

    /// The entry with a body archived for `url` as a `want`, referenced by
    /// a document known by the URLs in `parents`; see the module docs.
    pub(crate) fn find(&self, url: &Url, want: Want, parents: &[&str]) -> Option<&'m Entry> {
        self.find_index(url, want, parents).map(|i| &self.entries[i])
    }

    /// [`Catalog::find`], as the entry's index.
    pub(crate) fn find_index(&self, url: &Url, want: Want, parents: &[&str]) -> Option<usize> {
        let fits = |e: &Entry| match want {
            Want::Image => e.kind == Some(Kind::Image) || e.image.is_some(),
            Want::Stylesheet => e.kind == Some(Kind::Stylesheet),
            Want::Page => e.kind == Some(Kind::Article),
            Want::Other => false,
        };
        let all: Vec<usize> = self.candidates(url).into_iter().filter(|&i| fits(&self.entries[i])).collect();
        let mine: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.entries[i].parents.iter().any(|p| parents.contains(&p.as_str())))
            .collect();
        let pool = if mine.is_empty() { all } else { mine };
        pool.into_iter().find(|&i| self.entries[i].blob.is_some() && self.entries[i].error.is_none())
    }

    /// The article entry for `url`: the one fetched at that URL, else one
    /// whose `final_url` it is.
    pub(crate) fn article(&self, url: &str) -> Option<&'m Entry> {
        self.article_index(url).map(|i| &self.entries[i])
    }

    /// [`Catalog::article`], as the entry's index.
    pub(crate) fn article_index(&self, url: &str) -> Option<usize> {
        let found: Vec<usize> =
            self.at(url).into_iter().filter(|&i| self.entries[i].kind == Some(Kind::Article)).collect();
        found.iter().find(|&&i| self.entries[i].url == url).or(found.first()).copied()
    }

    /// Indexes of the entries an article brought in: what lists it as a
    /// parent, and (transitively) what those stylesheets brought in.
    pub(crate) fn closure(&self, article: &Entry) -> HashSet<usize> {
        let mut names: Vec<String> = names(article).into_iter().map(str::to_string).collect();
        let mut seen: HashSet<String> = names.iter().cloned().collect();
        let mut out = HashSet::new();
        while let Some(name) = names.pop() {
            for i in lookup(&self.index.children, &name).filter(|&i| self.entries[i].parents.contains(&name)) {
                let e = &self.entries[i];
                if !out.insert(i) {
                    continue;
                }
                if e.kind == Some(Kind::Stylesheet) {
                    for n in names_of(e) {
                        if seen.insert(n.to_string()) {
                            names.push(n.to_string());
                        }
                    }
                }
            }
        }
        out
    }

    /// The image entries an article referenced, directly or through its
    /// stylesheets: (archived, failed).
    pub(crate) fn images_of(&self, article: &Entry) -> (Vec<&'m Entry>, Vec<&'m Entry>) {
        let mut idx: Vec<usize> = self.closure(article).into_iter().collect();
        idx.sort_unstable();
        idx.into_iter()
            .map(|i| &self.entries[i])
            .filter(|e| e.kind == Some(Kind::Image))
            .partition(|e| e.blob.is_some() && e.error.is_none())
    }
}

/// The URLs a document is known by as a parent: its `url` and `final_url`.
/// A local post's `final_url` is its public permalink, which names the web
/// article (if archived too), not the post: a post is known by its file URL.
pub(crate) fn names(e: &Entry) -> Vec<&str> {
    names_of(e)
}

fn names_of(e: &Entry) -> Vec<&str> {
    let mut v = vec![e.url.as_str()];
    if e.url.starts_with("file:") {
        return v;
    }
    if let Some(f) = e.final_url.as_deref().filter(|f| *f != e.url) {
        v.push(f);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::id::BlobId;

    fn entry(url: &str, kind: Kind, parents: &[&str], ok: bool) -> Entry {
        Entry {
            url: url.into(),
            kind: Some(kind),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            blob: ok.then(|| BlobId::of(url.as_bytes())),
            error: (!ok).then(|| "failed".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn prefers_the_fetch_made_for_the_asking_document() {
        let a = "http://s/a.html";
        let b = "http://s/b.html";
        let img = "http://cdn/x.png";
        let entries = vec![
            entry(a, Kind::Article, &[], true),
            entry(b, Kind::Article, &[], true),
            entry(img, Kind::Image, &[a], false),
            entry(img, Kind::Image, &[b], true),
        ];
        let c = Catalog::new(&entries);
        let u = Url::parse(img).unwrap();
        assert!(c.find(&u, Want::Image, &[a]).is_none(), "a's own fetch failed");
        assert_eq!(c.find(&u, Want::Image, &[b]).unwrap().parents, vec![b.to_string()]);
        assert!(c.find(&u, Want::Image, &["http://other/"]).is_some(), "no own fetch: any success");
        assert!(c.find(&u, Want::Stylesheet, &[b]).is_none(), "kind matters");
    }

    #[test]
    fn closure_follows_stylesheets_and_final_urls() {
        let a = "http://s/a.html";
        let mut art = entry(a, Kind::Article, &[], true);
        art.final_url = Some("http://s/final.html".into());
        let entries = vec![
            art,
            entry("http://css/s.css", Kind::Stylesheet, &["http://s/final.html"], true),
            entry("http://cdn/bg.png", Kind::Image, &["http://css/s.css"], true),
            entry("http://cdn/gone.png", Kind::Image, &[a], false),
            entry("http://cdn/other.png", Kind::Image, &["http://s/z.html"], true),
        ];
        let c = Catalog::new(&entries);
        let got = c.closure(&entries[0]);
        assert_eq!(got, HashSet::from([1, 2, 3]));
        let (ok, failed) = c.images_of(&entries[0]);
        assert_eq!((ok.len(), failed.len()), (1, 1));
        assert!(c.article("http://s/final.html").is_some());
        // A local post is known by its file URL, not by its permalink.
        let mut post = entry("file:///b/p.md", Kind::Article, &[], true);
        post.final_url = Some(a.into());
        assert_eq!(names(&post), vec!["file:///b/p.md"]);
        // A fragment-bearing reference finds the bare URL.
        let frag = Url::parse("http://cdn/bg.png#x").unwrap();
        assert!(c.find(&frag, Want::Image, &[]).is_some());
    }
}
