//! The order endpoints (and the webhook resend): request parsing, every field validated and
//! named. (The answers' shapes are in `wire`.)

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use super::{params::Params, ApiError};
use crate::{
    model::{
        Attach, ClientIp, Description, Fen, NotifyUrl, Openid, OrderNo, OrderSource, OrderStatus,
        OutTradeNo, PayType,
    },
    service::{CreateOrder, ListOrders, OrderRef},
    store::PageStart,
};

// The field rules live in the model's newtypes; these names stay for callers not yet moved.
pub const EXPIRE_MINUTES: std::ops::RangeInclusive<i64> = 1..=120;
pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;
/// The deepest a page number reaches (`page * per_page`): DynamoDB has no offset, so a page
/// reads every order before it; deeper pages are read by cursor.
pub const MAX_PAGE_DEPTH: u32 = 10_000;

const CREATE_FIELDS: &[&str] = &[
    "amount",
    "description",
    "pay_type",
    "openid",
    "client_ip",
    "out_trade_no",
    "attach",
    "notify_url",
    "expire_minutes",
];
const ORDER_REF_FIELDS: &[&str] = &["order_no", "out_trade_no"];
const LIST_FIELDS: &[&str] = &["status", "page", "per_page", "cursor"];

/// An optional text field through its newtype's `parse`; a broken rule names the field.
pub(super) fn field<T, E>(
    params: &Params,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    match params.text(name)? {
        None => Ok(None),
        Some(value) => parse(&value)
            .map(Some)
            .map_err(|_| ApiError::InvalidField(name)),
    }
}

/// Validates a create request. `allow_http` admits `http://` notify URLs (dev stack only).
pub fn parse_create(params: &Params, allow_http: bool) -> Result<CreateOrder, ApiError> {
    params.only(CREATE_FIELDS)?;
    let amount = match params.integer("amount") {
        Ok(Some(fen)) => Fen::order_amount(fen).ok_or(ApiError::InvalidAmount)?,
        Ok(None) | Err(_) => return Err(ApiError::InvalidAmount),
    };
    let description = field(params, "description", Description::parse)?;
    let pay_type = match params.text("pay_type")? {
        None => PayType::default(),
        Some(t) => PayType::parse(&t).ok_or(ApiError::InvalidField("pay_type"))?,
    };
    let openid = field(params, "openid", Openid::parse)?;
    if pay_type == PayType::Jsapi && openid.is_none() {
        return Err(ApiError::OpenidRequired);
    }
    let client_ip = field(params, "client_ip", ClientIp::parse)?;
    if pay_type == PayType::H5 && client_ip.is_none() {
        return Err(ApiError::ClientIpRequired);
    }
    let out_trade_no = field(params, "out_trade_no", OutTradeNo::parse)?;
    let attach = field(params, "attach", Attach::parse)?;
    let notify_url = field(params, "notify_url", |u| NotifyUrl::parse(u, allow_http))?;
    let expire_minutes = match params.integer("expire_minutes")? {
        None => None,
        Some(m) if EXPIRE_MINUTES.contains(&m) => u32::try_from(m).ok(),
        Some(_) => return Err(ApiError::InvalidField("expire_minutes")),
    };
    Ok(CreateOrder {
        amount,
        description: description.map(Description::into_string),
        pay_type,
        openid: openid.map(Openid::into_string),
        client_ip: client_ip.map(ClientIp::into_string),
        out_trade_no,
        attach: attach.map(Attach::into_string),
        notify_url: notify_url.map(NotifyUrl::into_string),
        expire_minutes,
        source: OrderSource::Api,
    })
}

/// `order_no` or `out_trade_no` (query, close).
pub fn parse_order_ref(params: &Params) -> Result<OrderRef, ApiError> {
    params.only(ORDER_REF_FIELDS)?;
    if let Some(no) = params.text("order_no")? {
        return OrderNo::parse(&no)
            .map(OrderRef::OrderNo)
            .ok_or(ApiError::InvalidField("order_no"));
    }
    if let Some(no) = params.text("out_trade_no")? {
        return OutTradeNo::parse(&no)
            .map(OrderRef::OutTradeNo)
            .map_err(|_| ApiError::InvalidField("out_trade_no"));
    }
    Err(ApiError::MissingField("order_no"))
}

