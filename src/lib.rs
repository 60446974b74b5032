//! Kura (蔵, "storehouse") archives web articles and the images they
//! reference, deduplicated, compressed and verifiable.
//!
//! Data flows one way: sources -> fetch -> extract -> store -> snapshot.
//! The `kura` binary is a thin layer over this library; see ARCHITECTURE.md
//! for where things live and which invariants hold.
//!
//! The API is curated: each concept module below keeps its parts private
//! and re-exports what the binary, the tests and the benchmarks use. The
//! engine pieces the pipeline and restore are built from (`fetch`,
//! `extract`, `referrer`) are private; the few of their types that appear
//! in the API are re-exported here.
#![deny(missing_docs)]

mod extract;
mod fetch;
mod referrer;

#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod export;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
pub mod inspect;
pub mod jobs;
pub mod pipeline;
pub mod restore;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sources;
pub mod store;

pub use extract::{Descriptor, SrcsetCandidate, parse_srcset};
pub use fetch::{FetchConfig, FetchError, TimeoutPhase};
pub use referrer::Policy as ReferrerPolicy;
