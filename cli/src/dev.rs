//! `ferrypay dev`: the whole merchant API on one local HTTP server, through the same
//! `ferrypay::api` code the Lambda functions run, on the in-memory store.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use ferrypay::{
    api::{self, params::Params, ApiError},
    channel::FakeChannel,
    config::Env,
    model::{Merchant, OrderNo, Secret},
    service::{Ferrypay, IssuedKeys, NewMerchant, ServiceConfig},
    store::{MemoryStore, Store},
};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::http_server;

pub type DevApp = Ferrypay<MemoryStore, FakeChannel>;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Dev-only: marks an order paid in the fake channel and settles it. Not in the Lambda API.
pub const DEV_PAY_PATH: &str = "/dev/pay";

/// What `ferrypay dev` starts with.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub listen: SocketAddr,
    pub demo: NewMerchant,
    pub config: ServiceConfig,
}

impl DevOptions {
    /// Reads `FERRYPAY_DEMO_API_KEY`, `FERRYPAY_DEMO_PUBLISHABLE_KEY`,
    /// `FERRYPAY_DEMO_WEBHOOK_SECRET`, `FERRYPAY_DEMO_NOTIFY_URL` (each pins that value) and
    /// the service settings (`FERRYPAY_RATE_LIMIT_PER_MINUTE`, ...).
    pub fn from_env(listen: SocketAddr) -> Result<DevOptions, String> {
        let mut env = Env::process();
        let mut config = ServiceConfig::from_env(&mut env);
        config.allow_http_notify_urls = true;
        let demo = NewMerchant {
            name: "ferrypay demo shop".into(),
            notify_url: env.optional("FERRYPAY_DEMO_NOTIFY_URL"),
            secret_key: env.optional("FERRYPAY_DEMO_API_KEY").map(Secret::new),
            publishable_key: env.optional("FERRYPAY_DEMO_PUBLISHABLE_KEY"),
            webhook_secret: env
                .optional("FERRYPAY_DEMO_WEBHOOK_SECRET")
                .map(Secret::new),
        };
        env.finish().map_err(|e| e.to_string())?;
        if let Some(url) = &demo.notify_url {
            if !api::orders::notify_url_acceptable(url, true) {
                return Err(format!(
                    "FERRYPAY_DEMO_NOTIFY_URL={url:?} is not an http(s) URL"
                ));
            }
        }
        Ok(DevOptions {
            listen,
            demo,
            config,
        })
    }
}

/// A running local stack. Dropping it stops the server.
pub struct DevStack {
    pub addr: SocketAddr,
    pub app: Arc<DevApp>,
    pub merchant: Merchant,
    pub keys: IssuedKeys,
    server: JoinHandle<()>,
}

impl DevStack {
    pub async fn start(options: DevOptions) -> Result<DevStack, String> {
        let app = Arc::new(Ferrypay::new(
            MemoryStore::new(),
            FakeChannel::new(),
            options.config,
        ));
        let (merchant, keys) = app
            .onboard_merchant(options.demo)
            .await
            .map_err(|e| format!("demo merchant: {e}"))?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let served = Arc::clone(&app);
        let server = http_server::serve(listener, move |req, _peer| {
            let app = Arc::clone(&served);
            async move { route(&app, req).await }
        });
        Ok(DevStack {
            addr,
            app,
            merchant,
            keys,
            server,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `ferrypay dev` prints on start: the demo keys and a first request to try.
    pub fn banner(&self) -> String {
        let base = self.base_url();
        let sk = self.keys.secret_key.expose();
        format!(
            "ferrypay dev: merchant API on {base} (in-memory store, fake WeChat Pay channel)\n\
             \n\
             demo merchant   {id} ({name})\n\
             secret key      {sk}\n\
             publishable key {pk}\n\
             webhook secret  {wh}\n\
             notify url      {notify}\n\
             \n\
             try:\n\
             curl -s -X POST {base}/api/v1/pay/create -H 'X-API-Key: {sk}' \\\n  \
               -H 'Content-Type: application/json' -d '{{\"amount\": 100, \"description\": \"Coffee\"}}'\n\
             curl -s -X POST {base}{DEV_PAY_PATH} -d '{{\"order_no\": \"FP...\"}}'   # dev only: the payer pays\n",
            id = self.merchant.id,
            name = self.merchant.name,
            pk = self.keys.publishable_key,
            wh = self.keys.webhook_secret.expose(),
            notify = self.merchant.notify_url.as_deref().unwrap_or("(none)"),
        )
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn route(app: &DevApp, req: http::Request<Bytes>) -> http::Response<String> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, DEV_PAY_PATH) => match dev_pay(app, &req).await {
            Ok(body) => api::json_response(StatusCode::OK, &body),
            Err(err) => api::error_response(&err),
        },
        (&Method::GET, "/healthz") => api::json_response(StatusCode::OK, &json!({"ok": true})),
        _ => api::handle(app, req).await,
    }
}

/// The payer pays `order_no` in the fake channel; the order then settles by query-through,
/// exactly as a lost-notification order would with WeChat Pay.
async fn dev_pay(app: &DevApp, req: &http::Request<Bytes>) -> Result<serde_json::Value, ApiError> {
    let params = Params::parse(req.uri().query(), req.body())?;
    params.only(&["order_no"])?;
    let no = params
        .text("order_no")?
        .ok_or(ApiError::MissingField("order_no"))?;
    let order_no = OrderNo::parse(&no).ok_or(ApiError::InvalidField("order_no"))?;
    let order = app
        .store
        .get_order(&order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    if app.channel.pay(&order_no, app.clock.now()).is_none() {
        return Err(match order.status {
            ferrypay::model::OrderStatus::Paid => ApiError::OrderPaid,
            _ => ApiError::OrderClosed,
        });
    }
    let order = app.refresh(order).await?;
    Ok(json!({"success": true, "order": api::orders::order_json(&order)}))
}
