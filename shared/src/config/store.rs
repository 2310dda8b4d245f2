//! The config of the merchant API functions that never talk to WeChat Pay (list, resend): the
//! table, the queue and the service settings, nothing of WeChat Pay's (no keys, no secret).

use super::{
    common::{
        self, DEFAULT_EXPIRE_MINUTES, IP_RATE_LIMIT_PER_MINUTE, LINK_RATE_LIMIT_PER_MINUTE,
        NOTIFY_QUEUE_URL, ORIGIN_VERIFY_SECRET_ARN, RATE_LIMIT_PER_MINUTE, TABLE,
    },
    ConfigError, Env, Reader, Var,
};
use crate::service::ServiceConfig;

/// What a store-only function runs with.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub service: ServiceConfig,
    pub table: String,
    pub queue_url: String,
}

impl StoreConfig {
    pub const VARIABLES: &'static [Var] = &[
        TABLE,
        NOTIFY_QUEUE_URL,
        DEFAULT_EXPIRE_MINUTES,
        RATE_LIMIT_PER_MINUTE,
        LINK_RATE_LIMIT_PER_MINUTE,
        IP_RATE_LIMIT_PER_MINUTE,
        ORIGIN_VERIFY_SECRET_ARN,
    ];

    pub fn from_env() -> Result<StoreConfig, ConfigError> {
        StoreConfig::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env<'_>) -> Result<StoreConfig, ConfigError> {
        let mut r = Reader::new(env);
        let service = common::service_config(&mut r);
        let table = r.text(&TABLE);
        let queue_url = r.text(&NOTIFY_QUEUE_URL);
        let config = (|| {
            Some(StoreConfig {
                service: service?,
                table: table?,
                queue_url: queue_url?,
            })
        })();
        r.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_reads_only_declared, env_of, function_env};

    #[test]
    fn needs_the_table_and_the_queue_and_nothing_of_wechat_pays() {
        let config = StoreConfig::from_vars(&Env::from_map(&env_of(&[
            ("FERRYPAY_TABLE", "ferrypay"),
            ("FERRYPAY_NOTIFY_QUEUE_URL", "https://sqs.example/q"),
        ])))
        .unwrap();
        assert_eq!(config.table, "ferrypay");
        assert_eq!(config.service, ServiceConfig::default());

        let err = StoreConfig::from_vars(&Env::from_map(&env_of(&[(
            "FERRYPAY_RATE_LIMIT_PER_MINUTE",
            "lots",
        )])))
        .unwrap_err();
        assert_eq!(
            err.variables(),
            [
                "FERRYPAY_RATE_LIMIT_PER_MINUTE",
                "FERRYPAY_TABLE",
                "FERRYPAY_NOTIFY_QUEUE_URL"
            ],
            "{err}"
        );
        for name in StoreConfig::VARIABLES.iter().map(|v| v.name) {
            assert!(
                !name.starts_with("WECHAT") && !name.contains("WECHAT_SECRET"),
                "{name}"
            );
        }
    }

    #[test]
    fn reads_only_its_declared_variables() {
        for map in [env_of(&[]), function_env("https://pay.example.com")] {
            let asked = assert_reads_only_declared(StoreConfig::VARIABLES, &map, |env| {
                StoreConfig::from_vars(env)
            });
            assert!(
                asked.iter().all(|name| !name.contains("WECHAT")),
                "{asked:?}"
            );
        }
    }
}
