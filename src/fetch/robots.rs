//! robots.txt: parsing the group that applies to Kura and matching paths.
//!
//! Pure (no I/O): the fetcher downloads and caches the file. Follows RFC 9309:
//! the group(s) naming our product token (`kura`) if any, else those for
//! `*`; the longest matching `Allow`/`Disallow` pattern wins, `Allow` on a
//! tie; `*` matches any run of bytes and a trailing `$` anchors the end.
//! `Crawl-delay` of the same group is read (seconds, fractions allowed, at
//! most [`MAX_CRAWL_DELAY`]); `Sitemap` is ignored.

use std::time::Duration;

/// The longest `Crawl-delay` honoured: a day-long delay would make a site
/// impossible to archive, and a minute between requests is already slower
/// than any reader.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(60);

/// Kura's product token, matched case-insensitively against `User-agent`.
pub const AGENT_TOKEN: &str = "kura";

/// The rules of robots.txt that apply to Kura.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Robots {
    rules: Vec<Rule>,
    crawl_delay: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    pattern: String,
}

impl Robots {
    /// Rules that allow everything (no robots.txt, or a 4xx for it).
    pub fn allow_all() -> Robots {
        Robots::default()
    }

    /// The rules of `body` for `agent` (a product token such as `kura`).
    pub fn parse(body: &str, agent: &str) -> Robots {
        let mut ours = Vec::new();
        let mut star = Vec::new();
        let (mut our_delay, mut star_delay) = (None, None);
        let mut found_ours = false;
        // Agents of the group being read; a rule line after them closes the
        // list, so the next User-agent line starts a new group.
        let mut agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for line in body.lines() {
            let line = line.split('#').next().unwrap_or("");
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        agents.clear();
                        in_rules = false;
                    }
                    let token = product_token(value);
                    if token.eq_ignore_ascii_case(agent) {
                        found_ours = true;
                    }
                    agents.push(token);
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue;
                    }
                    let rule = Rule { allow: key == "allow", pattern: normalize(value) };
                    if agents.iter().any(|a| a.eq_ignore_ascii_case(agent)) {
                        ours.push(rule.clone());
                    }
                    if agents.iter().any(|a| a == "*") {
                        star.push(rule);
                    }
                }
                "crawl-delay" => {
                    in_rules = true;
                    let Some(delay) = value.parse::<f64>().ok().filter(|d| d.is_finite() && *d > 0.0) else {
                        continue;
                    };
                    let delay = Duration::from_secs_f64(delay.min(MAX_CRAWL_DELAY.as_secs_f64()));
                    if agents.iter().any(|a| a.eq_ignore_ascii_case(agent)) {
                        our_delay = Some(delay);
                    }
                    if agents.iter().any(|a| a == "*") {
                        star_delay = Some(delay);
                    }
                }
                _ => {}
            }
        }
        if found_ours {
            Robots { rules: ours, crawl_delay: our_delay }
        } else {
            Robots { rules: star, crawl_delay: star_delay }
        }
    }

    /// The `Crawl-delay` of the group that applies, if any.
    pub fn crawl_delay(&self) -> Option<Duration> {
        self.crawl_delay
    }

    /// Whether Kura may fetch `path_and_query` (the URL's path plus `?query`,
    /// percent-encoded as the `url` crate serializes it).
    pub fn allows(&self, path_and_query: &str) -> bool {
        if path_and_query == "/robots.txt" {
            return true;
        }
        let path = normalize(path_and_query);
        let mut best: Option<&Rule> = None;
        for rule in &self.rules {
            if !matches(rule.pattern.as_bytes(), path.as_bytes()) {
                continue;
            }
            best = match best {
                None => Some(rule),
                Some(b) if rule.pattern.len() > b.pattern.len() => Some(rule),
                Some(b) if rule.pattern.len() == b.pattern.len() && rule.allow => Some(rule),
                keep => keep,
            };
        }
        best.is_none_or(|r| r.allow)
    }
}

