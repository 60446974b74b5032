//! The HTML `srcset` attribute: the WHATWG "parse a srcset attribute"
//! algorithm, so URLs containing commas (`a,b.jpg 2x`) split as a browser
//! splits them.
//!
//! It does not resolve URLs, choose a candidate for a viewport, or look at
//! `sizes`: every valid candidate is returned, because an archive wants all
//! of them.

/// How a srcset candidate qualifies itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Descriptor {
    /// `480w`: the image's intrinsic width in CSS pixels.
    Width(u32),
    /// `2x` or `1.5x`: the pixel density.
    Density(f64),
}

/// One image candidate of a `srcset` value.
#[derive(Debug, Clone, PartialEq)]
pub struct SrcsetCandidate<'a> {
    /// The URL as written (not resolved, entities already decoded by the
    /// HTML parser).
    pub url: &'a str,
    /// The width or density descriptor; `None` when absent (which means 1x).
    pub descriptor: Option<Descriptor>,
}

fn is_ascii_ws(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

/// Parses a `srcset` value into its candidates, in order.
///
/// Candidates with invalid descriptors (`2q`, `100w 2x`, `0w`, `-1x`) are
/// dropped, as browsers drop them; a URL may contain commas except at its
/// end. Never panics.
pub fn parse_srcset(value: &str) -> Vec<SrcsetCandidate<'_>> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| is_ascii_ws(c) || c == ',');
        if rest.is_empty() {
            return out;
        }
        let url_end = rest.find(is_ascii_ws).unwrap_or(rest.len());
        let raw_url = &rest[..url_end];
        rest = &rest[url_end..];
        let mut descriptors = Vec::new();
        let url = if raw_url.ends_with(',') {
            // The comma ends this candidate: it has no descriptors.
            raw_url.trim_end_matches(',')
        } else {
            rest = tokenize_descriptors(rest, &mut descriptors);
            raw_url
        };
        if url.is_empty() {
            continue;
        }
        if let Some(descriptor) = parse_descriptors(&descriptors) {
            out.push(SrcsetCandidate { url, descriptor });
        }
    }
}

/// The spec's descriptor tokenizer: splits on whitespace until a comma
/// outside parentheses; returns the input after that comma.
fn tokenize_descriptors<'a>(input: &'a str, descriptors: &mut Vec<&'a str>) -> &'a str {
    enum State {
        InDescriptor,
        InParens,
        AfterDescriptor,
    }
    let input = input.trim_start_matches(is_ascii_ws);
    let mut state = State::InDescriptor;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match state {
            State::InDescriptor => {
                if is_ascii_ws(c) {
                    if i > start {
                        descriptors.push(&input[start..i]);
                    }
                    state = State::AfterDescriptor;
                } else if c == ',' {
                    if i > start {
                        descriptors.push(&input[start..i]);
                    }
                    return &input[i + 1..];
                } else if c == '(' {
                    state = State::InParens;
                }
            }
            State::InParens => {
                if c == ')' {
                    state = State::InDescriptor;
                }
            }
            State::AfterDescriptor => {
                if !is_ascii_ws(c) {
                    start = i;
                    state = State::InDescriptor;
                    // A comma right after whitespace ends the candidate.
                    if c == ',' {
                        return &input[i + 1..];
                    }
                    if c == '(' {
                        state = State::InParens;
                    }
                }
            }
        }
    }
    if !matches!(state, State::AfterDescriptor) && input.len() > start {
        descriptors.push(&input[start..]);
    }
    ""
}

/// The spec's descriptor parser. `None` means the candidate is invalid;
/// `Some(None)` a candidate without descriptor.
fn parse_descriptors(descriptors: &[&str]) -> Option<Option<Descriptor>> {
    let mut width: Option<u32> = None;
    let mut density: Option<f64> = None;
    let mut height = false;
    for d in descriptors {
        let (number, unit) = d.split_at(d.len() - d.chars().last()?.len_utf8());
        match unit {
            "w" if width.is_none() && density.is_none() => {
                width = Some(parse_positive_integer(number)?);
            }
            "x" if width.is_none() && density.is_none() && !height => {
                density = Some(parse_non_negative_float(number)?);
            }
            // Future-compatible height: allowed only next to a width.
            "h" if !height && density.is_none() => {
                parse_positive_integer(number)?;
                height = true;
            }
            _ => return None,
        }
    }
    if height && width.is_none() {
        return None;
    }
    Some(width.map(Descriptor::Width).or(density.map(Descriptor::Density)))
}

