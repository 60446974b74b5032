//! Where entries come from before anything is fetched or stored: feeds,
//! sitemaps, local posts and files, and the charset detection they share.
//!
//! Sources only parse; they never touch the network or the store.

pub mod charset;
pub mod feed;
pub mod files;
pub mod post;
pub mod sitemap;
