//! The notify-worker's config: no WeChat Pay settings and no secret.

use super::{
    common::{NOTIFY_QUEUE_URL, TABLE},
    ConfigError, Env, Reader, Var,
};
use crate::service::retry::RetrySchedule;

pub const WEBHOOK_RETRY_SCHEDULE: Var = Var::default(
    "FERRYPAY_WEBHOOK_RETRY_SCHEDULE",
    "15s,1m,5m,15m,30m,1h,2h,4h,8h,12h,1d,1d",
    "the waits between merchant-webhook attempts (units ms, s, m, h, d)",
);

/// What the notify-worker runs with: the table, the notify queue (it queues each next attempt)
/// and the webhook retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub table: String,
    pub queue_url: String,
    pub retry_schedule: RetrySchedule,
}

impl WorkerConfig {
    pub const VARIABLES: &'static [Var] = &[TABLE, NOTIFY_QUEUE_URL, WEBHOOK_RETRY_SCHEDULE];

    pub fn from_env() -> Result<WorkerConfig, ConfigError> {
        WorkerConfig::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env<'_>) -> Result<WorkerConfig, ConfigError> {
        let mut r = Reader::new(env);
        let table = r.text(&TABLE);
        let queue_url = r.text(&NOTIFY_QUEUE_URL);
        let retry_schedule = retry_schedule(&mut r, &WEBHOOK_RETRY_SCHEDULE);
        let config = (|| {
            Some(WorkerConfig {
                table: table?,
                queue_url: queue_url?,
                retry_schedule: retry_schedule?,
            })
        })();
        r.finish(config)
    }
}

/// The schedule `var` holds (or its default).
pub(super) fn retry_schedule(r: &mut Reader<'_>, var: &Var) -> Option<RetrySchedule> {
    match r.text(var) {
        Some(raw) => match RetrySchedule::parse(raw.trim()) {
            Ok(schedule) => Some(schedule),
            Err(e) => {
                r.problem(var, format!("{}: {e}", var.name));
                None
            }
        },
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_reads_only_declared, env_of};

    fn worker(pairs: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        WorkerConfig::from_vars(&Env::from_map(&env_of(pairs)))
    }

    const BASE: [(&str, &str); 2] = [
        ("FERRYPAY_TABLE", "t"),
        ("FERRYPAY_NOTIFY_QUEUE_URL", "https://sqs.example/q"),
    ];

    #[test]
    fn the_retry_schedule_defaults_when_unset_or_empty() {
        for schedule in [None, Some(""), Some("  ")] {
            let mut pairs = BASE.to_vec();
            pairs.extend(schedule.map(|s| ("FERRYPAY_WEBHOOK_RETRY_SCHEDULE", s)));
            assert_eq!(
                worker(&pairs).unwrap().retry_schedule,
                RetrySchedule::default()
            );
        }
    }

    #[test]
    fn the_retry_schedule_is_read_and_a_bad_one_is_named() {
        let mut pairs = BASE.to_vec();
        pairs.push(("FERRYPAY_WEBHOOK_RETRY_SCHEDULE", "1s, 2s,5m"));
        assert_eq!(
            worker(&pairs).unwrap().retry_schedule,
            RetrySchedule::parse("1s,2s,5m").unwrap()
        );

        let err = worker(&[
            ("FERRYPAY_WEBHOOK_RETRY_SCHEDULE", "soon"),
            ("FERRYPAY_NOTIFY_QUEUE_URL", "https://sqs.example/q"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.0[1]
                .to_string()
                .starts_with(WEBHOOK_RETRY_SCHEDULE.name),
            "{err}"
        );
        assert!(err.0[1].to_string().contains("soon"), "{err}");
        assert_eq!(
            err.variables(),
            ["FERRYPAY_TABLE", "FERRYPAY_WEBHOOK_RETRY_SCHEDULE"]
        );
    }

    #[test]
    fn reads_only_its_declared_variables_and_nothing_of_wechat_pay() {
        let asked = assert_reads_only_declared(WorkerConfig::VARIABLES, &env_of(&BASE), |env| {
            WorkerConfig::from_vars(env)
        });
        assert_eq!(asked.len(), 3, "{asked:?}");
        assert!(WorkerConfig::VARIABLES
            .iter()
            .all(|v| !v.name.contains("WECHAT")));
    }
}
