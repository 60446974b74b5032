//! zstd dictionaries trained from the archive's own documents.
//!
//! Pages of one site share most of their bytes (templates, navigation,
//! inline scripts), which zstd cannot exploit one page at a time: a page
//! compressed alone pays again for everything its siblings already said. A
//! dictionary trained on earlier pages of the same kind carries that
//! shared part, so each page stores only what is its own.
//!
//! A writer collects samples of each [`Family`] as it stores bodies (each
//! cut to [`SAMPLE_CUT`]), trains a dictionary as soon as it has
//! [`FIRST_SAMPLE_BYTES`] of them, writes it durably to
//! `dictionaries/<id>` and only then encodes with it (codec `zstd-dict`,
//! which names the dictionary in each blob); documents stored meanwhile
//! wait for it. Every document stored before a dictionary exists costs
//! about twice what it would with one, which is why the first one is
//! trained early, on a few pages; the run goes on sampling (up to
//! [`SAMPLE_BYTES`]), and at its end a dictionary trained on those
//! samples replaces it if it does markedly better ([`drifted`]).
//! Dictionaries are never deleted: they are few and small, and any blob
//! may name one. Later writers start from the newest dictionary of each
//! family.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::{BackendError, FileKind};
use crate::store::blob::{self, EncodedBlob};
use crate::store::id::BlobId;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// Size of a trained dictionary (zstd's own default).
pub const DICTIONARY_SIZE: usize = 112_640;
/// Samples gathered before a family's first dictionary is trained, in
/// bytes (at least 16 samples)... On the sample site's pages a dictionary
/// trained on 1 MiB of them compressed the rest as well as one trained on
/// 4 MiB, and the documents stored without one while 4 MiB was gathered
/// and trained on made the first run's documents 1.3x of the solid floor.
pub const FIRST_SAMPLE_BYTES: usize = 1 << 20;
/// ...or in count, whichever comes first (the default; `[store]
/// dictionary_samples`).
pub const SAMPLE_COUNT: usize = 512;
/// Samples kept of a run's documents, in bytes, for the check at its end
/// (and for a family that trains only then).
pub const SAMPLE_BYTES: usize = 4 << 20;
/// A run that stored fewer documents of a family trains nothing at its end.
pub const MIN_SAMPLES: usize = 64;
/// Below this many samples zstd's trainer has too little to go on.
const MIN_TRAIN_SAMPLES: usize = 16;
/// A sample is the start of a body: the shared template is mostly there,
/// and one huge page cannot crowd out the rest.
pub const SAMPLE_CUT: usize = 64 << 10;
/// The first line of a dictionary file.
const MAGIC: &str = "kura-dictionary 1";

/// Kinds of document that get dictionaries of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// HTML pages.
    Html,
    /// XML: feeds, sitemaps.
    Xml,
    /// JSON: JSON feeds, APIs.
    Json,
    /// Stylesheets.
    Css,
}

impl Family {
    /// The name in a dictionary file's header.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Html => "html",
            Family::Xml => "xml",
            Family::Json => "json",
            Family::Css => "css",
        }
    }

    fn parse(s: &str) -> Option<Family> {
        [Family::Html, Family::Xml, Family::Json, Family::Css].into_iter().find(|f| f.as_str() == s)
    }

    /// The family of a body, from its first bytes (a body's declared type
    /// is often wrong; its bytes are what zstd sees).
    pub fn sniff(data: &[u8]) -> Option<Family> {
        let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
        let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
        let head = &data[start..data.len().min(start + 1024)];
        match head[0] {
            b'<' => {
                let lower = head.to_ascii_lowercase();
                let has = |s: &[u8]| lower.windows(s.len()).any(|w| w == s);
                if has(b"<html") || has(b"<!doctype html") || has(b"<body") || has(b"<head") {
                    Some(Family::Html)
                } else {
                    Some(Family::Xml)
                }
            }
            b'{' | b'[' => Some(Family::Json),
            _ => looks_like_css(&data[start..data.len().min(start + 4096)]).then_some(Family::Css),
        }
    }
}

