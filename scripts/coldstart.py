#!/usr/bin/env python3
"""Cold start of each ferrypay Lambda on this machine, through a stub of the Lambda Runtime API.

For every function crate (functions/*/) with an event in events/ (events/<fn>.json, or the one
EVENT_FILES names), runs the release
binary N times (default 5) as Lambda would: a fresh process with AWS_LAMBDA_RUNTIME_API pointing
at a tiny Runtime API server on 127.0.0.1 that serves

  GET  /2018-06-01/runtime/invocation/next             one event, then holds the next poll
  POST /2018-06-01/runtime/invocation/{id}/response    the answer (the clock stops here)
  POST /2018-06-01/runtime/invocation/{id}/error       a handler error (also stops the clock)
  POST /2018-06-01/runtime/init/error                  an init failure (reported, run fails)

and prints, per function: the time from spawning the process to its first poll (init: config,
keys, clients), from spawning to the answer POST (cold start: init + first invocation), both
medians over the runs, peak RSS (the process's VmHWM once it has answered, read from /proc just
before it is stopped), and the HTTP status the handler answered.

The environment is Lambda's minimal one plus ferrypay's settings: WeChat Pay in public-key mode
with the repository's public test keys (shared/tests/fixtures/wechatpay, see cli/src/dev_keys.rs),
so no network is needed at init; WECHATPAY_BASE_URL points at a closed 127.0.0.1 port. Dummy AWS
credentials (as Lambda provides real ones in the environment) and AWS_EC2_METADATA_DISABLED keep
an AWS SDK client from looking anything up. By default (--moto) it starts moto's server from
.venv on a free 127.0.0.1 port, creates the template's table, the notify queue and the WeChat
secret there, and sets FERRYPAY_TABLE, FERRYPAY_NOTIFY_QUEUE_URL, FERRYPAY_WECHAT_SECRET_ARN and
AWS_ENDPOINT_URL, so init does what it does in Lambda (reads the secret, builds the DynamoDB and
SQS clients, opens the DynamoDB connection) against a local emulator. --aws-endpoint URL uses
another emulator instead, --no-aws none. --env K=V adds or overrides anything.

The first invocation is each function's own event from events/: the merchant-API events carry an
API key no fresh process knows (answer 401), so they measure init plus routing, parsing and the
key lookup. inbound-callback gets a freshly signed and encrypted notification (made here with the
test platform key; needs the `cryptography` package, which .venv has), so its first invocation
verifies the signature, decrypts, and looks the order up; the order is unknown, which the service
logs as an ANOMALY at error level: the script checks that line against the template's
AnomalyMetricFilter pattern. The notify-worker gets events/notify-worker.json, an SQS batch of two
webhook jobs for orders no fresh table has: its init builds no WeChat Pay client and reads no
secret, and its first invocation looks both orders up and reports both messages as failed (the
status column shows "2fail", the partial batch response). gateway-redirect gets
events/gateway-link.json, a payment link opened outside WeChat: its init also reads the OAuth
secret (the secret's oauth_secret, from the same single read) and builds the OAuth client, and
its first invocation looks the link's publishable key up, which no fresh table knows (a 404
page).

Host binaries (x86_64 here) are measured, not the arm64 ones Lambda runs; scripts/coldstart.sh
builds them. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "shared" / "tests" / "fixtures" / "wechatpay"
# The public test keys and ids of cli/src/dev_keys.rs (never valid outside tests).
DEV = {
    "WECHATPAY_MCHID": "1900000109",
    "WECHATPAY_APPID": "wxd678efh567hg6787",
    "WECHATPAY_MERCHANT_SERIAL": "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
    "WECHATPAY_APIV3_KEY": "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb",
    "WECHATPAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0114232134912410000000000000",
    "WECHATPAY_PRIVATE_KEY_FILE": str(FIXTURES / "java_merchant_private_key.pem"),
    "WECHATPAY_PUBLIC_KEY_FILE": str(FIXTURES / "java_wechat_pay_public_key.pem"),
}
PLATFORM_PRIVATE_KEY = FIXTURES / "java_wechat_pay_private_key.pem"
# Functions whose first event is not events/<fn>.json.
EVENT_FILES = {"gateway-redirect": "gateway-link.json"}
ANOMALY_FILTER = '{ ($.level = "ERROR") && ($.fields.message = "ANOMALY*") }'
MEMORY_MB = "256"  # the template's default FunctionMemorySize (only reported to the function)


# ------------------------------------------------------------------------------ Runtime API stub


class Invocation:
    """One run: one event to hand out, and what the function answered."""

    def __init__(self, event: bytes):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.served = False
        self.first_poll: float | None = None
        self.answered: float | None = None
        self.answer: bytes | None = None
        self.kind: str | None = None  # "response", "error" or "init-error"
        self.done = threading.Event()
        self.stop = threading.Event()


class RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True
    invocation: Invocation | None = None


class Handler(BaseHTTPRequestHandler):
    server: RuntimeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the function was stopped while its next poll was held

    def do_GET(self) -> None:
        inv = self.server.invocation
        if self.path != "/2018-06-01/runtime/invocation/next" or inv is None:
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        if inv.first_poll is None:
            inv.first_poll = time.perf_counter()
        if inv.served:
            # Lambda freezes the process here; the stub holds the poll until the run ends.
            inv.stop.wait(60)
            self._reply(410, b'{"errorMessage":"run over"}')
            return
        inv.served = True
        deadline = int(time.time() * 1000) + 29_000
        self._reply(200, inv.event, {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:ferrypay-coldstart",
            "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        })

    def do_POST(self) -> None:
        inv = self.server.invocation
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else self._read_chunked()
        m = re.fullmatch(r"/2018-06-01/runtime/invocation/([^/]+)/(response|error)", self.path)
        if inv is not None and m and m.group(1) == inv.request_id:
            inv.answered, inv.answer, inv.kind = time.perf_counter(), body, m.group(2)
            self._reply(202, b'{"status":"OK"}')
            inv.done.set()
        elif inv is not None and self.path == "/2018-06-01/runtime/init/error":
            inv.answered, inv.answer, inv.kind = time.perf_counter(), body, "init-error"
            self._reply(202, b'{"status":"OK"}')
            inv.done.set()
        else:
            self._reply(404, b'{"errorMessage":"unknown request id"}')

    def _read_chunked(self) -> bytes:
        if "chunked" not in (self.headers.get("Transfer-Encoding") or ""):
            return b""
        data = b""
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


# ------------------------------------------------------------------------------ events


def fresh_notification(template_event: dict) -> dict | None:
    """events/inbound-callback.json re-signed now (WeChat Pay refuses timestamps older than
    300 s), with a new nonce and a new AES-GCM encryption of the same transaction."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        return None
    key = DEV["WECHATPAY_APIV3_KEY"].encode()
    body = json.loads(template_event["body"])
    resource = body["resource"]
    plaintext = AESGCM(key).decrypt(resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]),
                                    resource["associated_data"].encode())
    nonce = uuid.uuid4().hex[:12]
    resource["nonce"] = nonce
    resource["ciphertext"] = base64.b64encode(
        AESGCM(key).encrypt(nonce.encode(), plaintext, resource["associated_data"].encode())).decode()
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    timestamp, header_nonce = str(int(time.time())), uuid.uuid4().hex.upper()
    private_key = serialization.load_pem_private_key(PLATFORM_PRIVATE_KEY.read_bytes(), password=None)
    message = f"{timestamp}\n{header_nonce}\n{raw}\n".encode()
    signature = base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    event = json.loads(json.dumps(template_event))
    event["body"] = raw
    event["isBase64Encoded"] = False
    headers = event["headers"]
    headers.update({"wechatpay-timestamp": timestamp, "wechatpay-nonce": header_nonce,
                    "wechatpay-signature": signature, "content-length": str(len(raw.encode()))})
    return event


