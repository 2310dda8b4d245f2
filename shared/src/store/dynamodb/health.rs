//! The deep health check's read: one `GetItem` of a fixed key nothing writes.

use super::DynamoStore;
use crate::store::{HealthStore, StoreError};

/// The health check's key (`pk` and `sk`); the item need not exist.
const HEALTH_KEY: &str = "HEALTH";

impl HealthStore for DynamoStore {
    async fn check_health(&self) -> Result<(), StoreError> {
        self.get(HEALTH_KEY.to_string(), HEALTH_KEY)
            .await
            .map(|_| ())
    }
}
