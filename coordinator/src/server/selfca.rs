//! The coordinator's own certificate authority, made on the first start off loopback without `--tls-cert`, kept in
//! `DATA/tls/` and reused on every later start:
//!
//! - `ca.pem` (0644): the CA certificate, whose fingerprint agents and operators pin (`--ca-fingerprint`), or which
//!   they give as `--ca-file`;
//! - `ca.key` (0600): its private key;
//! - `server.pem` (0600): the server certificate, the CA certificate after it (the chain the coordinator sends),
//!   and the server's private key, in one file so the three are always replaced together;
//! - `ca.fingerprint` (0644): `SHA256:<base64>` of `ca.pem`, for scripts.
//!
//! The CA is made in a staging directory that is renamed to `DATA/tls` only when complete, so a crash never leaves
//! half a CA behind; each later write stages a file and renames it ([`rollcage_secretfile`]). The server certificate
//! is made again (by the same CA, so nothing pinned changes) when the names it must cover change or when it nears
//! its expiry; [`leaf_verdict`] decides that, without I/O.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rollcage_proto::fingerprint::CaFingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The directory under the data dir.
pub const TLS_DIR: &str = "tls";
/// The CA certificate.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key.
pub const CA_KEY: &str = "ca.key";
/// The server certificate chain and key.
pub const SERVER: &str = "server.pem";
/// The CA fingerprint, for scripts.
pub const FINGERPRINT: &str = "ca.fingerprint";

/// How long the CA is valid. Long: replacing it means every agent pins a new fingerprint.
const CA_LIFETIME: Duration = Duration::days(20 * 365);
/// How long a server certificate is valid. It is renewed at start, by the same CA, so this costs nothing.
const SERVER_LIFETIME: Duration = Duration::days(2 * 365);
/// A server certificate with less than this left is renewed at start.
const RENEW_BEFORE: Duration = Duration::days(60);
/// Certificates are valid from a day before they are made, so agents whose clock runs behind accept them.
const BACKDATE: Duration = Duration::days(1);

/// The coordinator's own CA could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SelfCaError {
    /// File I/O.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file of `DATA/tls` is not what the coordinator wrote there.
    #[error(
        "{path}: {detail}; restore it, or remove {dir} to make a new CA (every agent must then pin the new \
             fingerprint)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The directory (what to remove).
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Writing a file failed (nothing was replaced).
    #[error(transparent)]
    Write(#[from] rollcage_secretfile::WriteError),
    /// Generating or signing a certificate failed.
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A `--tls-san` is neither an IP address nor a DNS name.
    #[error("invalid --tls-san `{0}`: expected an IP address or a DNS name")]
    InvalidSan(String),
}

/// A name a server certificate covers, normalised so two sets compare equal when they name the same things.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name (lowercase, no trailing dot).
    Dns(String),
}

impl San {
    /// Parse a `--tls-san` value: an IP address, else a DNS name.
    pub fn parse(s: &str) -> Result<Self, SelfCaError> {
        let s = s.trim();
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(Self::Ip(ip));
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
            });
        if !ok {
            return Err(SelfCaError::InvalidSan(s.to_owned()));
        }
        Ok(Self::Dns(name))
    }

    fn to_rcgen(&self) -> Result<SanType, SelfCaError> {
        Ok(match self {
            Self::Ip(ip) => SanType::IpAddress(*ip),
            Self::Dns(d) => SanType::DnsName(d.as_str().try_into()?),
        })
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Dns(d) => f.write_str(d),
        }
    }
}

/// What the coordinator serves with: its chain (server certificate, then the CA), its key, and the CA's
/// fingerprint.
#[derive(Debug)]
pub struct Served {
    /// Server certificate, then the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server certificate's key.
    pub key: PrivateKeyDer<'static>,
    /// The CA's fingerprint.
    pub fingerprint: CaFingerprint,
    /// Why a new server certificate was made at this start, if one was.
    pub renewed: Option<LeafVerdict>,
}

