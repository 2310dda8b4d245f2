<?php
// Make a signed ferrypay payment link in PHP (no dependencies).
//
//   php sign_link.php --base https://pay.example.com --secret lsk_... \
//       key=pk_... amount=100 description=咖啡 return_url=https://shop.example/done
//
// HMAC-SHA256 keyed with your link secret (lsk_...) over the parameters as `name=value` lines,
// sorted by name (byte order: use strcmp, not PHP's natural sort), joined with "\n", values
// exactly as given. Signed parameters: key, amount, description, attach, return_url, expires.

const FERRYPAY_SIGNED = ['key', 'amount', 'description', 'attach', 'return_url', 'expires'];

function ferrypay_sign(string $secret, array $params): string
{
    foreach ($params as $name => $value) {
        if (!in_array($name, FERRYPAY_SIGNED, true)) {
            throw new InvalidArgumentException("$name is not a link parameter");
        }
        if (preg_match('/[\x00-\x1f\x7f]/', (string) $value)) {
            throw new InvalidArgumentException("$name contains a control character");
        }
    }
    $names = array_keys($params);
    usort($names, 'strcmp');
    $lines = array_map(fn ($name) => $name . '=' . $params[$name], $names);
    return hash_hmac('sha256', implode("\n", $lines), $secret);
}

function ferrypay_signed_link(string $base, string $secret, array $params): string
{
    $query = [];
    foreach ($params as $name => $value) {
        $query[] = $name . '=' . rawurlencode((string) $value);
    }
    return rtrim($base, '/') . '/pay/gateway?' . implode('&', $query)
        . '&sign=' . ferrypay_sign($secret, $params);
}

if (PHP_SAPI === 'cli' && realpath($argv[0]) === __FILE__) {
    $args = array_slice($argv, 1);
    $option = function (string $name) use (&$args): string {
        $i = array_search($name, $args, true);
        if ($i === false || !isset($args[$i + 1])) {
            fwrite(STDERR, "$name is required\n");
            exit(2);
        }
        $value = $args[$i + 1];
        array_splice($args, $i, 2);
        return $value;
    };
    $base = $option('--base');
    $secret = $option('--secret');
    $params = [];
    foreach ($args as $pair) {
        [$name, $value] = explode('=', $pair, 2);
        $params[$name] = $value;
    }
    echo ferrypay_signed_link($base, $secret, $params), "\n";
}
