//! Prune: unreferenced data goes, referenced data stays intact, and a
//! SIGKILL at any moment of a prune leaves a clean archive.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// An archive with three snapshots over overlapping corpora; returns the
/// archive path and the snapshot ids in order.
fn setup(tmp: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let root = tmp.join("archive");
    let mut ids = Vec::new();
    for round in 0..3u64 {
        let src = tmp.join(format!("src{round}"));
        corpus(&src, 80, 100 + round);
        // Share some files between rounds so prune must keep them.
        if round > 0 {
            std::fs::copy(tmp.join("src0/f00001.bin"), src.join("shared.bin")).unwrap();
        }
        let out = kura_ok(&root, &["archive", "--pack-size-mib", "1", src.to_str().unwrap()]);
        ids.push(out.trim().to_string());
    }
    (root, ids)
}

fn forget(root: &std::path::Path, id: &str) {
    std::fs::remove_file(root.join("snapshots").join(id)).unwrap();
}

#[test]
fn prune_frees_unreferenced_data_and_keeps_the_rest_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, ids) = setup(tmp.path());
    forget(&root, &ids[0]);
    let before = pack_bytes(&root);

    let dry: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["prune", "--dry-run", "--json"])).unwrap();
    assert!(dry["bytes_freed"].as_i64().unwrap() > 0);
    assert_eq!(pack_bytes(&root), before, "dry run changes nothing");

    let r: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["prune", "--json"])).unwrap();
    let after = pack_bytes(&root);
    assert!(after < before * 3 / 4, "{before} -> {after}: {r:#}");
    assert_eq!(r["bytes_freed"].as_i64().unwrap(), before as i64 - after as i64);
    kura_ok(&root, &["verify", "--read-data"]);
    // The remaining snapshots restore byte for byte, the shared file included.
    let dest = tmp.path().join("r");
    kura_ok(&root, &["restore", &ids[2], dest.to_str().unwrap()]);
    let shared = kura(&root, &["cat", &ids[2], &kura::sources::file_url(&tmp.path().join("src2/shared.bin"))]);
    assert!(shared.status.success());
    assert_eq!(shared.stdout, std::fs::read(tmp.path().join("src0/f00001.bin")).unwrap());
    // A second prune finds nothing to do.
    let again: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["prune", "--json"])).unwrap();
    assert_eq!(again["bytes_freed"], 0);
    // And the writer still dedups against repacked blobs.
    let before = content(&root);
    kura_ok(&root, &["archive", tmp.path().join("src2").to_str().unwrap()]);
    assert_eq!(content(&root), before);
}

