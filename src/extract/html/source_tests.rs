//! Tests for each source of references: one element or attribute kind
//! per test, real-world-like markup.

use super::tests::{run, urls};
use super::*;

#[test]
fn source_outside_picture_is_not_an_image() {
    let ex = run(r#"<video poster="/poster.jpg"><source src="/v.mp4" srcset="/no.png"></video>"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/poster.jpg"]);
    assert_eq!(ex.refs[0].found_in, "video poster");
}

#[test]
fn srcset_with_commas_in_urls() {
    let ex = run(r#"<img srcset="https://img.example/c_fill,w_400/a.jpg 400w,
        https://img.example/c_fill,w_800/a.jpg 800w">"#);
    assert_eq!(urls(&ex), ["https://img.example/c_fill,w_400/a.jpg", "https://img.example/c_fill,w_800/a.jpg"]);
}

#[test]
fn srcset_invalid_candidates_dropped() {
    let ex = run(r#"<img srcset="/ok.png 1x, /bad.png 2q, , /w.png 300w">"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/ok.png", "https://www.example.cn/w.png"]);
}

#[test]
fn lazy_loading_attributes() {
    let ex = run(r#"
        <img src="/placeholder.gif" data-src="https://mmbiz.qpic.cn/mmbiz_jpg/abc/640?wx_fmt=jpeg" data-type="jpeg">
        <img data-original="/o.jpg"><img data-actualsrc="https://pic1.zhimg.com/v2-x_r.jpg">
        <img data-lazy-src="/l.jpg" data-lazy-srcset="/l1.jpg 1x, /l2.jpg 2x">
        <img data-echo="/e.jpg" data-hi-res-src="/h.jpg" data-url="/u.jpg" data-srcset="/s.jpg 100w">
        <img data-lazy="true" data-src="1" data-original="">"#);
    let got: Vec<_> = ex.refs.iter().map(|r| r.found_in).collect();
    assert_eq!(
        got,
        [
            "img src",
            "img data-src",
            "img data-original",
            "img data-actualsrc",
            "img data-lazy-src",
            "img data-lazy-srcset",
            "img data-lazy-srcset",
            "img data-echo",
            "img data-url",
            "img data-hi-res-src",
            "img data-srcset",
        ]
    );
    assert_eq!(ex.refs[1].url.as_str(), "https://mmbiz.qpic.cn/mmbiz_jpg/abc/640?wx_fmt=jpeg");
}

#[test]
fn noscript_fallback_images_are_found() {
    let ex = run(r#"<body><img class="lazy" data-src="/real.jpg" src="data:image/gif;base64,R0lGOD">
        <noscript><img src="/real.jpg" referrerpolicy="no-referrer"><img src="/other.jpg" srcset="/o2.jpg 2x"></noscript></body>"#);
    let got: Vec<_> = ex.refs.iter().map(|r| (r.url.path(), r.policy, r.found_in)).collect();
    assert_eq!(
        got,
        [
            ("/real.jpg", Policy::DEFAULT, "img data-src"),
            ("/real.jpg", Policy::NoReferrer, "noscript img"),
            ("/other.jpg", Policy::DEFAULT, "noscript img"),
            ("/o2.jpg", Policy::DEFAULT, "noscript img srcset"),
        ]
    );
}

#[test]
fn noscript_uses_policy_at_its_position() {
    let ex = run(
        r#"<meta name=referrer content=origin><noscript><picture><source srcset="/n.webp"><img src="/n.jpg"></picture></noscript>"#,
    );
    assert!(ex.refs.iter().all(|r| r.policy == Policy::Origin));
    assert_eq!(ex.refs.len(), 2);
}

#[test]
fn noscript_in_head_with_stylesheet() {
    let ex = run(r#"<head><noscript><link rel="stylesheet" href="/noscript.css"></noscript></head>"#);
    assert_eq!(ex.refs[0].kind, RefKind::Stylesheet);
    assert_eq!(ex.refs[0].url.path(), "/noscript.css");
}

#[test]
fn input_image_only() {
    let ex = run(r#"<form><input type="IMAGE" src="/go.png"><input type="text" src="/no.png"></form>"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/go.png"]);
    assert_eq!(ex.refs[0].found_in, "input image");
}

#[test]
fn link_icons() {
    let ex = run(r#"<head>
        <link rel="shortcut icon" href="/favicon.ico">
        <link rel="ICON" type="image/png" href="/icon-32.png" referrerpolicy="no-referrer">
        <link rel="apple-touch-icon" href="/touch.png">
        <link rel="apple-touch-icon-precomposed" href="/touch-pre.png">
        <link rel="canonical" href="/canonical">
        <link rel="alternate" type="application/rss+xml" href="/feed.xml"></head>"#);
    assert_eq!(
        ex.refs.iter().map(|r| r.url.path()).collect::<Vec<_>>(),
        ["/favicon.ico", "/icon-32.png", "/touch.png", "/touch-pre.png"]
    );
    assert!(ex.refs.iter().all(|r| r.found_in == "link icon" && r.kind == RefKind::Image));
    assert_eq!(ex.refs[1].policy, Policy::NoReferrer);
}

#[test]
fn link_preload_image_with_imagesrcset() {
    let ex = run(
        r#"<link rel="preload" as="image" href="/hero.jpg" imagesrcset="/hero-800.jpg 800w, /hero-1600.jpg 1600w" imagesizes="100vw">
        <link rel="preload" as="script" href="/app.js"><link rel="preload" as="image" imagesrcset="/only.jpg 1x">"#,
    );
    assert_eq!(
        ex.refs.iter().map(|r| r.url.path()).collect::<Vec<_>>(),
        ["/hero.jpg", "/hero-800.jpg", "/hero-1600.jpg", "/only.jpg"]
    );
    assert!(ex.refs.iter().all(|r| r.found_in == "link preload image"));
}

#[test]
fn link_stylesheet_with_own_policy() {
    let ex = run(r#"<meta name=referrer content=unsafe-url>
        <link rel="stylesheet" href="/a.css" referrerpolicy="same-origin">
        <link rel="alternate stylesheet" href="//cdn.example.com/b.css">
        <link rel="stylesheet" href="/off.css" disabled>"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/a.css", "https://cdn.example.com/b.css"]);
    assert_eq!(ex.refs[0].policy, Policy::SameOrigin);
    assert_eq!(ex.refs[1].policy, Policy::UnsafeUrl);
    assert!(ex.refs.iter().all(|r| r.kind == RefKind::Stylesheet && r.found_in == "link stylesheet"));
}

#[test]
fn og_and_twitter_images_use_policy_at_position() {
    let ex = run(r#"<head>
        <meta property="og:image" content="https://img.example/og.jpg">
        <meta name="referrer" content="no-referrer">
        <meta property="og:image:secure_url" content="https://img.example/og-secure.jpg">
        <meta property="og:image:url" content="/og-url.jpg">
        <meta name="twitter:image" content="https://img.example/tw.jpg">
        <meta name="twitter:image:src" content="https://img.example/tw-src.jpg">
        <meta property="og:image:width" content="1200"></head>"#);
    let got: Vec<_> = ex.refs.iter().map(|r| (r.url.as_str(), r.policy, r.found_in)).collect();
    assert_eq!(
        got,
        [
            ("https://img.example/og.jpg", Policy::DEFAULT, "meta og:image"),
            ("https://img.example/og-secure.jpg", Policy::NoReferrer, "meta og:image"),
            ("https://www.example.cn/og-url.jpg", Policy::NoReferrer, "meta og:image"),
            ("https://img.example/tw.jpg", Policy::NoReferrer, "meta twitter:image"),
            ("https://img.example/tw-src.jpg", Policy::NoReferrer, "meta twitter:image"),
        ]
    );
}

#[test]
fn style_attribute_and_style_element() {
    let ex = run(r#"<head><style>
        @import url("/theme.css");
        /* .old { background: url(/commented.png) } */
        .hero { background: url( "/hero bg.png" ) no-repeat; }
        @font-face { font-family: 思源; src: url(/fonts/siyuan.woff2) format("woff2"); }
        </style></head>
        <body><div style="background-image: url('/div.png'); border-image: url(&quot;/border.png&quot;) 30"></div></body>"#);
    let got: Vec<_> = ex.refs.iter().map(|r| (r.url.path(), r.kind, r.found_in)).collect();
    assert_eq!(
        got,
        [
            ("/theme.css", RefKind::Stylesheet, "css @import"),
            ("/hero%20bg.png", RefKind::Image, "style element"),
            ("/fonts/siyuan.woff2", RefKind::Font, "css @font-face"),
            ("/div.png", RefKind::Image, "style attribute"),
            ("/border.png", RefKind::Image, "style attribute"),
        ]
    );
}

#[test]
fn inline_css_uses_document_policy_at_position() {
    let ex = run(r#"<div style="background:url(/a.png)"></div><meta name=referrer content=no-referrer>
        <style>.b{background:url(/b.png)}</style>"#);
    assert_eq!(ex.refs[0].policy, Policy::DEFAULT);
    assert_eq!(ex.refs[1].policy, Policy::NoReferrer);
}

#[test]
fn svg_image_href_and_xlink_href() {
    let ex = run(r#"<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100">
        <image href="/svg2.png" xlink:href="/legacy-ignored.png"/>
        <image xlink:href="/legacy.png"/>
        <g style="fill:url(#grad)"><rect/></g></svg>"#);
    assert_eq!(
        ex.refs.iter().map(|r| (r.url.path(), r.found_in)).collect::<Vec<_>>(),
        [("/svg2.png", "svg image"), ("/legacy.png", "svg image")]
    );
}

#[test]
fn fragment_only_urls_are_same_document() {
    let ex = run(r##"<svg><rect style="fill:url(#grad)"/><image href="#sprite"/></svg>"##);
    assert!(ex.refs.is_empty(), "{:?}", urls(&ex));
}

#[test]
fn html_image_tag_becomes_img() {
    let ex = run(r#"<image src="/old-school.png">"#);
    assert_eq!(ex.refs[0].found_in, "img src");
}

#[test]
fn img_in_svg_foreign_object() {
    let ex = run(r#"<svg><foreignObject><img src="/fo.png"></foreignObject></svg>"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/fo.png"]);
}

#[test]
fn template_contents_are_inert() {
    let ex = run(r#"<template id="card"><img src="/card.png"><div style="background:url(/t.png)"></div></template>"#);
    assert!(ex.refs.is_empty());
}

#[test]
fn legacy_background_attribute() {
    let ex = run(
        r#"<body background="/bg.gif"><table background="/t.gif"><tr><td background="/td.gif">文字</td></tr></table></body>"#,
    );
    assert_eq!(
        ex.refs.iter().map(|r| (r.url.path(), r.found_in)).collect::<Vec<_>>(),
        [("/bg.gif", "background attribute"), ("/t.gif", "background attribute"), ("/td.gif", "background attribute")]
    );
}

#[test]
fn lazy_loaders_on_any_element_and_no_junk() {
    let ex = run(r#"<body>
        <div data-bg="/bg.jpg"></div><li data-original="/li.jpg"></li>
        <div data-srcset="/a.jpg 480w, /b.jpg 960w"></div><figure data-image="/fig"></figure>
        <img datasrc="/ds.jpg"><video data-postersrc="/poster.jpg" data-src="/movie.mp4"></video>
        <img data-zoom-src="/zoom.jpg" data-lazy="true">
        <div data-src='{"default":"//img.example.com/j.jpg","w":640}'></div>
        <div style="background: url(none)"></div><div data-bg="none"></div><img data-src="{{src}}">
        <iframe data-src="/embed/page"></iframe><a data-src="/lightbox.jpg"></a>
        <div data-url="/api/like"></div><div data-logo="/logo.png"></div>
        <span data-original-title="Photo by someone."></span></body>"#);
    let got: Vec<_> = ex.refs.iter().map(|r| (r.url.as_str(), r.found_in)).collect();
    assert_eq!(
        got,
        [
            ("https://www.example.cn/bg.jpg", "lazy attribute"),
            ("https://www.example.cn/li.jpg", "lazy attribute"),
            ("https://www.example.cn/a.jpg", "lazy attribute srcset"),
            ("https://www.example.cn/b.jpg", "lazy attribute srcset"),
            ("https://www.example.cn/fig", "lazy attribute"),
            ("https://www.example.cn/ds.jpg", "img lazy attribute"),
            ("https://www.example.cn/poster.jpg", "lazy attribute"),
            ("https://www.example.cn/zoom.jpg", "img lazy attribute"),
            ("https://img.example.com/j.jpg", "lazy attribute"),
        ]
    );
}

#[test]
fn a_style_sheet_is_its_elements_own_text() {
    // In SVG, `<style>` may hold elements; their text is not style sheet
    // text (CSSOM: child text content), and reading whole subtrees made
    // nested styles quadratic.
    let ex = run(r#"<svg><style>a{background:url(/in.png)}<desc>b{background:url(/not-css.png)}</desc></style></svg>"#);
    assert_eq!(urls(&ex), ["https://www.example.cn/in.png"]);
}
