"""The same WeChat Pay notification and request signature as shared/benches/wechat.rs, through
the wechatpayv3 Python SDK (verify + decrypt + parse; Authorization header). Prints µs per op."""

import json
import pathlib
import timeit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from wechatpayv3.core import Core
from wechatpayv3.utils import build_authorization, load_private_key

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "shared/tests/fixtures/wechatpay"
vectors = json.loads((FIXTURES / "derived_vectors.json").read_text())
key_pem = (FIXTURES / "go_testkey_pkcs8.pem").read_text()
cert = x509.load_pem_x509_certificate((FIXTURES / "go_wechatpay_cert.pem").read_bytes())
public_pem = cert.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()

n = vectors["notification_aes256"]
core = Core(
    mchid="1900000109",
    cert_serial_no="D7CE59D1F522D701",
    private_key=key_pem,
    apiv3_key=n["apiv3_key"],
    public_key=public_pem,
    public_key_id=n["headers"]["Wechatpay-Serial"],
)
headers, body = n["headers"], n["body"]
result = core.callback(headers, body)
assert result and result["resource"]["out_trade_no"] == json.loads(n["plaintext"])["out_trade_no"], result


def best_us(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


notify_us = best_us(lambda: core.callback(headers, body), 2000)

r = vectors["request_sign"]
private_key = load_private_key(key_pem)
sign_us = best_us(
    lambda: build_authorization(
        r["url"], r["method"], "1900000109", "D7CE59D1F522D701", private_key, r["body"], r["nonce"]
    ),
    300,
)
print(f"wechatpayv3 notification {notify_us:.2f}")
print(f"wechatpayv3 signing {sign_us:.2f}")
