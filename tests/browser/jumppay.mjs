// The jump-pay browser test: a payer's real browser (Debian's headless Chromium, driven by
// playwright-core) through ferrypay's payment links, against the dev stack and its WeChat Pay
// mock. Run by tests/it/browser.rs, which starts the stack and a stand-in merchant site,
// passes everything here in environment variables, and afterwards checks the orders it stored.
//
// Inside WeChat there is no WeChat client here: a stand-in WeixinJSBridge (injected before any
// page script) appears a moment after the page starts, announces itself with the
// `WeixinJSBridgeReady` event as the real one does, and answers `getBrandWCPayRequest` by
// handing the page's pay parameters to the mock's `/mock/jsapi/pay` (from Node: no CORS), which
// checks them as WeChat's client does and pays the order; or, told to, answers `:cancel`.
//
// Every page passed through is saved as a full-page screenshot in $FERRYPAY_BROWSER_SCREENSHOTS
// (<scenario>-<step>.png). Any console error or uncaught exception on a page fails the run.
// Prints `FERRYPAY_BROWSER_RESULT {json}` (the orders each scenario made) as its last line and
// exits 0, or prints what failed and exits 1.

import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/it/browser.rs sets it)`);
  return value;
};

const GATEWAY = env('FERRYPAY_BROWSER_GATEWAY'); // http://127.0.0.1:PORT/pay/gateway
const MOCK = env('FERRYPAY_BROWSER_MOCK'); // the WeChat Pay mock's base URL
const PK = env('FERRYPAY_BROWSER_PK'); // the demo merchant's publishable key (unsigned links)
const SK = env('FERRYPAY_BROWSER_SK'); // its secret key: must never work in a link
const SIGNED_LINK = env('FERRYPAY_BROWSER_SIGNED_LINK'); // signed by Rust's sign_link
const LINK_SECRET = env('FERRYPAY_BROWSER_LINK_SECRET'); // that merchant's link secret
const RETURN_URL = env('FERRYPAY_BROWSER_RETURN_URL'); // the merchant site (allowed host)
const SCREENSHOTS = env('FERRYPAY_BROWSER_SCREENSHOTS');
const CHROMIUM = env('FERRYPAY_BROWSER_CHROMIUM');

const WECHAT_UA =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) ' +
  'Mobile/15E148 MicroMessenger/8.0.50(0x18003231) NetType/WIFI Language/zh_CN';
const DESKTOP_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const PHONE_SAFARI_UA =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) ' +
  'Version/17.0 Mobile/15E148 Safari/604.1';
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 800 } };
/// Every wait is bounded: a step that takes longer than this fails.
const STEP_TIMEOUT = 10_000;
/// The stand-in bridge appears this long after a page starts (the real one is not there at once).
const BRIDGE_DELAY_MS = 300;

mkdirSync(SCREENSHOTS, { recursive: true });

/// A payment link of the demo merchant (unsigned) with these parameters.
function link(params) {
  const url = new URL(GATEWAY);
  for (const [name, value] of Object.entries({ key: PK, ...params })) url.searchParams.set(name, value);
  return url.toString();
}

/// Where the return URL lands for an order: `return_url?order_no=..&status=..`.
function returnTo(orderNo, status) {
  const url = new URL(RETURN_URL);
  url.searchParams.append('order_no', orderNo);
  url.searchParams.append('status', status);
  return url.toString();
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function equal(actual, expected, what) {
  check(actual === expected, `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

async function postJson(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) };
}

// The stand-in WeixinJSBridge, in every page of a WeChat context, before the page's scripts.
// It is absent at first, then defined and announced, as in WeChat's in-app browser.
const BRIDGE_SCRIPT = `(() => {
  setTimeout(() => {
    window.WeixinJSBridge = {
      invoke(name, params, callback) {
        if (name !== 'getBrandWCPayRequest') { callback({ err_msg: name + ':fail' }); return; }
        window.__ferrypayBridge(params).then(
          (answer) => callback({ err_msg: answer.err_msg }),
          () => callback({ err_msg: 'get_brand_wcpay_request:fail' }));
      },
    };
    document.dispatchEvent(new Event('WeixinJSBridgeReady'));
  }, ${BRIDGE_DELAY_MS});
})();`;

