//! Lambda `inbound-callback`: WeChat Pay's payment notifications (`POST /api/v1/notify/wechat`).
//! Verify, then decrypt, then check, then the conditional `pending -> paid` write and the
//! merchant-webhook job; 204 when done, `{"code":"FAIL"}` with a 4xx/5xx otherwise (WeChat Pay
//! retries). Wiring only: the services are built once per cold start.

use ferrypay_lambda::{serve, Route};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Route::WechatNotify).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{
        model::{ManualClock, MerchantId, Order, OrderNo, OrderStatus, Timestamp},
        queue::MemoryQueue,
        service::ServiceConfig,
        store::{prelude::*, MemoryStore},
        wechat::{PrivateKey, RetryPolicy, VerifyingKey, WechatPayClient, WechatPayConfig},
    };
    use serde_json::Value;

    use ferrypay::service::{Backends, Ferrypay};
    use ferrypay_lambda::Route;

    const EVENT: &str = include_str!("../../../events/inbound-callback.json");
    /// The event's `Wechatpay-Timestamp` (2025-12-21 10:31:00 Beijing).
    const EVENT_TIME: i64 = 1_766_284_260;

    struct Wired;
    impl Backends for Wired {
        type Store = MemoryStore;
        type Channel = WechatPayClient;
        type Queue = MemoryQueue;
    }

    /// The real WeChat Pay client in public-key mode with the dev (public test) keys (the event
    /// was signed with the matching platform key), its clock at `clock_at`, and the event's
    /// order stored with `amount`.
    async fn app(clock_at: i64, amount: i64) -> Ferrypay<Wired> {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix(clock_at)));
        let config = WechatPayConfig {
            base_url: "http://127.0.0.1:9".into(),
            mchid: "1900000109".into(),
            appid: "wxd678efh567hg6787".into(),
            merchant_serial: "5F1C72E2A8931B72A2E13AF8DEE92471EB397115".into(),
            private_key: PrivateKey::from_pem(include_str!(
                "../../../shared/tests/fixtures/wechatpay/java_merchant_private_key.pem"
            ))
            .unwrap(),
            apiv3_key: "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".parse().unwrap(),
            public_key: Some((
                "PUB_KEY_ID_0114232134912410000000000000".into(),
                VerifyingKey::from_spki_pem(include_str!(
                    "../../../shared/tests/fixtures/wechatpay/java_wechat_pay_public_key.pem"
                ))
                .unwrap(),
            )),
            notify_url: "https://pay.example.com/api/v1/notify/wechat".into(),
            retry: RetryPolicy::default(),
            timeout: WechatPayConfig::DEFAULT_TIMEOUT,
            connect_timeout: WechatPayConfig::DEFAULT_CONNECT_TIMEOUT,
        };
        let channel = WechatPayClient::connect(config, clock.clone())
            .await
            .unwrap();
        let store = MemoryStore::new();
        store.insert_order(&order(amount)).await.unwrap();
        Ferrypay::with_clock(
            store,
            channel,
            MemoryQueue::default(),
            ServiceConfig::default(),
            clock,
        )
    }

    fn order(amount: i64) -> Order {
        ferrypay::testing::pending_order(
            OrderNo::parse("FP20251221103000EVT001").unwrap(),
            MerchantId::new("mch_event"),
            amount,
            Timestamp::from_unix(ferrypay::testing::START),
        )
    }

    async fn run_event(app: &Ferrypay<Wired>, event: &str) -> (u16, String) {
        ferrypay_lambda::run_event(app, Route::WechatNotify, event)
            .await
            .unwrap()
    }

    fn order_no() -> OrderNo {
        OrderNo::parse("FP20251221103000EVT001").unwrap()
    }

    #[tokio::test]
    async fn the_notification_event_marks_the_order_paid_once() {
        let app = app(EVENT_TIME + 5, 100).await;
        let (status, body) = run_event(&app, EVENT).await;
        assert_eq!(status, 204, "{body}");
        let order = app.store.get_order(&order_no()).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(
            order.transaction_id.as_deref(),
            Some("4200002968202512214265581234")
        );
        let paid_at = order.paid_at.map(Timestamp::to_beijing_string);
        assert_eq!(paid_at.as_deref(), Some("2025-12-21 10:30:58"));
        assert_eq!(app.queue.len(), 1);
        // WeChat Pay's retry of the same notification: 204 again, nothing new.
        let (status, _) = run_event(&app, EVENT).await;
        assert_eq!(status, 204);
        assert_eq!(app.queue.len(), 1);
    }

    #[tokio::test]
    async fn a_tampered_body_is_refused_before_anything_is_read() {
        let app = app(EVENT_TIME, 100).await;
        let mut event: Value = serde_json::from_str(EVENT).unwrap();
        let body = event["body"]
            .as_str()
            .unwrap()
            .replacen("支付成功", "支付成攻", 1);
        event["body"] = Value::String(body);
        let (status, body) = run_event(&app, &event.to_string()).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("\"FAIL\""), "{body}");
        let order = app.store.get_order(&order_no()).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        assert!(app.queue.is_empty());
    }

    #[tokio::test]
    async fn an_event_older_than_300_seconds_is_refused() {
        let app = app(EVENT_TIME + 301, 100).await;
        let (status, _) = run_event(&app, EVENT).await;
        assert_eq!(status, 401);
        assert!(app.queue.is_empty());
    }

    #[tokio::test]
    async fn an_event_for_an_order_of_another_amount_is_acknowledged_but_not_paid() {
        let app = app(EVENT_TIME, 999).await;
        let (status, _) = run_event(&app, EVENT).await;
        assert_eq!(status, 204);
        let order = app.store.get_order(&order_no()).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        assert!(app.queue.is_empty());
    }
}
