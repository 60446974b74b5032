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

use std::collections::{HashMap, HashSet};

use url::Url;

use super::rewrite::Want;
use crate::store::manifest::{Entry, Kind};

/// The entries of one snapshot, by URL (`url` and `final_url`).
#[derive(Debug)]
pub(crate) struct Catalog<'m> {
    entries: &'m [Entry],
    by_url: HashMap<&'m str, Vec<usize>>,
    children: HashMap<&'m str, Vec<usize>>,
}

impl<'m> Catalog<'m> {
    /// Indexes `entries`.
    pub(crate) fn new(entries: &'m [Entry]) -> Self {
        let mut by_url: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            for p in &e.parents {
                children.entry(p.as_str()).or_default().push(i);
            }
            by_url.entry(e.url.as_str()).or_default().push(i);
            if let Some(f) = e.final_url.as_deref().filter(|f| *f != e.url) {
                by_url.entry(f).or_default().push(i);
            }
        }
        Catalog { entries, by_url, children }
    }

    fn candidates(&self, url: &Url) -> &[usize] {
        if let Some(found) = self.by_url.get(url.as_str()) {
            return found;
        }
        // The fetcher drops fragments; the manifest may list the bare URL.
        let mut bare = url.clone();
        bare.set_fragment(None);
        self.by_url.get(bare.as_str()).map(Vec::as_slice).unwrap_or_default()
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
        let all: Vec<usize> = self.candidates(url).iter().copied().filter(|&i| fits(&self.entries[i])).collect();
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
            self.by_url.get(url)?.iter().copied().filter(|&i| self.entries[i].kind == Some(Kind::Article)).collect();
        found.iter().find(|&&i| self.entries[i].url == url).or(found.first()).copied()
    }

    /// Indexes of the entries an article brought in: what lists it as a
    /// parent, and (transitively) what those stylesheets brought in.
    pub(crate) fn closure(&self, article: &Entry) -> HashSet<usize> {
        let mut names: Vec<String> = names(article).into_iter().map(str::to_string).collect();
        let mut seen: HashSet<String> = names.iter().cloned().collect();
        let mut out = HashSet::new();
        while let Some(name) = names.pop() {
            for &i in self.children.get(name.as_str()).map(Vec::as_slice).unwrap_or_default() {
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
