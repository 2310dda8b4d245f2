//! Typed configuration, read once at start. Every problem is reported at once.

use std::collections::BTreeMap;

use crate::service::{retry::RetrySchedule, ServiceConfig};

/// The notify-worker's retry schedule (see [`RetrySchedule::from_env`]).
pub const WEBHOOK_RETRY_SCHEDULE_VAR: &str = "FERRYPAY_WEBHOOK_RETRY_SCHEDULE";

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables through `get`, so tests need not touch the process environment.
pub struct Env<'a> {
    get: Lookup<'a>,
    problems: Vec<String>,
}

impl<'a> Env<'a> {
    pub fn process() -> Env<'static> {
        Env {
            get: Box::new(|name| std::env::var(name).ok()),
            problems: Vec::new(),
        }
    }

    pub fn from_map(map: &'a BTreeMap<String, String>) -> Env<'a> {
        Env {
            get: Box::new(|name| map.get(name).cloned()),
            problems: Vec::new(),
        }
    }

    /// A set, non-empty variable.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    /// A required variable; a missing one is recorded and reported by [`finish`](Self::finish).
    pub fn required(&mut self, name: &str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.problems.push(format!("{name} is not set"));
            String::new()
        })
    }

    /// An optional number within `range`, or `default`.
    pub fn number(
        &mut self,
        name: &str,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        match self.optional(name) {
            None => default,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if range.contains(&n) => n,
                _ => {
                    self.problems.push(format!(
                        "{name}={raw:?} is not a number in {}..={}",
                        range.start(),
                        range.end()
                    ));
                    default
                }
            },
        }
    }

    /// Records a problem found while interpreting a variable.
    pub fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// How many problems are recorded so far (to tell whether a reader found one).
    pub fn problem_count(&self) -> usize {
        self.problems.len()
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

impl ServiceConfig {
    /// `FERRYPAY_DEFAULT_EXPIRE_MINUTES` (1..=120, default 120) and
    /// `FERRYPAY_RATE_LIMIT_PER_MINUTE` (requests per merchant per minute, default 600, 0 = off).
    pub fn from_env(env: &mut Env<'_>) -> ServiceConfig {
        let default_expire_minutes = env.number("FERRYPAY_DEFAULT_EXPIRE_MINUTES", 120, 1..=120);
        let rate = env.number("FERRYPAY_RATE_LIMIT_PER_MINUTE", 600, 0..=1_000_000);
        ServiceConfig {
            default_expire_minutes,
            rate_limit_per_minute: (rate > 0).then_some(rate),
            allow_http_notify_urls: false,
        }
    }
}

impl RetrySchedule {
    /// `FERRYPAY_WEBHOOK_RETRY_SCHEDULE`: the waits between webhook attempts, e.g.
    /// `15s,1m,5m,1h,1d` (units `ms`, `s`, `m`, `h`, `d`). Unset or empty: the built-in
    /// schedule of about three days. A bad value is a problem reported with the others.
    pub fn from_env(env: &mut Env<'_>) -> RetrySchedule {
        Self::from_env_or(env, RetrySchedule::default())
    }

    /// [`RetrySchedule::from_env`] with another default (the dev stack's minutes).
    pub fn from_env_or(env: &mut Env<'_>, default: RetrySchedule) -> RetrySchedule {
        match env.optional(WEBHOOK_RETRY_SCHEDULE_VAR) {
            None => default,
            Some(raw) => RetrySchedule::parse(raw.trim()).unwrap_or_else(|e| {
                env.problem(format!("{WEBHOOK_RETRY_SCHEDULE_VAR}: {e}"));
                default
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem_at_once() {
        let map: BTreeMap<String, String> = [
            ("FERRYPAY_DEFAULT_EXPIRE_MINUTES", "500"),
            ("FERRYPAY_RATE_LIMIT_PER_MINUTE", "lots"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut env = Env::from_map(&map);
        let _ = ServiceConfig::from_env(&mut env);
        let _ = env.required("FERRYPAY_TABLE");
        let err = env.finish().unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn defaults() {
        let map = BTreeMap::new();
        let mut env = Env::from_map(&map);
        let cfg = ServiceConfig::from_env(&mut env);
        env.finish().unwrap();
        assert_eq!(cfg, ServiceConfig::default());
    }

    fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_retry_schedule_defaults_when_unset_or_empty() {
        for map in [
            env_of(&[]),
            env_of(&[(WEBHOOK_RETRY_SCHEDULE_VAR, "")]),
            env_of(&[(WEBHOOK_RETRY_SCHEDULE_VAR, "  ")]),
        ] {
            let mut env = Env::from_map(&map);
            assert_eq!(RetrySchedule::from_env(&mut env), RetrySchedule::default());
            env.finish().unwrap();
        }
    }

    #[test]
    fn the_retry_schedule_is_read_and_a_bad_one_is_named() {
        let map = env_of(&[(WEBHOOK_RETRY_SCHEDULE_VAR, "1s, 2s,5m")]);
        let mut env = Env::from_map(&map);
        let schedule = RetrySchedule::from_env(&mut env);
        env.finish().unwrap();
        assert_eq!(schedule, RetrySchedule::parse("1s,2s,5m").unwrap());

        let map = env_of(&[(WEBHOOK_RETRY_SCHEDULE_VAR, "soon")]);
        let mut env = Env::from_map(&map);
        let _ = RetrySchedule::from_env(&mut env);
        let _ = env.required("FERRYPAY_TABLE");
        let err = env.finish().unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err.0[0].starts_with(WEBHOOK_RETRY_SCHEDULE_VAR), "{err}");
        assert!(err.0[0].contains("soon"), "{err}");
    }
}