/// A stylesheet, from its start: past comments, an at-rule of CSS, or a
/// selector (no parentheses, no `=` outside brackets, no `;`) followed by
/// `{` and a declaration `name:`. Scripts fail it (`function(`, `var a=`);
/// a wrong guess costs only compression, never a byte.
fn looks_like_css(head: &[u8]) -> bool {
    let mut s = head;
    loop {
        s = s.trim_ascii_start();
        match s.strip_prefix(b"/*") {
            Some(rest) => match rest.windows(2).position(|w| w == b"*/") {
                Some(end) => s = &rest[end + 2..],
                None => return false,
            },
            None => break,
        }
    }
    const AT_RULES: [&[u8]; 10] = [
        b"@charset",
        b"@import",
        b"@media",
        b"@font-face",
        b"@keyframes",
        b"@supports",
        b"@layer",
        b"@namespace",
        b"@page",
        b"@-webkit-keyframes",
    ];
    if AT_RULES.iter().any(|r| s.starts_with(r)) {
        return true;
    }
    let Some(open) = s.iter().position(|&b| b == b'{') else { return false };
    let (selector, body) = (&s[..open], &s[open + 1..]);
    let mut depth = 0i32;
    for &b in selector {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b'(' | b')' | b';' | b'{' | b'}' => return false,
            b'=' if depth <= 0 => return false,
            _ => {}
        }
    }
    if selector.trim_ascii().is_empty() {
        return false;
    }
    let body = body.trim_ascii_start();
    let name = body.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'-').count();
    name > 0 && body[name..].trim_ascii_start().first() == Some(&b':')
}

/// Errors reading a dictionary.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// Its file is missing or unreadable.
    #[error("dictionary {id}: {source}")]
    Read {
        /// The dictionary.
        id: BlobId,
        /// What the backend said.
        source: BackendError,
    },
    /// Its bytes do not hash to its name.
    #[error("dictionary {id}: content hash is {actual}, the file is damaged")]
    Hash {
        /// The dictionary.
        id: BlobId,
        /// The hash of what was read.
        actual: BlobId,
    },
    /// Its header is not a dictionary's.
    #[error("dictionary {id}: not a Kura dictionary file ({why})")]
    Malformed {
        /// The dictionary.
        id: BlobId,
        /// What is wrong.
        why: String,
    },
}

/// A dictionary as stored: `kura-dictionary 1 FAMILY CREATED\n` (CREATED in
/// Unix seconds), then the zstd dictionary; named by the SHA-256 of it all.
#[derive(Debug, Clone)]
pub struct Dictionary {
    /// SHA-256 of the file.
    pub id: BlobId,
    /// What it was trained on.
    pub family: Family,
    /// When it was trained (Unix seconds).
    pub created: i64,
    /// The zstd dictionary.
    pub zstd: Vec<u8>,
}

impl Dictionary {
    /// The file's bytes.
    pub fn to_bytes(family: Family, created: i64, zstd: &[u8]) -> Vec<u8> {
        let mut out = format!("{MAGIC} {} {created}\n", family.as_str()).into_bytes();
        out.extend_from_slice(zstd);
        out
    }

    /// Parses and checks the file named `id`.
    pub fn parse(id: BlobId, bytes: &[u8]) -> Result<Dictionary, DictionaryError> {
        let actual = BlobId::of(bytes);
        if actual != id {
            return Err(DictionaryError::Hash { id, actual });
        }
        let (family, created, body) = parse_header(bytes).ok_or_else(|| DictionaryError::Malformed {
            id,
            why: "its first line is not `kura-dictionary 1 FAMILY TIME`".into(),
        })?;
        Ok(Dictionary { id, family, created, zstd: body.to_vec() })
    }
}

fn parse_header(bytes: &[u8]) -> Option<(Family, i64, &[u8])> {
    let nl = bytes.iter().take(128).position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..nl]).ok()?;
    let rest = line.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let (family, created) = rest.split_once(' ')?;
    Some((Family::parse(family)?, created.parse().ok()?, &bytes[nl + 1..]))
}

