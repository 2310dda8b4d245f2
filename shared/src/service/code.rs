//! The one table of stable error codes. Every refusal ferrypay gives, in a JSON answer or on a
//! payer's page, carries exactly one of these; `api` maps a code to an HTTP status and a JSON
//! body, `pages` to a status and Chinese text. Codes never change once published: match on them,
//! not on messages.
//!
//! Renamed when the table was unified (the old names were used by payment-link pages only):
//! `missing_key` → `missing_api_key`, `invalid_key` → `invalid_api_key`, `merchant_disabled` →
//! `product_disabled`, `invalid_parameter` → `invalid_field`, `not_found` → `route_not_found`,
//! `service_unavailable` → `internal_error`.

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    // The request itself.
    InvalidJson,
    InvalidAmount,
    OpenidRequired,
    ClientIpRequired,
    InvalidField,
    MissingField,
    UnknownField,
    DuplicateParameter,
    BodyTooLarge,
    RouteNotFound,
    MethodNotAllowed,
    // Keys and merchants.
    MissingApiKey,
    InvalidApiKey,
    SecretKeyInLink,
    ProductDisabled,
    PermissionDenied,
    RateLimited,
    // Orders.
    OrderNotFound,
    OrderPaid,
    OrderClosed,
    OrderRefunded,
    OrderNotPaid,
    OutTradeNoUsed,
    // Payment links and the cashier.
    SignatureRequired,
    InvalidSignature,
    LinkExpired,
    InvalidReturnUrl,
    ReturnUrlNotAllowed,
    SnapshotUser,
    InvalidTicket,
    TicketExpired,
    GatewayNotConfigured,
    // WeChat and ferrypay itself.
    OauthFailed,
    OauthUnavailable,
    PaymentFailed,
    PaymentUnavailable,
    InternalError,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 37] = {
        use ErrorCode::*;
        [
            InvalidJson,
            InvalidAmount,
            OpenidRequired,
            ClientIpRequired,
            InvalidField,
            MissingField,
            UnknownField,
            DuplicateParameter,
            BodyTooLarge,
            RouteNotFound,
            MethodNotAllowed,
            MissingApiKey,
            InvalidApiKey,
            SecretKeyInLink,
            ProductDisabled,
            PermissionDenied,
            RateLimited,
            OrderNotFound,
            OrderPaid,
            OrderClosed,
            OrderRefunded,
            OrderNotPaid,
            OutTradeNoUsed,
            SignatureRequired,
            InvalidSignature,
            LinkExpired,
            InvalidReturnUrl,
            ReturnUrlNotAllowed,
            SnapshotUser,
            InvalidTicket,
            TicketExpired,
            GatewayNotConfigured,
            OauthFailed,
            OauthUnavailable,
            PaymentFailed,
            PaymentUnavailable,
            InternalError,
        ]
    };

    /// The code as it appears in JSON (`"code"`) and on pages.
    pub const fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidAmount => "invalid_amount",
            OpenidRequired => "openid_required",
            ClientIpRequired => "client_ip_required",
            InvalidField => "invalid_field",
            MissingField => "missing_field",
            UnknownField => "unknown_field",
            DuplicateParameter => "duplicate_parameter",
            BodyTooLarge => "body_too_large",
            RouteNotFound => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            MissingApiKey => "missing_api_key",
            InvalidApiKey => "invalid_api_key",
            SecretKeyInLink => "secret_key_in_link",
            ProductDisabled => "product_disabled",
            PermissionDenied => "permission_denied",
            RateLimited => "rate_limited",
            OrderNotFound => "order_not_found",
            OrderPaid => "order_paid",
            OrderClosed => "order_closed",
            OrderRefunded => "order_refunded",
            OrderNotPaid => "order_not_paid",
            OutTradeNoUsed => "out_trade_no_used",
            SignatureRequired => "signature_required",
            InvalidSignature => "invalid_signature",
            LinkExpired => "link_expired",
            InvalidReturnUrl => "invalid_return_url",
            ReturnUrlNotAllowed => "return_url_not_allowed",
            SnapshotUser => "snapshot_user",
            InvalidTicket => "invalid_ticket",
            TicketExpired => "ticket_expired",
            GatewayNotConfigured => "gateway_not_configured",
            OauthFailed => "oauth_failed",
            OauthUnavailable => "oauth_unavailable",
            PaymentFailed => "payment_failed",
            PaymentUnavailable => "payment_unavailable",
            InternalError => "internal_error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_code_is_listed_once_and_spelled_in_snake_case() {
        let names: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names.len(),
            ErrorCode::ALL.len(),
            "two variants share a code"
        );
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }
}
