//! ferrypay's end-to-end tests, one binary (`cargo test -p ferrypay-tests --test it`): one
//! module per area, so the AWS SDK and the dev stack are linked once. Filter by module, e.g.
//! `cargo test -p ferrypay-tests --test it webhooks::`.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod api;
mod browser;
mod dev_stack;
mod gateway;
mod lambda_runtime;
mod limits;
mod link_signers;
mod queue_contract;
mod refund_webhooks;
mod store_contract;
mod webhook_verifiers;
mod webhooks;
mod wechat_flow;
mod wechat_flow_refunds;
mod wechat_oauth;
