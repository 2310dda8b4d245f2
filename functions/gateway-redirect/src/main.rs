//! Lambda `gateway-redirect`: the jump-pay gateway behind API Gateway (HTTP API, payload v2):
//! `GET`/`POST /pay/gateway` (a payment link), `GET /pay/gateway/cashier` and
//! `GET /pay/gateway/status`. Wiring only: the services and the gateway (with the official
//! account's OAuth settings) are built once per cold start; all logic is in `ferrypay`.

use ferrypay_lambda::serve_gateway;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve_gateway().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrypay::{
        model::{Secret, SystemClock},
        service::gateway::{Gateway, GatewaySettings},
        store::prelude::*,
        testing::*,
        wechat::OAuthConfig,
    };
    use ferrypay_lambda::{run_gateway_event, EventAnswer};

    const LINK: &str = include_str!("../../../events/gateway-link.json");
    const LINK_IN_WECHAT: &str = include_str!("../../../events/gateway-link-wechat.json");
    const LINK_WITH_SECRET_KEY: &str = include_str!("../../../events/gateway-link-secret-key.json");
    const PAY_BY_QR: &str = include_str!("../../../events/gateway-pay-qr.json");
    const CASHIER: &str = include_str!("../../../events/gateway-cashier.json");
    const STATUS: &str = include_str!("../../../events/gateway-status.json");

    const PUBLIC_URL: &str = "https://pay.example.com";
    const APPID: &str = "wxd678efh567hg6787";

    fn gateway() -> Gateway {
        Gateway::new(GatewaySettings {
            public_url: PUBLIC_URL.into(),
            oauth: OAuthConfig {
                open_base_url: "https://open.weixin.qq.com".into(),
                // Never reached: no test here comes back from WeChat with a code.
                api_base_url: "http://127.0.0.1:9".into(),
                appid: APPID.into(),
                secret: Secret::new("test-oauth-secret-not-real".into()),
            },
        })
        .unwrap()
    }

    async fn app() -> TestApp {
        let app = app_with_clock(Arc::new(SystemClock));
        onboard_test_merchant(&app, "Event Shop").await;
        app
    }

    /// Runs the function on a real API Gateway HTTP API (v2) event from `events/`.
    async fn run(app: &TestApp, gateway: &Gateway, event: &str) -> EventAnswer {
        run_gateway_event(app, gateway, event).await.unwrap()
    }

    /// `event` with another raw query string (and the parsed copy API Gateway sends with it).
    fn with_query(event: &str, query: &str) -> String {
        let mut event: serde_json::Value = serde_json::from_str(event).unwrap();
        event["rawQueryString"] = query.into();
        let parsed: serde_json::Map<String, serde_json::Value> = url_pairs(query)
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        event["queryStringParameters"] = parsed.into();
        event.to_string()
    }

    fn url_pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn assert_html(answer: &EventAnswer) {
        assert!(
            answer
                .content_type()
                .is_some_and(|t| t.starts_with("text/html")),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_link_outside_wechat_shows_the_open_in_wechat_page() {
        let app = app().await;
        let answer = run(&app, &gateway(), LINK).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_html(&answer);
        assert!(answer.body.contains("¥12.34"), "{}", answer.body);
        assert!(answer.body.contains("拿铁"), "{}", answer.body);
        assert!(answer.body.contains("Event Shop"), "{}", answer.body);
        // The "pay on this computer" form posts to the link's canonical public URL.
        assert!(
            answer
                .body
                .contains("action=\"https://pay.example.com/pay/gateway?key=pk_test_"),
            "{}",
            answer.body
        );
        assert!(answer.location().is_none());
        assert_eq!(app.channel.calls(), 0, "no order before the payer asks");
    }

    #[tokio::test]
    async fn a_link_inside_wechat_goes_to_wechat_oauth() {
        let app = app().await;
        let answer = run(&app, &gateway(), LINK_IN_WECHAT).await;
        assert_eq!(answer.status, 302, "{}", answer.body);
        let location = answer.location().unwrap();
        let expected = format!(
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid={APPID}&redirect_uri=\
             https%3A%2F%2Fpay.example.com%2Fpay%2Fgateway%3Fkey%3D{TEST_PUBLISHABLE_KEY}\
             %26amount%3D1234%26description%3D"
        );
        assert!(location.starts_with(&expected), "{location}");
        assert!(
            location.contains("&response_type=code&scope=snsapi_base&state="),
            "{location}"
        );
        assert!(location.ends_with("#wechat_redirect"), "{location}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(app.channel.calls(), 0, "no order before the openid");
    }

    #[tokio::test]
    async fn a_link_with_a_secret_key_is_refused() {
        let app = app().await;
        let answer = run(&app, &gateway(), LINK_WITH_SECRET_KEY).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_html(&answer);
        assert!(
            answer.body.contains("secret_key_in_link"),
            "{}",
            answer.body
        );
        assert!(
            !answer.body.contains(TEST_SECRET_KEY),
            "the key is not echoed: {}",
            answer.body
        );
    }

    #[tokio::test]
    async fn paying_a_link_by_qr_creates_the_order_and_sees_it_through() {
        let app = app().await;
        let gateway = gateway();
        let answer = run(&app, &gateway, PAY_BY_QR).await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        let location = answer.location().unwrap().to_string();
        let cashier_query = location
            .strip_prefix("https://pay.example.com/pay/gateway/cashier?")
            .unwrap_or_else(|| panic!("{location}"));
        let (_, order_no) = url_pairs(cashier_query)
            .into_iter()
            .find(|(k, _)| k == "order_no")
            .unwrap();
        let order = app
            .store
            .get_order(&ferrypay::model::OrderNo::parse(&order_no).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.amount.get(), 1234);
        assert_eq!(order.description, "拿铁");
        assert_eq!(order.attach.as_deref(), Some("user_id=123"));
        assert_eq!(order.pay_type, ferrypay::model::PayType::Native);

        // The cashier (with the ticket from the redirect) shows the QR code to scan.
        let answer = run(&app, &gateway, &with_query(CASHIER, cashier_query)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_html(&answer);
        assert!(answer.body.contains("¥12.34"), "{}", answer.body);
        assert!(
            answer.body.contains("data:image/png;base64,"),
            "{}",
            answer.body
        );

        // Its status check: pending, then paid once the payer has paid.
        let status_event = with_query(STATUS, cashier_query);
        let answer = run(&app, &gateway, &status_event).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let body = answer.json().unwrap();
        assert_eq!(body["status"], "pending");
        assert_eq!(body["order_no"], order_no.as_str());
        pay_test_order(&app, &order).await;
        let body = run(&app, &gateway, &status_event).await.json().unwrap();
        assert_eq!(body["status"], "paid", "{body}");
    }

    #[tokio::test]
    async fn a_cashier_with_a_forged_ticket_is_403() {
        let app = app().await;
        let answer = run(&app, &gateway(), CASHIER).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_html(&answer);
        assert!(answer.body.contains("invalid_ticket"), "{}", answer.body);
    }

    #[tokio::test]
    async fn a_status_check_with_a_forged_ticket_is_403_json() {
        let app = app().await;
        let answer = run(&app, &gateway(), STATUS).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert!(
            answer
                .content_type()
                .is_some_and(|t| t.starts_with("application/json")),
            "{answer:?}"
        );
        let body = answer.json().unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "invalid_ticket");
    }
}
