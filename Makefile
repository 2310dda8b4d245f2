# ferrypay developer commands. The README's two commands are `make dev` and `make test`.

CARGO ?= cargo

.PHONY: dev test lint fmt bench check

## Run the local stack: the whole merchant API on 127.0.0.1:8080 (override with LISTEN=ADDR).
LISTEN ?= 127.0.0.1:8080
dev:
	$(CARGO) run -p ferrypay-cli --bin ferrypay -- dev --listen $(LISTEN)

## Run every test in the workspace (unit, contract, function events, dev stack over HTTP, README examples).
## scripts/test.sh installs moto's server into .venv (Python 3), starts it on a free 127.0.0.1 port
## for the DynamoDB/SQS contract suites, runs `cargo test --workspace --all-targets --locked`, stops it.
test:
	CARGO="$(CARGO)" bash scripts/test.sh

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks (criterion): create with QR, query.
bench:
	$(CARGO) bench -p ferrypay --bench orders

check: lint test
