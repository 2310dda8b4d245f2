//! WeChat settings values, parsed: the WeChat Pay secret as AWS Secrets Manager holds it, base
//! URLs, the OAuth secret's form. Pure: which variable a value comes from, and the problems
//! named after it, are `ferrypay::config`'s business.

/// The secret half of the WeChat Pay settings: from files (`WECHATPAY_PRIVATE_KEY_FILE`,
/// `WECHATPAY_APIV3_KEY`, `WECHATPAY_PUBLIC_KEY_FILE`) or, in AWS, one Secrets Manager secret
/// holding `{"private_key_pem", "apiv3_key", "public_key_pem"?, "oauth_secret"?}`.
#[derive(Clone, Default, serde::Deserialize)]
pub struct WechatSecrets {
    pub private_key_pem: String,
    pub apiv3_key: String,
    #[serde(default)]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub oauth_secret: Option<String>,
}

impl std::fmt::Debug for WechatSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WechatSecrets([redacted])")
    }
}

impl WechatSecrets {
    /// Parses the Secrets Manager secret's JSON.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            // Never echo the text: it is the secret.
            format!(
                "the WeChat Pay secret is not the expected JSON ({})",
                e.classify_name()
            )
        })
    }

    /// The public key, unless absent or empty (the secret's `""` in certificate mode).
    pub fn public_key_pem(&self) -> Option<&str> {
        self.public_key_pem
            .as_deref()
            .filter(|pem| !pem.trim().is_empty())
    }

    /// The OAuth secret, unless absent or blank.
    pub fn oauth_secret(&self) -> Option<&str> {
        self.oauth_secret
            .as_deref()
            .filter(|secret| !secret.trim().is_empty())
    }
}

/// The official account's AppSecret from its own Secrets Manager secret
/// (`FERRYPAY_WECHAT_OAUTH_SECRET_ARN`, read by the jump-pay gateway alone): either the bare
/// value, or a JSON object with an `oauth_secret` string (what the console's key/value editor
/// writes). Blank is `None`.
pub fn oauth_secret_from_secret_string(text: &str) -> Result<Option<String>, String> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return Ok((!trimmed.is_empty()).then(|| trimmed.to_string()));
    }
    #[derive(serde::Deserialize)]
    struct OAuthSecretJson {
        oauth_secret: String,
    }
    let parsed: OAuthSecretJson = serde_json::from_str(trimmed).map_err(|e| {
        // Never echo the text: it is the secret.
        format!(
            "the WeChat OAuth secret is neither a bare value nor JSON {{\"oauth_secret\": ...}} ({})",
            e.classify_name()
        )
    })?;
    let secret = parsed.oauth_secret.trim();
    Ok((!secret.is_empty()).then(|| secret.to_string()))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or wrong fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// An http(s) base URL (no query, no fragment), without its trailing `/`; `None` if it is not
/// one.
pub fn parse_base_url(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = url::Url::parse(trimmed).ok()?;
    (matches!(url.scheme(), "http" | "https")
        && url.has_host()
        && url.query().is_none()
        && url.fragment().is_none())
    .then(|| trimmed.to_string())
}

/// An OAuth secret (AppSecret) is one printable word: no spaces, no control characters.
pub fn oauth_secret_is_well_formed(secret: &str) -> bool {
    !secret.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_never_printed() {
        let secrets =
            WechatSecrets::from_json(r#"{"private_key_pem": "k", "apiv3_key": "a"}"#).unwrap();
        assert_eq!(format!("{secrets:?}"), "WechatSecrets([redacted])");
        let err = WechatSecrets::from_json("{\"private_key_pem\": \"hunter2\"").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_oauth_secret_alone_bare_or_as_json_never_echoed() {
        assert_eq!(
            oauth_secret_from_secret_string(" abc123\n")
                .unwrap()
                .as_deref(),
            Some("abc123")
        );
        assert_eq!(
            oauth_secret_from_secret_string(r#"{"oauth_secret": " abc123 "}"#)
                .unwrap()
                .as_deref(),
            Some("abc123")
        );
        assert_eq!(oauth_secret_from_secret_string("  ").unwrap(), None);
        assert_eq!(
            oauth_secret_from_secret_string(r#"{"oauth_secret": ""}"#).unwrap(),
            None
        );
        for bad in [
            r#"{"oauth_secret": "hunter2""#,
            r#"{"app_secret": "hunter2"}"#,
        ] {
            let err = oauth_secret_from_secret_string(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url(" http://127.0.0.1:8081/ ").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        for bad in [
            "open.weixin.qq.com",
            "https://api.weixin.qq.com/?x=1",
            "ftp://x",
            "https://x/#y",
        ] {
            assert_eq!(parse_base_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_optional_fields_are_absent() {
        let secrets = WechatSecrets::from_json(
            r#"{"private_key_pem": "k", "apiv3_key": "a", "public_key_pem": " ", "oauth_secret": ""}"#,
        )
        .unwrap();
        assert_eq!(secrets.public_key_pem(), None);
        assert_eq!(secrets.oauth_secret(), None);
        assert!(oauth_secret_is_well_formed("0123456789abcdef"));
        assert!(!oauth_secret_is_well_formed("hunter2 hunter3"));
    }
}
