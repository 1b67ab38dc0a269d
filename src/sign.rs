//! Webhook signatures: Standard Webhooks (`webhook-signature`) and GitHub
//! (`x-hub-signature-256`). Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signing key of a secret: the base64-decoded part after `whsec_`, else the bytes.
pub fn key_from_secret(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => B64
            .decode(b64)
            .map_err(|_| "a `whsec_` secret must be followed by base64".to_string()),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

#[expect(clippy::expect_used, reason = "HMAC takes keys of any size")]
fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `webhook-signature`: one `v1,<base64>` per key, space-separated.
pub fn standard(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    keys.iter()
        .map(|k| {
            let sig = hmac(k, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            format!("v1,{}", B64.encode(sig))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `x-hub-signature-256`: `sha256=<hex>` with the key as raw bytes (GitHub's scheme).
pub fn github(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(key, &[body])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        let key = key_from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = standard(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn several_keys_give_several_signatures() {
        let a = key_from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = key_from_secret("plain secret").unwrap();
        assert_eq!(b, b"plain secret");
        let both = standard(&[a.clone(), b.clone()], "id", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(
            parts,
            [
                standard(&[a], "id", 1, b"{}"),
                standard(&[b], "id", 1, b"{}")
            ]
        );
        assert!(key_from_secret("whsec_***").is_err());
    }

    #[test]
    fn github_vector() {
        // From GitHub's docs: secret "It's a Secret to Everybody", payload "Hello, World!".
        assert_eq!(
            github(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
