//! How a Lambda function builds its services, once per cold start: configuration read and
//! checked once (every problem reported at once), SDK clients built once, the WeChat Pay
//! secrets read once from Secrets Manager, and the DynamoDB connection opened before the
//! first request. The gateway function ([`gateway_app`]) builds the same services and the
//! jump-pay gateway, whose OAuth secret comes from the same secret (still one read). The
//! notify-worker ([`worker_app`]) builds less: it never talks to WeChat Pay, so it neither
//! reads nor may read the WeChat Pay secret.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::{
    api::notify::WECHAT_NOTIFY_PATH,
    channel::ChannelError,
    config::{ConfigError, Env},
    model::{Clock, SystemClock},
    outbound::{OutboundError, OutboundPolicy},
    queue::SqsQueue,
    service::{
        gateway::{Gateway, GatewaySettings},
        retry::RetrySchedule,
        Backends, BatchMessage, Ferrypay, ServiceConfig, WebhookSender, WebhookWorker,
    },
    store::DynamoStore,
    wechat::{
        oauth::OAuthError, settings::WechatSecrets, OAuthConfig, WechatPayClient, WechatPayConfig,
    },
};

/// The production backends.
pub struct LambdaBackends;

impl Backends for LambdaBackends {
    type Store = DynamoStore;
    type Channel = WechatPayClient;
    type Queue = SqsQueue;
}

pub type LambdaApp = Ferrypay<LambdaBackends>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the WeChat Pay secret: {0}")]
    Secret(String),
    #[error("WeChat Pay client: {0}")]
    Channel(#[from] ChannelError),
    #[error("webhook client: {0}")]
    Outbound(#[from] OutboundError),
    #[error("WeChat OAuth client: {0}")]
    OAuth(#[from] OAuthError),
}

/// [`lambda_app`] with the process environment and the SDK's own configuration (the function
/// role in Lambda; `AWS_ENDPOINT_URL` is honoured).
pub async fn lambda_app_from_env() -> Result<LambdaApp, StartError> {
    let sdk = crate::aws::sdk_config(None).await;
    lambda_app(Env::process(), &sdk).await
}

/// Builds the services from `env`: `FERRYPAY_TABLE`, `FERRYPAY_NOTIFY_QUEUE_URL`,
/// `FERRYPAY_PUBLIC_URL`, the service settings, the public `WECHATPAY_*` settings, and the
/// secrets: from `FERRYPAY_WECHAT_SECRET_ARN` (Secrets Manager, read once) or else from the
/// `WECHATPAY_*_FILE` variables.
pub async fn lambda_app(mut env: Env<'_>, sdk: &SdkConfig) -> Result<LambdaApp, StartError> {
    let settings = LambdaSettings::read(&mut env, sdk).await?;
    env.finish()?;
    settings.build(sdk).await
}

/// [`gateway_app`] with the process environment and the SDK's own configuration.
pub async fn gateway_app_from_env() -> Result<(LambdaApp, Gateway), StartError> {
    let sdk = crate::aws::sdk_config(None).await;
    gateway_app(Env::process(), &sdk).await
}

/// The jump-pay gateway's services: everything [`lambda_app`] builds (it creates orders) and
/// the [`Gateway`], reached at `FERRYPAY_PUBLIC_URL`, with the official account's OAuth
/// settings (see [`OAuthConfig::from_env_and_secrets`]): the OAuth secret from the same
/// Secrets Manager secret (its `oauth_secret`, read in the same single call) or from
/// `WECHAT_OAUTH_SECRET`, `WECHATPAY_APPID`, and the optional `WECHAT_OPEN_BASE_URL` and
/// `WECHAT_API_BASE_URL`. The gateway cannot work without the OAuth secret: its absence is a
/// start error, reported with every other problem.
pub async fn gateway_app(
    mut env: Env<'_>,
    sdk: &SdkConfig,
) -> Result<(LambdaApp, Gateway), StartError> {
    let settings = LambdaSettings::read(&mut env, sdk).await?;
    let problems_before = env.problem_count();
    let oauth = match &settings.secrets {
        Some(secrets) => OAuthConfig::from_env_and_secrets(&mut env, secrets),
        None => OAuthConfig::from_env(&mut env),
    };
    if oauth.is_none() && env.problem_count() == problems_before {
        // Not configured at all (a configured but bad secret is already a problem).
        env.problem(OAUTH_SECRET_MISSING.to_string());
    }
    env.finish()?;
    let oauth = oauth.ok_or_else(|| ConfigError(vec![OAUTH_SECRET_MISSING.into()]))?;
    let gateway = Gateway::new(GatewaySettings {
        public_url: settings.public_url.clone(),
        oauth,
    })?;
    let app = settings.build(sdk).await?;
    Ok((app, gateway))
}

/// The problem reported when the gateway has no OAuth secret.
pub const OAUTH_SECRET_MISSING: &str = "the WeChat OAuth secret is not set: jump-pay needs the \
     official account's AppSecret in WECHAT_OAUTH_SECRET or in the oauth_secret field of the \
     secret FERRYPAY_WECHAT_SECRET_ARN names";

/// What [`lambda_app`] and [`gateway_app`] read from the environment and the secret, before
/// anything is built. Problems are recorded in the `env`; the secret, when it is in Secrets
/// Manager, is read here, once.
struct LambdaSettings {
    config: ServiceConfig,
    table: String,
    queue_url: String,
    public_url: String,
    wechat: Option<WechatPayConfig>,
    /// The Secrets Manager secret, when `FERRYPAY_WECHAT_SECRET_ARN` names one.
    secrets: Option<WechatSecrets>,
}

impl LambdaSettings {
    async fn read(env: &mut Env<'_>, sdk: &SdkConfig) -> Result<LambdaSettings, StartError> {
        let config = ServiceConfig::from_env(env);
        let table = env.required("FERRYPAY_TABLE");
        let queue_url = env.required("FERRYPAY_NOTIFY_QUEUE_URL");
        let public_url = env.required("FERRYPAY_PUBLIC_URL");
        let notify_url = format!("{}{WECHAT_NOTIFY_PATH}", public_url.trim_end_matches('/'));
        let (wechat, secrets) = match env.optional("FERRYPAY_WECHAT_SECRET_ARN") {
            Some(arn) => {
                let secrets = read_secret(sdk, &arn).await?;
                let wechat = WechatPayConfig::from_env_and_secrets(env, notify_url, &secrets);
                (wechat, Some(secrets))
            }
            None => (WechatPayConfig::from_env(env, notify_url), None),
        };
        Ok(LambdaSettings {
            config,
            table,
            queue_url,
            public_url,
            wechat,
            secrets,
        })
    }

    /// The services, once the settings are known to be complete (`env.finish()` passed).
    async fn build(self, sdk: &SdkConfig) -> Result<LambdaApp, StartError> {
        let wechat = self
            .wechat
            .ok_or_else(|| ConfigError(vec!["WeChat Pay settings".into()]))?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), self.table);
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), self.queue_url);
        let clock = Arc::new(SystemClock);
        // Both open their connections now, not on the first request: the DynamoDB warm-up and,
        // in certificate mode, the certificate download.
        let (channel, ()) = tokio::join!(
            WechatPayClient::connect(wechat, clock.clone()),
            store.warm_up()
        );
        Ok(Ferrypay::with_clock(
            store,
            channel?,
            queue,
            self.config,
            clock,
        ))
    }
}