/// The product token of a `User-agent` value: `Kura/1.0 (+x)` gives `Kura`.
fn product_token(value: &str) -> String {
    if value.starts_with('*') {
        return "*".to_owned();
    }
    value.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Percent-encodes non-ASCII bytes and upper-cases existing escapes, so that
/// `/文章`, `/%e6%96%87%e7%ab%a0` and `/%E6%96%87%E7%AB%A0` compare equal.
fn normalize(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() {
            out.push('%');
            out.push(bytes[i + 1].to_ascii_uppercase() as char);
            out.push(bytes[i + 2].to_ascii_uppercase() as char);
            i += 3;
            continue;
        }
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

/// Whether `pattern` matches a prefix of `path` (or all of it with `$`).
fn matches(pattern: &[u8], path: &[u8]) -> bool {
    let (pat, anchored) = match pattern.strip_suffix(b"$") {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let (mut p, mut t) = (0, 0);
    // Last `*` seen and the path position it currently stands for; on a
    // mismatch the star swallows one more byte (classic glob backtracking).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p == pat.len() {
            if !anchored || t == path.len() {
                return true;
            }
        } else if pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
            continue;
        } else if t < path.len() && pat[p] == path[t] {
            p += 1;
            t += 1;
            continue;
        }
        match star {
            Some((sp, st)) if st < path.len() => {
                star = Some((sp, st + 1));
                p = sp + 1;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robots(body: &str) -> Robots {
        Robots::parse(body, AGENT_TOKEN)
    }

    #[test]
    fn crawl_delay_of_the_group_that_applies() {
        let both = "User-agent: *\nCrawl-delay: 5\nDisallow: /x\n\nUser-agent: Kura\nCrawl-delay: 1.5\n";
        assert_eq!(Robots::parse(both, AGENT_TOKEN).crawl_delay(), Some(Duration::from_millis(1500)));
        let star = "User-agent: *\nCrawl-delay: 5\n";
        assert_eq!(Robots::parse(star, AGENT_TOKEN).crawl_delay(), Some(Duration::from_secs(5)));
        let huge = "User-agent: *\nCrawl-delay: 86400\n";
        assert_eq!(Robots::parse(huge, AGENT_TOKEN).crawl_delay(), Some(MAX_CRAWL_DELAY));
        for bad in ["-1", "0", "soon", "NaN", "inf"] {
            let text = format!("User-agent: *\nCrawl-delay: {bad}\n");
            assert_eq!(Robots::parse(&text, AGENT_TOKEN).crawl_delay(), None, "{bad}");
        }
        let other = "User-agent: googlebot\nCrawl-delay: 9\n";
        assert_eq!(Robots::parse(other, AGENT_TOKEN).crawl_delay(), None);
    }

    #[test]
    fn empty_file_allows_all() {
        assert!(robots("").allows("/anything"));
        assert!(Robots::allow_all().allows("/x?y=1"));
    }

    #[test]
    fn star_group_applies_without_our_group() {
        let r = robots("User-agent: *\nDisallow: /private/\n");
        assert!(!r.allows("/private/a.html"));
        assert!(r.allows("/public/a.html"));
    }

    #[test]
    fn our_group_replaces_star_group() {
        let r = robots("User-agent: *\nDisallow: /\n\nUser-agent: Kura/0.1\nDisallow: /secret\n");
        assert!(r.allows("/article"));
        assert!(!r.allows("/secret/x"));
    }

    #[test]
    fn other_bots_groups_ignored() {
        let r = robots("User-agent: Googlebot\nDisallow: /\n");
        assert!(r.allows("/"));
    }

    #[test]
    fn grouped_user_agents_share_rules() {
        let r = robots("User-agent: foo\nUser-agent: KURA\nDisallow: /a\n");
        assert!(!r.allows("/a"));
    }

    #[test]
    fn separate_groups_for_us_are_merged() {
        let r = robots(
            "User-agent: kura\nDisallow: /a\n\nUser-agent: other\nDisallow: /c\n\nUser-agent: kura\nDisallow: /b\n",
        );
        assert!(!r.allows("/a"));
        assert!(!r.allows("/b"));
        assert!(r.allows("/c"));
    }

    #[test]
    fn longest_match_wins() {
        let r = robots("User-agent: *\nDisallow: /images\nAllow: /images/public\n");
        assert!(r.allows("/images/public/a.jpg"));
        assert!(!r.allows("/images/private/a.jpg"));
    }

    #[test]
    fn allow_wins_a_tie() {
        let r = robots("User-agent: *\nDisallow: /page\nAllow: /page\n");
        assert!(r.allows("/page"));
    }

    #[test]
    fn wildcard_and_end_anchor() {
        let r = robots("User-agent: *\nDisallow: /*.gif$\nDisallow: /tmp*/cache\n");
        assert!(!r.allows("/pics/a.gif"));
        assert!(r.allows("/pics/a.gif?size=2"));
        assert!(!r.allows("/tmp123/cache/x"));
        assert!(r.allows("/tmp/other"));
    }

    #[test]
    fn query_is_part_of_the_path() {
        let r = robots("User-agent: *\nDisallow: /*?sessionid=\n");
        assert!(!r.allows("/a?sessionid=42"));
        assert!(r.allows("/a?page=2"));
    }

    #[test]
    fn empty_disallow_allows_everything() {
        let r = robots("User-agent: *\nDisallow:\n");
        assert!(r.allows("/"));
    }

    #[test]
    fn comments_and_case_of_keys() {
        let r = robots("# hello\nUSER-AGENT: * # all bots\nDISALLOW: /x # no x\n");
        assert!(!r.allows("/x"));
    }

    #[test]
    fn chinese_paths_match_encoded_or_not() {
        let r = robots("User-agent: *\nDisallow: /文章/草稿\n");
        assert!(!r.allows("/%E6%96%87%E7%AB%A0/%E8%8D%89%E7%A8%BF/1.html"));
        assert!(!r.allows("/%e6%96%87%e7%ab%a0/%e8%8d%89%e7%a8%bf"));
        assert!(r.allows("/%E6%96%87%E7%AB%A0/1.html"));
    }

    #[test]
    fn robots_txt_itself_always_allowed() {
        let r = robots("User-agent: *\nDisallow: /\n");
        assert!(r.allows("/robots.txt"));
        assert!(!r.allows("/"));
    }

    #[test]
    fn rules_before_any_user_agent_ignored() {
        let r = robots("Disallow: /\nUser-agent: *\nAllow: /\n");
        assert!(r.allows("/a"));
    }

    #[test]
    fn glob_backtracking() {
        assert!(matches(b"/a*b*c$", b"/axxbyyc"));
        assert!(!matches(b"/a*b*c$", b"/axxbyycd"));
        assert!(matches(b"*", b""));
        assert!(matches(b"/$", b"/"));
        assert!(!matches(b"/$", b"/a"));
    }
}
