//! The health function's config: the table and the per-client limit. No WeChat Pay settings,
//! no secret, no queue.

use super::{
    common::{limit, IP_RATE_LIMIT_PER_MINUTE, ORIGIN_VERIFY_SECRET_ARN, TABLE},
    ConfigError, Env, Reader, Var,
};

/// What the health function runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub table: String,
    /// Health requests per client per minute; `None`: no limit.
    pub ip_rate_limit_per_minute: Option<u32>,
}

impl HealthConfig {
    /// `FERRYPAY_ORIGIN_VERIFY_SECRET_ARN` is read by the Lambda glue (behind CloudFront).
    pub const VARIABLES: &'static [Var] =
        &[TABLE, IP_RATE_LIMIT_PER_MINUTE, ORIGIN_VERIFY_SECRET_ARN];

    pub fn from_env() -> Result<HealthConfig, ConfigError> {
        HealthConfig::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env<'_>) -> Result<HealthConfig, ConfigError> {
        let mut r = Reader::new(env);
        let table = r.text(&TABLE);
        let ip_limit = limit(&mut r, &IP_RATE_LIMIT_PER_MINUTE);
        let config = (|| {
            Some(HealthConfig {
                table: table?,
                ip_rate_limit_per_minute: ip_limit?,
            })
        })();
        r.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::tests::{assert_reads_only_declared, env_of},
        service::limits::DEFAULT_IP_RATE_LIMIT,
    };

    fn health(pairs: &[(&str, &str)]) -> Result<HealthConfig, ConfigError> {
        HealthConfig::from_vars(&Env::from_map(&env_of(pairs)))
    }

    #[test]
    fn the_table_and_the_client_limit_only() {
        let config = health(&[("FERRYPAY_TABLE", "ferrypay")]).unwrap();
        assert_eq!(
            config,
            HealthConfig {
                table: "ferrypay".into(),
                ip_rate_limit_per_minute: Some(DEFAULT_IP_RATE_LIMIT),
            }
        );
        let err = health(&[("FERRYPAY_IP_RATE_LIMIT_PER_MINUTE", "lots")]).unwrap_err();
        assert_eq!(
            err.variables(),
            ["FERRYPAY_TABLE", "FERRYPAY_IP_RATE_LIMIT_PER_MINUTE"],
            "{err}"
        );
        for map in [env_of(&[]), env_of(&[("FERRYPAY_TABLE", "t")])] {
            assert_reads_only_declared(HealthConfig::VARIABLES, &map, HealthConfig::from_vars);
        }
    }
}
