//! Domestic refunds (境内退款), direct-merchant mode: `POST /v3/refund/domestic/refunds`,
//! `GET /v3/refund/domestic/refunds/{out_refund_no}`, the Refund object, the decrypted
//! `REFUND.*` notification resource, and how WeChat Pay's error answers are classified.
//!
//! The calls are signed and their answers verified exactly as the payment calls
//! (`WechatPayClient::call`). A failed call is retried by the client with backoff only when
//! it is transient (network, 5xx, 429, `SYSTEM_ERROR`, `FREQUENCY_LIMITED`): the *identical*
//! body again, which WeChat Pay's idempotency on `out_refund_no` makes safe ("同一退款单号多次请求
//! 只退一笔"). After that, [`classify`] says what the failure means:
//!
//! | class | what | codes / statuses |
//! | --- | --- | --- |
//! | [`RefundErrorClass::Unavailable`] | ambiguous: the refund may or may not exist; retry the identical request later, or query | network errors and timeouts, any 5xx, 429, 202, `SYSTEM_ERROR`, `FREQUENCY_LIMITED`, `BANK_ERROR`, an answer that fails verification or cannot be read |
//! | [`RefundErrorClass::Declined`] | a stated outcome: the refund was refused and no money moved | `NOT_ENOUGH` (merchant balance), `USER_ACCOUNT_ABNORMAL` (payer's account closed) |
//! | [`RefundErrorClass::Rejected`] | our request is wrong (or not allowed): fix it, never retry it as is | `PARAM_ERROR`, `INVALID_REQUEST` (amount over the refundable rest, over 1 year, over 50 refunds, a reused `out_refund_no` with other parameters), `SIGN_ERROR`, `NO_AUTH`, `MCH_NOT_EXISTS`, `RESOURCE_NOT_EXISTS` (order unknown or unpaid), any other 4xx |
//!
//! Sources: the refund error table (HTTP status, code, official remedy) and the retry-safety
//! notes of the refunds reference, §1.5, and its status meanings, §1.4; the general status
//! semantics (202, 429, 5xx) of the APIv3 reference, §7. On the query, `RESOURCE_NOT_EXISTS`
//! means the refund was never created (§1.2), which is an answer, not an error.

use http::Method;
use serde::{Deserialize, Serialize};

use super::client::{CallError, ClientError, WechatPayClient};
use crate::model::{Cause, Timestamp};

pub const REFUNDS_PATH: &str = "/v3/refund/domestic/refunds";

/// The body of `POST /v3/refund/domestic/refunds`: exactly one of `out_trade_no` /
/// `transaction_id` is sent (always `out_trade_no`: our order number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundApply {
    /// Our order number.
    pub out_trade_no: String,
    /// Our refund number: the key of WeChat Pay's idempotency.
    pub out_refund_no: String,
    /// Shown to the payer; at most 80 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the `REFUND.*` notifications go (the payments' notify URL).
    pub notify_url: String,
    pub amount: RefundApplyAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundApplyAmount {
    /// Fen to give back.
    pub refund: i64,
    /// The original order's total, not what is left of it.
    pub total: i64,
    /// Always `CNY`.
    pub currency: &'static str,
}

/// A refund's status as WeChat Pay reports it. Any other value is an error, never a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WxRefundStatus {
    Success,
    Closed,
    Processing,
    Abnormal,
}

impl WxRefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WxRefundStatus::Success => "SUCCESS",
            WxRefundStatus::Closed => "CLOSED",
            WxRefundStatus::Processing => "PROCESSING",
            WxRefundStatus::Abnormal => "ABNORMAL",
        }
    }
}

/// Where a refund is, with its success time when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WxRefundState {
    Processing,
    Success { at: Timestamp },
    Closed,
    Abnormal,
}

/// A refund, read strictly from a Refund object (create and query answers) or a decrypted
/// refund notification: ids present, a known status, a success time when `SUCCESS`, sane
/// amounts (fen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WxRefund {
    pub refund_id: String,
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub transaction_id: Option<String>,
    /// Only in notifications (the Refund object has none).
    pub mchid: Option<String>,
    pub state: WxRefundState,
    /// `amount.refund`.
    pub refund: i64,
    /// `amount.total`: the order's total.
    pub total: i64,
    pub payer_total: Option<i64>,
    pub payer_refund: Option<i64>,
}

/// A Refund object or refund resource that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed refund: {0}")]
pub struct RefundParseError(pub String);

