"""What scripts/check_infra.py and its part scripts/check_infra_access.py share: where things
are, the list of problems found, and small readers of Rust and of the template."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DYNAMO_DIR = ROOT / "shared" / "src" / "store" / "dynamodb"
NOTIFY_RS = ROOT / "shared" / "src" / "api" / "notify.rs"

# Set by the template ahead of the code on this branch (another branch brings the code): a
# function whose crate does not exist yet, with the routes it will serve, and variables no
# config declares yet. Each is a problem once the code has it: then delete the entry.
PENDING_FUNCTIONS: dict[str, set[tuple[str, str]]] = {}
PENDING_VARIABLES: set[str] = set()
# Partition-key kinds the template's LeadingKeys name before the store code builds them (the
# order counts move from MERCHANT#{id}/COUNTS to COUNTS#{id}; the keyring and HEALTH items are
# new). Until the code has them, the grants naming them match nothing.
PENDING_KEY_PREFIXES: set[str] = set()

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


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == kind}
