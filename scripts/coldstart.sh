#!/usr/bin/env bash
# Cold start of every Lambda function on this machine: builds the release binaries for the host
# (x86_64 here; Lambda runs the arm64 build of the same code) and runs scripts/coldstart.py, which
# starts each binary against a stub of the Lambda Runtime API on 127.0.0.1 and prints, per
# function, the median time from process start to the first answered invocation and the peak RSS.
#
#   scripts/coldstart.sh                  # 5 runs each, against moto started from .venv with the
#                                         # template's table, the notify queue and the WeChat secret
#   scripts/coldstart.sh --runs 9 --functions create,list
#   scripts/coldstart.sh --aws-endpoint http://127.0.0.1:PORT --env FERRYPAY_TABLE=... # another emulator
#
# Environment: CARGO (default cargo), CARGO_TARGET_DIR (honoured). Uses .venv's Python when it is
# there (moto, boto3 and `cryptography`, to sign a fresh WeChat Pay notification): run
# scripts/test.sh or scripts/lint-infra.sh once to create it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO="${CARGO:-cargo}"
PACKAGES=()
for manifest in functions/*/Cargo.toml; do
  [ -f "$(dirname "$manifest")/src/main.rs" ] || continue # a library
  PACKAGES+=(-p "$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$manifest" | head -n 1)")
done
echo "== cargo build --release ${PACKAGES[*]}"
"$CARGO" build --release --locked "${PACKAGES[@]}"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec "$PY" scripts/coldstart.py --bin-dir "$TARGET_DIR/release" "$@"
