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
    /// Every policy, in the spec's order.
    pub const ALL: [Policy; 8] = [
        Policy::NoReferrer,
        Policy::NoReferrerWhenDowngrade,
        Policy::SameOrigin,
        Policy::Origin,
        Policy::StrictOrigin,
        Policy::OriginWhenCrossOrigin,
        Policy::StrictOriginWhenCrossOrigin,
        Policy::UnsafeUrl,
    ];

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
        let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
        Policy::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(token))
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
        values.into_iter().flat_map(|v| v.split(',')).filter_map(Policy::from_token).last()
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
///
/// This is W3C Referrer Policy §8.3 "determine request's referrer" with
/// Chromium's choices where the spec leaves room:
/// - "downgrade" is decided by scheme alone, as Chromium's network stack does
///   (`SchemeIsCryptographic`): an `https`/`wss` source and a target that is
///   neither. So `https://a/` to `http://127.0.0.1/` or `http://localhost/` IS
///   a downgrade, although the spec's "potentially trustworthy" test would
///   call those targets trustworthy.
/// - the 4096-byte limit compares the serialized, stripped URL with `> 4096`.
pub fn referer_for(source: Option<&Url>, target: &Url, policy: Policy) -> Option<String> {
    let source = source?;
    if !matches!(source.scheme(), "http" | "https") {
        return None;
    }
    // The source is http(s): a tuple origin, the same as the target's only
    // when scheme, host and port are (`Url::origin` allocates both).
    let same_origin = source.scheme() == target.scheme()
        && source.host() == target.host()
        && source.port_or_known_default() == target.port_or_known_default();
    referer_of(source, same_origin, is_cryptographic(target), policy)
}

/// [`referer_for`] of a target given as `Url` serialized it, compared by
/// its text instead of parsed (an unchanged page's cached references:
/// parsing each was a twentieth of a re-run). Serialized http(s) URLs
/// without credentials have the same origin exactly when their text up
/// to the path is the same (hosts and ports are in canonical form, default
/// ports left out); anything else is parsed. `None` also when `target`
/// does not parse.
pub fn referer_for_serialized(source: Option<&Url>, target: &str, policy: Policy) -> Option<String> {
    let source = source?;
    if !matches!(source.scheme(), "http" | "https") {
        return None;
    }
    match (serialized_origin(target), source.username().is_empty() && source.password().is_none()) {
        (Some(origin), true) => {
            let same_origin = origin == &source[..url::Position::BeforePath];
            referer_of(source, same_origin, origin.starts_with("https:"), policy)
        }
        _ => referer_for(Some(source), &Url::parse(target).ok()?, policy),
    }
}

/// The scheme, host and port of a serialized http(s) URL without
/// credentials, as one string (`https://host:port`); `None` for any other.
fn serialized_origin(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    // A special URL's serialization always has a path, so `/` ends the host.
    let host_end = rest.find('/')?;
    if rest[..host_end].contains(['@', '?', '#']) {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_end])
}

/// The Referer from an http(s) `source` to a target whose origin is the
/// source's or not, which is an https (or wss) URL or not.
fn referer_of(source: &Url, same_origin: bool, target_secure: bool, policy: Policy) -> Option<String> {
    let (full, origin) = stripped(source)?;
    let downgrade = is_cryptographic(source) && !target_secure;
    match policy {
        Policy::NoReferrer => None,
        Policy::NoReferrerWhenDowngrade => (!downgrade).then_some(full),
        Policy::SameOrigin => same_origin.then_some(full),
        Policy::Origin => Some(origin),
        Policy::StrictOrigin => (!downgrade).then_some(origin),
        Policy::OriginWhenCrossOrigin => Some(if same_origin { full } else { origin }),
        Policy::StrictOriginWhenCrossOrigin => {
            if same_origin {
                Some(full)
            } else if downgrade {
                None
            } else {
                Some(origin)
            }
        }
        Policy::UnsafeUrl => Some(full),
    }
}

/// The policy in force for the next hop after a redirect response: the
/// policy of the 3xx response's `Referrer-Policy` header values if they name
/// one (WHATWG Fetch, HTTP-redirect fetch), else `current` unchanged.
pub fn policy_after_redirect<'a, I>(current: Policy, header_values: I) -> Policy
where
    I: IntoIterator<Item = &'a str>,
{
    Policy::from_header_values(header_values).unwrap_or(current)
}

