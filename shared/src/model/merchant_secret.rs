//! A merchant's secret as the code holding it sees it: open (this process may use it) or
//! sealed (stored encrypted under a data key this process does not hold).
//!
//! The store decides which: it opens a secret only with its purpose's data key (the
//! notify-worker holds the webhook key, gateway-redirect the link key, the operator's CLI both).
//! Every other process reads merchants with their secrets sealed, and any use of one is an error
//! ([`SecretSealed`]), never an empty secret.

use serde::{Deserialize, Serialize};

use super::Secret;

/// What a secret is for; each purpose has its own data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretPurpose {
    /// `whsec_...`: signs webhooks (current and previous).
    Webhook,
    /// `lsk_...`: signs payment links.
    Link,
}

impl SecretPurpose {
    pub const ALL: [SecretPurpose; 2] = [SecretPurpose::Webhook, SecretPurpose::Link];

    pub fn as_str(self) -> &'static str {
        match self {
            SecretPurpose::Webhook => "webhook",
            SecretPurpose::Link => "link",
        }
    }

    pub fn parse(text: &str) -> Option<SecretPurpose> {
        SecretPurpose::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// A merchant's webhook or link secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerchantSecret {
    /// Usable here.
    Open(Secret<String>),
    /// Not usable here: this process holds no data key for the purpose.
    Sealed(SecretPurpose),
}

/// A sealed secret was about to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this process holds no {} data key: the merchant's {} secret is sealed", .0.as_str(), .0.as_str())]
pub struct SecretSealed(pub SecretPurpose);

impl MerchantSecret {
    /// An open secret.
    pub fn new(value: impl Into<String>) -> Self {
        MerchantSecret::Open(Secret::new(value.into()))
    }

    /// The secret, if this process may use it.
    pub fn open(&self) -> Result<&Secret<String>, SecretSealed> {
        match self {
            MerchantSecret::Open(secret) => Ok(secret),
            MerchantSecret::Sealed(purpose) => Err(SecretSealed(*purpose)),
        }
    }

    /// The secret's text, if this process may use it: call it only where it is really used.
    pub fn expose(&self) -> Result<&str, SecretSealed> {
        self.open().map(|secret| secret.expose().as_str())
    }
}

impl From<Secret<String>> for MerchantSecret {
    fn from(secret: Secret<String>) -> Self {
        MerchantSecret::Open(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_is_an_error_to_use_and_never_empty() {
        let sealed = MerchantSecret::Sealed(SecretPurpose::Link);
        assert_eq!(sealed.expose(), Err(SecretSealed(SecretPurpose::Link)));
        assert!(SecretSealed(SecretPurpose::Link)
            .to_string()
            .contains("link"));
        let open = MerchantSecret::new("whsec_abc");
        assert_eq!(open.expose(), Ok("whsec_abc"));
        assert_eq!(format!("{open:?}"), "Open([redacted])");
    }

    #[test]
    fn purposes_read_back() {
        for purpose in SecretPurpose::ALL {
            assert_eq!(SecretPurpose::parse(purpose.as_str()), Some(purpose));
        }
        assert_eq!(SecretPurpose::parse("wechat"), None);
    }
}
