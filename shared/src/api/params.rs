//! Request parameters: the JSON body and the query string, read field by field so every bad
//! field gets an error that names it.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::Value;

use super::ApiError;

/// Bodies above this are refused before parsing (orders are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The merged parameters of one request: query string first, then body fields (which win).
#[derive(Debug, Default)]
pub struct Params {
    fields: BTreeMap<String, Value>,
}

impl Params {
    /// Reads the query string and, when present, the body, which must be a JSON object.
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<Self, ApiError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::BodyTooLarge);
        }
        let mut fields = BTreeMap::new();
        if let Some(query) = query {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                fields.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => fields.extend(map),
                _ => return Err(ApiError::InvalidJson),
            }
        }
        Ok(Params { fields })
    }

    /// Refuses any parameter not in `allowed` (`key` is always allowed).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self
            .fields
            .keys()
            .find(|name| name.as_str() != "key" && !allowed.contains(&name.as_str()))
        {
            Some(unknown) => Err(ApiError::UnknownField(unknown.clone())),
            None => Ok(()),
        }
    }

    fn present(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    /// A text field: JSON strings, and numbers as written (clients in loosely typed languages
    /// send `"out_trade_no": 12345`). Empty strings count as absent.
    pub fn text(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::InvalidField(name)),
        }
    }

    /// An integer field: a JSON integer, or a string of decimal digits (query strings and
    /// loosely typed clients). Fractions, exponents and anything else are refused.
    pub fn integer(&self, name: &'static str) -> Result<Option<i64>, ApiError> {
        let invalid = || ApiError::InvalidField(name);
        match self.present(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(invalid),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty()
                    || digits.len() > 18
                    || !digits.bytes().all(|c| c.is_ascii_digit())
                {
                    return Err(invalid());
                }
                s.parse().map(Some).map_err(|_| invalid())
            }
            Some(_) => Err(invalid()),
        }
    }

    /// The `key` parameter (query string or body), for API-key lookup.
    pub fn key(&self) -> Option<String> {
        match self.present("key") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

/// The API key from, in order: `X-API-Key`, `Authorization: Bearer`, then the `key` parameter.
pub fn api_key(headers: &HeaderMap, params: &Params) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(key) = header("x-api-key") {
        return Some(key.to_string());
    }
    if let Some(auth) = header("authorization") {
        let mut parts = auth.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some(token.trim().to_string());
            }
        }
    }
    params.key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_wins_over_query_and_empty_body_is_fine() {
        let p = Params::parse(Some("a=1&b=x"), br#"{"a": 2}"#).unwrap();
        assert_eq!(p.integer("a").unwrap(), Some(2));
        assert_eq!(p.text("b").unwrap().as_deref(), Some("x"));
        assert!(Params::parse(None, b"  \n").is_ok());
    }

    #[test]
    fn body_must_be_a_json_object() {
        for body in [&b"[1]"[..], b"\"x\"", b"{", b"amount=1", b"null"] {
            assert_eq!(
                Params::parse(None, body).unwrap_err(),
                ApiError::InvalidJson
            );
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            Params::parse(None, &big).unwrap_err(),
            ApiError::BodyTooLarge
        );
    }

    #[test]
    fn integers_accept_digit_strings_only() {
        let p = Params::parse(
            None,
            br#"{"a":"100","b":1.5,"c":"1e3","d":"-7","e":true,"f":"","g":"99999999999999999999"}"#,
        )
        .unwrap();
        assert_eq!(p.integer("a").unwrap(), Some(100));
        assert!(p.integer("b").is_err());
        assert!(p.integer("c").is_err());
        assert_eq!(p.integer("d").unwrap(), Some(-7));
        assert!(p.integer("e").is_err());
        assert_eq!(p.integer("f").unwrap(), None);
        assert!(p.integer("g").is_err());
        assert_eq!(p.integer("missing").unwrap(), None);
    }

    #[test]
    fn unknown_fields_are_named() {
        let p = Params::parse(Some("key=sk_x"), br#"{"amount":1,"amout":2}"#).unwrap();
        assert_eq!(
            p.only(&["amount"]).unwrap_err(),
            ApiError::UnknownField("amout".into())
        );
    }

    #[test]
    fn api_key_sources_in_order() {
        let params = Params::parse(Some("key=sk_query"), br#"{}"#).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(api_key(&headers, &params).as_deref(), Some("sk_query"));
        headers.insert("authorization", "Bearer sk_bearer".parse().unwrap());
        assert_eq!(api_key(&headers, &params).as_deref(), Some("sk_bearer"));
        headers.insert("x-api-key", "sk_header".parse().unwrap());
        assert_eq!(api_key(&headers, &params).as_deref(), Some("sk_header"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(api_key(&basic, &Params::default()), None);
    }
}
