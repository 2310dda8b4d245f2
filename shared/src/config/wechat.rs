//! The WeChat Pay settings (`WECHATPAY_*`, and the secret: from `FERRYPAY_WECHAT_SECRET_ARN`
//! or from files) and the WeChat OAuth ones (`WECHAT_*`).

use super::{Env, Reader, Var};
use crate::{
    model::Secret,
    wechat::{
        oauth::{DEFAULT_API_BASE_URL, DEFAULT_OPEN_BASE_URL},
        settings::{oauth_secret_is_well_formed, parse_base_url, WechatSecrets},
        ApiV3Key, OAuthConfig, PrivateKey, RetryPolicy, VerifyingKey, WechatPayConfig,
        DEFAULT_BASE_URL,
    },
};

pub const WECHAT_SECRET_ARN: Var = Var::optional(
    "FERRYPAY_WECHAT_SECRET_ARN",
    "the Secrets Manager secret with the WeChat Pay keys ({private_key_pem, apiv3_key, \
     public_key_pem?}; oauth_secret? only in the older single-secret form), read once per cold \
     start; without it, the key files",
);
/// The official account's AppSecret in a secret of its own, which only the jump-pay gateway
/// reads (and may read): the payment functions' secret then holds no OAuth secret.
pub const OAUTH_SECRET_ARN: Var = Var::optional(
    "FERRYPAY_WECHAT_OAUTH_SECRET_ARN",
    "jump-pay: the Secrets Manager secret holding the official account's AppSecret (bare, or \
     {oauth_secret}), read once per cold start; without it, the WeChat Pay secret's oauth_secret",
);
pub const BASE_URL: Var = Var::default(
    "WECHATPAY_BASE_URL",
    DEFAULT_BASE_URL,
    "WeChat Pay APIv3, or any compatible server (the mock)",
);
pub const MCHID: Var = Var::required("WECHATPAY_MCHID", "the WeChat Pay merchant id");
pub const APPID: Var = Var::required(
    "WECHATPAY_APPID",
    "the AppID orders are made for (jump-pay: the official account)",
);
pub const MERCHANT_SERIAL: Var = Var::required(
    "WECHATPAY_MERCHANT_SERIAL",
    "the merchant API certificate's serial",
);
pub const PRIVATE_KEY_FILE: Var = Var::unless(
    "WECHATPAY_PRIVATE_KEY_FILE",
    WECHAT_SECRET_ARN.name,
    "the merchant private key file (PKCS#8 PEM)",
);
pub const APIV3_KEY: Var = Var::unless(
    "WECHATPAY_APIV3_KEY",
    WECHAT_SECRET_ARN.name,
    "the APIv3 key (32 characters)",
)
.secret();
pub const PUBLIC_KEY_FILE: Var = Var::optional(
    "WECHATPAY_PUBLIC_KEY_FILE",
    "public-key mode: the WeChat Pay public key file (PEM), with WECHATPAY_PUBLIC_KEY_ID; \
     without both, platform certificates are downloaded",
);
pub const PUBLIC_KEY_ID: Var = Var::optional(
    "WECHATPAY_PUBLIC_KEY_ID",
    "public-key mode: the WeChat Pay public key's id (PUB_KEY_ID_...), with the public key",
);

/// Every variable of the WeChat Pay client. When none is set, `ferrypay dev` uses its mock.
pub const WECHATPAY: [Var; 8] = [
    BASE_URL,
    MCHID,
    APPID,
    MERCHANT_SERIAL,
    PRIVATE_KEY_FILE,
    APIV3_KEY,
    PUBLIC_KEY_FILE,
    PUBLIC_KEY_ID,
];

pub const OAUTH_SECRET: Var = Var::unless(
    "WECHAT_OAUTH_SECRET",
    WECHAT_SECRET_ARN.name,
    "jump-pay: the official account's AppSecret (in AWS: in a Secrets Manager secret, never here)",
)
.secret();
pub const OPEN_BASE_URL: Var = Var::default(
    "WECHAT_OPEN_BASE_URL",
    DEFAULT_OPEN_BASE_URL,
    "jump-pay: where the payer's browser goes for WeChat OAuth",
);
pub const API_BASE_URL: Var = Var::default(
    "WECHAT_API_BASE_URL",
    DEFAULT_API_BASE_URL,
    "jump-pay: where OAuth codes are exchanged for the payer's openid",
);

