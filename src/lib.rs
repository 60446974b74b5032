//! Kura (蔵, "storehouse") archives web articles and the images they
//! reference, deduplicated, compressed and verifiable.
//!
//! Data flows one way: sources -> fetch -> extract -> store -> snapshot.
//! The `kura` binary is a thin layer over this library; see ARCHITECTURE.md
//! for where things live and which invariants hold.
#![warn(missing_docs)]

pub mod archive;
pub mod backend;
pub mod blob;
pub mod charset;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod duration;
pub mod extract;
pub mod feed;
pub mod fetch;
pub mod files;
pub mod forget;
pub mod id;
pub mod index;
pub mod jobs;
pub mod media;
pub mod pack;
pub mod pipeline;
pub mod post;
pub mod prune;
pub mod referrer;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod site;
pub mod sitemap;
pub mod snapshot;
pub mod stats;
pub mod verify;
pub mod warc;
pub mod writer;
