//! WeChat OAuth (snsapi_base) end to end: the real `authorize_url` and `OAuthClient` against the
//! mock's `/connect/oauth2/authorize` and `/sns/oauth2/access_token`: the redirect with code and
//! state, the exchange, single-use and expiring codes, wrong secret and appid, WeChat busy, and
//! WeChat unreachable.

use std::{collections::HashMap, sync::Arc};

use crate::harness;
use ferrypay::{
    model::{ManualClock, Secret},
    service::{NewMerchant, ServiceConfig},
    testing::clock_at_start,
    wechat::{authorize_url, OAuthClient, OAuthConfig, OAuthError, OAuthIdentity},
};
use ferrypay_cli::{
    dev::{mock_oauth_config, DevClock, DevOptions, DevStack, DevStore, DevWechat},
    dev_keys,
    wechat_mock::{MockConfig, MockServer, OAuthControl, OAuthEndpoint, OAUTH_CODE_TTL_SECS},
};
use serde_json::{json, Value};

/// Where the payer lands after the authorization: never contacted (redirects are not followed).
const CALLBACK: &str = "http://127.0.0.1:9/pay/gateway?key=pk_test_1&amount=100&description=a%20b";

struct Oauth {
    server: MockServer,
    clock: Arc<ManualClock>,
    config: OAuthConfig,
    client: OAuthClient,
    /// A browser that does not follow redirects, to read the 302.
    browser: reqwest::Client,
}

impl Oauth {
    async fn start() -> Oauth {
        let clock = clock_at_start();
        let server = MockServer::start(
            "127.0.0.1:0".parse().unwrap(),
            MockConfig::dev().unwrap(),
            clock.clone(),
        )
        .await
        .unwrap();
        let config = mock_oauth_config(server.base_url());
        let client = OAuthClient::new(&config).unwrap();
        let browser = harness::no_redirect_client();
        Oauth {
            server,
            clock,
            config,
            client,
            browser,
        }
    }

    /// The payer's browser at the authorization URL: the 302's Location.
    async fn authorize(&self, redirect_uri: &str, state: &str) -> String {
        let url = authorize_url(&self.config, redirect_uri, state).unwrap();
        let (status, location, _) = self.get(&url).await;
        assert_eq!(status, 302);
        location.unwrap()
    }

    /// The code WeChat hands the callback (asserting the state came back unchanged).
    async fn code(&self) -> String {
        let location = self.authorize(CALLBACK, "st4te").await;
        let query = query_of(&location);
        assert_eq!(query["state"], "st4te");
        query["code"].clone()
    }

    async fn get(&self, url: &str) -> (u16, Option<String>, String) {
        let res = self.browser.get(url).send().await.unwrap();
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        (status, location, res.text().await.unwrap())
    }

