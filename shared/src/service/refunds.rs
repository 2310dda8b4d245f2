//! Refunds: money back to the payer, whole or in part. The refund is written (its amount
//! reserved on the order) before WeChat Pay is asked, so a notification that overtakes the
//! answer finds it, and an answer that never comes leaves it `processing`: the identical
//! request is sent again (same refund number, which WeChat Pay refunds at most once) by the next
//! query or retry, never a new one.
//!
//! Refunds made in the WeChat Pay merchant platform arrive as notifications only: they are
//! recorded as WeChat Pay states them (`source: wechat`), whatever ferrypay's own tally says.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{error::Error, Backends, Ferrypay, OrderRef};
use crate::{
    channel::{
        ChannelError, ChannelRefund, ChannelRefundState, PayChannel, RefundError, RefundRequest,
    },
    model::{
        Fen, Merchant, Order, OrderStatus, OutRefundNo, Refund, RefundNo, RefundOutcome,
        RefundReason, RefundSettlement, RefundSource, RefundStatus, Timestamp, WebhookState,
        MAX_REFUNDS_PER_ORDER, REFUND_WINDOW_DAYS,
    },
    sign::hex_lower,
    store::{
        BeginRefundError, ExternalRefundRecorded, OrderStore, RecordRefundError, RefundStore,
        UpdateRefundError,
    },
};

/// How many of an order's refunds a query shows (newest first).
pub const REFUNDS_SHOWN: u32 = 50;
/// How many times a refund is begun again when its order keeps changing under it (concurrent
/// refunds of one order) before the request fails as a conflict of ours.
const BEGIN_ATTEMPTS: u32 = 5;

/// A refund request, validated field by field (the order's own rules come later: paid, within
/// the refundable remainder, under the limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    pub order: OrderRef,
    /// `None`: the whole refundable remainder, at the time of the request.
    pub amount: Option<Fen>,
    pub out_refund_no: Option<OutRefundNo>,
    pub reason: Option<RefundReason>,
    pub source: RefundSource,
}

impl RefundOrder {
    /// SHA-256 over the parameters as given (an omitted amount stays omitted), so a repeated
    /// `out_refund_no` can be told apart from a retry of the same request: a retry that
    /// omitted the amount is the same request even after the remainder changed.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            order: (&'a str, &'a str),
            amount: Option<i64>,
            out_refund_no: Option<&'a str>,
            reason: Option<&'a str>,
        }
        let order = match &self.order {
            OrderRef::OrderNo(no) => ("order_no", no.as_str()),
            OrderRef::OutTradeNo(no) => ("out_trade_no", no.as_str()),
        };
        let canonical = Canonical {
            order,
            amount: self.amount.map(Fen::get),
            out_refund_no: self.out_refund_no.as_ref().map(OutRefundNo::as_str),
            reason: self.reason.as_ref().map(RefundReason::as_str),
        };
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex_lower(&Sha256::digest(bytes))
    }
}

/// How a merchant names one of its refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRef {
    RefundNo(RefundNo),
    OutRefundNo(OutRefundNo),
}

/// What a refund notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundNoticeOutcome {
    /// The refund is in the state the notification states (now, or already: a duplicate).
    Settled { refund_no: RefundNo },
    /// A refund made outside ferrypay, recorded now (or before: a duplicate).
    RecordedExternal { refund_no: RefundNo },
    /// The notification contradicts what ferrypay holds (another order or amount): logged as
    /// an anomaly for an operator, nothing changed.
    Anomaly { refund_no: RefundNo },
}