/// What an existing server certificate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafVerdict {
    /// There is none yet.
    Missing,
    /// It covers other names than wanted.
    NamesChanged {
        /// What it covers.
        had: BTreeSet<San>,
    },
    /// It expires within the renewal window (or has).
    Expiring {
        /// Its expiry (seconds since the epoch).
        not_after: i64,
    },
    /// It was not issued with the current CA certificate (the CA files were replaced).
    OtherCa,
    /// It is fine as it is.
    Keep,
}

/// What we know of an existing server certificate.
#[derive(Debug, Clone)]
pub struct LeafFacts {
    /// The names it covers.
    pub sans: BTreeSet<San>,
    /// Expiry, seconds since the epoch.
    pub not_after: i64,
    /// Whether the chain's CA certificate is the current `ca.pem`.
    pub same_ca: bool,
}

/// Whether to keep the server certificate or make a new one. Pure.
pub fn leaf_verdict(leaf: Option<&LeafFacts>, wanted: &BTreeSet<San>, now: i64) -> LeafVerdict {
    let Some(leaf) = leaf else {
        return LeafVerdict::Missing;
    };
    if !leaf.same_ca {
        LeafVerdict::OtherCa
    } else if &leaf.sans != wanted {
        LeafVerdict::NamesChanged {
            had: leaf.sans.clone(),
        }
    } else if leaf.not_after - now < RENEW_BEFORE.whole_seconds() {
        LeafVerdict::Expiring {
            not_after: leaf.not_after,
        }
    } else {
        LeafVerdict::Keep
    }
}

/// Load the CA in `dir` (made first if `dir` does not exist), make a new server certificate for `wanted` when
/// [`leaf_verdict`] says so, write the fingerprint file, and return what to serve with.
pub fn load_or_create(dir: &Path, wanted: &BTreeSet<San>) -> Result<Served, SelfCaError> {
    if !dir.exists() {
        create_ca(dir)?;
    }
    let corrupt = |path: PathBuf, detail: String| SelfCaError::Corrupt {
        path,
        dir: dir.to_owned(),
        detail,
    };
    let ca_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let ca_pem = read(&ca_path)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| corrupt(ca_path.clone(), format!("not a PEM certificate: {e}")))?;
    let ca_key = KeyPair::from_pem(&read(&key_path)?)
        .map_err(|e| corrupt(key_path.clone(), format!("not a PEM private key: {e}")))?;
    if ca_key.subject_public_key_info()
        != spki_of(&ca_der).map_err(|d| corrupt(ca_path.clone(), d))?
    {
        return Err(corrupt(
            key_path,
            format!("not the key of {}", ca_path.display()),
        ));
    }
    let fingerprint = CaFingerprint::of_der(&ca_der);

    let server_path = dir.join(SERVER);
    let existing = match std::fs::read(&server_path) {
        Ok(bytes) => Some(parse_server(&bytes).map_err(|d| corrupt(server_path.clone(), d))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(SelfCaError::Io {
                what: "reading",
                path: server_path,
                source,
            });
        }
    };
    let facts = existing
        .as_ref()
        .map(|(chain, _)| leaf_facts(chain, &ca_der))
        .transpose()
        .map_err(|d| corrupt(server_path.clone(), d))?;
    let now = OffsetDateTime::now_utc();
    let verdict = leaf_verdict(facts.as_ref(), wanted, now.unix_timestamp());
    let (chain, key, renewed) = match (verdict, existing) {
        (LeafVerdict::Keep, Some((chain, key))) => (chain, key, None),
        (verdict, _) => {
            let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
            let (pem, chain, key) = make_leaf(&issuer, &ca_pem, &ca_der, wanted, now)?;
            rollcage_secretfile::write_atomic(&server_path, pem.as_bytes(), 0o600)?;
            (chain, key, Some(verdict))
        }
    };
    let fp_path = dir.join(FINGERPRINT);
    let fp_text = format!("{fingerprint}\n");
    if std::fs::read_to_string(&fp_path).ok().as_deref() != Some(fp_text.as_str()) {
        rollcage_secretfile::write_atomic(&fp_path, fp_text.as_bytes(), 0o644)?;
    }
    Ok(Served {
        chain,
        key,
        fingerprint,
        renewed,
    })
}

