//! WeChat Pay refunds over HTTP: the real APIv3 client (through the payment channel port)
//! against the protocol-faithful mock. Refunds start PROCESSING and end SUCCESS / ABNORMAL /
//! CLOSED by control or by delay; their notifications are verified and decrypted by the real
//! client; repeats are idempotent; injected failures classify as the reference says; refunds
//! made in the merchant platform carry WeChat's own numbers; the order's trade_state becomes
//! REFUND.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ferrypay::{
    channel::{
        ChannelNotice, ChannelRefundState, NoticeError, PayChannel, PrepayRequest, RefundError,
        RefundRequest, TradeState,
    },
    model::{Clock, Fen, OrderNo, PayType, RefundNo, RefundReason, SystemClock, Timestamp},
    testing::TestReceiver,
    wechat::{RetryPolicy, WechatPayClient, WechatPayConfig},
};
use ferrypay_cli::{
    dev::mock_client_config,
    wechat_mock::{FailControl, MockConfig, MockServer, PayControl, RefundAuto, RefundControl},
};
use serde_json::{json, Value};

struct Setup {
    mock: MockServer,
    client: WechatPayClient,
    /// Where the mock sends notifications (the client's notify URL); answers 204.
    inbox: TestReceiver,
    http: reqwest::Client,
}

impl Setup {
    async fn start() -> Setup {
        Self::with(|_| {}, |_| {}).await
    }

    async fn with(
        configure_mock: impl FnOnce(&mut MockConfig),
        configure_client: impl FnOnce(&mut WechatPayConfig),
    ) -> Setup {
        let inbox = TestReceiver::start(204).await;
        let mut config = MockConfig::dev().unwrap();
        config.notify_retry = vec![Duration::from_millis(50)];
        configure_mock(&mut config);
        let mock = MockServer::start(
            "127.0.0.1:0".parse().unwrap(),
            config,
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let mut client_config =
            mock_client_config(mock.base_url(), inbox.url_for("/api/v1/notify/wechat")).unwrap();
        client_config.retry = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(20),
        };
        configure_client(&mut client_config);
        let client = WechatPayClient::connect(client_config, Arc::new(SystemClock))
            .await
            .unwrap();
        Setup {
            mock,
            client,
            inbox,
            http: reqwest::Client::new(),
        }
    }

    /// A native order of `amount`, paid (no payment notification).
    async fn paid_order(&self, no: &str, amount: i64) -> OrderNo {
        let order_no = self.unpaid_order(no, amount).await;
        self.mock
            .mock
            .pay(PayControl {
                out_trade_no: no.into(),
                notify: false,
                ..PayControl::default()
            })
            .await
            .unwrap();
        order_no
    }

    async fn unpaid_order(&self, no: &str, amount: i64) -> OrderNo {
        let order_no = OrderNo::parse(no).unwrap();
        self.client
            .prepay(&PrepayRequest {
                order_no: order_no.clone(),
                amount: Fen::new(amount),
                description: "退款测试".into(),
                pay_type: PayType::Native,
                openid: None,
                client_ip: None,
                expires_at: Timestamp::from_unix(4_102_444_800),
            })
            .await
            .unwrap();
        order_no
    }

