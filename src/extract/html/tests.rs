//! Tests for HTML extraction: real-world-like snippets, one behaviour each.

use super::*;
use crate::extract::{Reference, extract_css};
use proptest::prelude::*;

/// The body of shared/samples/36kr-cross-border-ecommerce.md (a feed
/// that republishes 36kr articles; front matter removed): company links
/// carry 8 `data-logo` image URLs that are not displayed, the one picture
/// is `referrerpolicy="no-referrer"`, the source link has a raw `&` query.
const SAMPLE_36KR: &str = include_str!("testdata/36kr-cross-border-ecommerce-body.html");

fn doc_url() -> Url {
    Url::parse("https://www.example.cn/news/2022/01/post.html").unwrap()
}

pub(super) fn run(html: &str) -> Extracted {
    extract_html(html, &doc_url(), None)
}

pub(super) fn urls(ex: &Extracted) -> Vec<&str> {
    ex.refs.iter().map(|r| r.url.as_str()).collect()
}

fn find<'a>(ex: &'a Extracted, url: &str) -> &'a Reference {
    ex.refs.iter().find(|r| r.url.as_str() == url).unwrap_or_else(|| panic!("{url} not found in {:?}", urls(ex)))
}

#[test]
fn sample_36kr_no_referrer_image_and_no_data_logo() {
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>互联网新贵抢出海，谁的跨境电商红利？</title></head><body>{SAMPLE_36KR}</body></html>"
    );
    let ex = run(&html);
    assert_eq!(ex.title.as_deref(), Some("互联网新贵抢出海，谁的跨境电商红利？"));
    assert_eq!(urls(&ex), ["https://img.36krcdn.com/20220115/v2_c5aee66505874bb99bf868561331cea3_img_000"]);
    assert_eq!(ex.refs[0].policy, Policy::NoReferrer);
    assert_eq!(ex.refs[0].found_in, "img src");
    assert_eq!(ex.document_policy, Policy::DEFAULT);
    assert!(SAMPLE_36KR.matches("data-logo=").count() == 8);
}