/// Every dictionary of the archive: (family, created, id) from each
/// file's header, without reading the dictionaries themselves.
pub fn list(archive: &Archive) -> Result<Vec<(Family, i64, BlobId)>, ArchiveError> {
    let backend = archive.backend();
    let mut out = Vec::new();
    for (name, size) in backend.list(FileKind::Dictionary)? {
        let Some(id) = name.parse::<BlobId>().ok() else { continue };
        let head = match backend.read_range(FileKind::Dictionary, &name, 0, size.min(128)) {
            Ok(h) => h,
            // Removed since the listing (by hand): nothing to use.
            Err(BackendError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        // A damaged header is verify's to report; a writer skips it.
        if let Some((family, created, _)) = parse_header(&head) {
            out.push((family, created, id));
        }
    }
    Ok(out)
}

/// The newest dictionary of each family (by CREATED, then id) among those
/// [`list`] gave: the one writers use.
pub fn newest(listed: &[(Family, i64, BlobId)]) -> HashMap<Family, BlobId> {
    let mut newest: HashMap<Family, (i64, BlobId)> = HashMap::new();
    for &(family, created, id) in listed {
        let e = newest.entry(family).or_insert((created, id));
        *e = (*e).max((created, id));
    }
    newest.into_iter().map(|(f, (_, id))| (f, id)).collect()
}

/// The writer's side: the dictionary in use for each family, and samples
/// for the families that have none yet. Shared by every thread encoding
/// bodies for one writer.
pub struct Dictionaries {
    archive: Archive,
    enabled: bool,
    samples: usize,
    state: Mutex<HashMap<Family, State>>,
    /// Signalled when a family leaves [`State::Training`].
    trained: Condvar,
}

impl std::fmt::Debug for Dictionaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionaries").field("enabled", &self.enabled).finish()
    }
}

enum State {
    Collecting(Samples),
    /// One thread trains; documents of the family wait for it.
    Training,
    /// In use, with samples of this run's documents kept for the drift
    /// check at its end.
    Ready(Arc<Ready>, Samples),
    /// Training failed (too little variety, say): not retried this run.
    Failed,
}

/// The first bytes of some documents.
#[derive(Default)]
struct Samples {
    list: Vec<Vec<u8>>,
    bytes: usize,
}

impl Samples {
    /// Keeps the start of `data` while under `count` samples and
    /// [`SAMPLE_BYTES`].
    fn keep(&mut self, data: &[u8], count: usize) {
        if self.list.len() < count && self.bytes < SAMPLE_BYTES {
            let cut = &data[..data.len().min(SAMPLE_CUT)];
            self.bytes += cut.len();
            self.list.push(cut.to_vec());
        }
    }
}

struct Ready {
    id: BlobId,
    /// When it was trained (Unix seconds): a dictionary trained again is
    /// always newer.
    created: i64,
    /// Prepared once per level in use (a writer uses one).
    encoders: Mutex<HashMap<i32, Arc<zstd::dict::EncoderDictionary<'static>>>>,
    zstd: Vec<u8>,
}

impl Ready {
    fn encoder(&self, level: i32) -> Option<Arc<zstd::dict::EncoderDictionary<'static>>> {
        let mut m = self.encoders.lock().expect("no panics while held");
        if let Some(e) = m.get(&level) {
            return Some(e.clone());
        }
        let e = Arc::new(zstd::dict::EncoderDictionary::try_copy(&self.zstd, level).ok()?);
        m.insert(level, e.clone());
        Some(e)
    }
}

