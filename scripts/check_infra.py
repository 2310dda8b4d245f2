#!/usr/bin/env python3
"""Checks infra/template.yaml against the code it deploys (run by scripts/lint-infra.sh).

cfn-lint and `sam validate` check the template on its own; this checks that it still matches
the Rust side, which they cannot see:

1. the table mirrors `DynamoStore::create_table` (shared/src/store/dynamodb.rs): key schema,
   attribute definitions, both GSIs (hash key, range key, projection), on-demand billing, the
   TTL attribute;
2. every DynamoDB operation the store issues has its IAM action in the policy of at least one
   function, and every SQS send in the queue code is granted somewhere;
3. every binary crate under functions/ is one function (`CodeUri: ..`, rust-cargolambda,
   `BuildProperties.Binary` = the crate) and every function is a crate; each crate is an HTTP
   function (its main calls `serve(Route::...)`, built by `lambda_app`) or the notify-worker
   (`serve_notify_worker()`, built by `worker_app`); every variable its wiring requires
   (shared/src/runtime.rs, and the WeChat settings for HTTP functions) is set for it, a function
   given the secret's ARN may read it, the notify-worker gets neither the ARN nor the
   permission, and no function sets a FERRYPAY_/WECHATPAY_ variable the code never reads;
4. every route the code serves (`Endpoint::path`/`methods` in shared/src/api/mod.rs and
   `WECHAT_NOTIFY_PATH`) is in the HTTP API, wired to the function of that name, with an
   invoke permission whose source ARN covers it, and no route points at a missing function;
5. the notify queue's visibility timeout is at least six times the notify-worker's timeout
   (the `Notify.Worker` mapping, and any function with an SQS event on the queue), and the queue
   redrives to a dead-letter queue of this template;
6. the notify queue is consumed by the notify-worker and by nothing else, through one SQS event
   with `FunctionResponseTypes: [ReportBatchItemFailures]` (the worker answers partial batch
   responses; without it Lambda would delete failed messages with their batch) and a batch no
   larger than the queue code's `MAX_BATCH`; the worker may read and write the table and send
   to the queue (it queues each next attempt).

It also expands the SAM transform locally (samtranslator, no AWS account: the managed-policy
lookup is stubbed) and writes the plain CloudFormation to --transformed-out, so cfn-lint can
check what CloudFormation will actually see (for example circular dependencies between the
generated API and the functions, which the SAM-level lint does not look for).

Needs cfn-lint and aws-sam-translator (both come with the pinned tools in .venv).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
DYNAMO_RS = ROOT / "shared" / "src" / "store" / "dynamodb.rs"
SQS_RS = ROOT / "shared" / "src" / "queue" / "sqs.rs"
API_RS = ROOT / "shared" / "src" / "api" / "mod.rs"
NOTIFY_RS = ROOT / "shared" / "src" / "api" / "notify.rs"
QUEUE_RS = ROOT / "shared" / "src" / "queue" / "mod.rs"
NOTIFY_QUEUE_ARN = {"Fn::GetAtt": ["NotifyQueue", "Arn"]}

# Store methods only operators run (the `ferrypay` CLI and `ferrypay dev`, with the operator's
# own credentials), never a Lambda: making the table (production tables come from the template)
# and listing every merchant (a Scan). SDK calls inside them need no function grant. Anything
# else in dynamodb.rs is taken to be reachable from a Lambda.
OPERATOR_ONLY_FNS = {"ensure_table", "create_table", "wait_until_active", "list_merchants"}
DYNAMO_CALL_ACTIONS = {
    "describe_table": ["dynamodb:DescribeTable"],  # warm_up: the connection opened at init
    "get_item": ["dynamodb:GetItem"],
    "put_item": ["dynamodb:PutItem"],
    "update_item": ["dynamodb:UpdateItem"],
    "delete_item": ["dynamodb:DeleteItem"],
    "query": ["dynamodb:Query"],
    "scan": ["dynamodb:Scan"],
    "batch_get_item": ["dynamodb:BatchGetItem"],
    "batch_write_item": ["dynamodb:BatchWriteItem"],
    "transact_get_items": ["dynamodb:GetItem"],
    # transact_write_items: authorised per item, see TRANSACT_ITEM_ACTIONS
    "transact_write_items": [],
}
TRANSACT_ITEM_ACTIONS = {
    "put": "dynamodb:PutItem",
    "update": "dynamodb:UpdateItem",
    "delete": "dynamodb:DeleteItem",
    "condition_check": "dynamodb:ConditionCheckItem",
}
# Sends need a grant; receive/delete belong to the notify-worker's SQS event source (SAM grants them).
SQS_CALL_ACTIONS = {"send_message": "sqs:SendMessage", "send_message_batch": "sqs:SendMessage"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def display(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def rust_consts(source: str) -> dict[str, str]:
    return dict(re.findall(r'const ([A-Z_]+): &str = "([^"]*)";', source))


def load_template() -> dict:
    template, matches = decode(str(TEMPLATE))
    if matches or template is None:
        sys.exit(f"{TEMPLATE}: cannot be parsed: {matches}")
    return json.loads(json.dumps(template, default=str))


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == kind}


# ------------------------------------------------------------------------------ 1. the table


def expected_table() -> dict:
    source = DYNAMO_RS.read_text()
    consts = rust_consts(source)
    body = source.split("pub async fn create_table", 1)
    if len(body) != 2:
        sys.exit(f"{DYNAMO_RS}: no create_table found")
    body = body[1].split("\n    }\n", 1)[0]

    def const(name: str) -> str:
        if name not in consts:
            sys.exit(f"{DYNAMO_RS}: create_table uses {name}, which is not a string constant")
        return consts[name]

    attributes = [const(n) for n in re.findall(r"attribute_definitions\(string_attribute\(([A-Z_]+)\)", body)]
    # The index closure: its own range key and projection (and not the table's keys).
    index_fn = re.search(r"let index = \|.*?\n        \};", body, re.S)
    if not index_fn:
        sys.exit(f"{DYNAMO_RS}: create_table's `index` closure not found")
    table_part = body.replace(index_fn.group(0), "")
    keys = [(const(n), t.upper()) for n, t in re.findall(r"\.key_schema\(key\(([A-Z_]+), KeyType::(Hash|Range)\)", table_part)]
    index_range = re.findall(r"key\(([A-Z_]+), KeyType::Range\)", index_fn.group(0))
    projection = re.findall(r"ProjectionType::(\w+)", index_fn.group(0))
    indexes = {
        const(name): {"hash": const(hash_key), "range": const(index_range[0]) if index_range else None,
                      "projection": projection[0].upper() if projection else None}
        for name, hash_key in re.findall(r"global_secondary_indexes\(index\(([A-Z_]+), ([A-Z_]+)\)", body)
    }
    billing = re.findall(r"BillingMode::(\w+)", body)
    ttl = re.findall(r"TimeToLiveSpecification::builder\(\)\s*\.enabled\(true\)\s*\.attribute_name\(([A-Z_]+)\)", body)
    return {
        "attributes": sorted(attributes),
        "keys": keys,
        "indexes": indexes,
        "billing": {"PayPerRequest": "PAY_PER_REQUEST", "Provisioned": "PROVISIONED"}.get(billing[0], billing[0]) if billing else None,
        "ttl": const(ttl[0]) if ttl else None,
    }


def check_table(template: dict) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    if len(tables) != 1:
        problem(f"expected exactly one DynamoDB table, found {sorted(tables)}")
        return
    props = next(iter(tables.values()))["Properties"]
    want = expected_table()
    got = {
        "attributes": sorted(a["AttributeName"] for a in props.get("AttributeDefinitions", []) if a.get("AttributeType") == "S"),
        "keys": [(k["AttributeName"], k["KeyType"]) for k in props.get("KeySchema", [])],
        "indexes": {
            g["IndexName"]: {
                "hash": next((k["AttributeName"] for k in g["KeySchema"] if k["KeyType"] == "HASH"), None),
                "range": next((k["AttributeName"] for k in g["KeySchema"] if k["KeyType"] == "RANGE"), None),
                "projection": g.get("Projection", {}).get("ProjectionType"),
            }
            for g in props.get("GlobalSecondaryIndexes", [])
        },
        "billing": props.get("BillingMode"),
        "ttl": props.get("TimeToLiveSpecification", {}).get("AttributeName")
        if props.get("TimeToLiveSpecification", {}).get("Enabled") in (True, "true") else None,
    }
    if len(props.get("AttributeDefinitions", [])) != len(got["attributes"]):
        problem("table: every attribute definition in create_table is a string (S)")
    for field in want:
        if want[field] != got[field]:
            problem(f"table {field}: create_table has {want[field]!r}, the template has {got[field]!r}")
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") not in (True, "true"):
        problem("table: point-in-time recovery is off")
    if props.get("SSESpecification", {}).get("SSEEnabled") not in (True, "true"):
        problem("table: SSESpecification.SSEEnabled is not true")


# ------------------------------------------------------------------------------ 2. IAM actions


def policy_actions(template: dict, policy_ref) -> set[str]:
    """Actions of a function's Policies entry: a Ref to an AWS::IAM::ManagedPolicy of this
    template, or an inline statement list."""
    if isinstance(policy_ref, dict) and set(policy_ref) == {"Ref"}:
        res = template["Resources"].get(policy_ref["Ref"])
        if not res or res.get("Type") != "AWS::IAM::ManagedPolicy":
            return set()
        document = res["Properties"]["PolicyDocument"]
    elif isinstance(policy_ref, dict) and "Statement" in policy_ref:
        document = policy_ref
    else:
        return set()
    actions: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("Effect") == "Allow" and "Action" in node:
                value = node["Action"]
                actions.update([value] if isinstance(value, str) else value)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(document["Statement"])
    return actions


def check_actions(template: dict, functions: dict[str, dict]) -> None:
    granted: set[str] = set()
    for fn in functions.values():
        for entry in fn["Properties"].get("Policies", []):
            granted |= policy_actions(template, entry)

    source = DYNAMO_RS.read_text()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"\bfn (\w+)\s*[<(]", source)]

    def enclosing_fn(position: int) -> str:
        return next((name for start, name in reversed(starts) if start < position), "")

    calls = {m.group(1) for m in re.finditer(r"\.(\w+)\(\)\s*\.table_name\(", source)
             if enclosing_fn(m.start()) not in OPERATOR_ONLY_FNS}
    needed: dict[str, str] = {}
    for call in sorted(calls):
        if call not in DYNAMO_CALL_ACTIONS:
            problem(f"dynamodb.rs calls {call}(), which this check does not know: add its IAM action here and to the template")
            continue
        for action in DYNAMO_CALL_ACTIONS[call]:
            needed[action] = call
    if "transact_write_items" in calls:
        for kind, action in TRANSACT_ITEM_ACTIONS.items():
            if re.search(rf"TransactWriteItem::builder\(\)\s*\.{kind}\(", source):
                needed[action] = f"transact_write_items ({kind})"
    for call in set(re.findall(r"\.(send_message(?:_batch)?)\(\)", SQS_RS.read_text())):
        needed[SQS_CALL_ACTIONS[call]] = call
    for action, call in sorted(needed.items()):
        if action not in granted:
            problem(f"the code calls {call}, but no function is granted {action}")


# ------------------------------------------------------------------------------ 3. functions


def crate_kind(crate_dir: Path) -> str | None:
    """What a function crate is: "http" (its main calls `serve(Route::...)`), "worker"
    (`serve_notify_worker()`), or None."""
    main = (crate_dir / "src" / "main.rs").read_text()
    if re.search(r"\bserve_notify_worker\(\)", main):
        return "worker"
    if re.search(r"\bserve\(\s*Route::", main):
        return "http"
    return None


def check_functions(functions: dict[str, dict]) -> tuple[dict[str, str], dict[str, str]]:
    """Returns {binary: logical id} and {logical id: "http" | "worker"}."""
    crates = {}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        if not (manifest.parent / "src" / "main.rs").exists():
            continue  # a library (the shared Lambda glue), not a function
        name = re.search(r'^name\s*=\s*"([^"]+)"', manifest.read_text(), re.M)
        if name:
            crates[name.group(1)] = manifest.parent.name
    kinds_of_crates: dict[str, str] = {}
    for crate, directory in crates.items():
        kind = crate_kind(ROOT / "functions" / directory)
        if kind is None:
            problem(f"functions/{directory}/src/main.rs calls neither serve(Route::...) nor serve_notify_worker(): "
                    "this check does not know what it is")
        else:
            kinds_of_crates[crate] = kind
    by_binary: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for logical_id, fn in functions.items():
        meta = fn.get("Metadata", {})
        binary = meta.get("BuildProperties", {}).get("Binary")
        if meta.get("BuildMethod") != "rust-cargolambda" or not binary:
            problem(f"{logical_id}: needs Metadata BuildMethod rust-cargolambda and BuildProperties.Binary")
            continue
        if fn["Properties"].get("CodeUri") != "..":
            problem(f"{logical_id}: CodeUri must be '..' (the workspace root; cargo-lambda's target/ is there)")
        if binary not in crates:
            problem(f"{logical_id}: Binary {binary!r} is not a crate under functions/")
        name = fn["Properties"].get("FunctionName")
        if name != {"Fn::Sub": f"${{AWS::StackName}}-{binary}"}:
            problem(f"{logical_id}: FunctionName must be !Sub \"${{AWS::StackName}}-{binary}\" (the API's integrations name it)")
        by_binary[binary] = logical_id
        if binary in kinds_of_crates:
            kinds[logical_id] = kinds_of_crates[binary]
    for crate in crates:
        if crate not in by_binary:
            problem(f"functions/{crates[crate]} ({crate}) has no function in the template")
    return by_binary, kinds


# ------------------------------------------------------------------------------ 3b. environment

RUNTIME_RS = ROOT / "shared" / "src" / "runtime.rs"
SETTINGS_RS = ROOT / "shared" / "src" / "wechat" / "settings.rs"
CONFIG_RS = ROOT / "shared" / "src" / "config.rs"


def function_env(template: dict, fn: dict) -> dict:
    env = dict((template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {})
    env.update((fn["Properties"].get("Environment") or {}).get("Variables") or {})
    return env


def runtime_requirements() -> dict[str, set[str]]:
    """The variables each wiring requires: {"http": lambda_app's, "worker": worker_app's}."""
    runtime = RUNTIME_RS.read_text()

    def body(name: str) -> str:
        parts = runtime.split(f"pub async fn {name}(", 1)
        if len(parts) != 2:
            sys.exit(f"{RUNTIME_RS}: no `pub async fn {name}` found")
        return parts[1].split("\n}\n", 1)[0]

    def required_in(text: str) -> set[str]:
        return set(re.findall(r'env\.required\("([A-Z0-9_]+)"\)', text))

    http_body = body("lambda_app")
    http = required_in(http_body)
    settings = SETTINGS_RS.read_text()
    with_secrets = settings.split("fn from_env_and_secrets", 1)
    if len(with_secrets) == 2:
        http |= required_in(with_secrets[1].split("\n    }\n", 1)[0])
    if "FERRYPAY_WECHAT_SECRET_ARN" in http_body:
        http.add("FERRYPAY_WECHAT_SECRET_ARN")
    worker_body = body("worker_app")
    worker = required_in(worker_body)
    if len(http) < 3 or len(worker) < 2:
        sys.exit(f"{RUNTIME_RS}: could not read the required variables (found {http}, {worker})")
    if re.search(r"read_secret|WECHAT|[Ww]echat", worker_body):
        problem(f"{RUNTIME_RS}: worker_app mentions the WeChat Pay secret or settings; the notify-worker must not need them")
    return {"http": http, "worker": worker}


def check_environment(template: dict, functions: dict[str, dict], kinds: dict[str, str]) -> None:
    """Every variable a function's wiring requires is set for it (for HTTP functions the secret
    ARN included: without it the runtime wants key files, which a Lambda does not have), a
    function that gets the secret ARN may read it, and the notify-worker gets neither."""
    required = runtime_requirements()
    # Every variable the code reads is a string literal in one of these files (config.rs holds
    # the optional service settings and FERRYPAY_WEBHOOK_RETRY_SCHEDULE).
    read_by_code = set()
    for source in (RUNTIME_RS, CONFIG_RS, SETTINGS_RS):
        read_by_code |= set(re.findall(r'"((?:FERRYPAY|WECHATPAY)_[A-Z0-9_]+)"', source.read_text()))
    for logical_id, fn in functions.items():
        own = (fn["Properties"].get("Environment") or {}).get("Variables") or {}
        for name in sorted(set(own) - read_by_code - {"RUST_LOG"}):
            problem(f"{logical_id}: sets {name}, which the code never reads (a typo would silently fall back to a default)")
        kind = kinds.get(logical_id)
        if kind is None:
            continue  # reported by check_functions
        env = function_env(template, fn)
        policies = fn["Properties"].get("Policies", [])
        for name in sorted(required[kind] - set(env)):
            problem(f"{logical_id}: its wiring requires {name}, the template does not set it")
        if "FERRYPAY_WECHAT_SECRET_ARN" in env and {"Ref": "WechatSecretReadPolicy"} not in policies:
            problem(f"{logical_id}: gets FERRYPAY_WECHAT_SECRET_ARN but not WechatSecretReadPolicy")
        if kind == "worker":
            if "FERRYPAY_WECHAT_SECRET_ARN" in env:
                problem(f"{logical_id}: the notify-worker never reads the WeChat Pay secret; do not give it FERRYPAY_WECHAT_SECRET_ARN")
            if {"Ref": "WechatSecretReadPolicy"} in policies:
                problem(f"{logical_id}: the notify-worker must not be able to read the WeChat Pay secret (WechatSecretReadPolicy)")


# ------------------------------------------------------------------------------ 4. routes


def code_routes() -> set[tuple[str, str, str]]:
    """{(METHOD, path, function)} the code serves."""
    source = API_RS.read_text()
    paths = dict(re.findall(r'Endpoint::(\w+) => "(/[^"]+)"', source))
    methods_fn = source.split("pub fn methods(self)", 1)[1].split("\n    }\n", 1)[0]
    routes = set()
    for arm, methods in re.findall(r"((?:Endpoint::\w+\s*\|?\s*)+)=> &\[([^\]]*)\]", methods_fn):
        for endpoint in re.findall(r"Endpoint::(\w+)", arm):
            for method in re.findall(r"Method::(\w+)", methods):
                routes.add((method, paths[endpoint], endpoint.lower()))
    notify = rust_consts(NOTIFY_RS.read_text()).get("WECHAT_NOTIFY_PATH")
    if not notify:
        sys.exit(f"{NOTIFY_RS}: WECHAT_NOTIFY_PATH not found")
    routes.add(("POST", notify, "inbound-callback"))
    if len(routes) < 5:
        sys.exit(f"{API_RS}: could not read the routes (found {routes})")
    return routes


def check_routes(template: dict, by_binary: dict[str, str]) -> None:
    apis = resources_of(template, "AWS::Serverless::HttpApi")
    if len(apis) != 1:
        problem(f"expected one AWS::Serverless::HttpApi, found {sorted(apis)}")
        return
    api_id, api = next(iter(apis.items()))
    paths = api["Properties"].get("DefinitionBody", {}).get("paths", {})
    template_routes = set()
    for path, operations in paths.items():
        for method, operation in operations.items():
            uri = operation.get("x-amazon-apigateway-integration", {}).get("uri", {})
            uri = uri.get("Fn::Sub", "") if isinstance(uri, dict) else uri
            target = re.search(r":function:\$\{AWS::StackName\}-([a-z0-9-]+)/invocations$", uri)
            if not target:
                problem(f"{method.upper()} {path}: integration uri does not name a ${{AWS::StackName}}-<fn> function")
                continue
            if target.group(1) not in by_binary:
                problem(f"{method.upper()} {path}: points at {target.group(1)}, which is no function here")
            template_routes.add((method.upper(), path, target.group(1)))
    for route in sorted(code_routes() - template_routes):
        problem(f"the code serves {route[0]} {route[1]} (function {route[2]}), the API does not route it there")
    for route in sorted(template_routes - code_routes()):
        problem(f"the API routes {route[0]} {route[1]} to {route[2]}, which the code does not serve")

    permissions = resources_of(template, "AWS::Lambda::Permission")
    for method, path, binary in sorted(template_routes):
        logical_id = by_binary.get(binary)
        covered = False
        for perm in permissions.values():
            props = perm["Properties"]
            if props.get("FunctionName") != {"Ref": logical_id} or props.get("Principal") != "apigateway.amazonaws.com":
                continue
            source = props.get("SourceArn", {})
            source = source.get("Fn::Sub", "") if isinstance(source, dict) else source
            m = re.search(rf"\$\{{{api_id}\}}/([^/]+)/([^/]+)(/.*)$", source)
            if m and m.group(2) in ("*", method) and re.fullmatch(re.escape(m.group(3)).replace(r"\*", ".*"), path):
                covered = True
        if not covered:
            problem(f"{method} {path}: no AWS::Lambda::Permission lets {api_id} invoke {logical_id} there")


# ------------------------------------------------------------------------------ 5. the queue


def check_queue(template: dict, functions: dict[str, dict]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    notify = queues.get("NotifyQueue")
    if not notify:
        problem("no NotifyQueue")
        return
    props = notify["Properties"]
    redrive = props.get("RedrivePolicy")
    if not redrive:
        problem("NotifyQueue has no RedrivePolicy (dead-letter queue)")
    else:
        target = redrive.get("deadLetterTargetArn", {})
        target_id = target.get("Fn::GetAtt", [None])[0] if isinstance(target, dict) else None
        if target_id not in queues or target_id == "NotifyQueue":
            problem(f"NotifyQueue's RedrivePolicy does not point at a dead-letter queue of this template: {target!r}")
        if not redrive.get("maxReceiveCount"):
            problem("NotifyQueue's RedrivePolicy has no maxReceiveCount")
    mapping = template.get("Mappings", {}).get("Notify", {}).get("Worker", {})
    visibility = props.get("VisibilityTimeout")
    if visibility == {"Fn::FindInMap": ["Notify", "Worker", "VisibilityTimeout"]}:
        visibility = mapping.get("VisibilityTimeout")
    timeouts = [("Notify.Worker.Timeout mapping", mapping.get("Timeout"))]
    global_timeout = template.get("Globals", {}).get("Function", {}).get("Timeout")
    for logical_id, fn in functions.items():
        for event in fn["Properties"].get("Events", {}).values():
            if event.get("Type") == "SQS" and event["Properties"].get("Queue") == {"Fn::GetAtt": ["NotifyQueue", "Arn"]}:
                timeout = fn["Properties"].get("Timeout", global_timeout)
                if timeout == {"Fn::FindInMap": ["Notify", "Worker", "Timeout"]}:
                    timeout = mapping.get("Timeout")
                timeouts.append((logical_id, timeout))
    for who, timeout in timeouts:
        try:
            if int(visibility) < 6 * int(timeout):
                problem(f"NotifyQueue VisibilityTimeout {visibility} is less than 6 x {who}'s timeout {timeout}")
        except (TypeError, ValueError):
            problem(f"cannot compare NotifyQueue VisibilityTimeout {visibility!r} with {who}'s timeout {timeout!r}")


# ------------------------------------------------------------------------------ 6. the worker


def check_worker(template: dict, functions: dict[str, dict], kinds: dict[str, str]) -> None:
    match = re.search(r"pub const MAX_BATCH: usize = (\d+);", QUEUE_RS.read_text())
    if not match:
        sys.exit(f"{QUEUE_RS}: MAX_BATCH not found")
    max_batch = int(match.group(1))
    consumers = []
    for logical_id, fn in functions.items():
        events = fn["Properties"].get("Events") or {}
        queue_events = [e for e in events.values()
                        if e.get("Type") == "SQS" and e.get("Properties", {}).get("Queue") == NOTIFY_QUEUE_ARN]
        kind = kinds.get(logical_id)
        if queue_events and kind != "worker":
            problem(f"{logical_id}: is not the notify-worker but consumes the notify queue (it would take its jobs)")
        if kind != "worker":
            continue
        if len(queue_events) != 1:
            problem(f"{logical_id}: the notify-worker needs exactly one SQS event on NotifyQueue, found {len(queue_events)}")
        for event in queue_events:
            consumers.append(logical_id)
            props = event["Properties"]
            if "ReportBatchItemFailures" not in (props.get("FunctionResponseTypes") or []):
                problem(f"{logical_id}: its SQS event needs FunctionResponseTypes: [ReportBatchItemFailures] "
                        "(the worker reports failed messages; without it Lambda deletes them with the batch)")
            batch = props.get("BatchSize", 10)
            try:
                if not 1 <= int(batch) <= max_batch:
                    problem(f"{logical_id}: BatchSize {batch} is outside 1..={max_batch} (MAX_BATCH in {display(QUEUE_RS)})")
            except (TypeError, ValueError):
                problem(f"{logical_id}: BatchSize {batch!r} is not a number")
        granted: set[str] = set()
        for entry in fn["Properties"].get("Policies", []):
            granted |= policy_actions(template, entry)
        for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "sqs:SendMessage"):
            if action not in granted:
                problem(f"{logical_id}: the notify-worker needs {action} (orders, attempt log, next attempt)")
    if "worker" in kinds.values() and not consumers:
        problem("nothing consumes NotifyQueue: the notify-worker has no SQS event on it")


# ------------------------------------------------------------------------------ the SAM transform


def transform(template: dict, out: Path) -> None:
    import os

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator wants one; nothing is called
    from samtranslator.translator.transform import transform as sam_transform

    class StubManagedPolicies:
        """The translator looks AWS-managed policy names up in IAM; give it the ones SAM adds."""

        def load(self) -> dict[str, str]:
            return {
                "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
                "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
            }

    template = copy.deepcopy(template)
    for res in template["Resources"].values():
        if res.get("Type") == "AWS::Serverless::Function":
            # What `sam package` does: the code becomes an S3 object.
            res["Properties"]["CodeUri"] = "s3://ferrypay-artifacts/code.zip"
    transformed = sam_transform(template, {}, StubManagedPolicies())
    out.write_text(json.dumps(transformed, indent=1))


def main() -> int:
    global TEMPLATE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformed-out", type=Path, help="write the SAM-expanded CloudFormation template here")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the template to check (default infra/template.yaml)")
    args = parser.parse_args()
    TEMPLATE = args.template.resolve()

    template = load_template()
    functions = resources_of(template, "AWS::Serverless::Function")
    check_table(template)
    check_actions(template, functions)
    by_binary, kinds = check_functions(functions)
    check_environment(template, functions, kinds)
    check_routes(template, by_binary)
    check_queue(template, functions)
    check_worker(template, functions, kinds)
    if args.transformed_out:
        transform(template, args.transformed_out)

    if problems:
        for p in problems:
            print(f"check_infra: {p}", file=sys.stderr)
        print(f"check_infra: {len(problems)} problem(s) in {display(TEMPLATE)}", file=sys.stderr)
        return 1
    print(f"check_infra: {display(TEMPLATE)} matches the code: table schema, IAM actions, "
          f"{len(by_binary)} functions, {len(code_routes())} routes, queue timeouts and redrive, the notify-worker's event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