/// The wire shape both the Refund object (`status`) and the notification resource
/// (`refund_status`) share. Unknown fields are ignored (WeChat Pay adds fields).
#[derive(Debug, Deserialize)]
struct WireRefund {
    refund_id: String,
    out_refund_no: String,
    out_trade_no: String,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    mchid: Option<String>,
    #[serde(default)]
    status: Option<WxRefundStatus>,
    #[serde(default)]
    refund_status: Option<WxRefundStatus>,
    #[serde(default)]
    success_time: Option<String>,
    amount: WireAmount,
}

#[derive(Debug, Deserialize)]
struct WireAmount {
    refund: i64,
    total: i64,
    #[serde(default)]
    payer_total: Option<i64>,
    #[serde(default)]
    payer_refund: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
}

/// Which field carries the status.
#[derive(Debug, Clone, Copy)]
enum StatusField {
    Status,
    RefundStatus,
}

fn parse(body: &[u8], field: StatusField) -> Result<WxRefund, RefundParseError> {
    let bad = |what: String| RefundParseError(what);
    let wire: WireRefund = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let status = match field {
        StatusField::Status => wire.status,
        StatusField::RefundStatus => wire.refund_status,
    }
    .ok_or_else(|| {
        bad(match field {
            StatusField::Status => "missing status".into(),
            StatusField::RefundStatus => "missing refund_status".into(),
        })
    })?;
    for (name, value) in [
        ("refund_id", &wire.refund_id),
        ("out_refund_no", &wire.out_refund_no),
        ("out_trade_no", &wire.out_trade_no),
    ] {
        if value.trim().is_empty() {
            return Err(bad(format!("empty {name}")));
        }
    }
    let a = &wire.amount;
    if a.refund <= 0 || a.total <= 0 || a.refund > a.total {
        return Err(bad(format!(
            "amount refund {} of total {}",
            a.refund, a.total
        )));
    }
    if [a.payer_total, a.payer_refund]
        .into_iter()
        .flatten()
        .any(|v| v < 0)
    {
        return Err(bad("negative payer amount".into()));
    }
    if a.currency.as_deref().is_some_and(|c| c != "CNY") {
        return Err(bad(format!("currency {:?}", a.currency)));
    }
    let state = match status {
        WxRefundStatus::Processing => WxRefundState::Processing,
        WxRefundStatus::Closed => WxRefundState::Closed,
        WxRefundStatus::Abnormal => WxRefundState::Abnormal,
        WxRefundStatus::Success => {
            let at = wire
                .success_time
                .as_deref()
                .ok_or_else(|| bad("SUCCESS without success_time".into()))?;
            WxRefundState::Success {
                at: Timestamp::parse_rfc3339(at)
                    .ok_or_else(|| bad(format!("success_time {at:?}")))?,
            }
        }
    };
    Ok(WxRefund {
        refund_id: wire.refund_id,
        out_refund_no: wire.out_refund_no,
        out_trade_no: wire.out_trade_no,
        transaction_id: wire.transaction_id.filter(|t| !t.is_empty()),
        mchid: wire.mchid,
        state,
        refund: a.refund,
        total: a.total,
        payer_total: a.payer_total,
        payer_refund: a.payer_refund,
    })
}

/// Reads a Refund object (the answer of create and query), field `status`.
pub fn parse_refund(body: &[u8]) -> Result<WxRefund, RefundParseError> {
    parse(body, StatusField::Status)
}

/// Reads a decrypted `REFUND.*` notification resource, field `refund_status`.
pub fn parse_refund_notification(plaintext: &[u8]) -> Result<WxRefund, RefundParseError> {
    parse(plaintext, StatusField::RefundStatus)
}

/// The status a `REFUND.*` event type announces (`REFUND.SUCCESS` -> `SUCCESS`, ...), or
/// `None` for any other event type. There is no notification for `PROCESSING`.
pub fn refund_event_status(event_type: &str) -> Option<WxRefundStatus> {
    match event_type {
        "REFUND.SUCCESS" => Some(WxRefundStatus::Success),
        "REFUND.ABNORMAL" => Some(WxRefundStatus::Abnormal),
        "REFUND.CLOSED" => Some(WxRefundStatus::Closed),
        _ => None,
    }
}

/// What a failed refund call means (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundErrorClass {
    Unavailable,
    Declined,
    Rejected,
}

