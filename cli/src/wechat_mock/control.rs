//! The mock's control requests (`/mock/*`, unsigned): pay an order, inject API failures, read
//! the mock's orders, notifications and OAuth settings; and the payer's WeChat client
//! (`/mock/jsapi/pay`, what `getBrandWCPayRequest` does).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use ferrypay::wechat::jsapi::{pay_sign_valid, JsapiPayParams};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    Answer, ExternalRefundControl, OAuthControl, RefundAuto, RefundAutoControl, RefundControl,
    WechatMock,
};

/// Faults a pay control request can ask for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayControl {
    pub out_trade_no: String,
    /// Send the notification (false: the lost-notification case).
    #[serde(default = "yes")]
    pub notify: bool,
    /// Extra copies of the notification, sent after the first.
    #[serde(default)]
    pub duplicates: u32,
    /// Corrupt the signature (still valid base64).
    #[serde(default)]
    pub tamper_signature: bool,
    /// Report this amount in the notification instead of the order's.
    #[serde(default)]
    pub amount: Option<i64>,
    /// Date the notification's signature this many seconds in the past.
    #[serde(default)]
    pub stale_seconds: i64,
}

fn yes() -> bool {
    true
}

/// Makes the next `count` API calls fail with this status and WeChat error code, after
/// `delay_ms`; only calls whose path starts with `path_prefix`, when given (e.g.
/// `/v3/refund`), count. `status` 0: no error, the real answer after the delay (the call is
/// carried out: a client that times out first has lost the answer of a call that happened).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailControl {
    pub count: u32,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// How far a JSAPI `timeStamp` may be from the mock's clock, either way (seconds).
pub const JSAPI_TIMESTAMP_SKEW_SECS: i64 = 300;

