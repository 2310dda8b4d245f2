"""check_infra's routes: what the code serves (the merchant API's endpoints, WeChat Pay's
notification route, the gateway's pages, the health check) against what the template's HTTP API
routes, and who may invoke each function."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from check_infra_base import NOTIFY_RS, PENDING_FUNCTIONS, ROOT, display, problem, resources_of, rust_consts

API_RS = ROOT / "shared" / "src" / "api" / "mod.rs"
# The gateway's route constants and the `handle_gateway` that matches them, in one file.
GATEWAY_API_RS = ROOT / "shared" / "src" / "api" / "gateway" / "mod.rs"
# The crate that serves the gateway's routes (its main calls serve_gateway()).
GATEWAY_FUNCTION = "gateway-redirect"
# The health check's path, and the crate that serves it (its main calls serve_health()).
HEALTH_API_RS = ROOT / "shared" / "src" / "api" / "health.rs"
HEALTH_FUNCTION = "health"


def rust_body(source: str, signature: str, path: Path, indent: str = "") -> str:
    """The body of the item whose text starts with `signature` (up to its closing brace at
    `indent`)."""
    parts = source.split(signature, 1)
    if len(parts) != 2:
        sys.exit(f"{path}: no `{signature.strip()}` found")
    return parts[1].split(f"\n{indent}}}\n", 1)[0]


# ------------------------------------------------------------------------------ 4. routes


def code_routes() -> set[tuple[str, str, str]]:
    """{(METHOD, path, function)} the code serves."""
    source = API_RS.read_text()
    paths = dict(re.findall(r'Endpoint::(\w+) => "(/[^"]+)"', source))
    methods_fn = source.split("pub fn methods(self)", 1)[1].split("\n    }\n", 1)[0]
    # The function of each endpoint: `Endpoint::function` (the refund function serves two).
    function_fn = source.split("pub fn function(self)", 1)[1].split("\n    }\n", 1)[0]
    functions = {endpoint: name for arm, name in re.findall(r"((?:Endpoint::\w+\s*\|?\s*)+)=> \"([a-z-]+)\"", function_fn)
                 for endpoint in re.findall(r"Endpoint::(\w+)", arm)}
    routes = set()
    for arm, methods in re.findall(r"((?:Endpoint::\w+\s*\|?\s*)+)=> \{?\s*&\[([^\]]*)\]", methods_fn):
        for endpoint in re.findall(r"Endpoint::(\w+)", arm):
            if endpoint not in functions:
                sys.exit(f"{API_RS}: Endpoint::function names no function for {endpoint}")
            for method in re.findall(r"Method::(\w+)", methods):
                routes.add((method, paths[endpoint], functions[endpoint]))
    notify = rust_consts(NOTIFY_RS.read_text()).get("WECHAT_NOTIFY_PATH")
    if not notify:
        sys.exit(f"{NOTIFY_RS}: WECHAT_NOTIFY_PATH not found")
    routes.add(("POST", notify, "inbound-callback"))
    if len(routes) < 5:
        sys.exit(f"{API_RS}: could not read the routes (found {routes})")
    return routes | gateway_routes() | health_routes()


def gateway_routes() -> set[tuple[str, str, str]]:
    """{(METHOD, path, "gateway-redirect")}: the paths are the constants of api/gateway/mod.rs,
    the methods those `handle_gateway` (the same file) answers each with."""
    source = GATEWAY_API_RS.read_text()
    consts = rust_consts(source)
    body = rust_body(source, "pub async fn handle_gateway<", GATEWAY_API_RS)
    routes = set()
    for method, const in re.findall(r"\(&Method::(\w+),\s*([A-Z_]+)\)\s*=>", body):
        if const not in consts:
            sys.exit(f"{GATEWAY_API_RS}: handle_gateway matches {const}, which is not a string constant of {display(GATEWAY_API_RS)}")
        routes.add((method, consts[const], GATEWAY_FUNCTION))
    if len({path for _, path, _ in routes}) < 3:
        sys.exit(f"{GATEWAY_API_RS}: could not read the gateway's routes (found {routes})")
    return routes


def health_routes() -> set[tuple[str, str, str]]:
    """{("GET", HEALTH_PATH, "health")}: the health check answers GET only."""
    path = rust_consts(HEALTH_API_RS.read_text()).get("HEALTH_PATH")
    if not path:
        sys.exit(f"{HEALTH_API_RS}: HEALTH_PATH not found")
    return {("GET", path, HEALTH_FUNCTION)}


def public_routes() -> set[tuple[str, str]]:
    """The routes anyone may call without a key (the gateway's and the health check), each of
    which needs a throttle of its own below the merchant API's."""
    return {(method, path) for method, path, _ in gateway_routes() | health_routes() | pending_routes()}


def pending_routes() -> set[tuple[str, str, str]]:
    """The routes of PENDING_FUNCTIONS whose crate is not there yet."""
    return {(method, path, binary) for binary, routes in PENDING_FUNCTIONS.items()
            if not (ROOT / "functions" / binary).exists() for method, path in routes}


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
    served = code_routes() | pending_routes()
    for route in sorted(served - template_routes):
        problem(f"the code serves {route[0]} {route[1]} (function {route[2]}), the API does not route it there")
    for route in sorted(template_routes - served):
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