/// The Referer values a source allows: its stripped URL (its origin when
/// that is too long) and its origin. A page's references ask for the same
/// source one after another, so the last one is remembered per thread:
/// stripping twice for each of a page's images was most of this function.
fn stripped(source: &Url) -> Option<(String, String)> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, String, String)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((s, full, origin)) = last.as_ref()
            && s == source.as_str()
        {
            return Some((full.clone(), origin.clone()));
        }
        let full = strip_for_referrer(source, false)?;
        let origin = strip_for_referrer(source, true)?;
        let full = if full.len() > MAX_REFERRER_LEN { origin.clone() } else { full };
        *last = Some((source.to_string(), full.clone(), origin.clone()));
        Some((full, origin))
    })
}

/// Longest serialized referrer URL sent whole (Referrer Policy §8.3 step 6).
const MAX_REFERRER_LEN: usize = 4096;

/// `wss` counts as secure too, so a `wss` source behaves like `https`.
fn is_cryptographic(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "wss")
}

/// Referrer Policy §8.4 "strip url for use as a referrer": no credentials,
/// no fragment and, with `origin_only`, no path or query either.
fn strip_for_referrer(url: &Url, origin_only: bool) -> Option<String> {
    let mut url = url.clone();
    // Both setters only fail for URLs without a host, which http(s) URLs
    // always have; bail out rather than leak credentials if that changes.
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    url.set_fragment(None);
    if origin_only {
        url.set_path("/");
        url.set_query(None);
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `referer_for` as the spec words it: origins compared whole, the
    /// source stripped afresh each time.
    fn by_the_book(source: &Url, target: &Url, policy: Policy) -> Option<String> {
        if !matches!(source.scheme(), "http" | "https") {
            return None;
        }
        let origin = strip_for_referrer(source, true)?;
        let full = strip_for_referrer(source, false).filter(|f| f.len() <= MAX_REFERRER_LEN).unwrap_or(origin.clone());
        let same = source.origin() == target.origin();
        let down = is_cryptographic(source) && !is_cryptographic(target);
        match policy {
            Policy::NoReferrer => None,
            Policy::NoReferrerWhenDowngrade => (!down).then_some(full),
            Policy::SameOrigin => same.then_some(full),
            Policy::Origin => Some(origin),
            Policy::StrictOrigin => (!down).then_some(origin),
            Policy::OriginWhenCrossOrigin => Some(if same { full } else { origin }),
            Policy::StrictOriginWhenCrossOrigin if same => Some(full),
            Policy::StrictOriginWhenCrossOrigin => (!down).then_some(origin),
            Policy::UnsafeUrl => Some(full),
        }
    }

    #[test]
    fn the_remembered_source_and_the_quick_origin_tests_change_nothing() {
        let long = format!("https://a.example/{}", "x".repeat(5000));
        let sources = [
            "https://u:p@a.example/p?q#f",
            "https://a.example/p?q#f",
            "http://a.example:80/p",
            "http://127.0.0.1:8080/x",
            "https://[::1]:8443/x",
            long.as_str(),
        ];
        let targets = [
            "https://a.example/i.png",
            "https://a.example:443/i.png",
            "http://a.example/i.png",
            "https://A.EXAMPLE./i.png",
            "https://b.example/i.png",
            "http://a.example:8080/i.png",
            "https://[::1]:8443/i.png",
            "https://[0:0::1]:8443/i.png",
            "https://u@a.example/i.png",
            "https://a.example?q",
            "http://127.0.0.1:8080/i.png",
            "http://127.0.0.1/i.png",
            "wss://a.example/s",
            "data:image/png;base64,AAAA",
            "file:///a.example/i.png",
        ];
        // Sources alternate, so the remembered one is replaced again and again.
        for _ in 0..2 {
            for s in &sources {
                let s = Url::parse(s).unwrap();
                for t in &targets {
                    let t = Url::parse(t).unwrap();
                    for p in Policy::ALL {
                        let want = by_the_book(&s, &t, p);
                        assert_eq!(referer_for(Some(&s), &t, p), want, "{s} -> {t} ({p:?})");
                        assert_eq!(referer_for_serialized(Some(&s), t.as_str(), p), want, "{s} -> {t} ({p:?})");
                    }
                }
            }
        }
    }

    /// A document with credentials, a query and a fragment, all of which
    /// must be handled before the URL is sent as a Referer.
    const DOC: &str = "https://user:secret@news.example.com/2024/05/article.html?id=7#comments";
    const DOC_FULL: &str = "https://news.example.com/2024/05/article.html?id=7";
    const DOC_ORIGIN: &str = "https://news.example.com/";
    const SAME: &str = "https://news.example.com/images/a.jpg";
    const CROSS: &str = "https://cdn.example.net/images/a.jpg";
    const DOWN: &str = "http://cdn.example.net/images/a.jpg";
    /// An http document fetching an https image: an upgrade, never hidden.
    const HTTP_DOC: &str = "http://blog.example.org/post/1?lang=zh#top";
    const HTTP_DOC_FULL: &str = "http://blog.example.org/post/1?lang=zh";
    const HTTP_DOC_ORIGIN: &str = "http://blog.example.org/";
    const UP: &str = "https://img.example.net/x.png";

    fn referer(source: &str, target: &str, policy: Policy) -> Option<String> {
        let source = Url::parse(source).expect("test source URL parses");
        let target = Url::parse(target).expect("test target URL parses");
        referer_for(Some(&source), &target, policy)
    }

    /// One test per vector so that each can fail on its own.
    macro_rules! vectors {
        ($($name:ident: $policy:ident, $source:expr, $target:expr => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let expected: Option<&str> = $expected;
                    assert_eq!(
                        referer($source, $target, Policy::$policy).as_deref(),
                        expected
                    );
                }
            )*
        };
    }

    // The design note's table, plus the upgrade column (http -> https).
    vectors! {
        no_referrer_same: NoReferrer, DOC, SAME => None;
        no_referrer_cross: NoReferrer, DOC, CROSS => None;
        no_referrer_downgrade: NoReferrer, DOC, DOWN => None;
        no_referrer_upgrade: NoReferrer, HTTP_DOC, UP => None;

        nrwd_same: NoReferrerWhenDowngrade, DOC, SAME => Some(DOC_FULL);
        nrwd_cross: NoReferrerWhenDowngrade, DOC, CROSS => Some(DOC_FULL);
        nrwd_downgrade: NoReferrerWhenDowngrade, DOC, DOWN => None;
        nrwd_upgrade: NoReferrerWhenDowngrade, HTTP_DOC, UP => Some(HTTP_DOC_FULL);

        same_origin_same: SameOrigin, DOC, SAME => Some(DOC_FULL);
        same_origin_cross: SameOrigin, DOC, CROSS => None;
        same_origin_downgrade: SameOrigin, DOC, DOWN => None;
        same_origin_upgrade: SameOrigin, HTTP_DOC, UP => None;

        origin_same: Origin, DOC, SAME => Some(DOC_ORIGIN);
        origin_cross: Origin, DOC, CROSS => Some(DOC_ORIGIN);
        origin_downgrade: Origin, DOC, DOWN => Some(DOC_ORIGIN);
        origin_upgrade: Origin, HTTP_DOC, UP => Some(HTTP_DOC_ORIGIN);

        strict_origin_same: StrictOrigin, DOC, SAME => Some(DOC_ORIGIN);
        strict_origin_cross: StrictOrigin, DOC, CROSS => Some(DOC_ORIGIN);
        strict_origin_downgrade: StrictOrigin, DOC, DOWN => None;
        strict_origin_upgrade: StrictOrigin, HTTP_DOC, UP => Some(HTTP_DOC_ORIGIN);

        owco_same: OriginWhenCrossOrigin, DOC, SAME => Some(DOC_FULL);
        owco_cross: OriginWhenCrossOrigin, DOC, CROSS => Some(DOC_ORIGIN);
        owco_downgrade: OriginWhenCrossOrigin, DOC, DOWN => Some(DOC_ORIGIN);
        owco_upgrade: OriginWhenCrossOrigin, HTTP_DOC, UP => Some(HTTP_DOC_ORIGIN);

        sowco_same: StrictOriginWhenCrossOrigin, DOC, SAME => Some(DOC_FULL);
        sowco_cross: StrictOriginWhenCrossOrigin, DOC, CROSS => Some(DOC_ORIGIN);
        sowco_downgrade: StrictOriginWhenCrossOrigin, DOC, DOWN => None;
        sowco_upgrade: StrictOriginWhenCrossOrigin, HTTP_DOC, UP => Some(HTTP_DOC_ORIGIN);

        unsafe_url_same: UnsafeUrl, DOC, SAME => Some(DOC_FULL);
        unsafe_url_cross: UnsafeUrl, DOC, CROSS => Some(DOC_FULL);
        unsafe_url_downgrade: UnsafeUrl, DOC, DOWN => Some(DOC_FULL);
        unsafe_url_upgrade: UnsafeUrl, HTTP_DOC, UP => Some(HTTP_DOC_FULL);

        // http -> http: never a downgrade, whatever the policy.
        strict_origin_http_to_http: StrictOrigin, HTTP_DOC, "http://other.example/a.gif"
            => Some(HTTP_DOC_ORIGIN);
        // Same host, other scheme: cross-origin, and a downgrade.
        sowco_same_host_http: StrictOriginWhenCrossOrigin, DOC,
            "http://news.example.com/images/a.jpg" => None;
        owco_same_host_http: OriginWhenCrossOrigin, DOC,
            "http://news.example.com/images/a.jpg" => Some(DOC_ORIGIN);
        // Chromium decides downgrades by scheme: loopback http is insecure too.
        sowco_https_to_loopback_is_downgrade: StrictOriginWhenCrossOrigin, DOC,
            "http://127.0.0.1:8080/a.png" => None;
        nrwd_https_to_localhost_is_downgrade: NoReferrerWhenDowngrade, DOC,
            "http://localhost/a.png" => None;
        // wss counts as secure on both sides.
        strict_origin_https_to_wss: StrictOrigin, DOC, "wss://ws.example.net/feed"
            => Some(DOC_ORIGIN);

        // Ports: explicit default port is the same origin; other ports are not.
        default_port_is_same_origin: SameOrigin, "https://news.example.com:443/p?x=1",
            SAME => Some("https://news.example.com/p?x=1");
        other_port_is_cross_origin: SameOrigin, "https://news.example.com:8443/p",
            SAME => None;
        origin_keeps_port: OriginWhenCrossOrigin, "http://example.com:8080/a/b?c#d",
            "http://example.com:8081/img" => Some("http://example.com:8080/");
        same_port_same_origin: OriginWhenCrossOrigin, "http://example.com:8080/a/b?c#d",
            "http://example.com:8080/img" => Some("http://example.com:8080/a/b?c");
        ipv6_origin: Origin, "http://[::1]:8080/page#x", "http://[::1]:9090/i.png"
            => Some("http://[::1]:8080/");

        // Stripping: fragment alone, credentials alone, empty query kept.
        fragment_stripped: UnsafeUrl, "https://example.com/p#section-2", CROSS
            => Some("https://example.com/p");
        password_only_stripped: UnsafeUrl, "https://:pw@example.com/p", CROSS
            => Some("https://example.com/p");
        empty_query_kept: UnsafeUrl, "https://example.com/p?#f", CROSS
            => Some("https://example.com/p?");
        // An internationalised article URL goes out in its ASCII form.
        chinese_url_serialized: UnsafeUrl, "https://例子.测试/文章?标题=中文#评论", CROSS
            => Some("https://xn--fsqu00a.xn--0zwm56d/%E6%96%87%E7%AB%A0?%E6%A0%87%E9%A2%98=%E4%B8%AD%E6%96%87");

        // Non-http(s) sources never give a Referer.
        data_source: UnsafeUrl, "data:text/html,<img src=x>", CROSS => None;
        file_source: UnsafeUrl, "file:///home/me/post.html", CROSS => None;
        about_source: UnsafeUrl, "about:blank", CROSS => None;
    }

    #[test]
    fn no_source_no_referer() {
        let target = Url::parse(CROSS).expect("parses");
        assert_eq!(referer_for(None, &target, Policy::UnsafeUrl), None);
    }

    /// A URL of exactly `len` bytes on `https://example.com/`.
    fn url_of_len(len: usize) -> String {
        let base = "https://example.com/?q=";
        format!("{base}{}", "a".repeat(len - base.len()))
    }

    #[test]
    fn limit_4096_keeps_full_url_at_limit() {
        let url = url_of_len(4096);
        assert_eq!(referer(&url, CROSS, Policy::UnsafeUrl), Some(url));
    }

    #[test]
    fn limit_4096_uses_origin_past_limit() {
        let url = url_of_len(4097);
        assert_eq!(referer(&url, CROSS, Policy::UnsafeUrl).as_deref(), Some("https://example.com/"));
    }

    #[test]
    fn limit_4096_counts_after_stripping() {
        // Credentials and fragment do not count towards the limit.
        let url = url_of_len(4096).replace("https://", "https://someone:pw@") + "#frag";
        assert_eq!(referer(&url, SAME.replace("news.", "").as_str(), Policy::UnsafeUrl), Some(url_of_len(4096)));
    }

    #[test]
    fn limit_4096_same_origin_long_url_sends_origin() {
        let url = url_of_len(5000);
        assert_eq!(
            referer(&url, "https://example.com/i.png", Policy::SameOrigin).as_deref(),
            Some("https://example.com/")
        );
    }

    #[test]
    fn keywords_round_trip() {
        for p in [
            Policy::NoReferrer,
            Policy::NoReferrerWhenDowngrade,
            Policy::SameOrigin,
            Policy::Origin,
            Policy::StrictOrigin,
            Policy::OriginWhenCrossOrigin,
            Policy::StrictOriginWhenCrossOrigin,
            Policy::UnsafeUrl,
        ] {
            assert_eq!(Policy::from_token(p.as_str()), Some(p));
            assert_eq!(p.to_string(), p.as_str());
        }
    }

    #[test]
    fn attribute_is_case_insensitive() {
        assert_eq!(Policy::from_attribute("No-Referrer"), Some(Policy::NoReferrer));
    }

    #[test]
    fn attribute_rejects_legacy_words() {
        for word in ["never", "always", "origin-when-crossorigin", "default"] {
            assert_eq!(Policy::from_attribute(word), None, "{word}");
        }
    }

    #[test]
    fn attribute_empty_or_unknown_is_none() {
        assert_eq!(Policy::from_attribute(""), None);
        assert_eq!(Policy::from_attribute("no-referer"), None);
        assert_eq!(Policy::from_attribute("no-referrer unsafe-url"), None);
    }

    #[test]
    fn meta_accepts_legacy_words() {
        assert_eq!(Policy::from_meta("never"), Some(Policy::NoReferrer));
        assert_eq!(Policy::from_meta("ALWAYS"), Some(Policy::UnsafeUrl));
        assert_eq!(Policy::from_meta("origin-when-crossorigin"), Some(Policy::OriginWhenCrossOrigin));
        assert_eq!(Policy::from_meta("default"), Some(Policy::DEFAULT));
    }

    #[test]
    fn meta_accepts_keywords() {
        assert_eq!(Policy::from_meta("same-origin"), Some(Policy::SameOrigin));
        assert_eq!(Policy::from_meta("Unsafe-URL"), Some(Policy::UnsafeUrl));
    }

    #[test]
    fn meta_ignores_lists_empty_and_unknown() {
        assert_eq!(Policy::from_meta("no-referrer, unsafe-url"), None);
        assert_eq!(Policy::from_meta("origin,"), None);
        assert_eq!(Policy::from_meta(""), None);
        assert_eq!(Policy::from_meta("   "), None);
        assert_eq!(Policy::from_meta("noreferrer"), None);
    }

    #[test]
    fn header_last_known_token_wins() {
        assert_eq!(Policy::from_header_values(["no-referrer, unsafe-url"]), Some(Policy::UnsafeUrl));
    }

    #[test]
    fn header_skips_unknown_tokens() {
        assert_eq!(Policy::from_header_values(["unsafe-url, not-a-policy"]), Some(Policy::UnsafeUrl));
        assert_eq!(Policy::from_header_values(["not-a-policy,origin"]), Some(Policy::Origin));
        assert_eq!(Policy::from_header_values(["not-a-policy"]), None);
    }

    #[test]
    fn header_joins_multiple_values_in_order() {
        assert_eq!(Policy::from_header_values(["origin", "no-referrer", "bogus"]), Some(Policy::NoReferrer));
    }

    #[test]
    fn header_rejects_legacy_words() {
        assert_eq!(Policy::from_header_values(["never"]), None);
        assert_eq!(Policy::from_header_values(["origin, always"]), Some(Policy::Origin));
    }

    #[test]
    fn header_trims_and_skips_empty_tokens() {
        assert_eq!(Policy::from_header_values([" strict-origin , ,"]), Some(Policy::StrictOrigin));
        assert_eq!(Policy::from_header_values(Vec::<&str>::new()), None);
        assert_eq!(Policy::from_header_values([""]), None);
    }

    #[test]
    fn redirect_header_replaces_policy() {
        assert_eq!(policy_after_redirect(Policy::UnsafeUrl, ["no-referrer"]), Policy::NoReferrer);
    }

    #[test]
    fn redirect_without_header_keeps_policy() {
        assert_eq!(policy_after_redirect(Policy::Origin, Vec::<&str>::new()), Policy::Origin);
        assert_eq!(policy_after_redirect(Policy::Origin, ["bogus"]), Policy::Origin);
    }
}
