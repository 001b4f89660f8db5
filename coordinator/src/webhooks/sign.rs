//! The signature of a webhook post: HMAC-SHA256, keyed with the group's secret, over `<t>.<body>` (`t`: the unix
//! time in seconds when the attempt was made), sent as `Rollcage-Signature: t=<t>,v1=<lowercase hex>`. Binding the
//! time lets a receiver refuse replays of an old post (it checks `t` is recent); the delivery id in the body and in
//! `Rollcage-Delivery` lets it drop a retry it already handled.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `Rollcage-Signature` value of `body` signed with `secret` at unix time `t` (seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length (a longer one is hashed first), so this cannot fail.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Vec::new();
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Whether `header` (a `Rollcage-Signature` value) signs `body` with `secret` (constant-time comparison). What a
/// receiver does; the coordinator's tests use it.
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl_and_verifies_only_the_same_body_time_and_key() {
        // printf '%s' '1700000000.{"event":"deployment.failed"}' | openssl dgst -sha256 -hmac 'whsec-0123456789abcdef'
        let body = br#"{"event":"deployment.failed"}"#;
        let secret = b"whsec-0123456789abcdef";
        let sig = signature(secret, 1_700_000_000, body);
        assert_eq!(
            sig,
            "t=1700000000,v1=ab4504cbd180c6cfe355721ee4610fb34d8f54cc40f00441451cdaf29d6a0ff7"
        );
        assert!(verify(secret, &sig, body));
        assert!(!verify(
            secret,
            &sig,
            br#"{"event":"deployment.succeeded"}"#
        ));
        assert!(!verify(b"another-secret-0123", &sig, body));
        let later = sig.replace("t=1700000000", "t=1700000001");
        assert!(!verify(secret, &later, body), "the time is signed too");
        assert!(!verify(secret, "v1=00", body));
        assert!(!verify(secret, "", body));
    }
}
