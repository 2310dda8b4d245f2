//! `GET /api/v1/health`: unauthenticated liveness, `{"status": "ok", "version": ...}`, counted
//! in the client's bucket; `?deep=1` also reads the table (cached for a few seconds, see
//! `service::health`) and adds `"checks": {"table": "ok"}`, or answers 503
//! `store_unavailable`. It shows no setting but the version.

use http::{Method, StatusCode};
use serde::Serialize;

use super::{error_response, json_response, ApiError, ApiRequest, ApiResponse, ClientAddr};
use crate::{
    model::Clock,
    service::health::{HealthCheck, VERSION},
    store::{HealthStore, RateLimitStore},
};

pub const HEALTH_PATH: &str = "/api/v1/health";

/// Whether a path is the health check's (a trailing slash is tolerated).
pub fn is_health_path(path: &str) -> bool {
    path.trim_end_matches('/') == HEALTH_PATH
}

#[derive(Serialize)]
struct HealthAnswer {
    status: &'static str,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<Checks>,
}

#[derive(Serialize)]
struct Checks {
    table: &'static str,
}

/// Serves one health request over `store` (the health function's table, or the dev stack's).
pub async fn handle_health<S: RateLimitStore + HealthStore>(
    store: &S,
    clock: &dyn Clock,
    check: &HealthCheck,
    req: ApiRequest,
) -> ApiResponse {
    let response = answer(store, clock, check, &req).await;
    tracing::info!(
        method = %req.method(),
        path = req.uri().path(),
        status = response.status().as_u16(),
        "health"
    );
    response
}

async fn answer<S: RateLimitStore + HealthStore>(
    store: &S,
    clock: &dyn Clock,
    check: &HealthCheck,
    req: &ApiRequest,
) -> ApiResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error_response(&ApiError::MethodNotAllowed);
    }
    let now = clock.now();
    if let Err(e) = check.check_client(store, now, ClientAddr::of(req)).await {
        return error_response(&ApiError::from(e));
    }
    let checks = if wants_deep(req.uri().query()) {
        if let Err(e) = check.check_store(store, now).await {
            return error_response(&ApiError::from(e));
        }
        Some(Checks { table: "ok" })
    } else {
        None
    };
    let body = HealthAnswer {
        status: "ok",
        version: VERSION,
        checks,
    };
    json_response(StatusCode::OK, &body)
}

/// `deep=1` (or `true`) anywhere in the query.
fn wants_deep(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(name, value)| name == "deep" && matches!(value.as_ref(), "1" | "true"))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{model::ManualClock, store::MemoryStore, testing::START};

    fn get(uri: &str, ip: &str) -> ApiRequest {
        let mut req = http::Request::get(uri).body(Bytes::new()).unwrap();
        ClientAddr::attach(&mut req, ip.parse().unwrap());
        req
    }

    #[tokio::test]
    async fn health_is_ok_deep_health_checks_the_table_and_both_are_limited_per_client() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(crate::model::Timestamp::from_unix(START));
        let check = HealthCheck::new(Some(3));
        let shallow = handle_health(&store, &clock, &check, get(HEALTH_PATH, "203.0.113.9")).await;
        assert_eq!(shallow.status(), StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(shallow.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "ok", "version": VERSION})
        );
        let deep = get(&format!("{HEALTH_PATH}?deep=1"), "203.0.113.9");
        let deep = handle_health(&store, &clock, &check, deep).await;
        assert_eq!(deep.status(), StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(deep.body()).unwrap();
        assert_eq!(body["checks"]["table"], "ok");
        handle_health(&store, &clock, &check, get(HEALTH_PATH, "203.0.113.9")).await;
        let limited = handle_health(&store, &clock, &check, get(HEALTH_PATH, "203.0.113.9")).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().contains_key(http::header::RETRY_AFTER));
        assert!(
            limited.body().contains("rate_limited"),
            "{}",
            limited.body()
        );
        let other = handle_health(&store, &clock, &check, get(HEALTH_PATH, "203.0.113.10")).await;
        assert_eq!(other.status(), StatusCode::OK);
        let post = http::Request::post(HEALTH_PATH).body(Bytes::new()).unwrap();
        let post = handle_health(&store, &clock, &check, post).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(is_health_path("/api/v1/health/"));
    }
}
