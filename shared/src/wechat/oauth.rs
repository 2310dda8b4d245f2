//! WeChat OAuth2 web authorization (网页授权) for the payer's `openid`, `snsapi_base` scope.
//!
//! 1. [`authorize_url`]: the payer's browser (inside WeChat) goes to
//!    `{open}/connect/oauth2/authorize?appid=..&redirect_uri=..&response_type=code&scope=snsapi_base&state=..#wechat_redirect`
//!    (that parameter order: WeChat matches it strictly). WeChat silently redirects back to
//!    `redirect_uri?code=CODE&state=STATE`; the code is single-use and lives 5 minutes.
//! 2. [`OAuthClient::openid_for_code`]: the server exchanges the code at
//!    `{api}/sns/oauth2/access_token` for the payer's openid (per appid: the same official
//!    account must create the JSAPI order). The AppSecret never leaves the server, never shows
//!    in `Debug`, logs or error messages.
//!
//! WeChat answers the exchange with HTTP 200 either way; [`OAuthError`] sorts the answers:
//! [`OAuthError::CodeInvalidOrUsed`] (40029, 40163: a page refresh replaying its code; the
//! caller restarts the authorization), [`OAuthError::Unavailable`] (network, 5xx, -1 "system
//! busy", 45011 minute quota: worth retrying later) and [`OAuthError::Rejected`] (anything
//! else, such as 40013 invalid appid or 40125 invalid secret: a configuration problem).

use std::{fmt::Write as _, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use crate::model::Secret;

pub const DEFAULT_OPEN_BASE_URL: &str = "https://open.weixin.qq.com";
pub const DEFAULT_API_BASE_URL: &str = "https://api.weixin.qq.com";
/// The longest `state` WeChat takes back, in bytes.
pub const MAX_STATE_BYTES: usize = 128;
/// The longest openid accepted (real ones are 28 characters).
pub const MAX_OPENID_CHARS: usize = 128;
/// The longest code sent to WeChat (real ones are 32 characters).
const MAX_CODE_CHARS: usize = 128;
/// The most of an exchange answer read (real ones are a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most of WeChat's `errmsg` kept in an error.
const MAX_ERRMSG_CHARS: usize = 200;

/// "invalid code": unknown, expired, or issued for another appid (also a replayed code).
pub const ERRCODE_INVALID_CODE: i64 = 40029;
/// "code been used".
pub const ERRCODE_CODE_USED: i64 = 40163;
/// "system error" / "system busy".
pub const ERRCODE_SYSTEM_BUSY: i64 = -1;
/// "api minute-quota reach limit".
pub const ERRCODE_MINUTE_QUOTA: i64 = 45011;
/// "invalid appid".
pub const ERRCODE_INVALID_APPID: i64 = 40013;
/// "invalid appsecret".
pub const ERRCODE_INVALID_SECRET: i64 = 40125;

/// The official account's OAuth settings (its appid is `WECHATPAY_APPID`). `Debug` shows the
/// secret as `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// Where the payer's browser is sent: `https://open.weixin.qq.com`, or the mock.
    pub open_base_url: String,
    /// Where the code is exchanged: `https://api.weixin.qq.com`, or the mock.
    pub api_base_url: String,
    pub appid: String,
    /// The official account's AppSecret.
    pub secret: Secret<String>,
}

impl OAuthConfig {
    /// The real WeChat hosts.
    pub fn new(appid: impl Into<String>, secret: Secret<String>) -> OAuthConfig {
        OAuthConfig {
            open_base_url: DEFAULT_OPEN_BASE_URL.to_string(),
            api_base_url: DEFAULT_API_BASE_URL.to_string(),
            appid: appid.into(),
            secret,
        }
    }
}

/// The authorization URL could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeUrlError {
    #[error("the OAuth state is {len} bytes; WeChat takes at most {MAX_STATE_BYTES}")]
    StateTooLong { len: usize },
}

/// Where to send the payer's browser for a silent (`snsapi_base`) authorization. `redirect_uri`
/// (its domain registered as the account's 网页授权域名) and `state` are percent-encoded;
/// WeChat documents `state` as `[a-zA-Z0-9]`, at most 128 bytes: longer is an error, other
/// characters are encoded but best avoided.
pub fn authorize_url(
    config: &OAuthConfig,
    redirect_uri: &str,
    state: &str,
) -> Result<String, AuthorizeUrlError> {
    if state.len() > MAX_STATE_BYTES {
        return Err(AuthorizeUrlError::StateTooLong { len: state.len() });
    }
    Ok(format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state={}#wechat_redirect",
        config.open_base_url.trim_end_matches('/'),
        encode_component(&config.appid),
        encode_component(redirect_uri),
        encode_component(state),
    ))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`A-Za-z0-9-._~`), so the
