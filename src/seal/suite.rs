//! Sealing suites: which HPKE KEM a key belongs to. Every suite uses the same key schedule
//! (HKDF-SHA256) and AEAD (ChaCha20-Poly1305); only the key encapsulation differs. X25519 is
//! RFC 9180's DHKEM(X25519, HKDF-SHA256); X-Wing is the X25519 + ML-KEM-768 hybrid of
//! draft-connolly-cfrg-xwing-kem, run as an HPKE KEM as draft-ietf-hpke-pq assigns it, so an
//! envelope stays secret as long as either X25519 or ML-KEM-768 holds.

use std::fmt;

use hpke::aead::{Aead as _, ChaCha20Poly1305};
use hpke::kdf::{HkdfSha256, Kdf as _};
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::{Kem, Serializable};
use serde::{Deserialize, Serialize};

/// A key's suite, as keyrings, public-key files and `keys ls` name it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// DHKEM(X25519, HKDF-SHA256): 32-byte keys and encapsulations.
    #[default]
    X25519,
    /// X-Wing (X25519 + ML-KEM-768): a 1216-byte public key and a 1120-byte encapsulation,
    /// secure while either component is.
    #[value(name = "xwing")]
    #[serde(rename = "xwing")]
    XWing,
}

/// The HPKE algorithm identifiers of a suite (RFC 9180 section 7; X-Wing's from
/// draft-ietf-hpke-pq), as the versioned envelope header carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteIds {
    pub kem: u16,
    pub kdf: u16,
    pub aead: u16,
}

impl fmt::Display for SuiteIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KEM 0x{:04x}, KDF 0x{:04x}, AEAD 0x{:04x}",
            self.kem, self.kdf, self.aead
        )
    }
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::X25519, Suite::XWing];

    /// The short name of flags, files and `keys ls`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::X25519 => "x25519",
            Suite::XWing => "xwing",
        }
    }

    /// The HPKE identifiers; KDF and AEAD are the same for every suite.
    pub fn ids(self) -> SuiteIds {
        let kem = match self {
            Suite::X25519 => X25519HkdfSha256::KEM_ID,
            Suite::XWing => XWing::KEM_ID,
        };
        SuiteIds {
            kem,
            kdf: HkdfSha256::KDF_ID,
            aead: ChaCha20Poly1305::AEAD_ID,
        }
    }

    /// The suite these identifiers name, if runsecrets opens it.
    pub fn from_ids(ids: SuiteIds) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.ids() == ids)
    }

    /// Bytes of the encapsulated key an envelope of this suite carries.
    pub fn encapped_len(self) -> usize {
        match self {
            Suite::X25519 => <X25519HkdfSha256 as Kem>::EncappedKey::size(),
            Suite::XWing => <XWing as Kem>::EncappedKey::size(),
        }
    }

    /// Bytes of a public key of this suite.
    pub fn public_key_len(self) -> usize {
        match self {
            Suite::X25519 => <X25519HkdfSha256 as Kem>::PublicKey::size(),
            Suite::XWing => <XWing as Kem>::PublicKey::size(),
        }
    }

    pub fn is_x25519(&self) -> bool {
        *self == Suite::X25519
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}
