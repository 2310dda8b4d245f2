//! Typed configuration, read once at start: one config per process ([`HttpConfig`] for the
//! merchant API functions that talk to WeChat Pay, [`StoreConfig`] for those that do not (list,
//! resend), [`GatewayConfig`] for gateway-redirect, [`WorkerConfig`] for the notify-worker,
//! [`HealthConfig`] for the health function, [`DevConfig`] for `ferrypay dev`,
//! [`OperatorConfig`] for `ferrypay merchant`). Each reads its variables in one call that either returns the whole config or
//! lists every problem at once (missing, malformed, out of range; by variable name, never with
//! a secret's value), and declares the variables it reads in `VARIABLES`, so the infra check
//! reads that list (`infra/variables.json`, see [`variables_json`]) instead of the code.
//!
//! `config` sits with `runtime`: it builds service and client settings; nothing below it
//! (`model`, `sign`, `wechat`, `service`) imports it.

mod common;
mod dev;
mod gateway;
mod health;
mod http;
mod operator;
mod reader;
mod store;
mod wechat;
mod worker;

use std::collections::BTreeMap;

pub use common::{
    origin_verify_secret_arn, DEFAULT_EXPIRE_MINUTES, IP_RATE_LIMIT_PER_MINUTE,
    LINK_RATE_LIMIT_PER_MINUTE, NOTIFY_QUEUE_URL, ORIGIN_VERIFY_SECRET_ARN, PUBLIC_URL,
    RATE_LIMIT_PER_MINUTE, TABLE,
};
pub use dev::{DevConfig, DEV_IP_RATE_LIMIT_PER_MINUTE, DEV_WEBHOOK_RETRY_SCHEDULE};
pub use gateway::{GatewayConfig, OAUTH_SECRET_MISSING};
pub use health::HealthConfig;
pub use http::HttpConfig;
pub use operator::OperatorConfig;
use reader::Reader;
pub use store::StoreConfig;
pub use wechat::{
    oauth_secret_arn, wechat_secret_arn, OAUTH_SECRET, OAUTH_SECRET_ARN, WECHATPAY,
    WECHAT_SECRET_ARN,
};
pub use worker::{WorkerConfig, WEBHOOK_RETRY_SCHEDULE};

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Where a process's variables come from: its environment, or a map (tests).
pub struct Env<'a> {
    get: Lookup<'a>,
}

impl<'a> Env<'a> {
    pub fn process() -> Env<'static> {
        Env::from_fn(|name| std::env::var(name).ok())
    }

    pub fn from_map(map: &'a BTreeMap<String, String>) -> Env<'a> {
        Env::from_fn(|name| map.get(name).cloned())
    }

    pub fn from_fn(get: impl Fn(&str) -> Option<String> + 'a) -> Env<'a> {
        Env { get: Box::new(get) }
    }

    /// The variable's value, if it is set and not blank (as given: readers trim where it
    /// matters).
    pub fn get(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }
}

/// One variable a process reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Var {
    pub name: &'static str,
    #[serde(flatten)]
    pub need: Need,
    /// Its value is a secret: never printed, and never in a template (it belongs in the
    /// Secrets Manager secret).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// What it is, in a few words.
    pub about: &'static str,
}

/// Whether a variable must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "need", rename_all = "snake_case")]
pub enum Need {
    Required,
    /// Unset or blank means `default`.
    Default {
        default: &'static str,
    },
    /// Unset means "without it" (what that means is in `about`).
    Optional,
    /// Required unless the variable `unless` is set (which then provides the value).
    Unless {
        unless: &'static str,
    },
}

impl Var {
    pub const fn required(name: &'static str, about: &'static str) -> Var {
        Var::new(name, Need::Required, about)
    }

    pub const fn default(name: &'static str, default: &'static str, about: &'static str) -> Var {
        Var::new(name, Need::Default { default }, about)
    }

    pub const fn optional(name: &'static str, about: &'static str) -> Var {
        Var::new(name, Need::Optional, about)
    }

    pub const fn unless(name: &'static str, unless: &'static str, about: &'static str) -> Var {
        Var::new(name, Need::Unless { unless }, about)
    }

    const fn new(name: &'static str, need: Need, about: &'static str) -> Var {
        Var {
            name,
            need,
            secret: false,
            about,
        }
    }

    /// The same variable, holding a secret.
    pub const fn secret(self) -> Var {
        Var {
            secret: true,
            ..self
        }
    }

    /// The same variable with another need (a process that reads it otherwise).
    pub const fn with_need(self, need: Need) -> Var {
        Var { need, ..self }
    }

    /// The same variable with another description.
    pub const fn about(self, about: &'static str) -> Var {
        Var { about, ..self }
    }
}