/// value reads back the same under any URL or form decoder.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Whether a value can be an openid: non-empty, at most [`MAX_OPENID_CHARS`] characters, no
/// control characters. (Loose on purpose: WeChat does not document the alphabet.)
pub fn plausible_openid(openid: &str) -> bool {
    !openid.is_empty()
        && openid.chars().count() <= MAX_OPENID_CHARS
        && !openid.chars().any(char::is_control)
}

/// Whether a value from the redirect's query string can be a code worth sending to WeChat.
fn plausible_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_CODE_CHARS && code.bytes().all(|b| b.is_ascii_graphic())
}

/// Who the payer is, as the exchange told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthIdentity {
    /// The payer's openid under this appid.
    pub openid: String,
    /// The scope granted (`snsapi_base`).
    pub scope: String,
    /// Only with `snsapi_userinfo` and a bound open platform account.
    pub unionid: Option<String>,
    /// `is_snapshotuser=1`: the page was opened in WeChat's snapshot (preview) mode; this
    /// openid is a virtual one that cannot pay (ask the payer to open the full page).
    pub is_snapshot_user: bool,
}

/// A failed code exchange. No variant carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// 40029 (invalid, expired or replayed code) or 40163 (code been used), or a code that
    /// cannot be one (empty, over 128 bytes, not visible ASCII: answered 40029 without asking
    /// WeChat). The caller restarts the authorization.
    #[error("the OAuth code is invalid, expired or already used (errcode {errcode})")]
    CodeInvalidOrUsed { errcode: i64 },
    /// No usable answer: network error, timeout, HTTP error, a malformed answer, -1 (system
    /// busy) or 45011 (minute quota). Worth retrying later (with a fresh code: this one may
    /// have been consumed).
    #[error("WeChat OAuth unavailable: {0}")]
    Unavailable(String),
    /// Any other errcode, e.g. 40013 (invalid appid) or 40125 (invalid secret): a
    /// configuration problem.
    #[error("WeChat OAuth rejected the code exchange: errcode {errcode}: {errmsg}")]
    Rejected { errcode: i64, errmsg: String },
}

/// Exchanges codes for openids: `GET {api}/sns/oauth2/access_token`. Build it once (it holds
/// the connection pool); no redirects are followed, every call times out after 10 s.
#[derive(Debug)]
pub struct OAuthClient {
    api_base_url: String,
    appid: String,
    secret: Secret<String>,
    http: reqwest::Client,
}

impl OAuthClient {
    /// The whole exchange, per call.
    pub const TIMEOUT: Duration = Duration::from_secs(10);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

    pub fn new(config: &OAuthConfig) -> Result<OAuthClient, OAuthError> {
        let http = reqwest::Client::builder()
            .timeout(Self::TIMEOUT)
            .connect_timeout(Self::CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferrypay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Unavailable(format!("http client: {}", e.without_url())))?;
        Ok(OAuthClient {
            api_base_url: config.api_base_url.trim_end_matches('/').to_string(),
            appid: config.appid.clone(),
            secret: config.secret.clone(),
            http,
        })
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Exchanges the code from the redirect for the payer's identity. One request, no retry
    /// (a code is single-use: the caller restarts the authorization instead).
    pub async fn openid_for_code(&self, code: &str) -> Result<OAuthIdentity, OAuthError> {
        if !plausible_code(code) {
            tracing::info!("OAuth code rejected before the exchange: not a plausible code");
            return Err(OAuthError::CodeInvalidOrUsed {
                errcode: ERRCODE_INVALID_CODE,
            });
        }
        let url = format!(
            "{}/sns/oauth2/access_token?appid={}&secret={}&code={}&grant_type=authorization_code",
            self.api_base_url,
            encode_component(&self.appid),
            encode_component(self.secret.expose()),
            encode_component(code),
        );
        let result = match self.http.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match read_limited(response).await {
                    Ok(body) => interpret_answer(status, &body),
                    Err(e) => Err(OAuthError::Unavailable(format!(
                        "reading the answer: {}",
                        describe(e)
                    ))),
                }
            }
            Err(e) => Err(OAuthError::Unavailable(describe(e))),
        };
        let result = result.map_err(|e| self.scrub(e));
        match &result {
            Ok(_) => {}
            Err(e @ OAuthError::CodeInvalidOrUsed { .. }) => {
                tracing::info!(error = %e, "OAuth code exchange: code invalid or used");
            }
            Err(e @ OAuthError::Unavailable(_)) => {
                tracing::warn!(error = %e, "OAuth code exchange failed");
            }
            Err(e @ OAuthError::Rejected { .. }) => {
                tracing::error!(error = %e, appid = %self.appid, "OAuth code exchange rejected: check the appid and the OAuth secret");
            }
        }
        result
    }

    /// Belt and braces: no message leaves with the secret in it.
    fn scrub(&self, err: OAuthError) -> OAuthError {
        let secret = self.secret.expose();
        if secret.is_empty() {
            return err;
        }
        let clean = |text: String| {
            text.replace(secret.as_str(), "[redacted]")
                .replace(&encode_component(secret), "[redacted]")
        };
        match err {
            OAuthError::Unavailable(message) => OAuthError::Unavailable(clean(message)),
            OAuthError::Rejected { errcode, errmsg } => OAuthError::Rejected {
                errcode,
                errmsg: clean(errmsg),
            },
            other => other,
        }
    }
}

