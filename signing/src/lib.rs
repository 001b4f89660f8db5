//! Signed revisions: the one home of what a revision's signature is and how a host decides to trust it.
//!
//! Operators sign a bundle archive with the SSH keys they already have: `ssh-keygen -Y sign -n rollcage -f KEY
//! BUNDLE` writes `BUNDLE.sig`, an armored SSHSIG (OpenSSH's `PROTOCOL.sshsig`). This crate
//!
//! - parses such a signature, bounded ([`sshsig::Sshsig`], at most [`MAX_SIGNATURE_BYTES`]);
//! - reads an OpenSSH `allowed_signers` file ([`allowed::AllowedSigners`], errors with file:line);
//! - decides whether a bundle carries a valid signature from a key listed for [`NAMESPACE`]
//!   ([`verify::verify_file`]), naming why not: no signature, unknown key, bad signature, wrong namespace;
//! - signs an archive in-process with an unencrypted OpenSSH private key, or through `ssh-keygen` ([`sign`]).
//!
//! Archives may be hundreds of MiB: they are never read into memory. The SSHSIG signed-data blob holds only
//! `H(message)`, so the archive is hashed streaming and the blob built from that digest with ssh-key's own
//! encoding ([`sshsig::signed_data`]).
//!
//! It is not the agent's policy (the agent decides *when* to require a signature) and holds no I/O besides reading
//! the files it is given. The coordinator links it too (to check a signature parses, and matches an uploaded
//! archive), which is why it lives apart from `proto` (serde only) and `runtime` (wasmtime).

pub mod allowed;
pub mod sign;
pub mod sshsig;
pub mod verify;

pub use allowed::{AllowedSigners, AllowedSignersError};
pub use sshsig::{SignatureError, Sshsig};
pub use verify::{Verified, VerifyError};

/// The SSHSIG namespace of rollcage's signatures (`ssh-keygen -Y sign -n rollcage`). A signature made for another
/// purpose (`git`, `file`) is never taken for a revision's, and a key is trusted for revisions only where the
/// allowed_signers file lists it with `namespaces="rollcage"`.
pub const NAMESPACE: &str = "rollcage";

/// The most bytes an armored signature may have. Armored SSHSIGs of common keys are well under 4 KiB (ed25519
/// ~300 bytes, RSA-4096 ~1.6 KiB); 16 KiB leaves room for any key `ssh-keygen` makes and bounds what the
/// coordinator stores and every command carries.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;
