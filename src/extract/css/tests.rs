//! Tests for the CSS scan: tokenizer corners and rule structure.

use super::*;

fn raws(css: &str) -> Vec<(String, RefKind, &'static str)> {
    scan_css(css, CssMode::Stylesheet).into_iter().map(|u| (u.raw, u.kind, u.found_in)).collect()
}

fn urls(css: &str) -> Vec<String> {
    raws(css).into_iter().map(|r| r.0).collect()
}

#[test]
fn quoted_and_unquoted_urls() {
    assert_eq!(
        urls(r#"a{background:url(a.png)} b{background:url("b.png")} c{background:url('c.png')}"#),
        ["a.png", "b.png", "c.png"]
    );
}

#[test]
fn whitespace_inside_url_parens() {
    assert_eq!(urls(r#"a{background: url( "a b.png" )}"#), ["a b.png"]);
    assert_eq!(urls("a{background: url(  a.png  )}"), ["a.png"]);
}

#[test]
fn comments_are_skipped() {
    assert_eq!(
        urls("/* url(no.png) */ a{background:url(yes.png)/* url(no2.png)*/} /* unterminated url(x)"),
        ["yes.png"]
    );
}

#[test]
fn escaped_quotes_and_hex_escapes() {
    assert_eq!(urls(r#"a{background:url("a\"b.png")}"#), [r#"a"b.png"#]);
    assert_eq!(urls(r"a{background:url('it\'s.png')}"), ["it's.png"]);
    assert_eq!(urls(r"a{background:url(a\29 b.png)}"), ["a)b.png"]);
    assert_eq!(urls(r"a{background:url(a\ b.png)}"), ["a b.png"]);
}

#[test]
fn strings_outside_url_are_not_urls() {
    assert!(urls(r#"a::before{content:"url(x.png)"} b{font-family:'url(y)'}"#).is_empty());
}

#[test]
fn bad_url_is_skipped() {
    assert_eq!(urls("a{background:url(a b.png)} b{background:url(ok.png)}"), ["ok.png"]);
    assert_eq!(urls("a{background:url(a\"b.png)} b{background:url(ok.png)}"), ["ok.png"]);
}

#[test]
fn import_both_forms() {
    let r = raws(r#"@charset "utf-8"; @import "a.css"; @import url(b.css) screen; @import url("c.css");"#);
    assert_eq!(
        r,
        [
            ("a.css".to_string(), RefKind::Stylesheet, "css @import"),
            ("b.css".to_string(), RefKind::Stylesheet, "css @import"),
            ("c.css".to_string(), RefKind::Stylesheet, "css @import"),
        ]
    );
}

#[test]
fn import_after_rule_is_ignored() {
    assert_eq!(urls(r#"a{color:red} @import "late.css";"#), Vec::<String>::new());
}

#[test]
fn import_case_insensitive_and_layer() {
    assert_eq!(urls(r#"@layer base; @IMPORT 'x.css' layer(base);"#), ["x.css"]);
}

#[test]
fn import_supports_url_not_fetched() {
    assert_eq!(urls(r#"@import url(a.css) supports(background: url(no.png));"#), ["a.css"]);
}

#[test]
fn namespace_url_not_fetched() {
    assert_eq!(urls("@namespace svg url(http://www.w3.org/2000/svg); a{background:url(y.png)}"), ["y.png"]);
}

#[test]
fn font_face_sources_are_fonts() {
    let r = raws(
        r#"@font-face{font-family:F;src:local(F),url(f.woff2) format("woff2"),url('f.woff')} a{background:url(i.png)}"#,
    );
    assert_eq!(r[0], ("f.woff2".to_string(), RefKind::Font, "css @font-face"));
    assert_eq!(r[1].1, RefKind::Font);
    assert_eq!(r[2], ("i.png".to_string(), RefKind::Image, "css url()"));
}

#[test]
fn image_set_strings() {
    let r = raws(
        r#"a{background-image:-webkit-image-set("a.png" 1x, url(b.png) 2x, url("d.png") 3x); b{x:image-set('c.avif' type("image/avif"))}}"#,
    );
    let got: Vec<_> = r.iter().map(|x| (x.0.as_str(), x.2)).collect();
    assert_eq!(
        got,
        [
            ("a.png", "css image-set"),
            ("b.png", "css image-set"),
            ("d.png", "css image-set"),
            ("c.avif", "css image-set")
        ]
    );
}

#[test]
fn media_blocks_and_nesting() {
    assert_eq!(
        urls("@media (min-width:600px){.a{background:url(wide.png)}} .b{.c{background:url(n.png)}}"),
        ["wide.png", "n.png"]
    );
}

#[test]
fn url_function_name_case_and_unit_lookalike() {
    assert_eq!(urls("a{background:URL(up.png)} b{width:10url(x)}"), ["up.png"]);
}

#[test]
fn declarations_mode_ignores_import() {
    let r = scan_css(r#"@import "x.css"; background: url(a.png)"#, CssMode::Declarations);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].raw, "a.png");
}

#[test]
fn unterminated_url_at_eof() {
    assert_eq!(urls("a{background:url(end.png"), ["end.png"]);
    assert_eq!(urls("a{background:url(\"end2.png"), ["end2.png"]);
}

#[test]
fn chinese_and_line_continuation() {
    assert_eq!(urls("a{background:url(图片/背景.png)}"), ["图片/背景.png"]);
    assert_eq!(urls("a{background:url(\"long\\\nname.png\")}"), ["longname.png"]);
}

#[test]
fn extract_css_resolves_against_stylesheet() {
    let base = Url::parse("https://cdn.example/css/site.css").unwrap();
    let refs = extract_css(
        r#"@import "print.css"; a{background:url(../img/a.png)} b{background:url(data:image/png;base64,AAA)} c{background:url(//other.example/c.png)}"#,
        &base,
        Policy::NoReferrer,
    );
    let got: Vec<_> = refs.iter().map(|r| (r.url.as_str(), r.kind)).collect();
    assert_eq!(
        got,
        [
            ("https://cdn.example/css/print.css", RefKind::Stylesheet),
            ("https://cdn.example/img/a.png", RefKind::Image),
            ("https://other.example/c.png", RefKind::Image),
        ]
    );
    assert!(refs.iter().all(|r| r.policy == Policy::NoReferrer));
}

#[test]
fn extract_css_drops_duplicates() {
    let base = Url::parse("https://a.example/s.css").unwrap();
    let refs = extract_css("a{background:url(x.png)} b{background:url('x.png')}", &base, Policy::DEFAULT);
    assert_eq!(refs.len(), 1);
}