fn read(path: &Path) -> Result<String, SelfCaError> {
    std::fs::read_to_string(path).map_err(|source| SelfCaError::Io {
        what: "reading",
        path: path.to_owned(),
        source,
    })
}

/// Make the CA in a staging directory next to `dir`, then rename it to `dir`: all or nothing.
fn create_ca(dir: &Path) -> Result<(), SelfCaError> {
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| SelfCaError::Io { what, path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    let stage = tempfile::Builder::new()
        .prefix(".tls-new-")
        .tempdir_in(parent)
        .map_err(io("creating a staging directory in", parent))?;
    // The directory holds a private key: nobody else lists or enters it (set before the key is written).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(stage.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(io("restricting", stage.path()))?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // The key's own hash in the name tells two coordinators' CAs apart in a trust store.
    let id = CaFingerprint::of_der(key.subject_public_key_info().as_slice());
    dn.push(
        DnType::CommonName,
        format!("rollcage coordinator CA {}", hex::encode(&id.digest()[..4])),
    );
    dn.push(DnType::OrganizationName, "rollcage");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    let cert = params.self_signed(&key)?;
    for (name, content, mode) in [
        (CA_KEY, key.serialize_pem(), 0o600),
        (CA_CERT, cert.pem(), 0o644),
    ] {
        rollcage_secretfile::write_atomic(&stage.path().join(name), content.as_bytes(), mode)?;
    }
    let staged = stage.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        SelfCaError::Io {
            what: "renaming the new CA directory to",
            path: dir.to_owned(),
            source: e,
        }
    })?;
    tracing::info!(dir = %dir.display(), "made the coordinator's own certificate authority");
    Ok(())
}

/// The PEM of a new server certificate for `sans` (certificate, CA certificate, key) with the parsed chain and key.
#[allow(
    clippy::type_complexity,
    reason = "a private helper's tuple of what it made"
)]
fn make_leaf(
    issuer: &Issuer<'_, KeyPair>,
    ca_pem: &str,
    ca_der: &CertificateDer<'static>,
    sans: &BTreeSet<San>,
    now: OffsetDateTime,
) -> Result<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), SelfCaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "rollcage coordinator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVER_LIFETIME;
    let cert = params.signed_by(&key, issuer)?;
    let pem = format!(
        "{}{}{}",
        cert.pem(),
        ca_pem.trim_end().to_owned() + "\n",
        key.serialize_pem()
    );
    let chain = vec![cert.der().clone(), ca_der.clone()];
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((pem, chain, key))
}

/// The certificates and the key of `server.pem`.
fn parse_server(
    bytes: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading certificates: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(bytes)
        .map_err(|e| format!("reading the private key: {e}"))?;
    if chain.len() != 2 {
        return Err(format!(
            "expected 2 certificates (server, CA), found {}",
            chain.len()
        ));
    }
    Ok((chain, key))
}

