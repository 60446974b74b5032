//! A referenced URL as the crawl queues it: parsed, or as `Url` serialized
//! it. An unchanged page's references come from the extraction cache as
//! text, and most of them are settled from the archive without a fetch,
//! which needs the text only; parsing each was a twentieth of a re-run.

use crate::extract::{self, RefKind};
use crate::referrer::{Policy, referer_for, referer_for_serialized};
use url::Url;

/// A referenced URL, parsed only when it must be fetched.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Parsed(Url),
    /// Text that `Url` serialized (the extraction cache's).
    Serialized(String),
}

impl Target {
    pub(super) fn as_str(&self) -> &str {
        match self {
            Target::Parsed(u) => u.as_str(),
            Target::Serialized(s) => s,
        }
    }

    /// The Referer a browser sends for it from `source` (see
    /// [`referer_for`]).
    pub(super) fn referer(&self, source: Option<&Url>, policy: Policy) -> Option<String> {
        match self {
            Target::Parsed(u) => referer_for(source, u, policy),
            Target::Serialized(s) => referer_for_serialized(source, s, policy),
        }
    }

    /// The URL, parsed now if it was not; `None` when the text does not
    /// parse (a damaged cache value).
    pub(super) fn into_url(self) -> Option<Url> {
        match self {
            Target::Parsed(u) => Some(u),
            Target::Serialized(s) => match Url::parse(&s) {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::warn!("cached reference {s:?} is not a URL ({e}): skipped");
                    None
                }
            },
        }
    }
}

impl From<Url> for Target {
    fn from(u: Url) -> Target {
        Target::Parsed(u)
    }
}

/// A reference of a document, as the crawl queues it.
#[derive(Debug)]
pub(super) struct Ref {
    pub(super) url: Target,
    pub(super) kind: RefKind,
    pub(super) policy: Policy,
    pub(super) found_in: &'static str,
}

impl From<extract::Reference> for Ref {
    fn from(r: extract::Reference) -> Ref {
        Ref { url: r.url.into(), kind: r.kind, policy: r.policy, found_in: r.found_in }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serialized_target_is_the_parsed_one() {
        let source = Url::parse("https://a.example/post?id=1").unwrap();
        for t in ["https://a.example/i.png", "http://b.example:8080/i.png?x#y", "https://u@a.example/i.png"] {
            let parsed = Target::from(Url::parse(t).unwrap());
            let text = Target::Serialized(parsed.as_str().to_string());
            assert_eq!(text.as_str(), parsed.as_str());
            for p in Policy::ALL {
                assert_eq!(text.referer(Some(&source), p), parsed.referer(Some(&source), p), "{t} {p:?}");
            }
            assert_eq!(text.into_url(), parsed.into_url());
        }
        assert_eq!(Target::Serialized("not a url".into()).into_url(), None);
    }
}