impl<B: Backends> Ferrypay<B> {
    /// `POST /api/v1/pay/refund`: refunds `request.amount` (or the whole remainder) of one of
    /// the merchant's paid orders. The answer's refund is `succeeded` only once WeChat Pay says
    /// so; usually it is `processing`, and its notification (or the next query) finishes it.
    pub async fn refund_order(
        &self,
        merchant: &Merchant,
        request: RefundOrder,
    ) -> Result<Refund, Error> {
        let fingerprint = request.fingerprint();
        if let Some(out) = &request.out_refund_no {
            if let Some(existing) = self
                .store
                .refund_by_out_refund_no(&merchant.id, out)
                .await?
            {
                return self.replay_refund(merchant, existing, &fingerprint).await;
            }
        }
        let order = self.find_owned(merchant, &request.order).await?;
        // A payment whose notification is late is settled first: it can be refunded.
        let mut order = self.refresh(order).await?;
        for _ in 0..BEGIN_ATTEMPTS {
            let refund = self.new_refund(&order, &request, &fingerprint)?;
            match self.store.begin_refund(&refund).await {
                Ok(begun) => return self.send_refund(merchant, &order, begun).await,
                Err(BeginRefundError::OutRefundNoTaken { existing }) => {
                    return self.replay_refund(merchant, *existing, &fingerprint).await;
                }
                Err(BeginRefundError::RefundNoTaken | BeginRefundError::Conflict) => {
                    order = self.find_owned(merchant, &request.order).await?;
                }
                Err(BeginRefundError::OrderNotFound) => return Err(Error::OrderNotFound),
                Err(BeginRefundError::OrderNotPaid(status)) => return Err(not_refundable(status)),
                Err(BeginRefundError::ExceedsRefundable { .. }) => {
                    return Err(Error::RefundExceedsRefundable)
                }
                Err(BeginRefundError::TooManyRefunds) => return Err(Error::RefundNotAllowed),
                Err(BeginRefundError::InvalidAmount) => return Err(Error::InvalidAmount),
                Err(BeginRefundError::Store(e)) => return Err(e.into()),
            }
        }
        Err(Error::internal(format_args!(
            "order {} kept changing while a refund was begun",
            order.order_no
        )))
    }

    /// The refund the request would begin, after the order's own rules.
    fn new_refund(
        &self,
        order: &Order,
        request: &RefundOrder,
        fingerprint: &str,
    ) -> Result<Refund, Error> {
        if order.status != OrderStatus::Paid {
            return Err(not_refundable(order.status));
        }
        let now = self.clock.now();
        let paid_at = order.paid_at.unwrap_or(order.created_at);
        if now.unix() > paid_at.unix() + REFUND_WINDOW_DAYS * 86_400
            || order.refunds.count >= MAX_REFUNDS_PER_ORDER
        {
            return Err(Error::RefundNotAllowed);
        }
        let refundable = order.refunds.refundable(order.amount);
        let amount = match request.amount {
            Some(amount) if amount > order.amount => return Err(Error::InvalidAmount),
            Some(amount) if amount > refundable => return Err(Error::RefundExceedsRefundable),
            Some(amount) => amount,
            None if refundable.get() <= 0 => return Err(Error::RefundExceedsRefundable),
            None => refundable,
        };
        Ok(Refund {
            refund_no: RefundNo::generate(now)?,
            merchant_id: order.merchant_id.clone(),
            order_no: order.order_no.clone(),
            out_trade_no: order.out_trade_no.clone(),
            out_refund_no: request.out_refund_no.clone(),
            amount,
            status: RefundStatus::Processing,
            reason: request.reason.clone(),
            source: request.source,
            channel_refund_id: None,
            created_at: now,
            succeeded_at: None,
            ended_at: None,
            request_fingerprint: fingerprint.to_string(),
            webhook: WebhookState::default(),
        })
    }

    /// The same `out_refund_no` again: the same request answers with its refund (finishing it
    /// if it is still processing); another request is refused.
    async fn replay_refund(
        &self,
        merchant: &Merchant,
        existing: Refund,
        fingerprint: &str,
    ) -> Result<Refund, Error> {
        if existing.request_fingerprint != fingerprint {
            return Err(Error::OutRefundNoUsed);
        }
        self.finish_refund(merchant, existing).await
    }

    /// `POST /api/v1/pay/refund/query`: one of the merchant's refunds; a processing one asks
    /// WeChat Pay first (query-through, as orders do).
    pub async fn query_refund(&self, merchant: &Merchant, by: &RefundRef) -> Result<Refund, Error> {
        let refund = match by {
            RefundRef::RefundNo(no) => self.store.get_refund(no).await?,
            RefundRef::OutRefundNo(no) => {
                self.store.refund_by_out_refund_no(&merchant.id, no).await?
            }
        };
        // Another merchant's refund is indistinguishable from a missing one.
        let refund = refund
            .filter(|r| r.merchant_id == merchant.id)
            .ok_or(Error::RefundNotFound)?;
        self.finish_refund(merchant, refund).await
    }

