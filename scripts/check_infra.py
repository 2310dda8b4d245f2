#!/usr/bin/env python3
"""Checks infra/template.yaml against the code it deploys (run by scripts/lint-infra.sh).

cfn-lint and `sam validate` check the template on its own; this checks that it still matches
the Rust side, which they cannot see:

1. the table mirrors `DynamoStore::create_table` (shared/src/store/dynamodb/schema.rs): key schema,
   attribute definitions, both GSIs (hash key, range key, projection), on-demand billing, the
   TTL attribute;
2. every DynamoDB operation the store issues has its IAM action in the policy of at least one
   function, and every SQS send in the queue code is granted somewhere;
3. every binary crate under functions/ is one function (`CodeUri: ..`, rust-cargolambda,
   `BuildProperties.Binary` = the crate) and every function is a crate; each crate is an HTTP
   function (its main calls `serve(Route::...)`, built by `lambda_app`), a store-only one (list,
   resend: `serve_store_only(Endpoint::...)`, built by `store_only_app`), the jump-pay gateway
   (`serve_gateway()`, built by `gateway_app`) or the notify-worker (`serve_notify_worker()`,
   built by `worker_app`); every variable its config requires is set for it (infra/variables.json:
   the variables each process reads, written from ferrypay::config by a test that fails when the
   file is stale; for the gateway also its OAuth hosts), a function given the secret's ARN may
   read it, the notify-worker, the store-only functions and health get neither the ARN nor the
   permission, no function has a secret
   (WECHAT_OAUTH_SECRET, WECHATPAY_APIV3_KEY, ...) in its environment, and no function sets a
   variable its config never reads;
4. every route the code serves (`Endpoint::path`/`methods` in shared/src/api/mod.rs,
   `WECHAT_NOTIFY_PATH`, and the gateway's paths, the constants of shared/src/api/gateway/mod.rs
   with the methods `handle_gateway` in the same file matches them with, and GET
   `HEALTH_PATH` of shared/src/api/health.rs; scripts/check_infra_routes.py) is in the HTTP API, wired to the function of that name, with an invoke permission whose source ARN
   covers it, and no route points at a missing function;
5. the notify queue's visibility timeout is at least six times the notify-worker's timeout
   (the `Notify.Worker` mapping, and any function with an SQS event on the queue), and the queue
   redrives to a dead-letter queue of this template;
6. the notify queue is consumed by the notify-worker and by nothing else, through one SQS event
   with `FunctionResponseTypes: [ReportBatchItemFailures]` (the worker answers partial batch
   responses; without it Lambda would delete failed messages with their batch) and a batch no
   larger than the queue code's `MAX_BATCH`; the worker may read and write the table and send
   to the queue (it queues each next attempt);
7. least privilege on the table and the secrets key: every item action a function is granted
   is limited by `dynamodb:LeadingKeys` (ForAllValues:StringLike, with the key required to be
   present: ForAllValues alone is true of a request without one), no function may Scan, delete
   or batch, none may write a merchant, API-key or keyring item (MERCHANT#, KEY#, KEYRING#: the
   operator's CLI does) nor query the table's merchant partitions, only the notify-worker may
   read the webhook keyring and only the gateway the link one, and `kms:Decrypt` on the secrets
   key is the notify-worker's (purpose webhook) and the gateway's (purpose link) alone, each
   bound to its purpose by `kms:EncryptionContext:ferrypay:purpose`; list and resend (the
   store-only functions) get no WeChat Pay secret, and only the gateway the OAuth secret;
8. the HTTP API's throttles: every public route (the gateway's, health) has its own route
   settings below the stage default (the merchant API's), and WeChat Pay's notification route
   has its own;
9. the optional CloudFront distribution sends what the Lambda glue reads (lambda/src/edge.rs):
   the origin-verification header with the generated secret, and the viewer's address; and
   infra/edge-web-acl.yaml (the web ACL for stacks outside us-east-1) has the same rules as the
   one the template makes in us-east-1.

While another branch's function, variables or partition-key kinds are not in the code yet,
PENDING_FUNCTIONS, PENDING_VARIABLES and PENDING_KEY_PREFIXES (scripts/check_infra_base.py) name
them: the template may already
deploy or grant them. Each entry is reported as a problem once the code has it, so the lists
empty themselves at merge; what is still pending is printed with every successful run.

It also expands the SAM transform locally (samtranslator, no AWS account: the managed-policy
lookup is stubbed) and writes the plain CloudFormation to --transformed-out, so cfn-lint can
check what CloudFormation will actually see (for example circular dependencies between the
generated API and the functions, which the SAM-level lint does not look for).

`--self-test` checks the checker: it breaks the template in memory in each of the ways above
(a route, a permission, a variable, an OAuth parameter, the secret's policy, ...) and fails
unless every broken copy is caught, with the expected problem, and the template itself passes.

Items 7 to 9 are in scripts/check_infra_access.py; what both files share is in
scripts/check_infra_base.py. Needs cfn-lint and aws-sam-translator (both come with the pinned
tools in .venv).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

from check_infra_access import (PURPOSE_KEY, as_list, check_edge, check_edge_web_acl_template,
                                check_least_privilege, check_throttles)
from check_infra_base import (DYNAMO_DIR, PENDING_FUNCTIONS, PENDING_KEY_PREFIXES, PENDING_VARIABLES, ROOT, display,
                              problem, problems, resources_of, rust_consts)
from check_infra_routes import check_routes, code_routes, pending_routes, public_routes

TEMPLATE = ROOT / "infra" / "template.yaml"
DYNAMO_RS = DYNAMO_DIR / "schema.rs"  # create_table and the key names
SQS_RS = ROOT / "shared" / "src" / "queue" / "sqs.rs"
QUEUE_RS = ROOT / "shared" / "src" / "queue" / "mod.rs"
NOTIFY_QUEUE_ARN = {"Fn::GetAtt": ["NotifyQueue", "Arn"]}

# Store methods only operators run (the `ferrypay` CLI and `ferrypay dev`, with the operator's
# own credentials), never a Lambda: making the table (production tables come from the template)
# and listing every merchant (a Scan). SDK calls inside them need no function grant. Anything
# else in the DynamoDB store is taken to be reachable from a Lambda.
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

def load_template() -> dict:
    template, matches = decode(str(TEMPLATE))
    if matches or template is None:
        sys.exit(f"{TEMPLATE}: cannot be parsed: {matches}")
    return json.loads(json.dumps(template, default=str))


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

    # Every file of the DynamoDB store (each call sits inside a function of its own file).
    source = "\n".join(p.read_text() for p in sorted(DYNAMO_DIR.glob("*.rs")))
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"\bfn (\w+)\s*[<(]", source)]

    def enclosing_fn(position: int) -> str:
        return next((name for start, name in reversed(starts) if start < position), "")

    calls = {m.group(1) for m in re.finditer(r"\.(\w+)\(\)\s*\.table_name\(", source)
             if enclosing_fn(m.start()) not in OPERATOR_ONLY_FNS}
    needed: dict[str, str] = {}
    for call in sorted(calls):
        if call not in DYNAMO_CALL_ACTIONS:
            problem(f"the DynamoDB store calls {call}(), which this check does not know: add its IAM action here and to the template")
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
    """What a function crate is: "http" (its main calls `serve(Route::...)`), "store" (a
    merchant API function without a payment channel: `serve_store_only(Endpoint::...)`),
    "gateway" (`serve_gateway()`), "worker" (`serve_notify_worker()`), "health"
    (`serve_health()`), or None."""
    main = (crate_dir / "src" / "main.rs").read_text()
    if re.search(r"\bserve_health\(\)", main):
        return "health"
    if re.search(r"\bserve_notify_worker\(\)", main):
        return "worker"
    if re.search(r"\bserve_store_only\(\s*Endpoint::", main):
        return "store"
    if re.search(r"\bserve_gateway\(\)", main):
        return "gateway"
    if re.search(r"\bserve\(\s*Route::", main):
        return "http"
    return None


def check_functions(functions: dict[str, dict]) -> tuple[dict[str, str], dict[str, str]]:
    """Returns {binary: logical id} and {logical id: "http" | "worker"}."""
    crates = {}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        if not (manifest.parent / "src" / "main.rs").exists():
            continue  # a library, not a function
        name = re.search(r'^name\s*=\s*"([^"]+)"', manifest.read_text(), re.M)
        if name:
            crates[name.group(1)] = manifest.parent.name
    kinds_of_crates: dict[str, str] = {}
    for crate, directory in crates.items():
        kind = crate_kind(ROOT / "functions" / directory)
        if kind is None:
            problem(f"functions/{directory}/src/main.rs calls none of serve(Route::...), serve_store_only(Endpoint::...), "
                    "serve_gateway() and serve_notify_worker(): this check does not know what it is")
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
        if binary in PENDING_FUNCTIONS and binary in crates:
            problem(f"{logical_id}: functions/ now has the crate {binary!r}: remove it from PENDING_FUNCTIONS "
                    "in scripts/check_infra_base.py (and teach crate_kind in scripts/check_infra.py its kind)")
        elif binary not in crates and binary not in PENDING_FUNCTIONS:
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

# What each process reads, as ferrypay::config declares it (each config's `VARIABLES`); a test
# of the ferrypay crate fails when this file is stale and prints the command that refreshes it.
VARIABLES_JSON = ROOT / "infra" / "variables.json"
SECRET_ARN_VAR = "FERRYPAY_WECHAT_SECRET_ARN"
# The processes that are Lambda functions (crate_kind), and how a problem names their wiring.
FUNCTION_KINDS = {"http": "HTTP functions'", "store": "store-only functions'", "gateway": "gateway's",
                  "worker": "notify-worker's", "health": "health function's"}
# The kinds that never talk to WeChat Pay: no WeChat Pay setting is theirs, nor the secret.
WITHOUT_WECHAT = ("store", "worker", "health")
OAUTH_SECRET_ARN_VAR = "FERRYPAY_WECHAT_OAUTH_SECRET_ARN"
ORIGIN_VERIFY_VAR = "FERRYPAY_ORIGIN_VERIFY_SECRET_ARN"
# The other processes in variables.json: the operators' tools.
TOOL_KINDS = {"dev": "ferrypay dev", "operator": "ferrypay merchant"}


def function_env(template: dict, fn: dict) -> dict:
    env = dict((template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {})
    env.update((fn["Properties"].get("Environment") or {}).get("Variables") or {})
    return env


def process_variables() -> dict[str, dict[str, dict]]:
    """{process: {name: {"need", "default"?, "unless"?, "secret"?, "about"}}} from variables.json."""
    try:
        processes = json.loads(VARIABLES_JSON.read_text())["processes"]
        found = {kind: {var["name"]: var for var in process["variables"]} for kind, process in processes.items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"{display(VARIABLES_JSON)}: cannot be read ({e}); refresh it with "
                 "FERRYPAY_WRITE_VARIABLES=1 cargo test -p ferrypay --lib config::tests::variables_json")
    for kind in FUNCTION_KINDS:
        if len(found.get(kind, {})) < 2:
            sys.exit(f"{display(VARIABLES_JSON)}: no variables for the {kind} process")
    return found


def requirements(variables: dict[str, dict[str, dict]]) -> dict[str, set[str]]:
    """The variables the template must set for each kind of function: the required ones; for
    one required unless another is set (the key files unless the secret's ARN), that other: a
    Lambda has no key files and no secret in its environment; and, for the gateway, every
    setting only it reads (its OAuth hosts default to the real WeChat hosts, but the template
    passes its parameters, so a test endpoint is a parameter change, not a template edit)."""
    required = {}
    for kind in FUNCTION_KINDS:
        own = variables[kind]
        required[kind] = {name for name, var in own.items() if var["need"] == "required"}
        required[kind] |= {var["unless"] for var in own.values() if var["need"] == "unless"}
    required["gateway"] |= {name for name, var in variables["gateway"].items()
                            if name not in variables["http"] and not var.get("secret")}
    return required


def check_environment(template: dict, functions: dict[str, dict], kinds: dict[str, str]) -> None:
    """Every variable a function's config requires is set for it (for HTTP functions the secret
    ARN included: without it the config wants key files, which a Lambda does not have), a
    function that gets the secret ARN may read it, the notify-worker gets neither, no function
    gets a secret in its environment, and no function sets a variable its config never reads."""
    variables = process_variables()
    required = requirements(variables)
    secrets = {name for process in variables.values() for name, var in process.items() if var.get("secret")}
    for kind in WITHOUT_WECHAT:
        for name in sorted(variables[kind]):
            if name == SECRET_ARN_VAR or name.startswith("WECHAT"):
                problem(f"{display(VARIABLES_JSON)}: the {FUNCTION_KINDS[kind]} config reads {name}; it must not need WeChat Pay")
    declared = {name for process in variables.values() for name in process}
    for name in sorted(PENDING_VARIABLES & declared):
        problem(f"{name} is declared in {display(VARIABLES_JSON)} now: remove it from PENDING_VARIABLES in scripts/check_infra_base.py")
    for logical_id, fn in functions.items():
        kind = kinds.get(logical_id)
        own = (fn["Properties"].get("Environment") or {}).get("Variables") or {}
        for name in sorted(set(own) - {"RUST_LOG"}):
            if kind is None or name in variables[kind] or (name in PENDING_VARIABLES and name not in declared):
                continue
            readers = [FUNCTION_KINDS[k] for k in FUNCTION_KINDS if name in variables[k]]
            tools = [TOOL_KINDS[k] for k in TOOL_KINDS if name in variables.get(k, {})]
            if readers:
                problem(f"{logical_id}: sets {name}, which only the {' and '.join(readers)} wiring reads")
            elif tools:
                problem(f"{logical_id}: sets {name}, which only {' and '.join(tools)} reads, no function")
            else:
                problem(f"{logical_id}: sets {name}, which the code never reads (a typo would silently fall back to a default)")
        env = function_env(template, fn)
        for name in sorted(set(env) & secrets):
            problem(f"{logical_id}: sets {name}, a secret: it belongs in the WeChat Pay secret ({SECRET_ARN_VAR}), "
                    "never in the template or a function's environment")
        if kind is None:
            continue  # reported by check_functions
        policies = fn["Properties"].get("Policies", [])
        for name in sorted(required[kind] - set(env)):
            problem(f"{logical_id}: its wiring requires {name}, the template does not set it")
        if SECRET_ARN_VAR in env and {"Ref": "WechatSecretReadPolicy"} not in policies:
            problem(f"{logical_id}: gets {SECRET_ARN_VAR} but not WechatSecretReadPolicy")
        if kind in WITHOUT_WECHAT:
            who = {"worker": "the notify-worker", "health": "the health function"}.get(kind, "a store-only function")
            if SECRET_ARN_VAR in env:
                problem(f"{logical_id}: {who} never reads the WeChat Pay secret; do not give it {SECRET_ARN_VAR}")
            if {"Ref": "WechatSecretReadPolicy"} in policies:
                problem(f"{logical_id}: {who} must not be able to read the WeChat Pay secret (WechatSecretReadPolicy)")
        oauth_policy = any(refs_policy(entry, "WechatOAuthSecretReadPolicy") for entry in policies)
        if kind != "gateway" and oauth_policy:
            problem(f"{logical_id}: only the gateway may read the OAuth secret (WechatOAuthSecretReadPolicy)")
        if OAUTH_SECRET_ARN_VAR in env and not oauth_policy:
            problem(f"{logical_id}: gets {OAUTH_SECRET_ARN_VAR} but not WechatOAuthSecretReadPolicy")
        if ORIGIN_VERIFY_VAR in env and not any(refs_policy(entry, "OriginVerifySecretReadPolicy") for entry in policies):
            problem(f"{logical_id}: gets {ORIGIN_VERIFY_VAR} but not OriginVerifySecretReadPolicy")
        if kind in ("http", "store", "gateway", "health") and ORIGIN_VERIFY_VAR not in env:
            problem(f"{logical_id}: behind CloudFront it would count edge addresses: give it {ORIGIN_VERIFY_VAR} "
                    "(and OriginVerifySecretReadPolicy) under the UseEdge condition")


def refs_policy(entry, policy: str) -> bool:
    """A Policies entry is `!Ref policy`, or `!If [cond, !Ref policy, ...]`."""
    if entry == {"Ref": policy}:
        return True
    if isinstance(entry, dict) and set(entry) == {"Fn::If"}:
        return any(refs_policy(branch, policy) for branch in entry["Fn::If"][1:])
    return False


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
        for action in ("dynamodb:GetItem", "dynamodb:PutItem", "sqs:SendMessage"):
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


def run_checks(template: dict) -> tuple[dict[str, str], list[str]]:
    """Every check on `template`: ({binary: logical id}, the problems found)."""
    problems.clear()
    functions = resources_of(template, "AWS::Serverless::Function")
    check_table(template)
    check_actions(template, functions)
    by_binary, kinds = check_functions(functions)
    check_environment(template, functions, kinds)
    check_routes(template, by_binary)
    check_queue(template, functions)
    check_worker(template, functions, kinds)
    check_least_privilege(template, functions)
    check_throttles(template, public_routes())
    check_edge(template)
    check_edge_web_acl_template(template)
    return by_binary, list(problems)


# ------------------------------------------------------------------------------ self-test


def _fn_env(t: dict, logical_id: str) -> dict:
    return t["Resources"][logical_id]["Properties"]["Environment"]["Variables"]


def _policies(t: dict, logical_id: str) -> list:
    return t["Resources"][logical_id]["Properties"]["Policies"]


def _paths(t: dict) -> dict:
    return t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]


def _statement(t: dict, policy: str) -> dict:
    return t["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"][0]


def _set(container: dict, key: str, value) -> None:
    container[key] = value


def _table_doc(t: dict, logical_id: str) -> dict:
    """A function's inline table policy (the first inline document of its Policies)."""
    return next(p for p in _policies(t, logical_id) if isinstance(p, dict) and "Statement" in p)