/// One scenario's browser: a fresh context (no cookies), one page, its screenshots, its errors.
class Payer {
  constructor(browser, scenario) {
    this.browser = browser;
    this.scenario = scenario;
    this.step = 0;
    this.errors = [];
    this.statusChecks = [];
    this.navigations = [];
    /// What the stand-in bridge does with the next `getBrandWCPayRequest`: 'pay' or 'cancel'.
    this.bridge = 'pay';
    this.bridgeCalls = [];
    /// The error pages this scenario opens on purpose (their status is no console error).
    this.errorPages = [];
  }

  /// `wechat`: WeChat's in-app browser on a phone; else a desktop browser, or with `phone` a
  /// phone's own browser.
  async open({ wechat, phone = wechat, bridge = wechat }) {
    this.context = await this.browser.newContext({
      ...(phone ? PHONE : DESKTOP),
      userAgent: wechat ? WECHAT_UA : phone ? PHONE_SAFARI_UA : DESKTOP_UA,
      locale: 'zh-CN',
    });
    this.context.setDefaultTimeout(STEP_TIMEOUT);
    this.context.setDefaultNavigationTimeout(STEP_TIMEOUT);
    const page = await this.context.newPage();
    this.page = page;
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      // Chromium logs an error page's own status (403, 400) as a failed resource: expected
      // there, and only there.
      const expected = this.errorPages.some(
        ({ url, status, reason }) =>
          msg.location().url === url &&
          msg.text() === `Failed to load resource: the server responded with a status of ${status} (${reason})`,
      );
      if (expected) return;
      this.errors.push(`console error on ${page.url()}: ${msg.text()} (${msg.location().url})`);
    });
    page.on('pageerror', (err) => this.errors.push(`uncaught exception on ${page.url()}: ${err.message}`));
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.navigations.push(frame.url());
    });
    page.on('request', (req) => {
      if (req.isNavigationRequest() && req.frame() === page.mainFrame()) this.navigations.push(req.url());
    });
    // The cashier's status checks, passed through and recorded (a response event's body may be
    // gone once the page has left).
    await page.route(
      (url) => url.pathname === '/pay/gateway/status',
      async (route) => {
        const response = await route.fetch();
        const text = await response.text();
        let body = null;
        try {
          body = JSON.parse(text);
        } catch {
          // recorded as null: the check below fails with it
        }
        this.statusChecks.push({ status: response.status(), body });
        await route.fulfill({ response, body: text });
      },
    );
    if (bridge) {
      await page.exposeFunction('__ferrypayBridge', (params) => this.answerBridge(params));
      await page.addInitScript(BRIDGE_SCRIPT);
    }
    return page;
  }

  /// The payer in WeChat's pay sheet: pays (through the mock) or cancels.
  async answerBridge(params) {
    this.bridgeCalls.push(params);
    await this.shot('paying');
    if (this.bridge === 'cancel') return { err_msg: 'get_brand_wcpay_request:cancel' };
    const { status, body } = await postJson(`${MOCK}/mock/jsapi/pay`, params);
    equal(status, 200, 'the mock bridge answers 200');
    equal(body.err_msg, 'get_brand_wcpay_request:ok', `the mock paid (${body.detail || ''})`);
    return body;
  }

  async shot(name) {
    this.step += 1;
    const file = join(SCREENSHOTS, `${this.scenario}-${this.step}-${name}.png`);
    await this.page.screenshot({ path: file, fullPage: true });
  }

  /// Waits until the page is at the merchant site's return URL for this order and status.
  async returnedTo(orderNo, status) {
    const expected = returnTo(orderNo, status);
    await this.page.waitForURL(expected, { timeout: STEP_TIMEOUT });
    await this.page.waitForLoadState('load');
    equal(await this.page.locator('#merchant-site').getAttribute('data-status'), status, 'the merchant site saw');
    await this.shot('returned');
  }

  async cashier(mode) {
    const main = this.page.locator(`main#cashier[data-mode="${mode}"]`);
    await main.waitFor({ state: 'attached' });
    const orderNo = new URL(this.page.url()).searchParams.get('order_no');
    check(/^FP[0-9A-Za-z]+$/.test(orderNo || ''), `the cashier URL has an order number: ${this.page.url()}`);
    const shown = await this.page.locator('main#cashier p.muted').textContent();
    check(shown.includes(orderNo), `the cashier shows its order number ${orderNo}: ${shown}`);
    return { main, orderNo };
  }

  /// Opens `url`, which must answer an error page with this code and HTTP status; returns its
  /// title.
  async errorPage(url, code, status) {
    const reason = { 400: 'Bad Request', 403: 'Forbidden' }[status];
    this.errorPages.push({ url, status, reason });
    const response = await this.page.goto(url);
    equal(response.status(), status, `HTTP status of the ${code} page`);
    const main = this.page.locator('main#page');
    equal(await main.getAttribute('data-page'), 'error', 'data-page');
    equal(await main.getAttribute('data-code'), code, 'data-code');
    await this.shot(code);
    return (await this.page.locator('main#page h1').textContent()).trim();
  }

  async close() {
    await this.context.close();
    check(this.errors.length === 0, `page errors in scenario ${this.scenario}:\n${this.errors.join('\n')}`);
  }
}

