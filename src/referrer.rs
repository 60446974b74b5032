//! Referrer policies and the `Referer` value a browser would send.
//!
//! Pure: no I/O. Follows W3C Referrer Policy and WHATWG Fetch; where engines
//! disagree, Chromium. See `shared/design/referrer-policy.md`.

use serde::{Deserialize, Serialize};
use url::Url;

/// One of the eight referrer policies of the W3C Referrer Policy spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// `no-referrer`
    NoReferrer,
    /// `no-referrer-when-downgrade`
    NoReferrerWhenDowngrade,
    /// `same-origin`
    SameOrigin,
    /// `origin`
    Origin,
    /// `strict-origin`
    StrictOrigin,
    /// `origin-when-cross-origin`
    OriginWhenCrossOrigin,
    /// `strict-origin-when-cross-origin` (the default)
    StrictOriginWhenCrossOrigin,
    /// `unsafe-url`
    UnsafeUrl,
}

impl Policy {
    /// The policy browsers apply when nothing else sets one.
    pub const DEFAULT: Policy = Policy::StrictOriginWhenCrossOrigin;

    /// The spec's keyword for this policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::NoReferrer => "no-referrer",
            Policy::NoReferrerWhenDowngrade => "no-referrer-when-downgrade",
            Policy::SameOrigin => "same-origin",
            Policy::Origin => "origin",
            Policy::StrictOrigin => "strict-origin",
            Policy::OriginWhenCrossOrigin => "origin-when-cross-origin",
            Policy::StrictOriginWhenCrossOrigin => "strict-origin-when-cross-origin",
            Policy::UnsafeUrl => "unsafe-url",
        }
    }

    /// Parses one of the eight keywords, ASCII case-insensitive, after trimming
    /// ASCII whitespace. Legacy words are not keywords: `None`.
    pub fn from_token(token: &str) -> Option<Policy> {
        const ALL: [Policy; 8] = [
            Policy::NoReferrer,
            Policy::NoReferrerWhenDowngrade,
            Policy::SameOrigin,
            Policy::Origin,
            Policy::StrictOrigin,
            Policy::OriginWhenCrossOrigin,
            Policy::StrictOriginWhenCrossOrigin,
            Policy::UnsafeUrl,
        ];
        let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
        ALL.into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(token))
    }

    /// The policy named by an element's `referrerpolicy` attribute; `None`
    /// (use the document's policy) when empty, unknown or legacy.
    pub fn from_attribute(value: &str) -> Option<Policy> {
        Policy::from_token(value)
    }

    /// The policy named by `<meta name="referrer" content=...>`: one token,
    /// legacy values accepted (`never`, `always`, `origin-when-crossorigin`,
    /// `default`); `None` when the meta must be ignored (empty, invalid, or
    /// comma-separated).
    pub fn from_meta(content: &str) -> Option<Policy> {
        let value = content.trim_matches(|c: char| c.is_ascii_whitespace());
        if value.contains(',') {
            return None;
        }
        let legacy = [
            ("never", Policy::NoReferrer),
            ("always", Policy::UnsafeUrl),
            ("origin-when-crossorigin", Policy::OriginWhenCrossOrigin),
            ("default", Policy::DEFAULT),
        ];
        legacy
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(value))
            .map(|(_, p)| *p)
            .or_else(|| Policy::from_token(value))
    }

    /// The policy of a `Referrer-Policy` response header, given every value of
    /// that header in order: values split on commas and trimmed, the last
    /// known token wins, unknown tokens skipped. `None` if no token is known.
    pub fn from_header_values<'a, I>(values: I) -> Option<Policy>
    where
        I: IntoIterator<Item = &'a str>,
    {
        values
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(Policy::from_token)
            .last()
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Referer` header value a browser sends when a document (or stylesheet)
/// at `source` fetches `target` under `policy`; `None` means no header.
///
/// `source` is `None` when there is no referrer source (a local file, `data:`,
/// `about:`); a non-http(s) source also gives `None`.
pub fn referer_for(source: Option<&Url>, target: &Url, policy: Policy) -> Option<String> {
    todo!()
}
