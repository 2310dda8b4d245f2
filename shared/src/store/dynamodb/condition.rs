//! Condition expressions: [`apply_rules`] mirrors `Order::apply`, so a write lands only in the
//! state the model allows.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    item::{n, s},
    schema::PK,
};
use crate::model::{OrderStatus, OrderUpdate};

/// `Order::apply`'s preconditions for `update`, as a DynamoDB condition on the order record.
/// Keep in step with `Order::apply`: the contract tests check both stores refuse alike.
pub(super) fn apply_rules(update: &OrderUpdate) -> Condition {
    let status_is = |status: OrderStatus| {
        Condition::new("attribute_exists(#pk) AND #status = :status")
            .name("#pk", PK)
            .name("#status", "status")
            .value(":status", s(status.as_str()))
    };
    match update {
        OrderUpdate::AttachCredential(_) | OrderUpdate::MarkClosed { .. } => {
            status_is(OrderStatus::Pending)
        }
        OrderUpdate::MarkPaid { amount, .. } => status_is(OrderStatus::Pending)
            .and("#amount = :amount")
            .name("#amount", "amount")
            .value(":amount", n(amount.get())),
        OrderUpdate::RestartWebhook => has_webhook(),
        OrderUpdate::RecordWebhookQueued { generation, .. }
        | OrderUpdate::RecordWebhookAttempt { generation, .. } => has_webhook()
            .and("#webhook_generation = :webhook_generation")
            .name("#webhook_generation", "webhook_generation")
            .value(":webhook_generation", n(i64::from(*generation))),
    }
}

/// `Order::has_webhook`: paid, or refunded (after a full refund its `order.paid` webhook is
/// still delivered and resent).
fn has_webhook() -> Condition {
    Condition::new("attribute_exists(#pk) AND #status IN (:paid, :refunded)")
        .name("#pk", PK)
        .name("#status", "status")
        .value(":paid", s(OrderStatus::Paid.as_str()))
        .value(":refunded", s(OrderStatus::Refunded.as_str()))
}

/// A condition expression with its placeholders.
pub(super) struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Condition {
    pub(super) fn new(expression: &str) -> Self {
        Condition {
            expression: expression.to_string(),
            names: HashMap::new(),
            values: HashMap::new(),
        }
    }

    pub(super) fn and(mut self, expression: &str) -> Self {
        self.expression = format!("{} AND {expression}", self.expression);
        self
    }

    pub(super) fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names
            .insert(placeholder.to_string(), attribute.to_string());
        self
    }

    pub(super) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_string(), value);
        self
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn into_parts(
        self,
    ) -> (
        String,
        Option<HashMap<String, String>>,
        Option<HashMap<String, AttributeValue>>,
    ) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (self.expression, names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fen, Timestamp};

    #[test]
    fn paying_requires_a_pending_order_of_the_same_amount() {
        let update = OrderUpdate::MarkPaid {
            transaction_id: "4200000001".into(),
            paid_at: Timestamp::from_unix(1_766_284_300),
            amount: Fen::new(1234),
        };
        let (expression, _, values) = apply_rules(&update).into_parts();
        assert_eq!(
            expression,
            "attribute_exists(#pk) AND #status = :status AND #amount = :amount"
        );
        let values = values.unwrap();
        assert_eq!(values.get(":status"), Some(&s("pending")));
        assert_eq!(values.get(":amount"), Some(&n(1234)));
    }

    #[test]
    fn webhook_updates_require_a_paid_order_of_the_same_generation() {
        let update = OrderUpdate::RecordWebhookQueued {
            generation: 3,
            at: Timestamp::from_unix(1_766_284_300),
        };
        let (expression, names, values) = apply_rules(&update).into_parts();
        assert!(expression.ends_with("#webhook_generation = :webhook_generation"));
        assert_eq!(
            names
                .unwrap()
                .get("#webhook_generation")
                .map(String::as_str),
            Some("webhook_generation")
        );
        assert_eq!(values.unwrap().get(":webhook_generation"), Some(&n(3)));
    }
}
