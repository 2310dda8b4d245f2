//! What a gateway request says: its User-Agent, a link's query string (its parameters once
//! each, then its typed fields) and a cashier ticket's.

use crate::{
    model::{Attach, Description, Fen, OrderNo, ReturnUrl, Timestamp},
    service::gateway::{LinkError, LinkFields, LinkQuery, OAuthReturn, TicketError, TicketParts},
    sign::link::SIGNED_LINK_PARAMS,
};

/// Whether a request comes from WeChat's in-app browser.
pub fn in_wechat(user_agent: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| ua.contains("MicroMessenger"))
}

/// A link request's query string, read: the link as given, and WeChat's way back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRequest {
    pub link: LinkQuery,
    /// WeChat's redirect back: the OAuth code and our state.
    pub code: Option<String>,
    pub state: Option<String>,
}

impl LinkRequest {
    /// Reads a query string. Parameters of no meaning here (WeChat appends `from=..` to shared
    /// links) are ignored; one of ours given twice is refused, since a signer and a reader
    /// could take different copies.
    pub fn parse(query: Option<&str>) -> Result<LinkRequest, LinkError> {
        let mut request = LinkRequest::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            let slot = match name.as_ref() {
                "sign" => Some(("sign", &mut request.link.sign)),
                "code" => Some(("code", &mut request.code)),
                "state" => Some(("state", &mut request.state)),
                _ => None,
            };
            if let Some((name, slot)) = slot {
                if slot.replace(value).is_some() {
                    return Err(LinkError::DuplicateParam(name));
                }
                continue;
            }
            let Some(known) = SIGNED_LINK_PARAMS.iter().find(|p| **p == name.as_ref()) else {
                continue;
            };
            if request.link.params.iter().any(|(n, _)| n == known) {
                return Err(LinkError::DuplicateParam(known));
            }
            request.link.params.push((known, value));
        }
        request.link.params.sort_by_key(|(name, _)| {
            SIGNED_LINK_PARAMS
                .iter()
                .position(|p| p == name)
                .unwrap_or(usize::MAX)
        });
        Ok(request)
    }

    /// The way back from WeChat, when it carries both its parts.
    pub fn oauth_return(&self) -> Option<OAuthReturn> {
        match (&self.code, &self.state) {
            (Some(code), Some(state)) => Some(OAuthReturn {
                code: code.clone(),
                state: state.clone(),
            }),
            _ => None,
        }
    }
}

/// A link's fields, typed: the amount, the texts, the expiry and the return URL.
pub fn link_fields(link: &LinkQuery) -> Result<LinkFields, LinkError> {
    let amount = link
        .get("amount")
        .filter(|a| !a.is_empty() && a.len() <= 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|a| a.parse::<i64>().ok())
        .and_then(Fen::order_amount)
        .ok_or(LinkError::InvalidAmount)?;
    let description = optional(link, "description", Description::parse)?;
    let attach = optional(link, "attach", Attach::parse)?;
    if attach.as_ref().is_some_and(Attach::is_blank) {
        return Err(LinkError::InvalidField("attach"));
    }
    let expires = match link.get("expires").filter(|e| !e.is_empty()) {
        None => None,
        Some(expires) => Some(Timestamp::from_unix(
            expires
                .parse::<i64>()
                .map_err(|_| LinkError::InvalidField("expires"))?,
        )),
    };
    let return_url = match link.get("return_url").filter(|u| !u.is_empty()) {
        None => None,
        Some(raw) => Some(ReturnUrl::parse(raw).map_err(|_| LinkError::ReturnUrlInvalid)?),
    };
    Ok(LinkFields {
        amount,
        description,
        attach,
        expires,
        return_url,
    })
}

/// An optional parameter: absent or empty is none (control characters are refused for every
/// parameter, by the link's checks).
fn optional<T, E>(
    link: &LinkQuery,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, LinkError> {
    match link.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .map_err(|_| LinkError::InvalidField(name)),
    }
}

/// A cashier or status request's ticket: `order_no`, `return_url`, `t`, each at most once.
pub fn ticket_parts(query: Option<&str>) -> Result<TicketParts, TicketError> {
    let mut order_no = None;
    let mut return_url = None;
    let mut t = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match name.as_ref() {
            "order_no" => &mut order_no,
            "return_url" => &mut return_url,
            "t" => &mut t,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(TicketError::Invalid);
        }
    }
    let order_no = order_no
        .as_deref()
        .and_then(OrderNo::parse)
        .ok_or(TicketError::Invalid)?;
    Ok(TicketParts {
        order_no,
        return_url,
        token: t.ok_or(TicketError::Invalid)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_query_keeps_its_parameters_and_drops_the_rest() {
        let q = LinkRequest::parse(Some(
            "from=singlemessage&amount=1&sign=ab&key=pk_x&isappinstalled=0&code=c&state=s",
        ))
        .unwrap();
        assert_eq!(
            q.link.params,
            vec![("key", "pk_x".to_string()), ("amount", "1".to_string())]
        );
        assert_eq!(q.link.sign.as_deref(), Some("ab"));
        assert_eq!(
            (q.code.as_deref(), q.state.as_deref()),
            (Some("c"), Some("s"))
        );
        for doubled in [
            "key=a&key=b",
            "sign=a&sign=b",
            "code=a&code=b",
            "state=a&state=b",
        ] {
            assert!(matches!(
                LinkRequest::parse(Some(doubled)),
                Err(LinkError::DuplicateParam(_))
            ));
        }
        assert_eq!(LinkRequest::parse(None).unwrap(), LinkRequest::default());
    }

    #[test]
    fn the_way_back_needs_both_code_and_state() {
        let back = |q| LinkRequest::parse(Some(q)).unwrap().oauth_return();
        assert_eq!(
            back("code=c&state=s"),
            Some(OAuthReturn {
                code: "c".into(),
                state: "s".into()
            })
        );
        assert_eq!(back("code=c"), None);
        assert_eq!(back("state=s"), None);
    }

    #[test]
    fn only_wechat_user_agents_count_as_wechat() {
        assert!(in_wechat(Some(
            "Mozilla/5.0 ... MicroMessenger/8.0.50 NetType/WIFI"
        )));
        assert!(!in_wechat(Some("Mozilla/5.0 Chrome/126")));
        assert!(!in_wechat(None));
    }

    #[test]
    fn a_ticket_query_has_each_part_once() {
        let ok = ticket_parts(Some("order_no=FP20251221103000ABC123&t=x&other=1")).unwrap();
        assert_eq!(ok.order_no.as_str(), "FP20251221103000ABC123");
        assert_eq!((ok.return_url, ok.token.as_str()), (None, "x"));
        for bad in [
            "",
            "order_no=nope&t=x",
            "order_no=FP20251221103000ABC123",
            "order_no=FP20251221103000ABC123&t=x&t=y",
            "order_no=FP20251221103000ABC123&t=x&return_url=a&return_url=b",
        ] {
            assert_eq!(ticket_parts(Some(bad)), Err(TicketError::Invalid), "{bad}");
        }
    }
}
