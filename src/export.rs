//! Exports into formats other tools read: WARC 1.1 with CDXJ and WACZ.

pub mod warc;