/// A reqwest error without its URL (which carries the secret), with its causes.
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    // Bounded: error chains are short; never follow a pathological one far.
    for _ in 0..8 {
        let Some(cause) = source else { break };
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The answer's body, at most [`MAX_ANSWER_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    // Each chunk is at least one byte, so this ends after at most MAX_ANSWER_BYTES + 1 chunks.
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(body)
}

/// The exchange's answer, success and error fields together (WeChat answers 200 for both).
#[derive(Debug, Deserialize)]
struct AccessTokenAnswer {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
    /// 1 in snapshot mode (a number; tolerated as a string).
    #[serde(default)]
    is_snapshotuser: Option<Value>,
}

/// What an HTTP status and body mean. The access and refresh tokens are dropped: `snsapi_base`
/// needs nothing but the openid.
pub(crate) fn interpret_answer(status: u16, body: &[u8]) -> Result<OAuthIdentity, OAuthError> {
    let answer = serde_json::from_slice::<AccessTokenAnswer>(body);
    // An errcode decides, whatever the status.
    if let Ok(AccessTokenAnswer {
        errcode: Some(errcode),
        errmsg,
        ..
    }) = &answer
    {
        if *errcode != 0 {
            return Err(classify_errcode(*errcode, errmsg.as_deref().unwrap_or("")));
        }
    }
    if !(200..300).contains(&status) {
        return Err(OAuthError::Unavailable(format!("HTTP {status}")));
    }
    let answer = answer
        .map_err(|_| OAuthError::Unavailable("the answer is not the expected JSON".into()))?;
    let openid = answer
        .openid
        .ok_or_else(|| OAuthError::Unavailable("the answer has no openid".into()))?;
    if !plausible_openid(&openid) {
        return Err(OAuthError::Unavailable(
            "the answer's openid is not plausible".into(),
        ));
    }
    let is_snapshot_user = match answer.is_snapshotuser {
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => s == "1",
        _ => false,
    };
    Ok(OAuthIdentity {
        openid,
        scope: answer.scope.unwrap_or_default(),
        unionid: answer.unionid.filter(|u| !u.is_empty()),
        is_snapshot_user,
    })
}