    async fn control(&self, body: Value) -> (u16, Value) {
        let res = self
            .browser
            .post(format!("{}/mock/oauth", self.server.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn authorize_redirects_with_code_and_state_and_the_code_gives_the_openid() {
    let oauth = Oauth::start().await;
    let location = oauth.authorize(CALLBACK, "st4te").await;
    // The callback's own query is kept, code and state are appended.
    assert!(
        location.starts_with(
            "http://127.0.0.1:9/pay/gateway?key=pk_test_1&amount=100&description=a%20b&code="
        ),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["key"], "pk_test_1");
    assert_eq!(query["amount"], "100");
    assert_eq!(query["description"], "a b");
    assert_eq!(query["state"], "st4te");
    let code = &query["code"];
    assert_eq!(code.len(), 32);

    let identity = oauth.client.openid_for_code(code).await.unwrap();
    assert_eq!(
        identity,
        OAuthIdentity {
            openid: dev_keys::OAUTH_OPENID.into(),
            scope: "snsapi_base".into(),
            unionid: None,
            is_snapshot_user: false,
        }
    );

    // The calls are recorded, without the secret.
    let calls = oauth.server.mock.oauth_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].endpoint, OAuthEndpoint::Authorize);
    assert_eq!(calls[0].code.as_deref(), Some(code.as_str()));
    assert_eq!(calls[0].state.as_deref(), Some("st4te"));
    assert_eq!(calls[1].endpoint, OAuthEndpoint::AccessToken);
    assert_eq!(calls[1].openid.as_deref(), Some(dev_keys::OAUTH_OPENID));
    assert_eq!(calls[1].errcode, None);
    let (_, _, listed) = oauth
        .get(&format!("{}/mock/oauth", oauth.server.base_url()))
        .await;
    assert!(!listed.contains(dev_keys::OAUTH_SECRET), "{listed}");
}

#[tokio::test]
async fn state_and_redirect_uri_survive_encoding() {
    let oauth = Oauth::start().await;
    // No query of its own: code and state start one. A state outside [A-Za-z0-9] round-trips.
    let state = "a.b-c_d~e+f/g=h&i j";
    let location = oauth.authorize("http://127.0.0.1:9/cb", state).await;
    assert!(
        location.starts_with("http://127.0.0.1:9/cb?code="),
        "{location}"
    );
    assert_eq!(query_of(&location)["state"], state);
    let state = "s".repeat(128);
    let location = oauth.authorize("http://127.0.0.1:9/cb", &state).await;
    assert_eq!(query_of(&location)["state"], state);
}

#[tokio::test]
async fn the_payer_is_chosen_by_the_control() {
    let oauth = Oauth::start().await;
    let (status, settings) = oauth
        .control(json!({"openid": "oTestPayer_123", "snapshot_user": true}))
        .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["openid"], "oTestPayer_123");
    let code = oauth.code().await;
    let identity = oauth.client.openid_for_code(&code).await.unwrap();
    assert_eq!(identity.openid, "oTestPayer_123");
    assert!(identity.is_snapshot_user);

    // The same from Rust; a code keeps the payer it was issued for.
    let earlier = oauth.code().await;
    oauth
        .server
        .mock
        .set_oauth(OAuthControl {
            openid: Some("oAnotherPayer".into()),
            snapshot_user: Some(false),
            busy: None,
        })
        .unwrap();
    let later = oauth.code().await;
    let later = oauth.client.openid_for_code(&later).await.unwrap();
    assert_eq!(later.openid, "oAnotherPayer");
    assert!(!later.is_snapshot_user);
    let earlier = oauth.client.openid_for_code(&earlier).await.unwrap();
    assert_eq!(earlier.openid, "oTestPayer_123");

    // Implausible openids and unknown fields are refused.
    for body in [
        json!({"openid": ""}),
        json!({"openid": "o\nx"}),
        json!({"opnid": "o"}),
    ] {
        let (status, answer) = oauth.control(body).await;
        assert_eq!(status, 400, "{answer}");
    }
}

#[tokio::test]
async fn a_code_works_once_then_is_code_invalid_or_used() {
    let oauth = Oauth::start().await;
    let code = oauth.code().await;
    assert!(oauth.client.openid_for_code(&code).await.is_ok());
    // A page refresh: the same code again.
    assert_eq!(
        oauth.client.openid_for_code(&code).await,
        Err(OAuthError::CodeInvalidOrUsed { errcode: 40163 })
    );
    assert_eq!(
        oauth.client.openid_for_code(&code).await,
        Err(OAuthError::CodeInvalidOrUsed { errcode: 40163 })
    );
    // The restart: a fresh authorization, a fresh code.
    let fresh = oauth.code().await;
    assert_ne!(fresh, code);
    assert!(oauth.client.openid_for_code(&fresh).await.is_ok());
}

#[tokio::test]
async fn an_unknown_code_is_code_invalid_or_used() {
    let oauth = Oauth::start().await;
    assert_eq!(
        oauth
            .client
            .openid_for_code("061AbCdEfGhIjKlMnOpQrStUvWxYz012")
            .await,
        Err(OAuthError::CodeInvalidOrUsed { errcode: 40029 })
    );
    let calls = oauth.server.mock.oauth_calls();
    assert_eq!(calls.last().unwrap().errcode, Some(40029));
}

#[tokio::test]
async fn codes_expire_after_five_minutes() {
    let oauth = Oauth::start().await;
    let fresh_enough = oauth.code().await;
    let too_old = oauth.code().await;
    oauth.clock.advance(OAUTH_CODE_TTL_SECS - 1);
    assert!(oauth.client.openid_for_code(&fresh_enough).await.is_ok());
    oauth.clock.advance(1);
    assert_eq!(
        oauth.client.openid_for_code(&too_old).await,
        Err(OAuthError::CodeInvalidOrUsed { errcode: 40029 })
    );
    // Codes issued now live again their 5 minutes.
    let code = oauth.code().await;
    assert!(oauth.client.openid_for_code(&code).await.is_ok());
}

#[tokio::test]
async fn a_wrong_secret_or_appid_is_rejected_and_leaves_the_code_usable() {
    let oauth = Oauth::start().await;
    let code = oauth.code().await;

    let mut wrong = oauth.config.clone();
    wrong.secret = Secret::new("not-the-secret-hunter2".into());
    let err = OAuthClient::new(&wrong)
        .unwrap()
        .openid_for_code(&code)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OAuthError::Rejected { errcode: 40125, errmsg } if errmsg.starts_with("invalid appsecret")),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("hunter2"));

    let mut wrong = oauth.config.clone();
    wrong.appid = "wx0000000000000000".into();
    let err = OAuthClient::new(&wrong)
        .unwrap()
        .openid_for_code(&code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OAuthError::Rejected { errcode: 40013, .. }),
        "{err:?}"
    );

    // Neither used the code up.
    assert!(oauth.client.openid_for_code(&code).await.is_ok());
    let errcodes: Vec<Option<i64>> = oauth
        .server
        .mock
        .oauth_calls()
        .iter()
        .filter(|c| c.endpoint == OAuthEndpoint::AccessToken)
        .map(|c| c.errcode)
        .collect();
    assert_eq!(errcodes, [Some(40125), Some(40013), None]);
}

