//! Keeping requests off loopback, private and link-local networks.
//!
//! Two doors are guarded: IP-literal hosts are checked before a request is
//! sent ([`literal_private_addr`]), and names go through [`GuardedResolver`],
//! so a DNS answer cannot smuggle in a private address (names that resolve to
//! both kinds keep only the public ones). It does not stop a public server
//! from redirecting to a private one: every hop goes through both doors again.
//! A configured proxy resolves names itself, so then names are also looked
//! up here first ([`private_name`]) and refused if any answer is private.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether `ip` belongs to a range Kura refuses by default: loopback,
/// RFC 1918 private, link-local, CGNAT (100.64/10), "this network" (0/8),
/// broadcast, multicast, IPv6 unique-local (fc00::/7), link-local
/// (fe80::/10), `::1`, `::`, local-use NAT64 (64:ff9b:1::/48), and the IPv6
/// forms that embed an IPv4 address (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) when the
/// embedded address is one of these.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_private_v4(v4);
    }
    let s = ip.segments();
    ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
}

/// The IPv4 address an IPv6 transition form carries, which is where a
/// packet to it ends up: mapped, compatible, NAT64 (well-known prefix) or
/// 6to4.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The refused address if `url`'s host is an IP literal in a private range.
pub fn literal_private_addr(url: &Url) -> Option<IpAddr> {
    let ip = match url.host()? {
        Host::Ipv4(v4) => IpAddr::V4(v4),
        Host::Ipv6(v6) => IpAddr::V6(v6),
        Host::Domain(_) => return None,
    };
    is_private(ip).then_some(ip)
}

/// A private address `name` resolves to on this machine, if any. A name
/// that does not resolve here gives `None`: the proxy may know it, and it
/// cannot be one of this machine's private names.
pub async fn private_name(name: &str) -> Option<IpAddr> {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let addrs = tokio::net::lookup_host((name, 0)).await.ok()?;
    addrs.map(|a| a.ip()).find(|ip| is_private(*ip))
}

/// The error a [`GuardedResolver`] gives when every address of a name is
/// private; the fetcher finds it in reqwest's error chain to report
/// [`super::FetchError::PrivateAddress`].
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to private addresses (first: {addr})")]
pub struct PrivateAnswer {
    /// The name looked up.
    pub host: String,
    /// The first private address of the answer.
    pub addr: IpAddr,
}

/// The address named by a [`PrivateAnswer`] somewhere in `err`'s sources.
pub fn private_answer_in(err: &(dyn StdError + 'static)) -> Option<IpAddr> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(answer) = e.downcast_ref::<PrivateAnswer>() {
            return Some(answer.addr);
        }
        current = e.source();
    }
    None
}

/// System DNS (getaddrinfo via tokio) with private answers filtered out
/// unless `allow_private`.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Pass every address through.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: hyper puts the URL's port on the addresses afterwards.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs = filter_answer(&host, addrs, allow_private)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The addresses to connect to, or the refusal when none is allowed.
fn filter_answer(
    host: &str,
    addrs: Vec<SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
    if allow_private {
        return Ok(addrs);
    }
    let first_private = addrs.iter().find(|a| is_private(a.ip())).map(|a| a.ip());
    let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_private(a.ip())).collect();
    match (public.is_empty(), first_private) {
        (true, Some(addr)) => Err(Box::new(PrivateAnswer { host: host.to_owned(), addr })),
        _ => Ok(public),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn refuses_private_v4_ranges() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
        ] {
            assert!(is_private(ip(a)), "{a}");
        }
    }

    #[test]
    fn allows_public_v4_next_to_private_ranges() {
        for a in ["172.32.0.1", "172.15.255.255", "100.128.0.1", "100.63.255.255", "8.8.8.8", "1.1.1.1"] {
            assert!(!is_private(ip(a)), "{a}");
        }
    }

    #[test]
    fn refuses_private_v6_and_mapped() {
        for a in [
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:192.168.0.1",
            "::ffff:10.0.0.1",
            "::7f00:1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::",
        ] {
            assert!(is_private(ip(a)), "{a}");
        }
    }

    #[test]
    fn allows_public_v6() {
        for a in [
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::8.8.8.8",
        ] {
            assert!(!is_private(ip(a)), "{a}");
        }
    }

    #[test]
    fn literal_hosts_checked_and_names_left_to_dns() {
        let url = |s: &str| Url::parse(s).expect("test URL parses");
        assert_eq!(literal_private_addr(&url("http://127.0.0.1:8080/")), Some(ip("127.0.0.1")));
        assert_eq!(literal_private_addr(&url("http://[::1]/")), Some(ip("::1")));
        assert_eq!(literal_private_addr(&url("http://[::ffff:a00:1]/x")), Some(ip("::ffff:10.0.0.1")));
        assert_eq!(literal_private_addr(&url("https://93.184.216.34/")), None);
        assert_eq!(literal_private_addr(&url("http://localhost/")), None);
    }

    #[test]
    fn answer_filter_keeps_public_drops_private() {
        let addrs = vec![SocketAddr::new(ip("10.0.0.1"), 0), SocketAddr::new(ip("8.8.8.8"), 0)];
        let kept = filter_answer("mixed.example", addrs, false).expect("public remains");
        assert_eq!(kept, vec![SocketAddr::new(ip("8.8.8.8"), 0)]);
    }

    #[test]
    fn answer_filter_refuses_all_private_and_error_is_found() {
        let addrs = vec![SocketAddr::new(ip("127.0.0.1"), 0)];
        let err = filter_answer("localhost", addrs, false).expect_err("refused");
        assert_eq!(private_answer_in(err.as_ref()), Some(ip("127.0.0.1")));
    }

    #[test]
    fn answer_filter_passes_all_when_allowed() {
        let addrs = vec![SocketAddr::new(ip("127.0.0.1"), 0)];
        assert_eq!(filter_answer("localhost", addrs.clone(), true).expect("allowed"), addrs);
    }
}