/// Waits until `main#cashier` is in `state` (the page's own state machine).
async function cashierState(page, state) {
  await page.locator(`main#cashier[data-state="${state}"]`).waitFor({ state: 'attached' });
}

const results = {};
const timings = {};

// a. In WeChat: link -> OAuth (mock) -> cashier -> the bridge pays -> the status check confirms
// -> back at the merchant with status=success.
async function inWechatPays(browser) {
  const payer = new Payer(browser, 'a');
  const page = await payer.open({ wechat: true });
  await page.goto(link({ amount: '100', description: '拿铁咖啡 大杯', attach: 'order-a', return_url: RETURN_URL }));
  // The bridge pays as soon as it is ready; its handler screenshots the cashier while paying.
  await page.waitForURL((url) => url.toString().startsWith(RETURN_URL), { timeout: STEP_TIMEOUT });
  const orderNo = new URL(page.url()).searchParams.get('order_no');
  await payer.returnedTo(orderNo, 'success');
  equal(payer.bridgeCalls.length, 1, 'getBrandWCPayRequest calls');
  const params = payer.bridgeCalls[0];
  for (const field of ['appId', 'timeStamp', 'nonceStr', 'package', 'signType', 'paySign']) {
    check(typeof params[field] === 'string' && params[field], `the pay parameters have ${field}`);
  }
  // The way through: the link, WeChat's authorization, the link again with code and state, the
  // cashier, the merchant.
  const paths = payer.navigations.map((u) => new URL(u).pathname);
  for (const path of ['/pay/gateway', '/connect/oauth2/authorize', '/pay/gateway/cashier']) {
    check(paths.includes(path), `the payer passed through ${path}: ${payer.navigations.join(' -> ')}`);
  }
  check(
    payer.navigations.some((u) => u.includes('/pay/gateway?') && u.includes('code=') && u.includes('state=')),
    'the OAuth callback came back to the link with code and state',
  );
  // ':ok' was only a hint: the page asked the server before leaving.
  check(
    payer.statusChecks.some((s) => s.status === 200 && s.body?.status === 'paid' && s.body?.return_to === page.url()),
    `the page confirmed the payment through the status URL: ${JSON.stringify(payer.statusChecks)}`,
  );
  await payer.close();
  results.a = { paid: orderNo };
}

