//! Lambda `health`: `GET /api/v1/health` behind API Gateway (HTTP API, payload v2).
//! Unauthenticated liveness; `?deep=1` also reads the table (cached for a few seconds). Wiring
//! only: the table and the health check are built once per cold start (no WeChat Pay, no
//! queue, no secret); all logic is in `ferrypay`.

use ferrypay_lambda::serve_health;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_health().await
}

#[cfg(test)]
mod tests {
    use ferrypay::{
        model::{ManualClock, Timestamp},
        service::health::{HealthCheck, VERSION},
        store::MemoryStore,
        testing::START,
    };
    use ferrypay_lambda::run_health_event;

    const HEALTH: &str = include_str!("../../../events/health.json");

    /// The event from another client address (API Gateway's `sourceIp`).
    fn from(ip: &str) -> String {
        let mut event: serde_json::Value = serde_json::from_str(HEALTH).unwrap();
        event["requestContext"]["http"]["sourceIp"] = ip.into();
        event.to_string()
    }

    #[tokio::test]
    async fn health_event_checks_the_table_and_limits_each_client() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(Timestamp::from_unix(START));
        let check = HealthCheck::new(Some(2));
        let answer = run_health_event(&store, &clock, &check, HEALTH)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.json().unwrap(),
            serde_json::json!({"status": "ok", "version": VERSION, "checks": {"table": "ok"}})
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        run_health_event(&store, &clock, &check, HEALTH)
            .await
            .unwrap();
        let limited = run_health_event(&store, &clock, &check, HEALTH)
            .await
            .unwrap();
        assert_eq!(limited.status, 429, "{}", limited.body);
        assert_eq!(limited.json().unwrap()["code"], "rate_limited");
        assert!(limited.header("retry-after").is_some());
        // Another client (the same X-Forwarded-For header: it never counts) is fine.
        let other = run_health_event(&store, &clock, &check, &from("198.51.100.31"))
            .await
            .unwrap();
        assert_eq!(other.status, 200, "{}", other.body);
    }
}
