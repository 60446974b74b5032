use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn parse(doc: &str, feed_url: &str) -> Feed {
    parse_feed(doc.as_bytes(), &url(feed_url)).unwrap()
}

const RSS2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>36氪</title>
  <link>https://36kr.com/</link>
  <item>
    <title><![CDATA[互联网新贵抢出海，谁的跨境电商红利？]]></title>
    <link>https://36kr.com/p/1577001234</link>
    <pubDate>Sun, 16 Jan 2022 01:29:13 GMT</pubDate>
    <description>跨境电商的这块万亿蛋糕</description>
    <content:encoded><![CDATA[<p>Tech星球</p><p class="image-wrapper"><img src="https://img.36krcdn.com/20220115/v2_c5ae_img_000" referrerpolicy="no-referrer"></p><img src="/static/relative.png">]]></content:encoded>
  </item>
  <item>
    <title>Second &amp; last</title>
    <link>/p/2</link>
    <description>&lt;p&gt;Escaped &lt;img src="a.jpg"&gt;&lt;/p&gt;</description>
  </item>
</channel>
</rss>"#;

#[test]
fn rss2_content_encoded_with_cdata_images() {
    let feed = parse(RSS2, "https://36kr.com/feed");
    assert_eq!(feed.title.as_deref(), Some("36氪"));
    assert_eq!(feed.items.len(), 2);
    let item = &feed.items[0];
    assert_eq!(item.title.as_deref(), Some("互联网新贵抢出海，谁的跨境电商红利？"));
    assert_eq!(item.link.as_ref().map(Url::as_str), Some("https://36kr.com/p/1577001234"));
    let html = item.content_html.as_deref().unwrap();
    assert!(html.contains(r#"<img src="https://img.36krcdn.com/20220115/v2_c5ae_img_000""#));
    assert!(html.contains(r#"<img src="/static/relative.png">"#));
    assert_eq!(item.published.unwrap().to_rfc3339(), "2022-01-16T01:29:13+00:00");
    assert_eq!(item.base.as_str(), "https://36kr.com/p/1577001234", "no xml:base: the item link");
}

#[test]
fn rss2_relative_link_and_escaped_description() {
    let feed = parse(RSS2, "https://36kr.com/feed");
    let item = &feed.items[1];
    assert_eq!(item.title.as_deref(), Some("Second & last"));
    assert_eq!(item.link.as_ref().map(Url::as_str), Some("https://36kr.com/p/2"));
    assert_eq!(item.content_html.as_deref(), Some(r#"<p>Escaped <img src="a.jpg"></p>"#));
    assert!(item.published.is_none());
}

#[test]
fn rss2_plain_description_is_not_html() {
    let doc = r#"<rss version="2.0"><channel><title>t</title><item><title>a</title><link>https://e.com/a</link><description>No markup, 3 &lt; 4.</description></item></channel></rss>"#;
    let feed = parse(doc, "https://e.com/rss");
    assert_eq!(feed.items[0].content_html, None);
}

#[test]
fn rss2_guid_permalink_used_when_no_link() {
    let doc = r#"<rss version="2.0"><channel><title>t</title><item><title>a</title><guid isPermaLink="true">https://e.com/posts/7</guid></item></channel></rss>"#;
    let feed = parse(doc, "https://e.com/rss");
    assert_eq!(feed.items[0].link.as_ref().map(Url::as_str), Some("https://e.com/posts/7"));
    assert_eq!(feed.items[0].base.as_str(), "https://e.com/posts/7");
}

#[test]
fn rss1_rdf() {
    let doc = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
  <channel rdf:about="https://slashdot.example/">
    <title>Slashdot-like</title>
    <link>https://slashdot.example/</link>
    <description>News</description>
  </channel>
  <item rdf:about="https://slashdot.example/story/1">
    <title>Story one</title>
    <link>https://slashdot.example/story/1</link>
    <description>&lt;p&gt;With &lt;img src="https://i.example/1.png"&gt;&lt;/p&gt;</description>
    <dc:date>2024-03-01T08:00:00+08:00</dc:date>
  </item>
</rdf:RDF>"#;
    let feed = parse(doc, "https://slashdot.example/index.rdf");
    assert_eq!(feed.title.as_deref(), Some("Slashdot-like"));
    let item = &feed.items[0];
    assert_eq!(item.link.as_ref().map(Url::as_str), Some("https://slashdot.example/story/1"));
    assert_eq!(item.published.unwrap().to_rfc3339(), "2024-03-01T00:00:00+00:00");
    assert!(item.content_html.as_deref().unwrap().contains(r#"<img src="https://i.example/1.png">"#));
}

#[test]
fn rss091() {
    let doc = r#"<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old news</title><link>http://old.example/</link><description>d</description>
<item><title>Caf&#233;</title><link>http://old.example/cafe.html</link><description>A caf&#233; story</description></item>
</channel></rss>"#;
    let feed = parse(doc, "http://old.example/rss.xml");
    assert_eq!(feed.items.len(), 1);
    assert_eq!(feed.items[0].title.as_deref(), Some("Café"));
    assert_eq!(feed.items[0].link.as_ref().map(Url::as_str), Some("http://old.example/cafe.html"));
    assert_eq!(feed.items[0].content_html, None);
}

#[test]
fn rss_with_unknown_or_missing_version_still_parses() {
    for root in [r#"<rss version="0.94">"#, "<rss>", r#"<rss version='2.01' xmlns:a="x">"#] {
        let doc = format!(
            "{root}<channel><title>t</title><item><title>a</title><link>https://e.com/a</link></item></channel></rss>"
        );
        let feed = parse(&doc, "https://e.com/rss");
        assert_eq!(feed.items.len(), 1, "{root}");
        assert_eq!(feed.items[0].link.as_ref().map(Url::as_str), Some("https://e.com/a"));
    }
}

const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.com/">
  <title type="text">Example blog</title>
  <id>urn:uuid:60a76c80-d399-11d9-b91C-0003939e0af6</id>
  <updated>2024-01-05T10:00:00Z</updated>
  <entry xml:base="posts/2024/">
    <title>相对链接</title>
    <id>tag:blog.example.com,2024:1</id>
    <link rel="alternate" type="text/html" href="hello.html"/>
    <link rel="edit" href="/api/1"/>
    <published>2024-01-05T09:00:00+01:00</published>
    <updated>2024-01-06T09:00:00Z</updated>
    <content type="html">&lt;p&gt;&lt;img src="images/cat.jpg" alt="猫"&gt;&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>Second</title>
    <id>tag:blog.example.com,2024:2</id>
    <link href="/about"/>
    <updated>2024-01-07T00:00:00Z</updated>
    <summary type="html">&lt;b&gt;bold&lt;/b&gt; summary</summary>
  </entry>
  <entry>
    <title>Text summary</title>
    <id>tag:blog.example.com,2024:3</id>
    <link href="/3"/>
    <updated>2024-01-08T00:00:00Z</updated>
    <summary type="text">use &lt;b&gt; for bold</summary>
  </entry>
</feed>"#;

#[test]
fn atom_xml_base_resolves_links_and_gives_content_base() {
    let feed = parse(ATOM, "https://feeds.example.net/atom.xml");
    assert_eq!(feed.title.as_deref(), Some("Example blog"));
    let item = &feed.items[0];
    assert_eq!(item.title.as_deref(), Some("相对链接"));
    assert_eq!(
        item.link.as_ref().map(Url::as_str),
        Some("https://blog.example.com/posts/2024/hello.html"),
        "alternate link resolved against the entry's xml:base, not the feed URL"
    );
    assert_eq!(item.base.as_str(), "https://blog.example.com/posts/2024/");
    assert_eq!(
        item.base.join("images/cat.jpg").unwrap().as_str(),
        "https://blog.example.com/posts/2024/images/cat.jpg"
    );
    assert_eq!(item.content_html.as_deref(), Some(r#"<p><img src="images/cat.jpg" alt="猫"></p>"#));
    assert_eq!(item.published.unwrap().to_rfc3339(), "2024-01-05T08:00:00+00:00");
}

#[test]
fn atom_feed_level_base_and_html_summary() {
    let feed = parse(ATOM, "https://feeds.example.net/atom.xml");
    let item = &feed.items[1];
    assert_eq!(item.link.as_ref().map(Url::as_str), Some("https://blog.example.com/about"));
    assert_eq!(item.base.as_str(), "https://blog.example.com/");
    assert_eq!(item.content_html.as_deref(), Some("<b>bold</b> summary"));
    assert_eq!(item.published.unwrap().to_rfc3339(), "2024-01-07T00:00:00+00:00", "falls back to updated");
}

#[test]
fn atom_text_summary_is_not_html() {
    let feed = parse(ATOM, "https://feeds.example.net/atom.xml");
    assert_eq!(feed.items[2].content_html, None);
}

#[test]
fn atom_without_xml_base_resolves_against_feed_url() {
    let doc = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>x</id><updated>2024-01-01T00:00:00Z</updated>
<entry><title>a</title><id>1</id><updated>2024-01-01T00:00:00Z</updated><link href="../posts/a.html"/>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p><img src="a.png"/></p></div></content></entry></feed>"#;
    let feed = parse(doc, "https://e.com/feeds/all.atom");
    let item = &feed.items[0];
    assert_eq!(item.link.as_ref().map(Url::as_str), Some("https://e.com/posts/a.html"));
    assert_eq!(item.base.as_str(), "https://e.com/posts/a.html");
    assert!(item.content_html.as_deref().unwrap().contains("<img src=\"a.png\""));
}

#[test]
fn json_feed_1_1() {
    let doc = r#"{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "JSON 博客",
  "home_page_url": "https://j.example/",
  "items": [
    {"id": "1", "url": "https://j.example/1", "title": "One", "content_html": "<p><img src=\"/i/1.jpg\"></p>", "date_published": "2024-02-03T04:05:06Z"},
    {"id": "2", "url": "posts/2", "content_text": "plain only"}
  ]
}"#;
    let feed = parse(doc, "https://j.example/feed.json");
    assert_eq!(feed.title.as_deref(), Some("JSON 博客"));
    assert_eq!(feed.items.len(), 2);
    let one = &feed.items[0];
    assert_eq!(one.link.as_ref().map(Url::as_str), Some("https://j.example/1"));
    assert_eq!(one.content_html.as_deref(), Some(r#"<p><img src="/i/1.jpg"></p>"#));
    assert_eq!(one.published.unwrap().to_rfc3339(), "2024-02-03T04:05:06+00:00");
    let two = &feed.items[1];
    assert_eq!(two.link.as_ref().map(Url::as_str), Some("https://j.example/posts/2"));
    assert_eq!(two.content_html, None);
    assert_eq!(two.base.as_str(), "https://j.example/posts/2");
}

#[test]
fn gbk_rss_with_encoding_in_declaration() {
    let doc = "<?xml version=\"1.0\" encoding=\"gb2312\"?>\n<rss version=\"2.0\"><channel><title>新浪新闻</title>\
<item><title>跨境电商红利</title><link>https://news.sina.example/1.shtml</link>\
<description><![CDATA[<p>图片<img src=\"https://n.sinaimg.example/a.jpg\"></p>]]></description></item></channel></rss>";
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(doc);
    assert!(!unmappable);
    assert!(std::str::from_utf8(&bytes).is_err(), "test input must really be GBK");
    let feed = parse_feed(&bytes, &url("https://news.sina.example/rss.xml")).unwrap();
    assert_eq!(feed.title.as_deref(), Some("新浪新闻"));
    assert_eq!(feed.items[0].title.as_deref(), Some("跨境电商红利"));
    assert_eq!(feed.items[0].content_html.as_deref(), Some("<p>图片<img src=\"https://n.sinaimg.example/a.jpg\"></p>"));
}

#[test]
fn malformed_xml_names_url() {
    let doc = r#"<rss version="2.0"><channel><title>t</title><item><title>a</item></channel></rss>"#;
    let err = parse_feed(doc.as_bytes(), &url("https://e.com/bad.xml")).unwrap_err();
    assert!(matches!(err, FeedError::Malformed { format: "XML", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("https://e.com/bad.xml") && msg.contains("not well-formed XML"), "{msg}");
}

#[test]
fn malformed_json_feed() {
    let doc = r#"{"version": "https://jsonfeed.org/version/1.1", "items": [ }"#;
    let err = parse_feed(doc.as_bytes(), &url("https://e.com/feed.json")).unwrap_err();
    assert!(err.to_string().contains("https://e.com/feed.json"), "{err}");
    assert!(matches!(err, FeedError::Malformed { format: "JSON", .. } | FeedError::NotAFeed { .. }), "{err:?}");
}

#[test]
fn html_page_is_not_a_feed() {
    let doc = "<!DOCTYPE html><html><head><title>博客</title><link rel=\"alternate\" type=\"application/rss+xml\" href=\"/feed\"></head><body></body></html>";
    let err = parse_feed(doc.as_bytes(), &url("https://e.com/feed.xml")).unwrap_err();
    assert!(matches!(err, FeedError::NotAFeed { .. }));
    assert_eq!(err.to_string(), "https://e.com/feed.xml is not a feed: it is an HTML page");
}

#[test]
fn sitemap_and_other_xml_are_not_feeds() {
    let err =
        parse_feed(b"<urlset><url><loc>https://e.com/</loc></url></urlset>", &url("https://e.com/rss")).unwrap_err();
    assert!(err.to_string().ends_with("it is a sitemap"), "{err}");
    let err = parse_feed(b"<?xml version=\"1.0\"?><opml version=\"2.0\"><body/></opml>", &url("https://e.com/rss"))
        .unwrap_err();
    assert!(err.to_string().contains("root <opml>"), "{err}");
}

#[test]
fn empty_document() {
    for doc in [&b""[..], b"  \r\n\t"] {
        let err = parse_feed(doc, &url("https://e.com/rss")).unwrap_err();
        assert!(matches!(err, FeedError::Empty { .. }));
        assert_eq!(err.to_string(), "feed https://e.com/rss is empty");
    }
}

#[test]
fn text_is_not_a_feed() {
    let err = parse_feed(b"404 page not found", &url("https://e.com/rss")).unwrap_err();
    assert!(err.to_string().contains("neither XML nor JSON"), "{err}");
}

#[test]
fn detect_is_reexported() {
    assert_eq!(detect(RSS2.as_bytes(), Some("text/xml")), DocKind::Feed);
    assert_eq!(detect(ATOM.as_bytes(), None), DocKind::Feed);
}

#[test]
fn markup_heuristic() {
    assert!(looks_like_markup("<p>x</p>"));
    assert!(looks_like_markup("a <br/> b"));
    assert!(!looks_like_markup("3 < 4 and 5 > 2"));
    assert!(!looks_like_markup(""));
}