// b. The payer cancels in the pay sheet, then retries and pays.
async function cancelThenRetry(browser) {
  const payer = new Payer(browser, 'b');
  payer.bridge = 'cancel';
  const page = await payer.open({ wechat: true });
  await page.goto(link({ amount: '2990', description: '年度会员', return_url: RETURN_URL }));
  const { orderNo } = await payer.cashier('jsapi');
  await cashierState(page, 'cancelled');
  equal((await page.locator('#message').textContent()).trim(), '已取消支付', 'the message after cancelling');
  check(await page.locator('#retry').isVisible(), '#retry is visible after cancelling');
  check(await page.locator('#back').isVisible(), '#back is visible after cancelling');
  check(!(await page.locator('#pay').isVisible()), '#pay is hidden after cancelling');
  equal(await page.locator('#back').getAttribute('href'), returnTo(orderNo, 'fail'), '#back goes to');
  await payer.shot('cancelled');
  payer.bridge = 'pay';
  await page.locator('#retry').click();
  await payer.returnedTo(orderNo, 'success');
  equal(payer.bridgeCalls.length, 2, 'getBrandWCPayRequest calls (cancelled, then paid)');
  await payer.close();
  results.b = { paid: orderNo };
}

// c. Outside WeChat: on a phone's own browser the open-in-WeChat page (looked at only); on a
// computer the same page, then a native QR code paid through the mock.
async function outsideWechatNative(browser) {
  const url = link({ amount: '12800', description: '机械键盘', return_url: RETURN_URL });
  const phone = new Payer(browser, 'c-phone');
  const phonePage = await phone.open({ wechat: false, phone: true });
  await phonePage.goto(url);
  equal(await phonePage.locator('main#page').getAttribute('data-page'), 'open-in-wechat', 'data-page on a phone');
  await phone.shot('open-in-wechat');
  await phone.close();

  const payer = new Payer(browser, 'c');
  const page = await payer.open({ wechat: false });
  const response = await page.goto(url);
  equal(response.status(), 200, 'the open-in-WeChat page status');
  equal(await page.locator('main#page').getAttribute('data-page'), 'open-in-wechat', 'data-page');
  const qr = page.locator('img#link-qr');
  await qr.waitFor();
  await page.waitForFunction(() => {
    const img = document.getElementById('link-qr');
    return img.complete && img.naturalWidth > 0;
  });
  const linkValue = await page.locator('input#link').inputValue();
  check(linkValue.includes(`key=${PK}`) && linkValue.includes('amount=12800'), `input#link holds the link: ${linkValue}`);
  await page.locator('#copy').click();
  await page.waitForFunction(() => document.getElementById('copy').textContent === '已复制');
  await payer.shot('open-in-wechat');
  await Promise.all([page.waitForURL(/\/pay\/gateway\/cashier\?/), page.locator('#native-pay').click()]);
  const { orderNo } = await payer.cashier('native');
  await page.waitForFunction(() => {
    const img = document.getElementById('pay-qr');
    return img && img.complete && img.naturalWidth > 0;
  });
  await cashierState(page, 'waiting');
  await payer.shot('native-cashier');
  // The payer scans and pays on their phone: the mock's control, by out_trade_no.
  const { status, body } = await postJson(`${MOCK}/mock/pay`, { out_trade_no: orderNo });
  equal(status, 200, `/mock/pay (${JSON.stringify(body)})`);
  await payer.returnedTo(orderNo, 'success');
  check(payer.statusChecks.length >= 2, `the native cashier polled: ${payer.statusChecks.length} checks`);
  await payer.close();
  results.c = { paid: orderNo };
}

// d. A merchant that accepts signed links only: the signed link reaches the cashier; changed or
// unsigned, it is refused before any authorization.
async function signedLinks(browser) {
  const url = new URL(SIGNED_LINK);
  // The signature, recomputed here as a merchant's server in Node.js would: sorted name=value
  // lines, HMAC-SHA256 with the link secret, lowercase hex.
  const lines = [...url.searchParams.entries()]
    .filter(([name]) => name !== 'sign')
    .map(([name, value]) => `${name}=${value}`)
    .sort()
    .join('\n');
  equal(createHmac('sha256', LINK_SECRET).update(lines).digest('hex'), url.searchParams.get('sign'), 'the link signature');

  const payer = new Payer(browser, 'd');
  // No bridge: the cashier waits, ready, for WeChat's.
  const page = await payer.open({ wechat: true, bridge: false });
  await page.goto(SIGNED_LINK);
  const { orderNo } = await payer.cashier('jsapi');
  await cashierState(page, 'ready');
  equal(await page.locator('main#cashier p.amount').textContent(), `¥${(Number(url.searchParams.get('amount')) / 100).toFixed(2)}`, 'the amount shown');
  check(await page.locator('#pay').isVisible(), '#pay is visible while waiting for the bridge');
  await payer.shot('signed-cashier');

  const tampered = new URL(SIGNED_LINK);
  tampered.searchParams.set('amount', '1');
  equal(await payer.errorPage(tampered.toString(), 'invalid_signature', 403), '链接已被修改', 'the title');
  const unsigned = new URL(SIGNED_LINK);
  unsigned.searchParams.delete('sign');
  await payer.errorPage(unsigned.toString(), 'signature_required', 403);
  await payer.close();
  results.d = { pending: orderNo };
}

