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
//! It reads no data; it only asks an [`Entries`] for entries by position:
//! a snapshot's view file read on demand, by restore and `kura serve`
//! alike, so both map references by the same rules, from this one place.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use url::Url;

use super::rewrite::Want;
use crate::store::Line;
use crate::store::manifest::{Entry, Kind};

/// A snapshot's entries, named by their position in the manifest, and two
/// lookups: entries whose `url` or `final_url` is a URL, and entries that
/// list a URL as a parent. A lookup may return too many (a view file looks
/// up 64-bit [`key`]s) but must never miss one; the catalog checks each
/// candidate against the entry itself.
pub trait Entries {
    /// Entry `i`.
    fn entry(&self, i: usize) -> Option<Cow<'_, Entry>>;
    /// Entry `i` with the location hints of its blobs.
    fn line(&self, i: usize) -> Option<Line>;
    /// Entries that may have been fetched at, or redirected to, `url`.
    fn by_url(&self, url: &str) -> Vec<usize>;
    /// Entries that may list `url` as a parent.
    fn by_parent(&self, url: &str) -> Vec<usize>;
}

/// The lookup key of a URL: 64 bits of FNV-1a, as in a manifest's key
/// index. Stable across builds and platforms, because view files keep
/// sorted keys on disk.
pub(crate) fn key(s: &str) -> u64 {
    crate::store::url_key(s)
}

/// The keys an index holds for entry `e`: those of its URLs (`url`, and
/// `final_url` when different), and those of its parents.
pub(crate) fn keys_of(e: &Entry) -> (Vec<u64>, Vec<u64>) {
    let mut urls = vec![key(&e.url)];
    if let Some(f) = e.final_url.as_deref().filter(|f| *f != e.url) {
        urls.push(key(f));
    }
    (urls, e.parents.iter().map(|p| key(p)).collect())
}

/// The entries fetched for one document (a few dozen, read once), by
/// their `url` and `final_url`.
#[derive(Debug, Default)]
pub struct Children {
    by_url: HashMap<String, Vec<usize>>,
    entries: HashMap<usize, Entry>,
}

/// The entries of one snapshot, by URL (`url` and `final_url`).
#[derive(Debug)]
pub struct Catalog<E> {
    entries: E,
}

impl<E: Entries> Catalog<E> {
    /// A catalog over `entries`.
    pub fn over(entries: E) -> Self {
        Catalog { entries }
    }

    /// Where its entries come from.
    pub fn entries(&self) -> &E {
        &self.entries
    }

    /// The position of the entry with a body archived for `url` as a
    /// `want`, referenced by a document known by the URLs in `parents`;
    /// see the module docs. Entries are read lazily: a URL listed
    /// thousands of times (a logo fetched with each page's Referer) costs
    /// the reads of the asking document's own entries, not of all.
    pub fn find_index(&self, url: &Url, want: Want, parents: &[&str]) -> Option<usize> {
        self.find_index_among(url, want, parents, &self.children(parents))
    }

    /// The entries that list one of `parents` (a document's names) as a
    /// parent, by their URLs: read once per document, for
    /// [`Catalog::find_index_among`].
    pub fn children(&self, parents: &[&str]) -> Children {
        let mut by_url: HashMap<String, Vec<usize>> = HashMap::new();
        let mut entries = HashMap::new();
        let mut seen = HashSet::new();
        for p in parents {
            for i in self.entries.by_parent(p) {
                if !seen.insert(i) {
                    continue;
                }
                let Some(e) = self.entries.entry(i) else { continue };
                if !e.parents.iter().any(|q| q == p) {
                    continue;
                }
                by_url.entry(e.url.clone()).or_default().push(i);
                if let Some(f) = e.final_url.as_deref().filter(|f| *f != e.url) {
                    by_url.entry(f.to_string()).or_default().push(i);
                }
                entries.insert(i, e.into_owned());
            }
        }
        for v in by_url.values_mut() {
            v.sort_unstable();
        }
        Children { by_url, entries }
    }

