#!/usr/bin/env bash
# Lints the SAM template, offline (no AWS account, no network but PyPI for the first install):
#
#   1. cfn-lint infra/template.yaml (and infra/edge-web-acl.yaml, the web ACL for stacks outside
#      us-east-1)
#   2. sam validate --lint (SAM's own translation of the template, then cfn-lint)
#   3. scripts/check_infra.py: the template against the code (the table mirrors
#      DynamoStore::create_table, every DynamoDB/SQS call the code makes is granted, one function
#      per crate, every route the code serves is routed and invocable, queue visibility >= 6x the
#      worker timeout, LeadingKeys on every item grant and no function writing merchant, key or
#      keyring items, the secrets key decryptable by the notify-worker and the gateway only, the
#      public routes' own throttles, the CloudFront headers the Lambda glue reads), and the SAM
#      transform expanded locally to plain CloudFormation; then its
#      self-test (`--self-test`: broken copies of the template, each of which must be caught)
#   4. cfn-lint on that expanded template (what CloudFormation will see: e.g. circular
#      dependencies between the API and the functions, which step 1 cannot look for)
#
# With SAM_BUILD=1 it also runs `sam build` (cargo lambda, arm64, every function; needs the
# aarch64-unknown-linux-gnu target and takes minutes; CARGO_TARGET_DIR is honoured) into a
# temporary build directory and checks that each function's artifact is an aarch64 `bootstrap`.
#
# Installs aws-sam-cli and cfn-lint (pinned) into the project-local virtualenv `.venv` when they
# are missing or of another version. Environment: PYTHON (default python3), SAM_BUILD.
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_CLI_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
PYTHON="${PYTHON:-python3}"
VENV=".venv"

export AWS_DEFAULT_REGION=us-east-1 # sam validate needs a region; nothing is called
export SAM_CLI_TELEMETRY=0

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
version_of() {
  "$VENV/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'
}
if [ "$(version_of aws-sam-cli)" != "$SAM_CLI_VERSION" ] || [ "$(version_of cfn-lint)" != "$CFN_LINT_VERSION" ]; then
  echo "== installing aws-sam-cli==$SAM_CLI_VERSION cfn-lint==$CFN_LINT_VERSION into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi
PATH="$PWD/$VENV/bin:$PATH"
export PATH

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferrypay-infra.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== cfn-lint $(cfn-lint --version | awk '{print $2}') infra/template.yaml infra/edge-web-acl.yaml"
cfn-lint infra/template.yaml infra/edge-web-acl.yaml

echo "== sam validate --lint ($(sam --version | awk '{print $NF}'))"
sam validate --lint --template infra/template.yaml

echo "== scripts/check_infra.py"
python scripts/check_infra.py --transformed-out "$WORK/transformed.json"
python scripts/check_infra.py --self-test

echo "== cfn-lint on the SAM-expanded template"
(cd "$WORK" && cfn-lint -- transformed.json)

if [ "${SAM_BUILD:-0}" = "1" ]; then
  CARGO_LAMBDA_VERSION="1.9.2"
  if [ "$(version_of cargo-lambda)" != "$CARGO_LAMBDA_VERSION" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
  fi
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
  echo "== sam build (cargo lambda, arm64)"
  start=$(date +%s)
  # From a scratch directory, so SAM's .aws-sam/ (dependency cache) does not land in the repo.
  (cd "$WORK" && sam build --template "$OLDPWD/infra/template.yaml" --config-file "$OLDPWD/infra/samconfig.toml" \
    --build-dir "$WORK/build")
  for artifact in "$WORK"/build/*/bootstrap; do
    machine="$(readelf -h "$artifact" | sed -n 's/^ *Machine: *//p')"
    echo "   $(basename "$(dirname "$artifact")"): $(stat -c %s "$artifact") bytes, $machine"
    [ "$machine" = "AArch64" ] || { echo "$artifact is not an arm64 binary" >&2; exit 1; }
  done
  echo "   sam build took $(( $(date +%s) - start )) s"
fi
echo "infra lint: OK"
