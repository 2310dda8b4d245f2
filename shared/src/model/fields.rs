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
    #[error("longer than {max} bytes of UTF-8")]
    TooLongBytes { max: usize },
    #[error("blank")]
    Blank,
    #[error("contains a control character")]
    ControlCharacter,
    /// An invisible format character (bidi controls, zero-width characters, tags...).
    #[error("contains a format character")]
    FormatCharacter,
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

/// The characters of Unicode's general category Cf (format), as of Unicode 15.1, as inclusive
/// ranges. They are invisible: bidi controls reorder what the payer reads (an amount or a name
/// shown backwards), zero-width characters make look-alike text. Two blocks are taken whole,
/// their few unassigned points included: U+2060..U+206F and the tags U+E0000..U+E007F.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{0600}', '\u{0605}'),   // Arabic number signs
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{06DD}', '\u{06DD}'),   // Arabic end of ayah
    ('\u{070F}', '\u{070F}'),   // Syriac abbreviation mark
    ('\u{0890}', '\u{0891}'),   // Arabic pound and piastre marks above
    ('\u{08E2}', '\u{08E2}'),   // Arabic disputed end of ayah
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, non-joiner, joiner; LRM, RLM
    ('\u{202A}', '\u{202E}'),   // bidi embeddings and overrides
    ('\u{2060}', '\u{206F}'),   // word joiner, invisible operators, bidi isolates, deprecated
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (byte order mark)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol beam and phrase controls
    ('\u{E0000}', '\u{E007F}'), // tags
];

/// A Unicode format character (general category Cf, see [`FORMAT_CHARS`]).
pub fn is_format_char(c: char) -> bool {
    FORMAT_CHARS
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The first rule a text value breaks: a control character (they would break WeChat Pay's
/// signing strings and the payer's pages), or a format character (invisible, they change what
/// the payer reads). The merchant API and payment links refuse the same characters.
pub fn check_characters(s: &str) -> Result<(), FieldError> {
    if s.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter);
    }
    if s.chars().any(is_format_char) {
        return Err(FieldError::FormatCharacter);
    }
    Ok(())
}

/// At most `max` characters (not bytes: descriptions are often Chinese), with no control or
/// format character.
fn check_text(s: &str, max: usize) -> Result<(), FieldError> {
    if s.chars().count() > max {
        return Err(FieldError::TooLong { max });
    }
    check_characters(s)
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
    fn format_characters_are_refused_in_descriptions_and_attach() {
        let format_chars = [
            '\u{00AD}',
            '\u{0600}',
            '\u{0605}',
            '\u{061C}',
            '\u{06DD}',
            '\u{070F}',
            '\u{0890}',
            '\u{08E2}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2060}',
            '\u{2061}',
            '\u{2064}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{206A}',
            '\u{206F}',
            '\u{FEFF}',
            '\u{FFF9}',
            '\u{FFFB}',
            '\u{110BD}',
            '\u{110CD}',
            '\u{13430}',
            '\u{1343F}',
            '\u{1BCA0}',
            '\u{1BCA3}',
            '\u{1D173}',
            '\u{1D17A}',
            '\u{E0001}',
            '\u{E0020}',
            '\u{E007F}',
        ];
        for c in format_chars {
            assert!(is_format_char(c), "U+{:04X}", u32::from(c));
            let text = format!("咖啡{c}Latte");
            assert_eq!(
                Description::parse(&text),
                Err(FieldError::FormatCharacter),
                "U+{:04X}",
                u32::from(c)
            );
            assert_eq!(Attach::parse(&text), Err(FieldError::FormatCharacter));
        }
        // Their neighbours, and visible text of every kind, pass.
        for c in [
            '\u{00AC}',
            '\u{00AE}',
            '\u{05FF}',
            '\u{0606}',
            '\u{200A}',
            '\u{2010}',
            '\u{2029}',
            '\u{205F}',
            '\u{2070}',
            '\u{FEFE}',
            '\u{FF01}',
            '\u{FFFC}',
            '\u{1D172}',
            '\u{1D17B}',
            '\u{E0080}',
            '\u{E0100}',
            '字',
            'é',
            '🙂',
        ] {
            assert!(!is_format_char(c), "U+{:04X}", u32::from(c));
        }
        assert!(Description::parse("月卡 · 30天 (¥9.90) 🙂").is_ok());
        // A control character is named first: it is the older rule.
        assert_eq!(
            Description::parse("a\u{202E}\u{7}"),
            Err(FieldError::ControlCharacter)
        );
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