def event_for(function: str) -> tuple[bytes, str] | None:
    path = ROOT / "events" / EVENT_FILES.get(function, f"{function}.json")
    if not path.exists():
        return None
    event = json.loads(path.read_text())
    if function == "inbound-callback":
        fresh = fresh_notification(event)
        if fresh is not None:
            return json.dumps(fresh, ensure_ascii=False).encode(), "fresh signed notification"
        return path.read_bytes(), "stored event (stale signature: no `cryptography`)"
    return path.read_bytes(), f"events/{path.name}"


# ------------------------------------------------------------------------------ moto


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    moto = ROOT / ".venv" / "bin" / "moto_server"
    if not moto.exists():
        sys.exit("--moto needs moto's server in .venv (scripts/test.sh installs it)")
    port = free_port()
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, endpoint
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("moto did not start")


def provision(endpoint: str) -> dict[str, str]:
    """The template's table (as infra/template.yaml defines it), the notify queue with its
    dead-letter queue, and the WeChat secret with the test keys, on the emulator."""
    import boto3
    from cfnlint.decode import decode

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    template, _ = decode(str(ROOT / "infra" / "template.yaml"))
    table = template["Resources"]["Table"]["Properties"]
    ddb = session.client("dynamodb", endpoint_url=endpoint)
    name = f"ferrypay-coldstart-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=name, BillingMode=table["BillingMode"],
                     AttributeDefinitions=json.loads(json.dumps(table["AttributeDefinitions"])),
                     KeySchema=json.loads(json.dumps(table["KeySchema"])),
                     GlobalSecondaryIndexes=json.loads(json.dumps(table["GlobalSecondaryIndexes"])))
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "AttributeName": table["TimeToLiveSpecification"]["AttributeName"], "Enabled": True})
    sqs = session.client("sqs", endpoint_url=endpoint)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": "360",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
    secret = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"{name}/wechatpay",
        SecretString=json.dumps({
            "private_key_pem": Path(DEV["WECHATPAY_PRIVATE_KEY_FILE"]).read_text(),
            "apiv3_key": DEV["WECHATPAY_APIV3_KEY"],
            "public_key_pem": Path(DEV["WECHATPAY_PUBLIC_KEY_FILE"]).read_text(),
            "oauth_secret": "test-oauth-secret-not-real",
        }))["ARN"]
    return {"FERRYPAY_TABLE": name, "FERRYPAY_NOTIFY_QUEUE_URL": queue, "FERRYPAY_WECHAT_SECRET_ARN": secret}


