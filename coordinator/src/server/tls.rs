//! How the coordinator serves: TLS by default off loopback. [`decide`] picks the transport from the listen address
//! and the operator's choice (pure); [`prepare`] carries it out — the operator's certificate files, or the
//! coordinator's own CA ([`super::selfca`]) with a server certificate for the names it is reached at.
//!
//! Loopback stays plain HTTP: nothing crosses a wire there, and the demo, the tests and a local `rollcage` CLI need
//! no certificate. Off loopback, plain HTTP would carry every token in the clear, so it takes `--insecure-http`
//! (behind a TLS-terminating proxy, say).

use super::selfca::{self, San};
use rollcage_proto::fingerprint::CaFingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The operator's TLS choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetup {
    /// Plain HTTP on loopback; elsewhere TLS with the coordinator's own CA (made on first start in `DATA/tls`),
    /// its server certificate also covering `extra_sans` (`--tls-san`).
    Auto {
        /// Names (IP addresses or DNS names) besides the listen address's.
        extra_sans: Vec<String>,
    },
    /// The coordinator's own CA, on any address (loopback included), its server certificate also covering
    /// `extra_sans`. What [`TlsSetup::Auto`] becomes off loopback.
    SelfCa {
        /// Names (IP addresses or DNS names) besides the listen address's.
        extra_sans: Vec<String>,
    },
    /// The operator's certificate chain and key (PEM): `--tls-cert`, `--tls-key`.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// Plain HTTP on any address: `--insecure-http`.
    InsecureHttp,
}

impl Default for TlsSetup {
    fn default() -> Self {
        Self::Auto {
            extra_sans: Vec::new(),
        }
    }
}

/// What the coordinator serves, as [`decide`] picks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP on loopback.
    PlainLoopback,
    /// Plain HTTP off loopback, as the operator asked (`--insecure-http`).
    PlainInsecure,
    /// TLS with the operator's files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// TLS with the coordinator's own CA, the server certificate covering `sans`.
    SelfCa {
        /// Every name the server certificate covers.
        sans: BTreeSet<San>,
    },
}

/// The names of this host, for a coordinator listening on an unspecified address (`0.0.0.0`, `::`).
#[derive(Debug, Clone, Default)]
pub struct LocalNames {
    /// Every address of every interface.
    pub addrs: Vec<IpAddr>,
    /// The host name, if it is a usable DNS name.
    pub hostname: Option<String>,
}

