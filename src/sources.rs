//! Where entries come from before anything is fetched or stored: feeds,
//! sitemaps, local posts and files, and the charset detection they share.
//!
//! Sources only parse; they never touch the network or the store.

pub(crate) mod charset;
pub(crate) mod feed;
pub(crate) mod files;
pub(crate) mod post;
pub(crate) mod sitemap;

pub use charset::{Decoded, EncodingSource, decode as decode_text};
pub use files::{archive_files, file_url};
