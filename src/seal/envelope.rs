//! The envelope's byte layout. Two versions, told apart by the magic:
//!
//! ```text
//! RSE1 | key id (16 hex) | encapsulated key (32)        | AEAD ciphertext      X25519 only
//! RSE2 | KEM id | KDF id | AEAD id | key id (16 hex) | encapsulated key (KEM's) | AEAD ciphertext
//! ```
//!
//! RSE1 is what every release before suites sealed and what X25519 keys still seal, so old
//! envelopes and old servers keep working. RSE2 names its HPKE suite with the RFC 9180
//! identifiers (big-endian `u16` each), so an envelope of a suite this build does not know is
//! refused by name, not misread. Every header byte is authenticated: the key id is in the
//! AEAD's associated data, the suite identifiers enter HPKE's key schedule, and the version is
//! in HPKE's `info`.

use super::suite::{Suite, SuiteIds};
use super::{SealError, KEY_ID_LEN};

const MAGIC_V1: &[u8; 4] = b"RSE1";
const MAGIC_V2: &[u8; 4] = b"RSE2";
/// Every magic starts so; the digit after it is the version.
const MAGIC_STEM: &[u8; 3] = b"RSE";
const SUITE_IDS_LEN: usize = 6;
/// ChaCha20-Poly1305's tag.
pub(super) const TAG_LEN: usize = 16;

/// An envelope format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V1,
    V2,
}

impl Version {
    /// The version an envelope sealed to `suite` is written in: X25519 keeps RSE1, which
    /// runsecrets releases without suites still open.
    pub(super) fn for_suite(suite: Suite) -> Self {
        match suite {
            Suite::X25519 => Version::V1,
            Suite::XWing => Version::V2,
        }
    }

    /// HPKE `info`: binds the format version into the key schedule.
    pub(super) fn info(self) -> &'static [u8] {
        match self {
            Version::V1 => b"runsecrets.io secret v1",
            Version::V2 => b"runsecrets.io secret v2",
        }
    }
}

/// The parts of an envelope, borrowed from it.
#[derive(Debug)]
pub(super) struct Parts<'a> {
    pub version: Version,
    pub suite: Suite,
    pub key_id: &'a str,
    pub encapped: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// Splits an envelope; never reads past its end, whatever it holds.
pub(super) fn parse(envelope: &[u8]) -> Result<Parts<'_>, SealError> {
    let (version, suite, rest) = match envelope.split_first_chunk::<4>() {
        Some((magic, rest)) if magic == MAGIC_V1 => (Version::V1, Suite::X25519, rest),
        Some((magic, rest)) if magic == MAGIC_V2 => {
            let (ids, rest) = rest
                .split_first_chunk::<SUITE_IDS_LEN>()
                .ok_or(SealError::Malformed)?;
            let id = |i: usize| u16::from_be_bytes([ids[i], ids[i + 1]]);
            let ids = SuiteIds {
                kem: id(0),
                kdf: id(2),
                aead: id(4),
            };
            let suite = Suite::from_ids(ids).ok_or(SealError::UnknownSuite(ids))?;
            (Version::V2, suite, rest)
        }
        Some((magic, _)) if magic.starts_with(MAGIC_STEM) && magic[3].is_ascii_digit() => {
            return Err(SealError::UnknownFormat(char::from(magic[3])));
        }
        _ => return Err(SealError::Malformed),
    };
    let (key_id, rest) = rest
        .split_first_chunk::<KEY_ID_LEN>()
        .ok_or(SealError::Malformed)?;
    if !key_id.iter().all(u8::is_ascii_hexdigit) {
        return Err(SealError::Malformed);
    }
    let key_id = std::str::from_utf8(key_id).map_err(|_| SealError::Malformed)?;
    if rest.len() < suite.encapped_len() + TAG_LEN {
        return Err(SealError::Malformed);
    }
    let (encapped, ciphertext) = rest.split_at(suite.encapped_len());
    Ok(Parts {
        version,
        suite,
        key_id,
        encapped,
        ciphertext,
    })
}

/// Writes an envelope from its parts.
pub(super) fn frame(
    version: Version,
    suite: Suite,
    key_id: &str,
    encapped: &[u8],
    ciphertext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        MAGIC_V2.len() + SUITE_IDS_LEN + KEY_ID_LEN + encapped.len() + ciphertext.len(),
    );
    match version {
        Version::V1 => out.extend_from_slice(MAGIC_V1),
        Version::V2 => {
            let ids = suite.ids();
            out.extend_from_slice(MAGIC_V2);
            for id in [ids.kem, ids.kdf, ids.aead] {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(encapped);
    out.extend_from_slice(ciphertext);
    out
}