    /// An order's latest refunds (newest first), for its query.
    pub async fn refunds_of(&self, order: &Order) -> Result<Vec<Refund>, Error> {
        if order.refunds.count == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .refunds_of_order(&order.order_no, REFUNDS_SHOWN)
            .await?)
    }

    /// A processing refund asks WeChat Pay where it is: a final state settles it; a refund
    /// WeChat Pay never heard of (the create never arrived) is sent again, identically; no
    /// answer leaves it processing. Final refunds are returned as they are.
    pub async fn finish_refund(
        &self,
        merchant: &Merchant,
        refund: Refund,
    ) -> Result<Refund, Error> {
        if refund.status != RefundStatus::Processing {
            // A crash between its settlement and its webhook job leaves the job to queue.
            return Ok(self.queue_refund_webhook_or_log(merchant, refund).await);
        }
        match self.channel.query_refund(refund.refund_no.as_str()).await {
            Ok(Some(found)) => {
                let refund = self.apply_channel_refund(refund, &found).await?;
                Ok(self.queue_refund_webhook_or_log(merchant, refund).await)
            }
            Ok(None) if refund.source == RefundSource::Wechat => Ok(refund),
            Ok(None) => {
                let order = self
                    .store
                    .get_order(&refund.order_no)
                    .await?
                    .ok_or_else(|| Error::internal("a refund's order is missing"))?;
                self.send_refund(merchant, &order, refund).await
            }
            Err(e) => {
                tracing::warn!(refund_no = %refund.refund_no, error = %e, "refund query-through failed; the refund stays processing");
                Ok(refund)
            }
        }
    }

    /// Asks WeChat Pay for the refund (the identical request each time) and records what it
    /// says. No answer leaves it processing (and answered as such: it exists, and it will be
    /// finished); a refusal closes it (no money moved) and fails the request.
    async fn send_refund(
        &self,
        merchant: &Merchant,
        order: &Order,
        refund: Refund,
    ) -> Result<Refund, Error> {
        let request = RefundRequest {
            refund_no: refund.refund_no.clone(),
            order_no: refund.order_no.clone(),
            amount: refund.amount,
            total: order.amount,
            reason: refund.reason.clone(),
        };
        match self.channel.refund(&request).await {
            Ok(answer) => {
                let refund = self.apply_channel_refund(refund, &answer).await?;
                Ok(self.queue_refund_webhook_or_log(merchant, refund).await)
            }
            Err(RefundError::Unavailable(cause)) => {
                tracing::warn!(refund_no = %refund.refund_no, %cause, "refund request unanswered; the refund stays processing and is sent again, identically, by its next query");
                Ok(refund)
            }
            Err(
                RefundError::Declined { code, message } | RefundError::Rejected { code, message },
            ) => {
                tracing::error!(refund_no = %refund.refund_no, order_no = %refund.order_no, %code, %message, "WeChat Pay refused the refund: it is closed, no money moved");
                let closed = self
                    .settle(refund, RefundOutcome::Closed, None, self.clock.now())
                    .await?;
                self.queue_refund_webhook_or_log(merchant, closed).await;
                Err(Error::Channel(ChannelError::Rejected { code, message }))
            }
        }
    }

    /// Records WeChat Pay's view of one of ferrypay's refunds, if it is final; an answer that
    /// contradicts the refund (another order or amount) changes nothing and is an anomaly.
    async fn apply_channel_refund(
        &self,
        refund: Refund,
        found: &ChannelRefund,
    ) -> Result<Refund, Error> {
        if found.out_trade_no != refund.order_no.as_str() || found.amount != refund.amount {
            tracing::error!(anomaly = true, refund_no = %refund.refund_no, order_no = %refund.order_no, channel_out_trade_no = %found.out_trade_no, amount = refund.amount.get(), channel_amount = found.amount.get(), "ANOMALY: WeChat Pay reports this refund for another order or amount; nothing changed");
            return Ok(refund);
        }
        let (outcome, at) = match found.state {
            ChannelRefundState::Processing => return Ok(refund),
            ChannelRefundState::Succeeded { at } => (RefundOutcome::Succeeded, at),
            ChannelRefundState::Closed => (RefundOutcome::Closed, self.clock.now()),
            ChannelRefundState::Abnormal => (RefundOutcome::Abnormal, self.clock.now()),
        };
        self.settle(refund, outcome, Some(found.refund_id.clone()), at)
            .await
    }

    /// The conditional change `processing -> outcome` (and the order's tally with it); a
    /// refund already final is returned as it is: nothing changes twice.
    async fn settle(
        &self,
        refund: Refund,
        outcome: RefundOutcome,
        channel_refund_id: Option<String>,
        at: Timestamp,
    ) -> Result<Refund, Error> {
        let settlement = RefundSettlement {
            outcome,
            channel_refund_id,
            at,
        };
        for _ in 0..BEGIN_ATTEMPTS {
            match self
                .store
                .settle_refund(&refund.refund_no, &settlement)
                .await
            {
                Ok(settled) => {
                    if settled.over_refunded {
                        tracing::error!(anomaly = true, refund_no = %settled.refund.refund_no, order_no = %settled.order.order_no, "ANOMALY: this refund takes the order past its amount (an abnormal refund paid out after its reservation was released); recorded");
                    }
                    tracing::info!(refund_no = %settled.refund.refund_no, status = settled.refund.status.as_str(), "refund settled");
                    return Ok(settled.refund);
                }
                Err(UpdateRefundError::Refused { current, .. }) => return Ok(*current),
                Err(UpdateRefundError::Conflict) => continue,
                Err(UpdateRefundError::NotFound) => return Err(Error::RefundNotFound),
                Err(UpdateRefundError::Store(e)) => return Err(e.into()),
            }
        }
        Err(Error::internal(format_args!(
            "refund {} kept changing while it was settled",
            refund.refund_no
        )))
    }

    /// A verified refund notification: one of ferrypay's refunds is settled as it states; one
    /// ferrypay does not know (made in the merchant platform) is recorded on its order.
    pub(super) async fn handle_refund_notice(
        &self,
        found: &ChannelRefund,
    ) -> Result<RefundNoticeOutcome, Error> {
        let refund_no = RefundNo::from_wechat(&found.out_refund_no).map_err(|e| {
            Error::internal(format_args!(
                "refund notification with an unusable out_refund_no: {e}"
            ))
        })?;
        if let Some(refund) = self.store.get_refund(&refund_no).await? {
            if found.out_trade_no != refund.order_no.as_str() || found.amount != refund.amount {
                self.apply_channel_refund(refund, found).await?;
                return Ok(RefundNoticeOutcome::Anomaly { refund_no });
            }
            let refund = self.apply_channel_refund(refund, found).await?;
            // Its webhook is queued before WeChat Pay hears "handled": a failure here is an
            // error, so WeChat Pay's retry queues it.
            let refund = self.ensure_refund_webhook_queued(refund).await?;
            return Ok(RefundNoticeOutcome::Settled {
                refund_no: refund.refund_no,
            });
        }
        self.record_external(refund_no, found).await
    }

    async fn record_external(
        &self,
        refund_no: RefundNo,
        found: &ChannelRefund,
    ) -> Result<RefundNoticeOutcome, Error> {
        let order = match crate::model::OrderNo::parse(&found.out_trade_no) {
            Some(no) => self.store.get_order(&no).await?,
            None => None,
        };
        let Some(order) = order else {
            tracing::error!(anomaly = true, out_trade_no = %found.out_trade_no, out_refund_no = %found.out_refund_no, amount = found.amount.get(), "ANOMALY: WeChat Pay reports a refund of an order ferrypay does not know");
            return Err(Error::OrderNotFound);
        };
        let now = self.clock.now();
        let (status, succeeded_at, ended_at) = match found.state {
            ChannelRefundState::Processing => (RefundStatus::Processing, None, None),
            ChannelRefundState::Succeeded { at } => (RefundStatus::Succeeded, Some(at), None),
            ChannelRefundState::Closed => (RefundStatus::Closed, None, Some(now)),
            ChannelRefundState::Abnormal => (RefundStatus::Abnormal, None, Some(now)),
        };
        let refund = Refund {
            refund_no: refund_no.clone(),
            merchant_id: order.merchant_id.clone(),
            order_no: order.order_no.clone(),
            out_trade_no: order.out_trade_no.clone(),
            out_refund_no: None,
            amount: found.amount,
            status,
            reason: None,
            source: RefundSource::Wechat,
            channel_refund_id: Some(found.refund_id.clone()),
            created_at: now,
            succeeded_at,
            ended_at,
            request_fingerprint: String::new(),
            webhook: WebhookState::default(),
        };
        for _ in 0..BEGIN_ATTEMPTS {
            match self.store.record_external_refund(&refund).await {
                Ok(ExternalRefundRecorded::New {
                    refund: recorded,
                    anomalies,
                    ..
                }) => {
                    tracing::warn!(refund_no = %refund_no, order_no = %order.order_no, amount = found.amount.get(), status = status.as_str(), "a refund made in the WeChat Pay merchant platform was recorded");
                    for anomaly in anomalies {
                        tracing::error!(anomaly = true, refund_no = %refund_no, order_no = %order.order_no, ?anomaly, "ANOMALY: a refund made outside ferrypay does not fit the order; recorded as WeChat Pay states it");
                    }
                    self.ensure_refund_webhook_queued(*recorded).await?;
                    return Ok(RefundNoticeOutcome::RecordedExternal { refund_no });
                }
                Ok(ExternalRefundRecorded::Existing(existing)) => {
                    // A repeated notification: it may carry the final state of one recorded
                    // while processing, or find its webhook still to queue.
                    let refund = self.apply_channel_refund(*existing, found).await?;
                    self.ensure_refund_webhook_queued(refund).await?;
                    return Ok(RefundNoticeOutcome::RecordedExternal { refund_no });
                }
                Err(RecordRefundError::Conflict) => continue,
                Err(RecordRefundError::OrderNotFound) => return Err(Error::OrderNotFound),
                Err(RecordRefundError::Store(e)) => return Err(e.into()),
            }
        }
        Err(Error::internal(format_args!(
            "order {} kept changing while an outside refund was recorded",
            order.order_no
        )))
    }
}

