//! Kura (蔵, "storehouse") archives web articles and the images they
//! reference, deduplicated, compressed and verifiable.
//!
//! Data flows one way: sources -> fetch -> extract -> store -> snapshot.
//! The `kura` binary is a thin layer over this library; see ARCHITECTURE.md
//! for where things live and which invariants hold.
#![warn(missing_docs)]

#[cfg(feature = "demo")]
pub mod demo;
pub mod export;
pub mod extract;
pub mod fetch;
pub mod inspect;
pub mod jobs;
pub mod pipeline;
pub mod referrer;
pub mod restore;
pub mod sources;
pub mod store;