/// The notify-worker's services: the table, the notify queue (it queues each next attempt),
/// the clock and the webhook sender (the SSRF-guarded client and the retry schedule).
pub struct WorkerApp {
    pub store: DynamoStore,
    pub queue: SqsQueue,
    pub clock: Arc<dyn Clock>,
    pub sender: WebhookSender,
}

impl WorkerApp {
    /// The worker over these services (it borrows them; build it once, use it for every batch).
    pub fn worker(&self) -> WebhookWorker<'_, DynamoStore, SqsQueue> {
        WebhookWorker::new(&self.store, &self.queue, self.clock.as_ref(), &self.sender)
    }

    /// Handles one batch of queue messages; returns the ids of the failed ones.
    pub async fn handle_batch(&self, messages: &[BatchMessage]) -> Vec<String> {
        self.worker().handle_batch(messages).await
    }
}

/// [`worker_app`] with the process environment, the SDK's own configuration and the
/// production outbound policy (https only, public addresses only). The policy is never taken
/// from the environment.
pub async fn worker_app_from_env() -> Result<WorkerApp, StartError> {
    let sdk = crate::aws::sdk_config(None).await;
    worker_app(Env::process(), &sdk, OutboundPolicy::PRODUCTION).await
}

/// Builds the notify-worker's services from `env`: `FERRYPAY_TABLE`,
/// `FERRYPAY_NOTIFY_QUEUE_URL` and the optional `FERRYPAY_WEBHOOK_RETRY_SCHEDULE` (see
/// [`RetrySchedule::from_env`]). No WeChat Pay settings and no secret. `policy` says where
/// webhooks may go: [`OutboundPolicy::PRODUCTION`] in Lambda, [`OutboundPolicy::DEV`] only for
/// tests with receivers on 127.0.0.1.
pub async fn worker_app(
    mut env: Env<'_>,
    sdk: &SdkConfig,
    policy: OutboundPolicy,
) -> Result<WorkerApp, StartError> {
    let table = env.required("FERRYPAY_TABLE");
    let queue_url = env.required("FERRYPAY_NOTIFY_QUEUE_URL");
    let schedule = RetrySchedule::from_env(&mut env);
    env.finish()?;
    let sender = WebhookSender::new(policy, schedule)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url);
    // The DynamoDB connection opens now, not in the first batch.
    store.warm_up().await;
    Ok(WorkerApp {
        store,
        queue,
        clock: Arc::new(SystemClock),
        sender,
    })
}

async fn read_secret(sdk: &SdkConfig, arn: &str) -> Result<WechatSecrets, StartError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            StartError::Secret(format!(
                "{arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| StartError::Secret(format!("{arn} has no string value")))?;
    WechatSecrets::from_json(text).map_err(StartError::Secret)
}