impl Dictionaries {
    /// Starts from the newest readable dictionary of each family in the
    /// archive; a family without one trains after `samples` documents.
    /// With `enabled` false, bodies are encoded as before dictionaries
    /// existed (the dictionaries found are not used either).
    pub fn open(archive: &Archive, enabled: bool, samples: usize) -> Result<Dictionaries, ArchiveError> {
        let mut state = HashMap::new();
        if enabled {
            let listed = list(archive)?;
            let created: HashMap<BlobId, i64> = listed.iter().map(|&(_, c, id)| (id, c)).collect();
            for (family, id) in newest(&listed) {
                match archive.dictionary(&id) {
                    Ok(zstd) => {
                        let ready = Ready::new(id, created.get(&id).copied().unwrap_or(0), zstd.to_vec());
                        state.insert(family, State::Ready(Arc::new(ready), Samples::default()));
                    }
                    // Blobs that use it are verify's concern; new ones get
                    // a new dictionary.
                    Err(e) => tracing::warn!("not using {e}"),
                }
            }
        }
        let samples = samples.max(MIN_SAMPLES);
        Ok(Dictionaries {
            archive: archive.clone(),
            enabled,
            samples,
            state: Mutex::new(state),
            trained: Condvar::new(),
        })
    }

    /// The dictionary in use for `family`, if any.
    pub fn current(&self, family: Family) -> Option<BlobId> {
        match self.state.lock().expect("no panics while held").get(&family) {
            Some(State::Ready(r, _)) => Some(r.id),
            _ => None,
        }
    }

    /// Encodes a body whose id the caller computed: with its family's
    /// dictionary when there is one, else as [`blob::encode_with_id`] does
    /// (keeping a sample, and training once there are enough). While one
    /// thread trains a family's dictionary, its other documents wait for
    /// it: the training takes a fraction of a second, and each of them
    /// stored without would cost about twice its bytes for good. Fails
    /// only when a trained dictionary cannot be written.
    pub fn encode(&self, id: BlobId, data: &[u8], level: i32) -> Result<EncodedBlob, ArchiveError> {
        let family = if self.enabled && data.len() >= 64 { Family::sniff(data) } else { None };
        let Some(family) = family else { return Ok(blob::encode_with_id(id, data, level)) };
        let ready = {
            let state = self.state.lock().expect("no panics while held");
            let mut state = self
                .trained
                .wait_while(state, |s| matches!(s.get(&family), Some(State::Training)))
                .expect("no panics while held");
            let s = state.entry(family).or_insert_with(|| State::Collecting(Samples::default()));
            match s {
                State::Ready(r, fresh) => {
                    fresh.keep(data, self.samples);
                    Some(r.clone())
                }
                State::Training | State::Failed => None,
                State::Collecting(samples) => {
                    samples.keep(data, self.samples);
                    if samples.bytes >= FIRST_SAMPLE_BYTES || samples.list.len() >= self.samples {
                        let State::Collecting(samples) = std::mem::replace(s, State::Training) else { unreachable!() };
                        drop(state);
                        self.train(family, samples.list, None)?;
                    }
                    None
                }
            }
        };
        if let Some(r) = ready
            && let Some(enc) = r.encoder(level)
            && let Some(b) = blob::encode_with_dictionary(id, data, r.id, &enc)
        {
            return Ok(b);
        }
        Ok(blob::encode_with_id(id, data, level))
    }

    /// `data` encoded with its family's dictionary, if there is one and it
    /// pays; never samples or trains (prune recompressing older blobs).
    pub fn recompress(&self, id: BlobId, data: &[u8], level: i32) -> Option<EncodedBlob> {
        let family = Family::sniff(data).filter(|_| self.enabled)?;
        let ready = match self.state.lock().expect("no panics while held").get(&family) {
            Some(State::Ready(r, _)) => r.clone(),
            _ => return None,
        };
        blob::encode_with_dictionary(id, data, ready.id, &*ready.encoder(level)?)
    }

