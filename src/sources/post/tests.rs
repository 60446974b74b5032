use super::*;

fn parse_post(text: &str, site_url: Option<&Url>) -> Result<Post, PostError> {
    parse_post_as(text, PostFormat::Markdown, site_url)
}

const SAMPLE: &str = include_str!("../../../../shared/samples/36kr-cross-border-ecommerce.md");
const SAMPLE_IMG: &str = "https://img.36krcdn.com/20220115/v2_c5aee66505874bb99bf868561331cea3_img_000";

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn real_hexo_sample_front_matter() {
    let post = parse_post(SAMPLE, None).unwrap();
    assert_eq!(post.format, PostFormat::Markdown);
    assert_eq!(post.title.as_deref(), Some("互联网新贵抢出海，谁的跨境电商红利？"));
    assert_eq!(post.date.as_deref(), Some("Sun, 16 Jan 2022 01:29:13 GMT"));
    assert_eq!(post.categories, vec!["新媒体", "36kr", "资讯"]);
    assert!(post.tags.is_empty());
    assert_eq!(
        post.front_images,
        vec![
            FrontImage { field: "headimg".into(), url: SAMPLE_IMG.into() },
            FrontImage { field: "thumbnail".into(), url: SAMPLE_IMG.into() },
        ]
    );
    assert_eq!(post.public_url, None);
}

