#!/usr/bin/env bash
# `make test`: every test in the workspace, with the DynamoDB/SQS contract suites run against
# moto's server.
#
# Installs the webhook verifier examples' libraries (examples/webhook-verify: requirements.txt
# into the project-local virtualenv `.venv`, `npm ci` for package-lock.json; both skipped when
# already installed) and exports FERRYPAY_TEST_PYTHON and FERRYPAY_TEST_NODE for
# tests/it/webhook_verifiers.rs. For the jump-pay browser test (tests/it/browser.rs) runs
# `npm ci` in tests/browser (playwright-core, pinned; skipped when already installed) and makes
# sure Chromium is there: when $CHROMIUM is missing and apt-get exists, installs Debian's
# `chromium` (and `fonts-wqy-microhei` when no Chinese font is installed, so the screenshots
# are readable) as root, or through `sudo -n`; still missing, it stops with a message. Exports
# FERRYPAY_TEST_CHROMIUM. Installs moto's server into `.venv` (pinned; reused when that version
# is already there), starts it on a free 127.0.0.1 port, waits until it answers, exports
# FERRYPAY_TEST_AWS_ENDPOINT for the contract tests, runs
# `cargo test --workspace --all-targets --locked`, and always stops moto again.
#
# Environment: CARGO (default cargo), PYTHON (default python3), NODE (default node), NPM (default
# npm), CHROMIUM (default /usr/bin/chromium), CARGO_TARGET_DIR (honoured by cargo; the browser
# test's screenshots go to its browser-screenshots/). A FERRYPAY_TEST_AWS_ENDPOINT already set is
# used as it is (no moto is started).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p ferrypay-tests`).
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"
NPM="${NPM:-npm}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
VENV=".venv"
EXAMPLES="examples/webhook-verify"

run_tests() {
  echo "== cargo test (FERRYPAY_TEST_AWS_ENDPOINT=$FERRYPAY_TEST_AWS_ENDPOINT)"
  "$CARGO" test --workspace --all-targets --locked "$@"
}

# The SAM template first: cfn-lint and sam validate --lint, offline.
bash scripts/lint-infra.sh

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# The webhook verifier examples, run by tests/it/webhook_verifiers.rs. A copy of each lock
# file marks what is installed; a changed lock (or a missing library) installs again.
PY_STAMP="$VENV/.webhook-verify-requirements.txt"
if ! cmp -s "$EXAMPLES/requirements.txt" "$PY_STAMP" \
  || ! "$VENV/bin/python" -c 'import standardwebhooks' 2>/dev/null; then
  echo "== installing $EXAMPLES/requirements.txt into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$EXAMPLES/requirements.txt"
  cp "$EXAMPLES/requirements.txt" "$PY_STAMP"
fi
command -v "$NODE" >/dev/null || { echo "node ($NODE) is needed for the webhook verifier tests" >&2; exit 1; }
NODE_STAMP="$EXAMPLES/node_modules/.ferrypay-package-lock.json"
if ! cmp -s "$EXAMPLES/package-lock.json" "$NODE_STAMP"; then
  echo "== npm ci in $EXAMPLES"
  "$NPM" ci --prefix "$EXAMPLES" --no-audit --no-fund --loglevel=error
  cp "$EXAMPLES/package-lock.json" "$NODE_STAMP"
fi

# The jump-pay browser test: playwright-core (stamped like the examples), and Debian's Chromium.
BROWSER_DIR="tests/browser"
BROWSER_STAMP="$BROWSER_DIR/node_modules/.ferrypay-package-lock.json"
if ! cmp -s "$BROWSER_DIR/package-lock.json" "$BROWSER_STAMP"; then
  echo "== npm ci in $BROWSER_DIR"
  "$NPM" ci --prefix "$BROWSER_DIR" --no-audit --no-fund --loglevel=error
  cp "$BROWSER_DIR/package-lock.json" "$BROWSER_STAMP"
fi
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    echo "(not root and no sudo: cannot run $*)" >&2
    return 1
  fi
}
chinese_font() {
  command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]
}
APT_PACKAGES=()
[ -x "$CHROMIUM" ] || APT_PACKAGES+=(chromium)
chinese_font || APT_PACKAGES+=(fonts-wqy-microhei)
if [ "${#APT_PACKAGES[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== apt-get install ${APT_PACKAGES[*]} (for the browser test)"
  if ! { as_root apt-get update -qq \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${APT_PACKAGES[@]}" >/dev/null; }; then
    echo "(apt-get could not install ${APT_PACKAGES[*]})" >&2
  fi
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "Chromium ($CHROMIUM) is needed for the browser test (tests/it/browser.rs) and could" >&2
  echo "not be installed: install Debian's chromium package (apt-get install chromium), or set" >&2
  echo "CHROMIUM to a Chromium or Chrome binary." >&2
  exit 1
fi
chinese_font || echo "(no Chinese font: the browser test's screenshots will show boxes for text)" >&2

FERRYPAY_TEST_PYTHON="$PWD/$VENV/bin/python"
FERRYPAY_TEST_NODE="$(command -v "$NODE")"
FERRYPAY_TEST_CHROMIUM="$CHROMIUM"
export FERRYPAY_TEST_PYTHON FERRYPAY_TEST_NODE FERRYPAY_TEST_CHROMIUM

if [ -n "${FERRYPAY_TEST_AWS_ENDPOINT:-}" ]; then
  echo "== using the AWS emulator at $FERRYPAY_TEST_AWS_ENDPOINT (not starting moto)"
  run_tests "$@"
  exit 0
fi

installed_moto() {
  "$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null || true
}

if [ "$(installed_moto)" != "$MOTO_VERSION" ] || [ ! -x "$VENV/bin/moto_server" ]; then
  echo "== installing moto[server]==$MOTO_VERSION into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

MOTO_PID=""
LOG="$(mktemp "${TMPDIR:-/tmp}/ferrypay-moto.XXXXXX")"
stop_moto() {
  local status=$?
  if [ -n "$MOTO_PID" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  if [ "$status" -eq 0 ]; then
    rm -f "$LOG"
  else
    echo "(moto's log: $LOG)" >&2
  fi
}
trap stop_moto EXIT
trap 'exit 130' INT TERM

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

answers() {
  "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$1/moto-api/', timeout=1)" 2>/dev/null
}

# Start moto on a free port; wait (at most ~30 s) until it answers. A port taken between
# choosing and binding it makes moto exit: then try another (three times at most).
ENDPOINT=""
for _ in 1 2 3; do
  PORT="$(free_port)"
  echo "== starting moto $MOTO_VERSION on 127.0.0.1:$PORT"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 150); do
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      break
    fi
    if answers "http://127.0.0.1:$PORT"; then
      ENDPOINT="http://127.0.0.1:$PORT"
      break 2
    fi
    sleep 0.2
  done
  if kill -0 "$MOTO_PID" 2>/dev/null; then
    echo "moto did not answer on 127.0.0.1:$PORT within 30 s" >&2
    cat "$LOG" >&2
    exit 1
  fi
  echo "moto exited on start:" >&2
  cat "$LOG" >&2
done
if [ -z "$ENDPOINT" ]; then
  echo "moto could not be started" >&2
  exit 1
fi

export FERRYPAY_TEST_AWS_ENDPOINT="$ENDPOINT"
run_tests "$@"
