//! Ingest and verify throughput on a mixed corpus, next to the practical
//! limit measured in the same run on the same bytes:
//! - `limit/sha256+zstd`: SHA-256 and zstd (level 3) over every byte, one thread;
//! - `ingest/files`: `kura::sources::archive_files` into a fresh archive (read,
//!   hash, dedup, compress, pack, fsync, commit);
//! - `limit/unzstd+sha256` and `verify/read-data`: decoding and re-hashing
//!   every stored blob vs `kura::inspect::verify` with `read_data`.
//!
//! Corpus: 20-100 KB HTML-like pages and 30-500 KB incompressible "images",
//! with 60% of the files duplicates of others. `KURA_BENCH_MB` sets its size
//! (default 48 MB).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kura::inspect::{VerifyOptions, verify};
use kura::store::{Archive, Manifest, WriteOptions, Writer};
use std::path::{Path, PathBuf};

fn page(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let words = [
        "跨境电商",
        "互联网大厂",
        "<p>",
        "</p>\n",
        "<img src=\"https://img.example.com/",
        "\">",
        "archive",
        "出海",
        "storehouse",
        "link rot",
        "品牌",
    ];
    let mut s = String::from("<!doctype html><html><head><meta charset=utf-8><title>t</title></head><body>\n");
    while s.len() < len {
        s.push_str(words[rng.usize(..words.len())]);
        s.push_str(&rng.u32(..100_000).to_string());
        s.push(' ');
    }
    s.into_bytes()
}

fn image(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut v = b"\xFF\xD8\xFF\xE0".to_vec();
    v.extend((4..len).map(|_| rng.u8(..)));
    v
}

/// Writes the corpus; returns its directory and total bytes.
fn corpus(dir: &Path, target: usize) -> (PathBuf, u64) {
    let mut rng = fastrand::Rng::with_seed(2026);
    let root = dir.join("corpus");
    std::fs::create_dir_all(&root).unwrap();
    let mut unique: Vec<Vec<u8>> = Vec::new();
    let (mut total, mut i) = (0usize, 0);
    while total < target {
        let data = if !unique.is_empty() && rng.f64() < 0.6 {
            unique[rng.usize(..unique.len())].clone()
        } else {
            let d = if rng.bool() {
                let len = rng.usize(20_000..100_000);
                page(&mut rng, len)
            } else {
                let len = rng.usize(30_000..500_000);
                image(&mut rng, len)
            };
            unique.push(d.clone());
            d
        };
        total += data.len();
        std::fs::write(root.join(format!("{i:06}")), data).unwrap();
        i += 1;
    }
    (root, total as u64)
}

fn ingest(archive_dir: &Path, src: &Path) -> Archive {
    let _ = std::fs::remove_dir_all(archive_dir);
    let archive = Archive::open_or_init(archive_dir).unwrap();
    let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
    let entries = kura::sources::archive_files(&mut w, &[src.to_path_buf()], 2, &|_| {}).unwrap();
    let now = chrono::Utc::now();
    let m = Manifest {
        header: kura::store::ManifestHeader {
            version: 1,
            job: "bench".into(),
            started: now,
            finished: now,
            hostname: String::new(),
            sources: vec![],
            tags: vec![],
        },
        entries,
    };
    w.commit(&m).unwrap();
    archive
}

fn benches(c: &mut Criterion) {
    let mb: usize = std::env::var("KURA_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let tmp = tempfile::tempdir().unwrap();
    let (src, total) = corpus(tmp.path(), mb << 20);
    let files: Vec<Vec<u8>> = {
        let mut v: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v.iter().map(|p| std::fs::read(p).unwrap()).collect()
    };

    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total));
    g.bench_function("limit/sha256+zstd", |b| {
        b.iter(|| {
            for f in &files {
                std::hint::black_box(kura::store::BlobId::of(f));
                std::hint::black_box(zstd::bulk::compress(f, 3).unwrap());
            }
        })
    });
    let archive_dir = tmp.path().join("archive");
    g.bench_function("kura/archive-files", |b| b.iter(|| ingest(&archive_dir, &src)));
    g.finish();

    // Verify: the same corpus, archived once.
    let archive = ingest(&archive_dir, &src);
    let index = archive.pack_index().unwrap();
    let stored: Vec<(kura::store::PackEntry, Vec<u8>)> = index
        .packs
        .iter()
        .flat_map(|(pack, _, entries)| {
            let data = archive.backend().read(kura::store::FileKind::Pack, &pack.to_hex()).unwrap();
            entries
                .iter()
                .map(move |e| (*e, data[e.offset as usize..(e.offset + e.stored_len) as usize].to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    let unique: u64 = stored.iter().map(|(e, _)| e.raw_len).sum();
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(unique));
    g.bench_function("limit/unzstd+sha256", |b| {
        b.iter(|| {
            for (e, s) in &stored {
                std::hint::black_box(kura::store::decode_blob(e.id, e.codec, e.raw_len, s).unwrap());
            }
        })
    });
    let opts = VerifyOptions { read_data: true, subset_pct: None, threads: 2 };
    g.bench_function("kura/verify-read-data", |b| {
        b.iter(|| assert!(verify(&archive, opts, &|_| {}).unwrap().healthy()))
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
