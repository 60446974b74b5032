//! The search index: one tantivy document per article of each snapshot
//! (its URL, title and text, the snapshot, job, host and time), kept in the
//! cache directory. It is a cache: built from manifests and blobs, updated
//! as snapshots appear and disappear, and removed by `--reindex`.
//!
//! Text is cut into words for scripts that space them and into overlapping
//! pairs of characters for Chinese, Japanese and Korean (as Lucene's CJK
//! analyzer does), so a phrase is found mid-sentence: the query is cut the
//! same way and its pairs must follow each other.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use scraper::{Html, Node};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{TextAnalyzer, Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::sources::charset;
use crate::store::archive::Archive;
use crate::store::id::SnapshotId;
use crate::store::locations::Locations;
use crate::store::manifest::Kind;

/// Text indexed per article at most; the rest of a very long page is not
/// searchable (its title and start are).
const MAX_TEXT: usize = 200_000;
/// Documents larger than this are indexed by URL and title only: their
/// parse would cost more than the whole index of a normal site.
const MAX_PARSED: usize = 4 << 20;
/// Bumped when what is indexed changes, so an older index is rebuilt.
const INDEX_VERSION: &str = "3";
const TOKENIZER: &str = "kura_cjk";
/// Documents added between commits: tantivy queues up to 10,000 documents
/// in front of its indexing thread, which with article text was 700 MB;
/// a commit waits for the queue to drain.
const COMMIT_EVERY: usize = 500;
/// Text a snippet is taken from, from the start of the article.
const SNIPPET_TEXT: usize = 20_000;

/// Errors of the search index.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// tantivy failed (a damaged index: `kura serve --reindex`).
    #[error("search index: {0} (rebuild it with `kura serve --reindex`)")]
    Index(#[from] tantivy::TantivyError),
    /// The cache directory could not be used.
    #[error("search index directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The archive could not be read.
    #[error(transparent)]
    Archive(#[from] crate::store::archive::ArchiveError),
}

/// One search result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    /// The article's URL exactly as archived.
    pub url: String,
    /// Its title, if it had one.
    pub title: Option<String>,
    /// The snapshot it was found in (full id).
    pub snapshot: String,
    /// The job that made the snapshot.
    pub job: Option<String>,
    /// When the snapshot was started, RFC 3339.
    pub time: String,
    /// Some text around the words found.
    pub snippet: String,
}

/// Filters beside the query text.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only this job's snapshots.
    pub job: Option<String>,
    /// Only articles on this host.
    pub host: Option<String>,
    /// Only this snapshot (full id).
    pub snapshot: Option<String>,
    /// Only snapshots started at or after this (Unix seconds).
    pub from: Option<i64>,
    /// Only snapshots started before this (Unix seconds).
    pub to: Option<i64>,
}

#[derive(Clone, Copy)]
struct Fields {
    url: Field,
    title: Field,
    body: Field,
    snapshot: Field,
    job: Field,
    host: Field,
    time: Field,
    /// The article's blob: the same URL and blob in several snapshots is
    /// one article.
    blob: Field,
}

