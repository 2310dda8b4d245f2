//! ferrypay: a WeChat Pay collection proxy. This crate holds everything but the Lambda wiring:
//! the domain model, the merchant API, the services and the storage and channel adapters.

pub mod api;
pub mod aws;
pub mod channel;
pub mod config;
#[cfg(test)]
mod layers;
pub mod model;
pub mod outbound;
pub mod pages;
pub mod qr;
pub mod queue;
pub mod runtime;
pub mod seal;
pub mod service;
pub mod sign;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod wechat;
