//! zstd dictionaries through the CLI: trained from a run's own pages,
//! stored before any blob names them, read back by cat, restore, verify,
//! copy and prune, and a damaged one named with every page it affects.

mod common;

use common::*;
use kura::store::{Archive, Codec};
use std::path::{Path, PathBuf};

/// Pages of one site: the same template around a text of their own.
fn site(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let nav: String = (0..60).map(|i| format!("<li><a href=\"/topics/{i}\">话题 {i}</a></li>\n")).collect();
    (0..n)
        .map(|i| {
            let body = String::from_utf8(article(i as u64, 1_500)).unwrap();
            let page = format!(
                "<!DOCTYPE html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\"><title>第 {i} 篇</title>\
                 <link rel=\"stylesheet\" href=\"/assets/site.css\"><script>window.dataLayer=[];function gtag()\
                 {{dataLayer.push(arguments)}}</script></head>\n<body><header><ul class=\"nav\">{nav}</ul></header>\
                 <main><article>{body}</article></main><footer>© 2026 Example Press · 京ICP备00000000号</footer>\
                 </body></html>\n"
            );
            let p = dir.join(format!("p{i:04}.html"));
            std::fs::write(&p, page).unwrap();
            p
        })
        .collect()
}

fn config(dir: &Path, dictionaries: bool) -> PathBuf {
    let p = dir.join(format!("kura-{dictionaries}.toml"));
    std::fs::write(&p, format!("[store]\ndictionaries = {dictionaries}\ndictionary_samples = 64\n")).unwrap();
    p
}

/// Blobs stored with a dictionary, from the pack trailers.
fn dict_blobs(root: &Path) -> usize {
    let a = Archive::open(root).unwrap();
    a.pack_index().unwrap().blobs.values().filter(|(_, e)| e.codec == Codec::ZstdDict).count()
}

fn dictionaries(root: &Path) -> Vec<PathBuf> {
    walk_files(&root.join("dictionaries"))
}