/// Classifies WeChat Pay's error answer (HTTP status and `code`) to a refund call.
pub fn classify(status: u16, code: &str) -> RefundErrorClass {
    let code = code.to_ascii_uppercase();
    if status >= 500
        || status == 429
        || status == 202
        || matches!(
            code.as_str(),
            "SYSTEM_ERROR"
                | "SYSTEMERROR"
                | "FREQUENCY_LIMITED"
                | "RATELIMIT_EXCEEDED"
                | "BANK_ERROR"
                | "SERVICE_UNAVAILABLE"
        )
    {
        return RefundErrorClass::Unavailable;
    }
    match code.as_str() {
        "NOT_ENOUGH" | "NOTENOUGH" | "USER_ACCOUNT_ABNORMAL" => RefundErrorClass::Declined,
        _ => RefundErrorClass::Rejected,
    }
}

/// A refund call that did not give a refund.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundCallError {
    /// Ambiguous: retry the identical request later (or query first).
    #[error("WeChat Pay unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// WeChat Pay stated the refund failed; no money moved.
    #[error("WeChat Pay declined the refund: {code}: {message}")]
    Declined { code: String, message: String },
    /// Our request is wrong or not allowed.
    #[error("WeChat Pay refused the refund request: {code}: {message}")]
    Rejected { code: String, message: String },
}

impl From<CallError> for RefundCallError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Wechat {
                status,
                code,
                message,
            } => match classify(status, &code) {
                RefundErrorClass::Unavailable => {
                    RefundCallError::Unavailable(Cause::new(format!("{status} {code}: {message}")))
                }
                RefundErrorClass::Declined => RefundCallError::Declined { code, message },
                RefundErrorClass::Rejected => RefundCallError::Rejected { code, message },
            },
            CallError::Channel(ClientError::Unavailable(cause)) => {
                RefundCallError::Unavailable(cause)
            }
            CallError::Channel(ClientError::Rejected { code, message }) => {
                RefundCallError::Rejected { code, message }
            }
        }
    }
}

/// WeChat Pay's charset for `out_refund_no`: 1..=64 of `[0-9A-Za-z_-|*@]`.
pub fn out_refund_no_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'|' | b'*' | b'@'))
}

/// The query path of a refund number, everything but `[0-9A-Za-z_-]` percent-encoded (the
/// signature covers the path as sent).
pub fn refund_query_path(out_refund_no: &str) -> String {
    let mut path = format!("{REFUNDS_PATH}/");
    for c in out_refund_no.bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-') {
            path.push(char::from(c));
        } else {
            path.push_str(&format!("%{c:02X}"));
        }
    }
    path
}

fn unreadable(e: RefundParseError) -> RefundCallError {
    // A 2xx that cannot be read may still have made the refund: ambiguous.
    RefundCallError::Unavailable(Cause::with_source("unreadable refund answer", e))
}

impl WechatPayClient {
    /// The notify URL refunds are created with (the one payments use).
    pub fn notify_url(&self) -> &str {
        &self.notify_url
    }