    /// [`Catalog::find_index`], given the document's [`Catalog::children`].
    pub fn find_index_among(&self, url: &Url, want: Want, parents: &[&str], children: &Children) -> Option<usize> {
        let fits = |e: &Entry| match want {
            Want::Image => e.kind == Some(Kind::Image) || e.image.is_some(),
            Want::Stylesheet => e.kind == Some(Kind::Stylesheet),
            Want::Page => e.kind == Some(Kind::Article),
            Want::Other => false,
        };
        let ok = |e: &Entry| e.blob.is_some() && e.error.is_none();
        // The fetcher drops fragments; the manifest may list the bare URL.
        let mut bare = url.clone();
        bare.set_fragment(None);
        let mut u = url.as_str();
        let mut at = None;
        if url.fragment().is_some() {
            let found = self.entries.by_url(u);
            if found.is_empty() {
                u = bare.as_str();
            } else {
                at = Some(found);
            }
        }
        // Fetched for the asking document: listed under one of its names.
        let mut mine = false;
        for &i in children.by_url.get(u).into_iter().flatten() {
            let Some(e) = children.entries.get(&i) else { continue };
            if at_url(e, u) && fits(e) && e.parents.iter().any(|p| parents.contains(&p.as_str())) {
                if ok(e) {
                    return Some(i);
                }
                mine = true;
            }
        }
        if mine {
            // Its own fetches failed: no copy for this document.
            return None;
        }
        let mut at = at.unwrap_or_else(|| self.entries.by_url(u));
        at.sort_unstable();
        at.dedup();
        at.into_iter().find(|&i| self.entries.entry(i).is_some_and(|e| at_url(&e, u) && fits(&e) && ok(&e)))
    }

    /// The position of the article entry for `url`: the one fetched at that
    /// URL, else one whose `final_url` it is.
    pub fn article_index(&self, url: &str) -> Option<usize> {
        let mut at = self.entries.by_url(url);
        at.sort_unstable();
        at.dedup();
        let mut redirected = None;
        for i in at {
            let Some(e) = self.entries.entry(i) else { continue };
            if e.kind != Some(Kind::Article) {
                continue;
            }
            if e.url == url {
                return Some(i);
            }
            if e.final_url.as_deref() == Some(url) {
                redirected.get_or_insert(i);
            }
        }
        redirected
    }

    /// Positions of the entries an article brought in: what lists it as a
    /// parent, and (transitively) what those stylesheets brought in.
    pub fn closure(&self, article: &Entry) -> HashSet<usize> {
        let mut names: Vec<String> = names(article).into_iter().map(str::to_string).collect();
        let mut seen: HashSet<String> = names.iter().cloned().collect();
        let mut out = HashSet::new();
        while let Some(name) = names.pop() {
            for i in self.entries.by_parent(&name) {
                if out.contains(&i) {
                    continue;
                }
                let Some(e) = self.entries.entry(i) else { continue };
                if !e.parents.contains(&name) {
                    continue;
                }
                out.insert(i);
                if e.kind == Some(Kind::Stylesheet) {
                    for n in names_of(&e) {
                        if seen.insert(n.to_string()) {
                            names.push(n.to_string());
                        }
                    }
                }
            }
        }
        out
    }
}