/// A valid non-negative integer greater than zero (digits only).
fn parse_positive_integer(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Absurdly large widths saturate rather than invalidate the candidate.
    let n = s.parse::<u32>().unwrap_or(u32::MAX);
    (n > 0).then_some(n)
}

/// A valid floating-point number per HTML (`1`, `1.5`, `.5`, `2e1`), not
/// negative.
fn parse_non_negative_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_part = digits(&mut i);
    let mut frac_part = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac_part = digits(&mut i);
        if !frac_part {
            return None;
        }
    }
    if !int_part && !frac_part {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let value = s.parse::<f64>().ok()?;
    (value >= 0.0 && value.is_finite()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(v: &str) -> Vec<&str> {
        parse_srcset(v).into_iter().map(|c| c.url).collect()
    }

    #[test]
    fn width_descriptors() {
        let c = parse_srcset("small.jpg 480w, large.jpg 1080w");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].url, "small.jpg");
        assert_eq!(c[0].descriptor, Some(Descriptor::Width(480)));
        assert_eq!(c[1].descriptor, Some(Descriptor::Width(1080)));
    }

    #[test]
    fn density_descriptors() {
        let c = parse_srcset("a.png, a@2x.png 2x, a@1.5x.png 1.5x, b.png .5x");
        assert_eq!(c[0].descriptor, None);
        assert_eq!(c[1].descriptor, Some(Descriptor::Density(2.0)));
        assert_eq!(c[2].descriptor, Some(Descriptor::Density(1.5)));
        assert_eq!(c[3].descriptor, Some(Descriptor::Density(0.5)));
    }

    #[test]
    fn comma_inside_url_is_kept() {
        assert_eq!(
            urls("https://cdn.example/img,w_100/a.jpg 1x, https://cdn.example/img,w_200/a.jpg 2x"),
            ["https://cdn.example/img,w_100/a.jpg", "https://cdn.example/img,w_200/a.jpg"]
        );
    }

    #[test]
    fn comma_without_space_is_one_url() {
        // Per spec the first token runs to whitespace: this is one URL.
        assert_eq!(urls("a.jpg,b.jpg"), ["a.jpg,b.jpg"]);
    }

    #[test]
    fn trailing_commas_end_the_candidate() {
        assert_eq!(urls("a.jpg,, b.jpg 2x"), ["a.jpg", "b.jpg"]);
    }

    #[test]
    fn extra_whitespace_and_empty_candidates() {
        let c = parse_srcset("  \n a.jpg \t 1x ,, , \r\n b.jpg   2x  ,  ");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].url, "a.jpg");
        assert_eq!(c[1].url, "b.jpg");
        assert_eq!(c[1].descriptor, Some(Descriptor::Density(2.0)));
        assert!(parse_srcset("").is_empty());
        assert!(parse_srcset(" , ,, ").is_empty());
    }

    #[test]
    fn invalid_descriptors_drop_the_candidate() {
        assert_eq!(urls("a.jpg 2q, b.jpg 100w 2x, c.jpg 0w, d.jpg -1x, e.jpg 1x"), ["e.jpg"]);
        assert_eq!(urls("a.jpg 1.x, b.jpg +2x, c.jpg 10.5w"), Vec::<&str>::new());
    }

    #[test]
    fn height_needs_width() {
        let c = parse_srcset("a.jpg 100w 50h, b.jpg 50h");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].descriptor, Some(Descriptor::Width(100)));
    }

    #[test]
    fn parentheses_protect_commas_in_descriptors() {
        // Unknown descriptor with parens: invalid, but it must not split.
        assert_eq!(urls("a.jpg foo(1,2), b.jpg"), ["b.jpg"]);
    }

    #[test]
    fn comma_right_after_descriptor_whitespace() {
        assert_eq!(urls("a.jpg 1x , b.jpg 2x"), ["a.jpg", "b.jpg"]);
    }

    #[test]
    fn non_ascii_urls() {
        let c = parse_srcset("图片/小.jpg 1x, 图片/大.jpg 2x");
        assert_eq!(c[0].url, "图片/小.jpg");
        assert_eq!(c[1].url, "图片/大.jpg");
    }

    #[test]
    fn exponent_density() {
        assert_eq!(parse_srcset("a.jpg 2e0x")[0].descriptor, Some(Descriptor::Density(2.0)));
    }
}
