//! `ferrypay dev`: the whole public API on one local HTTP server, through the same
//! `ferrypay::api` code the Lambda functions run, on the in-memory store and queue, with the
//! real WeChat Pay client talking to the in-process WeChat Pay mock (or, when `WECHATPAY_*` is
//! set, to that endpoint instead), and the notify-worker running in-process on the queue, so a
//! payment reaches the demo merchant's notify URL as a signed webhook.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use ferrypay::{
    api::{
        self,
        gateway::{handle_gateway, is_gateway_path},
        health::{handle_health, is_health_path, HEALTH_PATH},
        notify::WECHAT_NOTIFY_PATH,
    },
    config::DevConfig,
    model::{Clock, Merchant, MerchantId, Secret, SystemClock},
    outbound::OutboundPolicy,
    pages::{MessagePage, Tone},
    queue::{MemoryQueue, Queue, MAX_BATCH},
    service::{
        gateway::{Gateway, GatewaySettings},
        health::HealthCheck,
        retry::RetrySchedule,
        Backends, ErrorCode, Ferrypay, IssuedKeys, NewMerchant, OnboardError, ServiceConfig,
        WebhookSender, WebhookWorker,
    },
    sign::hash_api_key,
    store::{DynamoStore, EitherStore, LocalDevKeys, MemoryStore, MerchantStore, SecretKeys},
    wechat::{
        OAuthConfig, PrivateKey, RetryPolicy, VerifyingKey, WechatPayClient, WechatPayConfig,
    },
};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    dev_inbox::{DevInbox, DEV_INBOX_PATH},
    dev_keys, http_server,
    wechat_mock::{MockConfig, MockServer},
};

/// The dev stack's backends: the in-memory store (or DynamoDB), the in-memory queue, the real
/// WeChat Pay client.
pub struct DevBackends;

impl Backends for DevBackends {
    type Store = EitherStore;
    type Channel = WechatPayClient;
    type Queue = MemoryQueue;
}

pub type DevApp = Ferrypay<DevBackends>;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_TABLE: &str = "ferrypay-dev";
pub const DEFAULT_MOCK_LISTEN: &str = "127.0.0.1:8081";
/// How often the in-process worker looks at the queue when it was empty.
const WORKER_POLL: Duration = Duration::from_millis(50);

/// Which WeChat Pay the dev stack talks to.
#[derive(Debug, Clone)]
pub enum DevWechat {
    /// The in-process mock, on its own port, with the dev keys.
    Mock {
        listen: SocketAddr,
        notify_retry: Vec<Duration>,
    },
    /// Any APIv3 endpoint (`WECHATPAY_*`); its `notify_url` is filled in at start.
    External(Box<WechatPayConfig>),
}

/// Where the dev stack keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevStore {
    Memory,
    /// A DynamoDB table (created if missing); with an endpoint, a local emulator such as
    /// moto (dummy credentials), without one, AWS itself (the usual credentials).
    Dynamo {
        endpoint: Option<String>,
        table: String,
    },
}

/// What `ferrypay dev` starts with.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub listen: SocketAddr,
    /// The address WeChat Pay reaches us at (`FERRYPAY_PUBLIC_URL`); default the listen address.
    pub public_url: Option<String>,
    pub demo: NewMerchant,
    pub config: ServiceConfig,
    pub wechat: DevWechat,
    pub store: DevStore,
    /// The in-process notify-worker's retry schedule; `None` runs no worker, so webhook jobs
    /// stay on the queue (tests that look at them).
    pub webhook_worker: Option<RetrySchedule>,
    /// WeChat OAuth for jump-pay links (`WECHAT_OAUTH_SECRET`, `WECHAT_OPEN_BASE_URL`,
    /// `WECHAT_API_BASE_URL`); `None` uses the in-process mock's, or with an external WeChat
    /// Pay and no OAuth secret leaves jump-pay off.
    pub oauth: Option<OAuthConfig>,
    /// The stack's clock (and the mock's): the system's, or a test's manual one.
    pub clock: DevClock,
}

/// The dev stack's clock: [`SystemClock`] by default.
#[derive(Clone)]
pub struct DevClock(pub Arc<dyn Clock>);

impl Default for DevClock {
    fn default() -> Self {
        DevClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for DevClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevClock({})", self.0.now().unix())
    }
}