#[test]
fn real_hexo_sample_body() {
    let post = parse_post(SAMPLE, None).unwrap();
    assert!(post.body.trim_start().starts_with("<div>"));
    assert!(!post.body.contains("headimg:"));
    let img = format!(r#"<img data-img-size-val src="{SAMPLE_IMG}" referrerpolicy="no-referrer">"#);
    assert!(post.body_html.contains(&img), "raw HTML passes through");
    assert!(post.body_html.contains("<p>跨境电商的这块万亿蛋糕，再次吸引了互联网大厂们的注意。</p>"));
    assert!(post.markdown_images.is_empty(), "the sample's image is raw HTML, not Markdown");
}

#[test]
fn jekyll_yaml_image_and_relative_permalink() {
    let text = "---\nlayout: post\ntitle: \"Hello, Jekyll\"\ndate: 2024-01-05 10:00:00 +0800\nimage: /assets/img/hero.jpg\npermalink: /2024/01/x/\ntags: [rust, 归档]\n---\n\nHello ![pic](/assets/img/a.png)\n";
    let site = url("https://blog.example.com/");
    let post = parse_post(text, Some(&site)).unwrap();
    assert_eq!(post.title.as_deref(), Some("Hello, Jekyll"));
    assert_eq!(post.date.as_deref(), Some("2024-01-05 10:00:00 +0800"));
    assert_eq!(post.public_url.as_ref().map(Url::as_str), Some("https://blog.example.com/2024/01/x/"));
    assert_eq!(post.front_images, vec![FrontImage { field: "image".into(), url: "/assets/img/hero.jpg".into() }]);
    assert_eq!(post.tags, vec!["rust", "归档"]);
    assert_eq!(post.markdown_images, vec!["/assets/img/a.png"]);
}

#[test]
fn permalink_under_site_base_path() {
    let text = "---\npermalink: /2024/01/x/\n---\n";
    let site = url("https://user.github.io/blog");
    let post = parse_post(text, Some(&site)).unwrap();
    assert_eq!(post.public_url.as_ref().map(Url::as_str), Some("https://user.github.io/blog/2024/01/x/"));
}

#[test]
fn permalink_without_site_url_or_as_pattern_is_none() {
    assert_eq!(parse_post("---\npermalink: /a/\n---\n", None).unwrap().public_url, None);
    let site = url("https://e.com/");
    let post = parse_post("---\npermalink: /:year/:month/:title/\n---\n", Some(&site)).unwrap();
    assert_eq!(post.public_url, None);
}

#[test]
fn absolute_link_field_used_as_is() {
    let text = "---\nlink: https://36kr.com/p/1577001234\nurl: /ignored/\n---\n";
    let post = parse_post(text, Some(&url("https://mirror.example/"))).unwrap();
    assert_eq!(post.public_url.as_ref().map(Url::as_str), Some("https://36kr.com/p/1577001234"));
}

#[test]
fn hugo_toml_images_list() {
    let text = "+++\ntitle = \"Hugo 文章\"\ndate = 2024-02-01T08:00:00+08:00\nimages = [\"a.jpg\", \"https://cdn.example/b.png\"]\ntags = [\"go\"]\nurl = \"/posts/hugo/\"\n[cover]\nimage = \"cover.webp\"\n+++\n\n正文 ![](c.gif)\n";
    let post = parse_post(text, Some(&url("https://h.example/"))).unwrap();
    assert_eq!(post.title.as_deref(), Some("Hugo 文章"));
    assert_eq!(post.date.as_deref(), Some("2024-02-01T08:00:00+08:00"));
    assert_eq!(post.public_url.as_ref().map(Url::as_str), Some("https://h.example/posts/hugo/"));
    let images: Vec<(&str, &str)> = post.front_images.iter().map(|i| (i.field.as_str(), i.url.as_str())).collect();
    assert!(images.contains(&("images", "a.jpg")));
    assert!(images.contains(&("images", "https://cdn.example/b.png")));
    assert!(images.contains(&("cover.image", "cover.webp")));
    assert_eq!(images.len(), 3);
    assert_eq!(post.markdown_images, vec!["c.gif"]);
}

#[test]
fn yaml_list_and_nested_image_fields() {
    let text = "---\nimages:\n  - one.jpg\n  - two.jpg\ncover:\n  image: /c.png\n  alt: 封面\nbanner: \"\"\nog_image: https://e.com/og.png\n---\n";
    let post = parse_post(text, None).unwrap();
    let got: Vec<(&str, &str)> = post.front_images.iter().map(|i| (i.field.as_str(), i.url.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("images", "one.jpg"),
            ("images", "two.jpg"),
            ("cover.image", "/c.png"),
            ("og_image", "https://e.com/og.png")
        ]
    );
}

#[test]
fn markdown_image_forms() {
    let text = r#"Inline ![a](img/a.png) and titled ![b](https://e.com/b.jpg "B 图")
and angle ![c](<img/with space.png>) and reference ![d][ref] and collapsed ![ref][].

Not an image: [link](page.html) and `![code](x.png)`.

[ref]: https://cdn.example.com/d.webp "D"
"#;
    let post = parse_post(text, None).unwrap();
    assert_eq!(
        post.markdown_images,
        vec![
            "img/a.png",
            "https://e.com/b.jpg",
            "img/with space.png",
            "https://cdn.example.com/d.webp",
            "https://cdn.example.com/d.webp"
        ]
    );
    assert!(post.body_html.contains(r#"<img src="img/a.png" alt="a" />"#), "{}", post.body_html);
    assert!(post.body_html.contains(r#"title="B 图""#));
    assert_eq!(post.title, None);
}

#[test]
fn markdown_renders_gfm_tables_and_raw_html() {
    let post = parse_post("| a | b |\n|---|---|\n| 1 | 2 |\n\n<figure><img src=\"x.png\"></figure>\n", None).unwrap();
    assert!(post.body_html.contains("<table>"));
    assert!(post.body_html.contains("<figure><img src=\"x.png\"></figure>"));
}

#[test]
fn html_format_keeps_body() {
    let text = "---\ntitle: H\nthumbnail: t.jpg\n---\n<p>Hi ![not md](x.png)</p>\n";
    let post = parse_post_as(text, PostFormat::Html, None).unwrap();
    assert_eq!(post.body_html, "<p>Hi ![not md](x.png)</p>\n");
    assert_eq!(post.body, post.body_html);
    assert!(post.markdown_images.is_empty());
    assert_eq!(post.front_images.len(), 1);
}

#[test]
fn malformed_yaml_error_names_file_line() {
    let text = "---\ntitle: ok\ndate: 2024-01-01\ntags: [a, b\nimage: x.jpg\n---\nbody";
    let err = parse_post(text, None).unwrap_err();
    let PostError::Yaml { line, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*line, 5, "{err}");
    assert!(err.to_string().contains("while parsing a flow sequence at line 4 column 7"), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("line {line}")) && msg.contains("fix the YAML"), "{msg}");
}

#[test]
fn malformed_yaml_line_counts_leading_blank_lines() {
    let text = "\n\n---\ntitle: a: b\n---\n";
    let err = parse_post(text, None).unwrap_err();
    let PostError::Yaml { line, column, .. } = err else { panic!("{err:?}") };
    assert_eq!((line, column), (4, 9));
}

#[test]
fn malformed_toml_error() {
    let err = parse_post("+++\ntitle = unquoted words\n+++\n", None).unwrap_err();
    let PostError::Toml { line, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*line, 2);
    assert!(err.to_string().contains("strings need quotes"));
}

#[test]
fn unterminated_front_matter() {
    let err = parse_post("---\ntitle: never closed\n\nBody text\n", None).unwrap_err();
    assert!(matches!(err, PostError::Unterminated { delimiter: "---", line: 1 }), "{err:?}");
    assert!(err.to_string().contains("add a line containing only `---`"));
    let err = parse_post("\n+++\ntitle = \"x\"\n", None).unwrap_err();
    assert!(matches!(err, PostError::Unterminated { delimiter: "+++", line: 2 }), "{err:?}");
}

#[test]
fn crlf_line_endings() {
    let text = "---\r\ntitle: Windows 文章\r\nheadimg: https://e.com/h.jpg\r\n---\r\n\r\n![x](a.png)\r\n";
    let post = parse_post(text, None).unwrap();
    assert_eq!(post.title.as_deref(), Some("Windows 文章"));
    assert_eq!(post.front_images[0].url, "https://e.com/h.jpg");
    assert_eq!(post.body, "\r\n![x](a.png)\r\n");
    assert_eq!(post.markdown_images, vec!["a.png"]);
}

#[test]
fn bom_at_file_start() {
    let text = "\u{feff}---\ntitle: 带BOM\n---\nbody\n";
    let post = parse_post(text, None).unwrap();
    assert_eq!(post.title.as_deref(), Some("带BOM"));
    assert_eq!(post.body, "body\n");
}

#[test]
fn no_front_matter_is_fine() {
    let post = parse_post("# 标题\n\n段落\n", None).unwrap();
    assert_eq!(post.title, None);
    assert_eq!(post.body, "# 标题\n\n段落\n");
    assert!(post.body_html.contains("<h1>标题</h1>"));
}

#[test]
fn thematic_break_later_is_not_front_matter() {
    let post = parse_post("Intro\n\n---\n\nMore\n", None).unwrap();
    assert!(post.body_html.contains("<hr />"));
}

#[test]
fn categories_nested_lists_flatten() {
    let post = parse_post("---\ncategories:\n  - [Tech, Rust]\n  - Life\ntags: single\n---\n", None).unwrap();
    assert_eq!(post.categories, vec!["Tech", "Rust", "Life"]);
    assert_eq!(post.tags, vec!["single"]);
}

#[test]
fn parse_post_file_picks_format_and_names_path_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("page.html");
    std::fs::write(&html, "---\ntitle: P\n---\n<p>![x](y.png)</p>").unwrap();
    let post = parse_post_file(&html, None).unwrap();
    assert_eq!(post.format, PostFormat::Html);
    assert!(post.markdown_images.is_empty());

    let md = dir.path().join("post.md");
    std::fs::write(&md, "---\ntitle: [unclosed\n---\n").unwrap();
    let err = parse_post_file(&md, None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&md.display().to_string()) && msg.contains("line 2"), "{msg}");

    let bad = dir.path().join("gbk.md");
    std::fs::write(&bad, encoding_rs::GBK.encode("标题").0).unwrap();
    assert!(matches!(parse_post_file(&bad, None), Err(PostError::NotUtf8 { .. })));
}

#[test]
fn markdown_nested_past_the_limit_is_refused_unread() {
    assert_eq!(container_depth("> > - 1. * + text"), 6);
    assert_eq!(container_depth("  - a"), 1);
    assert_eq!(container_depth("-not a list"), 0);
    assert_eq!(container_depth("2024. was a year"), 1);
    let deep = format!("---\ntitle: t\n---\nintro\n{}x\n", "> ".repeat(100_000));
    let err = parse_post(&deep, None).unwrap_err();
    assert!(matches!(err, PostError::MarkdownTooDeep { line: 2, limit: 32 }), "{err:?}");
    let lists = format!("{}x\n", "- ".repeat(40));
    assert!(matches!(parse_post(&lists, None).unwrap_err(), PostError::MarkdownTooDeep { .. }));
    let fine = format!("{}![a](/a.png)\n", "> ".repeat(10));
    assert_eq!(parse_post(&fine, None).unwrap().markdown_images, ["/a.png"]);
}

#[test]
fn markdown_past_the_size_limit_is_refused_unread() {
    let big = format!("---\ntitle: t\n---\n{}", "*a".repeat(MAX_MARKDOWN_BYTES / 2 + 1));
    let err = parse_post(&big, None).unwrap_err();
    assert!(matches!(err, PostError::MarkdownTooLarge { limit: MAX_MARKDOWN_BYTES, .. }), "{err:?}");
    assert!(err.to_string().contains("the post is stored"), "{err}");
    let at_limit = format!("![a](/a.png) {}", "x".repeat(MAX_MARKDOWN_BYTES - 13));
    assert_eq!(parse_post(&at_limit, None).unwrap().markdown_images, ["/a.png"]);
}

#[test]
fn nul_in_markdown_renders_as_the_replacement_character() {
    let p = parse_post("a\0\0b ![x](/x.png)\n", None).unwrap();
    assert!(p.body_html.contains("a\u{fffd}\u{fffd}b"), "{}", p.body_html);
    assert_eq!(p.markdown_images, ["/x.png"]);
}
