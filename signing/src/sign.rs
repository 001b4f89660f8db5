//! Signing an archive as `ssh-keygen -Y sign -n rollcage -f KEY ARCHIVE` does: in-process with an unencrypted
//! OpenSSH private key (hashed streaming, sha512 like ssh-keygen), or, for a passphrase-protected key (or one the
//! `ssh-key` crate cannot read, see [`LoadedKey::Foreign`]), by running `ssh-keygen` itself (program and arguments, never a shell string), which asks for the passphrase on the
//! terminal or uses the ssh-agent. The passphrase never passes through rollcage.

use crate::NAMESPACE;
use crate::sshsig::{SignatureError, Sshsig, digest_reader, signed_data};
use signature::Signer as _;
use ssh_key::{HashAlg, PrivateKey};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key or the archive could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not an OpenSSH private key rollcage can use.
    #[error(
        "{path} is not a usable OpenSSH private key ({detail}): expected a file like ~/.ssh/id_ed25519 (`-----BEGIN \
         OPENSSH PRIVATE KEY-----`)"
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The key cannot sign (e.g. a security-key type).
    #[error("signing with {path} failed: {detail}")]
    Sign {
        /// The key file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// `ssh-keygen` (for a key rollcage does not sign with itself) could not be run or failed.
    #[error(
        "rollcage signs with `ssh-keygen -Y sign` for {path}, which {detail}; sign the bundle yourself with \
         `ssh-keygen -Y sign -n {ns} -f {path} BUNDLE` and push it with `--signature BUNDLE.sig`",
        ns = NAMESPACE
    )]
    SshKeygen {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// What ssh-keygen wrote is not a signature.
    #[error("the signature ssh-keygen wrote is unusable: {0}")]
    Output(#[from] SignatureError),
}

/// The largest private key file read (an RSA-16384 key is ~12 KiB).
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// A private key, or the news that it is encrypted.
#[derive(Debug)]
pub enum LoadedKey {
    /// Unencrypted: rollcage can sign with it.
    Plain(Box<PrivateKey>),
    /// Passphrase-protected: sign through `ssh-keygen`.
    Encrypted,
    /// An OpenSSH private key the `ssh-key` crate cannot read although `ssh-keygen` can: sign through `ssh-keygen`.
    /// Seen with ECDSA P-521 keys whose private scalar is encoded one byte short (a leading zero dropped), which
    /// ssh-key 0.6 refuses as "length invalid" — about one P-521 key in a hundred.
    Foreign {
        /// What the parser said.
        detail: String,
    },
}

/// Read an OpenSSH private key file.
pub fn load_key(path: &Path) -> Result<LoadedKey, SignError> {
    let read = |source| SignError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_KEY_BYTES {
        return Err(SignError::Key {
            path: path.to_owned(),
            detail: format!("{size} bytes, more than any private key"),
        });
    }
    let text = std::fs::read(path).map_err(read)?;
    let key = match PrivateKey::from_openssh(&text) {
        Ok(key) => key,
        Err(e) if text.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----") => {
            return Ok(LoadedKey::Foreign {
                detail: e.to_string(),
            });
        }
        Err(e) => {
            return Err(SignError::Key {
                path: path.to_owned(),
                detail: e.to_string(),
            });
        }
    };
    Ok(if key.is_encrypted() {
        LoadedKey::Encrypted
    } else {
        LoadedKey::Plain(Box::new(key))
    })
}

