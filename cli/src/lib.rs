//! The `ferrypay` binary's library: the local stack (`ferrypay dev`), usable from tests.

pub mod args;
pub mod dev;
pub mod dev_inbox;
pub mod dev_keys;
pub mod http_server;
pub mod merchant;
pub mod wechat_mock;
