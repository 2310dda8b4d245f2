//! What went wrong in an infrastructure failure: a description, and the error behind it when
//! there is one, kept as `source()` for the one log line where the failure leaves its layer.
//! Shared behind an `Arc`, so the errors that carry it stay `Clone`.

use std::{error::Error, fmt, sync::Arc};

#[derive(Clone)]
pub struct Cause {
    what: String,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl Cause {
    /// A failure with no error value behind it (a check that failed, a missing field).
    pub fn new(what: impl Into<String>) -> Self {
        Cause {
            what: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source`.
    pub fn with_source(
        what: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Cause {
            what: what.into(),
            source: Some(Arc::new(source)),
        }
    }
}

impl From<String> for Cause {
    fn from(what: String) -> Self {
        Cause::new(what)
    }
}

impl From<&str> for Cause {
    fn from(what: &str) -> Self {
        Cause::new(what)
    }
}

/// `what: source` (the whole story on one line, as the logs print it).
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Cause");
        debug.field("what", &self.what);
        if let Some(source) = &self.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

/// Equal when they read the same (errors behind them have no equality of their own).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_behind_is_kept_and_printed() {
        let io = std::io::Error::other("connection reset");
        let cause = Cause::with_source("POST /v3/pay/transactions/native", io);
        assert_eq!(
            cause.to_string(),
            "POST /v3/pay/transactions/native: connection reset"
        );
        assert_eq!(cause.source().unwrap().to_string(), "connection reset");
        assert!(Cause::new("no amount").source().is_none());
        assert_eq!(Cause::from("x"), Cause::new(String::from("x")));
    }
}
