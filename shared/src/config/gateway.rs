//! gateway-redirect's config (jump-pay): everything an HTTP function needs (it creates orders)
//! and the official account's OAuth settings, which it cannot work without.

use super::{
    concat,
    http::{self, HttpConfig, HTTP_VARIABLES},
    wechat::{self, OAuth, API_BASE_URL, OAUTH_SECRET, OAUTH_SECRET_ARN, OPEN_BASE_URL},
    ConfigError, Env, Reader, Var,
};
use crate::{
    service::gateway::GatewaySettings,
    wechat::{settings::WechatSecrets, OAuthConfig},
};

/// The problem reported when the gateway has no OAuth secret.
pub const OAUTH_SECRET_MISSING: &str = "the WeChat OAuth secret is not set: jump-pay needs the \
     official account's AppSecret in the secret FERRYPAY_WECHAT_OAUTH_SECRET_ARN names (or, in \
     the older single-secret form, in the oauth_secret field of the secret \
     FERRYPAY_WECHAT_SECRET_ARN names; locally, in WECHAT_OAUTH_SECRET)";

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub http: HttpConfig,
    pub oauth: OAuthConfig,
}

impl GatewayConfig {
    pub const VARIABLES: &'static [Var] = &concat::<17, 4, 21>(
        HTTP_VARIABLES,
        [OAUTH_SECRET, OAUTH_SECRET_ARN, OPEN_BASE_URL, API_BASE_URL],
    );

    /// From the process environment and the secrets already read: `secret`, the one
    /// `FERRYPAY_WECHAT_SECRET_ARN` names (`None`: the key files), and `oauth_secret`, the value
    /// of the one `FERRYPAY_WECHAT_OAUTH_SECRET_ARN` names (`None`: the WeChat Pay secret's
    /// `oauth_secret`, or `WECHAT_OAUTH_SECRET`).
    pub fn from_env(
        secret: Option<&WechatSecrets>,
        oauth_secret: Option<&str>,
    ) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_vars(&Env::process(), secret, oauth_secret)
    }

    pub fn from_vars(
        env: &Env<'_>,
        secret: Option<&WechatSecrets>,
        oauth_secret: Option<&str>,
    ) -> Result<GatewayConfig, ConfigError> {
        let mut r = Reader::new(env);
        let http = http::read(&mut r, secret);
        let oauth = match wechat::oauth(&mut r, secret, oauth_secret) {
            OAuth::On(oauth) => Some(oauth),
            OAuth::Invalid => None,
            OAuth::Off => {
                r.problem(&OAUTH_SECRET, OAUTH_SECRET_MISSING.to_string());
                None
            }
        };
        let config = (|| {
            Some(GatewayConfig {
                http: http?,
                oauth: oauth?,
            })
        })();
        r.finish(config)
    }

    /// The gateway's own settings: where it is reached, and OAuth.
    pub fn gateway_settings(&self) -> GatewaySettings {
        GatewaySettings {
            public_url: self.http.public_url.clone(),
            oauth: self.oauth.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{
        assert_reads_only_declared, env_of, function_env, test_secret as secret,
    };

    fn vars() -> std::collections::BTreeMap<String, String> {
        function_env("https://pay.example.com")
    }

    #[test]
    fn the_oauth_secret_comes_from_the_wechat_pay_secret() {
        let config =
            GatewayConfig::from_vars(&Env::from_map(&vars()), Some(&secret(Some("s3cr3t"))), None)
                .unwrap();
        let settings = config.gateway_settings();
        assert_eq!(settings.public_url, "https://pay.example.com");
        assert_eq!(settings.oauth.secret.expose(), "s3cr3t");
        assert_eq!(settings.oauth.open_base_url, "https://open.weixin.qq.com");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_oauth_secret_from_its_own_secret() {
        let config = GatewayConfig::from_vars(
            &Env::from_map(&vars()),
            Some(&secret(None)),
            Some("from-its-own-secret"),
        )
        .unwrap();
        assert_eq!(
            config.gateway_settings().oauth.secret.expose(),
            "from-its-own-secret"
        );
    }

    #[test]
    fn without_the_oauth_secret_it_is_a_problem_reported_with_the_others() {
        let mut map = vars();
        map.remove("FERRYPAY_TABLE");
        for oauth_secret in [None, Some(""), Some("  ")] {
            let err =
                GatewayConfig::from_vars(&Env::from_map(&map), Some(&secret(oauth_secret)), None)
                    .unwrap_err();
            assert_eq!(
                err.variables(),
                ["FERRYPAY_TABLE", "WECHAT_OAUTH_SECRET"],
                "{err}"
            );
            assert!(err.to_string().contains("oauth_secret"), "{err}");
        }
    }

    #[test]
    fn reads_only_its_declared_variables() {
        let secret = secret(Some("s3cr3t"));
        for secret in [None, Some(&secret)] {
            for map in [env_of(&[]), vars()] {
                for oauth_secret in [None, Some("own")] {
                    assert_reads_only_declared(GatewayConfig::VARIABLES, &map, |env| {
                        GatewayConfig::from_vars(env, secret, oauth_secret)
                    });
                }
            }
        }
    }
}
