//! The fingerprint of a coordinator's CA certificate, the one thing an agent or an operator pins instead of
//! copying a CA file: `SHA256:` followed by the unpadded standard base64 of the SHA-256 of the certificate's DER,
//! the form OpenSSH prints key fingerprints in (`SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU`).
//!
//! The coordinator prints it (and writes it to `DATA/tls/ca.fingerprint`); clients parse it from
//! `--ca-fingerprint` and compare it with the certificates the coordinator presents.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The prefix naming the hash.
pub const PREFIX: &str = "SHA256:";

/// The SHA-256 fingerprint of a certificate (its DER bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaFingerprint([u8; 32]);

impl CaFingerprint {
    /// The fingerprint of a certificate given as DER.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The raw digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a `SHA256:<base64>` fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFingerprint {
    /// What was given (at most 100 characters of it).
    pub given: String,
}

impl fmt::Display for InvalidFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid CA fingerprint `{}`: expected {PREFIX} followed by 43 base64 characters (what the \
             coordinator prints at start and writes to DATA/tls/ca.fingerprint)",
            self.given
        )
    }
}

impl std::error::Error for InvalidFingerprint {}

impl FromStr for CaFingerprint {
    type Err = InvalidFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let invalid = || InvalidFingerprint {
            given: s.chars().take(100).collect(),
        };
        // The prefix case-insensitively (`sha256:` as kubeadm writes it); the base64 as given, padding tolerated.
        let body = s
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &s[PREFIX.len()..])
            .ok_or_else(invalid)?;
        let bytes = STANDARD_NO_PAD
            .decode(body.trim_end_matches('='))
            .map_err(|_| invalid())?;
        let digest: [u8; 32] = bytes.try_into().map_err(|_| invalid())?;
        Ok(Self(digest))
    }
}

/// Written as its `SHA256:<base64>` text (config files, JSON).
impl serde::Serialize for CaFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CaFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip_in_openssh_form() -> Result<(), InvalidFingerprint> {
        let fp = CaFingerprint::of_der(b"");
        // The SHA-256 of nothing, as `ssh-keygen -l` would print it.
        assert_eq!(
            fp.to_string(),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(fp.to_string().parse::<CaFingerprint>()?, fp);
        assert_eq!(
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".parse::<CaFingerprint>()?,
            fp
        );
        Ok(())
    }

    #[test]
    fn malformed_fingerprints_are_refused() {
        for bad in [
            "",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "MD5:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "SHA256:47DEQpj8HBSa",
            "SHA256:!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "SHA256:é",
        ] {
            assert!(bad.parse::<CaFingerprint>().is_err(), "accepted `{bad}`");
        }
    }
}
