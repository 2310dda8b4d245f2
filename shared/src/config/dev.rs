//! `ferrypay dev`'s config: the demo merchant's pinned values, the public URL, the webhook
//! schedule, and, when set, another WeChat Pay (instead of the mock) and WeChat OAuth.

use super::{
    common::{
        self, DEFAULT_EXPIRE_MINUTES, IP_RATE_LIMIT_PER_MINUTE, LINK_RATE_LIMIT_PER_MINUTE,
        PUBLIC_URL, RATE_LIMIT_PER_MINUTE,
    },
    concat,
    wechat::{self, OAuth, API_BASE_URL, OAUTH_SECRET, OPEN_BASE_URL, WECHATPAY},
    worker::{retry_schedule, WEBHOOK_RETRY_SCHEDULE},
    ConfigError, Env, Need, Reader, Var,
};
use crate::{
    model::{NotifyEvents, NotifyUrl, Secret},
    service::{retry::RetrySchedule, NewMerchant, ServiceConfig},
    wechat::{OAuthConfig, WechatPayConfig},
};

/// The dev stack's webhook retries: minutes, not production's three days.
pub const DEV_WEBHOOK_RETRY_SCHEDULE: &str = "2s,5s,15s,30s,1m,5m";

pub const DEMO_API_KEY: Var = Var::optional(
    "FERRYPAY_DEMO_API_KEY",
    "pins the demo merchant's secret key (sk_...)",
)
.secret();
pub const DEMO_PUBLISHABLE_KEY: Var = Var::optional(
    "FERRYPAY_DEMO_PUBLISHABLE_KEY",
    "pins the demo merchant's publishable key (pk_...)",
);
pub const DEMO_WEBHOOK_SECRET: Var = Var::optional(
    "FERRYPAY_DEMO_WEBHOOK_SECRET",
    "pins the demo merchant's webhook secret (whsec_...)",
)
.secret();
pub const DEMO_NOTIFY_URL: Var = Var::optional(
    "FERRYPAY_DEMO_NOTIFY_URL",
    "the demo merchant's notify URL (default: the stack's own /dev/webhooks inbox)",
);

/// The demo merchant's webhook events: all of them, so the stack shows every kind.
pub const DEMO_EVENTS: Var = Var::default(
    "FERRYPAY_DEMO_EVENTS",
    DEMO_ALL_EVENTS,
    "the demo merchant's webhook events, comma-separated (order.paid is always one)",
);
const DEMO_ALL_EVENTS: &str =
    "order.paid,order.closed,refund.succeeded,refund.abnormal,refund.closed";

const DEV_PUBLIC_URL: Var = PUBLIC_URL
    .with_need(Need::Optional)
    .about("where WeChat Pay reaches the stack (default: http://LISTEN)");
const DEV_SCHEDULE: Var = WEBHOOK_RETRY_SCHEDULE.with_need(Need::Default {
    default: DEV_WEBHOOK_RETRY_SCHEDULE,
});
const DEV_OAUTH_SECRET: Var = OAUTH_SECRET
    .with_need(Need::Optional)
    .about("jump-pay against another WeChat OAuth endpoint (default: the mock's)");

/// The dev stack's per-client limit: everything it serves comes from 127.0.0.1 (the tests, a
/// browser, curl), so it is high, but on, so the limit is exercised.
pub const DEV_IP_RATE_LIMIT_PER_MINUTE: u32 = 6000;
const DEV_IP_RATE_LIMIT: Var =
    IP_RATE_LIMIT_PER_MINUTE.with_need(Need::Default { default: "6000" });

/// The `WECHATPAY_*` settings are all optional in dev: none set means the mock; any set means
/// another endpoint, read as the Lambda functions read them (key files).
const fn optional_all<const N: usize>(mut vars: [Var; N]) -> [Var; N] {
    let mut i = 0;
    while i < N {
        vars[i] = vars[i].with_need(Need::Optional);
        i += 1;
    }
    vars
}

