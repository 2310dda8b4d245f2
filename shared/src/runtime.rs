//! How a Lambda function builds its services, once per cold start.

use crate::{
    channel::FakeChannel,
    config::{ConfigError, Env},
    queue::MemoryQueue,
    service::{Ferrypay, InMemory, ServiceConfig},
    store::MemoryStore,
};

/// The services as the Lambda functions run them.
///
/// For now the only backends are the in-memory store and the fake channel: the DynamoDB/SQS
/// backends and the real WeChat Pay client replace them here (issues 3 and 4), and the
/// handlers, being generic, do not change.
pub type LambdaApp = Ferrypay<InMemory>;

pub fn lambda_app_from_env() -> Result<LambdaApp, ConfigError> {
    let mut env = Env::process();
    let config = ServiceConfig::from_env(&mut env);
    env.finish()?;
    tracing::warn!(
        "running on the in-memory store and the fake payment channel: not for production"
    );
    Ok(Ferrypay::new(
        MemoryStore::new(),
        FakeChannel::new(),
        MemoryQueue::default(),
        config,
    ))
}
