"""Part of scripts/check_infra.py (items 7 to 9 of its list): least privilege on the table and
the secrets key, the HTTP API's throttles, and the optional CloudFront edge."""

from __future__ import annotations

import json
import re
import sys
from fnmatch import fnmatchcase

from cfnlint.decode import decode

from check_infra_base import (DYNAMO_DIR, NOTIFY_RS, PENDING_KEY_PREFIXES, ROOT, display, problem, resources_of,
                              rust_consts)

# ------------------------------------------------------------------------------ 7. least privilege

# Actions no function may have on the table: whole-table reads, deletes, batches (a batch's
# items are not what LeadingKeys sees per item) and PartiQL.
FORBIDDEN_TABLE_ACTIONS = {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                           "dynamodb:BatchGetItem", "dynamodb:PartiQLSelect", "dynamodb:PartiQLInsert",
                           "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:*"}
WRITE_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem"}
# Partition keys of the items only the operator's CLI writes (examples of each kind).
OPERATOR_ITEMS = ["MERCHANT#mch_1", "KEY#0123abcd", "KEYRING#webhook", "KEYRING#link"]
# Who may read each keyring item, and decrypt for that purpose.
KEYRINGS = {"KEYRING#webhook": "NotifyWorkerFunction", "KEYRING#link": "GatewayRedirectFunction"}
DECRYPT_PURPOSES = {"NotifyWorkerFunction": "webhook", "GatewayRedirectFunction": "link"}
SECRETS_KEY = {"Fn::GetAtt": ["SecretsKey", "Arn"]}
PURPOSE_KEY = "kms:EncryptionContext:ferrypay:purpose"


def statements_of(template: dict, entry) -> list[dict]:
    """The Allow statements of a Policies entry (an inline document or a Ref to a managed
    policy of this template; an `!If` counts with both branches)."""
    if isinstance(entry, dict) and set(entry) == {"Fn::If"}:
        return [st for branch in entry["Fn::If"][1:] for st in statements_of(template, branch)]
    if isinstance(entry, dict) and set(entry) == {"Ref"}:
        res = template["Resources"].get(entry["Ref"])
        if not res or res.get("Type") != "AWS::IAM::ManagedPolicy":
            return []
        entry = res["Properties"]["PolicyDocument"]
    if not isinstance(entry, dict) or "Statement" not in entry:
        return []
    found = []

    def walk(node):
        if isinstance(node, dict) and set(node) == {"Fn::If"}:
            for branch in node["Fn::If"][1:]:
                walk(branch)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict) and node.get("Effect") == "Allow":
            found.append(node)

    walk(entry["Statement"])
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def leading_keys(statement: dict) -> list[str] | None:
    """The statement's `ForAllValues:StringLike` `dynamodb:LeadingKeys` patterns, if it has them
    and also requires the key to be present (`Null: false`)."""
    condition = statement.get("Condition") or {}
    patterns = (condition.get("ForAllValues:StringLike") or {}).get("dynamodb:LeadingKeys")
    present = str((condition.get("Null") or {}).get("dynamodb:LeadingKeys", "")).lower() == "false"
    if not patterns or not present:
        return None
    return as_list(patterns)


def touches_table(statement: dict) -> bool:
    resources = as_list(statement.get("Resource", []))
    return any(r == {"Fn::GetAtt": ["Table", "Arn"]} or (isinstance(r, dict) and "Table.Arn" in str(r.get("Fn::Sub", "")))
               or r == "*" for r in resources)


def on_indexes_only(statement: dict) -> bool:
    return all(isinstance(r, dict) and str(r.get("Fn::Sub", "")).startswith("${Table.Arn}/index/")
               for r in as_list(statement.get("Resource", [])))


def code_key_prefixes() -> set[str]:
    """The partition-key kinds the DynamoDB store builds: the `X#` that start its string
    literals, and its bare upper-case literals (such as `HEALTH`), outside tests."""
    source = "\n".join(p.read_text().split("#[cfg(test)]", 1)[0] for p in sorted(DYNAMO_DIR.glob("*.rs")))
    return set(re.findall(r'"([A-Z][A-Z_]*#)', source)) | set(re.findall(r'"([A-Z][A-Z_]*)"', source))


def key_kind(pattern: str) -> str:
    """`ORDER#*` -> `ORDER#`; `KEYRING#link` -> `KEYRING#`; `HEALTH` -> `HEALTH`."""
    return pattern.split("#", 1)[0] + "#" if "#" in pattern else pattern


