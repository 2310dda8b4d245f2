//! How a Lambda function builds its services, once per cold start: its config read and checked
//! once (every problem reported at once: see [`crate::config`]), SDK clients built once, its
//! secrets read once from Secrets Manager, and the DynamoDB connection opened before the first
//! request. Each function reads only the secrets it uses:
//!
//! - create, query, close and inbound-callback ([`lambda_app`]): the WeChat Pay secret (keys);
//! - list and resend ([`store_only_app`]): none: they never talk to WeChat Pay, so their
//!   services have a channel that refuses ([`NoChannel`]) and need no WeChat Pay setting;
//! - gateway-redirect ([`gateway_app`]): the WeChat Pay secret and the official account's
//!   OAuth secret, from its own secret (`FERRYPAY_WECHAT_OAUTH_SECRET_ARN`) or, in the older
//!   single-secret form, from the WeChat Pay secret's `oauth_secret`;
//! - the notify-worker ([`worker_app`]): none;
//! - the health function ([`health_app`]): none; it builds the least, the table and its
//!   health check.
//!
//! Behind CloudFront, the HTTP functions also read the origin-verification secret
//! ([`origin_verify_secret`]), which lets them trust CloudFront's viewer address.
//!
//! Merchants' secrets: each function's store opens only the purposes it uses
//! ([`FUNCTION_SECRET_PURPOSES`]), unwrapping their data keys with KMS once, at cold start.
//! Every other function reads merchants with those secrets sealed.
//!
//! Each `*_app(env, ..)` reads its config from `env` and builds from it; `build_*` builds from
//! a config already read.

use std::sync::Arc;

pub use aws_config::SdkConfig;

use crate::{
    aws::KmsDataKeys,
    channel::NoChannel,
    config::{
        oauth_secret_arn, origin_verify_secret_arn, wechat_secret_arn, ConfigError, Env,
        GatewayConfig, HealthConfig, HttpConfig, StoreConfig, WorkerConfig,
    },
    model::{Clock, Secret, SecretPurpose, SystemClock},
    outbound::{OutboundError, OutboundPolicy},
    queue::SqsQueue,
    service::{
        gateway::Gateway, health::HealthCheck, Backends, BatchMessage, Ferrypay, WebhookSender,
        WebhookWorker,
    },
    store::{DynamoStore, SecretKeys, StoreError},
    wechat::{
        oauth::OAuthError,
        settings::{oauth_secret_from_secret_string, WechatSecrets},
        WechatPayClient,
    },
};

/// Which merchant secrets each Lambda function may open (and so which `kms:Decrypt` its role
/// needs, conditioned on `kms:EncryptionContext:ferrypay:purpose`): the notify-worker signs
/// webhooks, gateway-redirect checks signed links; create, query, close, list, resend,
/// refund, inbound-callback and health open none.
pub const FUNCTION_SECRET_PURPOSES: &[(&str, &[SecretPurpose])] = &[
    ("notify-worker", WORKER_OPENS),
    ("gateway-redirect", GATEWAY_OPENS),
    ("create", &[]),
    ("query", &[]),
    ("close", &[]),
    ("list", &[]),
    ("resend", &[]),
    ("inbound-callback", &[]),
    ("health", &[]),
    ("refund", &[]),
];

const WORKER_OPENS: &[SecretPurpose] = &[SecretPurpose::Webhook];
const GATEWAY_OPENS: &[SecretPurpose] = &[SecretPurpose::Link];

/// A function's table: it opens `purposes`, their data keys unwrapped by KMS now (where the
/// operator has created their keyrings) rather than on the first request.
async fn function_store(
    sdk: &SdkConfig,
    table: String,
    purposes: &[SecretPurpose],
) -> Result<DynamoStore, StartError> {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
    if purposes.is_empty() {
        return Ok(store);
    }
    let keys = SecretKeys::opening(purposes, Arc::new(KmsDataKeys::new(sdk, None)));
    let store = store.with_secret_keys(keys);
    store.load_secret_keys().await?;
    Ok(store)
}

/// The production backends.
pub struct LambdaBackends;

impl Backends for LambdaBackends {
    type Store = DynamoStore;
    type Channel = WechatPayClient;
    type Queue = SqsQueue;
}

pub type LambdaApp = Ferrypay<LambdaBackends>;

/// The backends of the functions that never talk to WeChat Pay (list, resend): the table and
/// the queue, and a channel that refuses every call.
pub struct StoreOnlyBackends;

impl Backends for StoreOnlyBackends {
    type Store = DynamoStore;
    type Channel = NoChannel;
    type Queue = SqsQueue;
}

pub type StoreOnlyApp = Ferrypay<StoreOnlyBackends>;

