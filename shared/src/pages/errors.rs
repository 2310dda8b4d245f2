//! What a payer reads for each stable code: the page's HTTP status, its title and its sentence,
//! in Chinese. The codes are the one table (`service::ErrorCode`); JSON answers map the same
//! codes in `api`. A page's status can differ from the JSON one for the same code (a link with
//! an unknown key is a missing page, 404, where a merchant's unknown key is 401).

use http::StatusCode;

use crate::service::ErrorCode;

/// An error page's words and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorText {
    pub status: StatusCode,
    pub title: &'static str,
    pub text: String,
}

/// The page for `code`; `field` names the parameter where the code is about one.
pub fn error_text(code: ErrorCode, field: Option<&str>) -> ErrorText {
    use ErrorCode::*;
    let field = field.unwrap_or("");
    let (status, title, text) = match code {
        DuplicateParameter => (
            StatusCode::BAD_REQUEST,
            "链接无效",
            format!("链接中的参数 {field} 出现了不止一次。请从商户处重新获取付款链接。"),
        ),
        MissingApiKey => (
            StatusCode::BAD_REQUEST,
            "链接无效",
            "链接缺少商户公钥（key）。请从商户处重新获取付款链接。".into(),
        ),
        SecretKeyInLink => (
            StatusCode::BAD_REQUEST,
            "链接不安全，已拒绝",
            "这个付款链接里包含商户的私密密钥（sk_ 开头），看到链接的人都能冒用商户身份。\
             请商户立即更换密钥，并在付款链接中改用公开密钥（pk_ 开头）。"
                .into(),
        ),
        InvalidApiKey => (
            StatusCode::NOT_FOUND,
            "商户不存在",
            "找不到此链接对应的商户，链接可能已失效。".into(),
        ),
        ProductDisabled => (
            StatusCode::FORBIDDEN,
            "商户暂停收款",
            "该商户目前无法收款。".into(),
        ),
        SignatureRequired => (
            StatusCode::FORBIDDEN,
            "链接未签名",
            "该商户只接受带签名的付款链接。请从商户处重新获取付款链接。".into(),
        ),
        InvalidSignature => (
            StatusCode::FORBIDDEN,
            "链接已被修改",
            "付款链接的签名与内容不符，金额或其他参数可能被改动过，已拒绝付款。\
             请从商户处重新获取付款链接。"
                .into(),
        ),
        LinkExpired => (
            StatusCode::GONE,
            "链接已过期",
            "此付款链接已过期。请从商户处重新获取。".into(),
        ),
        InvalidAmount => (
            StatusCode::BAD_REQUEST,
            "金额无效",
            "付款金额（amount）须是 1 到 100000000 之间的整数，单位为分。".into(),
        ),
        InvalidField => (
            StatusCode::BAD_REQUEST,
            "链接无效",
            format!("链接中的参数 {field} 无效。"),
        ),
        InvalidReturnUrl => (
            StatusCode::BAD_REQUEST,
            "返回地址无效",
            "返回地址（return_url）须是完整的 http 或 https 网址。".into(),
        ),
        ReturnUrlNotAllowed => (
            StatusCode::BAD_REQUEST,
            "返回地址不被允许",
            "返回地址（return_url）不在商户登记的网站范围内。为防止付款后被带到冒充的网站，已拒绝此链接。"
                .into(),
        ),
        SnapshotUser => (
            StatusCode::OK,
            "请打开完整页面",
            "当前是预览模式，无法付款。请点击屏幕下方的“使用完整服务”后再付款。".into(),
        ),
        InvalidTicket => (
            StatusCode::FORBIDDEN,
            "收银台链接无效",
            "此收银台链接不完整或已被改动。请重新打开商户的付款链接。".into(),
        ),
        TicketExpired => (
            StatusCode::GONE,
            "收银台已过期",
            "此订单的收银台已过期。请重新打开商户的付款链接。".into(),
        ),
        OauthFailed => (
            StatusCode::BAD_GATEWAY,
            "微信授权未成功",
            "多次授权都没有成功。请关闭页面，稍后重新打开付款链接。".into(),
        ),
        OauthUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "微信授权暂不可用",
            "暂时无法获取微信授权，请稍后重试。".into(),
        ),
        RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            "请求过于频繁",
            "请稍等片刻再试。".into(),
        ),
        PaymentUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "支付服务暂不可用",
            "暂时无法发起支付，请稍后重试。".into(),
        ),
        PaymentFailed => (
            StatusCode::BAD_GATEWAY,
            "支付服务暂不可用",
            "暂时无法发起支付，请稍后重试。".into(),
        ),
        OrderNotFound => (
            StatusCode::NOT_FOUND,
            "订单不存在",
            "找不到此订单。".into(),
        ),
        MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "请求方式不支持",
            "请直接打开付款链接。".into(),
        ),
        RouteNotFound => (
            StatusCode::NOT_FOUND,
            "页面不存在",
            "请检查付款链接是否完整。".into(),
        ),
        GatewayNotConfigured => (
            StatusCode::SERVICE_UNAVAILABLE,
            "付款链接未启用",
            "jump-pay needs WeChat OAuth: set WECHAT_OAUTH_SECRET (and WECHAT_OPEN_BASE_URL, \
             WECHAT_API_BASE_URL for another endpoint) or run with the built-in mock."
                .into(),
        ),
        // What a payer's page never shows but a merchant's request can: the same status as the
        // JSON answer, and a plain "something went wrong".
        InvalidJson | OpenidRequired | ClientIpRequired | MissingField | UnknownField => {
            generic(StatusCode::BAD_REQUEST)
        }
        BodyTooLarge => generic(StatusCode::PAYLOAD_TOO_LARGE),
        PermissionDenied | IpNotAllowed => generic(StatusCode::FORBIDDEN),
        OrderPaid | OrderClosed | OrderRefunded | OrderNotPaid | OutTradeNoUsed
        | RefundExceedsRefundable | OutRefundNoUsed | RefundNotAllowed => {
            generic(StatusCode::CONFLICT)
        }
        RefundNotFound => generic(StatusCode::NOT_FOUND),
        StoreUnavailable => generic(StatusCode::SERVICE_UNAVAILABLE),
        InternalError => generic(StatusCode::INTERNAL_SERVER_ERROR),
    };
    ErrorText {
        status,
        title,
        text,
    }
}

