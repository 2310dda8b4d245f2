//! `GET /v3/certificates`: the platform certificates, each AES-256-GCM encrypted with the
//! APIv3 key (which is what authenticates them on the first download).

use serde::{Deserialize, Serialize};

use super::aead::{encrypt_resource, ApiV3Key, EncryptedResource};
use super::error::CertificatesError;
use super::keys::Certificate;

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
    use super::*;

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