/// The shortest origin-verification secret accepted (the template generates 48 characters).
pub const ORIGIN_VERIFY_MIN_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret could not be read or is not of its form; the text names the secret, never
    /// shows its value.
    #[error("reading a secret: {0}")]
    Secret(String),
    #[error("WeChat Pay client: {0}")]
    Channel(#[from] crate::wechat::client::ClientError),
    #[error("webhook client: {0}")]
    Outbound(#[from] OutboundError),
    #[error("WeChat OAuth client: {0}")]
    OAuth(#[from] OAuthError),
    #[error("data keys: {0}")]
    DataKeys(#[from] StoreError),
}

/// An HTTP function's services, from `env` ([`HttpConfig`]) and the secret
/// `FERRYPAY_WECHAT_SECRET_ARN` names (read once; without it, the key files).
pub async fn lambda_app(env: Env<'_>, sdk: &SdkConfig) -> Result<LambdaApp, StartError> {
    let secret = read_wechat_secret(&env, sdk).await?;
    let config = HttpConfig::from_vars(&env, secret.as_ref())?;
    build_lambda_app(config, sdk).await
}

/// The jump-pay gateway's services, from `env` ([`GatewayConfig`]) and the same secret, whose
/// `oauth_secret` is the official account's AppSecret (in the same single read): everything
/// [`lambda_app`] builds (it creates orders) and the [`Gateway`], reached at
/// `FERRYPAY_PUBLIC_URL`. Without the OAuth secret it does not start.
pub async fn gateway_app(
    env: Env<'_>,
    sdk: &SdkConfig,
) -> Result<(LambdaApp, Gateway), StartError> {
    let (secret, oauth_secret) =
        tokio::try_join!(read_wechat_secret(&env, sdk), read_oauth_secret(&env, sdk))?;
    let config = GatewayConfig::from_vars(&env, secret.as_ref(), oauth_secret.as_deref())?;
    build_gateway_app(config, sdk).await
}

/// The services of a function that never talks to WeChat Pay (list, resend), from `env`
/// ([`StoreConfig`]): no WeChat Pay setting, no secret read.
pub async fn store_only_app(env: Env<'_>, sdk: &SdkConfig) -> Result<StoreOnlyApp, StartError> {
    build_store_only_app(StoreConfig::from_vars(&env)?, sdk).await
}

/// The store-only services from their config; the DynamoDB connection opens now.
pub async fn build_store_only_app(
    config: StoreConfig,
    sdk: &SdkConfig,
) -> Result<StoreOnlyApp, StartError> {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.queue_url);
    store.warm_up().await;
    Ok(Ferrypay::with_clock(
        store,
        NoChannel,
        queue,
        config.service,
        Arc::new(SystemClock),
    ))
}

/// The origin-verification secret `FERRYPAY_ORIGIN_VERIFY_SECRET_ARN` names (read once), which
/// CloudFront sends as a header to the origin: `None` when the variable is not set (no
/// CloudFront in front, or not trusted). Blank or shorter than [`ORIGIN_VERIFY_MIN_LEN`] is a
/// start error: a guessable value would let anyone choose their own address.
pub async fn origin_verify_secret(
    env: &Env<'_>,
    sdk: &SdkConfig,
) -> Result<Option<Secret<String>>, StartError> {
    let Some(arn) = origin_verify_secret_arn(env) else {
        return Ok(None);
    };
    let value = read_secret_string(sdk, &arn).await?.trim().to_string();
    if value.chars().count() < ORIGIN_VERIFY_MIN_LEN {
        return Err(StartError::Secret(format!(
            "{arn}: the origin-verification secret has fewer than {ORIGIN_VERIFY_MIN_LEN} \
             characters"
        )));
    }
    Ok(Some(Secret::new(value)))
}

/// An HTTP function's services from its config: the table, the queue and the WeChat Pay
/// client, whose connections open now, not on the first request (the DynamoDB warm-up and, in
/// certificate mode, the certificate download).
pub async fn build_lambda_app(
    config: HttpConfig,
    sdk: &SdkConfig,
) -> Result<LambdaApp, StartError> {
    build_app_opening(config, sdk, &[]).await
}

async fn build_app_opening(
    config: HttpConfig,
    sdk: &SdkConfig,
    purposes: &[SecretPurpose],
) -> Result<LambdaApp, StartError> {
    let store = function_store(sdk, config.table, purposes).await?;
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.queue_url);
    let clock = Arc::new(SystemClock);
    let (channel, ()) = tokio::join!(
        WechatPayClient::connect(config.wechat, clock.clone()),
        store.warm_up()
    );
    Ok(Ferrypay::with_clock(
        store,
        channel?,
        queue,
        config.service,
        clock,
    ))
}

/// The gateway's services and the [`Gateway`] from its config.
pub async fn build_gateway_app(
    config: GatewayConfig,
    sdk: &SdkConfig,
) -> Result<(LambdaApp, Gateway), StartError> {
    let gateway = Gateway::new(config.gateway_settings())?;
    let app = build_app_opening(config.http, sdk, GATEWAY_OPENS).await?;
    Ok((app, gateway))
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

/// The notify-worker's services from `env` ([`WorkerConfig`]: no WeChat Pay settings, no
/// secret). `policy` says where webhooks may go: [`OutboundPolicy::PRODUCTION`] in Lambda,
/// [`OutboundPolicy::DEV`] only for tests with receivers on 127.0.0.1.
pub async fn worker_app(
    env: Env<'_>,
    sdk: &SdkConfig,
    policy: OutboundPolicy,
) -> Result<WorkerApp, StartError> {
    build_worker_app(WorkerConfig::from_vars(&env)?, sdk, policy).await
}

/// The notify-worker's services from its config; the DynamoDB connection opens now, not in the
/// first batch.
pub async fn build_worker_app(
    config: WorkerConfig,
    sdk: &SdkConfig,
    policy: OutboundPolicy,
) -> Result<WorkerApp, StartError> {
    let sender = WebhookSender::new(policy, config.retry_schedule)?;
    let store = function_store(sdk, config.table, WORKER_OPENS).await?;
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.queue_url);
    store.warm_up().await;
    Ok(WorkerApp {
        store,
        queue,
        clock: Arc::new(SystemClock),
        sender,
    })
}

/// The health function's services: the table, the clock and the health check (its client
/// limit and its cached deep check).
pub struct HealthApp {
    pub store: DynamoStore,
    pub clock: Arc<dyn Clock>,
    pub check: HealthCheck,
}

/// The health function's services from `env` ([`HealthConfig`]: the table and the client
/// limit; no WeChat Pay, no queue, no secret).
pub async fn health_app(env: Env<'_>, sdk: &SdkConfig) -> Result<HealthApp, StartError> {
    Ok(build_health_app(HealthConfig::from_vars(&env)?, sdk).await)
}

/// The health function's services from its config; the DynamoDB connection opens now.
pub async fn build_health_app(config: HealthConfig, sdk: &SdkConfig) -> HealthApp {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table);
    store.warm_up().await;
    HealthApp {
        store,
        clock: Arc::new(SystemClock),
        check: HealthCheck::new(config.ip_rate_limit_per_minute),
    }
}

