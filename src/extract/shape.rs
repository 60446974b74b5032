//! A linear pre-check of a document's shape before it is parsed: how deeply
//! it nests elements and how many it has. The HTML tree builder does work
//! proportional to the depth of open elements for each new one (scope
//! checks walk that stack), so a few hundred kilobytes of nested `<div>`s
//! cost minutes; and the parsed tree costs a few hundred bytes per element,
//! so a flat page of millions of elements costs gigabytes. Documents past
//! either bound are stored but not parsed for references, and the shape
//! gives the pipeline the memory a parse will take before it starts.

/// Deepest nesting of elements that is parsed for references. Real pages
/// stay under a few hundred; at this depth the tree builder's cost is still
/// negligible.
pub(crate) const MAX_DEPTH: usize = 4096;

/// Elements that never hold others (void) or whose end tag HTML lets
/// authors leave out: parsers close these rather than nest them.
const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "param",
    "keygen", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp", "rtc", "thead", "tbody",
    "tfoot", "colgroup", "caption", "html", "head", "body",
];

/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&str] =
    &["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"];

/// Memory the parsed tree takes per element, beyond the text: measured on
/// scraper's tree (node, element name, attribute vector, id and class
/// caches) with flat pages of short paragraphs, rounded up.
pub(crate) const BYTES_PER_ELEMENT: usize = 512;

/// What the pre-scan saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// An over-estimate of the deepest element nesting.
    pub depth: usize,
    /// Start tags seen (outside comments and raw text).
    pub elements: usize,
}

impl Shape {
    /// An estimate of the memory a parse of `len` bytes of this shape
    /// takes: the text once more, plus the tree.
    pub fn parse_cost(&self, len: usize) -> usize {
        len.saturating_add(self.elements.saturating_mul(BYTES_PER_ELEMENT))
    }
}

/// The shape of `html`, in one pass.
pub(crate) fn scan(html: &str) -> Shape {
    let b = html.as_bytes();
    let (mut i, mut depth, mut max, mut foreign) = (0, 0usize, 0usize, 0usize);
    let mut elements = 0usize;
    let shape = |max: usize, elements: usize| Shape { depth: max, elements };
    let find = |from: usize, needle: &[u8]| b[from.min(b.len())..].windows(needle.len()).position(|w| w == needle);
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off + 1;
        if b[i..].starts_with(b"!--") {
            match find(i + 3, b"-->") {
                Some(p) => i = i + 3 + p + 3,
                None => break,
            }
            continue;
        }
        let close = b.get(i) == Some(&b'/');
        if close {
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        // A tag name starts with a letter: `a<3` is text.
        if i == start || !b[start].is_ascii_alphabetic() {
            continue;
        }
        let name = String::from_utf8_lossy(&b[start..i]).to_ascii_lowercase();
        let Some(gt) = b[i..].iter().position(|&c| c == b'>') else { break };
        if !close {
            elements += 1;
        }
        let tag_end = i + gt;
        let self_closing = tag_end > i && b[tag_end - 1] == b'/';
        i = tag_end + 1;
        let is_foreign_root = name == "svg" || name == "math";
        if close {
            if RAW_TEXT.contains(&name.as_str()) && foreign == 0 {
                continue;
            }
            if is_foreign_root {
                foreign = foreign.saturating_sub(1);
            }
            if !NOT_NESTING.contains(&name.as_str()) {
                depth = depth.saturating_sub(1);
            }
            continue;
        }
        if RAW_TEXT.contains(&name.as_str()) && foreign == 0 {
            // Skip to the matching end tag, whatever case it is written in.
            let mut j = i;
            loop {
                match find(j, b"</") {
                    Some(p) => j += p + 2,
                    None => return shape(max, elements),
                }
                if b[j..].len() >= name.len() && b[j..j + name.len()].eq_ignore_ascii_case(name.as_bytes()) {
                    break;
                }
            }
            i = j - 2;
            continue;
        }
        // `<x/>` closes itself only in SVG and MathML; in HTML it opens x.
        if NOT_NESTING.contains(&name.as_str()) || (self_closing && foreign > 0) {
            continue;
        }
        if is_foreign_root && !self_closing {
            foreign += 1;
        }
        depth += 1;
        max = max.max(depth);
    }
    shape(max, elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element_depth(html: &str) -> usize {
        scan(html).depth
    }

    #[test]
    fn counts_elements_outside_comments_and_raw_text() {
        assert_eq!(scan("<p>a<p>b<img src=x><br/></p>").elements, 4);
        assert_eq!(scan("<!-- <p><p> --><script>'<p><p>'</script><p>").elements, 2);
        assert_eq!(scan("a < b and c<3").elements, 0);
        assert_eq!(scan(&"<p>x</p>".repeat(1000)).elements, 1000);
        let s = scan(&"<p>x</p>".repeat(1000));
        assert_eq!(s.parse_cost(8000), 8000 + 1000 * BYTES_PER_ELEMENT);
    }

    #[test]
    fn counts_what_nests_and_only_that() {
        assert_eq!(element_depth("<div><span><b>x</b></span></div><div></div>"), 3);
        assert_eq!(element_depth("<ul><li>a<li>b<li><p>c<p>d</ul><img><br>"), 1);
        assert_eq!(element_depth("<script>if (a<b) { '<div><div><div>' }</SCRIPT><div>"), 1);
        assert_eq!(element_depth("<!-- <div><div> --><div>"), 1);
        assert_eq!(element_depth("<svg><path/><path/><g><circle/></g></svg>"), 2);
        assert_eq!(element_depth(&"<div/>".repeat(10)), 10, "in HTML, <div/> opens a div");
        assert_eq!(element_depth(&"<div>".repeat(5000)), 5000);
        assert_eq!(element_depth("<"), 0);
        assert_eq!(element_depth("<div"), 0);
        assert_eq!(element_depth("<div><script>x</script><style>y</style><div>"), 2);
    }
}
