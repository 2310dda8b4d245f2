//! `GET /v3/certificates`: the platform certificates, each AES-256-GCM encrypted with the
//! APIv3 key (which is what authenticates them on the first download), and the gate every
//! download goes through ([`RefreshGate`]): a notification naming an unknown serial (anyone
//! can send one) triggers at most one download per interval, failed or not.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::aead::{encrypt_resource, ApiV3Key, EncryptedResource};
use super::error::CertificatesError;
use super::keys::Certificate;
use crate::model::Timestamp;

/// Certificate downloads, single-flight and throttled: a download runs only if none was tried
/// (successfully or not) in the last `interval_secs`; callers arriving while one runs wait for
/// it and then use its result instead of downloading again.
#[derive(Debug)]
pub struct RefreshGate {
    last_attempt: tokio::sync::Mutex<Option<Timestamp>>,
    interval_secs: i64,
}

impl RefreshGate {
    pub fn new(interval_secs: i64) -> RefreshGate {
        RefreshGate {
            last_attempt: tokio::sync::Mutex::new(None),
            interval_secs,
        }
    }

    /// Runs `download` (`Some` with its result) unless the gate holds it back (`None`). `now`
    /// is read once the gate is ours, so a caller that waited sees the attempt it waited for.
    pub async fn run<T, Fut: Future<Output = T>>(
        &self,
        now: impl FnOnce() -> Timestamp,
        download: impl FnOnce() -> Fut,
    ) -> Option<T> {
        let mut last = self.last_attempt.lock().await;
        let now = now();
        if last.is_some_and(|t| now.unix() - t.unix() < self.interval_secs) {
            return None;
        }
        *last = Some(now);
        Some(download().await)
    }
}

/// The response body: `{"data":[{serial_no, effective_time, expire_time, encrypt_certificate}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatesResponse {
    pub data: Vec<EncryptedCertificate>,
}

/// One entry of a `/v3/certificates` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedCertificate {
    pub serial_no: String,
    /// RFC 3339 with offset, e.g. `2023-09-19T23:15:58+08:00`.
    pub effective_time: String,
    pub expire_time: String,
    pub encrypt_certificate: EncryptedResource,
}

impl EncryptedCertificate {
    /// Encrypt a certificate PEM into an entry (for the WeChat Pay mock); associated data
    /// `certificate`, `nonce` 12 bytes.
    pub fn encrypt(
        api_v3_key: &ApiV3Key,
        nonce: &str,
        certificate_pem: &str,
        effective_time: &str,
        expire_time: &str,
    ) -> Result<Self, CertificatesError> {
        let certificate = Certificate::from_pem(certificate_pem).map_err(|source| {
            CertificatesError::Certificate {
                serial_no: String::new(),
                source,
            }
        })?;
        let encrypt_certificate = encrypt_resource(
            api_v3_key,
            nonce,
            "certificate",
            None,
            certificate_pem.as_bytes(),
        )
        .map_err(|source| CertificatesError::Decrypt {
            serial_no: certificate.serial_no().to_owned(),
            source,
        })?;
        Ok(Self {
            serial_no: certificate.serial_no().to_owned(),
            effective_time: effective_time.to_owned(),
            expire_time: expire_time.to_owned(),
            encrypt_certificate,
        })
    }

    /// Decrypt and parse this entry; the certificate's own serial must match `serial_no`.
    pub fn decrypt(&self, api_v3_key: &ApiV3Key) -> Result<PlatformCertificate, CertificatesError> {
        let pem = self
            .encrypt_certificate
            .decrypt_to_string(api_v3_key)
            .map_err(|source| CertificatesError::Decrypt {
                serial_no: self.serial_no.clone(),
                source,
            })?;
        let certificate =
            Certificate::from_pem(&pem).map_err(|source| CertificatesError::Certificate {
                serial_no: self.serial_no.clone(),
                source,
            })?;
        if !certificate
            .serial_no()
            .eq_ignore_ascii_case(&self.serial_no)
        {
            return Err(CertificatesError::SerialMismatch {
                declared: self.serial_no.clone(),
                actual: certificate.serial_no().to_owned(),
            });
        }
        Ok(PlatformCertificate {
            serial_no: certificate.serial_no().to_owned(),
            pem,
            effective_time: self.effective_time.clone(),
            expire_time: self.expire_time.clone(),
            certificate,
        })
    }
}

/// A decrypted platform certificate.
#[derive(Debug, Clone)]
pub struct PlatformCertificate {
    /// Upper-case hex, as parsed from the certificate itself.
    pub serial_no: String,
    /// The certificate PEM as WeChat Pay sent it.
    pub pem: String,
    pub effective_time: String,
    pub expire_time: String,
    /// The parsed certificate, ready for [`super::verifier::KeyStore::add_certificate`].
    pub certificate: Certificate,
}

