//! Logging setup: JSON lines for Lambda (CloudWatch), readable text for the terminal.

use tracing_subscriber::EnvFilter;

/// JSON logs without timestamps (CloudWatch adds its own); level from `RUST_LOG`, default info.
pub fn init_lambda() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Human-readable logs on stderr for `ferrypay dev` and the CLI (stdout is for their output).
pub fn init_terminal() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .try_init();
}
