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

/// The secret half of the WeChat Pay settings: from files (`WECHATPAY_PRIVATE_KEY_FILE`,
/// `WECHATPAY_APIV3_KEY`, `WECHATPAY_PUBLIC_KEY_FILE`) or, in AWS, one Secrets Manager secret
/// holding `{"private_key_pem", "apiv3_key", "public_key_pem"?, "oauth_secret"?}`.
#[derive(Clone, Default, serde::Deserialize)]
pub struct WechatSecrets {
    pub private_key_pem: String,
    pub apiv3_key: String,
    #[serde(default)]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub oauth_secret: Option<String>,
}

impl std::fmt::Debug for WechatSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WechatSecrets([redacted])")
    }
}

impl WechatSecrets {
    /// Parses the Secrets Manager secret's JSON.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            // Never echo the text: it is the secret.
            format!(
                "the WeChat Pay secret is not the expected JSON ({})",
                e.classify_name()
            )
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or wrong fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

impl WechatPayConfig {
    /// Reads `WECHATPAY_BASE_URL` (default the real API), `WECHATPAY_MCHID`, `WECHATPAY_APPID`,
    /// `WECHATPAY_MERCHANT_SERIAL`, `WECHATPAY_PRIVATE_KEY_FILE` (PKCS#8 PEM),
    /// `WECHATPAY_APIV3_KEY` (32 characters) and, for WeChat Pay public-key mode, both
    /// `WECHATPAY_PUBLIC_KEY_FILE` and `WECHATPAY_PUBLIC_KEY_ID` (without them, platform
    /// certificates are downloaded). Problems are recorded in `env`: call `finish` before using the
    /// result.
    pub fn from_env(env: &mut Env<'_>, notify_url: String) -> Option<WechatPayConfig> {
        let key_file = env.required("WECHATPAY_PRIVATE_KEY_FILE");
        let read = |env: &mut Env<'_>, name: &str, file: &str| {
            std::fs::read_to_string(file)
                .map_err(|e| env.problem(format!("{name}={file}: {e}")))
                .ok()
        };
        let private_key_pem = if key_file.is_empty() {
            None
        } else {
            read(env, "WECHATPAY_PRIVATE_KEY_FILE", &key_file)
        };
        let apiv3_key = env.required("WECHATPAY_APIV3_KEY");
        let public_key_pem = match env.optional("WECHATPAY_PUBLIC_KEY_FILE") {
            Some(file) => Some(read(env, "WECHATPAY_PUBLIC_KEY_FILE", &file)?),
            None => None,
        };
        let secrets = WechatSecrets {
            private_key_pem: private_key_pem.unwrap_or_default(),
            apiv3_key,
            public_key_pem,
            oauth_secret: None,
        };
        Self::from_env_and_secrets(env, notify_url, &secrets)
    }

    /// The public settings from the environment (`WECHATPAY_BASE_URL`, `WECHATPAY_MCHID`,
    /// `WECHATPAY_APPID`, `WECHATPAY_MERCHANT_SERIAL`, `WECHATPAY_PUBLIC_KEY_ID`) with the
    /// secrets given. Problems are recorded in `env`: call `finish` before using the result.
    pub fn from_env_and_secrets(
        env: &mut Env<'_>,
        notify_url: String,
        secrets: &WechatSecrets,
    ) -> Option<WechatPayConfig> {
        let base_url = env
            .optional("WECHATPAY_BASE_URL")
            .unwrap_or_else(|| super::DEFAULT_BASE_URL.to_string());
        let mchid = env.required("WECHATPAY_MCHID");
        let appid = env.required("WECHATPAY_APPID");
        let merchant_serial = env.required("WECHATPAY_MERCHANT_SERIAL");
        let private_key = if secrets.private_key_pem.is_empty() {
            None
        } else {
            PrivateKey::from_pem(&secrets.private_key_pem)
                .map_err(|e| env.problem(format!("the WeChat Pay private key: {e}")))
                .ok()
        };
        let apiv3_key = if secrets.apiv3_key.is_empty() {
            None
        } else {
            secrets
                .apiv3_key
                .parse::<ApiV3Key>()
                .map_err(|e| env.problem(format!("the APIv3 key: {e}")))
                .ok()
        };
        // An empty public key (the secret's "" in certificate mode) is no public key.
        let public_key = match (
            secrets
                .public_key_pem
                .as_deref()
                .filter(|pem| !pem.trim().is_empty()),
            env.optional("WECHATPAY_PUBLIC_KEY_ID"),
        ) {
            (None, None) => None,
            (Some(pem), Some(id)) => VerifyingKey::from_spki_pem(pem)
                .map(|key| (id, key))
                .map_err(|e| env.problem(format!("the WeChat Pay public key: {e}")))
                .ok(),
            _ => {
                env.problem(
                    "the WeChat Pay public key and WECHATPAY_PUBLIC_KEY_ID go together".into(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/wechatpay/java_merchant_private_key.pem");
    const PUBLIC: &str =
        include_str!("../../tests/fixtures/wechatpay/java_wechat_pay_public_key.pem");

    fn env_map(public_key_id: Option<&str>) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = [
            ("WECHATPAY_MCHID", "1900000109"),
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            (
                "WECHATPAY_MERCHANT_SERIAL",
                "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(id) = public_key_id {
            map.insert("WECHATPAY_PUBLIC_KEY_ID".into(), id.into());
        }
        map
    }

    fn secrets(public_key_pem: &str) -> WechatSecrets {
        WechatSecrets::from_json(
            &serde_json::json!({
                "private_key_pem": KEY,
                "apiv3_key": "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb",
                "public_key_pem": public_key_pem,
                "oauth_secret": "",
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn public_key_mode_and_certificate_mode_from_the_secret() {
        let map = env_map(Some("PUB_KEY_ID_0114232134912410000000000000"));
        let mut env = Env::from_map(&map);
        let config = WechatPayConfig::from_env_and_secrets(&mut env, "n".into(), &secrets(PUBLIC));
        env.finish().unwrap();
        assert!(config.unwrap().public_key.is_some());

        // Certificate mode: an empty public key and no id.
        let map = env_map(None);
        let mut env = Env::from_map(&map);
        let config = WechatPayConfig::from_env_and_secrets(&mut env, "n".into(), &secrets(""));
        env.finish().unwrap();
        assert!(config.unwrap().public_key.is_none());
    }

    #[test]
    fn a_public_key_without_its_id_is_a_problem_and_secrets_are_never_printed() {
        let map = env_map(None);
        let mut env = Env::from_map(&map);
        let _ = WechatPayConfig::from_env_and_secrets(&mut env, "n".into(), &secrets(PUBLIC));
        assert!(env
            .finish()
            .unwrap_err()
            .to_string()
            .contains("go together"));
        assert_eq!(
            format!("{:?}", secrets(PUBLIC)),
            "WechatSecrets([redacted])"
        );
        let err = WechatSecrets::from_json("{\"private_key_pem\": \"hunter2\"").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