/// The secret `FERRYPAY_WECHAT_SECRET_ARN` names, read once; `None` when it names none.
async fn read_wechat_secret(
    env: &Env<'_>,
    sdk: &SdkConfig,
) -> Result<Option<WechatSecrets>, StartError> {
    let Some(arn) = wechat_secret_arn(env) else {
        return Ok(None);
    };
    let text = read_secret_string(sdk, &arn).await?;
    WechatSecrets::from_json(&text)
        .map(Some)
        .map_err(|e| StartError::Secret(format!("{arn}: {e}")))
}

/// The OAuth secret's value from the secret `FERRYPAY_WECHAT_OAUTH_SECRET_ARN` names, read
/// once; `None` when it names none (or holds a blank value, which the config reports).
async fn read_oauth_secret(env: &Env<'_>, sdk: &SdkConfig) -> Result<Option<String>, StartError> {
    let Some(arn) = oauth_secret_arn(env) else {
        return Ok(None);
    };
    let text = read_secret_string(sdk, &arn).await?;
    oauth_secret_from_secret_string(&text).map_err(|e| StartError::Secret(format!("{arn}: {e}")))
}

/// A Secrets Manager secret's string value. Errors name the secret, never its value.
async fn read_secret_string(sdk: &SdkConfig, arn: &str) -> Result<String, StartError> {
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
    out.secret_string()
        .map(str::to_string)
        .ok_or_else(|| StartError::Secret(format!("{arn} has no string value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_says_which_secrets_it_may_open() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
        let mut crates: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        crates.sort();
        let mut listed: Vec<String> = FUNCTION_SECRET_PURPOSES
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, crates);
        let opening: Vec<(&str, &[SecretPurpose])> = FUNCTION_SECRET_PURPOSES
            .iter()
            .filter(|(_, purposes)| !purposes.is_empty())
            .copied()
            .collect();
        assert_eq!(
            opening,
            [
                ("notify-worker", &[SecretPurpose::Webhook][..]),
                ("gateway-redirect", &[SecretPurpose::Link][..]),
            ]
        );
    }
}
