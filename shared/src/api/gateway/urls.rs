//! The URLs the gateway hands out: a link's canonical URL (the OAuth `redirect_uri`, and the QR
//! outside WeChat), WeChat's authorization URL, the cashier and status URLs of a ticket, and
//! the way back to the merchant.

use url::Url;

use super::{CASHIER_PATH, GATEWAY_PATH, STATUS_PATH};
use crate::{
    model::OrderNo,
    service::gateway::{CashierTicket, Gateway, LinkQuery, OAuth},
    wechat::oauth::{authorize_url, encode_component, AuthorizeUrlError},
};

/// The link's canonical public URL: its parameters and signature, nothing else.
pub fn link_url<O: OAuth>(gateway: &Gateway<O>, link: &LinkQuery) -> String {
    let mut pairs: Vec<String> = link
        .params
        .iter()
        .map(|(name, value)| format!("{name}={}", encode_component(value)))
        .collect();
    if let Some(sign) = &link.sign {
        pairs.push(format!("sign={}", encode_component(sign)));
    }
    format!("{}{GATEWAY_PATH}?{}", gateway.public_url(), pairs.join("&"))
}

/// Where the payer's browser goes to authorize, coming back to `link_url` with `state`.
pub fn authorization_url<O: OAuth>(
    gateway: &Gateway<O>,
    link_url: &str,
    state: &str,
) -> Result<String, AuthorizeUrlError> {
    authorize_url(gateway.oauth_config(), link_url, state)
}

/// The ticket's query string: `order_no=..[&return_url=..]&t=..`.
fn ticket_query(ticket: &CashierTicket) -> String {
    match &ticket.return_url {
        Some(url) => format!(
            "order_no={}&return_url={}&t={}",
            ticket.order_no,
            encode_component(url.as_str()),
            ticket.token
        ),
        None => format!("order_no={}&t={}", ticket.order_no, ticket.token),
    }
}

pub fn cashier_url<O: OAuth>(gateway: &Gateway<O>, ticket: &CashierTicket) -> String {
    format!(
        "{}{CASHIER_PATH}?{}",
        gateway.public_url(),
        ticket_query(ticket)
    )
}

pub fn status_url<O: OAuth>(gateway: &Gateway<O>, ticket: &CashierTicket) -> String {
    format!(
        "{}{STATUS_PATH}?{}",
        gateway.public_url(),
        ticket_query(ticket)
    )
}

/// `return_url` with `order_no` and `status` (`success` or `fail`) added to its query. The
/// merchant must still confirm the payment (webhook or query): this is the payer's way back,
/// not a proof.
pub fn return_to(return_url: &Url, order_no: &OrderNo, paid: bool) -> String {
    let mut url = return_url.clone();
    url.query_pairs_mut()
        .append_pair("order_no", order_no.as_str())
        .append_pair("status", if paid { "success" } else { "fail" });
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_way_back_keeps_the_merchants_query_and_fragment() {
        let no = OrderNo::parse("FP20251221103000ABC123").unwrap();
        let url = Url::parse("https://m.example/r?cart=7&x=a%20b#top").unwrap();
        assert_eq!(
            return_to(&url, &no, true),
            "https://m.example/r?cart=7&x=a%20b&order_no=FP20251221103000ABC123&status=success#top"
        );
        let bare = Url::parse("https://m.example").unwrap();
        assert_eq!(
            return_to(&bare, &no, false),
            "https://m.example/?order_no=FP20251221103000ABC123&status=fail"
        );
    }
}
