#!/usr/bin/env bash
# Times one WeChat Pay notification (verify + decrypt + parse) and one request signature in
# ferrypay (criterion, release) and in the wechatpayv3 Python SDK, in the same run, and prints
# the ratios. Installs the SDK into the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q "wechatpayv3==2.0.4"
py=$(.venv/bin/python scripts/bench_wechatpayv3.py)
rust=$(cargo bench -q -p ferrypay --bench wechat -- --output-format bencher 2>/dev/null | grep '^test ')
echo "$rust"
echo "$py"
python3 - "$rust" "$py" <<'PY'
import re, sys
rust, py = sys.argv[1], sys.argv[2]
ns = dict((m.group(1).strip(), int(m.group(2).replace(",", ""))) for m in re.finditer(r"test (.+?) \.\.\. bench:\s+([\d,]+) ns/iter", rust))
us = dict(line.rsplit(" ", 1) for line in py.splitlines())
pairs = [("notification: verify + decrypt + parse", "wechatpayv3 notification"),
         ("request signing: Authorization header", "wechatpayv3 signing")]
for rust_name, py_name in pairs:
    r = ns[rust_name] / 1000
    p = float(us[py_name])
    print(f"{rust_name}: ferrypay {r:.1f} us, wechatpayv3 {p:.1f} us, ratio {p / r:.1f}x")
PY
