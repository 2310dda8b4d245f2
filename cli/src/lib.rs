//! The `ferrypay` binary's library: the local stack (`ferrypay dev`), usable from tests.

pub mod dev;
pub mod http_server;