fn generic(status: StatusCode) -> (StatusCode, &'static str, String) {
    (status, "出错了", "请稍后重试。".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_page_in_chinese() {
        for &code in ErrorCode::ALL {
            let page = error_text(code, Some("attach"));
            assert!(!page.title.is_empty() && !page.text.is_empty(), "{code}");
            assert!(
                page.status.is_success() || page.status.as_u16() >= 400,
                "{code}"
            );
        }
    }

    #[test]
    fn a_fields_page_names_the_field() {
        let page = error_text(ErrorCode::InvalidField, Some("description"));
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert_eq!(page.text, "链接中的参数 description 无效。");
        let page = error_text(ErrorCode::DuplicateParameter, Some("amount"));
        assert!(
            page.text.contains("参数 amount 出现了不止一次"),
            "{}",
            page.text
        );
    }

    #[test]
    fn link_pages_keep_their_statuses() {
        for (code, status) in [
            (ErrorCode::MissingApiKey, 400),
            (ErrorCode::InvalidApiKey, 404),
            (ErrorCode::ProductDisabled, 403),
            (ErrorCode::InvalidSignature, 403),
            (ErrorCode::LinkExpired, 410),
            (ErrorCode::InvalidTicket, 403),
            (ErrorCode::TicketExpired, 410),
            (ErrorCode::OauthFailed, 502),
            (ErrorCode::OauthUnavailable, 503),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::PaymentFailed, 502),
            (ErrorCode::PaymentUnavailable, 503),
        ] {
            assert_eq!(error_text(code, None).status.as_u16(), status, "{code}");
        }
    }
}
