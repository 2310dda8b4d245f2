//! Merchant webhooks through the notify-worker: `WebhookWorker::handle_batch` of 10 jobs for 10
//! paid orders (load the order and merchant, build and sign the body, POST through the
//! SSRF-guarded client, record the attempt and the order's delivery state), against a receiver
//! on 127.0.0.1 that answers `200` on kept-alive connections. The receiver runs on its own
//! thread; the worker on a current-thread runtime, as in a Lambda invocation. Each iteration's
//! jobs are a fresh generation (a resend), queued and taken off the queue outside the timing.
//!
//! `cargo bench -p ferrypay --bench webhooks`

// A benchmark is test code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferrypay::{
    channel::FakeChannel,
    model::{Clock, Fen, Merchant, OrderSource, PayType},
    outbound::{OutboundClient, OutboundPolicy},
    queue::{MemoryQueue, Queue},
    service::{
        retry::RetrySchedule, BatchMessage, CreateOrder, Ferrypay, InMemory, NewMerchant, OrderRef,
        ServiceConfig, WebhookSender, WebhookWorker,
    },
    store::MemoryStore,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Connections and requests the receiver has seen (keep-alive: far fewer connections).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Starts a receiver answering `200 ok` to every request, keeping connections open.
fn start_receiver() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream));
            }
        });
    });
    rx.recv().unwrap()
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let end = head_end + 4 + length;
        while buf.len() < end {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        buf.drain(..end);
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

struct Setup {
    app: Ferrypay<InMemory>,
    merchant: Merchant,
    orders: Vec<OrderRef>,
}

impl Setup {
    async fn new(receiver: SocketAddr, orders: usize) -> Setup {
        let app: Ferrypay<InMemory> = Ferrypay::new(
            MemoryStore::new(),
            FakeChannel::new(),
            MemoryQueue::default(),
            ServiceConfig {
                rate_limit_per_minute: None,
                allow_http_notify_urls: true,
                ..ServiceConfig::default()
            },
        );
        let (merchant, _) = app
            .onboard_merchant(NewMerchant {
                name: "Bench Shop".into(),
                notify_url: Some(format!("http://{receiver}/webhooks")),
                ..NewMerchant::default()
            })
            .await
            .unwrap();
        let mut refs = Vec::new();
        for i in 0..orders {
            let created = app
                .create_order(
                    &merchant,
                    CreateOrder {
                        amount: Fen::new(1990),
                        description: None,
                        pay_type: PayType::Native,
                        openid: None,
                        client_ip: None,
                        out_trade_no: None,
                        attach: Some(format!("user_id={i}")),
                        notify_url: None,
                        expire_minutes: None,
                        source: OrderSource::Api,
                    },
                )
                .await
                .unwrap()
                .order;
            app.channel.pay(&created.order_no, app.clock.now()).unwrap();
            let paid = app.refresh(created).await.unwrap();
            refs.push(OrderRef::OrderNo(paid.order_no));
        }
        Setup {
            app,
            merchant,
            orders: refs,
        }
    }

    /// A fresh generation for every order (a resend), its jobs taken off the queue: one batch.
    async fn batch(&self) -> Vec<BatchMessage> {
        let mut batch = Vec::new();
        loop {
            let received = self.app.queue.receive(10).await.unwrap();
            if received.is_empty() {
                break;
            }
            for message in received {
                self.app.queue.delete(&message.receipt).await.unwrap();
            }
        }
        for by in &self.orders {
            self.app.resend_webhook(&self.merchant, by).await.unwrap();
        }
        for message in self.app.queue.receive(10).await.unwrap() {
            self.app.queue.delete(&message.receipt).await.unwrap();
            batch.push(BatchMessage {
                message_id: message.message_id,
                body: message.body,
            });
        }
        assert_eq!(batch.len(), self.orders.len());
        batch
    }
}

fn benches(c: &mut Criterion) {
    let receiver = start_receiver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sender = WebhookSender::with_client(
        OutboundClient::new(OutboundPolicy::DEV, Duration::from_secs(10)).unwrap(),
        RetrySchedule::default(),
        || 0.0,
    );

    let mut group = c.benchmark_group("webhooks");
    for size in [10usize, 1] {
        let setup = rt.block_on(Setup::new(receiver, size));
        let worker = WebhookWorker::new(
            &setup.app.store,
            &setup.app.queue,
            &*setup.app.clock,
            &sender,
        );
        // Warm the connection pool (keep-alive) before measuring.
        let warm = rt.block_on(setup.batch());
        assert!(rt.block_on(worker.handle_batch(&warm)).is_empty());

        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(
            format!("handle_batch of {size} deliveries (200, keep-alive)"),
            |b| {
                b.iter_batched(
                    || rt.block_on(setup.batch()),
                    |batch| {
                        let failed = rt.block_on(worker.handle_batch(&batch));
                        if !failed.is_empty() {
                            panic!("deliveries failed: {failed:?}");
                        }
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
    eprintln!(
        "receiver: {} requests on {} connections",
        REQUESTS.load(Ordering::Relaxed),
        CONNECTIONS.load(Ordering::Relaxed)
    );
}

criterion_group!(webhooks, benches);
criterion_main!(webhooks);
