//! `ferrypay merchant`'s config: the table, for a local emulator its endpoint, and the KMS key
//! that wraps the data keys sealing merchants' secrets (each also a command-line option, which
//! wins).

use super::{common::TABLE, ConfigError, Env, Need, Reader, Var};

pub const DYNAMODB_ENDPOINT: Var = Var::optional(
    "FERRYPAY_DYNAMODB_ENDPOINT",
    "a local DynamoDB emulator (dummy credentials); without it, AWS (or --endpoint)",
);

pub const KMS_KEY_ID: Var = Var::optional(
    "FERRYPAY_KMS_KEY_ID",
    "the KMS key (id, ARN or alias) that wraps the data keys sealing merchants' webhook and link \
     secrets; needed once, to create the table's keyrings (functions unwrap them without it); \
     with --endpoint and without it, the public local dev key",
);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorConfig {
    /// `FERRYPAY_TABLE`, unless `--table` is given.
    pub table: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    /// `FERRYPAY_KMS_KEY_ID`, unless `--kms-key-id` is given.
    pub kms_key_id: Option<String>,
}

impl OperatorConfig {
    pub const VARIABLES: &'static [Var] = &[
        TABLE
            .with_need(Need::Optional)
            .about("the DynamoDB table (or --table)"),
        DYNAMODB_ENDPOINT,
        KMS_KEY_ID,
    ];

    pub fn from_env() -> Result<OperatorConfig, ConfigError> {
        OperatorConfig::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env<'_>) -> Result<OperatorConfig, ConfigError> {
        let r = Reader::new(env);
        let config = OperatorConfig {
            table: r.optional(&TABLE),
            dynamodb_endpoint: r.optional(&DYNAMODB_ENDPOINT),
            kms_key_id: r.optional(&KMS_KEY_ID),
        };
        r.finish(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_reads_only_declared, env_of};

    #[test]
    fn all_are_optional() {
        assert_eq!(
            OperatorConfig::from_vars(&Env::from_map(&env_of(&[]))).unwrap(),
            OperatorConfig::default()
        );
        let map = env_of(&[
            ("FERRYPAY_TABLE", "t"),
            ("FERRYPAY_DYNAMODB_ENDPOINT", "http://x"),
            ("FERRYPAY_KMS_KEY_ID", "alias/ferrypay"),
        ]);
        let config = OperatorConfig::from_vars(&Env::from_map(&map)).unwrap();
        assert_eq!(config.table.as_deref(), Some("t"));
        assert_eq!(config.dynamodb_endpoint.as_deref(), Some("http://x"));
        assert_eq!(config.kms_key_id.as_deref(), Some("alias/ferrypay"));
        assert_reads_only_declared(OperatorConfig::VARIABLES, &map, OperatorConfig::from_vars);
    }
}