def check_least_privilege(template: dict, functions: dict[str, dict]) -> None:
    known = code_key_prefixes()
    for kind in sorted(PENDING_KEY_PREFIXES & known):
        problem(f"the store code builds {kind} keys now: remove it from PENDING_KEY_PREFIXES in scripts/check_infra_base.py")

    for logical_id, fn in functions.items():
        for entry in fn["Properties"].get("Policies", []):
            for st in statements_of(template, entry):
                actions = set(as_list(st.get("Action", [])))
                table_actions = {a for a in actions if a.startswith("dynamodb:")}
                if table_actions & FORBIDDEN_TABLE_ACTIONS:
                    problem(f"{logical_id}: may {sorted(table_actions & FORBIDDEN_TABLE_ACTIONS)} on the table; no function may")
                item_actions = table_actions - {"dynamodb:DescribeTable"}
                if item_actions and touches_table(st):
                    patterns = leading_keys(st)
                    if patterns is None:
                        problem(f"{logical_id}: {sorted(item_actions)} without a dynamodb:LeadingKeys condition "
                                "(ForAllValues:StringLike, and Null: false)")
                        continue
                    for pattern in patterns:
                        kind = key_kind(pattern)
                        if kind not in known and kind not in PENDING_KEY_PREFIXES:
                            problem(f"{logical_id}: dynamodb:LeadingKeys {pattern!r} names {kind} keys, which the store "
                                    f"code ({display(DYNAMO_DIR)}) never builds")
                    if item_actions & WRITE_ACTIONS:
                        for key in OPERATOR_ITEMS:
                            if any(fnmatchcase(key, pattern) for pattern in patterns):
                                problem(f"{logical_id}: may write {key.split('#')[0]}# items ({sorted(item_actions & WRITE_ACTIONS)} "
                                        f"on {patterns}); only the operator's CLI does")
                    if "dynamodb:Query" in item_actions and not on_indexes_only(st):
                        for key in OPERATOR_ITEMS:
                            if any(fnmatchcase(key, pattern) for pattern in patterns):
                                problem(f"{logical_id}: may query the table's {key.split('#')[0]}# partitions ({patterns})")
                    if "dynamodb:GetItem" in item_actions:
                        for keyring, reader in KEYRINGS.items():
                            if logical_id != reader and any(fnmatchcase(keyring, pattern) for pattern in patterns):
                                problem(f"{logical_id}: may read {keyring}; only {reader} may")
                kms_actions = {a for a in actions if a.startswith("kms:")}
                if kms_actions and SECRETS_KEY in as_list(st.get("Resource", [])):
                    purpose = ((st.get("Condition") or {}).get("StringEquals") or {}).get(PURPOSE_KEY)
                    if kms_actions != {"kms:Decrypt"}:
                        problem(f"{logical_id}: may {sorted(kms_actions - {'kms:Decrypt'})} with the secrets key; "
                                "functions only decrypt (the operator's CLI wraps)")
                    if logical_id not in DECRYPT_PURPOSES:
                        problem(f"{logical_id}: may decrypt with the secrets key; only "
                                f"{' and '.join(sorted(DECRYPT_PURPOSES))} may")
                    elif purpose != DECRYPT_PURPOSES[logical_id]:
                        problem(f"{logical_id}: decrypts with the secrets key for purpose {purpose!r}; it must be bound "
                                f"to {DECRYPT_PURPOSES[logical_id]!r} ({PURPOSE_KEY})")


# ------------------------------------------------------------------------------ 8. throttles