def _sid(t: dict, logical_id: str, sid: str) -> dict:
    return next(st for st in _table_doc(t, logical_id)["Statement"] if st.get("Sid") == sid)


def _drop_action_everywhere(t: dict, action: str) -> None:
    for res in t["Resources"].values():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for entry in res["Properties"].get("Policies", []):
            if isinstance(entry, dict) and "Statement" in entry:
                entry["Statement"] = [st for st in entry["Statement"] if action not in as_list(st.get("Action"))]


def _route_settings(t: dict) -> dict:
    return t["Resources"]["HttpApi"]["Properties"]["RouteSettings"]


# (what is broken, how, a text the problem it causes must contain)
BROKEN_TEMPLATES = [
    ("the health function may read the WeChat Pay secret",
     lambda t: _policies(t, "HealthFunction").append({"Ref": "WechatSecretReadPolicy"}),
     "the health function must not be able to read"),
    ("the health route without a throttle of its own",
     lambda t: _route_settings(t).pop("GET /api/v1/health"),
     "public route GET /api/v1/health needs RouteSettings"),
    ("the health route sent to another function",
     lambda t: _set(_paths(t)["/api/v1/health"]["get"]["x-amazon-apigateway-integration"], "uri",
                    {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                                "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
                                "${AWS::StackName}-list/invocations"}),
     "GET /api/v1/health (function health)"),
    ("a GSI projects keys only",
     lambda t: _set(t["Resources"]["Table"]["Properties"]["GlobalSecondaryIndexes"][0]["Projection"], "ProjectionType", "KEYS_ONLY"),
     "table indexes"),
    ("the TTL attribute renamed",
     lambda t: _set(t["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"], "AttributeName", "expires"),
     "table ttl"),
    ("point-in-time recovery off",
     lambda t: _set(t["Resources"]["Table"]["Properties"]["PointInTimeRecoverySpecification"], "PointInTimeRecoveryEnabled", False),
     "point-in-time recovery"),
    ("dynamodb:UpdateItem granted nowhere",
     lambda t: _drop_action_everywhere(t, "dynamodb:UpdateItem"),
     "dynamodb:UpdateItem"),
    ("sqs:SendMessage granted nowhere",
     lambda t: _set(_statement(t, "NotifySendPolicy"), "Action", "sqs:GetQueueUrl"),
     "sqs:SendMessage"),
    ("a function's Binary names no crate",
     lambda t: _set(t["Resources"]["CloseFunction"]["Metadata"]["BuildProperties"], "Binary", "closer"),
     "is not a crate"),
    ("a crate without its function",
     lambda t: t["Resources"].pop("ResendFunction"),
     "(resend) has no function"),
    ("a function named otherwise than its crate",
     lambda t: _set(t["Resources"]["ListFunction"]["Properties"], "FunctionName", {"Fn::Sub": "${AWS::StackName}-lists"}),
     "FunctionName must be"),
    ("FERRYPAY_TABLE not set",
     lambda t: t["Globals"]["Function"]["Environment"]["Variables"].pop("FERRYPAY_TABLE"),
     "requires FERRYPAY_TABLE"),
    ("the secret's ARN without the permission to read it",
     lambda t: _policies(t, "CreateFunction").remove({"Ref": "WechatSecretReadPolicy"}),
     "CreateFunction: gets FERRYPAY_WECHAT_SECRET_ARN but not WechatSecretReadPolicy"),
    ("the notify-worker given the secret",
     lambda t: _set(_fn_env(t, "NotifyWorkerFunction"), "FERRYPAY_WECHAT_SECRET_ARN", {"Ref": "WechatSecretArn"}),
     "never reads the WeChat Pay secret"),
    # The split of the WeChat secrets.
    ("list given the WeChat Pay secret's ARN",
     lambda t: _set(_fn_env(t, "ListFunction"), "FERRYPAY_WECHAT_SECRET_ARN", {"Ref": "WechatSecretArn"}),
     "ListFunction: a store-only function never reads the WeChat Pay secret"),
    ("resend allowed to read the WeChat Pay secret",
     lambda t: _policies(t, "ResendFunction").append({"Ref": "WechatSecretReadPolicy"}),
     "ResendFunction: a store-only function must not be able to read the WeChat Pay secret"),
    ("create allowed to read the OAuth secret",
     lambda t: _policies(t, "CreateFunction").append({"Fn::If": ["HasOAuthSecretArn", {"Ref": "WechatOAuthSecretReadPolicy"}, {"Ref": "AWS::NoValue"}]}),
     "CreateFunction: only the gateway may read the OAuth secret"),
    ("the OAuth secret's ARN given to inbound-callback",
     lambda t: _set(_fn_env(t, "InboundCallbackFunction"), "FERRYPAY_WECHAT_OAUTH_SECRET_ARN", {"Ref": "WechatOAuthSecretArn"}),
     "InboundCallbackFunction: sets FERRYPAY_WECHAT_OAUTH_SECRET_ARN, which only the gateway's wiring reads"),
    ("the gateway given the OAuth secret's ARN but not the permission",
     lambda t: _policies(t, "GatewayRedirectFunction").remove(
         {"Fn::If": ["HasOAuthSecretArn", {"Ref": "WechatOAuthSecretReadPolicy"}, {"Ref": "AWS::NoValue"}]}),
     "GatewayRedirectFunction: gets FERRYPAY_WECHAT_OAUTH_SECRET_ARN but not WechatOAuthSecretReadPolicy"),
    ("an HTTP function without the origin-verification secret",
     lambda t: _fn_env(t, "QueryFunction").pop("FERRYPAY_ORIGIN_VERIFY_SECRET_ARN"),
     "QueryFunction: behind CloudFront it would count edge addresses"),
    ("the origin-verification secret without the permission to read it",
     lambda t: _policies(t, "ListFunction").remove(
         {"Fn::If": ["UseEdge", {"Ref": "OriginVerifySecretReadPolicy"}, {"Ref": "AWS::NoValue"}]}),
     "ListFunction: gets FERRYPAY_ORIGIN_VERIFY_SECRET_ARN but not OriginVerifySecretReadPolicy"),
    # Least privilege on the table and the secrets key.
    ("an item action without LeadingKeys",
     lambda t: _sid(t, "CreateFunction", "GetItems").pop("Condition"),
     "CreateFunction: ['dynamodb:GetItem'] without a dynamodb:LeadingKeys condition"),
    ("LeadingKeys without requiring the key (ForAllValues alone lets a Scan through)",
     lambda t: _sid(t, "QueryFunction", "QueryItems")["Condition"].pop("Null"),
     "QueryFunction: ['dynamodb:Query'] without a dynamodb:LeadingKeys condition"),
    ("a Scan granted",
     lambda t: _set(_sid(t, "ListFunction", "GetItems"), "Action", ["dynamodb:GetItem", "dynamodb:Scan"]),
     "ListFunction: may ['dynamodb:Scan'] on the table"),
    ("the gateway may write key items",
     lambda t: _sid(t, "GatewayRedirectFunction", "PutItems")["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("KEY#*"),
     "GatewayRedirectFunction: may write KEY# items"),
    ("the worker may write merchant items (through a wildcard)",
     lambda t: _set(_sid(t, "NotifyWorkerFunction", "PutItems")["Condition"]["ForAllValues:StringLike"], "dynamodb:LeadingKeys", ["*"]),
     "NotifyWorkerFunction: may write MERCHANT# items"),
    ("inbound-callback may write keyring items",
     lambda t: _sid(t, "InboundCallbackFunction", "UpdateItems")["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("KEYRING#*"),
     "InboundCallbackFunction: may write KEYRING# items"),
    ("list may query the table's merchant partitions",
     lambda t: _sid(t, "ListFunction", "QueryOrderLists").__setitem__("Resource", [{"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/*"}]),
     "ListFunction: may query the table's MERCHANT# partitions"),
    ("the gateway may read the webhook keyring",
     lambda t: _sid(t, "GatewayRedirectFunction", "GetItems")["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("KEYRING#*"),
     "GatewayRedirectFunction: may read KEYRING#webhook"),
    ("resend may decrypt",
     lambda t: _table_doc(t, "ResendFunction")["Statement"].append(copy.deepcopy(_sid(t, "NotifyWorkerFunction", "UnwrapWebhookDataKey"))),
     "ResendFunction: may decrypt with the secrets key"),
    ("the worker's decryption not bound to its purpose",
     lambda t: _sid(t, "NotifyWorkerFunction", "UnwrapWebhookDataKey").pop("Condition"),
     "NotifyWorkerFunction: decrypts with the secrets key for purpose None"),
    ("the gateway decrypting webhook secrets",
     lambda t: _set(_sid(t, "GatewayRedirectFunction", "UnwrapLinkDataKey")["Condition"]["StringEquals"], PURPOSE_KEY, "webhook"),
     "GatewayRedirectFunction: decrypts with the secrets key for purpose 'webhook'"),
    ("the worker may wrap data keys",
     lambda t: _set(_sid(t, "NotifyWorkerFunction", "UnwrapWebhookDataKey"), "Action", ["kms:Decrypt", "kms:GenerateDataKey"]),
     "NotifyWorkerFunction: may ['kms:GenerateDataKey'] with the secrets key"),
    ("LeadingKeys naming a key kind the store never builds",
     lambda t: _sid(t, "ResendFunction", "GetItems")["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("ORDERS#*"),
     "ResendFunction: dynamodb:LeadingKeys 'ORDERS#*' names ORDERS# keys"),
    # The edge.
    ("CloudFront without the origin-verification header",
     lambda t: t["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"]["Origins"][0].pop("OriginCustomHeaders"),
     "EdgeDistribution: origin api must send x-ferrypay-origin-verify"),
    ("CloudFront's origin-verification header under another name",
     lambda t: _set(t["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"]["Origins"][0]["OriginCustomHeaders"][0],
                    "HeaderName", "X-Origin-Verify"),
     "EdgeDistribution: origin api must send x-ferrypay-origin-verify"),
    ("CloudFront not passing the viewer's address",
     lambda t: _set(t["Resources"]["EdgeOriginRequestPolicy"]["Properties"]["OriginRequestPolicyConfig"]["HeadersConfig"],
                    "Headers", []),
     "EdgeDistribution: its origin request policy must add cloudfront-viewer-address"),
    ("the web ACL outside us-east-1 drifting from the one the stack makes",
     lambda t: _set(t["Resources"]["EdgeWebAcl"]["Properties"]["Rules"][0]["Statement"]["RateBasedStatement"],
                    "EvaluationWindowSec", 60),
     "infra/edge-web-acl.yaml: its EdgeWebAcl's Rules differs"),
    # Throttles.
    ("a public route without its own throttle",
     lambda t: _route_settings(t).pop("GET /pay/gateway/status"),
     "the public route GET /pay/gateway/status needs RouteSettings of its own"),
    ("a public route throttled like the merchant API",
     lambda t: _set(_route_settings(t)["POST /pay/gateway"], "ThrottlingRateLimit", 100),
     "the public route POST /pay/gateway is throttled at 100/s"),
    ("the notification route without its own throttle",
     lambda t: _route_settings(t).pop("POST /api/v1/notify/wechat"),
     "POST /api/v1/notify/wechat (WeChat Pay's notifications) needs RouteSettings of its own"),
    ("route settings for a route that does not exist",
     lambda t: _set(_route_settings(t), "GET /pay/gateway/nowhere", {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 1}),
     "RouteSettings names GET /pay/gateway/nowhere"),
    ("the health route missing",
     lambda t: _paths(t).pop("/api/v1/health"),
     "the code serves GET /api/v1/health (function health)"),
    ("a secret in a function's environment",
     lambda t: _set(_fn_env(t, "CreateFunction"), "WECHATPAY_APIV3_KEY", "hunter2hunter2hunter2hunter2hunt"),
     "CreateFunction: sets WECHATPAY_APIV3_KEY, a secret"),
    ("a dev-stack setting given to a function",
     lambda t: _set(_fn_env(t, "ListFunction"), "FERRYPAY_DEMO_NOTIFY_URL", "https://example.com/hook"),
     "ListFunction: sets FERRYPAY_DEMO_NOTIFY_URL, which only ferrypay dev reads, no function"),
    ("a service setting given to the notify-worker, which does not read it",
     lambda t: _set(_fn_env(t, "NotifyWorkerFunction"), "FERRYPAY_DEFAULT_EXPIRE_MINUTES", "30"),
     "NotifyWorkerFunction: sets FERRYPAY_DEFAULT_EXPIRE_MINUTES, which only the HTTP functions' and store-only functions' and gateway's wiring reads"),
    ("a misspelt variable",
     lambda t: _set(_fn_env(t, "NotifyWorkerFunction"), "FERRYPAY_WEBHOOK_RETRY_SCHEDUL", "1s"),
     "which the code never reads"),
    ("a merchant route missing",
     lambda t: _paths(t).pop("/api/v1/pay/close"),
     "the code serves POST /api/v1/pay/close"),
    ("a merchant route's permission missing",
     lambda t: t["Resources"].pop("CloseApiPermission"),
     "POST /api/v1/pay/close: no AWS::Lambda::Permission"),
    ("a route to a missing function",
     lambda t: _set(_paths(t), "/api/v1/pay/transfer", {"post": copy.deepcopy(_paths(t)["/api/v1/pay/close"]["post"])})
     or _set(_paths(t)["/api/v1/pay/transfer"]["post"]["x-amazon-apigateway-integration"], "uri",
             {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                         "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-transfer/invocations"}),
     "points at transfer, which is no function here"),
    ("the refund query's GET routed nowhere",
     lambda t: _paths(t)["/api/v1/pay/refund/query"].pop("get"),
     "GET /api/v1/pay/refund/query (function refund)"),
    ("the queue's visibility under six worker timeouts",
     lambda t: _set(t["Mappings"]["Notify"]["Worker"], "VisibilityTimeout", 300),
     "less than 6 x"),
    ("no dead-letter queue",
     lambda t: t["Resources"]["NotifyQueue"]["Properties"].pop("RedrivePolicy"),
     "no RedrivePolicy"),
    ("the worker without partial batch responses",
     lambda t: t["Resources"]["NotifyWorkerFunction"]["Properties"]["Events"]["NotifyQueue"]["Properties"].pop("FunctionResponseTypes"),
     "ReportBatchItemFailures"),
    ("batches larger than the worker takes",
     lambda t: _set(t["Resources"]["NotifyWorkerFunction"]["Properties"]["Events"]["NotifyQueue"]["Properties"], "BatchSize", 100),
     "BatchSize 100"),
    ("another function consuming the notify queue",
     lambda t: _set(t["Resources"]["CreateFunction"]["Properties"], "Events",
                    copy.deepcopy(t["Resources"]["NotifyWorkerFunction"]["Properties"]["Events"])),
     "CreateFunction: is not the notify-worker but consumes the notify queue"),
    # The jump-pay gateway.
    ("the gateway function missing",
     lambda t: t["Resources"].pop("GatewayRedirectFunction"),
     "(gateway-redirect) has no function"),
    ("the gateway's status route missing",
     lambda t: _paths(t).pop("/pay/gateway/status"),
     "the code serves GET /pay/gateway/status (function gateway-redirect)"),
    ("the gateway's POST (pay by QR) missing",
     lambda t: _paths(t)["/pay/gateway"].pop("post"),
     "the code serves POST /pay/gateway (function gateway-redirect)"),
    ("the gateway's cashier routed to another function",
     lambda t: _set(_paths(t)["/pay/gateway/cashier"], "get", copy.deepcopy(_paths(t)["/api/v1/pay/list"]["get"])),
     "the API routes GET /pay/gateway/cashier to list"),
    ("the gateway's link permission missing",
     lambda t: t["Resources"].pop("GatewayRedirectApiPermission"),
     "POST /pay/gateway: no AWS::Lambda::Permission"),
    ("the gateway's pages permission missing",
     lambda t: t["Resources"].pop("GatewayRedirectPagesApiPermission"),
     "GET /pay/gateway/cashier: no AWS::Lambda::Permission"),
    ("the gateway's pages permission on POST only",
     lambda t: _set(t["Resources"]["GatewayRedirectPagesApiPermission"]["Properties"], "SourceArn",
                    {"Fn::Sub": t["Resources"]["GatewayRedirectPagesApiPermission"]["Properties"]["SourceArn"]["Fn::Sub"].replace("/GET/", "/POST/")}),
     "GET /pay/gateway/status: no AWS::Lambda::Permission"),
    ("the gateway without WECHAT_OPEN_BASE_URL",
     lambda t: _fn_env(t, "GatewayRedirectFunction").pop("WECHAT_OPEN_BASE_URL"),
     "GatewayRedirectFunction: its wiring requires WECHAT_OPEN_BASE_URL"),
    ("the gateway without WECHAT_API_BASE_URL",
     lambda t: _fn_env(t, "GatewayRedirectFunction").pop("WECHAT_API_BASE_URL"),
     "GatewayRedirectFunction: its wiring requires WECHAT_API_BASE_URL"),
    ("the gateway without the secret's ARN (no OAuth secret)",
     lambda t: _fn_env(t, "GatewayRedirectFunction").pop("FERRYPAY_WECHAT_SECRET_ARN"),
     "GatewayRedirectFunction: its wiring requires FERRYPAY_WECHAT_SECRET_ARN"),
    ("the gateway without the permission to read the secret",
     lambda t: _policies(t, "GatewayRedirectFunction").remove({"Ref": "WechatSecretReadPolicy"}),
     "GatewayRedirectFunction: gets FERRYPAY_WECHAT_SECRET_ARN but not WechatSecretReadPolicy"),
    ("the OAuth secret in the environment",
     lambda t: _set(_fn_env(t, "GatewayRedirectFunction"), "WECHAT_OAUTH_SECRET", "hunter2"),
     "sets WECHAT_OAUTH_SECRET"),
    ("an OAuth setting given to a function that never reads it",
     lambda t: _set(_fn_env(t, "CreateFunction"), "WECHAT_OPEN_BASE_URL", {"Ref": "WechatOpenBaseUrl"}),
     "CreateFunction: sets WECHAT_OPEN_BASE_URL, which only the gateway's wiring reads"),
]


def self_test() -> int:
    """The template passes, and every broken copy of it is caught with the expected problem."""
    template = load_template()
    _, found = run_checks(copy.deepcopy(template))
    failures = [f"the template itself: {p}" for p in found]
    for what, breaks, expected in BROKEN_TEMPLATES:
        broken = copy.deepcopy(template)
        breaks(broken)
        _, found = run_checks(broken)
        if not any(expected in p for p in found):
            failures.append(f"{what}: expected a problem containing {expected!r}, got {found or 'none'}")
    problems.clear()
    for failure in failures:
        print(f"check_infra self-test: {failure}", file=sys.stderr)
    if failures:
        print(f"check_infra self-test: {len(failures)} of {len(BROKEN_TEMPLATES) + 1} cases failed", file=sys.stderr)
        return 1
    print(f"check_infra self-test: the template passes and all {len(BROKEN_TEMPLATES)} broken copies are caught")
    return 0


def pending_note() -> str:
    """What the template has ahead of the code (check_infra_base's PENDING_*), if anything."""
    parts = [f"the {name} function" for name in sorted(PENDING_FUNCTIONS)] + sorted(PENDING_VARIABLES)
    if PENDING_KEY_PREFIXES:
        parts.append(f"keys {', '.join(sorted(PENDING_KEY_PREFIXES))}")
    return f" (pending on another branch: {'; '.join(parts)})" if parts else ""


def main() -> int:
    global TEMPLATE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformed-out", type=Path, help="write the SAM-expanded CloudFormation template here")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the template to check (default infra/template.yaml)")
    parser.add_argument("--self-test", action="store_true",
                        help="check the checker: every broken copy of the template must be caught")
    args = parser.parse_args()
    TEMPLATE = args.template.resolve()
    if args.self_test:
        return self_test()

    template = load_template()
    by_binary, found = run_checks(template)
    if args.transformed_out:
        transform(template, args.transformed_out)

    if found:
        for p in found:
            print(f"check_infra: {p}", file=sys.stderr)
        print(f"check_infra: {len(found)} problem(s) in {display(TEMPLATE)}", file=sys.stderr)
        return 1
    print(f"check_infra: {display(TEMPLATE)} matches the code: table schema, IAM actions, "
          f"{len(by_binary)} functions, {len(code_routes() | pending_routes())} routes, queue timeouts and redrive, "
          "the notify-worker's event, LeadingKeys and key grants, route throttles, the edge's headers"
          + pending_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
