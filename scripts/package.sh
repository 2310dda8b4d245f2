#!/usr/bin/env bash
# `make package`: one Lambda deployment zip per function crate (arm64, provided.al2023).
#
# Installs cargo-lambda from PyPI into the project-local virtualenv `.venv` (pinned; it brings
# zig, which cargo-lambda uses as the cross linker, as the `ziglang` Python package: so .venv/bin
# goes first on PATH), adds the aarch64-unknown-linux-gnu Rust target if it is missing, then runs
#
#   cargo lambda build --release --arm64 --output-format zip --locked -p <fn> ...
#
# once for every crate under functions/*/ (one cargo invocation, so the shared crates compile
# once), and prints each zip's path and size and the wall-clock build time.
#
# The zips land in <target dir>/lambda/<fn>/bootstrap.zip: target/ at the workspace root, or
# $CARGO_TARGET_DIR when that is set. `sam build` (infra/) builds the same binaries itself through
# `BuildMethod: rust-cargolambda`; these zips are for `aws lambda update-function-code`, for size
# checks and for anyone deploying without SAM.
#
# Environment: PYTHON (default python3), CARGO_TARGET_DIR (honoured). Extra arguments go to
# `cargo lambda build` (e.g. `scripts/package.sh --verbose`).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION="1.9.2"
PYTHON="${PYTHON:-python3}"
VENV=".venv"
TARGET="aarch64-unknown-linux-gnu"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
installed_cargo_lambda() {
  "$VENV/bin/python" -m pip show cargo-lambda 2>/dev/null | sed -n 's/^Version: //p'
}
if [ "$(installed_cargo_lambda)" != "$CARGO_LAMBDA_VERSION" ] || [ ! -x "$VENV/bin/cargo-lambda" ]; then
  echo "== installing cargo-lambda==$CARGO_LAMBDA_VERSION (with zig) into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
# cargo-lambda finds zig through `python3 -m ziglang` or a `zig` on PATH: both must be the venv's.
PATH="$PWD/$VENV/bin:$PATH"
export PATH

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "== rustup target add $TARGET"
  rustup target add "$TARGET"
fi

# Every function crate: a crate under functions/ with a src/main.rs; its binary has the package's name.
FUNCTIONS=()
for manifest in functions/*/Cargo.toml; do
  [ -f "$(dirname "$manifest")/src/main.rs" ] || continue # a library
  name="$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$manifest" | head -n 1)"
  [ -n "$name" ] || { echo "no package name in $manifest" >&2; exit 1; }
  FUNCTIONS+=("$name")
done
[ "${#FUNCTIONS[@]}" -gt 0 ] || { echo "no function crates under functions/" >&2; exit 1; }

PACKAGES=()
for name in "${FUNCTIONS[@]}"; do
  PACKAGES+=(-p "$name")
done

echo "== cargo lambda $(cargo-lambda lambda --version 2>/dev/null | awk '{print $2}'), zig $("$VENV/bin/python" -m ziglang version)"
echo "== cargo lambda build --release --arm64 --output-format zip: ${FUNCTIONS[*]}"
start=$(date +%s)
cargo lambda build --release --arm64 --output-format zip --locked "${PACKAGES[@]}" "$@"
elapsed=$(( $(date +%s) - start ))

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps --locked | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
echo
printf '%-18s %10s  %s\n' "function" "zip bytes" "path"
for name in "${FUNCTIONS[@]}"; do
  zip="$TARGET_DIR/lambda/$name/bootstrap.zip"
  [ -f "$zip" ] || { echo "missing $zip" >&2; exit 1; }
  size=$(stat -c %s "$zip")
  printf '%-18s %10s  %s  (%s KiB)\n' "$name" "$size" "$zip" "$(( (size + 1023) / 1024 ))"
done
echo
echo "build wall-clock time: ${elapsed} s"
