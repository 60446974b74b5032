//! Exports into formats other tools read: WARC 1.1 with CDXJ and WACZ.

pub(crate) mod warc;

pub use warc::record::sha256_label;
pub use warc::{ExportProblem, WarcError, WarcOptions, WarcReport, export_warc};