fn at_url(e: &Entry, url: &str) -> bool {
    e.url == url || e.final_url.as_deref() == Some(url)
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

    fn lookup(pairs: &[(u64, u32)], k: u64) -> Vec<usize> {
        let start = pairs.partition_point(|p| p.0 < k);
        pairs[start..].iter().take_while(|p| p.0 == k).map(|p| p.1 as usize).collect()
    }

    /// A manifest's entries in memory, indexed by URL and by parent: sorted
    /// (key, position) pairs (restore and serve read view files instead).
    #[derive(Debug)]
    struct Memory<'m> {
        entries: &'m [Entry],
        by_url: Vec<(u64, u32)>,
        children: Vec<(u64, u32)>,
    }

    impl<'m> Memory<'m> {
        /// Indexes `entries` (at most 2^32 of them).
        fn new(entries: &'m [Entry]) -> Memory<'m> {
            let mut by_url = Vec::with_capacity(entries.len());
            let mut children = Vec::with_capacity(entries.len());
            for (i, e) in entries.iter().enumerate() {
                let (urls, parents) = keys_of(e);
                by_url.extend(urls.into_iter().map(|k| (k, i as u32)));
                children.extend(parents.into_iter().map(|k| (k, i as u32)));
            }
            by_url.sort_unstable();
            children.sort_unstable();
            Memory { entries, by_url, children }
        }
    }

    impl Entries for Memory<'_> {
        fn entry(&self, i: usize) -> Option<Cow<'_, Entry>> {
            self.entries.get(i).map(Cow::Borrowed)
        }

        fn line(&self, i: usize) -> Option<Line> {
            self.entries.get(i).map(|e| (e.clone(), Vec::new()))
        }

        fn by_url(&self, url: &str) -> Vec<usize> {
            lookup(&self.by_url, key(url))
        }

        fn by_parent(&self, url: &str) -> Vec<usize> {
            lookup(&self.children, key(url))
        }
    }
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
        let c = Catalog::over(Memory::new(&entries));
        let u = Url::parse(img).unwrap();
        assert!(c.find_index(&u, Want::Image, &[a]).is_none(), "a's own fetch failed");
        assert_eq!(c.find_index(&u, Want::Image, &[b]), Some(3));
        assert!(c.find_index(&u, Want::Image, &["http://other/"]).is_some(), "no own fetch: any success");
        assert!(c.find_index(&u, Want::Stylesheet, &[b]).is_none(), "kind matters");
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
        let c = Catalog::over(Memory::new(&entries));
        assert_eq!(c.closure(&entries[0]), HashSet::from([1, 2, 3]));
        assert_eq!(c.article_index("http://s/final.html"), Some(0));
        // A local post is known by its file URL, not by its permalink.
        let mut post = entry("file:///b/p.md", Kind::Article, &[], true);
        post.final_url = Some(a.into());
        assert_eq!(names(&post), vec!["file:///b/p.md"]);
        // A fragment-bearing reference finds the bare URL.
        let frag = Url::parse("http://cdn/bg.png#x").unwrap();
        assert_eq!(c.find_index(&frag, Want::Image, &[]), Some(2));
    }

    #[test]
    fn a_url_listed_thousands_of_times_reads_the_asking_documents_own_entry() {
        use std::cell::Cell;
        // A logo fetched once per page, with each page's Referer.
        let logo = "http://s/logo.png";
        let mut entries: Vec<Entry> =
            (0..3000).map(|i| entry(logo, Kind::Image, &[&format!("http://s/{i}.html")], true)).collect();
        entries[2999].error = Some("HTTP 403".into());
        entries[2999].blob = None;
        struct Counting<'m>(Memory<'m>, Cell<usize>);
        impl Entries for Counting<'_> {
            fn entry(&self, i: usize) -> Option<Cow<'_, Entry>> {
                self.1.set(self.1.get() + 1);
                self.0.entry(i)
            }
            fn line(&self, i: usize) -> Option<Line> {
                self.0.line(i)
            }
            fn by_url(&self, url: &str) -> Vec<usize> {
                self.0.by_url(url)
            }
            fn by_parent(&self, url: &str) -> Vec<usize> {
                self.0.by_parent(url)
            }
        }
        let c = Catalog::over(Counting(Memory::new(&entries), Cell::new(0)));
        let u = Url::parse(logo).unwrap();
        assert_eq!(c.find_index(&u, Want::Image, &["http://s/1500.html"]), Some(1500));
        assert_eq!(c.entries().1.get(), 1, "one entry read, not 3,000");
        // Its own fetch failed: no copy for it, though others have one.
        assert_eq!(c.find_index(&u, Want::Image, &["http://s/2999.html"]), None);
    }
}