/// The Secrets Manager secret `FERRYPAY_WECHAT_SECRET_ARN` names, if any: the runtime reads it
/// (once) and hands its contents to the config.
pub fn wechat_secret_arn(env: &Env<'_>) -> Option<String> {
    env.get(WECHAT_SECRET_ARN.name)
}

/// The Secrets Manager secret `FERRYPAY_WECHAT_OAUTH_SECRET_ARN` names, if any (the gateway's
/// runtime reads it, once).
pub fn oauth_secret_arn(env: &Env<'_>) -> Option<String> {
    env.get(OAUTH_SECRET_ARN.name)
}

/// The WeChat Pay client's settings: the public ones from the environment, the keys from
/// `secret` (the Secrets Manager secret, already read) or else from the key files.
pub(super) fn wechat_pay(
    r: &mut Reader<'_>,
    notify_url: String,
    secret: Option<&WechatSecrets>,
) -> Option<WechatPayConfig> {
    let base_url = r.text(&BASE_URL);
    let mchid = r.text(&MCHID);
    let appid = r.text(&APPID);
    let merchant_serial = r.text(&MERCHANT_SERIAL);
    let keys = match secret {
        Some(secret) => keys(r, secret, KeysFrom::Secret),
        None => keys_from_files(r),
    };
    let (private_key, apiv3_key, public_key) = keys?;
    Some(WechatPayConfig {
        base_url: base_url?,
        mchid: mchid?,
        appid: appid?,
        merchant_serial: merchant_serial?,
        private_key,
        apiv3_key,
        public_key,
        notify_url,
        retry: RetryPolicy::default(),
        timeout: WechatPayConfig::DEFAULT_TIMEOUT,
        connect_timeout: WechatPayConfig::DEFAULT_CONNECT_TIMEOUT,
    })
}

/// Where the keys came from, to name it in a problem.
#[derive(Clone, Copy)]
enum KeysFrom {
    Secret,
    Files,
}

impl KeysFrom {
    /// The variable to blame and how to say where the value was, for one of the secret's
    /// fields (`field`) or its variable (`var`) in files mode.
    fn blame(self, field: &str, var: Var) -> (Var, String) {
        match self {
            KeysFrom::Secret => (
                WECHAT_SECRET_ARN,
                format!("{field} in the secret {}", WECHAT_SECRET_ARN.name),
            ),
            KeysFrom::Files => (var, var.name.to_string()),
        }
    }
}

type Keys = (PrivateKey, ApiV3Key, Option<(String, VerifyingKey)>);

/// The key files (`WECHATPAY_PRIVATE_KEY_FILE`, `WECHATPAY_PUBLIC_KEY_FILE`) and
/// `WECHATPAY_APIV3_KEY`, read as the secret would hold them.
fn keys_from_files(r: &mut Reader<'_>) -> Option<Keys> {
    let private_key_pem = r
        .required(&PRIVATE_KEY_FILE)
        .and_then(|file| read_file(r, &PRIVATE_KEY_FILE, &file));
    let apiv3_key = r.required(&APIV3_KEY);
    let public_key_pem = match r.optional(&PUBLIC_KEY_FILE) {
        Some(file) => Some(read_file(r, &PUBLIC_KEY_FILE, &file)?),
        None => None,
    };
    let secrets = WechatSecrets {
        private_key_pem: private_key_pem?,
        apiv3_key: apiv3_key?,
        public_key_pem,
        oauth_secret: None,
    };
    keys(r, &secrets, KeysFrom::Files)
}

fn read_file(r: &mut Reader<'_>, var: &Var, file: &str) -> Option<String> {
    std::fs::read_to_string(file)
        .map_err(|e| r.problem(var, format!("{}={file}: {e}", var.name)))
        .ok()
}