    /// A mock control request over HTTP.
    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/mock/{path}", self.mock.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// Every notification received so far, opened by the real client.
    async fn notices(&self) -> Vec<Result<ChannelNotice, NoticeError>> {
        let mut out = Vec::new();
        for request in self.inbox.requests() {
            let mut headers = http::HeaderMap::new();
            for (name, value) in &request.headers {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            out.push(self.client.open_notification(&headers, &request.body).await);
        }
        out
    }

    async fn wait_for_notices(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.inbox.count() < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} notifications"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn request(order_no: &OrderNo, refund_no: &str, amount: i64, total: i64) -> RefundRequest {
    RefundRequest {
        refund_no: RefundNo::parse(refund_no).unwrap(),
        order_no: order_no.clone(),
        amount: Fen::new(amount),
        total: Fen::new(total),
        reason: Some(RefundReason::parse("商品退货").unwrap()),
    }
}

fn rejected_code(result: Result<impl std::fmt::Debug, RefundError>) -> String {
    match result {
        Err(RefundError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refund_is_processing_then_succeeds_by_control_and_is_notified() {
    let s = Setup::start().await;
    let order = s.paid_order("FP20251221103000RFD001", 1000).await;
    let refund = s
        .client
        .refund(&request(&order, "RF20251221103000AAAA01", 300, 1000))
        .await
        .unwrap();
    assert_eq!(refund.state, ChannelRefundState::Processing);
    assert_eq!(refund.out_refund_no, "RF20251221103000AAAA01");
    assert_eq!(refund.out_trade_no, order.as_str());
    assert_eq!(
        (refund.amount, refund.total),
        (Fen::new(300), Fen::new(1000))
    );
    assert!(refund.refund_id.starts_with("50"), "{}", refund.refund_id);
    assert!(s.inbox.count() == 0, "no notification for PROCESSING");
    // Partly refunded: WeChat's trade_state is REFUND; the paid facts stay.
    assert_eq!(s.mock.mock.trade_state(order.as_str()), Some("REFUND"));
    assert!(matches!(
        s.client.query(&order).await.unwrap(),
        TradeState::Refunded { amount, ref transaction_id, .. }
            if amount == Fen::new(1000) && transaction_id.starts_with("42")
    ));
    let queried = s
        .client
        .query_refund("RF20251221103000AAAA01")
        .await
        .unwrap();
    assert_eq!(queried, Some(refund.clone()));

    let (status, settled) = s
        .control(
            "refund",
            json!({"out_refund_no": "RF20251221103000AAAA01", "status": "SUCCESS"}),
        )
        .await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["first_attempts"], json!([204]));
    let Some(done) = s
        .client
        .query_refund("RF20251221103000AAAA01")
        .await
        .unwrap()
    else {
        panic!("refund gone");
    };
    let ChannelRefundState::Succeeded { at } = done.state else {
        panic!("{done:?}");
    };
    assert!((at.unix() - SystemClock.now().unix()).abs() < 10);
    let notices = s.notices().await;
    assert_eq!(notices.len(), 1);
    match &notices[0] {
        Ok(ChannelNotice::Refund(n)) => {
            assert_eq!(n.event_type, "REFUND.SUCCESS");
            assert_eq!(n.refund.out_refund_no, "RF20251221103000AAAA01");
            assert_eq!(n.refund.refund_id, refund.refund_id);
            assert_eq!(n.refund.amount, Fen::new(300));
            assert_eq!(n.refund.state, ChannelRefundState::Succeeded { at });
            assert_eq!(n.refund.payer_refund, Some(Fen::new(300)));
        }
        other => panic!("{other:?}"),
    }
    // Final: another control is refused.
    let (status, _) = s
        .control(
            "refund",
            json!({"out_refund_no": "RF20251221103000AAAA01", "status": "CLOSED"}),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_refund_settles_by_itself_after_the_configured_delay() {
    let s = Setup::with(
        |m| {
            m.refund_auto = Some(RefundAuto {
                after: Duration::from_millis(200),
                status: "SUCCESS".into(),
            })
        },
        |_| {},
    )
    .await;
    let order = s.paid_order("FP20251221103000RFD002", 500).await;
    let refund = s
        .client
        .refund(&request(&order, "RF20251221103000AAAA02", 500, 500))
        .await
        .unwrap();
    assert_eq!(refund.state, ChannelRefundState::Processing);
    s.wait_for_notices(1).await;
    assert!(matches!(
        s.client
            .query_refund("RF20251221103000AAAA02")
            .await
            .unwrap()
            .unwrap()
            .state,
        ChannelRefundState::Succeeded { .. }
    ));
    assert!(
        matches!(&s.notices().await[0], Ok(ChannelNotice::Refund(n)) if n.event_type == "REFUND.SUCCESS")
    );
    // Fully refunded: REFUND, with the payment's facts.
    assert!(matches!(
        s.client.query(&order).await.unwrap(),
        TradeState::Refunded { amount, .. } if amount == Fen::new(500)
    ));
    // Switched to ABNORMAL by control; then off.
    let (status, _) = s
        .control("refund/auto", json!({"after_ms": 50, "status": "ABNORMAL"}))
        .await;
    assert_eq!(status, 200);
    let other = s.paid_order("FP20251221103000RFD022", 500).await;
    s.client
        .refund(&request(&other, "RF20251221103000AAAA22", 100, 500))
        .await
        .unwrap();
    s.wait_for_notices(2).await;
    assert!(
        matches!(&s.notices().await[1], Ok(ChannelNotice::Refund(n)) if n.refund.state == ChannelRefundState::Abnormal)
    );
    s.control("refund/auto", json!({"after_ms": null})).await;
    s.client
        .refund(&request(&other, "RF20251221103000AAAA23", 100, 500))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.inbox.count(), 2, "off: no more settling");
}

#[tokio::test]
async fn abnormal_and_closed_refunds_are_notified_and_closed_gives_the_amount_back() {
    let s = Setup::start().await;
    let order = s.paid_order("FP20251221103000RFD003", 100).await;
    s.client
        .refund(&request(&order, "RF20251221103000AAAA03", 60, 100))
        .await
        .unwrap();
    s.client
        .refund(&request(&order, "RF20251221103000AAAA04", 40, 100))
        .await
        .unwrap();
    // Nothing left (processing refunds count).
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&order, "RF20251221103000AAAA05", 1, 100))
                .await
        ),
        "INVALID_REQUEST"
    );
    let abnormal = RefundControl {
        out_refund_no: "RF20251221103000AAAA03".into(),
        status: "ABNORMAL".into(),
        notify: true,
        duplicates: 0,
        tamper_signature: false,
        stale_seconds: 0,
    };
    s.mock.mock.settle_refund(abnormal.clone()).await.unwrap();
    let (status, _) = s
        .control(
            "refund",
            json!({"out_refund_no": "RF20251221103000AAAA04", "status": "CLOSED"}),
        )
        .await;
    assert_eq!(status, 200);
    let states: Vec<(String, ChannelRefundState)> = s
        .notices()
        .await
        .into_iter()
        .map(|n| match n {
            Ok(ChannelNotice::Refund(n)) => (n.event_type, n.refund.state),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        states,
        [
            ("REFUND.ABNORMAL".to_string(), ChannelRefundState::Abnormal),
            ("REFUND.CLOSED".to_string(), ChannelRefundState::Closed),
        ]
    );
    // CLOSED gave its 40 back; ABNORMAL's 60 stays out (the money left the merchant).
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&order, "RF20251221103000AAAA05", 41, 100))
                .await
        ),
        "INVALID_REQUEST"
    );
    s.client
        .refund(&request(&order, "RF20251221103000AAAA05", 40, 100))
        .await
        .unwrap();
    // An operator resolves the abnormal one: it may still succeed.
    let resolved = RefundControl {
        status: "SUCCESS".into(),
        ..abnormal
    };
    s.mock.mock.settle_refund(resolved).await.unwrap();
    assert!(matches!(
        s.client
            .query_refund("RF20251221103000AAAA03")
            .await
            .unwrap()
            .unwrap()
            .state,
        ChannelRefundState::Succeeded { .. }
    ));
}