impl DevOptions {
    /// The options from the process environment ([`DevConfig`]: the demo merchant's pinned
    /// values, `FERRYPAY_PUBLIC_URL`, the webhook schedule, the service settings, WeChat OAuth
    /// and, if any is set, the `WECHATPAY_*` settings) and the command line's addresses and
    /// store.
    pub fn from_env(
        listen: SocketAddr,
        mock_listen: SocketAddr,
        store: DevStore,
    ) -> Result<DevOptions, String> {
        let config = DevConfig::from_env().map_err(|e| e.to_string())?;
        Ok(DevOptions::from_config(config, listen, mock_listen, store))
    }

    pub fn from_config(
        config: DevConfig,
        listen: SocketAddr,
        mock_listen: SocketAddr,
        store: DevStore,
    ) -> DevOptions {
        let wechat = match config.wechat {
            Some(external) => DevWechat::External(Box::new(external)),
            None => DevWechat::Mock {
                listen: mock_listen,
                notify_retry: MockConfig::DEV_NOTIFY_RETRY
                    .map(Duration::from_secs)
                    .to_vec(),
            },
        };
        DevOptions {
            listen,
            public_url: config.public_url,
            demo: config.demo,
            config: config.service,
            wechat,
            store,
            webhook_worker: Some(config.webhook_schedule),
            oauth: config.oauth,
            clock: DevClock::default(),
        }
    }
}

/// The WeChat Pay client settings that talk to the mock with the dev keys.
pub fn mock_client_config(base_url: String, notify_url: String) -> Result<WechatPayConfig, String> {
    Ok(WechatPayConfig {
        base_url,
        mchid: dev_keys::MCHID.into(),
        appid: dev_keys::APPID.into(),
        merchant_serial: dev_keys::MERCHANT_SERIAL.into(),
        private_key: PrivateKey::from_pem(dev_keys::MERCHANT_PRIVATE_KEY)
            .map_err(|e| e.to_string())?,
        apiv3_key: dev_keys::APIV3_KEY.parse().map_err(|e| format!("{e}"))?,
        public_key: Some((
            dev_keys::PLATFORM_PUBLIC_KEY_ID.into(),
            VerifyingKey::from_spki_pem(dev_keys::PLATFORM_PUBLIC_KEY)
                .map_err(|e| e.to_string())?,
        )),
        notify_url,
        retry: RetryPolicy::default(),
        timeout: WechatPayConfig::DEFAULT_TIMEOUT,
        connect_timeout: WechatPayConfig::DEFAULT_CONNECT_TIMEOUT,
    })
}

/// The WeChat OAuth settings that talk to the mock (both hosts) with the dev appid and the
/// public test OAuth secret.
pub fn mock_oauth_config(base_url: String) -> OAuthConfig {
    OAuthConfig {
        open_base_url: base_url.clone(),
        api_base_url: base_url,
        appid: dev_keys::APPID.into(),
        secret: Secret::new(dev_keys::OAUTH_SECRET.into()),
    }
}

/// A running local stack. Dropping it stops the servers.
pub struct DevStack {
    pub addr: SocketAddr,
    pub public_url: String,
    pub app: Arc<DevApp>,
    pub merchant: Merchant,
    pub keys: IssuedKeys,
    /// The in-process WeChat Pay mock, unless an external endpoint is configured.
    pub mock: Option<MockServer>,
    /// The in-process notify-worker's schedule, if it runs.
    pub webhook_schedule: Option<RetrySchedule>,
    /// The demo merchant's default notify URL: what it received.
    pub inbox: Arc<DevInbox>,
    /// WeChat OAuth (the payer's openid, for jump-pay): the configured endpoint, or the
    /// in-process mock; `None` (jump-pay off) with an external WeChat Pay and no OAuth secret.
    pub oauth: Option<OAuthConfig>,
    /// The jump-pay gateway (`/pay/gateway`), when OAuth is configured.
    pub gateway: Option<Arc<Gateway>>,
    server: JoinHandle<()>,
    worker: Option<JoinHandle<()>>,
}