#[test]
fn sample_without_referrerpolicy_uses_document_policy() {
    let html = SAMPLE_36KR.replace(r#" referrerpolicy="no-referrer""#, "");
    let ex = extract_html(&html, &doc_url(), Some(Policy::Origin));
    assert_eq!(ex.refs.len(), 1);
    assert_eq!(ex.refs[0].policy, Policy::Origin);
}

#[test]
fn data_logo_and_data_id_are_not_images() {
    let ex = run(
        r#"<a data-id="99343" data-logo="https://img.36krcdn.com/logo.png" href="https://36kr.com/p/1">字节跳动</a>
        <img data-id="7" data-logo="https://img.36krcdn.com/logo2.png" src="/real.png">"#,
    );
    assert_eq!(urls(&ex), ["https://www.example.cn/real.png"]);
}

#[test]
fn chinese_title_is_collapsed_but_ideographic_space_kept() {
    let ex = run("<title>\n  跨境电商　红利\n\t 来了  </title><h1>别的</h1>");
    assert_eq!(ex.title.as_deref(), Some("跨境电商　红利 来了"));
}

#[test]
fn title_falls_back_to_og_title_then_h1() {
    let ex = run(r#"<meta property="og:title" content=" 出海 新闻 "><h1>标题</h1>"#);
    assert_eq!(ex.title.as_deref(), Some("出海 新闻"));
    let ex = run("<title>  </title><h1>第一个 <em>标题</em></h1><h1>第二个</h1>");
    assert_eq!(ex.title.as_deref(), Some("第一个 标题"));
    assert_eq!(run("<p>无标题</p>").title, None);
}

#[test]
fn svg_title_is_not_the_document_title() {
    let ex = run("<svg><title>icon</title></svg><h1>正文标题</h1>");
    assert_eq!(ex.title.as_deref(), Some("正文标题"));
}

#[test]
fn meta_referrer_changes_policy_midway() {
    let ex = run(r#"<html><head><title>t</title></head><body>
        <img src="/before.jpg">
        <meta name="referrer" content="no-referrer">
        <img src="/after.jpg">
        <meta name="referrer" content="unsafe-url">
        <img src="/last.jpg"></body></html>"#);
    assert_eq!(find(&ex, "https://www.example.cn/before.jpg").policy, Policy::DEFAULT);
    assert_eq!(find(&ex, "https://www.example.cn/after.jpg").policy, Policy::NoReferrer);
    assert_eq!(find(&ex, "https://www.example.cn/last.jpg").policy, Policy::UnsafeUrl);
    assert_eq!(ex.document_policy, Policy::UnsafeUrl);
}

#[test]
fn header_policy_is_the_start_and_meta_overrides_it() {
    let html = r#"<link rel=icon href=/favicon.ico><meta name=referrer content=same-origin><img src=/a.png>"#;
    let ex = extract_html(html, &doc_url(), Some(Policy::NoReferrer));
    assert_eq!(ex.refs[0].policy, Policy::NoReferrer);
    assert_eq!(ex.refs[1].policy, Policy::SameOrigin);
    assert_eq!(ex.document_policy, Policy::SameOrigin);
}

#[test]
fn meta_name_is_case_insensitive() {
    let ex = run(r#"<meta NAME="Referrer" content="ORIGIN"><img src=a.png>"#);
    assert_eq!(ex.refs[0].policy, Policy::Origin);
}

#[test]
fn meta_in_template_is_ignored() {
    let ex = run(r#"<template><meta name=referrer content=no-referrer><img src=/tpl.png></template><img src=/a.png>"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/a.png"]);
    assert_eq!(ex.refs[0].policy, Policy::DEFAULT);
    assert_eq!(ex.document_policy, Policy::DEFAULT);
}

#[test]
fn meta_in_noscript_is_ignored() {
    let ex = run(r#"<head><noscript><meta name=referrer content=no-referrer></noscript></head>
        <body><noscript><meta name="referrer" content="unsafe-url"></noscript><img src=/a.png></body>"#);
    assert_eq!(ex.refs[0].policy, Policy::DEFAULT);
    assert_eq!(ex.document_policy, Policy::DEFAULT);
}

#[test]
fn meta_in_svg_foreign_object_is_ignored() {
    let ex =
        run(r#"<svg><foreignObject><meta name=referrer content=no-referrer></foreignObject></svg><img src=/a.png>"#);
    assert_eq!(ex.refs[0].policy, Policy::DEFAULT);
    assert_eq!(ex.document_policy, Policy::DEFAULT);
}

#[test]
fn meta_directly_in_svg_breaks_out_and_applies() {
    // The HTML parser closes the <svg> at a <meta> start tag, so this meta
    // is an ordinary HTML meta outside SVG: browsers apply it.
    let ex = run(r#"<svg><metadata><meta name=referrer content=no-referrer /></metadata></svg><img src=/a.png>"#);
    assert_eq!(ex.refs[0].policy, Policy::NoReferrer);
}

#[test]
fn legacy_meta_words() {
    for (word, policy) in [
        ("never", Policy::NoReferrer),
        ("always", Policy::UnsafeUrl),
        ("origin-when-crossorigin", Policy::OriginWhenCrossOrigin),
        ("default", Policy::StrictOriginWhenCrossOrigin),
    ] {
        let html = format!(r#"<meta name=referrer content="{word}"><img src=/x.png>"#);
        let ex = extract_html(&html, &doc_url(), Some(Policy::Origin));
        assert_eq!(ex.refs[0].policy, policy, "{word}");
    }
}

#[test]
fn invalid_meta_content_is_ignored() {
    for content in ["no-referrer, unsafe-url", "bogus", "", "  "] {
        let html = format!(r#"<meta name=referrer content="{content}"><img src=/x.png>"#);
        let ex = extract_html(&html, &doc_url(), Some(Policy::SameOrigin));
        assert_eq!(ex.refs[0].policy, Policy::SameOrigin, "{content:?}");
    }
    let ex = run("<meta name=referrer><img src=/x.png>");
    assert_eq!(ex.refs[0].policy, Policy::DEFAULT);
}

#[test]
fn img_attribute_wins_and_legacy_attribute_words_do_not() {
    let ex = run(r#"<meta name=referrer content=unsafe-url>
        <img src=/a.png referrerpolicy="No-Referrer">
        <img src=/b.png referrerpolicy="never">
        <img src=/c.png referrerpolicy="">"#);
    assert_eq!(ex.refs[0].policy, Policy::NoReferrer);
    assert_eq!(ex.refs[1].policy, Policy::UnsafeUrl);
    assert_eq!(ex.refs[2].policy, Policy::UnsafeUrl);
}

#[test]
fn img_policy_covers_srcset_and_picture_sources() {
    let ex = run(r#"<picture>
        <source type="image/avif" srcset="/p.avif 1x, /p2.avif 2x">
        <source media="(min-width: 800px)" data-srcset="/lazy.webp">
        <img src="/p.jpg" srcset="/p-2x.jpg 2x" referrerpolicy="no-referrer">
        </picture>"#);
    let got: Vec<_> = ex.refs.iter().map(|r| (r.url.path(), r.policy, r.found_in)).collect();
    assert_eq!(
        got,
        [
            ("/p.avif", Policy::NoReferrer, "picture source srcset"),
            ("/p2.avif", Policy::NoReferrer, "picture source srcset"),
            ("/lazy.webp", Policy::NoReferrer, "picture source data-srcset"),
            ("/p.jpg", Policy::NoReferrer, "img src"),
            ("/p-2x.jpg", Policy::NoReferrer, "img srcset"),
        ]
    );
}

#[test]
fn base_href_is_used_for_resolution() {
    let ex = run(r#"<head><base target="_blank"><base href="/static/v2/"><base href="https://ignored.example/"></head>
        <body><img src="a.png"><img src="../b.png"></body>"#);
    assert_eq!(ex.base.as_str(), "https://www.example.cn/static/v2/");
    assert_eq!(urls(&ex), ["https://www.example.cn/static/v2/a.png", "https://www.example.cn/static/b.png"]);
}

#[test]
fn base_applies_to_images_before_it_and_bad_base_is_ignored() {
    let ex = run(r#"<img src="x.png"><base href="https://cdn.example.org/p/">"#);
    assert_eq!(urls(&ex), ["https://cdn.example.org/p/x.png"]);
    let ex = run(r#"<base href="javascript:alert(1)"><img src="x.png">"#);
    assert_eq!(ex.base, doc_url());
    let ex = run(r#"<base href="http://[bad"><img src="x.png">"#);
    assert_eq!(ex.base, doc_url());
}

#[test]
fn base_inside_template_is_ignored() {
    let ex = run(r#"<template><base href="https://evil.example/"></template><img src="x.png">"#);
    assert_eq!(ex.base, doc_url());
}

#[test]
fn protocol_relative_follows_document_scheme() {
    let url = Url::parse("http://old.example.cn/a.html").unwrap();
    let ex = extract_html(r#"<img src="//img.example.cn/x.jpg">"#, &url, None);
    assert_eq!(urls(&ex), ["http://img.example.cn/x.jpg"]);
}

#[test]
fn entities_decoded_exactly_once() {
    let ex = run(r#"<img src="/i.php?w=1&amp;h=2&amp;amp;t=3"><img src="/raw.php?a=1&b=2">"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/i.php?w=1&h=2&amp;t=3", "https://www.example.cn/raw.php?a=1&b=2"]);
}

#[test]
fn whitespace_trimmed_and_non_ascii_encoded() {
    let ex = run("<img src=\" \n\t/图片/封面.jpg \n\">");
    assert_eq!(urls(&ex), ["https://www.example.cn/%E5%9B%BE%E7%89%87/%E5%B0%81%E9%9D%A2.jpg"]);
}

#[test]
fn non_http_and_empty_values_skipped() {
    let ex = run(r#"<img src="data:image/png;base64,iVBORw0KGgo="><img src="javascript:void(0)">
        <img src="about:blank"><img src="blob:https://www.example.cn/uuid"><img src="">
        <img src="   "><img><img src="mailto:x@y.z"><video poster="data:,"></video>"#);
    assert!(ex.refs.is_empty(), "{:?}", urls(&ex));
}

#[test]
fn file_document_keeps_only_absolute_http() {
    let url = Url::parse("file:///home/me/post.html").unwrap();
    let ex = extract_html(r#"<img src="local.png"><img src="https://cdn.example/x.png">"#, &url, None);
    assert_eq!(urls(&ex), ["https://cdn.example/x.png"]);
}

#[test]
fn duplicates_dropped_unless_policy_differs() {
    let ex = run(r#"<img src="/a.png"><img src="https://www.example.cn/a.png" srcset="/a.png 1x">
        <img src="/a.png" referrerpolicy="no-referrer"><img src="/a.png" referrerpolicy="no-referrer">"#);
    let got: Vec<_> = ex.refs.iter().map(|r| (r.url.path(), r.policy)).collect();
    assert_eq!(got, [("/a.png", Policy::DEFAULT), ("/a.png", Policy::NoReferrer)]);
}

#[test]
fn references_keep_document_order_across_kinds() {
    let ex = run(r#"<html><head><link rel=stylesheet href=/s.css><meta property=og:image content=/og.png>
        <link rel=icon href=/i.ico></head><body><img src=/1.png><div style="background:url(/2.png)"></div>
        <video poster=/3.png></video><input type=image src=/4.png></body></html>"#);
    assert_eq!(
        ex.refs.iter().map(|r| r.url.path()).collect::<Vec<_>>(),
        ["/s.css", "/og.png", "/i.ico", "/1.png", "/2.png", "/3.png", "/4.png"]
    );
}

#[test]
fn wechat_like_article() {
    let ex = run(r#"<!DOCTYPE html><html><head>
        <meta name="referrer" content="never">
        <meta property="og:title" content="跨境电商的下一站">
        <title></title></head><body><div id="js_content">
        <p><span>出海</span></p>
        <p><img class="rich_pages wxw-img" data-ratio="0.56" data-src="https://mmbiz.qpic.cn/mmbiz_png/XYZ/640?wx_fmt=png&amp;from=appmsg" data-type="png" data-w="1080"></p>
        </div></body></html>"#);
    assert_eq!(ex.title.as_deref(), Some("跨境电商的下一站"));
    assert_eq!(urls(&ex), ["https://mmbiz.qpic.cn/mmbiz_png/XYZ/640?wx_fmt=png&from=appmsg"]);
    assert_eq!(ex.refs[0].policy, Policy::NoReferrer);
}

#[test]
fn deep_nesting_does_not_overflow() {
    let depth = 4_000;
    let html = format!("{}<img src=/deep.png>{}", "<div>".repeat(depth), "</div>".repeat(depth));
    let ex = run(&html);
    assert_eq!(urls(&ex), ["https://www.example.cn/deep.png"]);
    assert_eq!(ex.limit, None);
}

#[test]
fn nesting_past_the_limit_is_not_parsed_and_says_so() {
    // The tree builder's work per element grows with the depth: 400k nested
    // divs took minutes. Past the limit the document is not parsed at all.
    let depth = 400_000;
    let html = format!("{}<img src=/deep.png>", "<div>".repeat(depth));
    let ex = run(&html);
    assert!(ex.refs.is_empty());
    assert!(ex.limit.as_deref().unwrap().contains("what it references was not fetched"), "{:?}", ex.limit);
}

#[test]
fn nested_noscript_is_bounded() {
    let html = format!("{}<img src=/n.png>", "<noscript>".repeat(50));
    // Must terminate quickly and not panic; the image is deeper than the
    // re-parse limit, so whether it is found does not matter.
    let _ = run(&html);
}

#[test]
fn extracted_serializes() {
    let ex = run(r#"<title>标题</title><img src=/a.png referrerpolicy=origin>"#);
    let v = serde_json::to_value(&ex).unwrap();
    assert_eq!(v["title"], "标题");
    assert_eq!(v["document_policy"], "strict-origin-when-cross-origin");
    assert_eq!(v["refs"][0]["policy"], "origin");
}

/// Pieces of markup that exercise the interesting paths when shuffled.
fn markup_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<img src=".to_string()),
        Just(" srcset=\"a.png 1x, b,c.png 2x,".to_string()),
        Just("<noscript>".to_string()),
        Just("</noscript>".to_string()),
        Just("<template>".to_string()),
        Just("<svg><image xlink:href=".to_string()),
        Just("<meta name=referrer content=".to_string()),
        Just("<style>@import url(".to_string()),
        Just(" style=\"background:url('".to_string()),
        Just("<picture><source srcset=".to_string()),
        Just("<base href=".to_string()),
        Just("<link rel=\"icon stylesheet preload\" as=image href=".to_string()),
        Just("&amp;".to_string()),
        Just("\\".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just(">".to_string()),
        Just("/*".to_string()),
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ]
}

proptest! {
    #[test]
    fn extract_html_never_panics_on_arbitrary_text(s in "\\PC*") {
        let _ = extract_html(&s, &doc_url(), None);
    }

    #[test]
    fn extract_html_never_panics_on_markup_soup(
        pieces in prop::collection::vec(markup_piece(), 0..40),
        policy in prop::option::of(Just(Policy::NoReferrer)),
    ) {
        let html = pieces.concat();
        let ex = extract_html(&html, &doc_url(), policy);
        for r in &ex.refs {
            prop_assert!(matches!(r.url.scheme(), "http" | "https"));
        }
    }

    #[test]
    fn parse_srcset_never_panics(s in "\\PC*") {
        for c in parse_srcset(&s) {
            prop_assert!(!c.url.is_empty());
            prop_assert!(!c.url.contains([' ', '\t', '\n', '\r', '\x0C']));
            prop_assert!(!c.url.ends_with(','));
        }
    }

    #[test]
    fn extract_css_never_panics(s in "[ -~\\n图]*") {
        let url = Url::parse("https://a.example/s.css").unwrap();
        let _ = extract_css(&s, &url, Policy::DEFAULT);
    }
}
