//! The config of the merchant API functions that talk to WeChat Pay (create, query, close) and
//! inbound-callback; list and resend read [`super::StoreConfig`].

use super::{
    common::{
        self, DEFAULT_EXPIRE_MINUTES, IP_RATE_LIMIT_PER_MINUTE, LINK_RATE_LIMIT_PER_MINUTE,
        NOTIFY_QUEUE_URL, ORIGIN_VERIFY_SECRET_ARN, PUBLIC_URL, RATE_LIMIT_PER_MINUTE, TABLE,
    },
    concat,
    wechat::{self, WECHATPAY, WECHAT_SECRET_ARN},
    ConfigError, Env, Reader, Var,
};
use crate::{
    api::notify::WECHAT_NOTIFY_PATH, service::ServiceConfig, wechat::settings::WechatSecrets,
    wechat::WechatPayConfig,
};

pub(super) const HTTP_VARIABLES: [Var; 17] = concat(
    [
        TABLE,
        NOTIFY_QUEUE_URL,
        PUBLIC_URL,
        DEFAULT_EXPIRE_MINUTES,
        RATE_LIMIT_PER_MINUTE,
        LINK_RATE_LIMIT_PER_MINUTE,
        IP_RATE_LIMIT_PER_MINUTE,
        ORIGIN_VERIFY_SECRET_ARN,
        WECHAT_SECRET_ARN,
    ],
    WECHATPAY,
);

/// What an HTTP function runs with: the table, the queue, its public URL, the service settings
/// and the WeChat Pay client's settings (its notify URL is the public URL's
/// `/api/v1/notify/wechat`).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub service: ServiceConfig,
    pub table: String,
    pub queue_url: String,
    pub public_url: String,
    pub wechat: WechatPayConfig,
}

impl HttpConfig {
    pub const VARIABLES: &'static [Var] = &HTTP_VARIABLES;

    /// From the process environment; `secret` is the Secrets Manager secret
    /// `FERRYPAY_WECHAT_SECRET_ARN` names, already read (`None`: the key files).
    pub fn from_env(secret: Option<&WechatSecrets>) -> Result<HttpConfig, ConfigError> {
        HttpConfig::from_vars(&Env::process(), secret)
    }

    pub fn from_vars(
        env: &Env<'_>,
        secret: Option<&WechatSecrets>,
    ) -> Result<HttpConfig, ConfigError> {
        let mut r = Reader::new(env);
        let config = read(&mut r, secret);
        r.finish(config)
    }
}

/// The HTTP config, its problems recorded in `r` (the gateway reads it too, then its own part).
pub(super) fn read(r: &mut Reader<'_>, secret: Option<&WechatSecrets>) -> Option<HttpConfig> {
    let service = common::service_config(r);
    let table = r.text(&TABLE);
    let queue_url = r.text(&NOTIFY_QUEUE_URL);
    let public_url = r.text(&PUBLIC_URL);
    let notify_url = format!(
        "{}{WECHAT_NOTIFY_PATH}",
        public_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    );
    let wechat = wechat::wechat_pay(r, notify_url, secret);
    Some(HttpConfig {
        service: service?,
        table: table?,
        queue_url: queue_url?,
        public_url: public_url?,
        wechat: wechat?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_reads_only_declared, env_of, function_env, test_secret};

    fn secret() -> WechatSecrets {
        test_secret(None)
    }

    /// A trailing slash on the public URL, which the notify URL must not double.
    fn complete() -> std::collections::BTreeMap<String, String> {
        function_env("https://pay.example.com/")
    }

    #[test]
    fn a_complete_environment_with_defaults() {
        let config = HttpConfig::from_vars(&Env::from_map(&complete()), Some(&secret())).unwrap();
        assert_eq!(config.service, ServiceConfig::default());
        assert_eq!(config.table, "ferrypay");
        assert_eq!(
            config.wechat.notify_url,
            "https://pay.example.com/api/v1/notify/wechat"
        );
        assert_eq!(config.wechat.base_url, "https://api.mch.weixin.qq.com");
        assert!(config.wechat.public_key.is_none(), "certificate mode");
        assert!(!format!("{config:?}").contains("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut map = complete();
        map.remove("FERRYPAY_TABLE");
        map.insert("FERRYPAY_DEFAULT_EXPIRE_MINUTES".into(), "500".into());
        map.insert("FERRYPAY_RATE_LIMIT_PER_MINUTE".into(), "lots".into());
        map.insert("WECHATPAY_PUBLIC_KEY_ID".into(), "PUB_KEY_ID_1".into());
        let mut bad_secret = secret();
        bad_secret.apiv3_key = "hunter2".into();
        let err = HttpConfig::from_vars(&Env::from_map(&map), Some(&bad_secret)).unwrap_err();
        assert_eq!(
            err.variables(),
            [
                "FERRYPAY_DEFAULT_EXPIRE_MINUTES",
                "FERRYPAY_RATE_LIMIT_PER_MINUTE",
                "FERRYPAY_TABLE",
                "FERRYPAY_WECHAT_SECRET_ARN",
                "WECHATPAY_PUBLIC_KEY_ID",
            ],
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn reads_only_its_declared_variables() {
        let secret = secret();
        for secret in [None, Some(&secret)] {
            for map in [env_of(&[]), complete()] {
                assert_reads_only_declared(HttpConfig::VARIABLES, &map, |env| {
                    HttpConfig::from_vars(env, secret)
                });
            }
        }
    }
}
