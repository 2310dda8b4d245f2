//! The end-to-end tests' one harness: an in-process app over `ferrypay::api` with a manual
//! clock at `START`, the dev stack's options, the AWS emulator, bounded waits and child
//! processes, the programs the tests need from the environment. (The HTTP receiver and the
//! fixtures shared with the functions' tests are in `ferrypay::testing`.)

#![allow(dead_code)]

use std::{
    future::Future,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use ferrypay::{
    api,
    config::DEV_IP_RATE_LIMIT_PER_MINUTE,
    model::{ManualClock, Merchant},
    service::{IssuedKeys, NewMerchant, ServiceConfig},
    testing::{self, TestApp},
};
use ferrypay_cli::dev::{DevClock, DevOptions, DevStack, DevStore, DevWechat};
use http::{Method, StatusCode};
use serde_json::Value;

pub use ferrypay::testing::START;

pub struct Harness {
    pub app: TestApp,
    pub clock: Arc<ManualClock>,
    pub merchant: Merchant,
    pub keys: IssuedKeys,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_app(|app| app).await
    }

    /// A harness whose app is adjusted by `tweak` before the test merchant is onboarded.
    pub async fn with_app(tweak: impl FnOnce(TestApp) -> TestApp) -> Harness {
        let clock = testing::clock_at_start();
        let app = tweak(testing::app_with_clock(clock.clone()));
        let (merchant, keys) = testing::onboard_test_merchant(&app, "Test Coffee").await;
        Harness {
            app,
            clock,
            merchant,
            keys,
        }
    }

    pub fn sk(&self) -> String {
        self.keys.secret_key.expose().clone()
    }

    /// Sends a request through the API layer, exactly as a Lambda or the dev server would.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Bytes::from(body.to_string())).unwrap();
        let res = api::handle(&self.app, req).await;
        let status = res.status();
        let json: Value = serde_json::from_str(res.body()).unwrap_or_else(|e| {
            panic!("response is not JSON ({e}): {}", res.body());
        });
        (status, json)
    }

    /// POST with the merchant's key in `X-API-Key`.
    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let key = self.sk();
        self.send(Method::POST, path, &[("x-api-key", &key)], body)
            .await
    }

    /// GET with the merchant's key in `X-API-Key`.
    pub async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        let key = self.sk();
        self.send(Method::GET, path_and_query, &[("x-api-key", &key)], "")
            .await
    }

    pub async fn create(&self, body: &str) -> (StatusCode, Value) {
        self.post("/api/v1/pay/create", body).await
    }

    /// Creates a native order and returns its number.
    pub async fn create_ok(&self, amount: i64) -> String {
        let (status, body) = self.create(&format!(r#"{{"amount": {amount}}}"#)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["order_no"].as_str().unwrap().to_string()
    }

    pub async fn query(&self, order_no: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/pay/query",
            &format!(r#"{{"order_no": "{order_no}"}}"#),
        )
        .await
    }
}

/// Asserts an error response: status, stable code, and the `success: false` envelope.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["success"], Value::Bool(false), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// Decodes a `data:image/png;base64,` QR code with an independent decoder (rqrr).
pub fn decode_qr_data_uri(uri: &str) -> String {
    let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
    let bytes = STANDARD.decode(b64).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let (w, h, stride) = (frame.width as usize, frame.height as usize, frame.line_size);
    let bit_depth = frame.bit_depth as usize;
    assert_eq!(bit_depth, 1, "QR PNGs are 1-bit greyscale");
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        if buf[y * stride + x / 8] & (0x80 >> (x % 8)) != 0 {
            255
        } else {
            0
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    grids[0].decode().unwrap().1
}

/// The dev stack as the end-to-end tests run it: free ports, the in-memory store, the
/// in-process WeChat Pay mock (and its OAuth), no webhook worker, loopback notify URLs allowed,
/// and the dev stack's per-client limit (every request comes from 127.0.0.1).
pub fn dev_options(demo: NewMerchant) -> DevOptions {
    DevOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        demo,
        config: ServiceConfig {
            allow_http_notify_urls: true,
            ip_rate_limit_per_minute: Some(DEV_IP_RATE_LIMIT_PER_MINUTE),
            ..ServiceConfig::default()
        },
        store: DevStore::Memory,
        webhook_worker: None,
        oauth: None,
        clock: DevClock::default(),
        wechat: DevWechat::Mock {
            listen: "127.0.0.1:0".parse().unwrap(),
            notify_retry: vec![Duration::from_millis(50)],
        },
    }
}

/// The workspace's root (`tests/..`), where `examples/` and `tests/browser` are.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A program a test runs, named by the environment variable `name` (`make test` sets it):
/// without it the test fails, never skips; `hint` says how to get it.
pub fn required_env(name: &str, hint: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => panic!("{name} is not set: {hint}"),
    }
}

/// Runs a contract test to its end within `limit`, whatever the backend does.
pub async fn within<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, test)
        .await
        .expect("contract test timed out")
}

/// The AWS emulator's SDK config (moto at `FERRYPAY_TEST_AWS_ENDPOINT`).
pub async fn emulator() -> aws_config::SdkConfig {
    ferrypay::aws::emulator_config(&testing::aws_test_endpoint()).await
}

/// An HTTP client that does not follow redirects (each hop is checked), with a 10 s timeout.
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn start_dev(options: DevOptions) -> DevStack {
    DevStack::start(options).await.unwrap()
}

/// Runs `command` to its end, for at most `timeout` (then kills it and fails the test), with
/// both pipes drained on threads so a chatty child cannot block: (exit code, stdout, stderr).
pub fn run_bounded(mut command: Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    // A grandchild (Chromium under node) may hold the pipes a moment longer.
    let stdout = out.join().unwrap().unwrap_or_default();
    let stderr = err.join().unwrap().unwrap_or_default();
    match status {
        Some(status) => (status.code(), stdout, stderr),
        None => panic!(
            "{command:?} did not finish within {timeout:?} (killed)\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}
