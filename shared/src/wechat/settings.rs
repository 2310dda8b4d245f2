//! WeChat Pay settings from the environment (`WECHATPAY_*`), read once at start.

use super::{client::RetryPolicy, ApiV3Key, PrivateKey, VerifyingKey, WechatPayConfig};
use crate::config::Env;

/// The variables that configure the WeChat Pay client. When none is set, `ferrypay dev` uses
/// its built-in mock.
pub const WECHATPAY_VARIABLES: [&str; 8] = [
    "WECHATPAY_BASE_URL",
    "WECHATPAY_MCHID",
    "WECHATPAY_APPID",
    "WECHATPAY_MERCHANT_SERIAL",
    "WECHATPAY_PRIVATE_KEY_FILE",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_PUBLIC_KEY_FILE",
    "WECHATPAY_PUBLIC_KEY_ID",
];

/// Whether any `WECHATPAY_*` variable is set.
pub fn any_wechatpay_setting(env: &Env<'_>) -> bool {
    WECHATPAY_VARIABLES
        .iter()
        .any(|name| env.optional(name).is_some())
}

impl WechatPayConfig {
    /// Reads `WECHATPAY_BASE_URL` (default the real API), `WECHATPAY_MCHID`, `WECHATPAY_APPID`,
    /// `WECHATPAY_MERCHANT_SERIAL`, `WECHATPAY_PRIVATE_KEY_FILE` (PKCS#8 PEM),
    /// `WECHATPAY_APIV3_KEY` (32 characters) and, for WeChat Pay public-key mode, both
    /// `WECHATPAY_PUBLIC_KEY_FILE` and `WECHATPAY_PUBLIC_KEY_ID` (without them, platform
    /// certificates are downloaded). Problems are recorded in `env`; `None` if any.
    pub fn from_env(env: &mut Env<'_>, notify_url: String) -> Option<WechatPayConfig> {
        let base_url = env
            .optional("WECHATPAY_BASE_URL")
            .unwrap_or_else(|| super::DEFAULT_BASE_URL.to_string());
        let mchid = env.required("WECHATPAY_MCHID");
        let appid = env.required("WECHATPAY_APPID");
        let merchant_serial = env.required("WECHATPAY_MERCHANT_SERIAL");
        let key_file = env.required("WECHATPAY_PRIVATE_KEY_FILE");
        let apiv3 = env.required("WECHATPAY_APIV3_KEY");
        let private_key = (!key_file.is_empty())
            .then(|| {
                std::fs::read_to_string(&key_file)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| PrivateKey::from_pem(&pem).map_err(|e| e.to_string()))
                    .map_err(|e| env.problem(format!("WECHATPAY_PRIVATE_KEY_FILE={key_file}: {e}")))
                    .ok()
            })
            .flatten();
        let apiv3_key = (!apiv3.is_empty())
            .then(|| {
                apiv3
                    .parse::<ApiV3Key>()
                    .map_err(|e| env.problem(format!("WECHATPAY_APIV3_KEY: {e}")))
                    .ok()
            })
            .flatten();
        let public_key = match (
            env.optional("WECHATPAY_PUBLIC_KEY_FILE"),
            env.optional("WECHATPAY_PUBLIC_KEY_ID"),
        ) {
            (None, None) => None,
            (Some(file), Some(id)) => std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|pem| VerifyingKey::from_spki_pem(&pem).map_err(|e| e.to_string()))
                .map(|key| (id, key))
                .map_err(|e| env.problem(format!("WECHATPAY_PUBLIC_KEY_FILE={file}: {e}")))
                .ok(),
            _ => {
                env.problem(
                    "WECHATPAY_PUBLIC_KEY_FILE and WECHATPAY_PUBLIC_KEY_ID go together".into(),
                );
                None
            }
        };
        Some(WechatPayConfig {
            base_url,
            mchid,
            appid,
            merchant_serial,
            private_key: private_key?,
            apiv3_key: apiv3_key?,
            public_key,
            notify_url,
            retry: RetryPolicy::default(),
            timeout: WechatPayConfig::DEFAULT_TIMEOUT,
            connect_timeout: WechatPayConfig::DEFAULT_CONNECT_TIMEOUT,
        })
    }
}