/// Sorts a non-zero errcode.
pub fn classify_errcode(errcode: i64, errmsg: &str) -> OAuthError {
    let errmsg: String = errmsg.chars().take(MAX_ERRMSG_CHARS).collect();
    match errcode {
        ERRCODE_INVALID_CODE | ERRCODE_CODE_USED => OAuthError::CodeInvalidOrUsed { errcode },
        ERRCODE_SYSTEM_BUSY | ERRCODE_MINUTE_QUOTA => {
            OAuthError::Unavailable(format!("errcode {errcode}: {errmsg}"))
        }
        _ => OAuthError::Rejected { errcode, errmsg },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuthConfig {
        OAuthConfig::new("wxd678efh567hg6787", Secret::new("s3cr3t+/=".into()))
    }

    #[test]
    fn authorize_url_has_wechats_order_and_encodes_redirect_and_state() {
        let url = authorize_url(
            &config(),
            "https://pay.example.com/pay/gateway?key=pk_live_1&amount=100&description=a b",
            "abc123",
        )
        .unwrap();
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wxd678efh567hg6787\
             &redirect_uri=https%3A%2F%2Fpay.example.com%2Fpay%2Fgateway%3Fkey%3Dpk_live_1%26amount%3D100%26description%3Da%20b\
             &response_type=code&scope=snsapi_base&state=abc123#wechat_redirect"
        );
    }

    #[test]
    fn state_is_encoded_and_limited_to_128_bytes() {
        let mut cfg = config();
        cfg.open_base_url = "http://127.0.0.1:9/".into();
        let url = authorize_url(&cfg, "http://h/cb", "a.b-c_d~e+f/g=h&i j#k").unwrap();
        assert!(url.starts_with("http://127.0.0.1:9/connect/oauth2/authorize?appid="));
        assert!(
            url.ends_with("&state=a.b-c_d~e%2Bf%2Fg%3Dh%26i%20j%23k#wechat_redirect"),
            "{url}"
        );
        // UTF-8 counts in bytes.
        assert!(authorize_url(&cfg, "http://h/cb", &"a".repeat(128)).is_ok());
        assert_eq!(
            authorize_url(&cfg, "http://h/cb", &"a".repeat(129)),
            Err(AuthorizeUrlError::StateTooLong { len: 129 })
        );
        assert_eq!(
            authorize_url(&cfg, "http://h/cb", &"é".repeat(65)),
            Err(AuthorizeUrlError::StateTooLong { len: 130 })
        );
        let url = authorize_url(&cfg, "http://h/cb", "é").unwrap();
        assert!(url.contains("&state=%C3%A9#"), "{url}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let cfg = config();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let client = OAuthClient::new(&cfg).unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_token_answer_gives_the_identity() {
        let body = br#"{"access_token":"ACCESS","expires_in":7200,"refresh_token":"REFRESH",
            "openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","scope":"snsapi_base"}"#;
        assert_eq!(
            interpret_answer(200, body),
            Ok(OAuthIdentity {
                openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
                scope: "snsapi_base".into(),
                unionid: None,
                is_snapshot_user: false,
            })
        );
        let body = br#"{"openid":"o1","scope":"snsapi_base","is_snapshotuser":1,"errcode":0}"#;
        assert!(interpret_answer(200, body).unwrap().is_snapshot_user);
    }

    #[test]
    fn errcodes_are_sorted() {
        let code = |errcode| {
            interpret_answer(
                200,
                format!(r#"{{"errcode":{errcode},"errmsg":"m, rid: 1"}}"#).as_bytes(),
            )
            .unwrap_err()
        };
        assert_eq!(
            code(40029),
            OAuthError::CodeInvalidOrUsed { errcode: 40029 }
        );
        assert_eq!(
            code(40163),
            OAuthError::CodeInvalidOrUsed { errcode: 40163 }
        );
        assert!(matches!(code(-1), OAuthError::Unavailable(m) if m.contains("-1")));
        assert!(matches!(code(45011), OAuthError::Unavailable(_)));
        assert_eq!(
            code(40125),
            OAuthError::Rejected {
                errcode: 40125,
                errmsg: "m, rid: 1".into()
            }
        );
        assert!(matches!(
            code(40013),
            OAuthError::Rejected { errcode: 40013, .. }
        ));
        // An errcode in an error status still decides.
        assert!(matches!(
            interpret_answer(500, br#"{"errcode":40029,"errmsg":"invalid code"}"#),
            Err(OAuthError::CodeInvalidOrUsed { .. })
        ));
        // Long messages are cut.
        let long = classify_errcode(40001, &"x".repeat(1000));
        assert!(matches!(long, OAuthError::Rejected { errmsg, .. } if errmsg.len() == 200));
    }

    #[test]
    fn no_usable_answer_is_unavailable() {
        for (status, body) in [
            (502, &b"<html>bad gateway</html>"[..]),
            (503, b""),
            (404, b"not found"),
            (200, b"<html>"),
            (200, b"{}"),
            (200, br#"{"openid":""}"#),
            (200, br#"{"openid":"o\u0000x"}"#),
            (200, br#"{"openid":5}"#),
        ] {
            assert!(
                matches!(
                    interpret_answer(status, body),
                    Err(OAuthError::Unavailable(_))
                ),
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"openid":"{}"}}"#, "o".repeat(129));
        assert!(interpret_answer(200, long.as_bytes()).is_err());
        let ok = format!(r#"{{"openid":"{}"}}"#, "o".repeat(128));
        assert!(interpret_answer(200, ok.as_bytes()).is_ok());
    }

    #[test]
    fn errors_never_carry_the_secret() {
        let client = OAuthClient::new(&config()).unwrap();
        let err = client.scrub(OAuthError::Unavailable(
            "GET /sns?secret=s3cr3t%2B%2F%3D and s3cr3t+/=".into(),
        ));
        assert_eq!(
            err,
            OAuthError::Unavailable("GET /sns?secret=[redacted] and [redacted]".into())
        );
    }

    #[tokio::test]
    async fn implausible_codes_are_not_sent() {
        // The base URL is unroutable: a request would be Unavailable, not CodeInvalidOrUsed.
        let mut cfg = config();
        cfg.api_base_url = "http://127.0.0.1:9".into();
        let client = OAuthClient::new(&cfg).unwrap();
        for code in ["", "a b", "a\nb", &"c".repeat(129), "é"] {
            assert_eq!(
                client.openid_for_code(code).await,
                Err(OAuthError::CodeInvalidOrUsed { errcode: 40029 }),
                "{code:?}"
            );
        }
    }
}
