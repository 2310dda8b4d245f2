//! AWS SDK configuration, built once per process (Lambda init, `ferrypay dev`, tests) and
//! shared by every client made from it.

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// The region [`emulator_config`] claims (an emulator accepts any).
pub const EMULATOR_REGION: &str = "us-east-1";

/// The SDK configuration from the environment: in Lambda, the function role's credentials and
/// region; elsewhere the usual `AWS_*` variables and profile. `endpoint_url` points every client
/// at another endpoint (an AWS emulator); without it the SDK still honours `AWS_ENDPOINT_URL`.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    loader(endpoint_url).load().await
}

/// The loader behind [`sdk_config`], for callers that set more before loading.
pub fn loader(endpoint_url: Option<&str>) -> ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    match endpoint_url {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    }
}

/// For a local AWS emulator (moto): the given endpoint, a fixed region and dummy credentials
/// (`testing`/`testing`), so nothing is looked up (no profile, no instance metadata) and no
/// real account can be reached with them. Used by the contract tests and `ferrypay dev`.
pub async fn emulator_config(endpoint_url: &str) -> SdkConfig {
    loader(Some(endpoint_url))
        .region(Region::new(EMULATOR_REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "ferrypay-emulator",
        ))
        .load()
        .await
}
