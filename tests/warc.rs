//! WARC/WACZ export and snapshot diff, checked by independent readers:
//! PyPI's `warcio` (`warcio check`, `warcio index`) and Python's `zipfile`,
//! plus a record-by-record parse in Rust of every gzip member.

mod common;

use common::{kura, kura_ok};
use kura::export::{WarcOptions, export_warc, sha256_label};
use kura::pipeline::{Progress, RunOptions, run};
use kura::store::{Archive, BlobId, Entry, Kind, Manifest, WriteOptions, Writer};
use kura_site::{SiteConfig, serve};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::process::Command;
use std::sync::Arc;

/// Runs a Python tool; fails the test, saying how to install it, if Python
/// or warcio is missing: this check must not be skipped silently.
fn python(args: &[&str]) -> std::process::Output {
    let probe = Command::new("python3").args(["-c", "import warcio"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "these tests validate WARC output with warcio, which is not installed: run `python3 -m pip install warcio`"
        ),
    }
    Command::new("python3").args(args).output().expect("python3 runs")
}

/// `warcio <args>` (through its module, so no PATH entry is needed).
fn warcio(args: &[&str]) -> String {
    let mut all = vec!["-c", "import sys; from warcio.cli import main; sys.exit(main())"];
    all.extend_from_slice(args);
    let out = python(&all);
    assert!(
        out.status.success(),
        "warcio {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// One record as read back: where its gzip member is, its fields, its block.
#[derive(Debug)]
struct Rec {
    offset: u64,
    length: u64,
    fields: HashMap<String, String>,
    block: Vec<u8>,
}

impl Rec {
    fn get(&self, name: &str) -> &str {
        self.fields.get(&name.to_ascii_lowercase()).map(String::as_str).unwrap_or("")
    }
}

fn split_head(data: &[u8]) -> (&str, &[u8]) {
    let at = data.windows(4).position(|w| w == b"\r\n\r\n").expect("a head ends with a blank line");
    (std::str::from_utf8(&data[..at]).expect("ASCII head"), &data[at + 4..])
}

fn parse_fields(head: &str) -> HashMap<String, String> {
    head.split("\r\n")
        .skip(1)
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("field line {l:?}"));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect()
}

/// Reads every gzip member in turn; each must hold exactly one record.
fn read_members(data: &[u8]) -> Vec<Rec> {
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        let mut raw = Vec::new();
        dec.read_to_end(&mut raw).expect("a gzip member");
        let after = dec.into_inner();
        let (offset, length) = ((data.len() - rest.len()) as u64, (rest.len() - after.len()) as u64);
        rest = after;
        let (head, tail) = split_head(&raw);
        assert!(head.starts_with("WARC/1.1\r\n"), "{head}");
        let fields = parse_fields(head);
        let len: usize = fields["content-length"].parse().unwrap();
        assert_eq!(&tail[len..], b"\r\n\r\n", "record ends right after its block");
        let block = tail[..len].to_vec();
        assert_eq!(fields["warc-block-digest"], sha256_label(&Sha256::digest(&block).into()));
        out.push(Rec { offset, length, fields, block });
    }
    out
}

fn options() -> RunOptions {
    let mut o = RunOptions::default();
    o.fetch.allow_private = true;
    o.fetch.per_host_interval_ms = 0;
    o.fetch.backoff_base_ms = 10;
    o.fetch.retries = 2;
    o
}