#[test]
fn sigkill_during_prune_leaves_a_clean_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    // Calibrate: how long a whole prune of such an archive takes here, so
    // the kills spread over its run whatever the machine's speed or load.
    let full = {
        let (root, ids) = setup(&tmp.path().join("calibrate"));
        forget(&root, &ids[0]);
        let t = std::time::Instant::now();
        kura_ok(&root, &["prune", "--repack-below", "0.9"]);
        t.elapsed()
    };
    let mut killed = 0;
    let mut round = 0;
    while killed < 20 && round < 80 {
        round += 1;
        // A fresh archive each round (prune finishes its work once).
        let dir = tmp.path().join(format!("r{round}"));
        let (root, ids) = setup(&dir);
        forget(&root, &ids[rng.usize(0..2)]);
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_kura"))
                .args(["--archive", root.to_str().unwrap(), "prune", "--repack-below", "0.9"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut child = spawn();
        std::thread::sleep(full.mul_f64(rng.f64() * 0.9));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let out = kura(&root, &["verify", "--read-data", "--json"]);
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", String::from_utf8_lossy(&out.stdout));
        // The next prune completes and leaves it clean too.
        kura_ok(&root, &["prune"]);
        kura_ok(&root, &["verify", "--read-data"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(killed >= 20, "only {killed} prunes were killed mid-run");
}

/// A prune killed after writing its copies leaves packs that the next
/// prune writes again byte for byte (same blobs, same order, so the same
/// content-derived name): that file is the next prune's copy and must
/// survive it. Reproduced exactly by giving an archive the packs a prune
/// of its twin wrote.
#[test]
fn a_pack_written_again_under_its_own_name_is_not_deleted_as_old() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, ids) = setup(tmp.path());
    forget(&root, &ids[0]);
    let twin = tmp.path().join("twin");
    let status = Command::new("cp").args(["-a", root.to_str().unwrap(), twin.to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    let before: std::collections::HashSet<_> = walk_files(&root.join("packs")).into_iter().collect();
    kura_ok(&twin, &["prune", "--repack-below", "0.9"]);
    let mut planted = 0;
    for p in walk_files(&twin.join("packs")) {
        let rel = p.strip_prefix(&twin).unwrap();
        if !before.contains(&root.join(rel)) {
            std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
            std::fs::copy(&p, root.join(rel)).unwrap();
            planted += 1;
        }
    }
    assert!(planted > 0, "the twin's prune repacked something");
    kura_ok(&root, &["prune", "--repack-below", "0.9"]);
    kura_ok(&root, &["verify", "--read-data"]);
}

/// A JPEG as a camera or CMS would serve it: a gradient with some noise,
/// baseline, quality 85.
fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut s = seed;
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = (s >> 24) as u8 / 6;
            let (x, y) = (i % w, i / w);
            [(x * 255 / w) as u8 ^ n, (y * 255 / h) as u8 ^ n, ((x * y) % 251) as u8]
        })
        .collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// `prune --recompress` re-codes the JPEGs losslessly: smaller packs, every
/// byte given back, verified; a file that only claims to be a JPEG is left
/// as it is and not tried again.
#[test]
fn prune_recompress_recodes_jpegs_losslessly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("photos");
    std::fs::create_dir_all(&src).unwrap();
    for n in 0..12u32 {
        std::fs::write(src.join(format!("p{n:02}.jpg")), jpeg(200 + 16 * n, 150 + 8 * n, n)).unwrap();
    }
    use image::ImageEncoder;
    // PNG bytes under a JPEG's name: its Content-Type says image/jpeg.
    let png = {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&[7u8; 48 * 48 * 3], 48, 48, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    };
    std::fs::write(src.join("not-a-jpeg.jpg"), &png).unwrap();
    let root = tmp.path().join("archive");
    kura_ok(&root, &["archive", src.to_str().unwrap()]);
    let packs = |root: &std::path::Path| -> u64 {
        walk_files(&root.join("packs")).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
    };
    let before = packs(&root);
    let prune = || -> serde_json::Value {
        serde_json::from_str(&kura_ok(&root, &["prune", "--recompress", "--json"])).unwrap()
    };
    let r = prune();
    assert_eq!(r["jpegs_recompressed"].as_u64(), Some(12), "{r:#}");
    assert!(r["jpeg_bytes_stored"].as_u64().unwrap() * 20 < r["jpeg_bytes"].as_u64().unwrap() * 19, "{r:#}");
    assert!(packs(&root) < before, "{} >= {before}", packs(&root));
    let v: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["verify", "--read-data", "--json"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v:#}");
    for p in walk_files(&src) {
        let out = kura(&root, &["cat", "latest", url::Url::from_file_path(&p).unwrap().as_str()]);
        assert_eq!(out.stdout, std::fs::read(&p).unwrap(), "{}", p.display());
    }
    // Done once: the PNG is remembered, nothing is rewritten again.
    let r = prune();
    assert_eq!((r["jpegs_recompressed"].as_u64(), r["packs_repacked"].as_u64()), (Some(0), Some(0)), "{r:#}");
    // A restore writes the original bytes.
    let out = tmp.path().join("restored");
    kura_ok(&root, &["restore", "latest", out.to_str().unwrap(), "--layout", "raw"]);
    let restored: Vec<Vec<u8>> = walk_files(&out).iter().map(|p| std::fs::read(p).unwrap()).collect();
    for p in walk_files(&src) {
        let want = std::fs::read(&p).unwrap();
        assert!(restored.contains(&want), "{} not restored byte for byte", p.display());
    }
}