impl WechatMock {
    /// `/mock/{path}`: the control requests (answers are plain JSON, unsigned).
    pub(super) async fn control(
        self: &Arc<Self>,
        req: &http::Request<Bytes>,
        path: &str,
    ) -> Answer {
        let json_answer = |status: StatusCode, body: Value| {
            let mut response = http::Response::new(body.to_string());
            *response.status_mut() = status;
            response
        };
        match (req.method(), path) {
            (&Method::POST, "pay") => match serde_json::from_slice::<PayControl>(req.body()) {
                Ok(control) => match self.pay(control).await {
                    Ok(body) => json_answer(StatusCode::OK, body),
                    Err(message) => json_answer(StatusCode::CONFLICT, json!({"error": message})),
                },
                Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            (&Method::POST, "fail") => match serde_json::from_slice::<FailControl>(req.body()) {
                Ok(control) => {
                    self.fail_next(control);
                    json_answer(StatusCode::OK, json!({"ok": true}))
                }
                Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            (&Method::POST, "refund") => {
                match serde_json::from_slice::<RefundControl>(req.body()) {
                    Ok(control) => match self.settle_refund(control).await {
                        Ok(body) => json_answer(StatusCode::OK, body),
                        Err(message) => {
                            json_answer(StatusCode::CONFLICT, json!({"error": message}))
                        }
                    },
                    Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
                }
            }
            (&Method::POST, "refund/external") => {
                match serde_json::from_slice::<ExternalRefundControl>(req.body()) {
                    Ok(control) => match self.refund_externally(control).await {
                        Ok(body) => json_answer(StatusCode::OK, body),
                        Err(message) => {
                            json_answer(StatusCode::CONFLICT, json!({"error": message}))
                        }
                    },
                    Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
                }
            }
            (&Method::POST, "refund/auto") => {
                let auto = serde_json::from_slice::<RefundAutoControl>(req.body())
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        self.set_refund_auto(c.after_ms.map(|ms| RefundAuto {
                            after: Duration::from_millis(ms),
                            status: c.status,
                        }))
                    });
                match auto {
                    Ok(()) => json_answer(StatusCode::OK, json!({"ok": true})),
                    Err(message) => json_answer(StatusCode::BAD_REQUEST, json!({"error": message})),
                }
            }
            (&Method::GET, other) if other.starts_with("refunds/") => {
                match self.refund(other.trim_start_matches("refunds/")) {
                    Some(refund) => json_answer(StatusCode::OK, refund),
                    None => json_answer(StatusCode::NOT_FOUND, json!({"error": "no such refund"})),
                }
            }
            (&Method::POST, "jsapi/pay") => {
                json_answer(StatusCode::OK, self.jsapi_pay_answer(req.body()).await)
            }
            (&Method::GET, "deliveries") => json_answer(StatusCode::OK, json!(self.deliveries())),
            (&Method::POST, "oauth") => match serde_json::from_slice::<OAuthControl>(req.body()) {
                Ok(control) => match self.set_oauth(control) {
                    Ok(settings) => json_answer(StatusCode::OK, settings),
                    Err(message) => json_answer(StatusCode::BAD_REQUEST, json!({"error": message})),
                },
                Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            },
            (&Method::GET, "oauth") => match self.oauth.lock() {
                Ok(oauth) => json_answer(StatusCode::OK, oauth.settings()),
                Err(_) => json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "lock poisoned"}),
                ),
            },
            (&Method::GET, other) if other.starts_with("orders/") => {
                let no = other.trim_start_matches("orders/");
                match self.orders.lock().ok().and_then(|o| o.get(no).cloned()) {
                    Some(order) => json_answer(
                        StatusCode::OK,
                        self.transaction_json(no, &order, order.amount),
                    ),
                    None => json_answer(StatusCode::NOT_FOUND, json!({"error": "no such order"})),
                }
            }
            _ => json_answer(StatusCode::NOT_FOUND, json!({"error": "unknown control"})),
        }
    }

    /// Makes the next API calls fail (after their signature is checked).
    pub fn fail_next(&self, control: FailControl) {
        if let Ok(mut f) = self.failures.lock() {
            *f = Some(control);
        }
    }

    /// The failure `POST /mock/fail` asked for, while its count lasts (one per call of the
    /// paths it names): the delay, and the error answer (`None`: the real one).
    pub(super) fn injected_failure(&self, path: &str) -> Option<(Duration, Option<Answer>)> {
        let mut failures = self.failures.lock().ok()?;
        let fail = failures.as_mut().filter(|f| {
            f.count > 0 && f.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        fail.count -= 1;
        let delay = Duration::from_millis(fail.delay_ms);
        if fail.status == 0 {
            return Some((delay, None));
        }
        let status = StatusCode::from_u16(fail.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = fail.code.clone();
        drop(failures);
        Some((delay, Some(self.error(status, &code, "injected failure"))))
    }

    /// The payer pays: NOTPAY becomes SUCCESS; then the notifications go out. Returns after the
    /// first attempt of each notification (their statuses), retries continue in the background.
    pub async fn pay(self: &Arc<Self>, control: PayControl) -> Result<Value, String> {
        let now = self.clock.now();
        let (order, transaction_id) = {
            let mut orders = self
                .orders
                .lock()
                .map_err(|_| "lock poisoned".to_string())?;
            let order = orders
                .get_mut(&control.out_trade_no)
                .ok_or("no such order")?;
            if order.trade_state != "NOTPAY" {
                return Err(format!("order is {}", order.trade_state));
            }
            if order.time_expire.is_some_and(|t| now >= t) {
                return Err("order expired".into());
            }
            let transaction_id = format!("42000{:023}", self.next());
            order.trade_state = "SUCCESS";
            order.transaction_id = Some(transaction_id.clone());
            order.success_time = Some(now);
            (order.clone(), transaction_id)
        };
        let mut statuses = Vec::new();
        if control.notify {
            let amount = control.amount.unwrap_or(order.amount);
            let plaintext = self
                .transaction_json(&control.out_trade_no, &order, amount)
                .to_string();
            for _ in 0..=control.duplicates {
                let notification = self.notification(
                    ("TRANSACTION.SUCCESS", "支付成功"),
                    "transaction",
                    &plaintext,
                    control.tamper_signature,
                    control.stale_seconds,
                )?;
                let key = (control.out_trade_no.as_str(), None);
                statuses.push(self.deliver(key, &order.notify_url, notification).await);
            }
        }
        Ok(json!({"transaction_id": transaction_id, "first_attempts": statuses}))
    }

    /// `POST /mock/jsapi/pay`: the bridge's answer to a raw request body.
    async fn jsapi_pay_answer(self: &Arc<Self>, body: &[u8]) -> Value {
        let result = match serde_json::from_slice::<JsapiPayParams>(body) {
            Ok(params) => self.jsapi_pay(&params).await,
            Err(e) => Err(format!("not the getBrandWCPayRequest object: {e}")),
        };
        match result {
            Ok(paid) => paid,
            Err(detail) => json!({"err_msg": "get_brand_wcpay_request:fail", "detail": detail}),
        }
    }

    /// The payer confirms a `getBrandWCPayRequest` in WeChat: checks the parameters as WeChat's
    /// client does, then pays the order as [`WechatMock::pay`] does (notification included).
    /// `Ok`: the bridge's `:ok` answer; `Err`: why it failed (nothing was paid).
    pub async fn jsapi_pay(self: &Arc<Self>, params: &JsapiPayParams) -> Result<Value, String> {
        if params.app_id != self.config.appid {
            return Err(format!("appId {:?} is not the mock's appid", params.app_id));
        }
        if params.sign_type != "RSA" {
            return Err(format!("signType {:?} is not RSA", params.sign_type));
        }
        let now = self.clock.now().unix();
        let time_stamp = params
            .time_stamp
            .parse::<i64>()
            .map_err(|_| format!("timeStamp {:?} is not Unix seconds", params.time_stamp))?;
        if (now - time_stamp).abs() > JSAPI_TIMESTAMP_SKEW_SECS {
            return Err(format!(
                "timeStamp {time_stamp} is more than {JSAPI_TIMESTAMP_SKEW_SECS} s from the mock's clock ({now})"
            ));
        }
        if !pay_sign_valid(&self.config.merchant_public_key, params) {
            return Err("paySign does not verify with the merchant's public key".into());
        }
        let prepay_id = params
            .package
            .strip_prefix("prepay_id=")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("package {:?} is not prepay_id=...", params.package))?;
        let out_trade_no = {
            let orders = self
                .orders
                .lock()
                .map_err(|_| "lock poisoned".to_string())?;
            let (no, order) = orders
                .iter()
                .find(|(_, order)| {
                    order.kind == "jsapi"
                        && order.credential.0 == "prepay_id"
                        && order.credential.1 == prepay_id
                })
                .ok_or_else(|| format!("no JSAPI order has prepay_id {prepay_id}"))?;
            if order.trade_state != "NOTPAY" {
                return Err(format!("order {no} is {}", order.trade_state));
            }
            no.clone()
        };
        // pay() checks the state again under its own lock: a concurrent payment fails here.
        let paid = self
            .pay(PayControl {
                out_trade_no: out_trade_no.clone(),
                notify: true,
                ..PayControl::default()
            })
            .await?;
        Ok(json!({
            "err_msg": "get_brand_wcpay_request:ok",
            "out_trade_no": out_trade_no,
            "transaction_id": paid["transaction_id"],
        }))
    }
}
