<?php
// Receive ferrypay webhooks in PHP, with the official standard-webhooks library.
//
//   composer require standard-webhooks/standard-webhooks   (and commit composer.lock)
//   FERRYPAY_WEBHOOK_SECRET=whsec_... php -S 127.0.0.1:8000 verify.php    (or behind php-fpm)
//   php verify.php --secret whsec_... --id ID --timestamp TS --signature 'v1,...' --body-file body.json
//
// Verify the signature over the RAW body (php://input), before json_decode: json_encode would
// escape the Chinese in `attach` as \uXXXX, and any other bytes do not verify.
//
// Not run by ferrypay's test suite (which runs verify.py and verify.mjs).

declare(strict_types=1);

require __DIR__ . '/vendor/autoload.php';

use StandardWebhooks\Webhook;

const MAX_BODY = 64 * 1024;

/** The parsed event if the signature and timestamp (+-5 min) are good; throws otherwise. */
function verify_webhook(string $secret, array $headers, string $rawBody): array
{
    // The library looks the headers up by their lower-case names.
    $event = (new Webhook($secret))->verify($rawBody, array_change_key_case($headers, CASE_LOWER));
    if (!is_array($event)) {
        throw new UnexpectedValueException('the body is not a JSON object');
    }
    return $event;
}

/** One delivery: [HTTP status, response text]. Any 2xx tells ferrypay it was delivered. */
function handle_webhook(string $secret, array $headers, string $rawBody): array
{
    try {
        $event = verify_webhook($secret, $headers, $rawBody);
    } catch (Throwable $e) {
        return [400, 'invalid webhook: ' . $e->getMessage()];
    }
    // Demo only: remember processed `webhook-id`s in your database (a unique key), not in
    // files. The same id arrives again whenever a delivery is retried.
    $id = array_change_key_case($headers, CASE_LOWER)['webhook-id'];
    $marker = sys_get_temp_dir() . '/ferrypay-webhook-' . hash('sha256', $id);
    if (file_exists($marker)) {
        return [200, 'already processed'];
    }
    // The truth is `order_no` + `status` (and the amount you expected): mark YOUR order paid
    // idempotently, e.g. `UPDATE orders SET paid = 1 WHERE order_no = ? AND paid = 0`.
    // From a payment link, `source` says whether it was signed: an unsigned link's
    // (`"link"`) amount is the payer's to change, so compare `amount` with your price.
    // Keep this quick (queue slow work): ferrypay waits 10 s, then retries.
    if ($event['status'] === 'paid') {
        error_log("order {$event['order_no']} paid: {$event['amount']} fen");
    }
    touch($marker);
    return [200, 'ok'];
}

if (PHP_SAPI === 'cli') {
    $o = getopt('', ['secret:', 'id:', 'timestamp:', 'signature:', 'body-file:']);
    if (count($o) !== 5) {
        fwrite(STDERR, "usage: php verify.php --secret --id --timestamp --signature --body-file\n");
        exit(2);
    }
    $headers = ['webhook-id' => $o['id'], 'webhook-timestamp' => $o['timestamp'], 'webhook-signature' => $o['signature']];
    try {
        $event = verify_webhook($o['secret'], $headers, (string) file_get_contents($o['body-file']));
    } catch (Throwable $e) {
        fwrite(STDERR, 'invalid webhook: ' . $e->getMessage() . "\n");
        exit(1);
    }
    echo "valid: {$event['event']} {$event['order_no']} {$event['status']}\n";
    exit(0);
}

$rawBody = (string) file_get_contents('php://input', false, null, 0, MAX_BODY + 1);
[$status, $text] = strlen($rawBody) > MAX_BODY
    ? [413, 'too large']
    : handle_webhook((string) getenv('FERRYPAY_WEBHOOK_SECRET'), getallheaders(), $rawBody);
http_response_code($status);
header('Content-Type: text/plain; charset=utf-8');
echo $text;
