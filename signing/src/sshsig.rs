//! An armored SSHSIG signature, parsed and bounded, and the streamed hashing of the message it signs.
//!
//! `PROTOCOL.sshsig`: the signature is made over the blob `"SSHSIG" || string(namespace) || string(reserved) ||
//! string(hash_algorithm) || string(H(message))`, so verifying or signing needs the message only through its
//! digest. ssh-key's `SshSig::verify`/`sign` take the whole message as a slice; here the archive is hashed from a
//! reader in fixed-size chunks ([`digest_reader`]) and the blob built from that digest ([`signed_data`]) with
//! ssh-key's own encoding crate, then checked with the key's `Verifier` impl ([`Sshsig::verify_digest`]).

use crate::MAX_SIGNATURE_BYTES;
use sha2::Digest as _;
use signature::Verifier as _;
use ssh_encoding::Encode as _;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, LineEnding, SshSig};
use std::io::Read;

/// The six bytes that start every SSHSIG blob, signed or not.
const MAGIC_PREAMBLE: &[u8] = b"SSHSIG";

/// The armor's first line.
pub const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";

/// A signature that is not a usable armored SSHSIG.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// Larger than [`MAX_SIGNATURE_BYTES`].
    #[error(
        "signature of {bytes} bytes is too large: an SSH signature is at most {max} bytes",
        max = MAX_SIGNATURE_BYTES
    )]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// No armor: not what `ssh-keygen -Y sign` writes.
    #[error(
        "not an SSH signature: expected the armored text `ssh-keygen -Y sign -n rollcage` writes (starting \
         `{begin}`)",
        begin = ARMOR_BEGIN
    )]
    NotArmored,
    /// The armor holds no valid SSHSIG.
    #[error("malformed SSH signature: {0}")]
    Malformed(String),
}

/// A parsed SSHSIG. It says which key claims to have signed, for which namespace, with which hash; whether that is
/// true of a given archive is [`Sshsig::verify_digest`]'s question, and whether the key is trusted is
/// [`crate::verify`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sshsig {
    inner: SshSig,
}

impl Sshsig {
    /// Parse armored text (surrounding whitespace allowed), at most [`MAX_SIGNATURE_BYTES`].
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        if text.len() > MAX_SIGNATURE_BYTES {
            return Err(SignatureError::TooLarge { bytes: text.len() });
        }
        let text = text.trim();
        if !text.starts_with(ARMOR_BEGIN) {
            return Err(SignatureError::NotArmored);
        }
        let inner = SshSig::from_pem(text).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Parse raw bytes (a file's content): [`Sshsig::parse`] of its text.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() > MAX_SIGNATURE_BYTES {
            return Err(SignatureError::TooLarge { bytes: bytes.len() });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SignatureError::NotArmored)?;
        Self::parse(text)
    }

    /// The canonical armored text (LF line endings, trailing newline): what is stored and sent.
    pub fn armored(&self) -> Result<String, SignatureError> {
        self.inner
            .to_pem(LineEnding::LF)
            .map_err(|e| SignatureError::Malformed(e.to_string()))
    }

    /// The namespace it was made for (`-n` of `ssh-keygen -Y sign`).
    pub fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    /// The public key it names as its signer.
    pub fn key(&self) -> &KeyData {
        self.inner.public_key()
    }

    /// The signer key's SHA256 fingerprint, as `ssh-keygen -l` prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The signer key for people: its algorithm and fingerprint (`ssh-ed25519 SHA256:…`).
    pub fn signer(&self) -> String {
        format!("{} {}", self.key().algorithm(), self.fingerprint())
    }

    /// The hash the message was digested with (sha512 for `ssh-keygen`).
    pub fn hash_alg(&self) -> HashAlg {
        self.inner.hash_alg()
    }

    /// True when the signature is valid, by the key it names, over a message whose [`Sshsig::hash_alg`] digest is
    /// `digest`, for the namespace it names. Says nothing about whether that key is trusted.
    pub fn verify_digest(&self, digest: &[u8]) -> bool {
        let Ok(data) = signed_data(self.namespace(), self.hash_alg(), digest) else {
            return false;
        };
        self.key().verify(&data, self.inner.signature()).is_ok()
    }

    /// [`Sshsig::verify_digest`] of the message read from `reader` (streamed).
    pub fn verify_reader(&self, reader: impl Read) -> std::io::Result<bool> {
        let digest = digest_reader(self.hash_alg(), reader)?;
        Ok(self.verify_digest(&digest))
    }

    /// A signature from its parts (the signing side).
    pub(crate) fn from_parts(
        key: KeyData,
        namespace: &str,
        hash_alg: HashAlg,
        signature: ssh_key::Signature,
    ) -> Result<Self, SignatureError> {
        let inner = SshSig::new(key, namespace, hash_alg, signature)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        Ok(Self { inner })
    }
}

