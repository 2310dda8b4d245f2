//! The one table of stable error codes. Every refusal ferrypay gives, in a JSON answer or on a
//! payer's page, carries exactly one of these; `api` maps a code to an HTTP status and a JSON
//! body, `pages` to a status and Chinese text. Codes never change once published: match on them,
//! not on messages.
//!
//! Renamed when the table was unified (the old names were used by payment-link pages only):
//! `missing_key` → `missing_api_key`, `invalid_key` → `invalid_api_key`, `merchant_disabled` →
//! `product_disabled`, `invalid_parameter` → `invalid_field`, `not_found` → `route_not_found`,
//! `service_unavailable` → `internal_error`.

/// Declares [`ErrorCode`], its [`ErrorCode::ALL`] list and [`ErrorCode::as_str`] from one table,
/// so a code cannot be added to one and forgotten in another.
macro_rules! error_codes {
    ($($variant:ident => $code:literal,)+) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it appears in JSON (`"code"`) and on pages.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
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
    // Keys and merchants.
    MissingApiKey => "missing_api_key",
    InvalidApiKey => "invalid_api_key",
    SecretKeyInLink => "secret_key_in_link",
    ProductDisabled => "product_disabled",
    PermissionDenied => "permission_denied",
    IpNotAllowed => "ip_not_allowed",
    RateLimited => "rate_limited",
    // Orders.
    OrderNotFound => "order_not_found",
    OrderPaid => "order_paid",
    OrderClosed => "order_closed",
    OrderRefunded => "order_refunded",
    OrderNotPaid => "order_not_paid",
    OutTradeNoUsed => "out_trade_no_used",
    // Refunds.
    RefundNotFound => "refund_not_found",
    RefundExceedsRefundable => "refund_exceeds_refundable",
    OutRefundNoUsed => "out_refund_no_used",
    RefundNotAllowed => "refund_not_allowed",
    // Payment links and the cashier.
    SignatureRequired => "signature_required",
    InvalidSignature => "invalid_signature",
    LinkExpired => "link_expired",
    InvalidReturnUrl => "invalid_return_url",
    ReturnUrlNotAllowed => "return_url_not_allowed",
    SnapshotUser => "snapshot_user",
    InvalidTicket => "invalid_ticket",
    TicketExpired => "ticket_expired",
    GatewayNotConfigured => "gateway_not_configured",
    // WeChat and ferrypay itself.
    OauthFailed => "oauth_failed",
    OauthUnavailable => "oauth_unavailable",
    PaymentFailed => "payment_failed",
    PaymentUnavailable => "payment_unavailable",
    StoreUnavailable => "store_unavailable",
    InternalError => "internal_error",
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

    const README: &str = include_str!("../../../README.md");

    /// The backticked codes in column `column` (0-based) of the README table under `header`.
    fn readme_codes(header: &str, column: usize) -> BTreeSet<&'static str> {
        let start = README.find(header).expect(header);
        README[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|line| {
                let cell = line.split('|').nth(column + 1).unwrap_or_default();
                cell.split('`').skip(1).step_by(2)
            })
            .collect()
    }

    #[test]
    fn the_readme_error_tables_list_exactly_the_codes() {
        let api = readme_codes("| HTTP | error | code | when |", 2);
        let pages = readme_codes("| HTTP | code | when |", 1);
        assert!(!api.is_empty() && !pages.is_empty(), "tables not found");
        let documented: BTreeSet<&str> = api.union(&pages).copied().collect();
        let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            documented.difference(&codes).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "in the README but not in ErrorCode"
        );
        assert_eq!(
            codes.difference(&documented).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "in ErrorCode but not in the README"
        );
    }
}
