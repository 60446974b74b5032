use super::*;

fn map_all(prefix: &'static str) -> impl FnMut(&Url, Want) -> Option<String> {
    move |u: &Url, want: Want| match want {
        Want::Image | Want::Stylesheet => Some(format!("{prefix}{}", u.path().trim_start_matches('/'))),
        _ => None,
    }
}

fn rw(html: &str, map: &mut MapFn<'_>) -> String {
    let doc = Url::parse("http://s.example/a/page.html").unwrap();
    String::from_utf8(rewrite_html(html.as_bytes(), None, &doc, map).unwrap().bytes).unwrap()
}

#[test]
fn document_without_references_is_byte_identical() {
    let html = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>无图</title></head>\n\
                <body class=x><p>Text &amp; more &nbsp; <b>bold</b><!-- c --></p>\n<script>var a='<img src=x>';</script>\n\
                <textarea><img src=\"t.png\"></textarea></body></html>\n";
    assert_eq!(rw(html, &mut map_all("L/")), html);
}

#[test]
fn rewrites_only_the_reference_attributes() {
    let html = r#"<html><head><meta charset="utf-8"><base href="http://cdn.example/img/">
<link rel="stylesheet" href="/s.css" integrity="sha384-x" crossorigin="anonymous" media=all>
<link rel=icon href="fav.png"><meta property="og:image" content="og.png">
<style>body{background:url( 'bg.png' )} @font-face{src:url(f.woff)}</style></head>
<body background="b.png"><img  class=a src="a.png?x=1&amp;y=2" srcset="a.png 1x, b,c.png 2x" alt="&lt;">
<img src="data:image/gif;base64,R0l=" data-src="lazy.png" data-srcset="l1.png 1x, l2.png 2x">
<picture><source srcset="p.webp 1x"><img src="p.png"></picture>
<input type=IMAGE src="in.png"><video poster="v.png"></video>
<div style="background-image: url(&quot;d.png&quot;)">x</div><a href="other.html">o</a>
<svg><image href="s.png"/></svg><noscript><img src="n.png"></noscript></body></html>"#;
    let out = rw(html, &mut map_all("L/"));
    let expected = r#"<html><head><meta charset="utf-8"><base>
<link rel="stylesheet" href="L/s.css" media=all>
<link rel=icon href="L/img/fav.png"><meta property="og:image" content="L/img/og.png">
<style>body{background:url( "L/img/bg.png" )} @font-face{src:url("http://cdn.example/img/f.woff")}</style></head>
<body background="L/img/b.png"><img class=a src="L/img/a.png" srcset="L/img/a.png 1x, L/img/b,c.png 2x" alt="&lt;">
<img src="L/img/lazy.png" data-src="L/img/lazy.png" data-srcset="L/img/l1.png 1x, L/img/l2.png 2x" srcset="L/img/l1.png 1x, L/img/l2.png 2x">
<picture><source srcset="L/img/p.webp 1x"><img src="L/img/p.png"></picture>
<input type=IMAGE src="L/img/in.png"><video poster="L/img/v.png"></video>
<div style="background-image: url(&quot;L/img/d.png&quot;)">x</div><a href="http://cdn.example/img/other.html">o</a>
<svg><image href="L/img/s.png" /></svg><noscript><img src="L/img/n.png"></noscript></body></html>"#;
    assert_eq!(out, expected);
}

#[test]
fn unarchived_references_keep_absolute_urls_and_absolutize_relative_ones() {
    let html = r#"<img src="http://cdn.example/gone.png"><img src="/rel.png" srcset="//cdn.example/x.png 2x">"#;
    let out = rw(html, &mut |_: &Url, _: Want| None);
    assert_eq!(
        out,
        r#"<img src="http://cdn.example/gone.png"><img src="http://s.example/rel.png" srcset="http://cdn.example/x.png 2x">"#
    );
}

#[test]
fn gbk_documents_stay_gbk() {
    let html = "<html><head><meta charset=\"gbk\"><title>出海电商</title></head><body><img src=\"x.png\" alt=\"图\"></body></html>";
    let bytes = encoding_rs::GBK.encode(html).0.into_owned();
    let doc = Url::parse("http://s.example/a.html").unwrap();
    let r = rewrite_html(&bytes, Some("text/html; charset=gbk"), &doc, &mut map_all("L/")).unwrap();
    assert!(!r.utf8_fallback);
    let (text, _, bad) = encoding_rs::GBK.decode(&r.bytes);
    assert!(!bad);
    assert_eq!(text, html.replace("x.png", "L/x.png"));
}

#[test]
fn header_only_charset_gets_a_meta_declaration() {
    let html = "<html><head><title>出海</title></head><body></body></html>";
    let bytes = encoding_rs::GBK.encode(html).0.into_owned();
    let doc = Url::parse("http://s.example/a.html").unwrap();
    let r = rewrite_html(&bytes, Some("text/html; charset=gbk"), &doc, &mut map_all("L/")).unwrap();
    let (text, _, _) = encoding_rs::GBK.decode(&r.bytes);
    assert_eq!(text, html.replace("<head>", "<head><meta charset=\"GBK\">"));
}

#[test]
fn utf16_falls_back_to_utf8_with_bom() {
    let html = "<html><body><img src=\"x.png\"></body></html>";
    let mut bytes = vec![0xFF, 0xFE];
    for u in html.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let doc = Url::parse("http://s.example/a.html").unwrap();
    let r = rewrite_html(&bytes, None, &doc, &mut map_all("L/")).unwrap();
    assert!(r.utf8_fallback);
    assert_eq!(r.bytes, format!("\u{feff}{}", html.replace("x.png", "L/x.png")).into_bytes());
}

#[test]
fn css_rewrites_urls_imports_and_keeps_the_rest() {
    let base = Url::parse("http://a.example/css/site.css").unwrap();
    let css = "@import \"more.css\";\n/* url(c.png) */ .a{background:url(bg.png) no-repeat}\n.b{content:'url(x)'}";
    let out = rewrite_css(css, &base, false, &mut map_all("")).unwrap();
    assert_eq!(
        out,
        "@import \"css/more.css\";\n/* url(c.png) */ .a{background:url(\"css/bg.png\") no-repeat}\n.b{content:'url(x)'}"
    );
    assert_eq!(rewrite_css(".a{color:red}", &base, false, &mut map_all("")), None);
}