#[test]
fn dictionaries_are_trained_used_carried_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let pages = site(&tmp.path().join("src"), 200);
    let src = tmp.path().join("src");
    let (on, off) = (config(tmp.path(), true), config(tmp.path(), false));
    let root = tmp.path().join("a");
    let plain = tmp.path().join("plain");
    let run = |root: &Path, cfg: &Path| {
        kura_ok(root, &["--config", cfg.to_str().unwrap(), "archive", src.to_str().unwrap()]);
    };
    run(&root, &on);
    run(&plain, &off);

    // One dictionary, trained on the first 64 pages, used for the rest.
    assert_eq!(dictionaries(&root).len(), 1);
    assert!(dictionaries(&plain).is_empty());
    assert!(dict_blobs(&root) >= 100, "{} pages with the dictionary", dict_blobs(&root));
    assert_eq!(dict_blobs(&plain), 0);
    assert!(
        pack_bytes(&root) < pack_bytes(&plain),
        "with the dictionary {} bytes, without {}",
        pack_bytes(&root),
        pack_bytes(&plain)
    );
    // Every page reads back exactly.
    for p in &pages {
        let url = url::Url::from_file_path(p).unwrap();
        let out = kura(&root, &["cat", "latest", url.as_str()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, std::fs::read(p).unwrap(), "{url}");
    }
    let restored = tmp.path().join("restored");
    kura_ok(&root, &["restore", "latest", restored.to_str().unwrap(), "--layout", "raw"]);
    assert!(walk_files(&restored).len() >= pages.len(), "every page restored");
    let v: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!((v["dictionaries"].as_u64(), v["problems"].as_array().unwrap().len()), (Some(1), 0), "{v:#}");

    // A second run starts from the stored dictionary: no second one.
    std::fs::write(src.join("late.html"), std::fs::read(&pages[7]).unwrap().repeat(2)).unwrap();
    run(&root, &on);
    assert_eq!(dictionaries(&root).len(), 1);

    // Copy carries the dictionary; what arrives reads back.
    let copy = tmp.path().join("copy");
    let out = kura_ok(&copy, &["copy", root.to_str().unwrap(), copy.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["dictionaries_copied"], 1, "{report:#}");
    let v: serde_json::Value = serde_json::from_str(&kura_ok(&copy, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v:#}");

    // Prune removes no dictionary (no manifest names one, blobs do).
    kura_ok(&root, &["forget", "--keep-last", "1"]);
    kura_ok(&root, &["prune", "--repack-below", "1.0"]);
    assert_eq!(dictionaries(&root).len(), 1);
    let v: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v:#}");

    // Damage: verify names the dictionary, and with --read-data every page
    // compressed with it, with the URL it was archived under.
    let dict = &dictionaries(&root)[0];
    let mut bytes = std::fs::read(dict).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(dict, bytes).unwrap();
    let name = dict.file_name().unwrap().to_str().unwrap();
    let out = kura(&root, &["verify", "--json"]);
    assert_ne!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["code"] == "dictionary-damaged" && p["blob"] == name), "{v:#}");
    let out = kura(&root, &["verify", "--read-data", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged: Vec<_> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["code"] == "blob-damaged" && p["message"].as_str().unwrap().contains(name))
        .collect();
    assert_eq!(damaged.len(), dict_blobs(&root), "every blob that uses it is named");
    assert!(damaged.iter().all(|p| !p["affected"].as_array().unwrap().is_empty()), "{damaged:#?}");
    // cat of such a page fails clearly rather than printing anything.
    let victim = pages.last().unwrap();
    let out = kura(&root, &["cat", "latest", url::Url::from_file_path(victim).unwrap().as_str()]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains(name), "{}", String::from_utf8_lossy(&out.stderr));
    // The damaged archive still accepts runs: a writer skips a dictionary
    // it cannot read and trains a new one.
    for (i, p) in pages.iter().take(70).enumerate() {
        std::fs::write(src.join(format!("new{i}.html")), std::fs::read(p).unwrap().repeat(3)).unwrap();
    }
    run(&root, &on);
    assert_eq!(dictionaries(&root).len(), 2);
}

#[test]
fn prune_recompresses_the_pages_of_repacked_packs_with_the_dictionary() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let pages = site(&src, 150);
    let (on, off) = (config(tmp.path(), true), config(tmp.path(), false));
    let root = tmp.path().join("a");
    let run = |cfg: &Path| {
        kura_ok(&root, &["--config", cfg.to_str().unwrap(), "archive", "--pack-size-mib", "1", src.to_str().unwrap()]);
    };
    // Pages stored before there was a dictionary...
    run(&off);
    assert_eq!(dict_blobs(&root), 0);
    // ...then a run that trains one on new pages.
    for (i, p) in pages.iter().take(80).enumerate() {
        std::fs::write(src.join(format!("new{i}.html")), std::fs::read(p).unwrap().repeat(2)).unwrap();
    }
    run(&on);
    assert_eq!(dictionaries(&root).len(), 1);
    let before = dict_blobs(&root);
    // Pages gone from the site leave garbage in every pack of the first run.
    for p in pages.iter().step_by(3) {
        std::fs::remove_file(p).unwrap();
    }
    run(&on);
    kura_ok(&root, &["forget", "--keep-last", "1"]);
    let report: serde_json::Value =
        serde_json::from_str(&kura_ok(&root, &["prune", "--repack-below", "1.0", "--json"])).unwrap();
    let recompressed = report["blobs_recompressed"].as_u64().unwrap() as usize;
    assert!(recompressed >= 90, "{report:#}");
    assert_eq!(dict_blobs(&root), before + recompressed);
    let v: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v:#}");
    for p in walk_files(&src) {
        let out = kura(&root, &["cat", "latest", url::Url::from_file_path(&p).unwrap().as_str()]);
        assert_eq!(out.stdout, std::fs::read(&p).unwrap(), "{}", p.display());
    }
}

#[test]
fn prune_recompress_rewrites_pages_stored_without_the_dictionary_unless_dictionaries_are_off() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let pages = site(&src, 150);
    let (on, off) = (config(tmp.path(), true), config(tmp.path(), false));
    let root = tmp.path().join("a");
    let kura_with = |cfg: &Path, args: &[&str]| {
        let mut all = vec!["--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        kura_ok(&root, &all)
    };
    kura_with(&off, &["archive", src.to_str().unwrap()]);
    for (i, p) in pages.iter().take(80).enumerate() {
        std::fs::write(src.join(format!("new{i}.html")), std::fs::read(p).unwrap().repeat(2)).unwrap();
    }
    kura_with(&on, &["archive", src.to_str().unwrap()]);
    assert_eq!(dictionaries(&root).len(), 1);
    let before = dict_blobs(&root);
    assert!(before < 30, "{before}: most pages were stored before the dictionary");
    let prune = |cfg: &Path| -> serde_json::Value {
        serde_json::from_str(&kura_with(cfg, &["prune", "--recompress", "--json"])).unwrap()
    };
    // `[store] dictionaries = false` is a promise: prune keeps it too
    // (it merges the runs' small packs, their blobs as they were stored).
    let r = prune(&off);
    assert_eq!(r["blobs_recompressed"].as_u64(), Some(0), "{r:#}");
    assert_eq!(dict_blobs(&root), before);
    let size_before = dir_size(&root.join("packs"));
    let r = prune(&on);
    let recompressed = r["blobs_recompressed"].as_u64().unwrap() as usize;
    assert!(recompressed >= 200, "{r:#}");
    assert_eq!(dict_blobs(&root), before + recompressed);
    assert!(dir_size(&root.join("packs")) * 10 < size_before * 8, "{} vs {size_before}", dir_size(&root.join("packs")));
    let v: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v:#}");
    for p in walk_files(&src) {
        let out = kura(&root, &["cat", "latest", url::Url::from_file_path(&p).unwrap().as_str()]);
        assert_eq!(out.stdout, std::fs::read(&p).unwrap(), "{}", p.display());
    }
    // Done once: nothing left to recompress.
    let r = prune(&on);
    assert_eq!((r["blobs_recompressed"].as_u64(), r["packs_repacked"].as_u64()), (Some(0), Some(0)), "{r:#}");
}

fn dir_size(dir: &Path) -> u64 {
    walk_files(dir).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}
