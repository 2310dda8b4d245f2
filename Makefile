# ferrypay developer commands. The README's two commands are `make dev` and `make test`.

CARGO ?= cargo

.PHONY: dev test lint lint-infra fmt bench bench-wechatpayv3 package coldstart check

## Run the local stack: the whole merchant API on 127.0.0.1:8080 (override with LISTEN=ADDR).
LISTEN ?= 127.0.0.1:8080
dev:
	$(CARGO) run -p ferrypay-cli --bin ferrypay -- dev --listen $(LISTEN)

## Run every test in the workspace (unit, contract, function events, dev stack over HTTP, README examples).
## scripts/test.sh installs moto's server and the webhook examples' libraries into .venv (Python 3),
## runs `npm ci` in examples/webhook-verify and tests/browser (Node.js), installs Debian's chromium
## if /usr/bin/chromium is missing (apt-get, as root or with sudo) for the browser test, starts moto
## on a free 127.0.0.1 port for the DynamoDB/SQS contract suites, runs
## `cargo test --workspace --all-targets --locked`, stops it.
test:
	CARGO="$(CARGO)" bash scripts/test.sh

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks (criterion): create with QR, query, WeChat Pay notification and signing.
bench:
	$(CARGO) bench -p ferrypay

## The same notification and signature through the wechatpayv3 Python SDK, with the ratios.
bench-wechatpayv3:
	bash scripts/bench-wechatpayv3.sh

## The SAM template: cfn-lint, sam validate --lint, and checked against the code (offline).
lint-infra:
	bash scripts/lint-infra.sh

## Every function as an arm64 Lambda zip (cargo lambda build --release --arm64 --output-format zip).
package:
	bash scripts/package.sh

## Each function's cold start and peak memory through a local Lambda Runtime API stub.
coldstart:
	bash scripts/coldstart.sh

check: lint test