/// Sign the archive read from `archive` with `key` (in-process), as `ssh-keygen -Y sign -n rollcage` would.
/// `key_path` names the key in errors.
pub fn sign_reader(
    key: &PrivateKey,
    key_path: &Path,
    archive: impl std::io::Read,
    archive_path: &Path,
) -> Result<Sshsig, SignError> {
    let hash_alg = HashAlg::Sha512;
    let digest = digest_reader(hash_alg, archive).map_err(|source| SignError::Read {
        path: archive_path.to_owned(),
        source,
    })?;
    let failed = |detail: String| SignError::Sign {
        path: key_path.to_owned(),
        detail,
    };
    let data = signed_data(NAMESPACE, hash_alg, &digest).map_err(|e| failed(e.to_string()))?;
    let signature = match key.key_data().rsa() {
        Some(rsa_key) => sign_rsa(rsa_key, &data).map_err(failed)?,
        None => key.try_sign(&data).map_err(|e| failed(e.to_string()))?,
    };
    Ok(Sshsig::from_parts(
        key.public_key().key_data().clone(),
        NAMESPACE,
        hash_alg,
        signature,
    )?)
}

/// An `rsa-sha2-512` signature (PKCS#1 v1.5 over SHA-512, what `ssh-keygen -Y sign` makes with an RSA key) of
/// `data`. Not through ssh-key: 0.6.7 builds the RSA private key from the primes (p, p) instead of (p, q), which
/// the rsa crate (0.9.10) rightly refuses ("cryptographic error"); fixed upstream in ssh-key 0.7, still a release
/// candidate. The same scheme through the rsa crate directly, with ssh-key's own key components.
fn sign_rsa(key: &ssh_key::private::RsaKeypair, data: &[u8]) -> Result<ssh_key::Signature, String> {
    use signature::SignatureEncoding as _;
    let int = |m: &ssh_key::Mpint| {
        m.as_positive_bytes()
            .map(rsa::BigUint::from_bytes_be)
            .ok_or_else(|| "an RSA key component is not a positive integer".to_owned())
    };
    let private = rsa::RsaPrivateKey::from_components(
        int(&key.public.n)?,
        int(&key.public.e)?,
        int(&key.private.d)?,
        vec![int(&key.private.p)?, int(&key.private.q)?],
    )
    .map_err(|e| format!("invalid RSA key: {e}"))?;
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private);
    let sig = signer.try_sign(data).map_err(|e| e.to_string())?;
    ssh_key::Signature::new(
        ssh_key::Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        sig.to_vec(),
    )
    .map_err(|e| e.to_string())
}

/// Sign the archive file `archive` with the private key file `key`: in-process when the key is unencrypted, else
/// through `ssh-keygen`. Returns the armored signature.
pub fn sign_file(key: &Path, archive: &Path) -> Result<String, SignError> {
    match load_key(key)? {
        LoadedKey::Plain(private) => {
            let file = std::fs::File::open(archive).map_err(|source| SignError::Read {
                path: archive.to_owned(),
                source,
            })?;
            Ok(sign_reader(&private, key, file, archive)?.armored()?)
        }
        LoadedKey::Encrypted => ssh_keygen_sign(key, archive),
        LoadedKey::Foreign { .. } => ssh_keygen_sign(key, archive),
    }
}

/// Run `ssh-keygen -Y sign -n rollcage -f KEY ARCHIVE` (stdin and stderr are the user's, for the passphrase
/// prompt) and read `ARCHIVE.sig`, which is then removed.
pub fn ssh_keygen_sign(key: &Path, archive: &Path) -> Result<String, SignError> {
    let failed = |detail: String| SignError::SshKeygen {
        path: key.to_owned(),
        detail,
    };
    let mut sig_path = archive.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    if sig_path.exists() {
        return Err(failed(format!(
            "would write {}, which already exists",
            sig_path.display()
        )));
    }
    let status = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(key)
        .arg(archive)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| failed(format!("could not be run: {e}")))?;
    if !status.success() {
        let _ = std::fs::remove_file(&sig_path);
        return Err(failed(format!("failed ({status})")));
    }
    let text = std::fs::read(&sig_path)
        .map_err(|e| failed(format!("wrote no {}: {e}", sig_path.display())));
    let _ = std::fs::remove_file(&sig_path);
    Ok(Sshsig::parse_bytes(&text?)?.armored()?)
}