/// `a` then `b`, as one list (`C` = `A + B`, checked at compile time): the lists of processes
/// that read the same variables and some more.
pub(crate) const fn concat<const A: usize, const B: usize, const C: usize>(
    a: [Var; A],
    b: [Var; B],
) -> [Var; C] {
    assert!(A + B == C, "C must be A + B");
    let mut out = [Var::optional("", ""); C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < B {
        out[A + j] = b[j];
        j += 1;
    }
    out
}

/// One problem with one variable. Its text names the variable and never shows a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every problem a configuration has, found in one read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", join(.0))]
pub struct ConfigError(pub Vec<Problem>);

impl ConfigError {
    /// The variables with a problem, in the order found (a variable once).
    pub fn variables(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for problem in &self.0 {
            if !names.contains(&problem.variable) {
                names.push(problem.variable);
            }
        }
        names
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every process and the variables it reads, as `infra/variables.json` holds them (the infra
/// check reads that file; a test keeps it current).
pub fn variables_json() -> serde_json::Value {
    let process = |about: &str, variables: &[Var]| serde_json::json!({ "about": about, "variables": variables });
    serde_json::json!({
        "about": "The environment variables each ferrypay process reads (ferrypay::config). \
                  Generated: do not edit; refresh with `FERRYPAY_WRITE_VARIABLES=1 cargo test \
                  -p ferrypay --lib config::tests::variables_json`.",
        "processes": {
            "http": process("the merchant API functions that call WeChat Pay (create, query, close) and inbound-callback", HttpConfig::VARIABLES),
            "store": process("the merchant API functions that never call WeChat Pay (list, resend)", StoreConfig::VARIABLES),
            "gateway": process("gateway-redirect (jump-pay)", GatewayConfig::VARIABLES),
            "worker": process("the notify-worker", WorkerConfig::VARIABLES),
            "health": process("the health function", HealthConfig::VARIABLES),
            "dev": process("ferrypay dev", DevConfig::VARIABLES),
            "operator": process("ferrypay merchant", OperatorConfig::VARIABLES),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{cell::RefCell, collections::BTreeSet};

    use super::*;

    pub(crate) fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The WeChat Pay secret with the public test merchant key (certificate mode).
    pub(crate) fn test_secret(
        oauth_secret: Option<&str>,
    ) -> crate::wechat::settings::WechatSecrets {
        crate::wechat::settings::WechatSecrets {
            private_key_pem: include_str!(
                "../../tests/fixtures/wechatpay/java_merchant_private_key.pem"
            )
            .into(),
            apiv3_key: "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".into(),
            public_key_pem: None,
            oauth_secret: oauth_secret.map(str::to_string),
        }
    }

    /// Everything a deployed HTTP function or the gateway needs, with `public_url` as
    /// FERRYPAY_PUBLIC_URL.
    pub(crate) fn function_env(public_url: &str) -> BTreeMap<String, String> {
        env_of(&[
            ("FERRYPAY_TABLE", "ferrypay"),
            ("FERRYPAY_NOTIFY_QUEUE_URL", "https://sqs.example/q"),
            ("FERRYPAY_PUBLIC_URL", public_url),
            ("FERRYPAY_WECHAT_SECRET_ARN", "arn:aws:secretsmanager:x"),
            ("WECHATPAY_MCHID", "1900000109"),
            ("WECHATPAY_APPID", "wxd678efh567hg6787"),
            (
                "WECHATPAY_MERCHANT_SERIAL",
                "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
            ),
        ])
    }

    /// Runs `read` on `map`, recording every variable it asks for; each must be in `declared`.
    pub(crate) fn assert_reads_only_declared<T>(
        declared: &[Var],
        map: &BTreeMap<String, String>,
        read: impl FnOnce(&Env<'_>) -> T,
    ) -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        let env = Env::from_fn(|name| {
            asked.borrow_mut().insert(name.to_string());
            map.get(name).cloned()
        });
        let _ = read(&env);
        drop(env);
        let asked = asked.into_inner();
        for name in &asked {
            assert!(
                declared.iter().any(|v| v.name == name),
                "{name} is read but not declared"
            );
        }
        asked
    }

    #[test]
    fn variables_json() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/variables.json");
        let want = format!(
            "{}\n",
            serde_json::to_string_pretty(&super::variables_json()).unwrap()
        );
        if std::env::var_os("FERRYPAY_WRITE_VARIABLES").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let got = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            got == want,
            "infra/variables.json is stale (or missing): refresh it with\n  \
             FERRYPAY_WRITE_VARIABLES=1 cargo test -p ferrypay --lib config::tests::variables_json"
        );
    }

    #[test]
    fn every_list_names_a_variable_once_and_its_unless_is_in_the_list() {
        for list in [
            HttpConfig::VARIABLES,
            StoreConfig::VARIABLES,
            GatewayConfig::VARIABLES,
            WorkerConfig::VARIABLES,
            HealthConfig::VARIABLES,
            DevConfig::VARIABLES,
            OperatorConfig::VARIABLES,
        ] {
            let names: BTreeSet<&str> = list.iter().map(|v| v.name).collect();
            assert_eq!(names.len(), list.len(), "{list:?}");
            for var in list {
                if let Need::Unless { unless } = var.need {
                    assert!(names.contains(unless), "{}: {unless}", var.name);
                }
            }
        }
    }

    #[test]
    fn problems_name_their_variables() {
        let err = ConfigError(vec![
            Problem {
                variable: "A",
                message: "A is not set".into(),
            },
            Problem {
                variable: "B",
                message: "B is bad".into(),
            },
            Problem {
                variable: "A",
                message: "A again".into(),
            },
        ]);
        assert_eq!(err.variables(), ["A", "B"]);
        assert_eq!(
            err.to_string(),
            "invalid configuration: A is not set; B is bad; A again"
        );
    }
}
