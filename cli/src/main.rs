//! `ferrypay`: the local stack, the WeChat Pay mock and the operators' merchant commands.

use std::{net::SocketAddr, sync::Arc};

use ferrypay::model::SystemClock;
use ferrypay_cli::{
    args::Args,
    dev::{DevOptions, DevStack, DevStore, DEFAULT_LISTEN, DEFAULT_MOCK_LISTEN, DEFAULT_TABLE},
    dev_keys, merchant,
    wechat_mock::{MockConfig, MockServer},
};

const USAGE: &str = "\
usage:
  ferrypay dev [--listen ADDR] [--mock-listen ADDR] [--store memory|dynamodb]
               [--dynamodb-endpoint URL] [--table NAME]
      run the whole API locally (default 127.0.0.1:8080) with the WeChat Pay mock (default
      127.0.0.1:8081), on the in-memory store or a DynamoDB table (default ferrypay-dev,
      created if missing; --dynamodb-endpoint for a local emulator such as moto).
      Set WECHATPAY_* to use another APIv3 endpoint instead of the mock.
  ferrypay wechat-mock [--listen ADDR]
      run only the WeChat Pay APIv3 mock (default 127.0.0.1:8081), with the dev keys
{MERCHANT}
  ferrypay help

ferrypay dev reads FERRYPAY_DEMO_API_KEY, FERRYPAY_DEMO_PUBLISHABLE_KEY,
FERRYPAY_DEMO_WEBHOOK_SECRET and FERRYPAY_DEMO_NOTIFY_URL to pin the demo merchant's values,
FERRYPAY_PUBLIC_URL (default http://LISTEN) to build the notify_url sent to WeChat Pay, and
WECHATPAY_BASE_URL, WECHATPAY_MCHID, WECHATPAY_APPID, WECHATPAY_MERCHANT_SERIAL,
WECHATPAY_PRIVATE_KEY_FILE, WECHATPAY_APIV3_KEY, WECHATPAY_PUBLIC_KEY_FILE, WECHATPAY_PUBLIC_KEY_ID.";

fn usage() -> String {
    USAGE.replace("{MERCHANT}", merchant::USAGE)
}

fn main() -> std::process::ExitCode {
    ferrypay::telemetry::init_terminal();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("dev") => run_dev(rest),
        Some("wechat-mock") => run_mock(rest),
        Some("merchant") => {
            runtime().and_then(|rt| rt.block_on(merchant::run(rest)).map(|out| print!("{out}")))
        }
        Some("help" | "--help" | "-h") => {
            println!("{}", usage());
            Ok(())
        }
        _ => Err(format!("unknown command\n\n{}", usage())),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrypay: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn address(args: &Args, name: &str, default: &str) -> Result<SocketAddr, String> {
    let value = args.option(name).unwrap_or(default);
    value
        .parse()
        .map_err(|_| format!("{name} {value}: not an address like 127.0.0.1:8080"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| e.to_string())
}

fn run_dev(args: &[String]) -> Result<(), String> {
    let args = Args::parse(
        args,
        &[
            "--listen",
            "--mock-listen",
            "--store",
            "--dynamodb-endpoint",
            "--table",
        ],
        &[],
    )
    .map_err(|e| format!("{e}\n\n{}", usage()))?;
    let listen = address(&args, "--listen", DEFAULT_LISTEN)?;
    let mock_listen = address(&args, "--mock-listen", DEFAULT_MOCK_LISTEN)?;
    let store = match args.option("--store").unwrap_or("memory") {
        "memory" => DevStore::Memory,
        "dynamodb" => DevStore::Dynamo {
            endpoint: args.option("--dynamodb-endpoint").map(str::to_string),
            table: args.option("--table").unwrap_or(DEFAULT_TABLE).to_string(),
        },
        other => return Err(format!("--store {other}: memory or dynamodb")),
    };
    let options = DevOptions::from_env(listen, mock_listen, store)?;
    runtime()?.block_on(async {
        let stack = DevStack::start(options).await?;
        println!("{}", stack.banner());
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        println!("ferrypay dev: stopped");
        Ok(())
    })
}

fn run_mock(args: &[String]) -> Result<(), String> {
    let args = Args::parse(args, &["--listen"], &[])?;
    let listen = address(&args, "--listen", DEFAULT_MOCK_LISTEN)?;
    runtime()?.block_on(async {
        let mock = MockServer::start(listen, MockConfig::dev()?, Arc::new(SystemClock)).await?;
        println!(
            "ferrypay wechat-mock: WeChat Pay APIv3 mock on {url} (public test keys)\n\
             \n\
             point ferrypay dev at it (from the repository root):\n\
             WECHATPAY_BASE_URL={url} WECHATPAY_MCHID={mchid} WECHATPAY_APPID={appid} \\\n  \
             WECHATPAY_MERCHANT_SERIAL={serial} \\\n  \
             WECHATPAY_PRIVATE_KEY_FILE={key} \\\n  \
             WECHATPAY_APIV3_KEY={apiv3} \\\n  \
             WECHATPAY_PUBLIC_KEY_FILE={pubkey} WECHATPAY_PUBLIC_KEY_ID={pubid} \\\n  \
             ferrypay dev\n\
             \n\
             pay an order: curl -s -X POST {url}/mock/pay -d '{{\"out_trade_no\": \"FP...\"}}'",
            url = mock.base_url(),
            mchid = dev_keys::MCHID,
            appid = dev_keys::APPID,
            serial = dev_keys::MERCHANT_SERIAL,
            key = dev_keys::MERCHANT_PRIVATE_KEY_PATH,
            apiv3 = dev_keys::APIV3_KEY,
            pubkey = dev_keys::PLATFORM_PUBLIC_KEY_PATH,
            pubid = dev_keys::PLATFORM_PUBLIC_KEY_ID,
        );
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        Ok(())
    })
}
