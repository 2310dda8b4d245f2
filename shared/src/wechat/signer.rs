//! Request signing: the `Authorization: WECHATPAY2-SHA256-RSA2048 ...` header of every APIv3 call.

use super::error::SignError;
use super::keys::PrivateKey;

/// The Authorization schema (`WECHATPAY2-` + `SHA256-RSA2048`), also the only
/// `Wechatpay-Signature-Type`.
pub const AUTH_SCHEMA: &str = "WECHATPAY2-SHA256-RSA2048";

/// Length of the nonces we generate (the official SDKs use 32).
pub const NONCE_LEN: usize = 32;

const NONCE_ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The signed message of a request: `METHOD\nCANONICAL_URL\nTIMESTAMP\nNONCE\nBODY\n`.
///
/// `canonical_url` is the raw (already percent-encoded) path plus `?query` when there is one,
/// exactly as sent (see [`canonical_url`]); `body` the exact bytes sent (empty for a GET).
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    request_message_raw(method, canonical_url, &timestamp.to_string(), nonce, body)
}

/// [`request_message`] with the timestamp exactly as received (the mock-side verifier).
pub(crate) fn request_message_raw(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let head = format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n");
    let mut message = Vec::with_capacity(head.len() + body.len() + 1);
    message.extend_from_slice(head.as_bytes());
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The URL part of the signed message: path, plus `?` and the query if the URI has one.
pub fn canonical_url(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// The `Authorization` header value, fields in the order of the reference vectors:
/// `WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",timestamp="..",serial_no=".."`.
pub fn authorization_header(
    mchid: &str,
    nonce: &str,
    signature: &str,
    timestamp: i64,
    serial_no: &str,
) -> String {
    format!(
        "{AUTH_SCHEMA} mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    )
}

/// A random nonce: 32 characters of `[0-9A-Za-z]` from the operating system's CSPRNG.
pub fn nonce_str() -> Result<String, SignError> {
    random_alphanumeric(NONCE_LEN)
}

/// `len` characters of `[0-9A-Za-z]`, uniformly distributed (rejection sampling), from the OS.
pub fn random_alphanumeric(len: usize) -> Result<String, SignError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|_| SignError::Random)?;
        // 248 = 4 * 62: bytes at or above it would bias the distribution.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(NONCE_ALPHABET[usize::from(*b % 62)]));
        }
    }
    Ok(out)
}

/// The pieces of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The base64 RSA signature.
    pub signature: String,
    /// The full `Authorization` header value.
    pub authorization: String,
}

/// Signs our requests to WeChat Pay as one merchant (in partner mode: the service provider).
#[derive(Debug, Clone)]
pub struct RequestSigner {
    mchid: String,
    serial_no: String,
    key: PrivateKey,
}

impl RequestSigner {
    /// `serial_no` is the merchant API certificate's serial (upper-case hex), not a platform one.
    pub fn new(mchid: impl Into<String>, serial_no: impl Into<String>, key: PrivateKey) -> Self {
        Self {
            mchid: mchid.into(),
            serial_no: serial_no.into(),
            key,
        }
    }

    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// The merchant private key, e.g. for JSAPI `paySign`.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Sign a request with the given timestamp and nonce (deterministic: PKCS#1 v1.5).
    pub fn sign(
        &self,
        method: &str,
        canonical_url: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<SignedRequest, SignError> {
        let message = request_message(method, canonical_url, timestamp, nonce, body);
        let signature = self.key.sign_base64(&message)?;
        let authorization =
            authorization_header(&self.mchid, nonce, &signature, timestamp, &self.serial_no);
        Ok(SignedRequest {
            signature,
            authorization,
        })
    }

    /// [`RequestSigner::sign`] with a fresh random nonce.
    pub fn sign_with_random_nonce(
        &self,
        method: &str,
        canonical_url: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Result<SignedRequest, SignError> {
        self.sign(method, canonical_url, body, timestamp, &nonce_str()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_shape_and_uniqueness() {
        let a = nonce_str().unwrap();
        let b = nonce_str().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(random_alphanumeric(12).unwrap().len(), 12);
        assert_eq!(random_alphanumeric(0).unwrap(), "");
        assert_eq!(random_alphanumeric(1000).unwrap().len(), 1000);
    }

    #[test]
    fn nonce_uses_the_whole_alphabet() {
        let sample = random_alphanumeric(20_000).unwrap();
        for c in NONCE_ALPHABET {
            assert!(sample.as_bytes().contains(c), "{} never drawn", *c as char);
        }
    }

    #[test]
    fn empty_body_message_ends_with_two_newlines() {
        assert_eq!(
            request_message("GET", "/v3/certificates", 1624523846, "A1B2C3D4E5F6G7", b""),
            b"GET\n/v3/certificates\n1624523846\nA1B2C3D4E5F6G7\n\n"
        );
    }

    #[test]
    fn canonical_url_keeps_raw_path_and_query() {
        let uri: http::Uri =
            "https://api.mch.weixin.qq.com/v3/pay/transactions/out-trade-no/A%7C1?mchid=1900000109"
                .parse()
                .unwrap();
        assert_eq!(
            canonical_url(&uri),
            "/v3/pay/transactions/out-trade-no/A%7C1?mchid=1900000109"
        );
        let bare: http::Uri = "https://api.mch.weixin.qq.com".parse().unwrap();
        assert_eq!(canonical_url(&bare), "/");
    }

    #[test]
    fn authorization_header_shape() {
        assert_eq!(
            authorization_header("1", "n", "s", 2, "S"),
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",nonce_str=\"n\",signature=\"s\",timestamp=\"2\",serial_no=\"S\""
        );
    }
}
