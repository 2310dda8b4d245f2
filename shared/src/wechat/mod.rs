//! WeChat Pay APIv3: request signing, response and notification verification, notification
//! decryption, JSAPI pay parameters; and WeChat OAuth for the payer's openid.
//!
//! The protocol parts are pure (no I/O, no clock: `now` is always a parameter, in Unix seconds)
//! and pinned by the official SDKs' test vectors (`tests/wechat_vectors.rs`); [`client`] and
//! [`oauth`]'s client do the I/O.
//!
//! - [`keys`]: [`PrivateKey`] (PKCS#8 PEM, aws-lc), [`VerifyingKey`] (SPKI / certificate),
//!   [`Certificate`] (serial as upper-case hex).
//! - [`signer`]: `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n` and the `Authorization` header.
//! - [`verifier`]: `TIMESTAMP\nNONCE\nBODY\n` over the raw body, key chosen by
//!   `Wechatpay-Serial` from a [`KeyStore`] (platform certificates and/or `PUB_KEY_ID_...`).
//! - [`aead`]: AEAD_AES_256_GCM with the 32-byte APIv3 key.
//! - [`notification`]: the notification envelope and [`open_notification`].
//! - [`certificates`]: `/v3/certificates` decryption.
//! - [`jsapi`]: `getBrandWCPayRequest` parameters, and their `paySign` check (for the mock).
//! - `server` (feature `wechat-mock`, and in this crate's tests): WeChat Pay's side, for the
//!   mock: sign responses, check our `Authorization`. No Lambda function enables it.
//! - [`refund`]: domestic refunds: request and Refund object, error classification, the
//!   refund notification resource.
//! - [`oauth`]: `snsapi_base` authorization URL and the code-for-openid exchange.

pub mod aead;
pub mod certificates;
pub mod client;
pub mod error;
pub mod jsapi;
pub mod keys;
pub mod notification;
pub mod oauth;
pub mod refund;
#[cfg(any(test, feature = "wechat-mock"))]
pub mod server;
pub mod settings;
pub mod signer;
pub mod verifier;

pub use aead::{encrypt_resource, ApiV3Key, EncryptedResource, AEAD_AES_256_GCM};
pub use certificates::{
    parse_certificates_response, CertificatesResponse, EncryptedCertificate, PlatformCertificate,
};
pub use client::{RetryPolicy, WechatPayClient, WechatPayConfig, DEFAULT_BASE_URL};
pub use error::{
    AeadError, CertificatesError, KeyError, NotificationError, SignError, VerifyError,
};
pub use jsapi::{jsapi_pay_params, JsapiPayParams};
pub use keys::{Certificate, PrivateKey, VerifyingKey};
pub use notification::{open_notification, Notification, OpenedNotification};
pub use oauth::{
    authorize_url, AuthorizeUrlError, OAuthClient, OAuthConfig, OAuthError, OAuthIdentity,
};
#[cfg(any(test, feature = "wechat-mock"))]
pub use server::{
    parse_authorization, sign_response, AuthorizationError, AuthorizationFields,
    AuthorizationVerifier,
};
pub use signer::{nonce_str, RequestSigner, SignedRequest, AUTH_SCHEMA};
pub use verifier::{KeySource, KeyStore, WechatpayHeaders};
