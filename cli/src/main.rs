//! `ferrypay`: the local stack and (later) operator commands.

use std::net::SocketAddr;

use ferrypay_cli::dev::{DevOptions, DevStack, DEFAULT_LISTEN};

const USAGE: &str = "\
usage:
  ferrypay dev [--listen ADDR]   run the whole merchant API locally (default 127.0.0.1:8080)
  ferrypay help                  this text

ferrypay dev reads FERRYPAY_DEMO_API_KEY, FERRYPAY_DEMO_PUBLISHABLE_KEY,
FERRYPAY_DEMO_WEBHOOK_SECRET and FERRYPAY_DEMO_NOTIFY_URL to pin the demo merchant's values.";

fn main() -> std::process::ExitCode {
    ferrypay::telemetry::init_terminal();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dev") => run_dev(args.get(1..).unwrap_or_default()),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrypay: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_dev(args: &[String]) -> Result<(), String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--listen" => listen = rest.next().ok_or("--listen needs an address")?.clone(),
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen {listen}: not an address like 127.0.0.1:8080"))?;
    let options = DevOptions::from_env(listen)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let stack = DevStack::start(options).await?;
        println!("{}", stack.banner());
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        println!("ferrypay dev: stopped");
        Ok(())
    })
}
