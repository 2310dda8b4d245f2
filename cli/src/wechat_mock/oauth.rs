//! WeChat OAuth (网页授权): the silent authorization that issues a code, the code-for-openid
//! exchange, and the settings `POST /mock/oauth` changes.

use std::collections::{HashMap, VecDeque};

use ferrypay::{
    model::Timestamp,
    sign::constant_time_eq,
    wechat::{
        oauth::{plausible_openid, MAX_STATE_BYTES},
        signer::random_alphanumeric,
    },
};
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Answer, WechatMock};

/// How long an OAuth code can be exchanged (WeChat: 5 minutes).
pub const OAUTH_CODE_TTL_SECS: i64 = 300;
/// The most OAuth calls remembered.
const MAX_OAUTH_CALLS: usize = 1000;

/// Which OAuth endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthEndpoint {
    Authorize,
    AccessToken,
}

/// One OAuth call, for tests and `GET /mock/oauth`. It never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OAuthCall {
    pub endpoint: OAuthEndpoint,
    /// The code issued (authorize) or presented (access_token).
    pub code: Option<String>,
    /// The state passed through (authorize).
    pub state: Option<String>,
    /// The openid the code stands for, when the call succeeded.
    pub openid: Option<String>,
    /// Authorize: the parameter refused (`appid`, `redirect_uri`, `response_type`, `scope`,
    /// `state`).
    pub refused: Option<&'static str>,
    /// Access token: the errcode answered.
    pub errcode: Option<i64>,
}

/// Changes to how the mock's OAuth answers (`POST /mock/oauth`); absent fields are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthControl {
    /// The payer's openid for the next authorizations.
    #[serde(default)]
    pub openid: Option<String>,
    /// Whether the next authorizations are in snapshot mode (`is_snapshotuser: 1`).
    #[serde(default)]
    pub snapshot_user: Option<bool>,
    /// How many next code exchanges answer `{"errcode": -1}` (system busy).
    #[serde(default)]
    pub busy: Option<u32>,
}

/// An OAuth code the mock issued.
#[derive(Debug, Clone)]
struct IssuedCode {
    openid: String,
    scope: String,
    snapshot_user: bool,
    issued_at: Timestamp,
    used: bool,
}

/// The mock's OAuth: the current payer, the codes issued, the calls so far.
#[derive(Debug)]
pub(super) struct OAuthState {
    openid: String,
    snapshot_user: bool,
    busy: u32,
    /// Codes younger than [`OAUTH_CODE_TTL_SECS`] (older ones are dropped at each authorize).
    codes: HashMap<String, IssuedCode>,
    calls: VecDeque<OAuthCall>,
}

impl OAuthState {
    pub(super) fn new(openid: String) -> OAuthState {
        OAuthState {
            openid,
            snapshot_user: false,
            busy: 0,
            codes: HashMap::new(),
            calls: VecDeque::new(),
        }
    }

    fn record(&mut self, call: OAuthCall) {
        if self.calls.len() >= MAX_OAUTH_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    pub(super) fn settings(&self) -> Value {
        json!({
            "openid": self.openid,
            "snapshot_user": self.snapshot_user,
            "busy": self.busy,
            "calls": self.calls,
        })
    }
}

impl WechatMock {
    /// Changes how OAuth answers from now on; returns the settings and the calls so far.
    pub fn set_oauth(&self, control: OAuthControl) -> Result<Value, String> {
        if let Some(openid) = &control.openid {
            if !plausible_openid(openid) {
                return Err("openid: 1 to 128 characters, no control characters".into());
            }
        }
        let mut oauth = self.oauth.lock().map_err(|_| "lock poisoned".to_string())?;
        if let Some(openid) = control.openid {
            oauth.openid = openid;
        }
        if let Some(snapshot_user) = control.snapshot_user {
            oauth.snapshot_user = snapshot_user;
        }
        if let Some(busy) = control.busy {
            oauth.busy = busy;
        }
        Ok(oauth.settings())
    }

