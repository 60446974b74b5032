//! Typed 32-byte identifiers: blobs, packs and snapshots are all named by a
//! SHA-256, but mixing them up is a bug the compiler should catch.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A raw SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest32(pub [u8; 32]);

impl Digest32 {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest32(Sha256::digest(data).into())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(self) -> String {
        self.hex_chars().to_string()
    }

    /// Lower-case hex without an allocation (manifests and spill files
    /// write millions of ids; `hex::encode` goes a char at a time).
    pub fn hex_chars(self) -> HexChars {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 hex digits for 32 bytes");
        HexChars(out)
    }

    /// Parses exactly 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest32(out))
    }
}

/// The 64 hex digits of a digest, on the stack.
pub struct HexChars([u8; 64]);

impl std::ops::Deref for HexChars {
    type Target = str;

    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..12])
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub Digest32);

        impl $name {
            /// The id whose digest is the SHA-256 of `data`.
            pub fn of(data: &[u8]) -> Self {
                $name(Digest32::of(data))
            }
            /// The digest's 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }
            /// Builds an id from 32 bytes read from an index or a pack.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(Digest32(bytes))
            }
            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// The first 8 hex characters, for display.
            pub fn short(&self) -> String {
                self.0.to_hex()[..8].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.hex_chars())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Digest32::from_hex(s).map($name).ok_or_else(|| InvalidId(s.to_string()))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // Hex in JSON; the 32 bytes in a binary format (a run's
                // spill of entries).
                if s.is_human_readable() {
                    s.serialize_str(&self.0.hex_chars())
                } else {
                    s.serialize_bytes(&self.0.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Read in place: a `Cow` would copy each of a manifest's
                // millions of ids into a String first.
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("64 hex digits")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        s.parse().map_err(E::custom)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<$name, E> {
                        b.try_into().map(|b| $name(Digest32(b))).map_err(|_| E::invalid_length(b.len(), &self))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(Visitor)
                } else {
                    d.deserialize_bytes(Visitor)
                }
            }
        }
    };
}

typed_id!(
    /// A blob: SHA-256 of its raw (uncompressed, original) bytes.
    BlobId
);
typed_id!(
    /// A pack file: SHA-256 of its trailer (which lists every blob id and offset).
    PackId
);
typed_id!(
    /// A snapshot: SHA-256 of its manifest file's bytes.
    SnapshotId
);
typed_id!(
    /// An index file: SHA-256 of its bytes.
    IndexFileId
);

/// A string that is not 64 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("not a valid id (64 hex characters expected): {0:?}")]
pub struct InvalidId(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_digest() {
        let id = BlobId::of(b"abc");
        assert_eq!(id.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("xyz".parse::<BlobId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
