//! URLs a browser fetches because of CSS: `url()` values, bare strings in
//! `image-set()`, and `@import` rules.
//!
//! A small tokenizer following CSS Syntax Level 3 (comments, strings with
//! escapes and line continuations, unquoted `url(` tokens, bad urls) and a
//! scan that tracks just enough structure to label each URL: `@import`
//! preludes (stylesheets, only while `@import` is still allowed),
//! `@font-face` blocks (fonts), other at-rule preludes such as `@namespace`
//! (not fetched). It does not parse selectors or properties, evaluate media
//! queries, or tell which rules would apply.

use url::Url;

use super::{Collector, RefKind, Reference};
use crate::referrer::Policy;

/// What the CSS text is: a whole stylesheet (`<style>`, an external file)
/// or the declarations of a `style=""` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CssMode {
    Stylesheet,
    Declarations,
}

/// A URL found in CSS, before resolution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CssUrl {
    pub raw: String,
    /// Where the token naming the URL sits in the CSS, in `char`s: the whole
    /// `url(...)` token, or the quoted string (quotes included). Restore
    /// uses it to replace the URL in place.
    pub span: std::ops::Range<usize>,
    pub kind: RefKind,
    pub found_in: &'static str,
}

/// Every URL an external stylesheet at `css_url` makes the browser fetch,
/// resolved against `css_url`, each under `policy` (the stylesheet
/// response's `Referrer-Policy`, else the document's).
///
/// `@import` gives [`RefKind::Stylesheet`] (`found_in` "css @import"),
/// `@font-face` sources [`RefKind::Font`] ("css @font-face"), other `url()`
/// [`RefKind::Image`] ("css url()", "css image-set"). Only http(s) results;
/// exact duplicates removed; source order kept.
pub fn extract_css(css: &str, css_url: &Url, policy: Policy) -> Vec<Reference> {
    let mut out = Collector::default();
    for found in scan_css(css, CssMode::Stylesheet) {
        out.push(css_url, &found.raw, found.kind, policy, found.found_in);
    }
    out.into_refs()
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Function(String),
    AtKeyword(String),
    Str(String),
    BadStr,
    Url(String),
    BadUrl,
    OpenParen,
    CloseParen,
    OpenBrace,
    CloseBrace,
    Semicolon,
    Whitespace,
    Other,
}

struct Tokenizer {
    chars: Vec<char>,
    pos: usize,
}

fn is_newline(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0C')
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t') || is_newline(c)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '-'
}

fn is_non_printable(c: char) -> bool {
    matches!(c, '\0'..='\x08' | '\x0B' | '\x0E'..='\x1F' | '\x7F')
}