    /// Every OAuth call so far (the last 1000), oldest first.
    pub fn oauth_calls(&self) -> Vec<OAuthCall> {
        self.oauth
            .lock()
            .map(|o| o.calls.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `GET /connect/oauth2/authorize`: a silent authorization, 302 back with a fresh code.
    pub(super) fn oauth_authorize(&self, query: Option<&str>) -> Answer {
        let params = query_params(query);
        let get = |name: &str| params.get(name).map(String::as_str);
        let state = get("state").unwrap_or_default().to_string();
        let redirect = get("redirect_uri")
            .and_then(|uri| url::Url::parse(uri).ok())
            .filter(|uri| matches!(uri.scheme(), "http" | "https") && uri.has_host());
        let scope = get("scope").unwrap_or_default().to_string();
        let refused = if get("appid") != Some(self.config.appid.as_str()) {
            Some(("appid", "appid 参数错误 (not the mock's appid)"))
        } else if redirect.is_none() {
            Some(("redirect_uri", "10003 redirect_uri 参数错误"))
        } else if get("response_type") != Some("code") {
            Some(("response_type", "response_type 参数错误 (must be code)"))
        } else if !matches!(scope.as_str(), "snsapi_base" | "snsapi_userinfo") {
            Some(("scope", "10005 scope 参数错误或没有 scope 权限"))
        } else if state.len() > MAX_STATE_BYTES {
            Some(("state", "state 参数错误 (at most 128 bytes)"))
        } else {
            None
        };
        let Ok(mut oauth) = self.oauth.lock() else {
            return oauth_page(StatusCode::INTERNAL_SERVER_ERROR, "系统错误");
        };
        let (Some(mut location), None) = (redirect, refused) else {
            let (param, message) = refused.unwrap_or(("redirect_uri", "参数错误"));
            oauth.record(OAuthCall {
                endpoint: OAuthEndpoint::Authorize,
                code: None,
                state: (state.len() <= MAX_STATE_BYTES).then_some(state),
                openid: None,
                refused: Some(param),
                errcode: None,
            });
            return oauth_page(StatusCode::BAD_REQUEST, message);
        };
        let Ok(code) = random_alphanumeric(32) else {
            return oauth_page(StatusCode::INTERNAL_SERVER_ERROR, "系统错误");
        };
        let now = self.clock.now();
        oauth
            .codes
            .retain(|_, issued| now.unix() - issued.issued_at.unix() < OAUTH_CODE_TTL_SECS);
        let openid = oauth.openid.clone();
        let snapshot_user = oauth.snapshot_user;
        oauth.codes.insert(
            code.clone(),
            IssuedCode {
                openid: openid.clone(),
                scope,
                snapshot_user,
                issued_at: now,
                used: false,
            },
        );
        oauth.record(OAuthCall {
            endpoint: OAuthEndpoint::Authorize,
            code: Some(code.clone()),
            state: Some(state.clone()),
            openid: Some(openid),
            refused: None,
            errcode: None,
        });
        drop(oauth);
        location
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
        let mut response = http::Response::new(String::new());
        *response.status_mut() = StatusCode::FOUND;
        if let Ok(value) = header::HeaderValue::from_str(location.as_str()) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }

    /// `GET /sns/oauth2/access_token`: a code for the payer's openid, once.
    pub(super) fn oauth_access_token(&self, query: Option<&str>) -> Answer {
        let params = query_params(query);
        let code = params.get("code").cloned();
        let Ok(mut oauth) = self.oauth.lock() else {
            return oauth_json(&json!({"errcode": -1, "errmsg": "system error"}));
        };
        let result = self.exchange(&mut oauth, &params);
        let (body, openid, errcode) = match result {
            Ok((body, openid)) => (body, Some(openid), None),
            Err((errcode, errmsg)) => {
                let rid = format!("mock-{:08}", self.next());
                (
                    json!({"errcode": errcode, "errmsg": format!("{errmsg}, rid: {rid}")}),
                    None,
                    Some(errcode),
                )
            }
        };
        oauth.record(OAuthCall {
            endpoint: OAuthEndpoint::AccessToken,
            code,
            state: None,
            openid,
            refused: None,
            errcode,
        });
        oauth_json(&body)
    }

    /// Checks an exchange as WeChat does, in its order; uses the code up only on success.
    fn exchange(
        &self,
        oauth: &mut OAuthState,
        params: &HashMap<String, String>,
    ) -> Result<(Value, String), (i64, &'static str)> {
        let get = |name: &str| {
            params
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        if oauth.busy > 0 {
            oauth.busy -= 1;
            return Err((-1, "system error"));
        }
        let appid = get("appid").ok_or((41002, "appid missing"))?;
        if appid != self.config.appid {
            return Err((40013, "invalid appid"));
        }
        let secret = get("secret").ok_or((41004, "appsecret missing"))?;
        if !constant_time_eq(
            secret.as_bytes(),
            self.config.oauth_secret.expose().as_bytes(),
        ) {
            return Err((40125, "invalid appsecret"));
        }
        let code = get("code").ok_or((41008, "missing code"))?;
        if get("grant_type") != Some("authorization_code") {
            return Err((40002, "invalid grant_type"));
        }
        let now = self.clock.now();
        let issued = oauth
            .codes
            .get_mut(code)
            .filter(|issued| now.unix() - issued.issued_at.unix() < OAUTH_CODE_TTL_SECS)
            .ok_or((40029, "invalid code"))?;
        if issued.used {
            return Err((40163, "code been used"));
        }
        issued.used = true;
        let n = self.next();
        let mut body = json!({
            "access_token": format!("MOCK_ACCESS_TOKEN_{n:08}"),
            "expires_in": 7200,
            "refresh_token": format!("MOCK_REFRESH_TOKEN_{n:08}"),
            "openid": issued.openid,
            "scope": issued.scope,
        });
        if issued.snapshot_user {
            body["is_snapshotuser"] = json!(1);
        }
        Ok((body, issued.openid.clone()))
    }
}

/// A query string's parameters, decoded; the first of repeated names wins.
fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// WeChat's OAuth error page, small (it never echoes the request).
fn oauth_page(status: StatusCode, message: &str) -> Answer {
    let mut response = http::Response::new(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>微信网页授权 (ferrypay mock)</title></head>\
         <body><h1>授权失败</h1><p>{message}</p></body></html>\n"
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// An OAuth JSON answer: always HTTP 200, as WeChat answers errors too.
fn oauth_json(body: &Value) -> Answer {
    let mut response = http::Response::new(body.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; encoding=utf-8"),
    );
    response
}
