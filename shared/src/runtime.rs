//! How a Lambda function builds its services, once per cold start: configuration read and
//! checked once (every problem reported at once), SDK clients built once, the WeChat Pay
//! secrets read once from Secrets Manager, and the DynamoDB connection opened before the
//! first request. The notify-worker ([`worker_app`]) builds less: it never talks to WeChat
//! Pay, so it neither reads nor may read the WeChat Pay secret.

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
        retry::RetrySchedule, Backends, BatchMessage, Ferrypay, ServiceConfig, WebhookSender,
        WebhookWorker,
    },
    store::DynamoStore,
    wechat::{settings::WechatSecrets, WechatPayClient, WechatPayConfig},
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
    let config = ServiceConfig::from_env(&mut env);
    let table = env.required("FERRYPAY_TABLE");
    let queue_url = env.required("FERRYPAY_NOTIFY_QUEUE_URL");
    let public_url = env.required("FERRYPAY_PUBLIC_URL");
    let notify_url = format!("{}{WECHAT_NOTIFY_PATH}", public_url.trim_end_matches('/'));
    let wechat = match env.optional("FERRYPAY_WECHAT_SECRET_ARN") {
        Some(arn) => {
            let secrets = read_secret(sdk, &arn).await?;
            WechatPayConfig::from_env_and_secrets(&mut env, notify_url, &secrets)
        }
        None => WechatPayConfig::from_env(&mut env, notify_url),
    };
    env.finish()?;
    let wechat = wechat.ok_or_else(|| ConfigError(vec!["WeChat Pay settings".into()]))?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url);
    let clock = Arc::new(SystemClock);
    // Both open their connections now, not on the first request: the DynamoDB warm-up and,
    // in certificate mode, the certificate download.
    let (channel, ()) = tokio::join!(
        WechatPayClient::connect(wechat, clock.clone()),
        store.warm_up()
    );
    Ok(Ferrypay::with_clock(store, channel?, queue, config, clock))
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