impl Tokenizer {
    fn new(css: &str) -> Self {
        Tokenizer { chars: css.chars().collect(), pos: 0 }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn valid_escape_at(&self, ahead: usize) -> bool {
        self.peek(ahead) == Some('\\') && self.peek(ahead + 1).is_some_and(|c| !is_newline(c))
    }

    fn starts_ident_at(&self, ahead: usize) -> bool {
        match self.peek(ahead) {
            Some('-') => {
                self.peek(ahead + 1).is_some_and(|c| is_ident_start(c) || c == '-') || self.valid_escape_at(ahead + 1)
            }
            Some('\\') => self.valid_escape_at(ahead),
            Some(c) => is_ident_start(c),
            None => false,
        }
    }

    /// Consumes an escape; `self.pos` is just after the backslash.
    fn consume_escape(&mut self) -> char {
        let Some(c) = self.peek(0) else {
            return '\u{FFFD}';
        };
        self.pos += 1;
        if !c.is_ascii_hexdigit() {
            return c;
        }
        let mut value = c.to_digit(16).unwrap_or(0);
        for _ in 0..5 {
            match self.peek(0).and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    value = value * 16 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        if self.peek(0).is_some_and(is_ws) {
            self.skip_one_newline_or_ws();
        }
        match char::from_u32(value) {
            Some(ch) if value != 0 => ch,
            _ => '\u{FFFD}',
        }
    }

    /// `\r\n` counts as one newline (CSS input preprocessing).
    fn skip_one_newline_or_ws(&mut self) {
        if self.peek(0) == Some('\r') && self.peek(1) == Some('\n') {
            self.pos += 1;
        }
        self.pos += 1;
    }

    fn consume_ident_sequence(&mut self) -> String {
        let mut s = String::new();
        loop {
            match self.peek(0) {
                Some(c) if is_ident_char(c) => {
                    s.push(c);
                    self.pos += 1;
                }
                Some('\\') if self.valid_escape_at(0) => {
                    self.pos += 1;
                    s.push(self.consume_escape());
                }
                _ => return s,
            }
        }
    }

    fn consume_string(&mut self, quote: char) -> Tok {
        let mut s = String::new();
        loop {
            match self.peek(0) {
                None => return Tok::Str(s),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Tok::Str(s);
                }
                Some(c) if is_newline(c) => return Tok::BadStr,
                Some('\\') => {
                    self.pos += 1;
                    match self.peek(0) {
                        None => {}
                        Some(c) if is_newline(c) => self.skip_one_newline_or_ws(),
                        Some(_) => s.push(self.consume_escape()),
                    }
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// After `url(` when the argument is not quoted.
    fn consume_url(&mut self) -> Tok {
        let mut s = String::new();
        while self.peek(0).is_some_and(is_ws) {
            self.pos += 1;
        }
        loop {
            match self.peek(0) {
                None => return Tok::Url(s),
                Some(')') => {
                    self.pos += 1;
                    return Tok::Url(s);
                }
                Some(c) if is_ws(c) => {
                    while self.peek(0).is_some_and(is_ws) {
                        self.pos += 1;
                    }
                    match self.peek(0) {
                        None => return Tok::Url(s),
                        Some(')') => {
                            self.pos += 1;
                            return Tok::Url(s);
                        }
                        Some(_) => return self.consume_bad_url(),
                    }
                }
                Some('"' | '\'' | '(') => return self.consume_bad_url(),
                Some(c) if is_non_printable(c) => return self.consume_bad_url(),
                Some('\\') => {
                    if self.valid_escape_at(0) {
                        self.pos += 1;
                        s.push(self.consume_escape());
                    } else {
                        return self.consume_bad_url();
                    }
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn consume_bad_url(&mut self) -> Tok {
        loop {
            match self.peek(0) {
                None => return Tok::BadUrl,
                Some(')') => {
                    self.pos += 1;
                    return Tok::BadUrl;
                }
                Some('\\') if self.valid_escape_at(0) => {
                    self.pos += 1;
                    self.consume_escape();
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn consume_ident_like(&mut self) -> Tok {
        let name = self.consume_ident_sequence();
        if self.peek(0) != Some('(') {
            return Tok::Ident(name);
        }
        self.pos += 1;
        if name.eq_ignore_ascii_case("url") {
            let mut ahead = 0;
            while self.peek(ahead).is_some_and(is_ws) {
                ahead += 1;
            }
            if !matches!(self.peek(ahead), Some('"' | '\'')) {
                return self.consume_url();
            }
        }
        Tok::Function(name)
    }

    fn next_token(&mut self) -> Option<Tok> {
        let c = self.peek(0)?;
        if c == '/' && self.peek(1) == Some('*') {
            self.pos += 2;
            while self.pos < self.chars.len() {
                if self.peek(0) == Some('*') && self.peek(1) == Some('/') {
                    self.pos += 2;
                    break;
                }
                self.pos += 1;
            }
            return Some(Tok::Whitespace);
        }
        if is_ws(c) {
            while self.peek(0).is_some_and(is_ws) {
                self.pos += 1;
            }
            return Some(Tok::Whitespace);
        }
        if c == '"' || c == '\'' {
            self.pos += 1;
            return Some(self.consume_string(c));
        }
        if c.is_ascii_digit() {
            // A number and its unit: `10url(` must not look like `url(`.
            while self.peek(0).is_some_and(|c| c.is_ascii_digit() || c == '.') {
                self.pos += 1;
            }
            if self.starts_ident_at(0) {
                self.consume_ident_sequence();
            }
            return Some(Tok::Other);
        }
        if self.starts_ident_at(0) {
            return Some(self.consume_ident_like());
        }
        self.pos += 1;
        Some(match c {
            '@' if self.starts_ident_at(0) => Tok::AtKeyword(self.consume_ident_sequence()),
            '(' => Tok::OpenParen,
            ')' => Tok::CloseParen,
            '{' => Tok::OpenBrace,
            '}' => Tok::CloseBrace,
            ';' => Tok::Semicolon,
            _ => Tok::Other,
        })
    }
}

impl Iterator for Tokenizer {
    /// A token and its span in `char`s.
    type Item = (Tok, std::ops::Range<usize>);
    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let tok = self.next_token()?;
        Some((tok, start..self.pos))
    }
}

/// A URL as written and the span of its token.
type Found = (String, std::ops::Range<usize>);

/// Finds the URLs of `css`, unresolved, in source order.
pub(crate) fn scan_css(css: &str, mode: CssMode) -> Vec<CssUrl> {
    let mut out = Vec::new();
    let mut tokens = Tokenizer::new(css).peekable();
    // Font-face blocks turn url() into fonts; the bool is "is @font-face".
    let mut blocks: Vec<bool> = Vec::new();
    // Open functions/parens; true for image-set(), whose strings are URLs.
    let mut parens: Vec<bool> = Vec::new();
    // The at-rule whose prelude we are in, if any.
    let mut prelude: Option<String> = None;
    let mut import_done = false;
    // Browsers ignore @import after any other rule.
    let mut imports_allowed = mode == CssMode::Stylesheet;
    let declarations_only = mode == CssMode::Declarations;

    let mut emit = |(raw, span): Found, blocks: &[bool], image_set: bool, prelude: &Option<String>| {
        let import = prelude.as_deref().map(|p| p.eq_ignore_ascii_case("import"));
        let (kind, found_in) = match import {
            Some(true) => (RefKind::Stylesheet, "css @import"),
            // @namespace, @document and the like name URLs without fetching.
            Some(false) => return,
            None if blocks.last() == Some(&true) => (RefKind::Font, "css @font-face"),
            None if image_set => (RefKind::Image, "css image-set"),
            None => (RefKind::Image, "css url()"),
        };
        out.push(CssUrl { raw, span, kind, found_in });
    };

    while let Some((tok, span)) = tokens.next() {
        match tok {
            Tok::AtKeyword(name) => {
                if blocks.is_empty() && !declarations_only {
                    let statement_before_imports =
                        ["import", "charset", "layer"].iter().any(|k| name.eq_ignore_ascii_case(k));
                    if !statement_before_imports {
                        imports_allowed = false;
                    }
                }
                let is_import = name.eq_ignore_ascii_case("import");
                if is_import && !(imports_allowed && blocks.is_empty() && !declarations_only) {
                    // A misplaced @import is dropped: treat it as a prelude
                    // whose URLs are not fetched.
                    prelude = Some("ignored-import".to_string());
                } else {
                    prelude = Some(name);
                }
                import_done = false;
            }
            Tok::OpenBrace => {
                if blocks.is_empty() {
                    imports_allowed = false;
                }
                let font_face = prelude.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("font-face"));
                blocks.push(font_face);
                parens.clear();
                prelude = None;
            }
            Tok::CloseBrace => {
                blocks.pop();
                parens.clear();
                prelude = None;
            }
            Tok::Semicolon => {
                if parens.is_empty() {
                    prelude = None;
                }
            }
            Tok::Function(name) => {
                let is_url = name.eq_ignore_ascii_case("url");
                let in_image_set = parens.last() == Some(&true);
                let image_set =
                    name.eq_ignore_ascii_case("image-set") || name.eq_ignore_ascii_case("-webkit-image-set");
                parens.push(image_set);
                if is_url {
                    while tokens.next_if(|(t, _)| *t == Tok::Whitespace).is_some() {}
                    if let Some((Tok::Str(s), span)) = tokens.next_if(|(t, _)| matches!(t, Tok::Str(_))) {
                        emit_once(&mut emit, (s, span), &blocks, in_image_set, &prelude, &mut import_done);
                    }
                }
            }
            Tok::OpenParen => parens.push(false),
            Tok::CloseParen => {
                parens.pop();
            }
            Tok::Url(s) => {
                let image_set = parens.last() == Some(&true);
                emit_once(&mut emit, (s, span), &blocks, image_set, &prelude, &mut import_done);
            }
            Tok::Str(s) => {
                let image_set = parens.last() == Some(&true);
                let import_string =
                    parens.is_empty() && prelude.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("import"));
                if image_set || import_string {
                    emit_once(&mut emit, (s, span), &blocks, image_set, &prelude, &mut import_done);
                }
            }
            Tok::Ident(_) | Tok::BadStr | Tok::BadUrl | Tok::Whitespace | Tok::Other => {}
        }
    }
    out
}

/// An @import names one stylesheet: URLs after the first in its prelude
/// (inside `supports()`, say) are not fetched.
fn emit_once<F>(
    emit: &mut F,
    raw: Found,
    blocks: &[bool],
    image_set: bool,
    prelude: &Option<String>,
    import_done: &mut bool,
) where
    F: FnMut(Found, &[bool], bool, &Option<String>),
{
    let in_import = prelude.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("import"));
    if in_import {
        if *import_done {
            return;
        }
        *import_done = true;
    }
    emit(raw, blocks, image_set, prelude);
}

#[cfg(test)]
mod tests;