// e. The payer goes back to the OAuth callback (its code already used): the gateway authorizes
// again and lands on a fresh cashier, never an error.
async function refreshAfterOauth(browser) {
  const payer = new Payer(browser, 'e');
  const page = await payer.open({ wechat: true, bridge: false });
  await page.goto(link({ amount: '500', description: '停车费', return_url: RETURN_URL }));
  const first = await payer.cashier('jsapi');
  await payer.shot('cashier');
  const callback = payer.navigations.find((u) => u.includes('/pay/gateway?') && u.includes('code='));
  check(callback, `an OAuth callback was passed through: ${payer.navigations.join(' -> ')}`);
  const before = payer.navigations.length;
  await page.goto(callback);
  const second = await payer.cashier('jsapi');
  check(second.orderNo !== first.orderNo, 'a fresh cashier (its own order)');
  const again = payer.navigations.slice(before).map((u) => new URL(u).pathname);
  check(again.includes('/connect/oauth2/authorize'), `the authorization was restarted: ${again.join(' -> ')}`);
  await payer.shot('fresh-cashier');
  await payer.close();
  results.e = { pending: [first.orderNo, second.orderNo] };
}

// f. Links that must never be paid: a secret key in the link, a return URL elsewhere.
async function refusedLinks(browser) {
  const payer = new Payer(browser, 'f');
  const page = await payer.open({ wechat: true, bridge: false });
  const secret = new URL(link({ amount: '100' }));
  secret.searchParams.set('key', SK);
  await payer.errorPage(secret.toString(), 'secret_key_in_link', 400);
  const elsewhere = link({ amount: '100', return_url: 'https://shop.attacker.example/done' });
  await payer.errorPage(elsewhere, 'return_url_not_allowed', 400);
  await payer.close();
  results.f = {};
}

const scenarios = [
  ['a', inWechatPays],
  ['b', cancelThenRetry],
  ['c', outsideWechatNative],
  ['d', signedLinks],
  ['e', refreshAfterOauth],
  ['f', refusedLinks],
];

// The whole run is bounded here too (the Rust side kills node later still): exiting closes
// Chromium, which playwright-core started and kills on exit.
const WATCHDOG_MS = 90_000;
setTimeout(() => {
  console.error(`the browser test took longer than ${WATCHDOG_MS} ms: stopping`);
  process.exit(1);
}, WATCHDOG_MS).unref();

const started = Date.now();
let browser;
let failed = false;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  timings.launch = Date.now() - started;
  console.log(`chromium ${browser.version()} launched in ${timings.launch} ms`);
  for (const [name, run] of scenarios) {
    const t = Date.now();
    try {
      await run(browser);
      timings[name] = Date.now() - t;
      console.log(`scenario ${name}: ok in ${timings[name]} ms`);
    } catch (e) {
      failed = true;
      console.error(`scenario ${name}: FAILED after ${Date.now() - t} ms\n${e.stack || e}`);
    }
  }
} catch (e) {
  failed = true;
  console.error(`browser test failed: ${e.stack || e}`);
} finally {
  if (browser) await browser.close();
}
timings.total = Date.now() - started;
console.log(`total ${timings.total} ms`);
if (failed) process.exit(1);
console.log(`FERRYPAY_BROWSER_RESULT ${JSON.stringify({ results, timings })}`);