    /// At the end of a run: a family that gathered at least
    /// [`MIN_SAMPLES`] documents but not enough to train during the run
    /// trains now, so that the next runs (which often bring only a few new
    /// pages each) start with a dictionary; and a family whose documents
    /// have drifted from its dictionary trains a new one (see
    /// [`drifted`]), which later writers use.
    pub fn finish(&self) -> Result<(), ArchiveError> {
        let (untrained, trained): (Vec<_>, Vec<_>) = {
            let mut state = self.state.lock().expect("no panics while held");
            let mut untrained = Vec::new();
            let mut trained = Vec::new();
            for (f, s) in state.iter_mut() {
                match s {
                    State::Collecting(samples) if samples.list.len() >= MIN_SAMPLES => {
                        let State::Collecting(samples) = std::mem::replace(s, State::Training) else {
                            unreachable!("matched above")
                        };
                        untrained.push((*f, samples.list));
                    }
                    State::Ready(r, fresh) if fresh.list.len() >= 2 * MIN_SAMPLES => {
                        trained.push((*f, r.clone(), std::mem::take(&mut fresh.list)));
                        fresh.bytes = 0;
                    }
                    _ => {}
                }
            }
            (untrained, trained)
        };
        for (family, samples) in untrained {
            self.train(family, samples, None)?;
        }
        for (family, current, samples) in trained {
            if drifted(family, &current, &samples) {
                self.train(family, samples, Some(current))?;
            }
        }
        Ok(())
    }

    /// Trains a dictionary from `samples`, makes it durable in the archive,
    /// then puts it in use: no blob names a dictionary that is not stored.
    /// When training fails, `previous` (if any) stays in use.
    fn train(&self, family: Family, samples: Vec<Vec<u8>>, previous: Option<Arc<Ready>>) -> Result<(), ArchiveError> {
        let started = std::time::Instant::now();
        let (count, size) = (samples.len(), samples.iter().map(Vec::len).sum::<usize>());
        let trained = if samples.len() >= MIN_TRAIN_SAMPLES {
            zstd::dict::from_samples(&samples, DICTIONARY_SIZE).ok()
        } else {
            None
        };
        drop(samples);
        let set = |s: State| {
            self.state.lock().expect("no panics while held").insert(family, s);
            self.trained.notify_all();
        };
        let fallback = || previous.clone().map_or(State::Failed, |r| State::Ready(r, Samples::default()));
        let Some(zstd) = trained else {
            tracing::info!("no {} dictionary: too few or too uniform samples", family.as_str());
            set(fallback());
            return Ok(());
        };
        let created = chrono::Utc::now().timestamp().max(previous.as_ref().map_or(0, |p| p.created + 1));
        let bytes = Dictionary::to_bytes(family, created, &zstd);
        let id = BlobId::of(&bytes);
        if let Err(e) = self.archive.backend().write(FileKind::Dictionary, &id.to_hex(), &bytes) {
            set(fallback());
            return Err(e.into());
        }
        tracing::info!(
            "trained {} dictionary {} ({} bytes) from {count} samples ({size} bytes) in {:.2} s",
            family.as_str(),
            id.short(),
            zstd.len(),
            started.elapsed().as_secs_f64()
        );
        set(State::Ready(Arc::new(Ready::new(id, created, zstd)), Samples::default()));
        Ok(())
    }

    /// How many samples a family holds now.
    #[cfg(test)]
    fn samples(&self, family: Family) -> usize {
        match self.state.lock().unwrap().get(&family) {
            Some(State::Collecting(samples)) => samples.list.len(),
            _ => 0,
        }
    }
}

impl Ready {
    fn new(id: BlobId, created: i64, zstd: Vec<u8>) -> Ready {
        Ready { id, created, encoders: Mutex::new(HashMap::new()), zstd }
    }
}

/// A dictionary trained on this run's documents would compress them
/// this much smaller than the one in use before a new one is trained.
const DRIFT_GAIN: f64 = 0.85;