/// The keys, parsed; public-key mode needs both the public key and `WECHATPAY_PUBLIC_KEY_ID`.
fn keys(r: &mut Reader<'_>, secrets: &WechatSecrets, from: KeysFrom) -> Option<Keys> {
    let (var, place) = from.blame("private_key_pem", PRIVATE_KEY_FILE);
    let private_key = if secrets.private_key_pem.trim().is_empty() {
        r.problem(
            &var,
            format!("the WeChat Pay private key ({place}) is empty"),
        );
        None
    } else {
        PrivateKey::from_pem(&secrets.private_key_pem)
            .map_err(|e| r.problem(&var, format!("the WeChat Pay private key ({place}): {e}")))
            .ok()
    };
    let (var, place) = from.blame("apiv3_key", APIV3_KEY);
    let apiv3_key = secrets
        .apiv3_key
        .parse::<ApiV3Key>()
        .map_err(|e| r.problem(&var, format!("the APIv3 key ({place}): {e}")))
        .ok();
    let (var, place) = from.blame("public_key_pem", PUBLIC_KEY_FILE);
    let public_key = match (secrets.public_key_pem(), r.optional(&PUBLIC_KEY_ID)) {
        (None, None) => Some(None),
        (Some(pem), Some(id)) => VerifyingKey::from_spki_pem(pem)
            .map(|key| Some((id, key)))
            .map_err(|e| r.problem(&var, format!("the WeChat Pay public key ({place}): {e}")))
            .ok(),
        _ => {
            r.problem(
                &PUBLIC_KEY_ID,
                format!(
                    "the WeChat Pay public key ({place}) and {} go together",
                    PUBLIC_KEY_ID.name
                ),
            );
            None
        }
    };
    Some((private_key?, apiv3_key?, public_key?))
}

/// What the OAuth settings came to.
pub(super) enum OAuth {
    /// No OAuth secret anywhere: jump-pay is off (the gateway refuses to start).
    Off,
    /// Configured, but wrong: the problems are recorded.
    Invalid,
    On(OAuthConfig),
}

/// The OAuth settings: the secret from `WECHAT_OAUTH_SECRET`, from its own Secrets Manager
/// secret (`dedicated`, `FERRYPAY_WECHAT_OAUTH_SECRET_ARN`'s, already read) or from the WeChat
/// Pay secret's `oauth_secret` (the older single-secret form), the appid from
/// `WECHATPAY_APPID`, the hosts from `WECHAT_OPEN_BASE_URL` and `WECHAT_API_BASE_URL`. The
/// environment and a secret together are a problem; the dedicated secret and the older field
/// together only if they differ (while moving to the dedicated secret both may hold it).
pub(super) fn oauth(
    r: &mut Reader<'_>,
    secret: Option<&WechatSecrets>,
    dedicated: Option<&str>,
) -> OAuth {
    let from_env = r.optional(&OAUTH_SECRET);
    let from_json = secret.and_then(WechatSecrets::oauth_secret);
    let from_secrets = match (dedicated, from_json) {
        (Some(own), Some(old)) if own.trim() != old.trim() => {
            r.problem(
                &OAUTH_SECRET_ARN,
                format!(
                    "the WeChat OAuth secret differs between {} and the WeChat Pay secret's \
                     oauth_secret: remove oauth_secret from the WeChat Pay secret (every \
                     payment function can read that one)",
                    OAUTH_SECRET_ARN.name
                ),
            );
            return OAuth::Invalid;
        }
        (Some(own), _) => Some(own),
        (None, old) => old,
    };
    let secret = match (from_env.as_deref(), from_secrets) {
        (None, None) => return OAuth::Off,
        (Some(_), Some(_)) => {
            r.problem(
                &OAUTH_SECRET,
                format!(
                    "the WeChat OAuth secret is set twice ({} and a Secrets Manager secret): \
                     keep one",
                    OAUTH_SECRET.name
                ),
            );
            return OAuth::Invalid;
        }
        (Some(secret), None) | (None, Some(secret)) => secret.trim().to_string(),
    };
    let before = r.problem_count();
    if !oauth_secret_is_well_formed(&secret) {
        // Never echo it.
        r.problem(
            &OAUTH_SECRET,
            "the WeChat OAuth secret contains spaces or control characters".into(),
        );
    }
    let appid = r.optional(&APPID);
    if appid.is_none() {
        r.problem(
            &APPID,
            format!(
                "{} is not set (the official account whose OAuth secret is set)",
                APPID.name
            ),
        );
    }
    let open_base_url = base_url(r, &OPEN_BASE_URL);
    let api_base_url = base_url(r, &API_BASE_URL);
    match (appid, open_base_url, api_base_url) {
        (Some(appid), Some(open_base_url), Some(api_base_url)) if r.problem_count() == before => {
            OAuth::On(OAuthConfig {
                open_base_url,
                api_base_url,
                appid,
                secret: Secret::new(secret),
            })
        }
        _ => OAuth::Invalid,
    }
}

