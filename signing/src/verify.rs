//! The host's decision: does a bundle carry a valid signature, for [`NAMESPACE`], from a key the allowed_signers
//! file lists for it? Checked in the order that is cheapest and says most: a signature at all, that it parses, its
//! namespace, its key in the file (and allowed there for rollcage, now), and only then the archive, hashed
//! streaming against the signature.

use crate::NAMESPACE;
use crate::allowed::{AllowedSigners, AllowedSignersError};
use crate::sshsig::{SignatureError, Sshsig};
use std::path::{Path, PathBuf};

/// A bundle that passed: who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key, for people (`ssh-ed25519 SHA256:…`).
    pub signer: String,
    /// The principals its allowed_signers line names.
    pub principals: String,
    /// That line, as `FILE:LINE`.
    pub listed_at: String,
}

/// Why a bundle is refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The revision came with no signature.
    #[error(
        "no signature: this host deploys only revisions signed by a key in {signers} (sign the bundle with \
         `ssh-keygen -Y sign -n rollcage -f KEY BUNDLE` and push it with `--signature BUNDLE.sig`)"
    )]
    NoSignature {
        /// The allowed_signers file.
        signers: String,
    },
    /// The signature is not a usable SSHSIG.
    #[error("bad signature: {0}")]
    Malformed(#[from] SignatureError),
    /// Made for another namespace.
    #[error(
        "wrong namespace: the signature is for namespace \"{found}\", expected \"{ns}\" (sign with \
         `ssh-keygen -Y sign -n {ns}`)",
        ns = NAMESPACE
    )]
    WrongNamespace {
        /// The namespace it names.
        found: String,
    },
    /// Signed by a key the file does not list.
    #[error("unknown key: the revision is signed by {signer}, which is not in {signers}")]
    UnknownKey {
        /// The signer key (`ssh-ed25519 SHA256:…`).
        signer: String,
        /// The allowed_signers file.
        signers: String,
    },
    /// The key is listed, but not for rollcage now.
    #[error("key not trusted for revisions: {signer} is in {listed_at}, but {reason}")]
    NotAllowed {
        /// The signer key.
        signer: String,
        /// `FILE:LINE` of its entry.
        listed_at: String,
        /// Why that entry does not allow it ([`crate::allowed::Entry::allows`]).
        reason: String,
    },
    /// The signature does not verify over this archive.
    #[error(
        "bad signature: the signature by {signer} does not match this bundle (it signs other bytes, or the \
         bundle was altered)"
    )]
    BadSignature {
        /// The signer key.
        signer: String,
    },
    /// The allowed_signers file cannot be used.
    #[error(transparent)]
    Signers(#[from] AllowedSignersError),
    /// The archive could not be read.
    #[error("could not read the bundle {path} to check its signature: {source}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Check `signature` (armored text, `None` when the revision has none) over the archive read from `bundle`
/// against `signers`, at `now` (seconds since the epoch). `path` names the archive in a read error.
pub fn verify_reader(
    signature: Option<&str>,
    signers: &AllowedSigners,
    bundle: impl std::io::Read,
    path: &Path,
    now: i64,
) -> Result<Verified, VerifyError> {
    let Some(text) = signature else {
        return Err(VerifyError::NoSignature {
            signers: signers.origin().to_owned(),
        });
    };
    let sig = Sshsig::parse(text)?;
    if sig.namespace() != NAMESPACE {
        return Err(VerifyError::WrongNamespace {
            found: sig.namespace().to_owned(),
        });
    }
    let signer = sig.signer();
    let listed: Vec<_> = signers.entries_for(sig.key()).collect();
    let Some(first) = listed.first() else {
        return Err(VerifyError::UnknownKey {
            signer,
            signers: signers.origin().to_owned(),
        });
    };
    let at = |line: usize| format!("{}:{line}", signers.origin());
    let entry = match listed.iter().find(|e| e.allows(NAMESPACE, now).is_ok()) {
        Some(entry) => entry,
        None => {
            let reason = first.allows(NAMESPACE, now).err().unwrap_or_default();
            return Err(VerifyError::NotAllowed {
                signer,
                listed_at: at(first.line),
                reason,
            });
        }
    };
    let valid = sig
        .verify_reader(bundle)
        .map_err(|source| VerifyError::Read {
            path: path.to_owned(),
            source,
        })?;
    if !valid {
        return Err(VerifyError::BadSignature { signer });
    }
    Ok(Verified {
        signer,
        principals: entry.principals.clone(),
        listed_at: at(entry.line),
    })
}

/// [`verify_reader`] of the archive file `bundle`, with the allowed_signers file `signers` read now (so an edited
/// file applies to the next check without a restart) and the current time.
pub fn verify_file(
    signature: Option<&str>,
    signers: &Path,
    bundle: &Path,
) -> Result<Verified, VerifyError> {
    let signers = AllowedSigners::load(signers)?;
    // No signature: refused without opening the archive.
    if signature.is_none() {
        return verify_reader(None, &signers, std::io::empty(), bundle, now());
    }
    let file = std::fs::File::open(bundle).map_err(|source| VerifyError::Read {
        path: bundle.to_owned(),
        source,
    })?;
    verify_reader(signature, &signers, file, bundle, now())
}

/// Seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
