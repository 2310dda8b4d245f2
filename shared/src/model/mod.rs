//! The domain: orders, refunds, merchants, money, ids, time. No I/O here.

mod cause;
mod cidr;
mod events;
mod fields;
mod ids;
mod merchant;
mod merchant_secret;
mod money;
mod order;
mod payment_link;
mod refund;
mod secret;
mod time;
mod webhook;

pub use cause::Cause;
pub use cidr::{address_allowed, Cidr, MAX_ALLOWLIST_ENTRIES};
pub use events::{NotifyEvents, WebhookEvent};
pub use fields::{
    check_characters, is_format_char, Attach, ClientIp, Description, FieldError, NotifyUrl, Openid,
    ReturnUrl,
};
pub use ids::{
    random_base62, random_bytes, random_string, MerchantId, OrderNo, OutTradeNo, RandomError,
};
pub use merchant::{KeyHash, KeyKind, Merchant, MerchantStatus, RetiringSecret};
pub use merchant_secret::{MerchantSecret, SecretPurpose, SecretSealed};
pub use money::Fen;
pub use order::{
    Order, OrderSource, OrderStatus, OrderUpdate, PayCredential, PayType, UpdateRefused,
};
pub use payment_link::{normalize_return_host, PaymentLinkSettings, MAX_RETURN_HOSTS};
pub use refund::{
    OutRefundNo, Refund, RefundNo, RefundOutcome, RefundReason, RefundRefused, RefundSettlement,
    RefundSource, RefundStatus, RefundTally, RefundWebhookUpdate, ReserveRefused, MAX_REASON_BYTES,
    MAX_REFUNDS_PER_ORDER, REFUND_WINDOW_DAYS,
};
pub use secret::Secret;
pub use time::{BeijingDateTime, Clock, ManualClock, SystemClock, Timestamp};
pub use webhook::{AttemptResult, WebhookAttempt, WebhookState, WebhookStatus};
