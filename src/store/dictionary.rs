//! zstd dictionaries trained from the archive's own documents.
//!
//! Pages of one site share most of their bytes (templates, navigation,
//! inline scripts), which zstd cannot exploit one page at a time: a page
//! compressed alone pays again for everything its siblings already said. A
//! dictionary trained on earlier pages of the same kind carries that
//! shared part, so each page stores only what is its own.
//!
//! A writer collects samples of each [`Family`] as it stores bodies (at
//! most [`SAMPLE_BYTES`] of them, each cut to [`SAMPLE_CUT`]), trains a
//! dictionary once it has enough, writes it durably to
//! `dictionaries/<id>` and only then encodes with it (codec `zstd-dict`,
//! which names the dictionary in each blob). Dictionaries are never
//! deleted: they are few and small, and any blob may name one.
//! Later writers start from the newest dictionary of each family.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::{BackendError, FileKind};
use crate::store::blob::{self, EncodedBlob};
use crate::store::id::BlobId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Size of a trained dictionary (zstd's own default).
pub const DICTIONARY_SIZE: usize = 112_640;
/// Samples gathered per family before training, in bytes...
pub const SAMPLE_BYTES: usize = 4 << 20;
/// ...or in count, whichever comes first (the default; `[store]
/// dictionary_samples`).
pub const SAMPLE_COUNT: usize = 512;
/// Below this many samples zstd's trainer has too little to go on.
pub const MIN_SAMPLES: usize = 64;
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
}

impl Family {
    /// The name in a dictionary file's header.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Html => "html",
            Family::Xml => "xml",
            Family::Json => "json",
        }
    }

    fn parse(s: &str) -> Option<Family> {
        [Family::Html, Family::Xml, Family::Json].into_iter().find(|f| f.as_str() == s)
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
            _ => None,
        }
    }
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

/// The writer's side: the dictionary in use for each family, and samples
/// for the families that have none yet. Shared by every thread encoding
/// bodies for one writer.
pub struct Dictionaries {
    archive: Archive,
    enabled: bool,
    samples: usize,
    state: Mutex<HashMap<Family, State>>,
}

impl std::fmt::Debug for Dictionaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionaries").field("enabled", &self.enabled).finish()
    }
}

enum State {
    Collecting {
        samples: Vec<Vec<u8>>,
        bytes: usize,
    },
    /// One thread trains; the others encode without a dictionary meanwhile.
    Training,
    Ready(Arc<Ready>),
    /// Training failed (too little variety, say): not retried this run.
    Failed,
}

