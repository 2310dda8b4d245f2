//! Request parameters: the JSON body and the query string, read field by field so every bad
//! field gets an error that names it.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::{value::RawValue, Value};

use super::ApiError;

/// Bodies above this are refused before parsing (orders are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One parameter's value. JSON numbers keep the text they were written as: a float would
/// round `12345678901234567890` (an `out_trade_no`) to another number.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Number(String),
    Other(Value),
}

/// The merged parameters of one request: query string first, then body fields (which win).
#[derive(Debug, Default)]
pub struct Params {
    fields: BTreeMap<String, Param>,
}

/// Plain decimal digits, as a JSON integer without sign, fraction or exponent is written.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
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
                fields.insert(
                    name.into_owned(),
                    Param::Other(Value::String(value.into_owned())),
                );
            }
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let object: BTreeMap<String, Box<RawValue>> =
                serde_json::from_slice(body).map_err(|_| ApiError::InvalidJson)?;
            for (name, raw) in object {
                let text = raw.get();
                let param = if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                    Param::Number(text.to_string())
                } else {
                    Param::Other(serde_json::from_str(text).map_err(|_| ApiError::InvalidJson)?)
                };
                fields.insert(name, param);
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

    fn present(&self, name: &str) -> Option<&Param> {
        self.fields
            .get(name)
            .filter(|v| **v != Param::Other(Value::Null))
    }

    /// A text field: JSON strings, and numbers written as plain digits, taken as written
    /// (clients in loosely typed languages send `"out_trade_no": 12345`). A number with a
    /// sign, fraction or exponent is refused: its text is not what the client meant to send.
    /// Empty strings count as absent.
    pub fn text(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Param::Other(Value::String(s))) if s.is_empty() => Ok(None),
            Some(Param::Other(Value::String(s))) => Ok(Some(s.clone())),
            Some(Param::Number(n)) if is_digits(n) => Ok(Some(n.clone())),
            Some(_) => Err(ApiError::InvalidField(name)),
        }
    }

    /// An integer field: a JSON integer, or a string of decimal digits (query strings and
    /// loosely typed clients), either with an optional `-` and at most 18 digits. Fractions,
    /// exponents (`1.0`, `1e3`) and anything else are refused.
    pub fn integer(&self, name: &'static str) -> Result<Option<i64>, ApiError> {
        let invalid = || ApiError::InvalidField(name);
        let text = match self.present(name) {
            None => return Ok(None),
            Some(Param::Other(Value::String(s))) if s.is_empty() => return Ok(None),
            Some(Param::Other(Value::String(s)) | Param::Number(s)) => s,
            Some(Param::Other(_)) => return Err(invalid()),
        };
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.len() > 18 || !is_digits(digits) {
            return Err(invalid());
        }
        text.parse().map(Some).map_err(|_| invalid())
    }

    /// The `key` parameter (query string or body), for API-key lookup.
    pub fn key(&self) -> Option<String> {
        match self.present("key") {
            Some(Param::Other(Value::String(s))) => Some(s.clone()),
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
        for body in [
            &b"[1]"[..],
            b"\"x\"",
            b"{",
            b"amount=1",
            b"null",
            b"1",
            b"{\"a\": 1} x",
            b"{\"a\": 01}",
            b"{\"a\": \"\xff\"}",
        ] {
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
    fn numbers_for_text_fields_are_taken_as_their_digits_or_refused() {
        let p = Params::parse(
            None,
            br#"{"a":12345678901234567890,"b":123456789012345678901234567890,"c":0,
                 "d":1e3,"e":1.5,"f":-1,"g":1.0,"h":1E3,"i":-0,"j":12345678901234567890.0}"#,
        )
        .unwrap();
        assert_eq!(
            p.text("a").unwrap().as_deref(),
            Some("12345678901234567890")
        );
        assert_eq!(
            p.text("b").unwrap().as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(p.text("c").unwrap().as_deref(), Some("0"));
        for name in ["d", "e", "f", "g", "h", "i", "j"] {
            assert_eq!(p.text(name), Err(ApiError::InvalidField(name)), "{name}");
        }
    }

    #[test]
    fn integers_read_the_written_number_not_a_float() {
        let p = Params::parse(
            None,
            br#"{"a":100,"b":-7,"c":999999999999999999,"d":1000000000000000000,"e":1e2,
                 "f":100.0,"g":9007199254740993}"#,
        )
        .unwrap();
        assert_eq!(p.integer("a").unwrap(), Some(100));
        assert_eq!(p.integer("b").unwrap(), Some(-7));
        assert_eq!(p.integer("c").unwrap(), Some(999_999_999_999_999_999));
        assert_eq!(p.integer("g").unwrap(), Some(9_007_199_254_740_993));
        for name in ["d", "e", "f"] {
            assert_eq!(p.integer(name), Err(ApiError::InvalidField(name)), "{name}");
        }
    }

    #[test]
    fn the_last_of_a_repeated_body_field_wins_and_nulls_are_absent() {
        let p = Params::parse(Some("a=x"), br#"{"a": "y", "a": 3, "n": null}"#).unwrap();
        assert_eq!(p.text("a").unwrap().as_deref(), Some("3"));
        assert_eq!(p.text("n").unwrap(), None);
        assert_eq!(p.integer("n").unwrap(), None);
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
