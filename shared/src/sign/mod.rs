//! Merchant-facing crypto: API keys and their hashes, constant-time comparison, merchant
//! webhook signatures ([`webhook`]), payment-link signatures ([`link`]), and the jump-pay
//! gateway's own MACs: the OAuth `state` ([`oauth_state`]) and the cashier ticket ([`ticket`]).

pub mod link;
pub mod oauth_state;
pub mod ticket;
pub mod webhook;

use aws_lc_rs::hmac;
use base64::{engine::general_purpose::STANDARD, Engine};
use sha2::{Digest, Sha256};

use crate::model::{random_base62, random_bytes, KeyHash, RandomError, Secret};

pub const SECRET_KEY_PREFIX: &str = "sk_";
pub const PUBLISHABLE_KEY_PREFIX: &str = "pk_";
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
pub const LINK_SECRET_PREFIX: &str = "lsk_";

/// Random characters in a generated API key: 32 base62 characters, about 190 bits.
const KEY_BODY_LEN: usize = 32;
/// Random characters in a payment-link signing secret.
const LINK_SECRET_BODY_LEN: usize = 40;

/// The SHA-256 of an API key, as stored and looked up. Keys carry ~190 bits of entropy,
/// so a plain (unsalted) hash is enough and keeps the lookup a single indexed read.
pub fn hash_api_key(key: &str) -> KeyHash {
    KeyHash::from_hex(hex_lower(&Sha256::digest(key.as_bytes())))
}

/// A fresh secret key, `sk_` + 32 base62 characters.
pub fn generate_secret_key() -> Result<Secret<String>, RandomError> {
    Ok(Secret::new(format!(
        "{SECRET_KEY_PREFIX}{}",
        random_base62(KEY_BODY_LEN)?
    )))
}

/// A fresh publishable key, `pk_` + 32 base62 characters.
pub fn generate_publishable_key() -> Result<String, RandomError> {
    Ok(format!(
        "{PUBLISHABLE_KEY_PREFIX}{}",
        random_base62(KEY_BODY_LEN)?
    ))
}

/// A fresh webhook secret in the Standard Webhooks format: `whsec_` + base64 of 32 random bytes.
pub fn generate_webhook_secret() -> Result<Secret<String>, RandomError> {
    let bytes: [u8; 32] = random_bytes()?;
    Ok(Secret::new(format!(
        "{WEBHOOK_SECRET_PREFIX}{}",
        STANDARD.encode(bytes)
    )))
}

/// A fresh payment-link signing secret (an HMAC-SHA256 key): `lsk_` + 40 base62 characters,
/// about 238 bits.
pub fn generate_link_signing_secret() -> Result<Secret<String>, RandomError> {
    Ok(Secret::new(format!(
        "{LINK_SECRET_PREFIX}{}",
        random_base62(LINK_SECRET_BODY_LEN)?
    )))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bytes of MAC kept in the gateway's states and tickets: 128 bits.
const SHORT_MAC_BYTES: usize = 16;
/// Hex characters of a [`short_mac`].
const SHORT_MAC_HEX_LEN: usize = 2 * SHORT_MAC_BYTES;

/// A key of its own for one use of a root secret: HMAC-SHA256(root, label), so one secret
/// (the official account's OAuth secret) keys several MACs that can never stand for each other.
fn derived_key(root_secret: &[u8], label: &str) -> hmac::Key {
    let root = hmac::Key::new(hmac::HMAC_SHA256, root_secret);
    hmac::Key::new(
        hmac::HMAC_SHA256,
        hmac::sign(&root, label.as_bytes()).as_ref(),
    )
}

/// HMAC-SHA256 of `content`, its first [`SHORT_MAC_BYTES`] as lowercase hex.
fn short_mac(key: &hmac::Key, content: &str) -> String {
    let tag = hmac::sign(key, content.as_bytes());
    hex_lower(tag.as_ref().get(..SHORT_MAC_BYTES).unwrap_or_default())
}

pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        // sha256("abc"), FIPS 180-2 example.
        assert_eq!(
            hash_api_key("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_keys_have_their_prefixes() {
        let sk = generate_secret_key().unwrap();
        assert!(sk.expose().starts_with("sk_") && sk.expose().len() == 35);
        let pk = generate_publishable_key().unwrap();
        assert!(pk.starts_with("pk_") && pk.len() == 35);
        let wh = generate_webhook_secret().unwrap();
        let body = wh.expose().strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(body).unwrap().len(), 32);
        assert_ne!(generate_secret_key().unwrap(), sk);
        let lsk = generate_link_signing_secret().unwrap();
        let body = lsk.expose().strip_prefix("lsk_").unwrap();
        assert_eq!(body.len(), 40);
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()), "{body}");
        assert_ne!(generate_link_signing_secret().unwrap(), lsk);
    }

    #[test]
    fn constant_time_eq_compares_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