/// The Referer sent on the final request of an entry.
fn final_referer(e: &Entry) -> Option<&str> {
    match e.hops.last() {
        Some(h) => h.referer.as_deref(),
        None => e.referer.as_deref(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_site_exports_to_a_warc_that_warcio_reads() {
    let site = serve(SiteConfig { articles: 6, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(&tmp.path().join("a")).unwrap();
    let report = run(&archive, &[site.sitemap.to_string()], options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let warc = tmp.path().join("site.warc.gz");
    let cdxj = tmp.path().join("site.cdxj");
    let opts = WarcOptions { cdxj: Some(cdxj.clone()), ..Default::default() };
    let r = export_warc(&archive, report.snapshot, &warc, &opts).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);

    // What the manifest says the file must hold.
    let mut seen = HashSet::new();
    let (mut responses, mut revisits, mut redirects) = (0, 0, 0);
    for e in m.entries.iter().filter(|e| e.blob.is_some()) {
        if seen.insert(e.blob.unwrap()) {
            responses += 1
        } else {
            revisits += 1
        }
        redirects += e.hops.windows(2).filter(|w| w[0].url != w[1].url && w[0].status.unwrap() / 100 == 3).count();
    }
    let failed = m.entries.iter().filter(|e| e.blob.is_none()).count() as u64;
    assert!(revisits > 0 && redirects > 0 && failed > 0, "the sample site has aliases, redirects, failures");
    assert_eq!(
        (r.responses, r.revisits, r.redirects, r.skipped_failed),
        (responses, revisits, redirects as u64, failed)
    );
    assert_eq!(r.requests, r.responses + r.revisits + r.redirects);
    assert_eq!(r.records, 1 + r.requests * 2);

    // Independent reader: digests check, and every record is listed where we put it.
    let check = warcio(&["check", "-v", warc.to_str().unwrap()]);
    assert!(check.contains("digest pass"), "{check}");
    let data = std::fs::read(&warc).unwrap();
    let recs = read_members(&data);
    assert_eq!(recs.len() as u64, r.records);
    let listed = warcio(&["index", "-f", "offset,length,warc-type,warc-target-uri", warc.to_str().unwrap()]);
    let listed: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), recs.len());
    for (w, rec) in listed.iter().zip(&recs) {
        assert_eq!(w["offset"], rec.offset.to_string());
        assert_eq!(w["length"], rec.length.to_string());
        assert_eq!(w["warc-type"], rec.get("warc-type"));
        assert_eq!(w["warc-target-uri"].as_str().unwrap_or(""), rec.get("warc-target-uri"));
    }

    // warcinfo first, naming the snapshot.
    assert_eq!(recs[0].get("warc-type"), "warcinfo");
    assert!(String::from_utf8_lossy(&recs[0].block).contains(&report.snapshot.to_hex()));

    // Every response body is a stored body, byte for byte, with its digest;
    // every request carries the Referer that was sent.
    let by_id: HashMap<&str, &Rec> = recs.iter().map(|r| (r.get("warc-record-id"), r)).collect();
    let requests: HashMap<&str, &Rec> =
        recs.iter().filter(|r| r.get("warc-type") == "request").map(|r| (r.get("warc-concurrent-to"), r)).collect();
    let index = archive.pack_index().unwrap();
    for e in m.entries.iter().filter(|e| e.blob.is_some()) {
        let target = e.final_url.as_deref().unwrap_or(&e.url);
        let blob = e.blob.unwrap();
        let digest = sha256_label(blob.as_bytes());
        let rec = recs
            .iter()
            .find(|r| {
                r.get("warc-target-uri") == target
                    && r.get("warc-payload-digest") == digest
                    && requests.get(r.get("warc-record-id")).and_then(|q| q.get_header("referer")).as_deref()
                        == final_referer(e)
            })
            .unwrap_or_else(|| panic!("no record for {target} with referer {:?}", final_referer(e)));
        let (head, body) = split_head(&rec.block);
        assert!(!head.to_ascii_lowercase().contains("content-encoding"), "{head}");
        match rec.get("warc-type") {
            "response" => {
                assert_eq!(body, archive.read_blob(&index, &blob).unwrap(), "{target}");
                assert!(head.starts_with(&format!("HTTP/1.1 {} ", e.status.unwrap_or(200))), "{head}");
                assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())), "{head}");
            }
            "revisit" => {
                assert!(body.is_empty());
                let first = by_id[rec.get("warc-refers-to")];
                assert_eq!(first.get("warc-payload-digest"), digest);
                assert_eq!(first.get("warc-target-uri"), rec.get("warc-refers-to-target-uri"));
                assert_eq!(first.get("warc-date"), rec.get("warc-refers-to-date"));
            }
            other => panic!("{other} for {target}"),
        }
        let req = requests[rec.get("warc-record-id")];
        let (line, _) = split_head(&req.block);
        assert!(line.starts_with("GET /"), "{line}");
        assert!(line.contains("\r\nUser-Agent: Kura/"), "{line}");
    }
    // Each redirect hop: a 3xx response pointing at the next URL.
    let e = m.entries.iter().find(|e| e.hops.len() > 1 && e.hops[0].status == Some(302)).unwrap();
    let hop = recs.iter().find(|r| r.get("warc-target-uri") == e.hops[0].url).unwrap();
    let (head, _) = split_head(&hop.block);
    assert!(head.starts_with("HTTP/1.1 302 Found\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nLocation: {}", e.hops[1].url)), "{head}");

    // CDXJ: sorted, one line per response/revisit, pointing at the right member.
    let text = std::fs::read_to_string(&cdxj).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, r.responses + r.revisits + r.redirects);
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "sorted");
    for l in &lines {
        let mut parts = l.splitn(3, ' ');
        let (key, ts, json) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert!(key.starts_with("1,0,0,127:") && key.contains(")/"), "{key}");
        assert_eq!(ts.len(), 14);
        let j: serde_json::Value = serde_json::from_str(json).unwrap();
        let offset: u64 = j["offset"].as_str().unwrap().parse().unwrap();
        let rec = recs.iter().find(|r| r.offset == offset).unwrap();
        assert_eq!(j["length"], rec.length.to_string());
        assert_eq!(j["url"], rec.get("warc-target-uri"));
        assert_eq!(j["digest"], rec.get("warc-payload-digest"));
        assert_eq!(j["filename"], "site.warc.gz");
    }

    // The same snapshot exports to the same bytes.
    // (The file name is in the warcinfo record, so keep it.)
    std::fs::create_dir(tmp.path().join("again")).unwrap();
    let again = tmp.path().join("again/site.warc.gz");
    export_warc(&archive, report.snapshot, &again, &WarcOptions::default()).unwrap();
    assert!(std::fs::read(&again).unwrap() == data, "exports differ");
    site.shutdown().await;
}

