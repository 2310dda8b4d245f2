#!/usr/bin/env node
// Receive ferrypay webhooks in Node.js, with the official `standardwebhooks` library.
//
//   npm ci
//   FERRYPAY_WEBHOOK_SECRET=whsec_... node verify.mjs serve --port 8000
//   node verify.mjs check --secret whsec_... --id ID --timestamp TS --signature 'v1,...' --body-file body.json
//
// Verify the signature over the RAW request body (a Buffer), before parsing it: JSON.stringify
// of the parsed object is not the same bytes. No express.json() in front of this route.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const MAX_BODY = 64 * 1024;

// Demo only: remember processed `webhook-id`s in your database (a unique key), not in memory.
// The same id arrives again whenever a delivery is retried.
const processedIds = new Set();

/** The parsed event if the signature and timestamp (+-5 min) are good; throws otherwise. */
function verify(secret, headers, rawBody) {
  try {
    return new Webhook(secret).verify(rawBody, headers);
  } catch (e) {
    if (e instanceof WebhookVerificationError) throw e;
    // A malformed signature header, or a body that is not JSON.
    throw new WebhookVerificationError(`malformed webhook: ${e.message}`);
  }
}

/** One delivery: [HTTP status, response text]. Any 2xx tells ferrypay it was delivered. */
function handle(secret, headers, rawBody) {
  let event;
  try {
    event = verify(secret, headers, rawBody);
  } catch (e) {
    return [400, `invalid webhook: ${e.message}`];
  }
  const webhookId = headers["webhook-id"]; // node lower-cases header names
  if (processedIds.has(webhookId)) return [200, "already processed"];
  // The truth is `order_no` + `status` (and the amount you expected): mark YOUR order paid
  // idempotently, e.g. `UPDATE orders SET paid = true WHERE order_no = ? AND NOT paid`.
  // From a payment link, `source` says whether it was signed: an unsigned link's
  // (`"link"`) amount is the payer's to change, so compare `amount` with your price.
  // Keep this quick (queue slow work): ferrypay waits 10 s, then retries.
  if (event.status === "paid") console.error(`order ${event.order_no} paid: ${event.amount} fen`);
  processedIds.add(webhookId);
  return [200, "ok"];
}

function serve(secret, host, port) {
  createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end("too large");
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on("end", () => {
      const [status, text] = handle(secret, req.headers, Buffer.concat(chunks));
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(text);
    });
  }).listen(port, host);
}

function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8000" },
      secret: { type: "string" },
      id: { type: "string" },
      timestamp: { type: "string" },
      signature: { type: "string" },
      "body-file": { type: "string" },
    },
  });
  if (positionals[0] === "serve") {
    const secret = process.env.FERRYPAY_WEBHOOK_SECRET;
    if (!secret) throw new Error("set FERRYPAY_WEBHOOK_SECRET");
    serve(secret, values.host, Number(values.port));
    return;
  }
  const missing = ["secret", "id", "timestamp", "signature", "body-file"].filter((k) => !values[k]);
  if (positionals[0] !== "check" || missing.length > 0) {
    console.error("usage: verify.mjs serve [--port N] | check --secret --id --timestamp --signature --body-file");
    process.exitCode = 2;
    return;
  }
  const headers = {
    "webhook-id": values.id,
    "webhook-timestamp": values.timestamp,
    "webhook-signature": values.signature,
  };
  try {
    const event = verify(values.secret, headers, readFileSync(values["body-file"]));
    console.log(`valid: ${event.event} ${event.order_no} ${event.status}`);
  } catch (e) {
    if (!(e instanceof WebhookVerificationError)) throw e;
    console.error(`invalid webhook: ${e.message}`);
    process.exitCode = 1;
  }
}

main(process.argv.slice(2));
