//! The webhook events a merchant may receive, and which of them a merchant asked for.
//!
//! `order.paid` goes to every merchant. Every other event is opt-in: a receiver written for
//! payments only (the usual sample handler marks an order paid on any callback, without reading
//! `status`) must never see a refund event it did not ask for.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.closed")]
    OrderClosed,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    #[serde(rename = "refund.abnormal")]
    RefundAbnormal,
    #[serde(rename = "refund.closed")]
    RefundClosed,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 5] = [
        WebhookEvent::OrderPaid,
        WebhookEvent::OrderClosed,
        WebhookEvent::RefundSucceeded,
        WebhookEvent::RefundAbnormal,
        WebhookEvent::RefundClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::OrderPaid => "order.paid",
            WebhookEvent::OrderClosed => "order.closed",
            WebhookEvent::RefundSucceeded => "refund.succeeded",
            WebhookEvent::RefundAbnormal => "refund.abnormal",
            WebhookEvent::RefundClosed => "refund.closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == s)
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The events a merchant's notify URL receives: always `order.paid`, and the opt-in ones the
/// merchant subscribed to. Kept sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<WebhookEvent>", into = "Vec<WebhookEvent>")]
pub struct NotifyEvents(Vec<WebhookEvent>);

impl NotifyEvents {
    /// `order.paid` and `events` (which may name it or not: it is always there).
    pub fn with(events: impl IntoIterator<Item = WebhookEvent>) -> Self {
        let mut all: Vec<WebhookEvent> = events.into_iter().collect();
        all.push(WebhookEvent::OrderPaid);
        all.sort();
        all.dedup();
        NotifyEvents(all)
    }

    /// Every event there is (the dev stack's demo merchant).
    pub fn all() -> Self {
        NotifyEvents::with(WebhookEvent::ALL)
    }

    /// A comma-separated list of event names (`order.paid,refund.succeeded`); an unknown name
    /// is an error naming it and the known ones.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        let mut events = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let event = WebhookEvent::parse(name).ok_or_else(|| {
                let known: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown event {name:?} (known: {})", known.join(", "))
            })?;
            events.push(event);
        }
        Ok(NotifyEvents::with(events))
    }

    pub fn contains(&self, event: WebhookEvent) -> bool {
        self.0.contains(&event)
    }

    pub fn iter(&self) -> impl Iterator<Item = WebhookEvent> + '_ {
        self.0.iter().copied()
    }
}

impl Default for NotifyEvents {
    /// `order.paid` only.
    fn default() -> Self {
        NotifyEvents::with([])
    }
}

impl fmt::Display for NotifyEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(WebhookEvent::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl From<Vec<WebhookEvent>> for NotifyEvents {
    fn from(events: Vec<WebhookEvent>) -> Self {
        NotifyEvents::with(events)
    }
}

impl From<NotifyEvents> for Vec<WebhookEvent> {
    fn from(events: NotifyEvents) -> Self {
        events.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_paid_is_always_there_and_the_rest_only_when_asked() {
        let default = NotifyEvents::default();
        assert!(default.contains(WebhookEvent::OrderPaid));
        assert!(!default.contains(WebhookEvent::RefundSucceeded));
        assert_eq!(default.to_string(), "order.paid");

        let refunds = NotifyEvents::parse_list("refund.succeeded, refund.closed,").unwrap();
        assert!(refunds.contains(WebhookEvent::OrderPaid));
        assert!(refunds.contains(WebhookEvent::RefundSucceeded));
        assert!(!refunds.contains(WebhookEvent::RefundAbnormal));
        assert_eq!(
            refunds.to_string(),
            "order.paid,refund.succeeded,refund.closed"
        );
        assert_eq!(NotifyEvents::parse_list("").unwrap(), default);
        assert_eq!(
            NotifyEvents::parse_list("order.paid,order.paid").unwrap(),
            default
        );
        assert_eq!(NotifyEvents::all().iter().count(), WebhookEvent::ALL.len());
    }

    #[test]
    fn unknown_event_names_are_refused_by_name() {
        let err = NotifyEvents::parse_list("order.paid,refund.success").unwrap_err();
        assert!(err.contains("\"refund.success\""), "{err}");
        assert!(err.contains("refund.succeeded"), "{err}");
    }

    #[test]
    fn events_read_back_from_json_and_always_keep_order_paid() {
        let events: NotifyEvents = serde_json::from_str(r#"["refund.closed"]"#).unwrap();
        assert_eq!(events.to_string(), "order.paid,refund.closed");
        assert_eq!(
            serde_json::to_string(&events).unwrap(),
            r#"["order.paid","refund.closed"]"#
        );
        assert!(serde_json::from_str::<NotifyEvents>(r#"["refund.success"]"#).is_err());
        for event in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
        }
    }
}
