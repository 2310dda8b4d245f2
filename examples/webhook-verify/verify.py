#!/usr/bin/env python3
"""Receive ferrypay webhooks in Python, with the official `standardwebhooks` library.

    pip install -r requirements.txt
    FERRYPAY_WEBHOOK_SECRET=whsec_... python verify.py serve --port 8000
    python verify.py check --secret whsec_... --id ID --timestamp TS --signature 'v1,...' --body-file body.json

Verify the signature over the RAW request body, before parsing it: re-serialising the JSON
(key order, spacing, escaping of the Chinese in `attach`) changes the bytes and breaks it.
"""

import argparse
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY = 64 * 1024

# Demo only: remember processed `webhook-id`s in your database (a unique key), not in memory.
# The same id arrives again whenever a delivery is retried.
processed_ids = set()


def verify(secret, headers, raw_body):
    """The parsed event if the signature and timestamp (+-5 min) are good; raises otherwise."""
    try:
        return Webhook(secret).verify(raw_body, headers)
    except WebhookVerificationError:
        raise
    except ValueError as e:  # malformed signature header, body not UTF-8 or not JSON
        raise WebhookVerificationError(f"malformed webhook: {e}") from e


def handle(secret, headers, raw_body):
    """One delivery: (HTTP status, response text). Any 2xx tells ferrypay it was delivered."""
    try:
        event = verify(secret, headers, raw_body)
    except WebhookVerificationError as e:
        return 400, f"invalid webhook: {e}"
    webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
    if webhook_id in processed_ids:
        return 200, "already processed"
    # The truth is `order_no` + `status` (and the amount you expected): mark YOUR order paid
    # idempotently, e.g. `UPDATE orders SET paid = true WHERE order_no = ? AND NOT paid`.
    # From a payment link, `source` says whether it was signed: an unsigned link's
    # (`"link"`) amount is the payer's to change, so compare `amount` with your price.
    # Keep this quick (queue slow work): ferrypay waits 10 s, then retries.
    if event["status"] == "paid":
        print(f"order {event['order_no']} paid: {event['amount']} fen", file=sys.stderr)
    processed_ids.add(webhook_id)
    return 200, "ok"


class Receiver(BaseHTTPRequestHandler):
    secret = None  # set by `serve`

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.answer(413, "too large")
        raw_body = self.rfile.read(length)  # the raw bytes: verify these, not a re-encoding
        status, text = handle(self.secret, dict(self.headers.items()), raw_body)
        self.answer(status, text)

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="listen for webhooks (secret in FERRYPAY_WEBHOOK_SECRET)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    check = commands.add_parser("check", help="verify one webhook; exit 0 if valid, 1 if not")
    for name in ("--secret", "--id", "--timestamp", "--signature", "--body-file"):
        check.add_argument(name, required=True)
    args = parser.parse_args(argv)

    if args.command == "serve":
        Receiver.secret = os.environ["FERRYPAY_WEBHOOK_SECRET"]
        ThreadingHTTPServer((args.host, args.port), Receiver).serve_forever()
        return 0
    with open(args.body_file, "rb") as f:
        raw_body = f.read()
    headers = {"webhook-id": args.id, "webhook-timestamp": args.timestamp, "webhook-signature": args.signature}
    try:
        event = verify(args.secret, headers, raw_body)
    except WebhookVerificationError as e:
        print(f"invalid webhook: {e}", file=sys.stderr)
        return 1
    print(f"valid: {event['event']} {event['order_no']} {event['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