trait HeaderOf {
    fn get_header(&self, name: &str) -> Option<String>;
}

impl HeaderOf for Rec {
    /// An HTTP header of the record's block.
    fn get_header(&self, name: &str) -> Option<String> {
        let (head, _) = split_head(&self.block);
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case(name).then(|| v.to_string())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wacz_package_holds_checked_resources() {
    let site = serve(SiteConfig { articles: 6, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let archive = Archive::open_or_init(&root).unwrap();
    let report = run(&archive, &[site.feed.to_string()], options(), Arc::new(Progress::default())).await.unwrap();
    site.shutdown().await;
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let articles = m.entries.iter().filter(|e| e.kind == Some(Kind::Article) && e.blob.is_some()).count();
    assert_eq!(articles, 6);

    // Through the CLI.
    let wacz = tmp.path().join("site.wacz");
    let cdxj = tmp.path().join("beside.cdxj");
    let args =
        ["export", "warc", "latest", wacz.to_str().unwrap(), "--wacz", "--cdxj", cdxj.to_str().unwrap(), "--json"];
    let out = kura_ok(&root, &args);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["pages"], 6);
    // The index asked for beside the package is the one inside it.
    let script =
        "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('indexes/index.cdxj'))";
    let inside = python(&["-c", script, wacz.to_str().unwrap()]).stdout;
    assert!(!inside.is_empty());
    assert_eq!(std::fs::read(&cdxj).unwrap(), inside);

    // Python's zipfile and hashlib, and warcio on the WARC inside.
    let script = r#"
import hashlib, json, sys, zipfile
from warcio.archiveiterator import ArchiveIterator
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
names = z.namelist()
dp = json.loads(z.read("datapackage.json"))
assert dp["wacz_version"] == "1.1.1", dp
paths = sorted(r["path"] for r in dp["resources"])
assert paths == ["archive/data.warc.gz", "indexes/index.cdxj", "pages/pages.jsonl"], paths
for r in dp["resources"]:
    data = z.read(r["path"])
    assert r["bytes"] == len(data), r
    assert r["hash"] == "sha256:" + hashlib.sha256(data).hexdigest(), r
digest = json.loads(z.read("datapackage-digest.json"))
assert digest["hash"] == "sha256:" + hashlib.sha256(z.read("datapackage.json")).hexdigest()
pages = [json.loads(l) for l in z.read("pages/pages.jsonl").decode().splitlines()]
assert pages[0]["format"] == "json-pages-1.0", pages[0]
# Every index line points at a record of that URL inside the stored WARC.
info = z.getinfo("archive/data.warc.gz")
assert info.compress_type == zipfile.ZIP_STORED
lines = z.read("indexes/index.cdxj").decode().splitlines()
with z.open("archive/data.warc.gz") as f:
    warc = f.read()
import io
for line in lines:
    j = json.loads(line.split(" ", 2)[2])
    assert j["filename"] == "data.warc.gz"
    member = warc[int(j["offset"]):int(j["offset"]) + int(j["length"])]
    rec = next(iter(ArchiveIterator(io.BytesIO(member))))
    assert rec.rec_headers.get_header("WARC-Target-URI") == j["url"], (j, rec.rec_headers)
print(len(pages) - 1, len(lines))
"#;
    let out = python(&["-c", script, wacz.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let counts = String::from_utf8(out.stdout).unwrap();
    assert_eq!(counts.split_whitespace().next(), Some("6"), "{counts}");
    assert_eq!(counts.split_whitespace().nth(1).unwrap(), r["index_lines"].to_string());

    // The WARC inside passes warcio check on its own.
    let inner = tmp.path().join("data.warc.gz");
    let script =
        "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('archive/data.warc.gz'))";
    assert!(python(&["-c", script, wacz.to_str().unwrap(), inner.to_str().unwrap()]).status.success());
    warcio(&["check", inner.to_str().unwrap()]);
}

#[test]
fn local_files_export_as_resource_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let dir = tmp.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.png"), b"not really a png").unwrap();
    std::fs::write(dir.join("b.bin"), common::noise(1, 5000)).unwrap();
    kura_ok(&root, &["archive", dir.to_str().unwrap()]);
    let warc = tmp.path().join("f.warc.gz");
    let cdxj = tmp.path().join("f.cdxj");
    let out = kura_ok(
        &root,
        &["export", "warc", "latest", warc.to_str().unwrap(), "--cdxj", cdxj.to_str().unwrap(), "--json"],
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((r["resources"].as_u64(), r["records"].as_u64()), (Some(2), Some(3)));
    warcio(&["check", warc.to_str().unwrap()]);
    let recs = read_members(&std::fs::read(&warc).unwrap());
    let png = recs.iter().find(|r| r.get("warc-target-uri").ends_with("/a.png")).unwrap();
    assert_eq!(png.get("warc-type"), "resource");
    assert_eq!(png.get("content-type"), "image/png");
    assert_eq!(png.block, b"not really a png");
    assert!(std::fs::read_to_string(&cdxj).unwrap().lines().all(|l| l.starts_with("file:/")));
    // A file that cannot be written does not leave a partial one behind.
    let bad = kura(&root, &["export", "warc", "latest", tmp.path().join("no/such/dir/x.warc.gz").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Commits a snapshot of (url, kind, body) entries; `None` is a failure.
fn commit(archive: &Archive, entries: &[(&str, Kind, Option<&[u8]>)]) -> String {
    let mut w = Writer::open(archive, WriteOptions::default()).unwrap();
    let mut list = Vec::new();
    for (url, kind, body) in entries {
        let mut e = Entry { url: url.to_string(), kind: Some(*kind), ..Default::default() };
        match body {
            Some(b) => {
                let s = w.add(b).unwrap();
                (e.blob, e.size) = (Some(s.id), s.size);
            }
            None => e.error = Some("HTTP 404 Not Found".into()),
        }
        list.push(e);
    }
    let now = chrono::Utc::now();
    let m = Manifest {
        header: kura::store::ManifestHeader {
            version: 1,
            job: "t".into(),
            started: now,
            finished: now,
            hostname: String::new(),
            sources: vec![],
            tags: vec![],
        },
        entries: list,
    };
    w.commit(&m).unwrap().to_hex()
}

#[test]
fn diff_lists_added_removed_changed_by_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let archive = Archive::open_or_init(&root).unwrap();
    let a = commit(
        &archive,
        &[
            ("https://s/1.html", Kind::Article, Some(b"one")),
            ("https://s/2.html", Kind::Article, Some(b"two")),
            ("https://c/a.png", Kind::Image, Some(b"png a")),
            ("https://c/b.png", Kind::Image, Some(b"png b")),
        ],
    );
    let b = commit(
        &archive,
        &[
            ("https://s/1.html", Kind::Article, Some(b"one, edited")),
            ("https://s/3.html", Kind::Article, Some(b"three")),
            ("https://c/a.png", Kind::Image, Some(b"png a")),
            ("https://c/b.png", Kind::Image, None),
        ],
    );
    let json = kura_ok(&root, &["diff", &a[..10], &b, "--json"]);
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["from"], a);
    let kinds: BTreeMap<&str, &serde_json::Value> =
        d["kinds"].as_array().unwrap().iter().map(|k| (k["kind"].as_str().unwrap(), k)).collect();
    let urls = |k: &str, what: &str| -> Vec<String> {
        kinds[k][what].as_array().unwrap().iter().map(|c| c["url"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(urls("article", "added"), ["https://s/3.html"]);
    assert_eq!(urls("article", "removed"), ["https://s/2.html"]);
    assert_eq!(urls("article", "changed"), ["https://s/1.html"]);
    assert_eq!(kinds["article"]["changed"][0]["new_blob"], BlobId::of(b"one, edited").to_hex());
    assert_eq!(kinds["article"]["unchanged"], 0);
    assert_eq!(urls("image", "removed"), ["https://c/b.png"]);
    assert_eq!(kinds["image"]["removed"][0]["error"], "HTTP 404 Not Found");
    assert_eq!(kinds["image"]["unchanged"], 1);

    let text = kura_ok(&root, &["diff", &a, "latest"]);
    assert!(text.contains("article: 1 added, 1 removed, 1 changed, 0 unchanged"), "{text}");
    assert!(text.contains("  ~ https://s/1.html (3 B -> 11 B)"), "{text}");
    assert!(text.contains("  - https://c/b.png (5 B, now failing: HTTP 404 Not Found)"), "{text}");
    assert!(text.contains("image: 0 added, 1 removed, 0 changed, 1 unchanged"), "{text}");
    // Unknown snapshot: could-not-run.
    assert_eq!(kura(&root, &["diff", &a, "ffff"]).status.code(), Some(2));
}