impl LocalNames {
    /// Read them from the system (`getifaddrs`, `gethostname`). An interface list that cannot be read leaves the
    /// names empty (then `--tls-san` must name the address clients use), with a warning.
    pub fn of_this_host() -> Self {
        let mut addrs = Vec::new();
        match nix::ifaddrs::getifaddrs() {
            Ok(list) => {
                for ifa in list {
                    let Some(a) = ifa.address else { continue };
                    if let Some(v4) = a.as_sockaddr_in() {
                        addrs.push(IpAddr::V4(v4.ip()));
                    } else if let Some(v6) = a.as_sockaddr_in6() {
                        addrs.push(IpAddr::V6(v6.ip()));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list this host's addresses for the TLS certificate")
            }
        }
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok());
        Self { addrs, hostname }
    }
}

/// A plain-HTTP or TLS choice that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A `--tls-san` is not a name.
    #[error(transparent)]
    SelfCa(#[from] selfca::SelfCaError),
    /// The operator's files cannot be used.
    #[error("TLS: {0}")]
    Files(String),
}

/// The transport for `listen` and the operator's `setup`; `local` is read only for an unspecified address. Pure.
pub fn decide(
    listen: SocketAddr,
    setup: &TlsSetup,
    local: impl FnOnce() -> LocalNames,
) -> Result<Transport, TlsError> {
    let extra = match setup {
        TlsSetup::Files { cert, key } => {
            return Ok(Transport::Files {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        TlsSetup::InsecureHttp if listen.ip().is_loopback() => return Ok(Transport::PlainLoopback),
        TlsSetup::InsecureHttp => return Ok(Transport::PlainInsecure),
        TlsSetup::Auto { .. } if listen.ip().is_loopback() => return Ok(Transport::PlainLoopback),
        TlsSetup::Auto { extra_sans } | TlsSetup::SelfCa { extra_sans } => extra_sans.as_slice(),
    };
    let mut sans = BTreeSet::new();
    let ip = listen.ip();
    if ip.is_unspecified() {
        let local = local();
        // `0.0.0.0` takes IPv4 connections only; `::` takes both (dual stack).
        sans.extend(
            local
                .addrs
                .into_iter()
                .filter(|a| ip.is_ipv6() || a.is_ipv4())
                .map(San::Ip),
        );
        if let Some(h) = local.hostname.and_then(|h| San::parse(&h).ok()) {
            sans.insert(h);
        }
        sans.insert(San::Dns("localhost".to_owned()));
    } else {
        sans.insert(San::Ip(ip));
    }
    for s in extra {
        sans.insert(San::parse(s)?);
    }
    Ok(Transport::SelfCa { sans })
}

/// What [`prepare`] made ready.
pub struct Prepared {
    /// The TLS acceptor, `None` for plain HTTP.
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// The fingerprint of the coordinator's own CA, when it serves with it.
    pub ca_fingerprint: Option<CaFingerprint>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("tls", &self.acceptor.is_some())
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish()
    }
}

/// Carry out `transport`: read the operator's files, or load (first make) the coordinator's own CA in `data/tls`.
pub fn prepare(transport: &Transport, data: &Path) -> Result<Prepared, TlsError> {
    let (chain, key, fingerprint) = match transport {
        Transport::PlainLoopback => {
            return Ok(Prepared {
                acceptor: None,
                ca_fingerprint: None,
            });
        }
        Transport::PlainInsecure => {
            tracing::warn!(
                "serving plain HTTP off loopback (--insecure-http): tokens and bundles cross the network \
                 in the clear; only do this behind a TLS-terminating proxy"
            );
            return Ok(Prepared {
                acceptor: None,
                ca_fingerprint: None,
            });
        }
        Transport::Files { cert, key } => {
            let (chain, key) = read_files(cert, key)?;
            (chain, key, None)
        }
        Transport::SelfCa { sans } => {
            let served = selfca::load_or_create(&data.join(selfca::TLS_DIR), sans)?;
            if let Some(why) = &served.renewed {
                let names: Vec<String> = sans.iter().map(San::to_string).collect();
                tracing::info!(reason = ?why, names = %names.join(","), "made a new server certificate");
            }
            (served.chain, served.key, Some(served.fingerprint))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| TlsError::Files(e.to_string()))?;
    Ok(Prepared {
        acceptor: Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        ca_fingerprint: fingerprint,
    })
}

fn read_files(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError::Files(format!("reading certificates from {}: {e}", cert.display()))
        })?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Files(format!("reading private key from {}: {e}", key.display())))?;
    Ok((certs, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn no_names() -> LocalNames {
        LocalNames::default()
    }

    #[test]
    fn loopback_stays_plain_and_elsewhere_gets_the_own_ca_unless_told_otherwise() -> TestResult {
        let lo: SocketAddr = "127.0.0.1:7700".parse()?;
        let lo6: SocketAddr = "[::1]:7700".parse()?;
        let off: SocketAddr = "192.0.2.10:7700".parse()?;
        assert_eq!(
            decide(lo, &TlsSetup::default(), no_names)?,
            Transport::PlainLoopback
        );
        assert_eq!(
            decide(lo6, &TlsSetup::default(), no_names)?,
            Transport::PlainLoopback
        );
        assert_eq!(
            decide(off, &TlsSetup::default(), no_names)?,
            Transport::SelfCa {
                sans: [San::Ip("192.0.2.10".parse()?)].into()
            }
        );
        assert_eq!(
            decide(off, &TlsSetup::InsecureHttp, no_names)?,
            Transport::PlainInsecure
        );
        let files = TlsSetup::Files {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        assert!(matches!(
            decide(lo, &files, no_names)?,
            Transport::Files { .. }
        ));
        let own = TlsSetup::SelfCa {
            extra_sans: vec!["Coord.Example".into()],
        };
        assert_eq!(
            decide(lo, &own, no_names)?,
            Transport::SelfCa {
                sans: [
                    San::Ip("127.0.0.1".parse()?),
                    San::Dns("coord.example".into())
                ]
                .into()
            }
        );
        Ok(())
    }

    #[test]
    fn an_unspecified_address_covers_every_local_address_of_its_family_the_hostname_and_localhost()
    -> TestResult {
        let local = || LocalNames {
            addrs: vec![
                IpAddr::from([10, 0, 0, 5]),
                IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 5]),
            ],
            hostname: Some("Build-7".into()),
        };
        let v4 = decide("0.0.0.0:7700".parse()?, &TlsSetup::default(), local)?;
        assert_eq!(
            v4,
            Transport::SelfCa {
                sans: [
                    San::Ip("10.0.0.5".parse()?),
                    San::Dns("build-7".into()),
                    San::Dns("localhost".into())
                ]
                .into()
            }
        );
        let Transport::SelfCa { sans } = decide("[::]:7700".parse()?, &TlsSetup::default(), local)?
        else {
            return Err("not the own CA".into());
        };
        assert!(sans.contains(&San::Ip("fd00::5".parse()?)), "{sans:?}");
        assert!(sans.contains(&San::Ip("10.0.0.5".parse()?)), "{sans:?}");
        Ok(())
    }

    #[test]
    fn a_bad_tls_san_is_refused_at_start() -> TestResult {
        let own = TlsSetup::SelfCa {
            extra_sans: vec!["not a name".into()],
        };
        let err = decide("192.0.2.10:1".parse()?, &own, no_names)
            .err()
            .ok_or("accepted")?;
        assert!(err.to_string().contains("--tls-san `not a name`"), "{err}");
        Ok(())
    }
}