/// Whether a family's documents have drifted from `current` (a site
/// changed its template, a new feed joined): a dictionary trained on every
/// other sample of this run is tried on the rest against `current`, and
/// wins by more than [`DRIFT_GAIN`]. Costs one training of half the
/// samples, only at the end of a run that stored twice [`MIN_SAMPLES`]
/// documents of the family.
fn drifted(family: Family, current: &Ready, samples: &[Vec<u8>]) -> bool {
    let (train, test): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = {
        let (a, b): (Vec<_>, Vec<_>) = samples.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        (a.into_iter().map(|x| x.1).collect(), b.into_iter().map(|x| x.1).collect())
    };
    let Ok(candidate) = zstd::dict::from_samples(&train, DICTIONARY_SIZE) else { return false };
    let size = |dict: &[u8]| -> Option<usize> {
        let mut c = zstd::bulk::Compressor::with_dictionary(3, dict).ok()?;
        test.iter().map(|t| c.compress(t).ok().map(|v| v.len())).sum()
    };
    let (Some(now), Some(fresh)) = (size(&current.zstd), size(&candidate)) else { return false };
    let drifted = (fresh as f64) < DRIFT_GAIN * now as f64;
    tracing::info!(
        "{} dictionary {}: {} of this run's documents take {now} bytes with it, {fresh} with one trained on the others{}",
        family.as_str(),
        current.id.short(),
        test.len(),
        if drifted { ": training a new one" } else { "" }
    );
    drifted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob::Codec;

    /// Pages of one site: a shared template around a text of their own.
    fn page(i: usize) -> Vec<u8> {
        let nav: String = (0..40).map(|n| format!("<li><a href=\"/section/{n}\">Section {n}</a></li>")).collect();
        let words: String = (0..300).map(|w| format!("w{} ", (w * 7919 + i * 104_729) % 100_003)).collect();
        format!(
            "<!DOCTYPE html><html><head><title>Article {i}</title><style>body{{font:16px serif}}.nav li{{display:inline}}</style></head>\
             <body><ul class=\"nav\">{nav}</ul><article><h1>Article {i}</h1><p>{words}</p></article>\
             <footer>Copyright Example Press. All rights reserved.</footer></body></html>"
        )
        .into_bytes()
    }

    /// A page of another site: another template, other words.
    fn other_page(i: usize) -> Vec<u8> {
        let menu: String = (0..30)
            .map(|n| {
                format!(
                    "<div class=\"forum-board\" data-board=\"{n}\"><span class=\"board-title\">版块 {n}</span></div>"
                )
            })
            .collect();
        let posts: String = (0..120).map(|w| format!("<em>帖子{}</em>", (w * 31 + i * 7_877) % 50_021)).collect();
        format!(
            "<!doctype html><html lang=\"zh\"><head><meta charset=\"gbk\"><title>论坛 {i}</title>\
             <script src=\"/static/forum.js\"></script></head><body class=\"forum\"><aside>{menu}</aside>\
             <main id=\"thread-{i}\">{posts}</main><div class=\"copyright\">论坛版权所有 备案号 12345</div></body></html>"
        )
        .into_bytes()
    }

    #[test]
    fn documents_that_drift_from_the_dictionary_train_a_new_one_and_alike_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(dir.path()).unwrap();
        let run = |pages: &mut dyn Iterator<Item = Vec<u8>>| {
            let dicts = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
            let stored: Vec<_> = pages.map(|d| (dicts.encode(BlobId::of(&d), &d, 3).unwrap(), d)).collect();
            dicts.finish().unwrap();
            (dicts.current(Family::Html), stored)
        };
        let (first, _) = run(&mut (0..SAMPLE_COUNT + 200).map(page));
        let first = first.expect("trained");
        assert_eq!(list(&archive).unwrap().len(), 1, "the rest of its run's pages are alike: no second one");
        // More pages of the same site: no drift.
        let (same, _) = run(&mut (5_000..5_000 + 3 * MIN_SAMPLES).map(page));
        assert_eq!(same, Some(first));
        assert_eq!(list(&archive).unwrap().len(), 1);
        // Another site's pages: compressed with the old dictionary during
        // the run, then a new one is trained for the next runs.
        let (second, stored) = run(&mut (0..3 * MIN_SAMPLES).map(other_page));
        let second = second.expect("in use");
        assert_ne!(second, first);
        assert_eq!(newest(&list(&archive).unwrap())[&Family::Html], second);
        assert!(stored.iter().all(|(e, _)| e.codec == Codec::ZstdDict && e.data[..32] == *first.as_bytes()));
        let fresh = Archive::open(dir.path()).unwrap();
        for (e, data) in &stored {
            assert_eq!(&fresh.decode_blob(e.id, e.codec, e.raw_len, &e.data).unwrap(), data);
        }
        let (next, later) = run(&mut (1_000..1_010).map(other_page));
        assert_eq!(next, Some(second));
        assert!(later.iter().all(|(e, _)| e.data[..32] == *second.as_bytes()));
        // The new site's pages cost less with their own dictionary.
        let cost = |dict: &[u8]| -> usize {
            let mut c = zstd::bulk::Compressor::with_dictionary(3, dict).unwrap();
            (2_000..2_050).map(|i| c.compress(&other_page(i)).unwrap().len()).sum()
        };
        let (old, new) = (fresh.dictionary(&first).unwrap(), fresh.dictionary(&second).unwrap());
        assert!(cost(&new) * 10 < cost(&old) * 9, "{} vs {}", cost(&new), cost(&old));
    }

    #[test]
    fn families_are_sniffed_from_the_bytes() {
        assert_eq!(Family::sniff(b"\xEF\xBB\xBF  <!doctype HTML><p>x"), Some(Family::Html));
        assert_eq!(Family::sniff(b"<!-- c --><html lang=zh>"), Some(Family::Html));
        assert_eq!(Family::sniff(b"<?xml version=\"1.0\"?><rss>"), Some(Family::Xml));
        assert_eq!(Family::sniff(b"\n{\"version\": \"https://jsonfeed.org/version/1.1\"}"), Some(Family::Json));
        assert_eq!(Family::sniff(b"/* theme */\nbody { color: red }"), Some(Family::Css));
        assert_eq!(Family::sniff(b"@charset \"utf-8\"; a{b:c}"), Some(Family::Css));
        assert_eq!(Family::sniff(b"input[type=\"text\"], .nav > li:hover{ --x: 1 }"), Some(Family::Css));
        assert_eq!(Family::sniff(b"/*! lib */!function(e){e.a=1}"), None);
        assert_eq!(Family::sniff(b"var config = {debug: true};"), None);
        assert_eq!(Family::sniff(b"if (a) { b: while (1) {} }"), None);
        assert_eq!(Family::sniff(b"plain text"), None);
        assert_eq!(Family::sniff(b"\x89PNG\r\n"), None);
        assert_eq!(Family::sniff(b"   "), None);
    }

    #[test]
    fn a_dictionary_is_trained_stored_first_and_used_and_a_new_writer_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(dir.path()).unwrap();
        let dicts = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
        let mut stored = Vec::new();
        for i in 0..SAMPLE_COUNT + 50 {
            let data = page(i);
            let enc = dicts.encode(BlobId::of(&data), &data, 3).unwrap();
            stored.push((data, enc));
        }
        let id = dicts.current(Family::Html).expect("trained after enough samples");
        assert!(archive.backend().size(FileKind::Dictionary, &id.to_hex()).is_ok(), "stored");
        // Trained once 1 MiB of pages was seen, before SAMPLE_COUNT of
        // them, and used for every page after.
        let before = stored.iter().take_while(|(_, e)| e.codec == Codec::Zstd).count();
        let sampled: usize = stored[..before].iter().map(|(d, _)| d.len()).sum();
        assert!(sampled >= FIRST_SAMPLE_BYTES && sampled - stored[before - 1].0.len() < FIRST_SAMPLE_BYTES);
        assert!(before < SAMPLE_COUNT);
        let with: Vec<_> = stored[before..].iter().filter(|(_, e)| e.codec == Codec::ZstdDict).collect();
        assert_eq!(with.len(), stored.len() - before, "every page after training uses it");
        assert_eq!(dicts.samples(Family::Html), 0, "the first samples are let go once trained");
        // Pages share their template: with the dictionary each costs a
        // fraction of what it costs alone.
        let avg_plain = stored[..before].iter().map(|(_, e)| e.data.len()).sum::<usize>() / before;
        let avg_dict = with.iter().map(|(_, e)| e.data.len()).sum::<usize>() / with.len();
        assert!(avg_dict * 2 < avg_plain, "{avg_dict} vs {avg_plain} bytes a page");
        for (data, e) in &stored {
            assert_eq!(&archive.decode_blob(e.id, e.codec, e.raw_len, &e.data).unwrap(), data);
        }

        // A new writer starts from it; other families are untouched.
        let again = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
        assert_eq!(again.current(Family::Html), Some(id));
        assert_eq!(again.current(Family::Xml), None);
        let data = page(100_000);
        assert_eq!(again.encode(BlobId::of(&data), &data, 3).unwrap().codec, Codec::ZstdDict);
        // Disabled: encoded as before.
        let off = Dictionaries::open(&archive, false, SAMPLE_COUNT).unwrap();
        assert_eq!(off.encode(BlobId::of(&data), &data, 3).unwrap().codec, Codec::Zstd);
    }

    #[test]
    fn a_run_too_small_to_train_trains_at_its_end_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(dir.path()).unwrap();
        let dicts = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
        for i in 0..MIN_SAMPLES - 1 {
            let data = page(i);
            dicts.encode(BlobId::of(&data), &data, 3).unwrap();
        }
        dicts.finish().unwrap();
        assert_eq!(dicts.current(Family::Html), None, "too few samples even for the end of a run");
        let data = page(MIN_SAMPLES);
        assert_eq!(dicts.encode(BlobId::of(&data), &data, 3).unwrap().codec, Codec::Zstd);
        dicts.finish().unwrap();
        let id = dicts.current(Family::Html).expect("trained at the end");
        assert_eq!(Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap().current(Family::Html), Some(id));
    }

    /// Documents stored by other threads while one trains wait for the
    /// dictionary: the only ones stored without it are the samples it was
    /// trained on.
    #[test]
    fn documents_stored_during_training_wait_for_the_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(dir.path()).unwrap();
        let dicts = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
        let threads = 4;
        let codecs: Vec<Codec> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let dicts = &dicts;
                    s.spawn(move || {
                        (0..200)
                            .map(|i| {
                                let data = page(i * threads + t);
                                dicts.encode(BlobId::of(&data), &data, 3).unwrap().codec
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert!(dicts.current(Family::Html).is_some());
        let without = codecs.iter().filter(|c| **c == Codec::Zstd).count();
        let smallest = (0..threads * 200).map(|i| page(i).len()).min().unwrap();
        assert!(without <= FIRST_SAMPLE_BYTES.div_ceil(smallest), "{without} pages stored without the dictionary");
        assert_eq!(codecs.len() - without, codecs.iter().filter(|c| **c == Codec::ZstdDict).count());
    }

    #[test]
    fn a_damaged_or_missing_dictionary_is_named_by_every_blob_that_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(dir.path()).unwrap();
        let dicts = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
        for i in 0..SAMPLE_COUNT {
            let data = page(i);
            dicts.encode(BlobId::of(&data), &data, 3).unwrap();
        }
        let dict = dicts.current(Family::Html).unwrap();
        let data = page(9_999);
        let e = dicts.encode(BlobId::of(&data), &data, 3).unwrap();
        assert_eq!(e.codec, Codec::ZstdDict);
        let path = dir.path().join("dictionaries").join(dict.to_hex());
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        // A fresh archive handle: nothing cached.
        let fresh = Archive::open(dir.path()).unwrap();
        let err = fresh.decode_blob(e.id, e.codec, e.raw_len, &e.data).unwrap_err().to_string();
        assert!(err.contains(&e.id.to_string()) && err.contains(&dict.to_string()) && err.contains("damaged"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let fresh = Archive::open(dir.path()).unwrap();
        let err = fresh.decode_blob(e.id, e.codec, e.raw_len, &e.data).unwrap_err().to_string();
        assert!(err.contains(&dict.to_string()) && err.contains("missing"), "{err}");
        // A writer opened now trains anew rather than using it.
        assert_eq!(Dictionaries::open(&fresh, true, SAMPLE_COUNT).unwrap().current(Family::Html), None);
    }
}