impl DevStack {
    pub async fn start(options: DevOptions) -> Result<DevStack, String> {
        let clock = Arc::clone(&options.clock.0);
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let public_url = options
            .public_url
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let notify_url = format!("{public_url}{WECHAT_NOTIFY_PATH}");
        let (client_config, mock) = match options.wechat {
            DevWechat::Mock {
                listen,
                notify_retry,
            } => {
                let mut mock_config = MockConfig::dev()?;
                mock_config.notify_retry = notify_retry;
                let mock = MockServer::start(listen, mock_config, Arc::clone(&clock)).await?;
                (mock_client_config(mock.base_url(), notify_url)?, Some(mock))
            }
            DevWechat::External(mut config) => {
                config.notify_url = notify_url;
                (*config, None)
            }
        };
        let oauth = options
            .oauth
            .or_else(|| mock.as_ref().map(|mock| mock_oauth_config(mock.base_url())));
        let gateway = match &oauth {
            Some(oauth) => Some(Arc::new(
                Gateway::new(GatewaySettings {
                    public_url: public_url.clone(),
                    oauth: oauth.clone(),
                })
                .map_err(|e| format!("jump-pay gateway: {e}"))?,
            )),
            None => None,
        };
        let channel = WechatPayClient::connect(client_config, Arc::clone(&clock))
            .await
            .map_err(|e| format!("WeChat Pay client: {e}"))?;
        let store = match options.store {
            DevStore::Memory => EitherStore::Memory(Box::new(MemoryStore::new())),
            DevStore::Dynamo { endpoint, table } => {
                let config = match endpoint.as_deref() {
                    Some(url) => ferrypay::aws::emulator_config(url).await,
                    None => ferrypay::aws::sdk_config(None).await,
                };
                // Every function of the dev stack runs in this one process, with the operator's
                // part: it opens and seals every secret, with the public local dev key (a
                // dev table's keyrings protect nothing; the sealed format is production's).
                let dev_keys = LocalDevKeys::new().map_err(|e| e.to_string())?;
                let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table)
                    .with_secret_keys(SecretKeys::operator(Arc::new(dev_keys)));
                store.ensure_table().await.map_err(|e| e.to_string())?;
                EitherStore::Dynamo(store)
            }
        };
        let health = Arc::new(HealthCheck::new(options.config.ip_rate_limit_per_minute));
        let app = Arc::new(Ferrypay::with_clock(
            store,
            channel,
            MemoryQueue::default(),
            options.config,
            clock,
        ));
        let mut demo = options.demo;
        if demo.notify_url.is_none() {
            demo.notify_url = Some(format!("http://{addr}{DEV_INBOX_PATH}"));
        }
        let (merchant, keys) = demo_merchant(&app, demo).await?;
        let inbox = Arc::new(DevInbox::default());
        let webhook_schedule = options.webhook_worker.clone();
        let worker = match options.webhook_worker {
            Some(schedule) => {
                let sender = WebhookSender::new(OutboundPolicy::DEV, schedule)
                    .map_err(|e| format!("webhook client: {e}"))?;
                Some(tokio::spawn(run_webhook_worker(Arc::clone(&app), sender)))
            }
            None => None,
        };
        let served = Arc::clone(&app);
        let served_inbox = Arc::clone(&inbox);
        let demo_id = merchant.id.clone();
        let served_gateway = gateway.clone();
        let server = http_server::serve(listener, move |req, _peer| {
            let app = Arc::clone(&served);
            let inbox = Arc::clone(&served_inbox);
            let gateway = served_gateway.clone();
            let health = Arc::clone(&health);
            let demo_id = demo_id.clone();
            async move {
                let served = Served {
                    app: &app,
                    inbox: &inbox,
                    gateway: gateway.as_deref(),
                    health: &health,
                    demo_id: &demo_id,
                };
                route(served, req).await
            }
        });
        Ok(DevStack {
            addr,
            public_url,
            app,
            merchant,
            keys,
            mock,
            webhook_schedule,
            inbox,
            oauth,
            gateway,
            server,
            worker,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `ferrypay dev` prints on start: the demo keys and first requests to try.
    pub fn banner(&self) -> String {
        let base = self.base_url();
        let sk = self.keys.secret_key.expose();
        let wechat = match &self.mock {
            Some(mock) => format!("WeChat Pay mock on {} (dev keys)", mock.base_url()),
            None => "WeChat Pay endpoint from WECHATPAY_BASE_URL".to_string(),
        };
        let pay = match &self.mock {
            Some(mock) => format!(
                "curl -s -X POST {}/mock/pay -d '{{\"out_trade_no\": \"FP...\"}}'   # the payer pays (mock)\n",
                mock.base_url()
            ),
            None => String::new(),
        };
        format!(
            "ferrypay dev: API on {base} (in-memory store and queue)\n\
             {wechat}; notifications to {public}{WECHAT_NOTIFY_PATH}\n\
             \n\
             demo merchant   {id} ({name})\n\
             secret key      {sk}\n\
             publishable key {pk}\n\
             webhook secret  {wh}\n\
             notify url      {notify}\n\
             webhooks        {webhooks}\n\
             \n\
             try:\n\
             curl -s -X POST {base}/api/v1/pay/create -H 'X-API-Key: {sk}' \\\n  \
               -H 'Content-Type: application/json' -d '{{\"amount\": 100, \"description\": \"Coffee\"}}'\n\
             {pay}\
             curl -s {base}{DEV_INBOX_PATH}   # the webhooks the demo merchant received\n\
             curl -s '{base}{HEALTH_PATH}?deep=1'   # health, with the table checked\n\
             {link}",
            link = match &self.gateway {
                Some(_) => format!(
                    "\npayment link (open it in a browser; a WeChat user agent goes through OAuth):\n\
                     {base}/pay/gateway?key={}&amount=100&description=Coffee\n",
                    self.keys.publishable_key
                ),
                None => String::new(),
            },
            public = self.public_url,
            id = self.merchant.id,
            name = self.merchant.name,
            pk = self.keys.publishable_key,
            wh = self.keys.webhook_secret.expose(),
            notify = self.merchant.notify_url.as_deref().unwrap_or("(none)"),
            webhooks = match &self.webhook_schedule {
                Some(schedule) => format!("sent in-process, retried after {schedule}"),
                None => "queued only (no worker)".into(),
            },
        )
    }
}

/// The demo merchant: a new one, or, on a kept (DynamoDB) table started before with the same
/// pinned secret key, that one again.
async fn demo_merchant(app: &DevApp, demo: NewMerchant) -> Result<(Merchant, IssuedKeys), String> {
    let pinned = demo.secret_key.clone();
    match app.onboard_merchant(demo.clone()).await {
        Ok(done) => Ok(done),
        Err(OnboardError::Exists) => {
            let sk = pinned.ok_or("demo merchant: a generated key collided")?;
            let (merchant, _) = app
                .store
                .merchant_by_key(&hash_api_key(sk.expose()))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("demo merchant: its pinned keys belong to another merchant")?;
            let keys = IssuedKeys {
                secret_key: sk,
                publishable_key: demo.publishable_key.unwrap_or_else(|| "(unchanged)".into()),
                webhook_secret: merchant
                    .webhook_secret
                    .open()
                    .map_err(|e| format!("demo merchant: {e}"))?
                    .clone(),
            };
            Ok((merchant, keys))
        }
        Err(e) => Err(format!("demo merchant: {e}")),
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(worker) = &self.worker {
            worker.abort();
        }
    }
}

/// The notify-worker, in-process: what SQS and Lambda do in production (receive a batch, run
/// it, delete the messages handled, leave the failed ones to come back after the visibility
/// timeout and, after too many receives, go to the dead-letter queue).
async fn run_webhook_worker(app: Arc<DevApp>, sender: WebhookSender) {
    let worker = WebhookWorker::new(&app.store, &app.queue, app.clock.as_ref(), &sender);
    loop {
        let received = match app.queue.receive(MAX_BATCH).await {
            Ok(received) => received,
            Err(e) => {
                tracing::error!(error = %e, "dev notify-worker: receive failed");
                Vec::new()
            }
        };
        if received.is_empty() {
            tokio::time::sleep(WORKER_POLL).await;
            continue;
        }
        worker.handle_received(&received).await;
    }
}

/// What the dev server's router reaches.
struct Served<'a> {
    app: &'a DevApp,
    inbox: &'a DevInbox,
    gateway: Option<&'a Gateway>,
    health: &'a HealthCheck,
    demo_id: &'a MerchantId,
}

async fn route(served: Served<'_>, req: http::Request<Bytes>) -> http::Response<String> {
    let Served {
        app,
        inbox,
        gateway,
        health,
        demo_id,
    } = served;
    if is_gateway_path(req.uri().path()) {
        return match gateway {
            Some(gateway) => handle_gateway(app, gateway, req).await,
            None => gateway_off_page(),
        };
    }
    if is_health_path(req.uri().path()) {
        return handle_health(&app.store, app.clock.as_ref(), health, req).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => api::json_response(StatusCode::OK, &json!({"ok": true})),
        (&Method::POST, DEV_INBOX_PATH) => {
            let demo = app.store.get_merchant(demo_id).await.ok().flatten();
            inbox.receive(demo.as_ref(), &req, app.clock.now())
        }
        (&Method::GET, DEV_INBOX_PATH) => inbox.list(),
        _ => api::handle(app, req).await,
    }
}

/// Jump-pay without OAuth settings: say what is missing.
fn gateway_off_page() -> http::Response<String> {
    MessagePage {
        page: "error",
        tone: Tone::Error,
        title: "付款链接未启用",
        message: "jump-pay needs WeChat OAuth: set WECHAT_OAUTH_SECRET (and WECHAT_OPEN_BASE_URL, \
                  WECHAT_API_BASE_URL for another endpoint) or run with the built-in mock."
            .into(),
        actions: vec![],
        code: ErrorCode::GatewayNotConfigured.as_str(),
    }
    .render(StatusCode::SERVICE_UNAVAILABLE)
}
