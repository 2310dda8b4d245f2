//! The free-form fields an order request carries, each a newtype with one `parse` holding its
//! rules, so the merchant API and payment links accept exactly the same values.

use std::{fmt, net::IpAddr};

use serde::Serialize;
use url::Url;

/// Which rule a field's value broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("longer than {max}")]
    TooLong { max: usize },
    #[error("blank")]
    Blank,
    #[error("contains a control character")]
    ControlCharacter,
    #[error("contains a character outside {allowed}")]
    Character { allowed: &'static str },
    #[error("not an absolute URL")]
    NotAUrl,
    #[error("scheme must be {allowed}")]
    Scheme { allowed: &'static str },
    #[error("has no host")]
    NoHost,
    #[error("carries credentials")]
    Credentials,
    #[error("has a fragment")]
    Fragment,
    #[error("not an IP address")]
    NotAnIpAddress,
}

/// At most `max` characters (not bytes: descriptions are often Chinese), none a control
/// character (they would break WeChat Pay's signing strings and the payer's pages).
fn check_text(s: &str, max: usize) -> Result<(), FieldError> {
    if s.chars().count() > max {
        return Err(FieldError::TooLong { max });
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter);
    }
    Ok(())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// What the payer sees the order as: 1..=127 characters, not blank (WeChat Pay's limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 127;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        check_text(s, Self::MAX_CHARS)?;
        if s.trim().is_empty() {
            return Err(FieldError::Blank);
        }
        Ok(Description(s.to_string()))
    }
}
string_newtype!(Description);

/// The merchant's own data, returned with the order and its webhook: at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Attach(String);

impl Attach {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        check_text(s, Self::MAX_CHARS)?;
        Ok(Attach(s.to_string()))
    }

    /// Only spaces (a payment link refuses these; the merchant API passes them through).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}
string_newtype!(Attach);

/// The payer's WeChat openid (JSAPI): 1..=128 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Openid(String);

impl Openid {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.len() > Self::MAX_LEN {
            return Err(FieldError::TooLong { max: Self::MAX_LEN });
        }
        if s.is_empty() {
            return Err(FieldError::Blank);
        }
        if !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(FieldError::Character {
                allowed: "[A-Za-z0-9_-]",
            });
        }
        Ok(Openid(s.to_string()))
    }
}
string_newtype!(Openid);

/// The payer's IP address (H5), IPv4 or IPv6, kept as the merchant wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientIp(String);

impl ClientIp {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        s.parse::<IpAddr>()
            .map_err(|_| FieldError::NotAnIpAddress)?;
        Ok(ClientIp(s.to_string()))
    }
}
string_newtype!(ClientIp);

/// Where an order's webhook goes: an absolute https URL (http only where allowed: the dev
/// stack) with a host, no credentials and no fragment, at most 255 bytes. Where it may point
/// (no private addresses) is checked again each time a webhook is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NotifyUrl(String);

impl NotifyUrl {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, FieldError> {
        let url = Url::parse(raw).map_err(|_| FieldError::NotAUrl)?;
        let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
        if raw.len() > Self::MAX_LEN {
            return Err(FieldError::TooLong { max: Self::MAX_LEN });
        }
        if !scheme_ok {
            let allowed = if allow_http { "http(s)" } else { "https" };
            return Err(FieldError::Scheme { allowed });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(FieldError::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(FieldError::Fragment);
        }
        Ok(NotifyUrl(raw.to_string()))
    }
}
string_newtype!(NotifyUrl);

/// Where a payment link sends the payer back: an http(s) URL with a host and no credentials,
/// at most 512 bytes. Which hosts a merchant allows is the link use case's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnUrl(Url);

impl ReturnUrl {
    pub const MAX_LEN: usize = 512;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.len() > Self::MAX_LEN {
            return Err(FieldError::TooLong { max: Self::MAX_LEN });
        }
        let url = Url::parse(raw).map_err(|_| FieldError::NotAUrl)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(FieldError::NoHost);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::Scheme { allowed: "http(s)" });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::Credentials);
        }
        Ok(ReturnUrl(url))
    }

    /// The host (never empty: `parse` refuses URLs without one).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ReturnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_count_characters_and_refuse_blank_or_control() {
        assert!(Description::parse(&"字".repeat(127)).is_ok());
        assert_eq!(
            Description::parse(&"字".repeat(128)),
            Err(FieldError::TooLong { max: 127 })
        );
        assert_eq!(Description::parse("   "), Err(FieldError::Blank));
        assert_eq!(
            Description::parse("a\nb"),
            Err(FieldError::ControlCharacter)
        );
        assert_eq!(Description::parse("咖啡").unwrap().as_str(), "咖啡");
    }

    #[test]
    fn attach_allows_blank_but_not_long_or_control() {
        assert!(Attach::parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            Attach::parse(&"a".repeat(129)),
            Err(FieldError::TooLong { max: 128 })
        );
        assert!(Attach::parse(" ").unwrap().is_blank());
        assert_eq!(Attach::parse("\u{7}"), Err(FieldError::ControlCharacter));
    }

    #[test]
    fn openids_and_client_ips() {
        assert!(Openid::parse("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").is_ok());
        assert!(Openid::parse(&"a".repeat(128)).is_ok());
        assert!(matches!(
            Openid::parse(&"a".repeat(129)),
            Err(FieldError::TooLong { .. })
        ));
        assert!(matches!(
            Openid::parse("o p"),
            Err(FieldError::Character { .. })
        ));
        assert!(ClientIp::parse("1.2.3.4").is_ok());
        assert_eq!(ClientIp::parse("::1").unwrap().as_str(), "::1");
        assert_eq!(ClientIp::parse("1.2.3"), Err(FieldError::NotAnIpAddress));
    }

    #[test]
    fn notify_urls_say_which_rule_failed() {
        assert!(NotifyUrl::parse("https://shop.example/n", false).is_ok());
        assert!(NotifyUrl::parse("http://shop.example/n", true).is_ok());
        let cases = [
            (
                "http://shop.example/n",
                FieldError::Scheme { allowed: "https" },
            ),
            (
                "ftp://shop.example/n",
                FieldError::Scheme { allowed: "https" },
            ),
            ("https://u:p@shop.example/n", FieldError::Credentials),
            ("https://shop.example/n#x", FieldError::Fragment),
            ("shop.example/n", FieldError::NotAUrl),
        ];
        for (raw, expected) in cases {
            assert_eq!(NotifyUrl::parse(raw, false), Err(expected), "{raw}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(255));
        assert_eq!(
            NotifyUrl::parse(&long, false),
            Err(FieldError::TooLong { max: 255 })
        );
    }

    #[test]
    fn return_urls_are_http_or_https_without_credentials() {
        let url = ReturnUrl::parse("http://shop.example/done?x=1").unwrap();
        assert_eq!(url.host(), "shop.example");
        assert!(ReturnUrl::parse("https://shop.example/").is_ok());
        assert!(matches!(
            ReturnUrl::parse("javascript:alert(1)"),
            Err(FieldError::NoHost | FieldError::Scheme { .. })
        ));
        assert_eq!(
            ReturnUrl::parse("https://u@shop.example/"),
            Err(FieldError::Credentials)
        );
        let long = format!("https://shop.example/{}", "a".repeat(512));
        assert_eq!(
            ReturnUrl::parse(&long),
            Err(FieldError::TooLong { max: 512 })
        );
    }
}