const DEV_VARIABLES: [Var; 22] = concat(
    [
        DEFAULT_EXPIRE_MINUTES,
        RATE_LIMIT_PER_MINUTE,
        LINK_RATE_LIMIT_PER_MINUTE,
        DEV_IP_RATE_LIMIT,
        DEMO_API_KEY,
        DEMO_PUBLISHABLE_KEY,
        DEMO_WEBHOOK_SECRET,
        DEMO_NOTIFY_URL,
        DEMO_EVENTS,
        DEV_PUBLIC_URL,
        DEV_SCHEDULE,
        DEV_OAUTH_SECRET,
        OPEN_BASE_URL,
        API_BASE_URL,
    ],
    optional_all(WECHATPAY),
);

/// What `ferrypay dev` starts with, besides its command-line options.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// The service settings, with http notify URLs allowed (receivers on 127.0.0.1).
    pub service: ServiceConfig,
    /// The demo merchant, with the values pinned by `FERRYPAY_DEMO_*`.
    pub demo: NewMerchant,
    /// `FERRYPAY_PUBLIC_URL`; `None`: the listen address.
    pub public_url: Option<String>,
    pub webhook_schedule: RetrySchedule,
    /// WeChat OAuth for jump-pay links; `None`: the mock's, or off with another WeChat Pay.
    pub oauth: Option<OAuthConfig>,
    /// Another APIv3 endpoint (`WECHATPAY_*`, its `notify_url` filled in at start); `None`:
    /// the in-process mock.
    pub wechat: Option<WechatPayConfig>,
}

impl DevConfig {
    pub const VARIABLES: &'static [Var] = &DEV_VARIABLES;

    pub fn from_env() -> Result<DevConfig, ConfigError> {
        DevConfig::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env<'_>) -> Result<DevConfig, ConfigError> {
        let mut r = Reader::new(env);
        let service =
            common::service_config_with(&mut r, &DEV_IP_RATE_LIMIT).map(|service| ServiceConfig {
                allow_http_notify_urls: true,
                ..service
            });
        let demo = NewMerchant {
            name: "ferrypay demo shop".into(),
            notify_url: demo_notify_url(&mut r),
            secret_key: r.optional(&DEMO_API_KEY).map(Secret::new),
            publishable_key: r.optional(&DEMO_PUBLISHABLE_KEY),
            webhook_secret: r.optional(&DEMO_WEBHOOK_SECRET).map(Secret::new),
            notify_events: demo_events(&mut r),
        };
        let public_url = r.optional(&DEV_PUBLIC_URL);
        let webhook_schedule = retry_schedule(&mut r, &DEV_SCHEDULE);
        let oauth = match wechat::oauth(&mut r, None, None) {
            OAuth::On(oauth) => Some(Some(oauth)),
            OAuth::Off => Some(None),
            OAuth::Invalid => None,
        };
        let wechat = if WECHATPAY.iter().any(|var| r.is_set(var)) {
            wechat::wechat_pay(&mut r, String::new(), None).map(Some)
        } else {
            Some(None)
        };
        let config = (|| {
            Some(DevConfig {
                service: service?,
                demo,
                public_url,
                webhook_schedule: webhook_schedule?,
                oauth: oauth?,
                wechat: wechat?,
            })
        })();
        r.finish(config)
    }
}

fn demo_events(r: &mut Reader<'_>) -> Option<NotifyEvents> {
    let list = r.text(&DEMO_EVENTS)?;
    match NotifyEvents::parse_list(&list) {
        Ok(events) => Some(events),
        Err(e) => {
            r.problem(&DEMO_EVENTS, format!("{}: {e}", DEMO_EVENTS.name));
            None
        }
    }
}

