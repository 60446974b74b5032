//! The store: everything that turns bodies into durable, deduplicated,
//! verifiable bytes and back. Ids, the blob codec, packs, the backend that
//! moves files, the sled index (a cache), manifests, the writer and its lock.
//!
//! Nothing in here knows about HTTP, HTML or jobs; the pipeline hands the
//! store bodies and the store hands back ids.

pub mod archive;
pub mod backend;
pub mod blob;
pub mod id;
pub mod index;
pub mod manifest;
pub mod pack;
pub mod prune;
pub mod writer;
