//! `kura demo` end to end: the built-in sample site archived with the
//! Referer a browser sends, verified and restored, against what the site
//! says a correct archiver must end up with.

mod common;

use kura::demo::{DemoOptions, run};
use kura::pipeline::Progress;
use kura::store::Archive;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_archives_every_expected_image_and_nothing_is_hotlink_blocked() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(&tmp.path().join("archive")).unwrap();
    let opts =
        DemoOptions { articles: 12, posts: 3, restore_to: Some(tmp.path().join("restored")), ..Default::default() };
    let r = run(&archive, opts, Arc::new(Progress::default())).await.unwrap();
    assert!(r.missing_images.is_empty(), "{:?}", r.missing_images);
    assert_eq!(r.hotlink_rejections, 0, "the CDN saw a foreign Referer");
    // The CDN answers a placeholder only to a Referer: to the images a
    // browser sends one for (once per page and once per feed item when the
    // two send different Referers). Each such answer is flagged, and every
    // such image's real picture recovered.
    assert!(r.placeholders_expected >= 2, "the site has quoted WeChat images");
    assert_eq!(r.placeholders_served as usize, r.placeholders_flagged, "every placeholder answer is flagged");
    assert!(r.placeholders_flagged >= r.placeholders_expected);
    assert_eq!(r.placeholders_recovered, r.placeholders_expected);
    assert_eq!(r.failures, r.expected_failures, "only the planted failures may fail");
    assert!(r.expected_failures > 0);
    assert!(r.verified);
    // 12 pages, 3 local posts, and the home and formats pages the sitemap also lists.
    assert_eq!(r.articles, 12 + 3 + 2);
    assert_eq!(r.format_images_archived, r.format_images, "every format and lazy form, byte for byte");
    assert!(r.junk_requests.is_empty(), "{:?}", r.junk_requests);
    assert!(r.restored_files > r.images);
    // A second run deduplicates against the first.
    let opts = DemoOptions { articles: 12, posts: 3, ..Default::default() };
    let again = run(&archive, opts, Arc::new(Progress::default())).await.unwrap();
    assert!(again.stored_bytes < r.stored_bytes / 10, "{} vs {}", again.stored_bytes, r.stored_bytes);
}

#[test]
fn demo_command_prints_a_summary_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::kura(&tmp.path().join("a"), &["demo", "--articles", "6", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verified"], true);
    assert!(r["images"].as_u64().unwrap() > 10);
}