#[tokio::test]
async fn wechat_busy_is_unavailable_and_the_code_survives() {
    let oauth = Oauth::start().await;
    let code = oauth.code().await;
    let (status, _) = oauth.control(json!({"busy": 1})).await;
    assert_eq!(status, 200);
    let err = oauth.client.openid_for_code(&code).await.unwrap_err();
    assert!(matches!(err, OAuthError::Unavailable(_)), "{err:?}");
    assert!(oauth.client.openid_for_code(&code).await.is_ok());
}

#[tokio::test]
async fn wechat_unreachable_is_unavailable_without_the_secret() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = mock_oauth_config(format!("http://{addr}"));
    config.secret = Secret::new("secret-hunter2".into());
    let client = OAuthClient::new(&config).unwrap();
    let err = client
        .openid_for_code("061AbCdEfGhIjKlMnOpQrStUvWxYz012")
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::Unavailable(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("secret="), "{shown}");
}

#[tokio::test]
async fn bad_authorizations_get_an_error_page() {
    let oauth = Oauth::start().await;
    let base = oauth.server.base_url();
    let good = format!(
        "{base}/connect/oauth2/authorize?appid={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&response_type=code&scope=snsapi_base&state=s",
        dev_keys::APPID
    );
    let (status, location, _) = oauth.get(&good).await;
    assert_eq!((status, location.is_some()), (302, true));
    // snsapi_userinfo is accepted too (no consent page in the mock).
    let (status, _, _) = oauth
        .get(&good.replace("snsapi_base", "snsapi_userinfo"))
        .await;
    assert_eq!(status, 302);

    let long_state = format!("state={}", "s".repeat(129));
    for (bad, refused) in [
        (good.replace(dev_keys::APPID, "wx0000000000000000"), "appid"),
        (
            good.replace(
                "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb",
                "redirect_uri=cb",
            ),
            "redirect_uri",
        ),
        (
            good.replace("&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb", ""),
            "redirect_uri",
        ),
        (
            good.replace("redirect_uri=http", "redirect_uri=javascript"),
            "redirect_uri",
        ),
        (
            good.replace("response_type=code", "response_type=token"),
            "response_type",
        ),
        (good.replace("snsapi_base", "snsapi_login"), "scope"),
        (good.replace("&scope=snsapi_base", ""), "scope"),
        (good.replace("state=s", &long_state), "state"),
    ] {
        let (status, location, page) = oauth.get(&bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(location, None);
        assert!(page.contains("授权失败"), "{page}");
        let last = oauth.server.mock.oauth_calls().pop().unwrap();
        assert_eq!(last.refused, Some(refused), "{bad}");
        assert_eq!(last.code, None);
    }
}

#[tokio::test]
async fn the_dev_stack_exposes_oauth_against_its_mock() {
    let stack = DevStack::start(DevOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        demo: NewMerchant {
            name: "OAuth Shop".into(),
            ..NewMerchant::default()
        },
        config: ServiceConfig {
            allow_http_notify_urls: true,
            ..ServiceConfig::default()
        },
        store: DevStore::Memory,
        webhook_worker: None,
        oauth: None,
        clock: DevClock::default(),
        wechat: DevWechat::Mock {
            listen: "127.0.0.1:0".parse().unwrap(),
            notify_retry: Vec::new(),
        },
    })
    .await
    .unwrap();
    let config = stack.oauth.clone().unwrap();
    let mock = stack.mock.as_ref().unwrap();
    assert_eq!(config.open_base_url, mock.base_url());
    assert_eq!(config.api_base_url, mock.base_url());
    assert_eq!(config.appid, dev_keys::APPID);

    let browser = harness::no_redirect_client();
    let url = authorize_url(&config, "http://127.0.0.1:9/cb", "x").unwrap();
    let res = browser.get(url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let code = query_of(&location)["code"].clone();
    let identity = OAuthClient::new(&config)
        .unwrap()
        .openid_for_code(&code)
        .await
        .unwrap();
    assert_eq!(identity.openid, dev_keys::OAUTH_OPENID);
}