#[tokio::test]
async fn repeats_are_idempotent_and_wechats_checks_refuse_what_they_refuse() {
    let s = Setup::start().await;
    let order = s.paid_order("FP20251221103000RFD006", 1000).await;
    let ask = request(&order, "RF20251221103000AAAA06", 100, 1000);
    let first = s.client.refund(&ask).await.unwrap();
    let again = s.client.refund(&ask).await.unwrap();
    assert_eq!(
        again, first,
        "the same number and parameters: the same refund"
    );
    // The same number with another amount.
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&order, "RF20251221103000AAAA06", 101, 1000))
                .await
        ),
        "INVALID_REQUEST"
    );
    // The total must be the order's.
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&order, "RF20251221103000AAAA07", 1, 999))
                .await
        ),
        "INVALID_REQUEST"
    );
    // More than the rest.
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&order, "RF20251221103000AAAA07", 901, 1000))
                .await
        ),
        "INVALID_REQUEST"
    );
    // Unpaid and unknown orders.
    let unpaid = s.unpaid_order("FP20251221103000RFD008", 100).await;
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&unpaid, "RF20251221103000AAAA08", 1, 100))
                .await
        ),
        "RESOURCE_NOT_EXISTS"
    );
    let unknown = OrderNo::parse("FP20251221103000NOSUCH").unwrap();
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&unknown, "RF20251221103000AAAA08", 1, 100))
                .await
        ),
        "RESOURCE_NOT_EXISTS"
    );
    // A query of a refund never made is an answer, not an error.
    assert_eq!(
        s.client
            .query_refund("RF20251221103000AAAA08")
            .await
            .unwrap(),
        None
    );
    // The 50-refund limit.
    let many = s.paid_order("FP20251221103000RFD009", 100).await;
    for i in 0..50 {
        s.client
            .refund(&request(&many, &format!("RF20251221103000M{i:05}"), 1, 100))
            .await
            .unwrap();
    }
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&many, "RF20251221103000M00050", 1, 100))
                .await
        ),
        "INVALID_REQUEST"
    );
}