pub fn parse_list(params: &Params) -> Result<ListOrders, ApiError> {
    params.only(LIST_FIELDS)?;
    let status = match params.text("status")? {
        None => None,
        Some(s) => Some(OrderStatus::parse(&s).ok_or(ApiError::InvalidField("status"))?),
    };
    let per_page = match params.integer("per_page")? {
        None => DEFAULT_PER_PAGE,
        Some(n) if (1..=i64::from(MAX_PER_PAGE)).contains(&n) => {
            u32::try_from(n).map_err(|_| ApiError::InvalidField("per_page"))?
        }
        Some(_) => return Err(ApiError::InvalidField("per_page")),
    };
    let page = match params.integer("page")? {
        None => None,
        Some(n) if n >= 1 => {
            let depth = n.saturating_mul(i64::from(per_page));
            if depth > i64::from(MAX_PAGE_DEPTH) {
                return Err(ApiError::PageTooDeep);
            }
            Some(u32::try_from(n).map_err(|_| ApiError::InvalidField("page"))?)
        }
        Some(_) => return Err(ApiError::InvalidField("page")),
    };
    let start = match params.text("cursor")? {
        Some(cursor) => {
            if page.is_some_and(|p| p != 1) {
                // A cursor is a position of its own: a page number with it is ambiguous.
                return Err(ApiError::InvalidField("page"));
            }
            PageStart::After(decode_cursor(&cursor).ok_or(ApiError::InvalidField("cursor"))?)
        }
        None => PageStart::Page(page.unwrap_or(1)),
    };
    Ok(ListOrders {
        status,
        start,
        per_page,
    })
}

/// Cursors are opaque to merchants: `base64url("v1:" + last order number)`. They only name a
/// position; the list is always read from the authenticated merchant's own orders.
pub fn encode_cursor(after: &OrderNo) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{after}"))
}