/// The index, open for reading and writing.
pub struct SearchIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    writer: std::sync::Mutex<IndexWriter>,
    fields: Fields,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("dir", &self.dir).finish()
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        url: b.add_text_field("url", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        snapshot: b.add_text_field("snapshot", STRING | STORED),
        job: b.add_text_field("job", STRING | STORED),
        host: b.add_text_field("host", STRING),
        time: b.add_i64_field("time", INDEXED | STORED | FAST),
        blob: b.add_text_field("blob", STRING | STORED),
    };
    (b.build(), fields)
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it (or recreating it, when
    /// `fresh` or when it was built by another version) as needed.
    pub fn open(dir: &Path, fresh: bool) -> Result<SearchIndex, SearchError> {
        let io = |source| SearchError::Dir { path: dir.to_path_buf(), source };
        let version = dir.join("VERSION");
        let current = std::fs::read_to_string(&version).ok().is_some_and(|v| v.trim() == INDEX_VERSION);
        if (fresh || !current) && dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let (schema, fields) = schema();
        let index = match Index::open_in_dir(dir) {
            Ok(i) => i,
            Err(_) => Index::create_in_dir(dir, schema)?,
        };
        std::fs::write(&version, INDEX_VERSION).map_err(io)?;
        index.tokenizers().register(TOKENIZER, TextAnalyzer::from(CjkTokenizer));
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        // One thread and tantivy's smallest arena: indexing runs beside
        // the server, whose memory should stay small.
        let writer = index.writer_with_num_threads(1, 15 << 20)?;
        Ok(SearchIndex { dir: dir.to_path_buf(), index, reader, writer: std::sync::Mutex::new(writer), fields })
    }

    fn indexed_file(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// The snapshots the index covers.
    pub fn indexed(&self) -> BTreeSet<String> {
        std::fs::read_to_string(self.indexed_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn set_indexed(&self, ids: &BTreeSet<String>) -> Result<(), SearchError> {
        let path = self.indexed_file();
        let tmp = path.with_extension("tmp");
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| SearchError::Dir { path: path.clone(), source })
    }

    /// Brings the index up to the archive's snapshots: snapshots gone
    /// (forgotten) are removed, new ones added. Returns how many snapshots
    /// were added.
    pub fn sync(&self, archive: &Archive) -> Result<usize, SearchError> {
        let present: BTreeSet<String> = archive.snapshot_ids()?.iter().map(SnapshotId::to_hex).collect();
        let mut indexed = self.indexed();
        let gone: Vec<String> = indexed.difference(&present).cloned().collect();
        let new: Vec<String> = present.difference(&indexed).cloned().collect();
        if gone.is_empty() && new.is_empty() {
            return Ok(0);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        for id in &gone {
            writer.delete_term(Term::from_field_text(self.fields.snapshot, id));
            indexed.remove(id);
        }
        let mut added = 0;
        for id in &new {
            let Ok(sid) = id.parse::<SnapshotId>() else { continue };
            // Documents of a snapshot whose indexing was cut off before
            // it was listed as indexed.
            writer.delete_term(Term::from_field_text(self.fields.snapshot, id));
            match self.add_snapshot(&mut writer, archive, &sid) {
                Ok(()) => added += 1,
                // A damaged snapshot is left out (and retried next time);
                // `kura verify` names it.
                Err(e) => {
                    tracing::warn!("snapshot {id} not indexed: {e}");
                    continue;
                }
            }
            indexed.insert(id.clone());
        }
        writer.commit()?;
        drop(writer);
        self.set_indexed(&indexed)?;
        self.reader.reload()?;
        Ok(added)
    }

    fn add_snapshot(&self, writer: &mut IndexWriter, archive: &Archive, id: &SnapshotId) -> Result<(), SearchError> {
        let f = self.fields;
        let snapshot = archive.open_snapshot(id)?;
        let header = snapshot.header().clone();
        let time = header.started.timestamp();
        let hex = id.to_hex();
        let mut locations = None;
        let mut added = 0;
        let mut failed = None;
        snapshot.for_each(|(e, hints)| {
            if e.kind != Some(Kind::Article) {
                return Ok(());
            }
            let Some(blob) = e.blob else { return Ok(()) };
            let data = match hints.iter().find(|h| h.0 == blob).and_then(|h| archive.read_hinted(h)) {
                Some(d) => Some(d),
                None => {
                    if locations.is_none() {
                        locations = Some(Locations::build(archive)?);
                    }
                    let at = locations.as_ref().and_then(|l| l.get(&blob).ok().flatten());
                    at.and_then(|(pack, e)| archive.read_at(&pack, &e).ok())
                }
            };
            let (title, text) = match &data {
                Some(d) => article_text(&e.url, d, e.content_type.as_deref()),
                None => (None, String::new()),
            };
            let title = e.title.clone().or(title).unwrap_or_default();
            let host = url::Url::parse(&e.url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            let mut doc = TantivyDocument::default();
            doc.add_text(f.url, &e.url);
            doc.add_text(f.title, &title);
            doc.add_text(f.body, &text);
            doc.add_text(f.snapshot, &hex);
            doc.add_text(f.job, &header.job);
            doc.add_text(f.host, host.to_ascii_lowercase());
            doc.add_i64(f.time, time);
            doc.add_text(f.blob, blob.to_hex());
            // Only fails when the writer is gone; commit reports it.
            let _ = writer.add_document(doc);
            added += 1;
            if added % COMMIT_EVERY == 0
                && let Err(e) = writer.commit()
            {
                failed.get_or_insert(e);
            }
            Ok(())
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The best `limit` hits for `q` under `filters`, the same article
    /// (URL and text) found in several snapshots listed once, newest.
    pub fn search(&self, q: &str, filters: &Filters, limit: usize) -> Result<Vec<Hit>, SearchError> {
        let f = self.fields;
        let parser = {
            let mut p = QueryParser::for_index(&self.index, vec![f.title, f.body]);
            p.set_conjunction_by_default();
            p.set_field_boost(f.title, 2.0);
            p
        };
        // A query with stray syntax is still a search for its words.
        let (text_query, _) = parser.parse_query_lenient(q);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text_query.box_clone())];
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
        };
        if let Some(job) = filters.job.as_deref().filter(|s| !s.is_empty()) {
            clauses.push((Occur::Must, term(f.job, job)));
        }
        if let Some(host) = filters.host.as_deref().filter(|s| !s.is_empty()) {
            clauses.push((Occur::Must, term(f.host, &host.to_ascii_lowercase())));
        }
        if let Some(s) = filters.snapshot.as_deref().filter(|s| !s.is_empty()) {
            clauses.push((Occur::Must, term(f.snapshot, &s.to_ascii_lowercase())));
        }
        if filters.from.is_some() || filters.to.is_some() {
            let lower = filters.from.map_or(Bound::Unbounded, |t| Bound::Included(Term::from_field_i64(f.time, t)));
            let upper = filters.to.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_i64(f.time, t)));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top =
            searcher.search(&query, &TopDocs::with_limit(limit.saturating_add(limit / 2).max(1)).order_by_score())?;
        // Listed once per article (URL and blob), newest snapshot first;
        // snippets only for what is listed.
        let mut kept: Vec<(String, TantivyDocument, i64)> = Vec::new();
        for (_, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or("").to_owned();
            let key = format!("{}\n{}", text(f.url), text(f.blob));
            let time = doc.get_first(f.time).and_then(|v| v.as_i64()).unwrap_or(0);
            let room = kept.len() < limit;
            match kept.iter_mut().find(|(k, _, _)| *k == key) {
                Some(old) if old.2 < time => *old = (key, doc, time),
                Some(_) => {}
                None if room => kept.push((key, doc, time)),
                None => {}
            }
        }
        let snippets = SnippetGenerator::create(&searcher, &*text_query, f.body)?;
        let hits = kept
            .into_iter()
            .map(|(_, doc, time)| {
                let get = |field| doc.get_first(field).and_then(|v| v.as_str()).map(str::to_owned);
                let body = get(f.body).unwrap_or_default();
                // Where the words are found is near the start on most pages;
                // tokenising a whole long page for a snippet costs more than
                // the search.
                let head = &body[..floor_char_boundary(&body, SNIPPET_TEXT)];
                Hit {
                    url: get(f.url).unwrap_or_default(),
                    title: get(f.title).filter(|t| !t.is_empty()),
                    snapshot: get(f.snapshot).unwrap_or_default(),
                    job: get(f.job).filter(|j| !j.is_empty()),
                    time: chrono::DateTime::from_timestamp(time, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
                    snippet: snippets.snippet(head).fragment().to_owned(),
                }
            })
            .collect();
        Ok(hits)
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An article's title and text: a local Markdown post is rendered first
/// (its front matter gives the title), anything else is HTML.
fn article_text(url: &str, bytes: &[u8], content_type: Option<&str>) -> (Option<String>, String) {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file:") && !lower.ends_with(".html") && !lower.ends_with(".htm") {
        let decoded = charset::decode(bytes, content_type);
        if let Ok(post) =
            crate::sources::post::parse_post_as(&decoded.text, crate::sources::post::PostFormat::Markdown, None)
        {
            let (_, text) = text_of(post.body_html.as_bytes(), Some("text/html; charset=utf-8"));
            return (post.title, text);
        }
    }
    text_of(bytes, content_type)
}

/// An archived document's title and readable text: decoded from its own
/// encoding (GBK too), without scripts, styles and templates.
pub fn text_of(bytes: &[u8], content_type: Option<&str>) -> (Option<String>, String) {
    let decoded = charset::decode(bytes, content_type);
    if bytes.len() > MAX_PARSED {
        return (None, String::new());
    }
    let doc = Html::parse_document(&decoded.text);
    let mut title = None;
    let mut text = String::new();
    for node in doc.tree.root().descendants() {
        let Node::Text(t) = node.value() else { continue };
        let skip = node.ancestors().any(|a| {
            a.value().as_element().is_some_and(|e| matches!(e.name(), "script" | "style" | "noscript" | "template"))
        });
        if skip {
            continue;
        }
        let in_title = node.parent().and_then(|p| p.value().as_element().map(|e| e.name() == "title")) == Some(true);
        if in_title {
            title.get_or_insert_with(|| t.trim().to_owned());
            continue;
        }
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        if text.len() + t.len() > MAX_TEXT {
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(t);
    }
    (title.filter(|t| !t.is_empty()), text)
}

/// Words of spaced scripts (letters and digits, lower-cased) and pairs of
/// neighbouring CJK characters; a CJK character alone is its own token.
#[derive(Clone, Default)]
pub struct CjkTokenizer;

/// The tokens of one text, made at once (a text is one article).
pub struct CjkTokens {
    tokens: Vec<Token>,
    at: usize,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xAC00..=0xD7AF
        | 0x1100..=0x11FF | 0x3130..=0x318F | 0x20000..=0x2FA1F)
}

impl Tokenizer for CjkTokenizer {
    type TokenStream<'a> = CjkTokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkTokens {
        let mut tokens = Vec::new();
        let mut push = |from: usize, to: usize, text: String| {
            let position = tokens.len();
            tokens.push(Token { offset_from: from, offset_to: to, position, text, position_length: 1 });
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let end_of = |k: usize| chars.get(k + 1).map_or(text.len(), |c| c.0);
        let mut k = 0;
        while k < chars.len() {
            let (at, c) = chars[k];
            if is_cjk(c) {
                let mut run = k;
                while run < chars.len() && is_cjk(chars[run].1) {
                    run += 1;
                }
                if run - k == 1 {
                    push(at, end_of(k), c.to_string());
                } else {
                    for p in k..run - 1 {
                        push(chars[p].0, end_of(p + 1), format!("{}{}", chars[p].1, chars[p + 1].1));
                    }
                }
                k = run;
            } else if c.is_alphanumeric() {
                let mut run = k;
                while run < chars.len() && chars[run].1.is_alphanumeric() && !is_cjk(chars[run].1) {
                    run += 1;
                }
                push(at, end_of(run - 1), text[at..end_of(run - 1)].to_lowercase());
                k = run;
            } else {
                k += 1;
            }
        }
        CjkTokens { tokens, at: 0 }
    }
}

impl TokenStream for CjkTokens {
    fn advance(&mut self) -> bool {
        self.at += 1;
        self.at <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.at - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.at - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        let mut t = CjkTokenizer;
        let mut s = t.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn cjk_text_becomes_pairs_and_words_stay_words() {
        assert_eq!(tokens("跨境电商"), ["跨境", "境电", "电商"]);
        assert_eq!(tokens("Hello, 世界! Rust2024"), ["hello", "世界", "rust2024"]);
        assert_eq!(tokens("中 文"), ["中", "文"]);
        assert_eq!(tokens("ラーメン店"), ["ラー", "ーメ", "メン", "ン店"]);
        assert!(tokens("  ,;  ").is_empty());
    }

    #[test]
    fn text_leaves_out_scripts_and_finds_the_title() {
        let html = "<html><head><title> T </title><style>p{}</style></head><body><p>one</p><script>x()</script>\
                    <p>二 three</p></body></html>";
        let (title, text) = text_of(html.as_bytes(), Some("text/html"));
        assert_eq!(title.as_deref(), Some("T"));
        assert_eq!(text, "one 二 three");
    }

    #[test]
    fn local_markdown_posts_are_rendered_without_their_front_matter() {
        let md = "---\ntitle: 跨境\ncategories: [a]\n---\n# Head\n\nSome *text* 跨境电商\n";
        let (title, text) = article_text("file:///b/_posts/p.md", md.as_bytes(), None);
        assert_eq!(title.as_deref(), Some("跨境"));
        assert_eq!(text, "Head Some text 跨境电商");
    }

    #[test]
    fn gbk_pages_are_read_in_their_own_encoding() {
        let (gbk, _, _) = encoding_rs::GBK.encode("<meta charset=gbk><p>跨境电商的故事</p>");
        let (_, text) = text_of(&gbk, None);
        assert_eq!(text, "跨境电商的故事");
    }
}