    /// `POST /v3/refund/domestic/refunds`. A 200 means WeChat Pay accepted the refund, not
    /// that the money moved: the answer is usually `PROCESSING`.
    pub async fn create_refund(&self, apply: &RefundApply) -> Result<WxRefund, RefundCallError> {
        let body = serde_json::to_value(apply).map_err(|e| {
            RefundCallError::Unavailable(Cause::with_source("refund request body", e))
        })?;
        let verified = self.call(Method::POST, REFUNDS_PATH, Some(&body)).await?;
        parse_refund(&verified.body).map_err(unreadable)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`; `Ok(None)` when WeChat Pay has no
    /// such refund (`RESOURCE_NOT_EXISTS`: it was never created).
    pub async fn query_refund_no(
        &self,
        out_refund_no: &str,
    ) -> Result<Option<WxRefund>, RefundCallError> {
        if !out_refund_no_valid(out_refund_no) {
            return Err(RefundCallError::Rejected {
                code: "PARAM_ERROR".into(),
                message: format!("{out_refund_no:?} is not an out_refund_no (checked locally)"),
            });
        }
        let path = refund_query_path(out_refund_no);
        match self.call(Method::GET, &path, None).await {
            Ok(verified) => parse_refund(&verified.body).map(Some).map_err(unreadable),
            Err(CallError::Wechat { status, code, .. })
                if status < 500 && code == "RESOURCE_NOT_EXISTS" =>
            {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The create answer captured from real traffic (refunds reference §1.3).
    const REAL_CREATE: &str = r#"{"amount":{"currency":"CNY","discount_refund":0,"from":[],"payer_refund":1,"payer_total":1,"refund":1,
 "settlement_refund":1,"settlement_total":1,"total":1},"channel":"ORIGINAL","create_time":"2022-06-20T19:06:36+08:00",
 "funds_account":"AVAILABLE","out_refund_no":"R202207063668479227002100","out_trade_no":"P202205155977315528002100",
 "promotion_detail":[],"refund_id":"50301802252022062021833667769","status":"PROCESSING",
 "transaction_id":"4200001521202206207964248014","user_received_account":"支付用户零钱"}"#;

    /// The decrypted REFUND.SUCCESS resource captured from real traffic (§1.8).
    const REAL_NOTICE: &str = r#"{"mchid":"1623831039","out_trade_no":"P202211233042122753002100","transaction_id":"4200001417202206214219765470",
 "out_refund_no":"R202211252676008994002100","refund_id":"50300002272022062121864292533","refund_status":"SUCCESS",
 "success_time":"2022-06-21T11:25:33+08:00","amount":{"total":1,"refund":1,"payer_total":1,"payer_refund":1},
 "user_received_account":"支付用户零钱"}"#;

    fn with_status(status: &str, success_time: Option<&str>) -> String {
        let mut v: Value = serde_json::from_str(REAL_CREATE).unwrap();
        v["status"] = Value::String(status.into());
        if let Some(t) = success_time {
            v["success_time"] = Value::String(t.into());
        }
        v.to_string()
    }

    #[test]
    fn the_real_create_answer_reads_as_processing() {
        let refund = parse_refund(REAL_CREATE.as_bytes()).unwrap();
        assert_eq!(refund.refund_id, "50301802252022062021833667769");
        assert_eq!(refund.out_refund_no, "R202207063668479227002100");
        assert_eq!(refund.out_trade_no, "P202205155977315528002100");
        assert_eq!(
            refund.transaction_id.as_deref(),
            Some("4200001521202206207964248014")
        );
        assert_eq!(refund.state, WxRefundState::Processing);
        assert_eq!((refund.refund, refund.total), (1, 1));
        assert_eq!(
            (refund.payer_total, refund.payer_refund),
            (Some(1), Some(1))
        );
        assert_eq!(refund.mchid, None);
    }

    #[test]
    fn every_status_reads_and_success_needs_its_time() {
        let at = "2022-06-21T11:25:33+08:00";
        let read = |s: &str, t| parse_refund(with_status(s, t).as_bytes());
        assert_eq!(
            read("SUCCESS", Some(at)).unwrap().state,
            WxRefundState::Success {
                at: Timestamp::parse_rfc3339(at).unwrap()
            }
        );
        assert_eq!(read("CLOSED", None).unwrap().state, WxRefundState::Closed);
        assert_eq!(
            read("ABNORMAL", None).unwrap().state,
            WxRefundState::Abnormal
        );
        assert_eq!(
            read("PROCESSING", Some(at)).unwrap().state,
            WxRefundState::Processing
        );
        assert!(read("SUCCESS", None).is_err(), "no success_time");
        assert!(read("SUCCESS", Some("yesterday")).is_err());
        for unknown in ["REFUNDED", "success", "", "FAIL"] {
            assert!(read(unknown, None).is_err(), "{unknown}");
        }
    }

    #[test]
    fn malformed_refunds_are_errors() {
        let mutate = |f: &dyn Fn(&mut Value)| {
            let mut v: Value = serde_json::from_str(REAL_CREATE).unwrap();
            f(&mut v);
            parse_refund(v.to_string().as_bytes())
        };
        assert!(parse_refund(b"not json").is_err());
        assert!(parse_refund(b"{}").is_err());
        assert!(mutate(&|v| v["refund_id"] = "".into()).is_err());
        assert!(mutate(&|v| {
            v.as_object_mut().unwrap().remove("out_refund_no");
        })
        .is_err());
        assert!(mutate(&|v| {
            v.as_object_mut().unwrap().remove("status");
        })
        .is_err());
        assert!(mutate(&|v| v["amount"]["refund"] = 0.into()).is_err());
        assert!(
            mutate(&|v| v["amount"]["refund"] = 2.into()).is_err(),
            "over total"
        );
        assert!(mutate(&|v| v["amount"]["refund"] = "1".into()).is_err());
        assert!(mutate(&|v| v["amount"]["refund"] = 1.5.into()).is_err());
        assert!(mutate(&|v| v["amount"]["payer_refund"] = (-1).into()).is_err());
        assert!(mutate(&|v| v["amount"]["currency"] = "USD".into()).is_err());
        // unknown fields are fine
        assert!(mutate(&|v| v["refund_fee"] = 0.into()).is_ok());
        // the Refund object's field is `status`; `refund_status` alone is not one
        assert!(parse_refund(REAL_NOTICE.as_bytes()).is_err());
    }

    #[test]
    fn the_real_notification_resource_reads() {
        let refund = parse_refund_notification(REAL_NOTICE.as_bytes()).unwrap();
        assert_eq!(refund.mchid.as_deref(), Some("1623831039"));
        assert_eq!(refund.out_refund_no, "R202211252676008994002100");
        assert_eq!(refund.refund_id, "50300002272022062121864292533");
        assert!(matches!(refund.state, WxRefundState::Success { .. }));
        assert_eq!(refund.payer_refund, Some(1));
        let unknown = REAL_NOTICE.replace("\"SUCCESS\"", "\"DONE\"");
        assert!(parse_refund_notification(unknown.as_bytes()).is_err());
        assert_eq!(
            refund_event_status("REFUND.ABNORMAL"),
            Some(WxRefundStatus::Abnormal)
        );
        assert_eq!(
            refund_event_status("REFUND.CLOSED"),
            Some(WxRefundStatus::Closed)
        );
        assert_eq!(refund_event_status("TRANSACTION.SUCCESS"), None);
    }

    #[test]
    fn errors_are_classified_per_the_reference() {
        use RefundErrorClass::*;
        for (status, code, class) in [
            (500, "SYSTEM_ERROR", Unavailable),
            (503, "", Unavailable),
            (502, "ANYTHING", Unavailable),
            (429, "FREQUENCY_LIMITED", Unavailable),
            (429, "", Unavailable),
            (202, "", Unavailable),
            (400, "SYSTEM_ERROR", Unavailable),
            (400, "BANK_ERROR", Unavailable),
            (403, "NOT_ENOUGH", Declined),
            (403, "not_enough", Declined),
            (403, "USER_ACCOUNT_ABNORMAL", Declined),
            (403, "NO_AUTH", Rejected),
            (400, "PARAM_ERROR", Rejected),
            (400, "INVALID_REQUEST", Rejected),
            (401, "SIGN_ERROR", Rejected),
            (404, "MCH_NOT_EXISTS", Rejected),
            (404, "RESOURCE_NOT_EXISTS", Rejected),
            (400, "SOMETHING_NEW", Rejected),
        ] {
            assert_eq!(classify(status, code), class, "{status} {code}");
        }
        let err = |status, code: &str| {
            RefundCallError::from(CallError::Wechat {
                status,
                code: code.into(),
                message: "m".into(),
            })
        };
        assert!(matches!(
            err(500, "SYSTEM_ERROR"),
            RefundCallError::Unavailable(_)
        ));
        assert_eq!(
            err(403, "NOT_ENOUGH"),
            RefundCallError::Declined {
                code: "NOT_ENOUGH".into(),
                message: "m".into()
            }
        );
        assert!(matches!(
            err(400, "INVALID_REQUEST"),
            RefundCallError::Rejected { .. }
        ));
        assert!(matches!(
            RefundCallError::from(CallError::Channel(ClientError::Unavailable(
                "timeout".into()
            ))),
            RefundCallError::Unavailable(_)
        ));
    }

    #[test]
    fn the_request_body_has_the_documented_shape() {
        let apply = RefundApply {
            out_trade_no: "FP20251221103000ABC123".into(),
            out_refund_no: "RF20251221103000XYZ789".into(),
            reason: None,
            notify_url: "https://pay.example.com/api/v1/notify/wechat".into(),
            amount: RefundApplyAmount {
                refund: 30,
                total: 100,
                currency: "CNY",
            },
        };
        assert_eq!(
            serde_json::to_value(&apply).unwrap(),
            serde_json::json!({"out_trade_no": "FP20251221103000ABC123",
                "out_refund_no": "RF20251221103000XYZ789",
                "notify_url": "https://pay.example.com/api/v1/notify/wechat",
                "amount": {"refund": 30, "total": 100, "currency": "CNY"}})
        );
        let with_reason = RefundApply {
            reason: Some("退货".into()),
            ..apply
        };
        assert_eq!(
            serde_json::to_value(&with_reason).unwrap()["reason"],
            "退货"
        );
    }

    #[test]
    fn query_paths_escape_what_is_not_plain() {
        assert_eq!(
            refund_query_path("RF20251221103000XYZ789"),
            "/v3/refund/domestic/refunds/RF20251221103000XYZ789"
        );
        assert_eq!(
            refund_query_path("R-1_a|b*c@d"),
            "/v3/refund/domestic/refunds/R-1_a%7Cb%2Ac%40d"
        );
        assert!(out_refund_no_valid("R-1_a|b*c@d"));
        for bad in ["", "a/b", "a b", "退", &"9".repeat(65)] {
            assert!(!out_refund_no_valid(bad), "{bad}");
        }
    }
}
