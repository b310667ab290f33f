//! `X-Meridian-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body
//! bytes with the webhook's secret, so a receiver can tell the request came
//! from Meridian and was not changed on the way.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "X-Meridian-Signature";

const PREFIX: &str = "sha256=";

fn mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (longer ones are hashed), so this
    // cannot fail; the fallback only satisfies the type.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.update(body);
    mac
}

/// The header value for `body` signed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!(
        "{PREFIX}{}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

/// Checks a header value in constant time, as a receiver should.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_part) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part) else {
        return false;
    };
    mac(secret, body).verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2: key "Jefe".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signature_verifies_only_for_the_same_secret_and_body() {
        let header = signature("s3cret", b"{\"kind\":\"succeeded\"}");
        assert!(verify("s3cret", b"{\"kind\":\"succeeded\"}", &header));
        assert!(!verify("other", b"{\"kind\":\"succeeded\"}", &header));
        assert!(!verify("s3cret", b"{\"kind\":\"failed\"}", &header));
    }

    #[test]
    fn a_malformed_header_does_not_verify() {
        assert!(!verify("s3cret", b"body", "sha1=abcd"));
        assert!(!verify("s3cret", b"body", "sha256=not-hex"));
        assert!(!verify("s3cret", b"body", ""));
    }
}
