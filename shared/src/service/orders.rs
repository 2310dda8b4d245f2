//! Orders: create (idempotent by `out_trade_no`), query (with query-through), close, list.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    error::{not_pending, Error},
    Backends, Ferrypay,
};
use crate::{
    channel::{
        ChannelError, CloseOutcome, JsapiPayParams, PayChannel, Payment, PrepayRequest, TradeState,
    },
    model::{
        Cause, Fen, Merchant, Order, OrderNo, OrderSource, OrderStatus, OrderUpdate, OutTradeNo,
        PayCredential, PayType, Timestamp, UpdateRefused,
    },
    qr,
    sign::hex_lower,
    store::{InsertOrderError, ListQuery, OrderPage, OrderStore, PageStart, UpdateOrderError},
};

/// A validated create request (the API layer has checked every field's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateOrder {
    pub amount: Fen,
    pub description: Option<String>,
    pub pay_type: PayType,
    pub openid: Option<String>,
    pub client_ip: Option<String>,
    pub out_trade_no: Option<OutTradeNo>,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    pub expire_minutes: Option<u32>,
    /// Who asked: the API, or a payment link. Not in the fingerprint: only API requests carry
    /// an `out_trade_no` to compare, and their fingerprints stay what they were.
    #[serde(skip)]
    pub source: OrderSource,
}

impl CreateOrder {
    /// SHA-256 over every parameter as given: equal only for a true retry of the same request.
    fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex_lower(&Sha256::digest(canonical))
    }
}

