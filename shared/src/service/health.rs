//! Health: `GET /api/v1/health` answers from the process alone (cheap: one rate-limit count);
//! `?deep=1` also reads the store's fixed health key ([`HealthStore`]), at most once per
//! [`DEEP_CHECK_CACHE_SECS`] per process, whatever the answer (a flood of deep checks against a
//! failing table reads it no more often). Anyone may ask, so each request counts in its
//! client's bucket. Needs no channel and no queue: the health function has only the table.

use std::{net::IpAddr, sync::Mutex};

use super::{
    limits::{count_request, Bucket, RefusedWindows},
    Error,
};
use crate::{
    model::Timestamp,
    store::{HealthStore, RateLimitStore},
};

/// How long a deep check's answer is reused.
pub const DEEP_CHECK_CACHE_SECS: i64 = 5;
/// The version a health answer reports (the only setting it shows).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The health check of one process: its client limit and its cached deep check.
#[derive(Debug, Default)]
pub struct HealthCheck {
    ip_limit: Option<u32>,
    refused: RefusedWindows,
    deep: Mutex<Option<DeepAnswer>>,
}

#[derive(Debug, Clone, Copy)]
struct DeepAnswer {
    at: Timestamp,
    healthy: bool,
}

impl HealthCheck {
    /// `ip_limit`: requests per client per minute (`FERRYPAY_IP_RATE_LIMIT_PER_MINUTE`).
    pub fn new(ip_limit: Option<u32>) -> HealthCheck {
        HealthCheck {
            ip_limit,
            ..HealthCheck::default()
        }
    }

    /// Counts a health request against its client's bucket.
    pub async fn check_client<S: RateLimitStore>(
        &self,
        store: &S,
        now: Timestamp,
        ip: Option<IpAddr>,
    ) -> Result<(), Error> {
        count_request(
            store,
            &self.refused,
            now,
            &Bucket::Client(ip),
            self.ip_limit,
        )
        .await
    }

    /// The deep check: the store answers. Reuses an answer younger than
    /// [`DEEP_CHECK_CACHE_SECS`]; a failure is logged when found and is
    /// [`Error::StoreUnavailable`].
    pub async fn check_store<S: HealthStore>(
        &self,
        store: &S,
        now: Timestamp,
    ) -> Result<(), Error> {
        let cached = self.deep.lock().ok().and_then(|deep| *deep);
        let healthy = match cached {
            Some(answer)
                if (0..DEEP_CHECK_CACHE_SECS).contains(&(now.unix() - answer.at.unix())) =>
            {
                answer.healthy
            }
            _ => {
                let healthy = match store.check_health().await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "deep health check: the store failed");
                        false
                    }
                };
                if let Ok(mut deep) = self.deep.lock() {
                    *deep = Some(DeepAnswer { at: now, healthy });
                }
                healthy
            }
        };
        if healthy {
            Ok(())
        } else {
            Err(Error::StoreUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;
    use crate::{
        service::ErrorCode,
        store::{MemoryStore, StoreError},
        testing::START,
    };

    /// A store whose health read fails on demand, counting the reads.
    #[derive(Default)]
    struct Flaky {
        memory: MemoryStore,
        failing: AtomicBool,
        reads: AtomicU32,
    }

    impl HealthStore for Flaky {
        async fn check_health(&self) -> Result<(), StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::new("get the health item"));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_deep_check_reads_the_store_once_per_few_seconds_either_way() {
        let store = Flaky::default();
        let health = HealthCheck::new(None);
        let t0 = Timestamp::from_unix(START);
        for s in 0..DEEP_CHECK_CACHE_SECS {
            health.check_store(&store, t0.plus_secs(s)).await.unwrap();
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        store.failing.store(true, Ordering::SeqCst);
        let t1 = t0.plus_secs(DEEP_CHECK_CACHE_SECS);
        for s in 0..DEEP_CHECK_CACHE_SECS {
            let err = health
                .check_store(&store, t1.plus_secs(s))
                .await
                .unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
        store.failing.store(false, Ordering::SeqCst);
        let t2 = t1.plus_secs(DEEP_CHECK_CACHE_SECS);
        health.check_store(&store, t2).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn health_requests_count_per_client() {
        let store = Flaky::default();
        let health = HealthCheck::new(Some(2));
        let now = Timestamp::from_unix(START);
        let a = Some("203.0.113.1".parse().unwrap());
        let b = Some("203.0.113.2".parse().unwrap());
        health.check_client(&store.memory, now, a).await.unwrap();
        health.check_client(&store.memory, now, a).await.unwrap();
        let err = health
            .check_client(&store.memory, now, a)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::RateLimited);
        health.check_client(&store.memory, now, b).await.unwrap();
    }
}