impl CertificatesResponse {
    /// Parse a response body (verify its signature first, once you have a certificate).
    pub fn from_json(body: &[u8]) -> Result<Self, CertificatesError> {
        serde_json::from_slice(body).map_err(|e| CertificatesError::Json(e.to_string()))
    }

    /// Decrypt every entry. All must succeed: a wrong APIv3 key fails the whole response.
    pub fn decrypt(
        &self,
        api_v3_key: &ApiV3Key,
    ) -> Result<Vec<PlatformCertificate>, CertificatesError> {
        self.data
            .iter()
            .map(|entry| entry.decrypt(api_v3_key))
            .collect()
    }
}

/// Parse a `/v3/certificates` body and decrypt its certificates with the APIv3 key, given as
/// configured (it must be 32 bytes).
pub fn parse_certificates_response(
    body: &[u8],
    api_v3_key: &[u8],
) -> Result<Vec<PlatformCertificate>, CertificatesError> {
    let response = CertificatesResponse::from_json(body)?;
    let key = ApiV3Key::new(api_v3_key).map_err(CertificatesError::InvalidKey)?;
    response.decrypt(&key)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::model::{Clock, ManualClock};

    #[tokio::test]
    async fn concurrent_refreshes_share_one_download_and_a_failure_is_throttled_too() {
        let clock = ManualClock::new(Timestamp::from_unix(1_766_284_200));
        let gate = RefreshGate::new(60);
        let downloads = AtomicU32::new(0);
        let failing = || async {
            downloads.fetch_add(1, Ordering::SeqCst);
            // Let the other callers arrive while this one is downloading.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            Err::<(), &str>("certificates unavailable")
        };
        let call = || gate.run(|| clock.now(), failing);
        let answers = tokio::join!(call(), call(), call(), call(), call());
        assert_eq!(
            downloads.load(Ordering::SeqCst),
            1,
            "one download for five callers"
        );
        let ran = [answers.0, answers.1, answers.2, answers.3, answers.4]
            .into_iter()
            .filter(Option::is_some)
            .count();
        assert_eq!(ran, 1);
        // It failed, and the next minute still downloads nothing.
        clock.set(clock.now().plus_secs(59));
        assert!(gate.run(|| clock.now(), failing).await.is_none());
        assert_eq!(downloads.load(Ordering::SeqCst), 1);
        clock.set(clock.now().plus_secs(1));
        assert!(gate.run(|| clock.now(), failing).await.is_some());
        assert_eq!(downloads.load(Ordering::SeqCst), 2);
    }

    const GO_CERT: &str = include_str!("../../tests/fixtures/wechatpay/go_wechatpay_cert.pem");

    fn key() -> ApiV3Key {
        "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".parse().unwrap()
    }

    #[test]
    fn mock_round_trip() {
        let entry = EncryptedCertificate::encrypt(
            &key(),
            "3a584b49ed9b",
            GO_CERT,
            "2021-04-27T16:55:23+08:00",
            "2031-04-25T16:55:23+08:00",
        )
        .unwrap();
        assert_eq!(entry.serial_no, "D7CE59D1F522D701");
        assert_eq!(entry.encrypt_certificate.associated_data, "certificate");
        let body = serde_json::to_vec(&CertificatesResponse { data: vec![entry] }).unwrap();
        let certificates =
            parse_certificates_response(&body, b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        assert_eq!(certificates.len(), 1);
        assert_eq!(certificates[0].pem, GO_CERT);
        assert_eq!(certificates[0].certificate.serial_no(), "D7CE59D1F522D701");
    }

    #[test]
    fn serial_mismatch_is_rejected() {
        let mut entry =
            EncryptedCertificate::encrypt(&key(), "3a584b49ed9b", GO_CERT, "a", "b").unwrap();
        entry.serial_no = "0123".to_owned();
        assert!(matches!(
            entry.decrypt(&key()),
            Err(CertificatesError::SerialMismatch { declared, actual })
                if declared == "0123" && actual == "D7CE59D1F522D701"
        ));
    }

    #[test]
    fn non_certificate_plaintext_is_rejected() {
        let entry = EncryptedCertificate {
            serial_no: "01".to_owned(),
            effective_time: String::new(),
            expire_time: String::new(),
            encrypt_certificate: encrypt_resource(
                &key(),
                "3a584b49ed9b",
                "certificate",
                None,
                b"hello",
            )
            .unwrap(),
        };
        assert!(matches!(
            entry.decrypt(&key()),
            Err(CertificatesError::Certificate { .. })
        ));
        assert!(matches!(
            EncryptedCertificate::encrypt(&key(), "3a584b49ed9b", "hello", "a", "b"),
            Err(CertificatesError::Certificate { .. })
        ));
        assert!(matches!(
            CertificatesResponse::from_json(b"{\"data\":{}}"),
            Err(CertificatesError::Json(_))
        ));
    }
}
