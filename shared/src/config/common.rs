//! The variables several processes share: the table, the queue, the public URL and the service
//! settings.

use super::{Reader, Var};
use crate::service::ServiceConfig;

pub const TABLE: Var = Var::required("FERRYPAY_TABLE", "the DynamoDB table");
pub const NOTIFY_QUEUE_URL: Var = Var::required(
    "FERRYPAY_NOTIFY_QUEUE_URL",
    "the SQS queue of merchant-webhook jobs",
);
pub const PUBLIC_URL: Var = Var::required(
    "FERRYPAY_PUBLIC_URL",
    "the API's public base URL: WeChat Pay's notify_url, jump-pay's OAuth redirect_uri",
);
pub const DEFAULT_EXPIRE_MINUTES: Var = Var::default(
    "FERRYPAY_DEFAULT_EXPIRE_MINUTES",
    "120",
    "minutes an order stays payable when the request does not say (1..=120)",
);
pub const RATE_LIMIT_PER_MINUTE: Var = Var::default(
    "FERRYPAY_RATE_LIMIT_PER_MINUTE",
    "600",
    "merchant API requests per merchant per minute (0 turns the limit off)",
);
pub const LINK_RATE_LIMIT_PER_MINUTE: Var = Var::default(
    "FERRYPAY_LINK_RATE_LIMIT_PER_MINUTE",
    "60",
    "payment-link orders per merchant per minute, apart from the API's (0 turns it off)",
);
pub const IP_RATE_LIMIT_PER_MINUTE: Var = Var::default(
    "FERRYPAY_IP_RATE_LIMIT_PER_MINUTE",
    "300",
    "unauthenticated requests (jump-pay, health) per client IPv4 address or IPv6 /64 per \
     minute (0 turns it off)",
);

/// Behind the optional CloudFront distribution: the secret CloudFront sends in its
/// origin-verification header. Only a request carrying it may name the viewer's address
/// (`CloudFront-Viewer-Address`); without this variable, the address is always API Gateway's
/// `sourceIp`.
pub const ORIGIN_VERIFY_SECRET_ARN: Var = Var::optional(
    "FERRYPAY_ORIGIN_VERIFY_SECRET_ARN",
    "behind CloudFront: the Secrets Manager secret CloudFront sends as its origin-verification \
     header, read once per cold start; without it, the client address is API Gateway's sourceIp",
);

/// The secret `FERRYPAY_ORIGIN_VERIFY_SECRET_ARN` names, if any (the runtime reads it once).
pub fn origin_verify_secret_arn(env: &super::Env<'_>) -> Option<String> {
    env.get(ORIGIN_VERIFY_SECRET_ARN.name)
}

/// A per-minute limit: `0` is off.
pub(super) fn limit(r: &mut Reader<'_>, var: &Var) -> Option<Option<u32>> {
    r.number(var, 0..=1_000_000)
        .map(|rate| (rate > 0).then_some(rate))
}

/// `FERRYPAY_DEFAULT_EXPIRE_MINUTES` and the three rate limits; https notify URLs only (the
/// dev stack allows http itself).
pub(super) fn service_config(r: &mut Reader<'_>) -> Option<ServiceConfig> {
    service_config_with(r, &IP_RATE_LIMIT_PER_MINUTE)
}

/// [`service_config`] with the per-client limit read from `ip_limit` (the dev stack's has
/// another default: everything it serves comes from 127.0.0.1).
pub(super) fn service_config_with(r: &mut Reader<'_>, ip_limit: &Var) -> Option<ServiceConfig> {
    let default_expire_minutes = r.number(&DEFAULT_EXPIRE_MINUTES, 1..=120);
    let rate = limit(r, &RATE_LIMIT_PER_MINUTE);
    let link_rate = limit(r, &LINK_RATE_LIMIT_PER_MINUTE);
    let ip_rate = limit(r, ip_limit);
    Some(ServiceConfig {
        default_expire_minutes: default_expire_minutes?,
        rate_limit_per_minute: rate?,
        link_rate_limit_per_minute: link_rate?,
        ip_rate_limit_per_minute: ip_rate?,
        allow_http_notify_urls: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{tests::env_of, Env};

    fn read(map: &std::collections::BTreeMap<String, String>) -> Result<ServiceConfig, String> {
        let env = Env::from_map(map);
        let mut r = Reader::new(&env);
        let config = service_config(&mut r);
        r.finish(config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        assert_eq!(read(&env_of(&[])).unwrap(), ServiceConfig::default());
    }

    #[test]
    fn out_of_range_values_are_named_with_their_range() {
        let err = read(&env_of(&[
            ("FERRYPAY_DEFAULT_EXPIRE_MINUTES", "500"),
            ("FERRYPAY_RATE_LIMIT_PER_MINUTE", "lots"),
        ]))
        .unwrap_err();
        assert!(
            err.contains("FERRYPAY_DEFAULT_EXPIRE_MINUTES=\"500\" is not a number in 1..=120"),
            "{err}"
        );
        assert!(
            err.contains("FERRYPAY_RATE_LIMIT_PER_MINUTE=\"lots\""),
            "{err}"
        );
        let off = read(&env_of(&[
            ("FERRYPAY_RATE_LIMIT_PER_MINUTE", "0"),
            ("FERRYPAY_LINK_RATE_LIMIT_PER_MINUTE", "0"),
            ("FERRYPAY_IP_RATE_LIMIT_PER_MINUTE", "0"),
        ]))
        .unwrap();
        assert_eq!(off.rate_limit_per_minute, None);
        assert_eq!(off.link_rate_limit_per_minute, None);
        assert_eq!(off.ip_rate_limit_per_minute, None);
    }

    #[test]
    fn the_three_buckets_are_set_apart() {
        let config = read(&env_of(&[
            ("FERRYPAY_RATE_LIMIT_PER_MINUTE", "100"),
            ("FERRYPAY_LINK_RATE_LIMIT_PER_MINUTE", "20"),
            ("FERRYPAY_IP_RATE_LIMIT_PER_MINUTE", "50"),
        ]))
        .unwrap();
        assert_eq!(
            (
                config.rate_limit_per_minute,
                config.link_rate_limit_per_minute,
                config.ip_rate_limit_per_minute
            ),
            (Some(100), Some(20), Some(50))
        );
        let err = read(&env_of(&[("FERRYPAY_IP_RATE_LIMIT_PER_MINUTE", "x")])).unwrap_err();
        assert!(err.contains("FERRYPAY_IP_RATE_LIMIT_PER_MINUTE"), "{err}");
    }
}