/// What the payer needs to pay, ready for the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentInfo {
    Native { code_url: String, qrcode: String },
    Jsapi(JsapiPayParams),
    H5 { h5_url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedOrder {
    pub order: Order,
    pub payment: PaymentInfo,
}

/// How a merchant names one of its orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    OrderNo(OrderNo),
    OutTradeNo(OutTradeNo),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOrders {
    pub status: Option<OrderStatus>,
    pub start: PageStart,
    pub per_page: u32,
}

/// What became of a payment the channel reported.
#[derive(Debug)]
pub enum Settlement {
    /// The order is paid with this transaction (now, or already before) and its webhook queued.
    Paid(Order),
    /// The order is paid, but its webhook job could not be queued: the next query or
    /// notification queues it.
    PaidWebhookNotQueued { order: Order, cause: Error },
    /// The order cannot take this payment (closed, another amount, another transaction).
    Refused {
        current: Order,
        reason: UpdateRefused,
    },
}

impl Settlement {
    pub fn order(self) -> Order {
        match self {
            Settlement::Paid(order)
            | Settlement::PaidWebhookNotQueued { order, .. }
            | Settlement::Refused { current: order, .. } => order,
        }
    }
}

/// How often an expired order's refresh asks again when the close says "already paid" but the
/// query says "not paid" (a payment in flight settles within a round or two; a channel that
/// keeps contradicting itself must not be asked forever).
pub const MAX_CLOSE_PAID_ROUNDS: u32 = 2;

/// Generated order numbers collide only if two land in the same second with the same 6 random
/// characters (1 in 2 billion); a few fresh draws settle it.
const ORDER_NO_ATTEMPTS: usize = 3;

impl<B: Backends> Ferrypay<B> {
    /// Creates an order and opens it with the payment channel. The same `out_trade_no` with the
    /// same parameters returns the existing order; with other parameters it is a conflict.
    pub async fn create_order(
        &self,
        merchant: &Merchant,
        request: CreateOrder,
    ) -> Result<CreatedOrder, Error> {
        let fingerprint = request.fingerprint();
        if let Some(out_trade_no) = &request.out_trade_no {
            if let Some(existing) = self
                .store
                .order_by_out_trade_no(&merchant.id, out_trade_no)
                .await?
            {
                return self.replay_create(existing, &fingerprint).await;
            }
        }

        let now = self.clock.now();
        let expire_minutes = request
            .expire_minutes
            .unwrap_or(self.config.default_expire_minutes);
        let mut order = Order {
            order_no: OrderNo::generate(now)?,
            merchant_id: merchant.id.clone(),
            out_trade_no: request.out_trade_no,
            amount: request.amount,
            description: request.description.unwrap_or_else(|| merchant.name.clone()),
            pay_type: request.pay_type,
            source: request.source,
            openid: request.openid,
            client_ip: request.client_ip,
            attach: request.attach,
            notify_url: request.notify_url,
            status: OrderStatus::Pending,
            credential: None,
            transaction_id: None,
            paid_at: None,
            closed_at: None,
            webhook: Default::default(),
            created_at: now,
            expires_at: now.plus_secs(i64::from(expire_minutes) * 60),
            request_fingerprint: fingerprint.clone(),
            refunds: Default::default(),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.store.insert_order(&order).await {
                Ok(()) => break,
                Err(InsertOrderError::OrderNoTaken) if attempts < ORDER_NO_ATTEMPTS => {
                    order.order_no = OrderNo::generate(now)?;
                }
                Err(InsertOrderError::OutTradeNoTaken) => {
                    // A concurrent request with the same out_trade_no won the race.
                    let existing = match &order.out_trade_no {
                        Some(no) => self.store.order_by_out_trade_no(&merchant.id, no).await?,
                        None => None,
                    };
                    let existing = existing.ok_or_else(|| {
                        Error::internal("out_trade_no taken but its order is missing")
                    })?;
                    return self.replay_create(existing, &fingerprint).await;
                }
                Err(InsertOrderError::OrderNoTaken) => {
                    return Err(Error::internal("order number collided repeatedly"))
                }
                Err(InsertOrderError::Store(e)) => return Err(e.into()),
            }
        }
        self.open_with_channel(order).await
    }

    async fn replay_create(
        &self,
        existing: Order,
        fingerprint: &str,
    ) -> Result<CreatedOrder, Error> {
        if existing.request_fingerprint != fingerprint {
            return Err(Error::OutTradeNoUsed);
        }
        if existing.credential.is_some() {
            return self.created(existing);
        }
        // An earlier attempt stored the order but the channel failed: finish it now.
        if existing.status == OrderStatus::Pending && !existing.is_expired(self.clock.now()) {
            return self.open_with_channel(existing).await;
        }
        Err(not_pending(self.refresh(existing).await?.status))
    }

    /// Asks the channel for the payer's credential and records it on the order.
    async fn open_with_channel(&self, order: Order) -> Result<CreatedOrder, Error> {
        let request = PrepayRequest {
            order_no: order.order_no.clone(),
            amount: order.amount,
            description: order.description.clone(),
            pay_type: order.pay_type,
            openid: order.openid.clone(),
            client_ip: order.client_ip.clone(),
            expires_at: order.expires_at,
        };
        let credential = match self.channel.prepay(&request).await {
            Ok(credential) => credential,
            Err(err) => {
                if order.out_trade_no.is_none() {
                    // Nobody can ask for this order again: record it as closed rather than
                    // leave a pending order no payer can ever pay.
                    let closed = OrderUpdate::MarkClosed {
                        closed_at: self.clock.now(),
                    };
                    if let Err(e) = self.store.update_order(&order.order_no, &closed).await {
                        tracing::warn!(order_no = %order.order_no, error = %e, "could not close an order whose prepay failed");
                    }
                }
                return Err(err.into());
            }
        };
        let update = OrderUpdate::AttachCredential(credential);
        match self.store.update_order(&order.order_no, &update).await {
            Ok(order) => self.created(order),
            Err(UpdateOrderError::Refused { current, .. }) => Err(not_pending(current.status)),
            Err(UpdateOrderError::NotFound) => Err(Error::internal("order vanished during create")),
            Err(UpdateOrderError::Store(e)) => Err(e.into()),
        }
    }

    fn created(&self, order: Order) -> Result<CreatedOrder, Error> {
        let payment = self.payment_info(&order)?;
        Ok(CreatedOrder { order, payment })
    }

    /// What the payer needs to pay an order opened with the channel (JSAPI parameters are
    /// signed afresh each time).
    pub fn payment_info(&self, order: &Order) -> Result<PaymentInfo, Error> {
        Ok(match &order.credential {
            Some(PayCredential::Native { code_url }) => PaymentInfo::Native {
                qrcode: qr::png_data_uri(code_url).map_err(Error::internal)?,
                code_url: code_url.clone(),
            },
            Some(PayCredential::Jsapi { prepay_id }) => {
                PaymentInfo::Jsapi(self.channel.jsapi_params(prepay_id, self.clock.now())?)
            }
            Some(PayCredential::H5 { h5_url }) => PaymentInfo::H5 {
                h5_url: h5_url.clone(),
            },
            None => return Err(Error::internal("order has no credential")),
        })
    }

    /// One of the merchant's orders, settled with the channel if it is still pending.
    pub async fn query_order(&self, merchant: &Merchant, by: &OrderRef) -> Result<Order, Error> {
        let order = self.find_owned(merchant, by).await?;
        self.refresh(order).await
    }

    /// Closes an unpaid order: with the channel first, then locally.
    pub async fn close_order(&self, merchant: &Merchant, by: &OrderRef) -> Result<Order, Error> {
        let order = self.find_owned(merchant, by).await?;
        if order.status != OrderStatus::Pending {
            return Err(not_pending(order.status));
        }
        match self.channel.close(&order.order_no).await? {
            CloseOutcome::AlreadyPaid => {
                // The payer was faster: record the payment, then refuse the close.
                let settled = self.refresh(order).await?;
                if settled.status != OrderStatus::Paid {
                    tracing::warn!(order_no = %settled.order_no, "channel reports paid but the payment could not be settled yet");
                }
                Err(Error::OrderPaid)
            }
            CloseOutcome::Closed => {
                let update = OrderUpdate::MarkClosed {
                    closed_at: self.clock.now(),
                };
                match self.store.update_order(&order.order_no, &update).await {
                    Ok(closed) => Ok(closed),
                    Err(UpdateOrderError::Refused { current, .. }) => {
                        Err(not_pending(current.status))
                    }
                    Err(UpdateOrderError::NotFound) => Err(Error::OrderNotFound),
                    Err(UpdateOrderError::Store(e)) => Err(e.into()),
                }
            }
        }
    }

    /// The merchant's orders, newest first. Shows stored state (no query-through per row).
    pub async fn list_orders(
        &self,
        merchant: &Merchant,
        request: ListOrders,
    ) -> Result<OrderPage, Error> {
        let query = ListQuery {
            merchant_id: merchant.id.clone(),
            status: request.status,
            start: request.start,
            per_page: request.per_page,
        };
        Ok(self.store.list_orders(&query).await?)
    }

    pub(super) async fn find_owned(
        &self,
        merchant: &Merchant,
        by: &OrderRef,
    ) -> Result<Order, Error> {
        let order = match by {
            OrderRef::OrderNo(no) => self.store.get_order(no).await?,
            OrderRef::OutTradeNo(no) => self.store.order_by_out_trade_no(&merchant.id, no).await?,
        };
        // Another merchant's order is indistinguishable from a missing one.
        order
            .filter(|o| o.merchant_id == merchant.id)
            .ok_or(Error::OrderNotFound)
    }

    /// Query-through: a pending order asks the channel, and a final answer settles it with a
    /// conditional write. A channel failure leaves the order as stored (and is logged). An
    /// expired order is closed upstream; if the close says "already paid" while the query
    /// keeps saying "not paid", it asks again at most [`MAX_CLOSE_PAID_ROUNDS`] times, then
    /// fails as `payment_unavailable` (logged as an anomaly) rather than loop.
    pub async fn refresh(&self, order: Order) -> Result<Order, Error> {
        self.refresh_round(order, 0).await
    }

    async fn refresh_round(&self, order: Order, round: u32) -> Result<Order, Error> {
        if order.status != OrderStatus::Pending {
            return Ok(order);
        }
        let now = self.clock.now();
        let state = match self.channel.query(&order.order_no).await {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(order_no = %order.order_no, error = %err, "query-through failed; answering with stored state");
                return Ok(order);
            }
        };
        match state {
            // Refunded: it was paid (and refunded since): settle the payment all the same.
            TradeState::Paid {
                transaction_id,
                paid_at,
                amount,
            }
            | TradeState::Refunded {
                transaction_id,
                paid_at,
                amount,
            } => {
                let payment = Payment {
                    transaction_id,
                    paid_at,
                    amount,
                };
                // The notification may never come, so this settles (and queues the webhook)
                // too. If the queue is down the order is still paid: answer with it.
                match self.settle_payment(order, payment).await? {
                    Settlement::PaidWebhookNotQueued { order, cause } => {
                        tracing::warn!(order_no = %order.order_no, "query-through settled a payment but could not queue its webhook");
                        cause.log_cause();
                        Ok(order)
                    }
                    settled => Ok(settled.order()),
                }
            }
            TradeState::Closed => self.settle_closed(order, now).await,
            TradeState::NotFound if order.is_expired(now) => self.settle_closed(order, now).await,
            TradeState::NotPaid if order.is_expired(now) => {
                // Past its time: close it upstream so it can never be paid, then locally.
                match self.channel.close(&order.order_no).await {
                    Ok(CloseOutcome::Closed) => self.settle_closed(order, now).await,
                    Ok(CloseOutcome::AlreadyPaid) if round < MAX_CLOSE_PAID_ROUNDS => {
                        Box::pin(self.refresh_round(order, round + 1)).await
                    }
                    Ok(CloseOutcome::AlreadyPaid) => {
                        tracing::error!(
                            anomaly = true,
                            order_no = %order.order_no,
                            rounds = round + 1,
                            "the channel's close says paid but its query says not paid; giving up"
                        );
                        Err(Error::Channel(ChannelError::Unavailable(Cause::new(
                            "close and query of an expired order disagree",
                        ))))
                    }
                    Err(err) => {
                        tracing::warn!(order_no = %order.order_no, error = %err, "closing an expired order failed; will retry on next query");
                        Ok(order)
                    }
                }
            }
            TradeState::NotFound | TradeState::NotPaid => Ok(order),
        }
    }

    /// Settles a payment the channel confirmed (a notification or a query-through): the
    /// conditional `pending -> paid` write, only for the exact amount, then the webhook job.
    /// Anything the order cannot take is an anomaly: logged loudly, never written.
    pub async fn settle_payment(
        &self,
        order: Order,
        payment: Payment,
    ) -> Result<Settlement, Error> {
        let Payment {
            transaction_id,
            paid_at,
            amount,
        } = payment;
        let update = OrderUpdate::MarkPaid {
            transaction_id: transaction_id.clone(),
            paid_at,
            amount,
        };
        let paid = match self.store.update_order(&order.order_no, &update).await {
            Ok(paid) => {
                tracing::info!(order_no = %paid.order_no, %transaction_id, amount = paid.amount.get(), "order paid");
                paid
            }
            Err(UpdateOrderError::Refused { current, reason }) => {
                let same_payment = reason == UpdateRefused::NotPending(OrderStatus::Paid)
                    && current.transaction_id.as_deref() == Some(transaction_id.as_str());
                if !same_payment {
                    tracing::error!(
                            anomaly = true,
                            order_no = %current.order_no,
                            %transaction_id,
                            reported_amount = amount.get(),
                            order_amount = current.amount.get(),
                            status = current.status.as_str(),
                            %reason,
                        "ANOMALY: the channel reports a payment this order cannot take; money may need a refund"
                    );
                    return Ok(Settlement::Refused {
                        current: *current,
                        reason,
                    });
                }
                // Already paid with this transaction: a duplicate. Its webhook may still be
                // unqueued (a crash or a queue failure last time).
                *current
            }
            Err(UpdateOrderError::NotFound) => return Err(Error::OrderNotFound),
            Err(UpdateOrderError::Store(e)) => return Err(e.into()),
        };
        let fallback = paid.clone();
        match self.ensure_webhook_queued(paid).await {
            Ok(queued) => Ok(Settlement::Paid(queued)),
            Err(cause) => Ok(Settlement::PaidWebhookNotQueued {
                order: fallback,
                cause,
            }),
        }
    }

    async fn settle_closed(&self, order: Order, now: Timestamp) -> Result<Order, Error> {
        let update = OrderUpdate::MarkClosed { closed_at: now };
        match self.store.update_order(&order.order_no, &update).await {
            Ok(closed) => Ok(closed),
            Err(UpdateOrderError::Refused { current, .. }) => Ok(*current),
            Err(UpdateOrderError::NotFound) => Err(Error::OrderNotFound),
            Err(UpdateOrderError::Store(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{service::ErrorCode, testing::*};

    #[tokio::test]
    async fn a_pending_order_the_channel_says_refunded_is_settled_as_paid() {
        let clock = clock_at_start();
        let app = app_with_clock(clock.clone());
        let (merchant, _) = onboard_test_merchant(&app, "Shop").await;
        let order = create_test_order(&app, &merchant, 100, None).await;
        // Paid and partly refunded in the merchant platform; no notification reached us.
        let now = app.clock.now();
        app.channel.pay(&order.order_no, now).unwrap();
        app.channel
            .refund_externally(&order.order_no, Fen::new(10), now)
            .unwrap();
        assert!(matches!(
            app.channel.state(&order.order_no),
            TradeState::Refunded { .. }
        ));
        let settled = app.refresh(order).await.unwrap();
        assert_eq!(settled.status, OrderStatus::Paid);
        assert!(settled.transaction_id.is_some());
    }

    #[tokio::test]
    async fn a_close_saying_paid_while_the_query_says_not_paid_is_asked_a_bounded_number_of_times()
    {
        let clock = clock_at_start();
        let app = app_with_clock(clock.clone());
        let (merchant, _) = onboard_test_merchant(&app, "Shop").await;
        let order = create_test_order(&app, &merchant, 100, None).await;
        clock.set(order.expires_at.plus_secs(1));
        app.channel.close_always_says_paid();
        let before = app.channel.calls();
        let err = app.refresh(order.clone()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::PaymentUnavailable);
        // Each round is one query and one close.
        let rounds = u64::from(MAX_CLOSE_PAID_ROUNDS) + 1;
        assert_eq!(app.channel.calls() - before, 2 * rounds);
        assert_eq!(app.channel.queries(), rounds);
        // The order stays as stored: pending, for a later round to settle.
        assert_eq!(
            stored_order(&app, &order.order_no).await.status,
            OrderStatus::Pending
        );
        // The merchant's query answers the same bounded failure.
        let by = OrderRef::OrderNo(order.order_no.clone());
        let err = app.query_order(&merchant, &by).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::PaymentUnavailable);
    }
}