struct Ready {
    id: BlobId,
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
            let mut newest: HashMap<Family, (i64, BlobId)> = HashMap::new();
            for (family, created, id) in list(archive)? {
                let e = newest.entry(family).or_insert((created, id));
                if (created, id) > *e {
                    *e = (created, id);
                }
            }
            for (family, (_, id)) in newest {
                match archive.dictionary(&id) {
                    Ok(zstd) => {
                        state.insert(family, State::Ready(Arc::new(Ready::new(id, zstd.to_vec()))));
                    }
                    // Blobs that use it are verify's concern; new ones get
                    // a new dictionary.
                    Err(e) => tracing::warn!("not using {e}"),
                }
            }
        }
        let samples = samples.max(MIN_SAMPLES);
        Ok(Dictionaries { archive: archive.clone(), enabled, samples, state: Mutex::new(state) })
    }

    /// The dictionary in use for `family`, if any.
    pub fn current(&self, family: Family) -> Option<BlobId> {
        match self.state.lock().expect("no panics while held").get(&family) {
            Some(State::Ready(r)) => Some(r.id),
            _ => None,
        }
    }

    /// Encodes a body whose id the caller computed: with its family's
    /// dictionary when there is one, else as [`blob::encode_with_id`] does
    /// (keeping a sample, and training once there are enough). Fails only
    /// when a trained dictionary cannot be written.
    pub fn encode(&self, id: BlobId, data: &[u8], level: i32) -> Result<EncodedBlob, ArchiveError> {
        let family = if self.enabled && data.len() >= 64 { Family::sniff(data) } else { None };
        let Some(family) = family else { return Ok(blob::encode_with_id(id, data, level)) };
        let ready = {
            let mut state = self.state.lock().expect("no panics while held");
            let s = state.entry(family).or_insert_with(|| State::Collecting { samples: Vec::new(), bytes: 0 });
            match s {
                State::Ready(r) => Some(r.clone()),
                State::Training | State::Failed => None,
                State::Collecting { samples, bytes } => {
                    let cut = &data[..data.len().min(SAMPLE_CUT)];
                    *bytes += cut.len();
                    samples.push(cut.to_vec());
                    if *bytes >= SAMPLE_BYTES || samples.len() >= self.samples {
                        let State::Collecting { samples, .. } = std::mem::replace(s, State::Training) else {
                            unreachable!()
                        };
                        drop(state);
                        self.train(family, samples)?;
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
            Some(State::Ready(r)) => r.clone(),
            _ => return None,
        };
        blob::encode_with_dictionary(id, data, ready.id, &*ready.encoder(level)?)
    }

    /// At the end of a run: a family that gathered at least
    /// [`MIN_SAMPLES`] documents but not enough to train during the run
    /// trains now, so that the next runs (which often bring only a few new
    /// pages each) start with a dictionary.
    pub fn finish(&self) -> Result<(), ArchiveError> {
        let ready: Vec<(Family, Vec<Vec<u8>>)> = {
            let mut state = self.state.lock().expect("no panics while held");
            state
                .iter_mut()
                .filter(|(_, s)| matches!(s, State::Collecting { samples, .. } if samples.len() >= MIN_SAMPLES))
                .map(|(f, s)| match std::mem::replace(s, State::Training) {
                    State::Collecting { samples, .. } => (*f, samples),
                    _ => unreachable!("matched above"),
                })
                .collect()
        };
        for (family, samples) in ready {
            self.train(family, samples)?;
        }
        Ok(())
    }

    /// Trains a dictionary from `samples`, makes it durable in the archive,
    /// then puts it in use: no blob names a dictionary that is not stored.
    fn train(&self, family: Family, samples: Vec<Vec<u8>>) -> Result<(), ArchiveError> {
        let started = std::time::Instant::now();
        let (count, size) = (samples.len(), samples.iter().map(Vec::len).sum::<usize>());
        let trained =
            if samples.len() >= MIN_SAMPLES { zstd::dict::from_samples(&samples, DICTIONARY_SIZE).ok() } else { None };
        drop(samples);
        let set = |s: State| {
            self.state.lock().expect("no panics while held").insert(family, s);
        };
        let Some(zstd) = trained else {
            tracing::info!("no {} dictionary: too few or too uniform samples", family.as_str());
            set(State::Failed);
            return Ok(());
        };
        let bytes = Dictionary::to_bytes(family, chrono::Utc::now().timestamp(), &zstd);
        let id = BlobId::of(&bytes);
        if let Err(e) = self.archive.backend().write(FileKind::Dictionary, &id.to_hex(), &bytes) {
            set(State::Failed);
            return Err(e.into());
        }
        tracing::info!(
            "trained {} dictionary {} ({} bytes) from {count} samples ({size} bytes) in {:.2} s",
            family.as_str(),
            id.short(),
            zstd.len(),
            started.elapsed().as_secs_f64()
        );
        set(State::Ready(Arc::new(Ready::new(id, zstd))));
        Ok(())
    }

    /// How many samples a family holds now.
    #[cfg(test)]
    fn samples(&self, family: Family) -> usize {
        match self.state.lock().unwrap().get(&family) {
            Some(State::Collecting { samples, .. }) => samples.len(),
            _ => 0,
        }
    }
}

impl Ready {
    fn new(id: BlobId, zstd: Vec<u8>) -> Ready {
        Ready { id, encoders: Mutex::new(HashMap::new()), zstd }
    }
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

    #[test]
    fn families_are_sniffed_from_the_bytes() {
        assert_eq!(Family::sniff(b"\xEF\xBB\xBF  <!doctype HTML><p>x"), Some(Family::Html));
        assert_eq!(Family::sniff(b"<!-- c --><html lang=zh>"), Some(Family::Html));
        assert_eq!(Family::sniff(b"<?xml version=\"1.0\"?><rss>"), Some(Family::Xml));
        assert_eq!(Family::sniff(b"\n{\"version\": \"https://jsonfeed.org/version/1.1\"}"), Some(Family::Json));
        assert_eq!(Family::sniff(b"body { color: red }"), None);
        assert_eq!(Family::sniff(b"\x89PNG\r\n"), None);
        assert_eq!(Family::sniff(b"   "), None);
    }

    #[test]
    fn a_dictionary_is_trained_stored_first_and_used_and_a_new_writer_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(dir.path()).unwrap();
        let dicts = Dictionaries::open(&archive, true, SAMPLE_COUNT).unwrap();
        let mut plain = 0;
        let mut stored = Vec::new();
        for i in 0..SAMPLE_COUNT + 50 {
            let data = page(i);
            let enc = dicts.encode(BlobId::of(&data), &data, 3).unwrap();
            if enc.codec == Codec::Zstd {
                plain += enc.data.len();
            }
            stored.push((data, enc));
        }
        let id = dicts.current(Family::Html).expect("trained after enough samples");
        assert_eq!(dicts.samples(Family::Html), 0, "samples are let go once trained");
        assert!(archive.backend().size(FileKind::Dictionary, &id.to_hex()).is_ok(), "stored");
        let with: Vec<_> = stored.iter().filter(|(_, e)| e.codec == Codec::ZstdDict).collect();
        assert_eq!(with.len(), 50, "every page after training uses it");
        // Pages share their template: with the dictionary each costs a
        // fraction of what it costs alone.
        let avg_plain = plain / SAMPLE_COUNT;
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