#[tokio::test]
async fn a_minute_between_refunds_of_one_order_is_rate_limited_as_unavailable() {
    let s = Setup::with(|m| m.refund_min_interval = Duration::from_secs(60), |_| {}).await;
    let order = s.paid_order("FP20251221103000RFD010", 100).await;
    s.client
        .refund(&request(&order, "RF20251221103000AAAA10", 10, 100))
        .await
        .unwrap();
    let before = s.mock.mock.calls();
    assert!(matches!(
        s.client
            .refund(&request(&order, "RF20251221103000AAAA11", 10, 100))
            .await,
        Err(RefundError::Unavailable(_))
    ));
    assert_eq!(
        s.mock.mock.calls() - before,
        3,
        "429 is retried, then unavailable"
    );
    // The identical repeat of the first is no new refund: still answered.
    s.client
        .refund(&request(&order, "RF20251221103000AAAA10", 10, 100))
        .await
        .unwrap();
}

#[tokio::test]
async fn injected_failures_classify_as_the_reference_says() {
    let s = Setup::with(
        |_| {},
        |c| {
            c.timeout = Duration::from_millis(300);
            c.retry.attempts = 1;
        },
    )
    .await;
    let order = s.paid_order("FP20251221103000RFD012", 1000).await;
    let refunds_fail = |count, status: u16, code: &str, delay_ms| FailControl {
        count,
        status,
        code: code.into(),
        delay_ms,
        path_prefix: Some("/v3/refund".into()),
    };

    // A timeout after WeChat Pay made the refund: unavailable, and the refund exists.
    let (status, _) = s
        .control(
            "fail",
            json!({"count": 1, "status": 0, "delay_ms": 1000, "path_prefix": "/v3/refund"}),
        )
        .await;
    assert_eq!(status, 200);
    let ask = request(&order, "RF20251221103000AAAA12", 100, 1000);
    assert!(matches!(
        s.client.refund(&ask).await,
        Err(RefundError::Unavailable(_))
    ));
    let made = s
        .client
        .query_refund("RF20251221103000AAAA12")
        .await
        .unwrap();
    assert_eq!(made.map(|r| r.state), Some(ChannelRefundState::Processing));
    // The identical request again adopts it.
    assert_eq!(
        s.client.refund(&ask).await.unwrap().out_refund_no,
        "RF20251221103000AAAA12"
    );

    // A timeout before anything happened (an error answered late): unavailable, nothing made.
    s.mock
        .mock
        .fail_next(refunds_fail(1, 500, "SYSTEM_ERROR", 1000));
    let ask = request(&order, "RF20251221103000AAAA13", 100, 1000);
    assert!(matches!(
        s.client.refund(&ask).await,
        Err(RefundError::Unavailable(_))
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        s.client
            .query_refund("RF20251221103000AAAA13")
            .await
            .unwrap(),
        None
    );

    for (status, code, class) in [
        (500, "SYSTEM_ERROR", "unavailable"),
        (503, "", "unavailable"),
        (429, "FREQUENCY_LIMITED", "unavailable"),
        (403, "NOT_ENOUGH", "declined"),
        (403, "USER_ACCOUNT_ABNORMAL", "declined"),
        (400, "PARAM_ERROR", "rejected"),
        (403, "NO_AUTH", "rejected"),
        (404, "MCH_NOT_EXISTS", "rejected"),
    ] {
        s.mock.mock.fail_next(refunds_fail(1, status, code, 0));
        let got = s.client.refund(&ask).await;
        let ok = match (&got, class) {
            (Err(RefundError::Unavailable(_)), "unavailable") => true,
            (Err(RefundError::Declined { code: c, .. }), "declined") => c == code,
            (Err(RefundError::Rejected { code: c, .. }), "rejected") => c == code,
            _ => false,
        };
        assert!(ok, "{status} {code}: expected {class}, got {got:?}");
    }
    // None of them made the refund; the failures were for refunds only.
    assert_eq!(
        s.client
            .query_refund("RF20251221103000AAAA13")
            .await
            .unwrap(),
        None
    );
    s.mock
        .mock
        .fail_next(refunds_fail(1, 500, "SYSTEM_ERROR", 0));
    assert!(s.client.query(&order).await.is_ok(), "payments unaffected");
    assert!(matches!(
        s.client.query_refund("RF20251221103000AAAA13").await,
        Err(RefundError::Unavailable(_))
    ));
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_identical_request() {
    let s = Setup::start().await;
    let order = s.paid_order("FP20251221103000RFD014", 1000).await;
    s.mock.mock.fail_next(FailControl {
        count: 2,
        status: 500,
        code: "SYSTEM_ERROR".into(),
        path_prefix: Some("/v3/refund".into()),
        ..FailControl::default()
    });
    let before = s.mock.mock.calls();
    let refund = s
        .client
        .refund(&request(&order, "RF20251221103000AAAA14", 100, 1000))
        .await
        .unwrap();
    assert_eq!(
        s.mock.mock.calls() - before,
        3,
        "two failures, then the refund"
    );
    assert_eq!(refund.state, ChannelRefundState::Processing);
    s.mock.mock.fail_next(FailControl {
        count: 5,
        status: 403,
        code: "NOT_ENOUGH".into(),
        path_prefix: Some("/v3/refund".into()),
        ..FailControl::default()
    });
    let before = s.mock.mock.calls();
    assert!(matches!(
        s.client
            .refund(&request(&order, "RF20251221103000AAAA15", 100, 1000))
            .await,
        Err(RefundError::Declined { .. })
    ));
    assert_eq!(
        s.mock.mock.calls() - before,
        1,
        "a stated outcome is not retried"
    );
    s.mock.mock.fail_next(FailControl::default());
}

#[tokio::test]
async fn a_refund_made_in_the_merchant_platform_carries_wechats_number() {
    let s = Setup::start().await;
    let order = s.paid_order("FP20251221103000RFD016", 800).await;
    let (status, made) = s
        .control(
            "refund/external",
            json!({"out_trade_no": order.as_str(), "amount": 800}),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["first_attempts"], json!([204]));
    let out_refund_no = made["refund"]["out_refund_no"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(RefundNo::parse(&out_refund_no).is_none(), "{out_refund_no}");
    let notices = s.notices().await;
    let Ok(ChannelNotice::Refund(n)) = &notices[0] else {
        panic!("{notices:?}");
    };
    assert_eq!(n.refund.out_refund_no, out_refund_no);
    assert_eq!(n.refund.out_trade_no, order.as_str());
    assert_eq!(n.refund.amount, Fen::new(800));
    assert!(matches!(
        n.refund.state,
        ChannelRefundState::Succeeded { .. }
    ));
    let queried = s
        .client
        .query_refund(&out_refund_no)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queried.state, n.refund.state);
    assert!(matches!(
        s.client.query(&order).await.unwrap(),
        TradeState::Refunded { .. }
    ));
    // Nothing is left to refund through the API.
    assert_eq!(
        rejected_code(
            s.client
                .refund(&request(&order, "RF20251221103000AAAA16", 1, 800))
                .await
        ),
        "INVALID_REQUEST"
    );
    let (status, _) = s
        .control(
            "refund/external",
            json!({"out_trade_no": order.as_str(), "amount": 1}),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn tampered_and_stale_refund_notifications_fail_verification_and_duplicates_are_equal() {
    let s = Setup::start().await;
    let order = s.paid_order("FP20251221103000RFD017", 100).await;
    for no in [
        "RF20251221103000AAAA17",
        "RF20251221103000AAAA18",
        "RF20251221103000AAAA19",
    ] {
        s.client
            .refund(&request(&order, no, 10, 100))
            .await
            .unwrap();
    }
    s.control(
        "refund",
        json!({"out_refund_no": "RF20251221103000AAAA17", "status": "SUCCESS", "tamper_signature": true}),
    )
    .await;
    s.control(
        "refund",
        json!({"out_refund_no": "RF20251221103000AAAA18", "status": "SUCCESS", "stale_seconds": 400}),
    )
    .await;
    s.control(
        "refund",
        json!({"out_refund_no": "RF20251221103000AAAA19", "status": "CLOSED", "duplicates": 1}),
    )
    .await;
    let notices = s.notices().await;
    assert_eq!(notices.len(), 4, "{notices:?}");
    assert!(matches!(notices[0], Err(NoticeError::Unverified(_))));
    assert!(matches!(notices[1], Err(NoticeError::Unverified(_))));
    assert!(
        matches!(&notices[2], Ok(ChannelNotice::Refund(n)) if n.refund.state == ChannelRefundState::Closed)
    );
    assert_eq!(notices[2], notices[3], "a duplicate says the same");
    let deliveries = s.mock.mock.deliveries();
    assert!(
        deliveries
            .iter()
            .all(|d| d.out_refund_no.is_some() && d.out_trade_no == order.as_str()),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn the_dev_stack_verifies_and_acknowledges_refund_notifications() {
    use ferrypay::{model::Secret, service::NewMerchant};
    use ferrypay_cli::dev::DevStack;
    const SK: &str = "sk_test_wechat_refunds";
    let options = crate::harness::dev_options(NewMerchant {
        name: "Refund Shop".into(),
        secret_key: Some(Secret::new(SK.into())),
        ..NewMerchant::default()
    });
    let stack = DevStack::start(options).await.unwrap();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/v1/pay/create", stack.base_url()))
        .header("X-API-Key", SK)
        .json(&json!({"amount": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let no = created["order_no"].as_str().unwrap().to_string();
    let mock = &stack.mock.as_ref().unwrap().mock;
    let paid = mock
        .pay(PayControl {
            out_trade_no: no.clone(),
            notify: true,
            ..PayControl::default()
        })
        .await
        .unwrap();
    assert_eq!(paid["first_attempts"], json!([204]));
    // A refund made in the merchant platform: its notification passes the real callback's
    // checks (signature, decryption with associated data `refund`, mchid) and is acknowledged
    // (the refund use cases are not wired in yet), so WeChat Pay does not retry it.
    let made = mock
        .refund_externally(ferrypay_cli::wechat_mock::ExternalRefundControl {
            out_trade_no: no.clone(),
            amount: 100,
            status: "SUCCESS".into(),
            notify: true,
        })
        .await
        .unwrap();
    assert_eq!(made["first_attempts"], json!([204]));
    assert_eq!(mock.trade_state(&no), Some("REFUND"));
}

#[tokio::test]
async fn a_payment_older_than_365_days_cannot_be_refunded() {
    use ferrypay::model::ManualClock;
    // One clock for both sides, so signatures stay within WeChat's 5 minutes as a year passes.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix(1_766_284_200)));
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig::dev().unwrap(),
        clock.clone(),
    )
    .await
    .unwrap();
    let config = mock_client_config(mock.base_url(), "http://127.0.0.1:9/notify".into()).unwrap();
    let client = WechatPayClient::connect(config, clock.clone())
        .await
        .unwrap();
    let order = OrderNo::parse("FP20251221103000RFD030").unwrap();
    client
        .prepay(&PrepayRequest {
            order_no: order.clone(),
            amount: Fen::new(100),
            description: "old".into(),
            pay_type: PayType::Native,
            openid: None,
            client_ip: None,
            expires_at: Timestamp::from_unix(4_102_444_800),
        })
        .await
        .unwrap();
    mock.mock
        .pay(PayControl {
            out_trade_no: order.as_str().into(),
            ..PayControl::default()
        })
        .await
        .unwrap();
    clock.advance(365 * 86_400);
    client
        .refund(&request(&order, "RF20251221103000AAAA30", 10, 100))
        .await
        .unwrap();
    clock.advance(1);
    assert_eq!(
        rejected_code(
            client
                .refund(&request(&order, "RF20251221103000AAAA31", 10, 100))
                .await
        ),
        "INVALID_REQUEST"
    );
    // Queries have no age limit.
    assert!(client
        .query_refund("RF20251221103000AAAA30")
        .await
        .unwrap()
        .is_some());
}