def check_throttles(template: dict, public_routes: set[tuple[str, str]]) -> None:
    """Every public route (`public_routes`: method, path) has its own route settings below the
    stage default; the notification route has its own; no settings name a missing route."""
    apis = resources_of(template, "AWS::Serverless::HttpApi")
    if len(apis) != 1:
        return  # reported by check_routes
    props = next(iter(apis.values()))["Properties"]
    default = props.get("DefaultRouteSettings") or {}
    settings = props.get("RouteSettings") or {}

    def figures(route_settings: dict) -> tuple[int, int] | None:
        try:
            return int(route_settings["ThrottlingRateLimit"]), int(route_settings["ThrottlingBurstLimit"])
        except (KeyError, TypeError, ValueError):
            return None

    stage = figures(default)
    if stage is None:
        problem("HttpApi: DefaultRouteSettings needs ThrottlingRateLimit and ThrottlingBurstLimit (the merchant API's ceiling)")
        return
    notify = rust_consts(NOTIFY_RS.read_text()).get("WECHAT_NOTIFY_PATH")
    if figures(settings.get(f"POST {notify}") or {}) is None:
        problem(f"HttpApi: POST {notify} (WeChat Pay's notifications) needs RouteSettings of its own")
    for method, path in sorted(public_routes):
        own = figures(settings.get(f"{method} {path}") or {})
        if own is None:
            problem(f"HttpApi: the public route {method} {path} needs RouteSettings of its own (rate and burst)")
        elif own[0] >= stage[0] or own[1] >= stage[1]:
            problem(f"HttpApi: the public route {method} {path} is throttled at {own[0]}/s (burst {own[1]}), not below "
                    f"the merchant API's {stage[0]}/s (burst {stage[1]})")
    routes = {f"{method.upper()} {path}" for path, ops in (props.get("DefinitionBody") or {}).get("paths", {}).items()
              for method in ops}
    for key in sorted(set(settings) - routes):
        problem(f"HttpApi: RouteSettings names {key}, which is no route of the API (the deployment would fail)")


# ------------------------------------------------------------------------------ 9. the edge

EDGE_RS = ROOT / "lambda" / "src" / "edge.rs"


EDGE_WEB_ACL_TEMPLATE = ROOT / "infra" / "edge-web-acl.yaml"


def check_edge_web_acl_template(template: dict) -> None:
    """infra/edge-web-acl.yaml (the web ACL for stacks outside us-east-1) has the rules the main
    template creates in us-east-1."""
    own = template["Resources"].get("EdgeWebAcl", {}).get("Properties", {})
    other, matches = decode(str(EDGE_WEB_ACL_TEMPLATE))
    if matches or other is None:
        sys.exit(f"{EDGE_WEB_ACL_TEMPLATE}: cannot be parsed: {matches}")
    other = json.loads(json.dumps(other, default=str))["Resources"].get("EdgeWebAcl", {}).get("Properties", {})
    for field in ("Scope", "DefaultAction", "Rules"):
        if own.get(field) != other.get(field):
            problem(f"{display(EDGE_WEB_ACL_TEMPLATE)}: its EdgeWebAcl's {field} differs from template.yaml's")


def check_edge(template: dict) -> None:
    """The CloudFront distribution sends the headers the Lambda glue reads (lambda/src/edge.rs):
    the origin-verification header, from the generated secret, and the viewer's address."""
    distributions = resources_of(template, "AWS::CloudFront::Distribution")
    if not distributions:
        return
    consts = rust_consts(EDGE_RS.read_text())
    verify, viewer = consts.get("ORIGIN_VERIFY_HEADER"), consts.get("VIEWER_ADDRESS_HEADER")
    if not verify or not viewer:
        sys.exit(f"{EDGE_RS}: ORIGIN_VERIFY_HEADER or VIEWER_ADDRESS_HEADER not found")
    for logical_id, dist in distributions.items():
        config = dist["Properties"]["DistributionConfig"]
        for origin in config.get("Origins", []):
            headers = {h.get("HeaderName", "").lower(): h.get("HeaderValue") for h in origin.get("OriginCustomHeaders", [])}
            value = headers.get(verify)
            value = value.get("Fn::Sub", "") if isinstance(value, dict) else str(value or "")
            if "{{resolve:secretsmanager:${OriginVerifySecret}" not in value:
                problem(f"{logical_id}: origin {origin.get('Id')} must send {verify} with the generated secret "
                        "({{resolve:secretsmanager:${OriginVerifySecret}:SecretString}})")
        policy_id = config.get("DefaultCacheBehavior", {}).get("OriginRequestPolicyId", {})
        policy = template["Resources"].get(policy_id.get("Ref", "") if isinstance(policy_id, dict) else "", {})
        headers = (policy.get("Properties", {}).get("OriginRequestPolicyConfig", {}).get("HeadersConfig", {}))
        if viewer not in [h.lower() for h in headers.get("Headers", [])] \
                or headers.get("HeaderBehavior") not in ("whitelist", "allViewerAndWhitelistCloudFront"):
            problem(f"{logical_id}: its origin request policy must add {viewer} (the viewer's address)")