/// The size of one read while hashing: large enough that the hash, not the syscalls, is the cost.
const CHUNK: usize = 256 * 1024;

/// A message's digest, fed piece by piece (for a caller that holds the bytes in passing, like an upload).
#[derive(Debug, Clone)]
pub struct MessageDigest(Hasher);

#[derive(Debug, Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl MessageDigest {
    /// A digest with `hash_alg`; `None` for a hash PROTOCOL.sshsig does not name.
    pub fn new(hash_alg: HashAlg) -> Option<Self> {
        match hash_alg {
            HashAlg::Sha256 => Some(Self(Hasher::Sha256(sha2::Sha256::new()))),
            HashAlg::Sha512 => Some(Self(Hasher::Sha512(sha2::Sha512::new()))),
            // `HashAlg` is non-exhaustive; ssh-key 0.6 has only these two, as has PROTOCOL.sshsig.
            _ => None,
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finalize(self) -> Vec<u8> {
        match self.0 {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// The `hash_alg` digest of everything `reader` yields, read in [`CHUNK`]-sized pieces (constant memory).
pub fn digest_reader(hash_alg: HashAlg, mut reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut digest = MessageDigest::new(hash_alg).ok_or_else(|| {
        std::io::Error::other(format!("unsupported SSHSIG hash algorithm {hash_alg}"))
    })?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(digest.finalize()),
            Ok(n) => digest.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The blob an SSHSIG signs, built from the message's digest: `"SSHSIG" || string(namespace) || string("") ||
/// string(hash_alg) || string(digest)`. The reserved field is empty, as OpenSSH's `sshsig_wrap_verify` builds it.
pub fn signed_data(
    namespace: &str,
    hash_alg: HashAlg,
    digest: &[u8],
) -> Result<Vec<u8>, ssh_encoding::Error> {
    let mut out = Vec::with_capacity(MAGIC_PREAMBLE.len() + namespace.len() + digest.len() + 32);
    out.extend_from_slice(MAGIC_PREAMBLE);
    namespace.encode(&mut out)?;
    (&[] as &[u8]).encode(&mut out)?;
    hash_alg.as_str().encode(&mut out)?;
    digest.encode(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_from_a_streamed_digest_is_ssh_keys_own() -> Result<(), Box<dyn std::error::Error>> {
        let msg: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        for alg in [HashAlg::Sha256, HashAlg::Sha512] {
            let digest = digest_reader(alg, &msg[..])?;
            assert_eq!(
                signed_data("rollcage", alg, &digest)?,
                SshSig::signed_data("rollcage", alg, &msg)?,
                "{alg}"
            );
        }
        Ok(())
    }

    #[test]
    fn garbage_truncated_and_oversized_signatures_are_refused() {
        assert!(matches!(
            Sshsig::parse("hello"),
            Err(SignatureError::NotArmored)
        ));
        let garbage = format!("{ARMOR_BEGIN}\nAAAA!!!!\n-----END SSH SIGNATURE-----\n");
        assert!(matches!(
            Sshsig::parse(&garbage),
            Err(SignatureError::Malformed(_))
        ));
        let big = format!("{ARMOR_BEGIN}\n{}", "A".repeat(MAX_SIGNATURE_BYTES));
        assert!(matches!(
            Sshsig::parse(&big),
            Err(SignatureError::TooLarge { .. })
        ));
        assert!(matches!(
            Sshsig::parse_bytes(&[0xff, 0xfe]),
            Err(SignatureError::NotArmored)
        ));
    }
}