pub fn decode_cursor(cursor: &str) -> Option<OrderNo> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    OrderNo::parse(text.strip_prefix("v1:")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: &str) -> Result<CreateOrder, ApiError> {
        parse_create(&Params::parse(None, body.as_bytes()).unwrap(), false)
    }

    #[test]
    fn minimal_create_defaults_to_native() {
        let c = create(r#"{"amount": 100}"#).unwrap();
        assert_eq!(c.amount, Fen::new(100));
        assert_eq!(c.pay_type, PayType::Native);
        assert_eq!(c.description, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (r#"{}"#, ApiError::InvalidAmount),
            (r#"{"amount": 0}"#, ApiError::InvalidAmount),
            (r#"{"amount": 100000001}"#, ApiError::InvalidAmount),
            (r#"{"amount": 1.5}"#, ApiError::InvalidAmount),
            (r#"{"amount": "abc"}"#, ApiError::InvalidAmount),
            (
                r#"{"amount": 1, "description": "   "}"#,
                ApiError::InvalidField("description"),
            ),
            (
                r#"{"amount": 1, "pay_type": "app"}"#,
                ApiError::InvalidField("pay_type"),
            ),
            (
                r#"{"amount": 1, "pay_type": "jsapi"}"#,
                ApiError::OpenidRequired,
            ),
            (
                r#"{"amount": 1, "pay_type": "jsapi", "openid": "o p"}"#,
                ApiError::InvalidField("openid"),
            ),
            (
                r#"{"amount": 1, "pay_type": "h5"}"#,
                ApiError::ClientIpRequired,
            ),
            (
                r#"{"amount": 1, "pay_type": "h5", "client_ip": "1.2.3"}"#,
                ApiError::InvalidField("client_ip"),
            ),
            (
                r#"{"amount": 1, "out_trade_no": "a b"}"#,
                ApiError::InvalidField("out_trade_no"),
            ),
            (
                r#"{"amount": 1, "notify_url": "http://shop.example/n"}"#,
                ApiError::InvalidField("notify_url"),
            ),
            (
                r#"{"amount": 1, "notify_url": "https://u:p@shop.example/n"}"#,
                ApiError::InvalidField("notify_url"),
            ),
            (
                r#"{"amount": 1, "notify_url": "ftp://shop.example/n"}"#,
                ApiError::InvalidField("notify_url"),
            ),
            (
                r#"{"amount": 1, "expire_minutes": 0}"#,
                ApiError::InvalidField("expire_minutes"),
            ),
            (
                r#"{"amount": 1, "expire_minutes": 121}"#,
                ApiError::InvalidField("expire_minutes"),
            ),
            (
                r#"{"amount": 1, "attach": 5.5e3, "x": 1}"#,
                ApiError::UnknownField("x".into()),
            ),
            (
                r#"{"amount": 1, "attach": [1]}"#,
                ApiError::InvalidField("attach"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(create(body).unwrap_err(), expected, "{body}");
        }
        let long = format!(r#"{{"amount": 1, "description": "{}"}}"#, "字".repeat(128));
        assert_eq!(
            create(&long).unwrap_err(),
            ApiError::InvalidField("description")
        );
        let ok = format!(r#"{{"amount": 1, "description": "{}"}}"#, "字".repeat(127));
        assert!(create(&ok).is_ok());
    }

    #[test]
    fn a_numeric_out_trade_no_is_its_digits_or_refused() {
        let c = create(r#"{"amount": 1, "out_trade_no": 12345678901234567890}"#).unwrap();
        assert_eq!(
            c.out_trade_no.as_ref().map(OutTradeNo::as_str),
            Some("12345678901234567890")
        );
        for number in ["1e3", "1.5", "-1", "1.0", "1E3"] {
            let body = format!(r#"{{"amount": 1, "out_trade_no": {number}}}"#);
            let err = create(&body).unwrap_err();
            assert_eq!(err, ApiError::InvalidField("out_trade_no"), "{number}");
            assert!(err.body().contains(r#""field":"out_trade_no""#), "{number}");
        }
        let long = format!(r#"{{"amount": 1, "out_trade_no": {}}}"#, "9".repeat(65));
        assert_eq!(
            create(&long).unwrap_err(),
            ApiError::InvalidField("out_trade_no")
        );
        let refs = |body: &str| parse_order_ref(&Params::parse(None, body.as_bytes()).unwrap());
        assert_eq!(
            refs(r#"{"out_trade_no": 12345678901234567890}"#).unwrap(),
            OrderRef::OutTradeNo(OutTradeNo::parse("12345678901234567890").unwrap())
        );
        assert_eq!(
            refs(r#"{"out_trade_no": 1e3}"#).unwrap_err(),
            ApiError::InvalidField("out_trade_no")
        );
    }

    #[test]
    fn pages_reach_ten_thousand_orders_deep_and_point_deeper_requests_to_cursor() {
        let list = |query: &str| parse_list(&Params::parse(Some(query), b"").unwrap());
        for (query, page, per_page) in [
            ("page=100&per_page=100", 100, 100),
            ("page=500", 500, 20),
            ("page=10000&per_page=1", 10_000, 1),
        ] {
            let l = list(query).unwrap();
            assert_eq!(
                (l.start, l.per_page),
                (PageStart::Page(page), per_page),
                "{query}"
            );
        }
        for query in [
            "page=101&per_page=100",
            "page=501",
            "page=10001&per_page=1",
            "page=1000000",
            "page=999999999999999999&per_page=100",
        ] {
            let err = list(query).unwrap_err();
            assert_eq!(err, ApiError::PageTooDeep, "{query}");
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
            assert_eq!(err.code(), crate::service::ErrorCode::InvalidField);
            let body = err.body();
            assert!(body.contains(r#""field":"page""#), "{body}");
            assert!(body.contains("cursor"), "{body}");
        }
        for query in ["page=0", "page=-1", "page=x", "per_page=101"] {
            assert!(
                matches!(list(query), Err(ApiError::InvalidField(_))),
                "{query}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let no = OrderNo::parse("FP20251221103000ABCDEF").unwrap();
        assert_eq!(decode_cursor(&encode_cursor(&no)), Some(no));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(
            decode_cursor(&URL_SAFE_NO_PAD.encode("v2:FP20251221103000ABCDEF")),
            None
        );
    }
}
