//! The README's promise: `ferrypay dev` starts the stack and its curl examples work as written.
//! Runs the real binary and the README's own code blocks (bash + curl), on a free local port.

// Test code: helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const DEMO_KEY: &str = "sk_test_demo";
const DEMO_PUBLISHABLE_KEY: &str = "pk_test_demo";

struct Stack(Child);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `ferrypay dev` and waits (bounded) until its banner is out and it answers.
fn start_dev(port: u16, mock_port: u16) -> (Stack, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrypay"))
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--mock-listen",
            &format!("127.0.0.1:{mock_port}"),
        ])
        .env("FERRYPAY_DEMO_API_KEY", DEMO_KEY)
        .env("FERRYPAY_DEMO_PUBLISHABLE_KEY", DEMO_PUBLISHABLE_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stack = Stack(child);
    let mut banner = String::new();
    let lines = BufReader::new(stdout).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading stdout for the whole run (after the banner nobody listens: the lines are
    // dropped), so the binary never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in lines {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(line)) => {
                let done = line.starts_with("curl -s -X POST") && line.contains("/mock/pay");
                banner.push_str(&line);
                banner.push('\n');
                if done {
                    break;
                }
            }
            _ => break,
        }
    }
    (stack, banner)
}

/// The code block right after `<!-- readme-test:NAME -->` in the README.
fn readme_block(name: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let marker = format!("<!-- readme-test:{name} -->");
    let after = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker}"))..];
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let end = after[start..].find("```").unwrap();
    after[start..start + end].to_string()
}

/// Runs a README block with `$FP` pointing at the test's stack; one JSON answer per line.
fn run_block(block: &str, port: u16, mock: u16) -> Vec<serde_json::Value> {
    let script = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --max-time 5 \"$@\"; echo; }}\n\
         FP=http://127.0.0.1:{port}\nWX=http://127.0.0.1:{mock}\nKEY={DEMO_KEY}\n{}",
        block
            .replace("FP=http://127.0.0.1:8080", "")
            .replace("WX=http://127.0.0.1:8081", ""),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "block failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Lines of a block that print a response (a curl not inside `$(...)`).
fn printing_curls(block: &str) -> Vec<&str> {
    block.lines().filter(|l| l.starts_with("curl ")).collect()
}

/// Answers from the merchant API (the mock's control answers have no `success`).
fn api_answers(answers: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    answers
        .iter()
        .filter(|a| a.get("success").is_some())
        .collect()
}

#[test]
fn readme_run_command_starts_the_stack_and_its_examples_work() {
    let (port, mock_port) = (free_port(), free_port());
    let (_stack, banner) = start_dev(port, mock_port);
    assert!(banner.contains(DEMO_KEY), "banner:\n{banner}");
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}")),
        "banner:\n{banner}"
    );

    let ok = readme_block("ok");
    let answers = run_block(&ok, port, mock_port);
    assert_eq!(answers.len(), printing_curls(&ok).len(), "{answers:#?}");
    let paid_by_mock = answers
        .iter()
        .find(|a| a.get("transaction_id").is_some())
        .unwrap();
    assert_eq!(
        paid_by_mock["first_attempts"],
        serde_json::json!([204]),
        "{paid_by_mock}"
    );
    let answers = api_answers(&answers);
    for answer in &answers {
        assert_eq!(answer["success"], true, "{answer}");
    }
    let after_pay = answers
        .iter()
        .find(|a| a["order"]["status"] == "paid")
        .unwrap();
    assert_eq!(
        after_pay["order"]["transaction_id"],
        paid_by_mock["transaction_id"]
    );
    // The paid order shows up in the paid list.
    let paid_list = &answers[answers.len() - 2];
    assert_eq!(paid_list["total"], 1, "{paid_list}");
    assert_eq!(paid_list["orders"][0]["out_trade_no"], "shop-1001");

    // Each error example answers with the code its comment promises.
    let errors = readme_block("errors");
    let answers = run_block(&errors, port, mock_port);
    let expected: Vec<(&str, &str)> = printing_curls(&errors)
        .iter()
        .map(|l| {
            let comment = l.rsplit("# ").next().unwrap();
            let mut parts = comment.split_whitespace();
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    assert_eq!(answers.len(), expected.len());
    for (answer, (_status, code)) in answers.iter().zip(&expected) {
        assert_eq!(answer["success"], false, "{answer}");
        assert_eq!(answer["code"], *code, "{answer}");
    }

    // The refund example: a refund of 30 is processing, then succeeded; the order keeps `paid`
    // with 30 refunded and shows its refund.
    let refunds = readme_block("refunds");
    let answers = run_block(&refunds, port, mock_port);
    assert_eq!(
        answers.len(),
        printing_curls(&refunds).len(),
        "{answers:#?}"
    );
    let answers = api_answers(&answers);
    for answer in &answers {
        assert_eq!(answer["success"], true, "{answer}");
    }
    let begun = &answers[1]["refund"];
    assert_eq!(begun["status"], "processing", "{begun}");
    assert_eq!(begun["amount"], 30);
    assert_eq!(begun["reason"], "少发一件");
    let done = &answers[2]["refund"];
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["refund_no"], begun["refund_no"]);
    assert!(done["succeeded_at"].is_string(), "{done}");
    let order = &answers[3]["order"];
    assert_eq!(order["status"], "paid", "{order}");
    assert_eq!(order["refunded_amount"], 30, "{order}");
    assert_eq!(
        order["refunds"][0]["refund_no"], begun["refund_no"],
        "{order}"
    );

    // The payment link examples: each line's HTTP status is the one its comment gives; the
    // WeChat one ends on a cashier page.
    let links = readme_block("links");
    assert!(links.contains(&format!("PK={DEMO_PUBLISHABLE_KEY}")));
    let answers = run_block(&links, port, mock_port);
    let expected: Vec<u64> = printing_curls(&links)
        .iter()
        .map(|l| l.rsplit("# ").next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(answers.len(), expected.len(), "{answers:#?}");
    for (answer, status) in answers.iter().zip(&expected) {
        assert_eq!(answer["status"], *status, "{answer}");
    }
    let cashier = answers[1]["cashier"].as_str().unwrap();
    assert!(
        cashier.starts_with(&format!(
            "http://127.0.0.1:{port}/pay/gateway/cashier?order_no=FP"
        )),
        "{cashier}"
    );
}
