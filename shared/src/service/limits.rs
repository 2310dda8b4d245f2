//! Rate limits: fixed one-minute windows counted in the rate-limit store, in three buckets that
//! never share a count.
//!
//! - the merchant API, per merchant (`FERRYPAY_RATE_LIMIT_PER_MINUTE`): only requests with the
//!   merchant's secret key reach it;
//! - payment-link orders, per merchant (`FERRYPAY_LINK_RATE_LIMIT_PER_MINUTE`): anyone holding
//!   the publishable key can spend it, so it is separate, and it bounds the WeChat prepay calls
//!   links cause;
//! - unauthenticated requests, per client (`FERRYPAY_IP_RATE_LIMIT_PER_MINUTE`): an IPv4
//!   address, or an IPv6 /64 (one client owns a /64, so counting single IPv6 addresses would
//!   give it 2^64 buckets). Requests without a client address share one bucket: Lambda and the
//!   dev server always know the address, so only a misconfigured runtime lands there, and it
//!   fails closed rather than unlimited.
//!
//! A bucket over its limit is remembered in-process ([`RefusedWindows`]) until its window ends,
//! so a flood from one client is refused without a store write per request.
//!
//! The same store gives cheap "once per window" tokens ([`Ferrypay::first_in_window`]): the
//! cashier's status polls ask WeChat Pay at most once per order per [`POLL_QUERY_SECS`].

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
};

use super::{Backends, Error, Ferrypay};
use crate::{
    model::{Merchant, MerchantId, Timestamp},
    store::RateLimitStore,
};

/// Payment-link orders per merchant per minute, by default: one a second is a busy shop's
/// counter; each is a WeChat Pay prepay call under the platform's merchant id.
pub const DEFAULT_LINK_RATE_LIMIT: u32 = 60;
/// Unauthenticated requests per client per minute, by default: a cashier polls its status 30
/// to 40 times a minute, so this leaves room for several payers behind one NAT address.
pub const DEFAULT_IP_RATE_LIMIT: u32 = 300;
/// The length of every rate-limit window.
pub const WINDOW_SECS: i64 = 60;
/// A status poll asks WeChat Pay about its order at most once per this many seconds.
pub const POLL_QUERY_SECS: i64 = 5;
/// How many refused buckets one process remembers per window (a flood from more clients than
/// this still counts in the store: correct, only dearer).
pub const REFUSED_MEMORY: usize = 4096;

/// What a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket<'a> {
    /// The merchant API (secret key), per merchant.
    Api(&'a MerchantId),
    /// Orders created through payment links, per merchant.
    LinkOrders(&'a MerchantId),
    /// Unauthenticated requests, per client (see [`client_key`]).
    Client(Option<IpAddr>),
}

impl Bucket<'_> {
    /// The bucket's name in the store, without its window. The API's is the one it always had.
    fn name(&self) -> String {
        match self {
            Bucket::Api(merchant) => format!("rate#{merchant}"),
            Bucket::LinkOrders(merchant) => format!("link#{merchant}"),
            Bucket::Client(ip) => format!("ip#{}", client_key(*ip)),
        }
    }
}

/// Who a client is, for its bucket: an IPv4 address (also when written IPv4-mapped), the /64 of
/// an IPv6 address, or `unknown` without an address.
pub fn client_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
        None => "unknown".to_string(),
    }
}

/// The buckets found over their limit in the current window, in this process: refused again
/// without asking the store. Bounded by [`REFUSED_MEMORY`]; forgotten when the window ends.
#[derive(Debug, Default)]
pub struct RefusedWindows {
    inner: Mutex<Refused>,
}

#[derive(Debug, Default)]
struct Refused {
    window_start: i64,
    buckets: HashSet<String>,
}

impl RefusedWindows {
    fn is_refused(&self, window_start: i64, bucket: &str) -> bool {
        match self.inner.lock() {
            Ok(refused) => refused.window_start == window_start && refused.buckets.contains(bucket),
            Err(_) => false,
        }
    }

    fn remember(&self, window_start: i64, bucket: String) {
        let Ok(mut refused) = self.inner.lock() else {
            return;
        };
        if refused.window_start != window_start {
            refused.window_start = window_start;
            refused.buckets.clear();
        }
        if refused.buckets.len() < REFUSED_MEMORY {
            refused.buckets.insert(bucket);
        }
    }

    /// How many buckets are remembered (tests).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|r| r.buckets.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts one request against `bucket` at `now`; `None` as the limit lets everything through
/// uncounted. Over the limit: [`Error::RateLimited`] until the window ends.
pub async fn count_request<S: RateLimitStore>(
    store: &S,
    refused: &RefusedWindows,
    now: Timestamp,
    bucket: &Bucket<'_>,
    limit: Option<u32>,
) -> Result<(), Error> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let now = now.unix();
    let window_start = now - now.rem_euclid(WINDOW_SECS);
    let retry_after_secs = u64::try_from(window_start + WINDOW_SECS - now)
        .unwrap_or(1)
        .max(1);
    let key = format!("{}#{window_start}", bucket.name());
    if refused.is_refused(window_start, &key) {
        return Err(Error::RateLimited { retry_after_secs });
    }
    let window_end = Timestamp::from_unix(window_start + WINDOW_SECS);
    let count = store.count_in_window(&key, window_end).await?;
    if count > u64::from(limit) {
        refused.remember(window_start, key);
        return Err(Error::RateLimited { retry_after_secs });
    }
    Ok(())
}

impl<B: Backends> Ferrypay<B> {
    /// Counts a merchant API request (secret key) against the merchant's API bucket.
    pub(super) async fn check_api_limit(&self, merchant: &Merchant) -> Result<(), Error> {
        let limit = self.config.rate_limit_per_minute;
        self.count(&Bucket::Api(&merchant.id), limit).await
    }