fn parse_x509(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

fn spki_of(der: &[u8]) -> Result<Vec<u8>, String> {
    Ok(parse_x509(der)?.tbs_certificate.subject_pki.raw.to_vec())
}

/// The names and expiry of the chain's server certificate, and whether its CA is `ca_der`.
fn leaf_facts(chain: &[CertificateDer<'static>], ca_der: &[u8]) -> Result<LeafFacts, String> {
    let leaf = parse_x509(&chain[0])?;
    let mut sans = BTreeSet::new();
    if let Some(ext) = leaf
        .subject_alternative_name()
        .map_err(|e| format!("reading the subject alternative names: {e}"))?
    {
        use x509_parser::extensions::GeneralName;
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    sans.insert(San::Dns(d.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.insert(San::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(LeafFacts {
        sans,
        not_after: leaf.validity().not_after.timestamp(),
        same_ca: chain.get(1).is_some_and(|c| c.as_ref() == ca_der),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn sans(names: &[&str]) -> BTreeSet<San> {
        names.iter().filter_map(|n| San::parse(n).ok()).collect()
    }

    #[test]
    fn the_leaf_is_kept_only_while_names_ca_and_lifetime_all_fit() {
        let wanted = sans(&["192.0.2.10", "coord.example"]);
        let day = 24 * 3600;
        let fine = LeafFacts {
            sans: wanted.clone(),
            not_after: 1_000 * day,
            same_ca: true,
        };
        assert_eq!(leaf_verdict(None, &wanted, 0), LeafVerdict::Missing);
        assert_eq!(leaf_verdict(Some(&fine), &wanted, 0), LeafVerdict::Keep);
        assert_eq!(
            leaf_verdict(Some(&fine), &wanted, 941 * day),
            LeafVerdict::Expiring {
                not_after: 1_000 * day
            }
        );
        let more = sans(&["192.0.2.10", "coord.example", "other.example"]);
        assert!(matches!(
            leaf_verdict(Some(&fine), &more, 0),
            LeafVerdict::NamesChanged { .. }
        ));
        let other = LeafFacts {
            same_ca: false,
            ..fine
        };
        assert_eq!(leaf_verdict(Some(&other), &wanted, 0), LeafVerdict::OtherCa);
    }

    #[test]
    fn sans_are_normalised_and_bad_ones_refused() -> TestResult {
        assert_eq!(
            San::parse("Coord.Example.")?,
            San::Dns("coord.example".into())
        );
        assert_eq!(San::parse("[::1]")?, San::Ip("::1".parse()?));
        for bad in ["", "a b", "x/y", "-.."] {
            assert!(
                matches!(San::parse(bad), Err(SelfCaError::InvalidSan(_))),
                "{bad}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_ca_is_made_once_and_the_leaf_follows_the_names() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let data = tempfile::tempdir()?;
        let dir = data.path().join(TLS_DIR);
        let first = load_or_create(&dir, &sans(&["192.0.2.10"]))?;
        assert_eq!(first.renewed, Some(LeafVerdict::Missing));
        assert_eq!(first.chain.len(), 2);
        let mode = |f: &str| -> std::io::Result<u32> {
            Ok(std::fs::metadata(dir.join(f))?.permissions().mode() & 0o777)
        };
        assert_eq!(mode(CA_KEY)?, 0o600);
        assert_eq!(mode(SERVER)?, 0o600);
        assert_eq!(mode(".")?, 0o700);
        assert_eq!(
            std::fs::read_to_string(dir.join(FINGERPRINT))?,
            format!("{}\n", first.fingerprint)
        );
        // The fingerprint is the CA certificate's: what the chain's second certificate hashes to.
        assert_eq!(CaFingerprint::of_der(&first.chain[1]), first.fingerprint);

        let again = load_or_create(&dir, &sans(&["192.0.2.10"]))?;
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.renewed, None);
        assert_eq!(
            again.chain, first.chain,
            "the same server certificate is reused"
        );

        let more = load_or_create(&dir, &sans(&["192.0.2.10", "coord.example"]))?;
        assert_eq!(more.fingerprint, first.fingerprint, "same CA");
        assert!(matches!(
            more.renewed,
            Some(LeafVerdict::NamesChanged { .. })
        ));
        assert_ne!(more.chain[0], first.chain[0]);
        let facts = leaf_facts(&more.chain, &more.chain[1]).map_err(|e| e.to_string())?;
        assert_eq!(facts.sans, sans(&["192.0.2.10", "coord.example"]));
        // No staging directory is left next to the CA.
        assert_eq!(std::fs::read_dir(data.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_key_that_is_not_the_ca_s_is_refused_naming_the_file() -> TestResult {
        let data = tempfile::tempdir()?;
        let dir = data.path().join(TLS_DIR);
        load_or_create(&dir, &sans(&["192.0.2.10"]))?;
        std::fs::write(dir.join(CA_KEY), KeyPair::generate()?.serialize_pem())?;
        let err = load_or_create(&dir, &sans(&["192.0.2.10"]))
            .err()
            .ok_or("a foreign key was accepted")?;
        assert!(matches!(err, SelfCaError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(CA_KEY), "{err}");
        Ok(())
    }
}
