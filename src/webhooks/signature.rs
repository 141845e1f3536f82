//! Webhook signatures. Receivers verify a delivery like this:
//!
//! 1. read the header `X-Storeops-Signature: t=<unix seconds>,v1=<hex>`;
//! 2. compute `HMAC-SHA256(secret, "<t>.<raw request body>")` and hex-encode it;
//! 3. compare with `v1` in constant time, and reject if `t` is more than 5 minutes
//!    from their clock (replay protection).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "X-Storeops-Signature";

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for a body sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// What a receiver does: checks the header against the body, within `tolerance` seconds.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signature = decode_hex(v),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return false;
    };
    (now - timestamp).abs() <= tolerance
        && mac(secret, timestamp, body)
            .verify_slice(&signature)
            .is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let header = sign("s3cret-s3cret-s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(
            "s3cret-s3cret-s3cret",
            &header,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify(
            "s3cret-s3cret-s3cret",
            &header,
            b"{\"a\":2}",
            1_700_000_010,
            300
        ));
        assert!(!verify(
            "other-secret-other",
            &header,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify(
            "s3cret-s3cret-s3cret",
            &header,
            b"{\"a\":1}",
            1_700_009_999,
            300
        ));
        assert!(!verify(
            "s3cret-s3cret-s3cret",
            "garbage",
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
    }
}