    /// Counts a payment-link order against the merchant's link bucket (never its API bucket).
    pub(super) async fn check_link_limit(&self, merchant: &Merchant) -> Result<(), Error> {
        let limit = self.config.link_rate_limit_per_minute;
        self.count(&Bucket::LinkOrders(&merchant.id), limit).await
    }

    /// Counts an unauthenticated request against its client's bucket (`ip`: the platform's
    /// client address, never a header).
    pub async fn check_client_limit(&self, ip: Option<IpAddr>) -> Result<(), Error> {
        let limit = self.config.ip_rate_limit_per_minute;
        self.count(&Bucket::Client(ip), limit).await
    }

    async fn count(&self, bucket: &Bucket<'_>, limit: Option<u32>) -> Result<(), Error> {
        let now = self.clock.now();
        count_request(&self.store, &self.refused, now, bucket, limit).await
    }

    /// Whether this is the first call for `key` in the current window of `window_secs`: a
    /// token that allows something once per window (the window's counter expires with it).
    pub(super) async fn first_in_window(&self, key: &str, window_secs: i64) -> Result<bool, Error> {
        let now = self.clock.now().unix();
        let window_start = now - now.rem_euclid(window_secs);
        let window_end = Timestamp::from_unix(window_start + window_secs);
        let bucket = format!("{key}#{window_start}");
        Ok(self.store.count_in_window(&bucket, window_end).await? == 1)
    }

    /// Counts one use of `key` until `expires_at` (fixed for the key) and says whether it is
    /// within `allowed` uses.
    pub(super) async fn within_uses(
        &self,
        key: &str,
        expires_at: Timestamp,
        allowed: u64,
    ) -> Result<bool, Error> {
        Ok(self.store.count_in_window(key, expires_at).await? <= allowed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        model::{Clock, ManualClock},
        service::ServiceConfig,
        testing::*,
    };

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        assert_eq!(client_key(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(client_key(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(None), "unknown");
    }

    fn limited_app(clock: Arc<ManualClock>) -> TestApp {
        let mut app = app_with_clock(clock);
        app.config = ServiceConfig {
            rate_limit_per_minute: Some(2),
            link_rate_limit_per_minute: Some(2),
            ip_rate_limit_per_minute: Some(3),
            ..app.config
        };
        app
    }

    #[tokio::test]
    async fn the_buckets_never_share_a_count() {
        let clock = clock_at_start();
        let app = limited_app(clock.clone());
        let (merchant, _) = onboard_test_merchant(&app, "Shop").await;
        for _ in 0..2 {
            app.check_link_limit(&merchant).await.unwrap();
        }
        let err = app.check_link_limit(&merchant).await.unwrap_err();
        assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
        // The API bucket is untouched by the links.
        app.check_api_limit(&merchant).await.unwrap();
        app.check_api_limit(&merchant).await.unwrap();
        assert!(app.check_api_limit(&merchant).await.is_err());
        // A new window starts every bucket afresh.
        clock.set(clock.now().plus_secs(WINDOW_SECS));
        app.check_link_limit(&merchant).await.unwrap();
        app.check_api_limit(&merchant).await.unwrap();
    }

    #[tokio::test]
    async fn a_client_over_its_limit_is_refused_from_memory_until_the_window_ends() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(START - START % 60)));
        let app = limited_app(clock.clone());
        let flood = ip("198.51.100.1");
        for _ in 0..3 {
            app.check_client_limit(flood).await.unwrap();
        }
        clock.set(clock.now().plus_secs(15));
        let err = app.check_client_limit(flood).await.unwrap_err();
        let Error::RateLimited { retry_after_secs } = err else {
            panic!("{err:?}")
        };
        assert_eq!(retry_after_secs, 45);
        assert_eq!(app.refused.len(), 1);
        // Further requests in the window never reach the store: its count stays at 4.
        for _ in 0..50 {
            assert!(app.check_client_limit(flood).await.is_err());
        }
        let key = format!("ip#198.51.100.1#{}", START - START % 60);
        let end = Timestamp::from_unix(START - START % 60 + 60);
        assert_eq!(app.store.count_in_window(&key, end).await.unwrap(), 5);
        // Another client, and the same /64's neighbour counts with its /64.
        app.check_client_limit(ip("198.51.100.2")).await.unwrap();
        for _ in 0..3 {
            app.check_client_limit(ip("2001:db8::1")).await.unwrap();
        }
        assert!(app.check_client_limit(ip("2001:db8::2")).await.is_err());
        // The next window forgets.
        clock.set(clock.now().plus_secs(45));
        app.check_client_limit(flood).await.unwrap();
    }

    #[test]
    fn the_refused_memory_is_bounded() {
        let refused = RefusedWindows::default();
        for i in 0..REFUSED_MEMORY + 10 {
            refused.remember(60, format!("ip#{i}"));
        }
        assert_eq!(refused.len(), REFUSED_MEMORY);
        assert!(refused.is_refused(60, "ip#0"));
        assert!(!refused.is_refused(120, "ip#0"));
        refused.remember(120, "ip#x".into());
        assert_eq!(refused.len(), 1);
    }

    #[tokio::test]
    async fn a_token_is_given_once_per_window() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(START - START % 60)));
        let app = app_with_clock(clock.clone());
        assert!(app.first_in_window("poll#A", 5).await.unwrap());
        assert!(!app.first_in_window("poll#A", 5).await.unwrap());
        assert!(app.first_in_window("poll#B", 5).await.unwrap());
        clock.set(clock.now().plus_secs(5));
        assert!(app.first_in_window("poll#A", 5).await.unwrap());
    }
}