# ------------------------------------------------------------------------------ runs


def base_env(function: str, runtime_api: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": f"ferrypay-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": MEMORY_MB,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/ferrypay",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/01/01/ferrypay-{function}[$LATEST]coldstart",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "_HANDLER": "bootstrap",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "RUST_LOG": "info",
        "FERRYPAY_PUBLIC_URL": "https://pay.example.com",
        "WECHATPAY_BASE_URL": "http://127.0.0.1:9",
        **DEV,
    }
    if function == "gateway-redirect" and "FERRYPAY_WECHAT_SECRET_ARN" not in extra:
        # Without Secrets Manager (--no-aws), the OAuth secret the gateway needs comes from here.
        env["WECHAT_OAUTH_SECRET"] = "test-oauth-secret-not-real"
    env.update(extra)
    return env


def vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run_once(binary: Path, function: str, event: bytes, extra: dict[str, str], log: Path) -> dict:
    server = RuntimeApi(("127.0.0.1", 0), Handler)
    inv = Invocation(event)
    server.invocation = inv
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    env = base_env(function, f"127.0.0.1:{server.server_address[1]}", extra)
    with open(log, "ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([str(binary)], env=env, stdout=out, stderr=out, cwd=tempfile.gettempdir())
        answered = inv.done.wait(30)
        # Peak RSS of the function's own address space so far (VmHWM: reset by exec, unlike
        # wait4's maxrss, which keeps the forking Python parent's size).
        peak_kib = vm_hwm_kib(proc.pid)
        # Reaped here (not with proc.poll(), which would leave wait4 nothing to reap when the
        # function exited on its own, e.g. on a start error).
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        exited = os.waitstatus_to_exitcode(status) if pid else None
        if exited is None:
            proc.send_signal(signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    inv.stop.set()
    server.shutdown()
    server.server_close()
    result = {"peak_rss_kib": peak_kib if peak_kib is not None else rusage.ru_maxrss,
              "kind": inv.kind, "exited": exited}
    if inv.first_poll is not None:
        result["init_ms"] = (inv.first_poll - start) * 1000
    if answered and inv.answered is not None:
        result["cold_ms"] = (inv.answered - start) * 1000
        try:
            answer = json.loads(inv.answer or b"{}")
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and "batchItemFailures" in answer:
            # The notify-worker (SQS): how many of the batch's messages it reported failed.
            result["status"] = f"{len(answer['batchItemFailures'] or [])}fail"
        else:
            result["status"] = answer.get("statusCode") if isinstance(answer, dict) else None
        result["answer"] = (inv.answer or b"")[:300].decode(errors="replace")
    return result


def anomaly_lines(log: Path) -> int:
    """Log lines the template's AnomalyMetricFilter pattern matches."""
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (isinstance(record, dict) and record.get("level") == "ERROR"
                and str(record.get("fields", {}).get("message", "")).startswith("ANOMALY")):
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path,
                        default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release",
                        help="where the release binaries are (default $CARGO_TARGET_DIR/release or target/release)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--functions", help="comma-separated subset (default: every crate under functions/)")
    parser.add_argument("--aws-endpoint", help="an AWS emulator's URL (sets AWS_ENDPOINT_URL; the resources must exist "
                        "and FERRYPAY_TABLE etc. be given with --env)")
    parser.add_argument("--moto", action="store_true", help="start moto from .venv and create the resources there "
                        "(the default unless --aws-endpoint or --no-aws is given)")
    parser.add_argument("--no-aws", action="store_true", help="no AWS endpoint at all")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment for the function")
    parser.add_argument("--log", type=Path, help="keep the functions' output here (default: a temporary file)")
    args = parser.parse_args()

    template = (ROOT / "infra" / "template.yaml").read_text()
    if ANOMALY_FILTER not in template:
        print("note: the template's AnomalyMetricFilter pattern is not the one this script checks", file=sys.stderr)

    functions = []
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        if not (manifest.parent / "src" / "main.rs").exists():
            continue  # a library
        m = re.search(r'^name\s*=\s*"([^"]+)"', manifest.read_text(), re.M)
        if m:
            functions.append(m.group(1))
    if args.functions:
        wanted = args.functions.split(",")
        functions = [f for f in functions if f in wanted]

    extra: dict[str, str] = {}
    moto = None
    try:
        if args.moto or not (args.aws_endpoint or args.no_aws):
            args.moto = True
            moto, endpoint = start_moto()
            extra.update(provision(endpoint))
            extra["AWS_ENDPOINT_URL"] = endpoint
        elif args.aws_endpoint:
            extra["AWS_ENDPOINT_URL"] = args.aws_endpoint
        for kv in args.env:
            k, _, v = kv.partition("=")
            extra[k] = v

        log = args.log or Path(tempfile.mkstemp(prefix="ferrypay-coldstart-", suffix=".log")[1])
        log.write_text("")
        rows, failures = [], 0
        for function in functions:
            binary = args.bin_dir / function
            found = event_for(function)
            if not binary.exists():
                print(f"{function}: no binary at {binary} (run scripts/coldstart.sh)", file=sys.stderr)
                failures += 1
                continue
            if found is None:
                print(f"{function}: no events/{EVENT_FILES.get(function, function + '.json')}, skipped", file=sys.stderr)
                continue
            runs = []
            for _ in range(args.runs):
                event, source = event_for(function) or found  # a fresh signature per run
                with open(log, "a") as f:
                    f.write(f"--- {function}\n")
                runs.append(run_once(binary, function, event, extra, log))
            good = [r for r in runs if "cold_ms" in r and r["kind"] == "response"]
            if len(good) != len(runs):
                failures += 1
                bad = next(r for r in runs if r not in good)
                print(f"{function}: a run did not answer normally: {bad}", file=sys.stderr)
            if not good:
                continue
            rows.append({
                "function": function,
                "init": statistics.median(r["init_ms"] for r in good),
                "cold": statistics.median(r["cold_ms"] for r in good),
                "min": min(r["cold_ms"] for r in good),
                "max": max(r["cold_ms"] for r in good),
                "rss": statistics.median(r["peak_rss_kib"] for r in good) / 1024,
                "rss_max": max(r["peak_rss_kib"] for r in good) / 1024,
                "status": sorted({str(r.get("status")) for r in good}),
                "source": source,
                "size": binary.stat().st_size,
            })

        mode = ("moto at " + extra["AWS_ENDPOINT_URL"]) if args.moto else (
            f"AWS endpoint {args.aws_endpoint}" if args.aws_endpoint else "no AWS endpoint")
        print(f"cold start through a Runtime API stub on 127.0.0.1; {args.runs} runs each; "
              f"host binaries from {args.bin_dir}; {mode}")
        print(f"{'function':<18}{'init ms':>9}{'cold start ms':>15}{'(min-max)':>15}{'peak RSS MiB':>14}"
              f"{'status':>8}  first event")
        for r in rows:
            print(f"{r['function']:<18}{r['init']:>9.1f}{r['cold']:>15.1f}{'(%.1f-%.1f)' % (r['min'], r['max']):>15}"
                  f"{r['rss']:>14.1f}{'/'.join(r['status']):>8}  {r['source']}")
        anomalies = anomaly_lines(log)
        print(f"log lines matching the AnomalyMetricFilter pattern {ANOMALY_FILTER}: {anomalies}")
        print(f"functions' output: {log}")
        return 1 if failures or not rows else 0
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)


if __name__ == "__main__":
    sys.exit(main())