impl<B: Backends> Ferrypay<B> {
    /// Queues a final refund's webhook if the merchant subscribed and it was not queued yet;
    /// a failure is logged and left to the refund's next query or notification (the refund
    /// itself is recorded: the answer does not fail for it).
    async fn queue_refund_webhook_or_log(&self, merchant: &Merchant, refund: Refund) -> Refund {
        if !refund.status.is_final() || refund.webhook.queued_at.is_some() {
            return refund;
        }
        match self
            .queue_refund_webhook_for(refund.clone(), merchant)
            .await
        {
            Ok(queued) => queued,
            Err(e) => {
                tracing::error!(refund_no = %refund.refund_no, error = %e, "refund webhook not queued yet; the refund's next query or notification queues it");
                refund
            }
        }
    }
}

/// The refusal for a refund of an order in `status` (not paid).
fn not_refundable(status: OrderStatus) -> Error {
    match status {
        OrderStatus::Refunded => Error::RefundExceedsRefundable,
        OrderStatus::Pending | OrderStatus::Closed | OrderStatus::Paid => Error::OrderNotPaid,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        channel::NoticeHeaders,
        model::{Clock, ManualClock, OrderNo, OutTradeNo},
        service::NoticeOutcome,
        testing::*,
    };

    fn request(
        out_trade_no: &str,
        amount: Option<i64>,
        out_refund_no: Option<&str>,
    ) -> RefundOrder {
        RefundOrder {
            order: OrderRef::OutTradeNo(OutTradeNo::parse(out_trade_no).unwrap()),
            amount: amount.map(Fen::new),
            out_refund_no: out_refund_no.map(|n| OutRefundNo::parse(n).unwrap()),
            reason: None,
            source: RefundSource::Api,
        }
    }

    /// An app, its merchant, and a paid order of 50 (`shop-1`).
    async fn paid() -> (TestApp, Arc<ManualClock>, Merchant, Order) {
        let clock = clock_at_start();
        let app = app_with_clock(clock.clone());
        let (merchant, _) = onboard_test_merchant(&app, "Shop").await;
        let order = create_test_order(&app, &merchant, 50, Some("shop-1")).await;
        let order = pay_test_order(&app, &order).await;
        (app, clock, merchant, order)
    }

    fn succeeded(clock: &ManualClock) -> ChannelRefundState {
        ChannelRefundState::Succeeded { at: clock.now() }
    }

    /// The fake's notification of `body`, through the app as the callback would handle it.
    async fn notify(app: &TestApp, body: &[u8]) -> NoticeOutcome {
        let mut headers = NoticeHeaders::new();
        headers.insert("x-fake-verified", "yes".parse().unwrap());
        app.handle_channel_notification(&headers, body)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_partial_then_the_full_refund_and_the_default_is_the_remainder() {
        let (app, clock, merchant, order) = paid().await;
        let first = app
            .refund_order(&merchant, request("shop-1", Some(30), None))
            .await
            .unwrap();
        assert_eq!(
            (first.status, first.amount),
            (RefundStatus::Processing, Fen::new(30))
        );
        assert_eq!(first.source, RefundSource::Api);
        app.channel
            .settle_refund(first.refund_no.as_str(), succeeded(&clock))
            .unwrap();
        let by = RefundRef::RefundNo(first.refund_no.clone());
        let first = app.query_refund(&merchant, &by).await.unwrap();
        assert_eq!(first.status, RefundStatus::Succeeded);
        let order_now = stored_order(&app, &order.order_no).await;
        assert_eq!(
            order_now.status,
            OrderStatus::Paid,
            "a partial refund keeps paid"
        );
        assert_eq!(order_now.refunds.refunded, Fen::new(30));

        // No amount: the remainder, 20.
        clock.set(clock.now().plus_secs(60));
        let rest = app
            .refund_order(&merchant, request("shop-1", None, None))
            .await
            .unwrap();
        assert_eq!(rest.amount, Fen::new(20));
        let body = app
            .channel
            .settle_refund(rest.refund_no.as_str(), succeeded(&clock))
            .unwrap();
        assert!(matches!(
            notify(&app, &body).await,
            NoticeOutcome::Refund { .. }
        ));
        let order_now = stored_order(&app, &order.order_no).await;
        assert_eq!(order_now.status, OrderStatus::Refunded);
        assert_eq!(order_now.refunds.refunded, Fen::new(50));
        let refunds = app.refunds_of(&order_now).await.unwrap();
        assert_eq!(refunds.len(), 2);
        assert_eq!(refunds[0].refund_no, rest.refund_no, "newest first");
        // Nothing is left.
        assert!(matches!(
            app.refund_order(&merchant, request("shop-1", None, None))
                .await,
            Err(Error::RefundExceedsRefundable)
        ));
    }

    #[tokio::test]
    async fn the_same_out_refund_no_is_the_same_refund_and_other_parameters_are_refused() {
        let (app, clock, merchant, _) = paid().await;
        let first = app
            .refund_order(&merchant, request("shop-1", Some(10), Some("r-1")))
            .await
            .unwrap();
        let again = app
            .refund_order(&merchant, request("shop-1", Some(10), Some("r-1")))
            .await
            .unwrap();
        assert_eq!(again.refund_no, first.refund_no);
        assert_eq!(
            app.channel.refund_calls(),
            2,
            "the create, then the replay's query"
        );
        assert!(matches!(
            app.refund_order(&merchant, request("shop-1", Some(11), Some("r-1")))
                .await,
            Err(Error::OutRefundNoUsed)
        ));
        // Once it succeeded, the replay answers it as it is, without asking.
        app.channel
            .settle_refund(first.refund_no.as_str(), succeeded(&clock))
            .unwrap();
        let done = app
            .refund_order(&merchant, request("shop-1", Some(10), Some("r-1")))
            .await
            .unwrap();
        assert_eq!(done.status, RefundStatus::Succeeded);
        let calls = app.channel.refund_calls();
        app.refund_order(&merchant, request("shop-1", Some(10), Some("r-1")))
            .await
            .unwrap();
        assert_eq!(app.channel.refund_calls(), calls);
    }

    #[tokio::test]
    async fn refunds_beyond_the_order_or_of_unpaid_orders_are_refused() {
        let (app, _, merchant, _) = paid().await;
        for (amount, expected) in [(51, "invalid_amount"), (0, "invalid_amount")] {
            let err = app
                .refund_order(&merchant, request("shop-1", Some(amount), None))
                .await
                .unwrap_err();
            assert_eq!(err.code().as_str(), expected, "{amount}");
        }
        app.refund_order(&merchant, request("shop-1", Some(40), None))
            .await
            .unwrap();
        // 40 processing: 11 is more than the 10 left.
        assert!(matches!(
            app.refund_order(&merchant, request("shop-1", Some(11), None))
                .await,
            Err(Error::RefundExceedsRefundable)
        ));
        create_test_order(&app, &merchant, 50, Some("shop-2")).await;
        assert!(matches!(
            app.refund_order(&merchant, request("shop-2", None, None))
                .await,
            Err(Error::OrderNotPaid)
        ));
        let (other, _) = onboard(
            &app,
            "Other",
            Some("sk_other_0000000000"),
            Some("pk_other_0000000000"),
        )
        .await;
        assert!(matches!(
            app.refund_order(&other, request("shop-1", None, None))
                .await,
            Err(Error::OrderNotFound)
        ));
    }

    #[tokio::test]
    async fn a_payment_older_than_a_year_cannot_be_refunded() {
        let (app, clock, merchant, _) = paid().await;
        clock.set(clock.now().plus_secs(REFUND_WINDOW_DAYS * 86_400 + 1));
        assert!(matches!(
            app.refund_order(&merchant, request("shop-1", None, None))
                .await,
            Err(Error::RefundNotAllowed)
        ));
    }

    #[tokio::test]
    async fn an_unanswered_refund_stays_processing_and_is_finished_without_a_second_refund() {
        let (app, clock, merchant, order) = paid().await;
        // WeChat Pay makes the refund, but the answer is lost.
        app.channel.lose_next_refund_answers(1);
        let refund = app
            .refund_order(&merchant, request("shop-1", Some(30), None))
            .await
            .unwrap();
        assert_eq!(refund.status, RefundStatus::Processing);
        // The query finds it at WeChat Pay (no second create), and its success settles it.
        app.channel
            .settle_refund(refund.refund_no.as_str(), succeeded(&clock))
            .unwrap();
        let by = RefundRef::RefundNo(refund.refund_no.clone());
        assert_eq!(
            app.query_refund(&merchant, &by).await.unwrap().status,
            RefundStatus::Succeeded
        );
        assert_eq!(
            stored_order(&app, &order.order_no).await.refunds.refunded,
            Fen::new(30)
        );

        // A create that never arrived: the query finds nothing and sends the identical request.
        app.channel
            .script_refund_errors([RefundError::Unavailable("timeout".into())]);
        let lost = app
            .refund_order(&merchant, request("shop-1", Some(20), None))
            .await
            .unwrap();
        assert_eq!(lost.status, RefundStatus::Processing);
        assert!(app.channel.refund_state(lost.refund_no.as_str()).is_none());
        let by = RefundRef::RefundNo(lost.refund_no.clone());
        app.query_refund(&merchant, &by).await.unwrap();
        let sent = app.channel.refund_state(lost.refund_no.as_str()).unwrap();
        assert_eq!(sent.amount, Fen::new(20));
    }

    #[tokio::test]
    async fn a_refused_refund_is_closed_and_releases_its_amount() {
        let (app, _, merchant, order) = paid().await;
        app.channel.script_refund_errors([RefundError::Declined {
            code: "NOT_ENOUGH".into(),
            message: "基本账户余额不足".into(),
        }]);
        let err = app
            .refund_order(&merchant, request("shop-1", Some(30), Some("r-9")))
            .await
            .unwrap_err();
        assert_eq!(err.code().as_str(), "payment_failed");
        let by = RefundRef::OutRefundNo(OutRefundNo::parse("r-9").unwrap());
        assert_eq!(
            app.query_refund(&merchant, &by).await.unwrap().status,
            RefundStatus::Closed
        );
        let now = stored_order(&app, &order.order_no).await;
        assert_eq!(now.refunds.refundable(now.amount), Fen::new(50));
    }

    #[tokio::test]
    async fn notifications_settle_once_and_abnormal_or_closed_are_kept() {
        let (app, _, merchant, order) = paid().await;
        let abnormal = app
            .refund_order(&merchant, request("shop-1", Some(10), None))
            .await
            .unwrap();
        let closed = app
            .refund_order(&merchant, request("shop-1", Some(15), None))
            .await
            .unwrap();
        let body = app
            .channel
            .settle_refund(abnormal.refund_no.as_str(), ChannelRefundState::Abnormal)
            .unwrap();
        notify(&app, &body).await;
        // A duplicate changes nothing.
        notify(&app, &body).await;
        let body = app
            .channel
            .settle_refund(closed.refund_no.as_str(), ChannelRefundState::Closed)
            .unwrap();
        notify(&app, &body).await;
        for (refund, status) in [
            (&abnormal, RefundStatus::Abnormal),
            (&closed, RefundStatus::Closed),
        ] {
            let stored = app.store.get_refund(&refund.refund_no).await.unwrap();
            assert_eq!(stored.unwrap().status, status);
        }
        // The abnormal amount waits at WeChat Pay: not refundable again; the closed one is.
        let now = stored_order(&app, &order.order_no).await;
        assert_eq!(now.refunds.refundable(now.amount), Fen::new(40));
    }

    #[tokio::test]
    async fn a_refund_made_in_the_merchant_platform_is_recorded_once() {
        let (app, clock, merchant, order) = paid().await;
        let (number, body) = app
            .channel
            .refund_externally(&order.order_no, Fen::new(20), clock.now())
            .unwrap();
        assert!(matches!(
            notify(&app, &body).await,
            NoticeOutcome::Refund { .. }
        ));
        assert!(matches!(
            notify(&app, &body).await,
            NoticeOutcome::Refund { .. }
        ));
        let now = stored_order(&app, &order.order_no).await;
        assert_eq!((now.refunds.refunded, now.refunds.count), (Fen::new(20), 1));
        let refunds = app.refunds_of(&now).await.unwrap();
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].source, RefundSource::Wechat);
        assert_eq!(refunds[0].refund_no.as_str(), number);
        // The merchant can refund the rest, no more.
        assert!(matches!(
            app.refund_order(&merchant, request("shop-1", Some(31), None))
                .await,
            Err(Error::RefundExceedsRefundable)
        ));
        app.refund_order(&merchant, request("shop-1", None, None))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_notification_for_an_unknown_order_is_refused_for_a_retry() {
        let app = app_with_clock(clock_at_start());
        let found = ChannelRefund {
            refund_id: "503".into(),
            out_refund_no: "RF20251221103000ZZZZZZ".into(),
            out_trade_no: OrderNo::generate(app.clock.now()).unwrap().to_string(),
            transaction_id: None,
            state: ChannelRefundState::Closed,
            amount: Fen::new(5),
            total: Fen::new(5),
            payer_total: None,
            payer_refund: None,
        };
        assert!(matches!(
            app.handle_refund_notice(&found).await,
            Err(Error::OrderNotFound)
        ));
    }

    /// The refund webhook jobs on the app's queue.
    fn refund_jobs(app: &TestApp) -> Vec<serde_json::Value> {
        app.queue
            .bodies()
            .iter()
            .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap())
            .filter(|job| job.get("refund_no").is_some())
            .collect()
    }

    #[tokio::test]
    async fn refund_webhooks_go_only_to_merchants_who_asked_and_once_per_event() {
        use crate::{model::NotifyEvents, service::MerchantAdmin, store::MerchantStore};
        let (app, clock, merchant, _) = paid().await;
        let refund = app
            .refund_order(&merchant, request("shop-1", Some(10), None))
            .await
            .unwrap();
        let body = app
            .channel
            .settle_refund(refund.refund_no.as_str(), succeeded(&clock))
            .unwrap();
        notify(&app, &body).await;
        assert!(
            refund_jobs(&app).is_empty(),
            "order.paid only: no refund webhook"
        );

        MerchantAdmin::new(&app.store, &*app.clock, false)
            .set_notify_events(&merchant.id, NotifyEvents::all())
            .await
            .unwrap();
        let merchant = app.store.get_merchant(&merchant.id).await.unwrap().unwrap();
        let second = app
            .refund_order(&merchant, request("shop-1", Some(10), None))
            .await
            .unwrap();
        let body = app
            .channel
            .settle_refund(second.refund_no.as_str(), succeeded(&clock))
            .unwrap();
        notify(&app, &body).await;
        // The duplicate notification and a query queue nothing more.
        notify(&app, &body).await;
        let by = RefundRef::RefundNo(second.refund_no.clone());
        app.query_refund(&merchant, &by).await.unwrap();
        let jobs = refund_jobs(&app);
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0]["event"], "refund.succeeded");
        assert_eq!(jobs[0]["refund_no"], second.refund_no.as_str());
        assert_eq!(
            jobs[0]["event_id"],
            format!("evt_{}_succeeded", second.refund_no)
        );
    }

    #[test]
    fn the_fingerprint_tells_other_parameters_apart_and_keeps_an_omitted_amount_omitted() {
        let reasoned = |reason: &str| RefundOrder {
            reason: Some(RefundReason::parse(reason).unwrap()),
            ..request("shop-1", Some(30), Some("r-1"))
        };
        let base = request("shop-1", Some(30), Some("r-1"));
        assert_eq!(
            base.fingerprint(),
            request("shop-1", Some(30), Some("r-1")).fingerprint()
        );
        for other in [
            request("shop-1", Some(31), Some("r-1")),
            request("shop-1", None, Some("r-1")),
            reasoned("broken"),
        ] {
            assert_ne!(base.fingerprint(), other.fingerprint());
        }
        let by_number = RefundOrder {
            order: OrderRef::OrderNo(OrderNo::parse("FP20251221103000ABC123").unwrap()),
            ..base.clone()
        };
        assert_ne!(by_number.fingerprint(), base.fingerprint());
        // Who asked is not a parameter: the operator finishing a merchant's refund is the same.
        let by_operator = RefundOrder {
            source: RefundSource::Operator,
            ..base.clone()
        };
        assert_eq!(by_operator.fingerprint(), base.fingerprint());
    }
}
