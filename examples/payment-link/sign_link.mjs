#!/usr/bin/env node
// Make a signed ferrypay payment link in Node.js (no dependencies).
//
//   node sign_link.mjs --base https://pay.example.com --secret lsk_... \
//       key=pk_... amount=100 description=咖啡 return_url=https://shop.example/done
//
// HMAC-SHA256 keyed with your link secret (lsk_...) over the parameters as `name=value` lines,
// sorted by name, joined with "\n", values exactly as given. Signed parameters: key, amount,
// description, attach, return_url, expires. The link secret never goes into a link.
import { createHmac } from "node:crypto";

const SIGNED = ["key", "amount", "description", "attach", "return_url", "expires"];

export function sign(secret, params) {
  for (const [name, value] of Object.entries(params)) {
    if (!SIGNED.includes(name)) throw new Error(`${name} is not a link parameter`);
    if (/[\u0000-\u001f\u007f]/.test(value)) throw new Error(`${name} contains a control character`);
  }
  const lines = Object.keys(params)
    .sort()
    .map((name) => `${name}=${params[name]}`)
    .join("\n");
  return createHmac("sha256", secret).update(lines, "utf8").digest("hex");
}

export function signedLink(base, secret, params) {
  const query = Object.entries(params)
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join("&");
  return `${base.replace(/\/+$/, "")}/pay/gateway?${query}&sign=${sign(secret, params)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const option = (name) => {
    const i = args.indexOf(name);
    if (i < 0 || i + 1 >= args.length) throw new Error(`${name} is required`);
    return args.splice(i, 2)[1];
  };
  const base = option("--base");
  const secret = option("--secret");
  const params = Object.fromEntries(
    args.map((p) => {
      const at = p.indexOf("=");
      return [p.slice(0, at), p.slice(at + 1)];
    }),
  );
  console.log(signedLink(base, secret, params));
}