fn demo_notify_url(r: &mut Reader<'_>) -> Option<String> {
    let url = r.optional(&DEMO_NOTIFY_URL)?;
    if NotifyUrl::parse(&url, true).is_err() {
        r.problem(
            &DEMO_NOTIFY_URL,
            format!("{}={url:?} is not an http(s) URL", DEMO_NOTIFY_URL.name),
        );
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_reads_only_declared, env_of};

    fn dev(pairs: &[(&str, &str)]) -> Result<DevConfig, ConfigError> {
        DevConfig::from_vars(&Env::from_map(&env_of(pairs)))
    }

    #[test]
    fn defaults_the_mock_and_the_dev_schedule() {
        let config = dev(&[]).unwrap();
        assert!(config.wechat.is_none(), "the mock");
        assert!(config.oauth.is_none(), "the mock's");
        assert!(config.service.allow_http_notify_urls);
        assert_eq!(config.service.default_expire_minutes, 120);
        assert_eq!(
            config.service.ip_rate_limit_per_minute,
            Some(DEV_IP_RATE_LIMIT_PER_MINUTE)
        );
        assert_eq!(
            config.webhook_schedule,
            RetrySchedule::parse(DEV_WEBHOOK_RETRY_SCHEDULE).unwrap()
        );
        assert_eq!(config.public_url, None);
        assert_eq!(config.demo.name, "ferrypay demo shop");
        assert!(config.demo.secret_key.is_none());
        assert_eq!(config.demo.notify_events, Some(NotifyEvents::all()));
        assert_eq!(
            NotifyEvents::parse_list(DEMO_ALL_EVENTS),
            Ok(NotifyEvents::all())
        );
    }

    #[test]
    fn the_demo_merchants_events_can_be_narrowed_and_bad_names_are_reported() {
        let config = dev(&[("FERRYPAY_DEMO_EVENTS", "order.paid")]).unwrap();
        assert_eq!(config.demo.notify_events, Some(NotifyEvents::default()));
        let err = dev(&[("FERRYPAY_DEMO_EVENTS", "order.paid,refund.success")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("FERRYPAY_DEMO_EVENTS"), "{err}");
        assert!(err.contains("refund.success"), "{err}");
    }

    #[test]
    fn pinned_demo_values_and_secrets_never_shown() {
        let config = dev(&[
            ("FERRYPAY_DEMO_API_KEY", "sk_test_hunter2"),
            ("FERRYPAY_DEMO_WEBHOOK_SECRET", "whsec_hunter3"),
            ("FERRYPAY_DEMO_PUBLISHABLE_KEY", "pk_test_demo"),
            ("FERRYPAY_DEMO_NOTIFY_URL", "http://127.0.0.1:9/hook"),
        ])
        .unwrap();
        assert_eq!(config.demo.secret_key.unwrap().expose(), "sk_test_hunter2");
        assert_eq!(config.demo.publishable_key.as_deref(), Some("pk_test_demo"));
        assert_eq!(
            config.demo.notify_url.as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        let debug = format!("{:?}", dev(&[("FERRYPAY_DEMO_API_KEY", "sk_test_hunter2")]));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn any_wechatpay_setting_means_all_of_them_and_every_problem_at_once() {
        let err = dev(&[
            ("WECHATPAY_MCHID", "1900000109"),
            ("FERRYPAY_DEMO_NOTIFY_URL", "ftp://example.com"),
            ("FERRYPAY_WEBHOOK_RETRY_SCHEDULE", "soon"),
            ("FERRYPAY_RATE_LIMIT_PER_MINUTE", "-1"),
            ("WECHAT_OAUTH_SECRET", "hunter2 hunter2"),
        ])
        .unwrap_err();
        let names = err.variables();
        for name in [
            "FERRYPAY_RATE_LIMIT_PER_MINUTE",
            "FERRYPAY_DEMO_NOTIFY_URL",
            "FERRYPAY_WEBHOOK_RETRY_SCHEDULE",
            "WECHAT_OAUTH_SECRET",
            "WECHATPAY_APPID",
            "WECHATPAY_MERCHANT_SERIAL",
            "WECHATPAY_PRIVATE_KEY_FILE",
            "WECHATPAY_APIV3_KEY",
        ] {
            assert!(names.contains(&name), "{name} missing from {err}");
        }
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn reads_only_its_declared_variables() {
        for map in [
            env_of(&[]),
            env_of(&[
                ("WECHATPAY_BASE_URL", "http://127.0.0.1:8081"),
                ("WECHATPAY_PUBLIC_KEY_FILE", "/nonexistent"),
                ("WECHAT_OAUTH_SECRET", "abc"),
                ("FERRYPAY_DEMO_NOTIFY_URL", "http://127.0.0.1:9/"),
            ]),
        ] {
            assert_reads_only_declared(DevConfig::VARIABLES, &map, DevConfig::from_vars);
        }
    }
}
