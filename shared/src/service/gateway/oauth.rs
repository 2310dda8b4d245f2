//! The OAuth port: the gateway learns the payer's openid only through [`OAuth`], so the link use
//! case runs against WeChat's client in production and against [`FakeOAuth`] in its tests.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use crate::wechat::oauth::{OAuthClient, OAuthError, OAuthIdentity, ERRCODE_CODE_USED};

/// Exchanges the code of WeChat's redirect for the payer's identity.
pub trait OAuth: Send + Sync + 'static {
    /// One exchange; a code is single-use (a replay is [`OAuthError::CodeInvalidOrUsed`]).
    fn exchange_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<OAuthIdentity, OAuthError>> + Send;
}

impl OAuth for OAuthClient {
    fn exchange_code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<OAuthIdentity, OAuthError>> + Send {
        self.openid_for_code(code)
    }
}

/// WeChat's side in memory: codes handed out by [`FakeOAuth::issue`], each answered once;
/// an unknown or used code is refused as WeChat refuses it (40163).
#[derive(Debug, Default)]
pub struct FakeOAuth {
    answers: Mutex<HashMap<String, Result<OAuthIdentity, OAuthError>>>,
    exchanges: AtomicU64,
}

impl FakeOAuth {
    pub fn new() -> FakeOAuth {
        FakeOAuth::default()
    }

    /// The next exchange of `code` answers `answer`.
    pub fn issue(&self, code: &str, answer: Result<OAuthIdentity, OAuthError>) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(code.to_string(), answer);
        }
    }

    /// How many code exchanges were asked for (WeChat's OAuth calls).
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::SeqCst)
    }

    /// Codes issued and not yet exchanged.
    pub fn pending(&self) -> usize {
        self.answers.lock().map(|a| a.len()).unwrap_or(0)
    }
}

impl OAuth for FakeOAuth {
    async fn exchange_code(&self, code: &str) -> Result<OAuthIdentity, OAuthError> {
        self.exchanges.fetch_add(1, Ordering::SeqCst);
        let answer = self.answers.lock().ok().and_then(|mut a| a.remove(code));
        answer.unwrap_or(Err(OAuthError::CodeInvalidOrUsed {
            errcode: ERRCODE_CODE_USED,
        }))
    }
}
