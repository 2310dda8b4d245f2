//! How a Lambda function builds its services, once per cold start.

use std::sync::Arc;

use crate::{
    api::notify::WECHAT_NOTIFY_PATH,
    channel::ChannelError,
    config::{ConfigError, Env},
    model::SystemClock,
    queue::MemoryQueue,
    service::{Backends, Ferrypay, ServiceConfig},
    store::MemoryStore,
    wechat::{WechatPayClient, WechatPayConfig},
};

/// The backends the Lambda functions run on: the real WeChat Pay client; storage and the queue
/// are still in memory until the DynamoDB and SQS backends are wired in here (issue 4). The
/// handlers, being generic, do not change when they are.
pub struct LambdaBackends;

impl Backends for LambdaBackends {
    type Store = MemoryStore;
    type Channel = WechatPayClient;
    type Queue = MemoryQueue;
}

pub type LambdaApp = Ferrypay<LambdaBackends>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("WeChat Pay client: {0}")]
    Channel(#[from] ChannelError),
}

/// Reads the settings (`FERRYPAY_PUBLIC_URL`, `WECHATPAY_*`, service settings; every problem
/// reported at once) and builds the services, the WeChat Pay client included (which, in
/// certificate mode, downloads the platform certificates now rather than on a request).
pub async fn lambda_app_from_env() -> Result<LambdaApp, StartError> {
    let mut env = Env::process();
    let config = ServiceConfig::from_env(&mut env);
    let public_url = env.required("FERRYPAY_PUBLIC_URL");
    let notify_url = format!("{}{WECHAT_NOTIFY_PATH}", public_url.trim_end_matches('/'));
    let wechat = WechatPayConfig::from_env(&mut env, notify_url);
    env.finish()?;
    let wechat = wechat.ok_or_else(|| ConfigError(vec!["WeChat Pay settings".into()]))?;
    let clock = Arc::new(SystemClock);
    let channel = WechatPayClient::connect(wechat, clock.clone()).await?;
    tracing::warn!("storage and queue are in memory until the DynamoDB/SQS backends are wired in");
    Ok(Ferrypay::with_clock(
        MemoryStore::new(),
        channel,
        MemoryQueue::default(),
        config,
        clock,
    ))
}
