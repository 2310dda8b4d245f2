//! The cashier ticket's token `t`: `{expiry, unix time, 10 digits}{MAC, 32 hex}`, the MAC over
//! the order number, the return URL (as written in the ticket) and the expiry. It admits one
//! order's cashier page and status, nothing else, until it expires.

use aws_lc_rs::hmac;

use super::{constant_time_eq, derived_key, short_mac, SHORT_MAC_HEX_LEN};
use crate::model::{OrderNo, Timestamp};

/// The 10-digit expiry in front of the MAC.
const EXPIRY_LEN: usize = 10;

/// The key of cashier tickets, derived from the official account's OAuth secret.
pub struct TicketKey(pub(super) hmac::Key);

impl TicketKey {
    pub fn derive(oauth_secret: &[u8]) -> TicketKey {
        TicketKey(derived_key(
            oauth_secret,
            "ferrypay/gateway/cashier-ticket/v1",
        ))
    }
}

/// The token `t` for `order_no` and `return_url`, good until `expires`.
pub fn ticket_token(
    key: &TicketKey,
    order_no: &OrderNo,
    return_url: Option<&str>,
    expires: Timestamp,
) -> String {
    format!(
        "{:010}{}",
        expires.unix(),
        ticket_mac(key, order_no, return_url, expires)
    )
}

/// The expiry a token carries, if its MAC matches `order_no` and `return_url` (not checked
/// against any clock: the caller says what expired means).
pub fn ticket_expiry(
    key: &TicketKey,
    order_no: &OrderNo,
    return_url: Option<&str>,
    token: &str,
) -> Option<Timestamp> {
    if token.len() != EXPIRY_LEN + SHORT_MAC_HEX_LEN || !token.is_ascii() {
        return None;
    }
    let (expires, mac) = token.split_at(EXPIRY_LEN);
    let expires = Timestamp::from_unix(expires.parse().ok()?);
    let expected = ticket_mac(key, order_no, return_url, expires);
    constant_time_eq(expected.as_bytes(), mac.as_bytes()).then_some(expires)
}

fn ticket_mac(
    key: &TicketKey,
    order_no: &OrderNo,
    return_url: Option<&str>,
    expires: Timestamp,
) -> String {
    short_mac(
        &key.0,
        &format!(
            "{order_no}\n{}\n{}",
            return_url.unwrap_or(""),
            expires.unix()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_one_order_return_url_and_expiry() {
        let key = TicketKey::derive(b"oauth-secret");
        let no = OrderNo::parse("FP20251221103000ABC123").unwrap();
        let other = OrderNo::parse("FP20251221103000ABC124").unwrap();
        let expires = Timestamp::from_unix(1_766_290_000);
        let back = Some("https://m.example/r");
        let token = ticket_token(&key, &no, back, expires);
        assert_eq!(token.len(), 42);
        assert!(token.starts_with("1766290000"), "{token}");
        assert_eq!(ticket_expiry(&key, &no, back, &token), Some(expires));
        assert_eq!(ticket_expiry(&key, &other, back, &token), None);
        assert_eq!(ticket_expiry(&key, &no, None, &token), None);
        assert_eq!(
            ticket_expiry(&key, &no, Some("https://evil.example/r"), &token),
            None
        );
        let later = token.replacen('1', "2", 1);
        assert_eq!(ticket_expiry(&key, &no, back, &later), None);
        let rotated = TicketKey::derive(b"rotated");
        assert_eq!(ticket_expiry(&rotated, &no, back, &token), None);
        for junk in ["", "1", &token[..41], "é"] {
            assert_eq!(ticket_expiry(&key, &no, back, junk), None, "{junk}");
        }
    }

    #[test]
    fn states_and_tickets_have_keys_of_their_own() {
        // The same secret, the same content: different MACs, so neither stands for the other.
        let ticket = TicketKey::derive(b"s");
        let state = super::super::oauth_state::StateKey::derive(b"s");
        assert_ne!(short_mac(&ticket.0, "x"), short_mac(&state.0, "x"));
    }
}
