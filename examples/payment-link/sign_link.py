#!/usr/bin/env python3
"""Make a signed ferrypay payment link in Python (standard library only).

    python3 sign_link.py --base https://pay.example.com --secret lsk_... \
        key=pk_... amount=100 description=咖啡 return_url=https://shop.example/done

The signature is HMAC-SHA256, keyed with your link secret (`lsk_...`, from your operator), over
the link's parameters as `name=value` lines sorted by name and joined with "\n", values exactly as
given (not URL-encoded). Signed parameters: key, amount, description, attach, return_url, expires.
Keep the link secret on your side: it never appears in a link.
"""

import argparse
import hashlib
import hmac
import sys
from urllib.parse import quote

SIGNED = ("key", "amount", "description", "attach", "return_url", "expires")


def sign(secret: str, params: dict) -> str:
    for name, value in params.items():
        if name not in SIGNED:
            raise ValueError(f"{name} is not a link parameter")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{name} contains a control character")
    lines = "\n".join(f"{name}={params[name]}" for name in sorted(params))
    return hmac.new(secret.encode(), lines.encode(), hashlib.sha256).hexdigest()


def signed_link(base: str, secret: str, params: dict) -> str:
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
    return f"{base.rstrip('/')}/pay/gateway?{query}&sign={sign(secret, params)}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Make a signed ferrypay payment link.")
    parser.add_argument("--base", required=True, help="ferrypay's public URL")
    parser.add_argument("--secret", required=True, help="the merchant's link secret, lsk_...")
    parser.add_argument("params", nargs="+", metavar="name=value")
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.params)
    print(signed_link(args.base, args.secret, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
