//! Errors of the HTTP client layer, each naming the URL it concerns.
//!
//! Messages say what happened and, where the user can do something about it,
//! which setting to change. They never contain request header values (extra
//! headers may carry cookies or tokens).

use std::net::IpAddr;

use url::Url;

/// Which deadline a request missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the TCP/TLS connection (`connect_timeout_ms`).
    Connect,
    /// Waiting for the next bytes of the response (`read_timeout_ms`).
    Read,
    /// The whole request, headers and body (`total_timeout_ms`).
    Total,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect (network.connect_timeout_ms)",
            TimeoutPhase::Read => "read (network.read_timeout_ms)",
            TimeoutPhase::Total => "total (network.total_timeout_ms)",
        })
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be built (TLS backend, bad user agent).
    #[error("cannot build the HTTP client: {source}")]
    Client {
        /// The underlying reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// `network.proxy` is not a proxy URL.
    #[error("network.proxy = {proxy:?} is not a usable proxy URL (give http://host:port): {source}")]
    Proxy {
        /// The configured value.
        proxy: String,
        /// Why reqwest refused it.
        source: reqwest::Error,
    },
    /// The URL (or a redirect's `Location`) could not be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only http and https are fetched.
    #[error("cannot fetch {url}: scheme {scheme:?} is not supported (only http and https)")]
    UnsupportedScheme {
        /// The URL.
        url: Url,
        /// Its scheme.
        scheme: String,
    },
    /// The host is, or resolves to, a loopback/private/link-local address.
    #[error(
        "refusing to fetch {url}: {addr} is a loopback, private or link-local address; \
         set network.allow_private = true to allow it"
    )]
    PrivateAddress {
        /// The URL.
        url: Url,
        /// The refused address.
        addr: IpAddr,
    },
    /// The site's robots.txt disallows this URL for Kura.
    #[error(
        "robots.txt of {origin} disallows {url} for user agent \"kura\"; \
         set network.robots = false to ignore robots.txt"
    )]
    RobotsDisallowed {
        /// The URL.
        url: Url,
        /// The origin whose robots.txt applied.
        origin: String,
    },
    /// A deadline passed.
    #[error("timed out fetching {url} during {phase}")]
    Timeout {
        /// The URL.
        url: Url,
        /// Which deadline.
        phase: TimeoutPhase,
    },
    /// No connection could be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: Url,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The request failed after the connection was made (protocol error).
    #[error("request to {url} failed: {source}")]
    Request {
        /// The URL.
        url: Url,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A header from the configuration is not a valid HTTP header.
    #[error("invalid extra header {name:?} for {url}: check the header name and value in the config")]
    InvalidHeader {
        /// The URL.
        url: Url,
        /// The header name (the value is never shown).
        name: String,
    },
    /// More redirects than `max_redirects`.
    #[error("more than {limit} redirects starting at {url}; raise network.max_redirects if the site needs more")]
    TooManyRedirects {
        /// The URL first requested.
        url: Url,
        /// The limit.
        limit: usize,
    },
    /// A redirect led back to a URL already in the chain.
    #[error("redirect loop: {url} was reached twice in one redirect chain")]
    RedirectLoop {
        /// The URL reached twice.
        url: Url,
    },
    /// The server answered with a status other than 2xx/304 (after retries).
    #[error("HTTP {status} from {url}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The URL that answered.
        url: Url,
    },
    /// The body is larger than `body_cap`.
    #[error("body of {url} is larger than {cap} bytes; raise network.body_cap to accept it")]
    BodyTooLarge {
        /// The URL.
        url: Url,
        /// The cap in bytes.
        cap: u64,
    },
    /// The body arrived slower than `min_speed` for a whole window.
    #[error(
        "body of {url} arrived at {speed} bytes/s, slower than network.min_speed ({min_speed}) \
         for {window_ms} ms; abandoned after {received} bytes (lower network.min_speed, or 0 to disable)"
    )]
    TooSlow {
        /// The URL.
        url: Url,
        /// Bytes per second over the last window.
        speed: u64,
        /// The configured floor.
        min_speed: u64,
        /// The window, in milliseconds (`network.min_speed_window_ms`).
        window_ms: u64,
        /// Bytes received before giving up.
        received: u64,
    },
    /// Reading (or decompressing) the body failed.
    #[error("cannot read the body of {url}: {detail}")]
    Body {
        /// The URL.
        url: Url,
        /// The underlying error with its causes.
        detail: String,
    },
}

impl FetchError {
    /// Whether sending the same request again may succeed: connection
    /// failures and timeouts. Status codes are judged separately.
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Timeout { .. } | FetchError::Connect { .. })
    }
}
