//! The `xml:base` in effect for each item's content.
//!
//! feed-rs resolves links against `xml:base` but exposes only the raw
//! attribute of an Atom `<content>` element, not the base inherited from
//! `<feed>` or `<entry>`; relative URLs inside the content HTML need that
//! inherited base, so this small pass over the XML computes it.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use url::Url;

/// Element names (local part) whose `xml:base` applies to an item's HTML.
const CONTENT_ELEMENTS: &[&str] = &["content", "encoded", "description", "summary"];

/// For each `<item>`/`<entry>` in document order, the `xml:base` in effect for
/// its content, or `None` when no `xml:base` applies. Returns `None` if the
/// XML cannot be read (feed-rs will then report the error).
pub(super) fn item_bases(text: &str, feed_url: &Url) -> Option<Vec<Option<Url>>> {
    let mut reader = Reader::from_str(text);
    // Stack of effective explicit bases, one per open element.
    let mut stack: Vec<Option<Url>> = Vec::new();
    let mut items: Vec<Option<Url>> = Vec::new();
    let mut item_depth: Option<usize> = None;
    let mut content_found = false;
    loop {
        let event = reader.read_event().ok()?;
        match event {
            Event::Start(start) => {
                let parent = stack.last().cloned().flatten();
                let base = own_base(&start, parent.as_ref().unwrap_or(feed_url)).or(parent);
                let local = start.local_name();
                let local = local.as_ref();
                if item_depth.is_none() && (local == "item" || local == "entry") {
                    item_depth = Some(stack.len());
                    items.push(base.clone());
                    content_found = false;
                } else if item_depth.is_some() && !content_found && CONTENT_ELEMENTS.contains(&local) {
                    // The first content-like child decides; `content:encoded`
                    // normally comes after `description` but carries the same base.
                    content_found = true;
                    if let Some(last) = items.last_mut() {
                        *last = base.clone();
                    }
                }
                stack.push(base);
            }
            Event::End(_) => {
                stack.pop();
                if item_depth == Some(stack.len()) {
                    item_depth = None;
                }
            }
            Event::Empty(start) => {
                let local = start.local_name();
                if item_depth.is_none() && (local.as_ref() == "item" || local.as_ref() == "entry") {
                    items.push(stack.last().cloned().flatten());
                }
            }
            Event::Eof => return Some(items),
            _ => {}
        }
    }
}

/// The element's own `xml:base`, resolved against the inherited base.
fn own_base(start: &BytesStart<'_>, inherited: &Url) -> Option<Url> {
    start.attributes().flatten().find(|attr| attr.key.as_ref() == "xml:base").and_then(|attr| {
        let value = attr.normalized_value(XmlVersion::Implicit1_0).ok()?;
        inherited.join(value.trim()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_url() -> Url {
        Url::parse("https://example.org/feeds/atom.xml").unwrap()
    }

    #[test]
    fn no_xml_base_gives_none_per_item() {
        let xml = "<rss><channel><item><title>a</title></item><item/></channel></rss>";
        assert_eq!(item_bases(xml, &feed_url()), Some(vec![None, None]));
    }

    #[test]
    fn inherited_and_nested_bases() {
        let xml = r#"<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.com/">
            <entry xml:base="2024/01/"><content type="html">x</content></entry>
            <entry><content type="html" xml:base="/img/">y</content></entry>
            <entry><title>z</title></entry>
        </feed>"#;
        let bases = item_bases(xml, &feed_url()).unwrap();
        let got: Vec<_> = bases.iter().map(|b| b.as_ref().map(Url::as_str)).collect();
        assert_eq!(
            got,
            vec![
                Some("https://blog.example.com/2024/01/"),
                Some("https://blog.example.com/img/"),
                Some("https://blog.example.com/"),
            ]
        );
    }

    #[test]
    fn relative_root_base_resolves_against_feed_url() {
        let xml = r#"<feed xml:base="../blog/"><entry><content>x</content></entry></feed>"#;
        let bases = item_bases(xml, &feed_url()).unwrap();
        assert_eq!(bases[0].as_ref().map(Url::as_str), Some("https://example.org/blog/"));
    }

    #[test]
    fn malformed_xml_gives_none() {
        assert_eq!(item_bases("<feed><entry></feed>", &feed_url()), None);
    }
}
