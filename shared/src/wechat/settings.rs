//! WeChat Pay settings from the environment (`WECHATPAY_*`), and the WeChat OAuth ones
//! (`WECHAT_*`), read once at start.

use super::{
    client::RetryPolicy,
    oauth::{DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL},
    ApiV3Key, OAuthConfig, PrivateKey, VerifyingKey, WechatPayConfig,
};
use crate::{config::Env, model::Secret};

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

impl OAuthConfig {
    /// The OAuth settings for local runs: the secret from `WECHAT_OAUTH_SECRET`. See
    /// [`OAuthConfig::from_env_and_secrets`].
    pub fn from_env(env: &mut Env<'_>) -> Option<OAuthConfig> {
        Self::read(env, None)
    }

    /// The OAuth settings: the secret from `WECHAT_OAUTH_SECRET` or the Secrets Manager
    /// secret's `oauth_secret` (one of them: both set is a problem), the appid from
    /// `WECHATPAY_APPID`, the hosts from `WECHAT_OPEN_BASE_URL` (default
    /// `https://open.weixin.qq.com`) and `WECHAT_API_BASE_URL` (default
    /// `https://api.weixin.qq.com`). `None` when no OAuth secret is configured (jump-pay is
    /// then off) or on a problem; problems are recorded in `env`: call `finish` before using
    /// the result.
    pub fn from_env_and_secrets(env: &mut Env<'_>, secrets: &WechatSecrets) -> Option<OAuthConfig> {
        Self::read(env, secrets.oauth_secret.as_deref())
    }

    fn read(env: &mut Env<'_>, secret_from_json: Option<&str>) -> Option<OAuthConfig> {
        let from_env = env.optional("WECHAT_OAUTH_SECRET");
        let from_json = secret_from_json.filter(|s| !s.trim().is_empty());
        let secret = match (from_env.as_deref(), from_json) {
            (None, None) => return None,
            (Some(_), Some(_)) => {
                env.problem(
                    "the WeChat OAuth secret is set twice (WECHAT_OAUTH_SECRET and the secret's \
                     oauth_secret): keep one"
                        .into(),
                );
                return None;
            }
            (Some(secret), None) | (None, Some(secret)) => secret.trim().to_string(),
        };
        let mut ok = true;
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // Never echo it.
            env.problem("the WeChat OAuth secret contains spaces or control characters".into());
            ok = false;
        }
        let appid = env.optional("WECHATPAY_APPID").unwrap_or_else(|| {
            env.problem(
                "WECHATPAY_APPID is not set (the official account whose OAuth secret is set)"
                    .into(),
            );
            ok = false;
            String::new()
        });
        let open_base_url = base_url(env, "WECHAT_OPEN_BASE_URL", DEFAULT_OPEN_BASE_URL);
        let api_base_url = base_url(env, "WECHAT_API_BASE_URL", DEFAULT_API_BASE_URL);
        Some(OAuthConfig {
            open_base_url: open_base_url?,
            api_base_url: api_base_url?,
            appid,
            secret: Secret::new(secret),
        })
        .filter(|_| ok)
    }
}

/// An http(s) base URL (no query, no fragment), without its trailing `/`, or `default`.
fn base_url(env: &mut Env<'_>, name: &str, default: &str) -> Option<String> {
    let Some(raw) = env.optional(name) else {
        return Some(default.to_string());
    };
    let trimmed = raw.trim().trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            Some(trimmed.to_string())
        }
        _ => {
            env.problem(format!("{name}={raw:?} is not an http(s) base URL"));
            None
        }
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

    fn oauth_env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn oauth_is_off_without_a_secret() {
        let map = oauth_env(&[("WECHATPAY_APPID", "wxd678efh567hg6787")]);
        let mut env = Env::from_map(&map);
        assert_eq!(OAuthConfig::from_env(&mut env), None);
        // An empty oauth_secret in the JSON is none either.
        assert_eq!(
            OAuthConfig::from_env_and_secrets(&mut env, &secrets(PUBLIC)),
            None
        );
        env.finish().unwrap();
    }

    #[test]
    fn oauth_from_the_environment_with_defaults_and_overrides() {
        let map = oauth_env(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", " 0123456789abcdef0123456789abcdef\n"),
        ]);
        let mut env = Env::from_map(&map);
        let config = OAuthConfig::from_env(&mut env);
        env.finish().unwrap();
        let config = config.unwrap();
        assert_eq!(config.open_base_url, "https://open.weixin.qq.com");
        assert_eq!(config.api_base_url, "https://api.weixin.qq.com");
        assert_eq!(config.appid, "wxd678efh567hg6787");
        assert_eq!(config.secret.expose(), "0123456789abcdef0123456789abcdef");
        assert!(!format!("{config:?}").contains("0123456789abcdef"));

        let map = oauth_env(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", "abc"),
            ("WECHAT_OPEN_BASE_URL", "http://127.0.0.1:8081/"),
            ("WECHAT_API_BASE_URL", "http://127.0.0.1:8081"),
        ]);
        let mut env = Env::from_map(&map);
        let config = OAuthConfig::from_env(&mut env).unwrap();
        env.finish().unwrap();
        assert_eq!(config.open_base_url, "http://127.0.0.1:8081");
        assert_eq!(config.api_base_url, "http://127.0.0.1:8081");
    }

    #[test]
    fn oauth_from_the_secret_json() {
        let map = oauth_env(&[("WECHATPAY_APPID", "wxd678efh567hg6787")]);
        let mut env = Env::from_map(&map);
        let mut with_oauth = secrets(PUBLIC);
        with_oauth.oauth_secret = Some("from-secrets-manager".into());
        let config = OAuthConfig::from_env_and_secrets(&mut env, &with_oauth);
        env.finish().unwrap();
        assert_eq!(config.unwrap().secret.expose(), "from-secrets-manager");
    }

    #[test]
    fn oauth_problems_are_all_reported_and_never_show_the_secret() {
        let map = oauth_env(&[
            ("WECHAT_OAUTH_SECRET", "hunter2 hunter3"),
            ("WECHAT_OPEN_BASE_URL", "open.weixin.qq.com"),
            ("WECHAT_API_BASE_URL", "https://api.weixin.qq.com/?x=1"),
        ]);
        let mut env = Env::from_map(&map);
        assert_eq!(OAuthConfig::from_env(&mut env), None);
        let err = env.finish().unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        let text = err.to_string();
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("WECHATPAY_APPID"), "{text}");
        assert!(text.contains("WECHAT_OPEN_BASE_URL"), "{text}");
        assert!(text.contains("WECHAT_API_BASE_URL"), "{text}");

        // Set in both places: which one is meant is unclear.
        let map = oauth_env(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", "hunter2"),
        ]);
        let mut env = Env::from_map(&map);
        let mut with_oauth = secrets(PUBLIC);
        with_oauth.oauth_secret = Some("hunter4".into());
        assert_eq!(
            OAuthConfig::from_env_and_secrets(&mut env, &with_oauth),
            None
        );
        let text = env.finish().unwrap_err().to_string();
        assert!(
            text.contains("set twice") && !text.contains("hunter"),
            "{text}"
        );
    }
}
