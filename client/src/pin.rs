//! Trusting exactly one CA, named by its fingerprint (`--ca-fingerprint SHA256:…`), the way `kubeadm join` trusts a
//! control plane by its CA's hash: no CA file to copy, no public CA needed.
//!
//! The coordinator sends its chain (server certificate, then its CA). [`PinnedCa`] looks among the presented
//! certificates for the one whose SHA-256 is the pin, then verifies the server certificate against that CA alone with
//! rustls' own webpki verifier (signature, validity, server name, key usage): the pin only chooses the root, it
//! replaces none of the checks. A certificate the server sends is no proof by itself — the verification against the
//! pinned root is. When no presented certificate has the pinned fingerprint, the handshake fails with
//! [`PinMismatch`], which names both sides.

use rollcage_proto::fingerprint::CaFingerprint;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use std::fmt;
use std::sync::Arc;

/// No certificate the coordinator presented has the pinned fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinMismatch {
    /// The pin.
    pub expected: CaFingerprint,
    /// The fingerprints of the certificates presented, server certificate first.
    pub presented: Vec<CaFingerprint>,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the coordinator's CA does not match --ca-fingerprint: expected {}, presented ",
            self.expected
        )?;
        if self.presented.is_empty() {
            f.write_str("no certificate")?;
        }
        for (i, p) in self.presented.iter().enumerate() {
            let role = if i == 0 { "server" } else { "chain" };
            write!(f, "{}{p} ({role})", if i == 0 { "" } else { ", " })?;
        }
        f.write_str(
            "; check the fingerprint the coordinator printed at start (DATA/tls/ca.fingerprint), or someone is \
             in between",
        )
    }
}

impl std::error::Error for PinMismatch {}

/// A server certificate verifier that trusts exactly the CA whose certificate has the pinned fingerprint.
#[derive(Debug)]
pub struct PinnedCa {
    pin: CaFingerprint,
    provider: Arc<CryptoProvider>,
}

impl PinnedCa {
    /// Trust the CA whose certificate (DER) hashes to `pin`, verifying with `provider`'s algorithms.
    pub fn new(pin: CaFingerprint, provider: Arc<CryptoProvider>) -> Self {
        Self { pin, provider }
    }

    /// The pin.
    pub fn pin(&self) -> CaFingerprint {
        self.pin
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server certificate itself may be the pinned one (a self-signed certificate given as --tls-cert).
        let presented = std::iter::once(end_entity).chain(intermediates);
        let Some(ca) = presented
            .clone()
            .find(|c| CaFingerprint::of_der(c) == self.pin)
        else {
            let mismatch = PinMismatch {
                expected: self.pin,
                presented: presented.map(|c| CaFingerprint::of_der(c)).collect(),
            };
            return Err(CertificateError::Other(OtherError(Arc::new(mismatch))).into());
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned CA: {e}")))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The [`PinMismatch`] somewhere in an error's chain (hyper's connect error around hyper-rustls' `io::Error`
/// around the TLS stream's `io::Error` around rustls' error), so the caller can say it plainly instead of rustls'
/// debug form.
pub(crate) fn find_mismatch(e: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
        e.downcast_ref::<rustls::Error>()
    {
        return other.0.downcast_ref::<PinMismatch>().cloned();
    }
    // `io::Error::source` skips the error it wraps (it returns that error's source): look inside it explicitly.
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return find_mismatch(inner);
    }
    e.source().and_then(find_mismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test certificates made here")]
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(name: &str) -> Self {
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, name);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            Self {
                issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
            }
        }

        fn der(&self) -> CertificateDer<'static> {
            self.issuer.der().clone()
        }

        fn fingerprint(&self) -> CaFingerprint {
            CaFingerprint::of_der(self.issuer.der())
        }

        /// A server certificate for `names`, signed by this CA.
        fn leaf(&self, names: &[&str]) -> CertificateDer<'static> {
            let p =
                CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    .unwrap();
            let key = KeyPair::generate().unwrap();
            p.signed_by(&key, &self.issuer).unwrap().der().clone()
        }
    }

    fn verifier(pin: CaFingerprint) -> PinnedCa {
        PinnedCa::new(pin, Arc::new(rustls::crypto::ring::default_provider()))
    }

    fn verify(
        v: &PinnedCa,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        name: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(leaf, chain, &name, &[], UnixTime::now())
    }

    #[test]
    fn a_leaf_signed_by_the_pinned_ca_is_trusted() -> TestResult {
        let ca = Ca::new("pinned");
        let leaf = ca.leaf(&["192.0.2.10", "coord.example"]);
        let v = verifier(ca.fingerprint());
        verify(&v, &leaf, &[ca.der()], "192.0.2.10")?;
        verify(&v, &leaf, &[ca.der()], "coord.example")?;
        Ok(())
    }

    #[test]
    fn another_ca_is_refused_naming_expected_and_presented_fingerprints() -> TestResult {
        let pinned = Ca::new("pinned");
        let other = Ca::new("other");
        let leaf = other.leaf(&["192.0.2.10"]);
        let err = verify(
            &verifier(pinned.fingerprint()),
            &leaf,
            &[other.der()],
            "192.0.2.10",
        )
        .err()
        .ok_or("another CA was trusted")?;
        let m = find_mismatch(&err).ok_or("no PinMismatch in the error")?;
        assert_eq!(m.expected, pinned.fingerprint());
        assert_eq!(
            m.presented,
            vec![CaFingerprint::of_der(&leaf), other.fingerprint()]
        );
        let text = m.to_string();
        assert!(
            text.contains(&format!("expected {}", pinned.fingerprint())),
            "{text}"
        );
        assert!(text.contains(&other.fingerprint().to_string()), "{text}");
        Ok(())
    }

    #[test]
    fn the_pinned_ca_sent_along_with_a_leaf_it_did_not_sign_is_refused() -> TestResult {
        // A man in the middle can send the real CA certificate (it is public): the leaf must still be the CA's.
        let pinned = Ca::new("pinned");
        let mallory = Ca::new("mallory");
        let forged = mallory.leaf(&["192.0.2.10"]);
        let err = verify(
            &verifier(pinned.fingerprint()),
            &forged,
            &[pinned.der(), mallory.der()],
            "192.0.2.10",
        )
        .err()
        .ok_or("a leaf the pinned CA did not sign was trusted")?;
        assert!(
            find_mismatch(&err).is_none(),
            "the pin matched; the chain did not: {err}"
        );
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn a_leaf_for_another_name_is_refused() -> TestResult {
        let ca = Ca::new("pinned");
        let leaf = ca.leaf(&["192.0.2.10"]);
        let err = verify(
            &verifier(ca.fingerprint()),
            &leaf,
            &[ca.der()],
            "192.0.2.11",
        )
        .err()
        .ok_or("a certificate for another address was trusted")?;
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn a_mismatch_is_found_inside_io_errors_as_the_tls_stream_and_hyper_rustls_wrap_it() {
        let m = PinMismatch {
            expected: CaFingerprint::of_der(b"a"),
            presented: vec![CaFingerprint::of_der(b"b")],
        };
        let tls: rustls::Error = CertificateError::Other(OtherError(Arc::new(m.clone()))).into();
        // tokio-rustls wraps rustls' error in an io::Error, hyper-rustls that one in another.
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert_eq!(find_mismatch(&io), Some(m));
        assert_eq!(find_mismatch(&std::io::Error::other("refused")), None);
    }
}
