//! `POST /api/v1/notify/wechat`: WeChat Pay's payment and refund notifications. Answers as WeChat Pay
//! expects: 204 when handled, otherwise a status with `{"code": "FAIL", "message": ...}` (and
//! WeChat Pay retries).

use http::{header, Method, Response, StatusCode};
use serde_json::json;

use super::{ApiRequest, ApiResponse};
use crate::service::{Backends, Ferrypay, NoticeOutcome, NotifyError};

pub const WECHAT_NOTIFY_PATH: &str = "/api/v1/notify/wechat";

pub async fn handle_wechat_notify<B: Backends>(app: &Ferrypay<B>, req: ApiRequest) -> ApiResponse {
    if req.method() != Method::POST {
        return fail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match app
        .handle_channel_notification(req.headers(), req.body())
        .await
    {
        Ok(outcome) => {
            match &outcome {
                NoticeOutcome::Paid { order_no } => {
                    tracing::info!(%order_no, "payment notification handled")
                }
                NoticeOutcome::Ignored { reason } => {
                    tracing::info!(%reason, "notification acknowledged without change")
                }
                NoticeOutcome::Anomaly { order_no } => {
                    tracing::error!(%order_no, anomaly = true, "notification acknowledged as an anomaly")
                }
                NoticeOutcome::Refund { refund_no } => {
                    tracing::info!(%refund_no, "refund notification handled")
                }
                NoticeOutcome::RefundAnomaly { refund_no } => {
                    tracing::error!(%refund_no, anomaly = true, "refund notification acknowledged as an anomaly")
                }
            }
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(err) => {
            if let NotifyError::Retry(cause) = &err {
                cause.log_cause();
            }
            fail(status(&err), &err.to_string())
        }
    }
}

/// The statuses WeChat Pay sees: any non-2xx makes it retry.
fn status(err: &NotifyError) -> StatusCode {
    match err {
        NotifyError::Unverified => StatusCode::UNAUTHORIZED,
        NotifyError::Malformed | NotifyError::WrongMerchant => StatusCode::BAD_REQUEST,
        NotifyError::UnknownOrder => StatusCode::NOT_FOUND,
        NotifyError::Retry(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn fail(status: StatusCode, message: &str) -> ApiResponse {
    let mut response = Response::new(json!({"code": "FAIL", "message": message}).to_string());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