fn base_url(r: &mut Reader<'_>, var: &Var) -> Option<String> {
    let raw = r.text(var)?;
    let url = parse_base_url(&raw);
    if url.is_none() {
        r.problem(
            var,
            format!("{}={raw:?} is not an http(s) base URL", var.name),
        );
    }
    url
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{tests::env_of, ConfigError};

    const KEY: &str = include_str!("../../tests/fixtures/wechatpay/java_merchant_private_key.pem");
    const PUBLIC: &str =
        include_str!("../../tests/fixtures/wechatpay/java_wechat_pay_public_key.pem");

    fn env_map(public_key_id: Option<&str>) -> BTreeMap<String, String> {
        let mut map = env_of(&[
            ("WECHATPAY_MCHID", "1900000109"),
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            (
                "WECHATPAY_MERCHANT_SERIAL",
                "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
            ),
        ]);
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

    fn pay(
        map: &BTreeMap<String, String>,
        secret: Option<&WechatSecrets>,
    ) -> Result<WechatPayConfig, ConfigError> {
        let env = Env::from_map(map);
        let mut r = Reader::new(&env);
        let config = wechat_pay(&mut r, "n".into(), secret);
        r.finish(config)
    }

    fn oauth_of(
        map: &BTreeMap<String, String>,
        secret: Option<&WechatSecrets>,
    ) -> Result<Option<OAuthConfig>, ConfigError> {
        oauth_with(map, secret, None)
    }

    fn oauth_with(
        map: &BTreeMap<String, String>,
        secret: Option<&WechatSecrets>,
        dedicated: Option<&str>,
    ) -> Result<Option<OAuthConfig>, ConfigError> {
        let env = Env::from_map(map);
        let mut r = Reader::new(&env);
        let config = match oauth(&mut r, secret, dedicated) {
            OAuth::Off => Some(None),
            OAuth::Invalid => None,
            OAuth::On(config) => Some(Some(config)),
        };
        r.finish(config)
    }

    #[test]
    fn public_key_mode_and_certificate_mode_from_the_secret() {
        let map = env_map(Some("PUB_KEY_ID_0114232134912410000000000000"));
        let config = pay(&map, Some(&secrets(PUBLIC))).unwrap();
        assert!(config.public_key.is_some());

        // Certificate mode: an empty public key and no id.
        let config = pay(&env_map(None), Some(&secrets(""))).unwrap();
        assert!(config.public_key.is_none());
    }

    #[test]
    fn a_public_key_without_its_id_is_a_problem_and_secrets_are_never_printed() {
        let err = pay(&env_map(None), Some(&secrets(PUBLIC))).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        assert_eq!(
            format!("{:?}", secrets(PUBLIC)),
            "WechatSecrets([redacted])"
        );
        let err = WechatSecrets::from_json("{\"private_key_pem\": \"hunter2\"").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn keys_from_files_name_their_variables_and_never_echo_the_apiv3_key() {
        let dir = std::env::temp_dir().join(format!("ferrypay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("key.pem");
        std::fs::write(&key_file, KEY).unwrap();
        let mut map = env_map(None);
        map.insert(
            "WECHATPAY_PRIVATE_KEY_FILE".into(),
            key_file.display().to_string(),
        );
        map.insert(
            "WECHATPAY_APIV3_KEY".into(),
            "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".into(),
        );
        let config = pay(&map, None).unwrap();
        assert_eq!(config.mchid, "1900000109");
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
            "{debug}"
        );
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");

        map.insert("WECHATPAY_APIV3_KEY".into(), "hunter2-too-short".into());
        map.insert(
            "WECHATPAY_PUBLIC_KEY_FILE".into(),
            dir.join("missing.pem").display().to_string(),
        );
        let err = pay(&map, None).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            err.variables().contains(&"WECHATPAY_PUBLIC_KEY_FILE"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_secret_the_key_files_are_required() {
        let err = pay(&env_of(&[]), None).unwrap_err();
        for name in [
            "WECHATPAY_MCHID",
            "WECHATPAY_APPID",
            "WECHATPAY_MERCHANT_SERIAL",
            "WECHATPAY_PRIVATE_KEY_FILE",
            "WECHATPAY_APIV3_KEY",
        ] {
            assert!(err.variables().contains(&name), "{name} missing from {err}");
        }
        assert!(!err.variables().contains(&"WECHATPAY_BASE_URL"), "{err}");
    }

    #[test]
    fn oauth_is_off_without_a_secret() {
        let map = env_of(&[("WECHATPAY_APPID", "wxd678efh567hg6787")]);
        assert_eq!(oauth_of(&map, None).unwrap(), None);
        // An empty oauth_secret in the JSON is none either.
        assert_eq!(oauth_of(&map, Some(&secrets(PUBLIC))).unwrap(), None);
    }

    #[test]
    fn oauth_from_the_environment_with_defaults_and_overrides() {
        let map = env_of(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", " 0123456789abcdef0123456789abcdef\n"),
        ]);
        let config = oauth_of(&map, None).unwrap().unwrap();
        assert_eq!(config.open_base_url, "https://open.weixin.qq.com");
        assert_eq!(config.api_base_url, "https://api.weixin.qq.com");
        assert_eq!(config.appid, "wxd678efh567hg6787");
        assert_eq!(config.secret.expose(), "0123456789abcdef0123456789abcdef");
        assert!(!format!("{config:?}").contains("0123456789abcdef"));

        let map = env_of(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", "abc"),
            ("WECHAT_OPEN_BASE_URL", "http://127.0.0.1:8081/"),
            ("WECHAT_API_BASE_URL", "http://127.0.0.1:8081"),
        ]);
        let config = oauth_of(&map, None).unwrap().unwrap();
        assert_eq!(config.open_base_url, "http://127.0.0.1:8081");
        assert_eq!(config.api_base_url, "http://127.0.0.1:8081");
    }

    #[test]
    fn oauth_from_the_secret_json() {
        let map = env_of(&[("WECHATPAY_APPID", "wxd678efh567hg6787")]);
        let mut with_oauth = secrets(PUBLIC);
        with_oauth.oauth_secret = Some("from-secrets-manager".into());
        let config = oauth_of(&map, Some(&with_oauth)).unwrap();
        assert_eq!(config.unwrap().secret.expose(), "from-secrets-manager");
    }

    #[test]
    fn oauth_from_its_own_secret_which_the_older_field_may_only_repeat() {
        let map = env_of(&[("WECHATPAY_APPID", "wxd678efh567hg6787")]);
        let without_field = secrets(PUBLIC);
        let config = oauth_with(&map, Some(&without_field), Some("own-secret")).unwrap();
        assert_eq!(config.unwrap().secret.expose(), "own-secret");

        // Moving from the single secret: the same value in both places is fine.
        let mut with_field = secrets(PUBLIC);
        with_field.oauth_secret = Some("own-secret".into());
        let config = oauth_with(&map, Some(&with_field), Some("own-secret")).unwrap();
        assert_eq!(config.unwrap().secret.expose(), "own-secret");

        // Two different values: which one is meant is unclear, and neither is shown.
        with_field.oauth_secret = Some("hunter4".into());
        let err = oauth_with(&map, Some(&with_field), Some("hunter5")).unwrap_err();
        assert_eq!(
            err.variables(),
            ["FERRYPAY_WECHAT_OAUTH_SECRET_ARN"],
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("remove oauth_secret") && !text.contains("hunter"),
            "{text}"
        );

        // The environment and the dedicated secret: set twice.
        let map = env_of(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", "hunter2"),
        ]);
        let text = oauth_with(&map, Some(&without_field), Some("hunter3"))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("set twice") && !text.contains("hunter"),
            "{text}"
        );
    }

    #[test]
    fn oauth_problems_are_all_reported_and_never_show_the_secret() {
        let map = env_of(&[
            ("WECHAT_OAUTH_SECRET", "hunter2 hunter3"),
            ("WECHAT_OPEN_BASE_URL", "open.weixin.qq.com"),
            ("WECHAT_API_BASE_URL", "https://api.weixin.qq.com/?x=1"),
        ]);
        let err = oauth_of(&map, None).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        let text = err.to_string();
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("WECHATPAY_APPID"), "{text}");
        assert!(text.contains("WECHAT_OPEN_BASE_URL"), "{text}");
        assert!(text.contains("WECHAT_API_BASE_URL"), "{text}");

        // Set in both places: which one is meant is unclear.
        let map = env_of(&[
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            ("WECHAT_OAUTH_SECRET", "hunter2"),
        ]);
        let mut with_oauth = secrets(PUBLIC);
        with_oauth.oauth_secret = Some("hunter4".into());
        let text = oauth_of(&map, Some(&with_oauth)).unwrap_err().to_string();
        assert!(
            text.contains("set twice") && !text.contains("hunter"),
            "{text}"
        );
    }
}
