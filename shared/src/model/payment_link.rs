//! A merchant's settings for jump-pay links (`/pay/gateway?key=pk_...&...`): the links are
//! public URLs, so these say which of them ferrypay honours.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::MerchantSecret;

/// The most hosts a merchant may list for `return_url` (checked by the admin).
pub const MAX_RETURN_HOSTS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLinkSettings {
    /// `lsk_...`: signs payment links (HMAC-SHA256); kept usable (not hashed), like the webhook secret.
    pub signing_secret: Option<MerchantSecret>,
    /// Unsigned links are refused (needs a signing secret).
    pub require_signed: bool,
    /// Hosts a link's `return_url` may point to; empty means any http(s) URL.
    pub allowed_return_hosts: Vec<String>,
}

impl PaymentLinkSettings {
    /// Whether a link may send the payer back to `host` (as a URL parser gives it: ASCII,
    /// IDNs in punycode). Entries match exactly (ignoring case), or `*.example.com` matches
    /// subdomains of example.com at any depth but not example.com itself: a merchant who wants
    /// both lists both. A trailing dot (the DNS root) is ignored on either side.
    pub fn return_host_allowed(&self, host: &str) -> bool {
        if self.allowed_return_hosts.is_empty() {
            return true;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        !host.is_empty()
            && self
                .allowed_return_hosts
                .iter()
                .any(|entry| host_matches(entry, host))
    }
}

fn host_matches(entry: &str, host: &str) -> bool {
    let entry = entry.strip_suffix('.').unwrap_or(entry);
    let Some(domain) = entry.strip_prefix("*.") else {
        return entry.eq_ignore_ascii_case(host);
    };
    // host = subdomain + "." + domain, compared by bytes so that no suffix trick (such as
    // "badexample.com" against "*.example.com") lines up.
    let Some(split) = host.len().checked_sub(domain.len() + 1) else {
        return false;
    };
    match (host.get(..split), host.get(split..)) {
        (Some(subdomain), Some(rest)) => {
            rest.strip_prefix('.')
                .is_some_and(|rest| rest.eq_ignore_ascii_case(domain))
                && !subdomain.is_empty()
                && !subdomain.split('.').any(str::is_empty)
        }
        _ => false,
    }
}

/// An operator's `return_url` host entry in the one form [`PaymentLinkSettings`] keeps:
/// lowercase, no trailing dot. Accepts a DNS name, an IPv4 address, or `*.` + a DNS name of at
/// least two labels (`*.com` would allow a whole top-level domain). The error says what is
/// wrong, naming the entry.
pub fn normalize_return_host(raw: &str) -> Result<String, String> {
    let entry = raw.trim();
    let refuse = |why: &str| Err(format!("return host {raw:?}: {why}"));
    if entry.is_empty() {
        return refuse("empty");
    }
    if entry.contains("://") {
        return refuse(
            "give the host only, without a scheme (example.com, not https://example.com)",
        );
    }
    if entry.contains('@') {
        return refuse("give the host only, without user info");
    }
    if entry.contains(['/', '?', '#', '\\']) {
        return refuse("give the host only, without a path, query or fragment");
    }
    if entry.contains(['[', ']']) || entry.matches(':').count() > 1 {
        return refuse("IPv6 addresses are not supported");
    }
    if entry.contains(':') {
        return refuse("give the host only, without a port (any port of the host is allowed)");
    }
    if !entry.is_ascii() {
        return refuse("write an internationalized name in its punycode (xn--) form");
    }
    let lower = entry.to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(domain) = host.strip_prefix("*.") {
        if let Err(why) = check_dns_name(domain) {
            return refuse(&why);
        }
        if !domain.contains('.') {
            return refuse("a wildcard needs a domain of at least two labels, like *.example.com");
        }
        return Ok(host.to_string());
    }
    if host.contains('*') {
        return refuse("a wildcard must be a leading *. followed by a domain, like *.example.com");
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    match check_dns_name(host) {
        Ok(()) => Ok(host.to_string()),
        Err(why) => refuse(&why),
    }
}

/// A lowercase DNS name: labels of `[a-z0-9-]`, 1..=63 characters, not starting or ending
/// with `-`, at most 253 characters in all.
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("no domain name".into());
    }
    if name.len() > 253 {
        return Err("a domain name has at most 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "label {label:?} may hold only letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} may not start or end with '-'"));
        }
    }
    // URL parsers read a host ending in a numeric label as an IPv4 address ("1.2.3" is
    // 1.2.0.3), so such a name could never match a link's host.
    if labels
        .last()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a valid IPv4 address, and a domain name cannot end in a number".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing(hosts: &[&str]) -> PaymentLinkSettings {
        PaymentLinkSettings {
            allowed_return_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..PaymentLinkSettings::default()
        }
    }

    #[test]
    fn an_empty_list_allows_any_host() {
        let any = PaymentLinkSettings::default();
        assert!(any.return_host_allowed("shop.example"));
        assert!(any.return_host_allowed("203.0.113.7"));
    }

    #[test]
    fn exact_entries_match_only_that_host_ignoring_case_and_a_trailing_dot() {
        let s = allowing(&["shop.example.com", "203.0.113.7"]);
        for host in [
            "shop.example.com",
            "SHOP.Example.COM",
            "shop.example.com.",
            "203.0.113.7",
        ] {
            assert!(s.return_host_allowed(host), "{host}");
        }
        for host in [
            "example.com",
            "www.shop.example.com",
            "shop.example.com.evil.org",
            "evilshop.example.com",
            "shop.example.co",
            "203.0.113.70",
            "",
            ".",
        ] {
            assert!(!s.return_host_allowed(host), "{host}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_at_any_depth_but_not_the_domain_itself() {
        let s = allowing(&["*.example.com"]);
        for host in [
            "www.example.com",
            "a.b.c.example.com",
            "WWW.EXAMPLE.COM",
            "www.example.com.",
            // A subdomain whose labels look like another domain is still a subdomain.
            "evil.com.example.com",
        ] {
            assert!(s.return_host_allowed(host), "{host}");
        }
        for host in [
            "example.com",
            "example.com.",
            "badexample.com",
            "www.badexample.com",
            "example.com.evil.org",
            "www.example.com.evil.org",
            "www.example.co",
            ".example.com",
            "a..example.com",
            "com",
        ] {
            assert!(!s.return_host_allowed(host), "{host}");
        }
    }

    #[test]
    fn a_domain_and_its_subdomains_need_two_entries() {
        let exact = allowing(&["example.org"]);
        assert!(exact.return_host_allowed("example.org"));
        assert!(!exact.return_host_allowed("evil.com.example.org"));
        assert!(!exact.return_host_allowed("example.org.evil.com"));
        let both = allowing(&["example.org", "*.example.org"]);
        assert!(both.return_host_allowed("example.org"));
        assert!(both.return_host_allowed("evil.com.example.org"));
        assert!(!both.return_host_allowed("example.org.evil.com"));
    }

    #[test]
    fn non_ascii_hosts_never_match_by_accident() {
        // Byte lengths differ from char counts: the split must not fall inside a character.
        let s = allowing(&["*.example.com"]);
        assert!(!s.return_host_allowed("é.example.co"));
        assert!(!s.return_host_allowed("éexample.com"));
        assert!(s.return_host_allowed("é.example.com"), "still a subdomain");
    }

    #[test]
    fn normalization_lowercases_and_keeps_names_addresses_and_wildcards() {
        for (raw, normal) in [
            ("Shop.Example.COM", "shop.example.com"),
            ("shop.example.com.", "shop.example.com"),
            ("  shop.example.com ", "shop.example.com"),
            ("localhost", "localhost"),
            ("xn--fiqs8s.example", "xn--fiqs8s.example"),
            ("a-b.c1.example", "a-b.c1.example"),
            ("203.0.113.7", "203.0.113.7"),
            ("*.Example.com", "*.example.com"),
            ("*.a.b.example.com", "*.a.b.example.com"),
            ("*.co.uk", "*.co.uk"),
        ] {
            assert_eq!(normalize_return_host(raw).as_deref(), Ok(normal), "{raw}");
        }
        let longest_label = "a".repeat(63);
        assert!(normalize_return_host(&format!("{longest_label}.com")).is_ok());
        let long_name = vec!["a".repeat(49); 5].join("."); // 249 characters
        assert!(normalize_return_host(&format!("{long_name}.com")).is_ok()); // 253
        assert!(normalize_return_host(&format!("{long_name}.com.")).is_ok());
        let err = normalize_return_host(&format!("{long_name}.info")).unwrap_err(); // 254
        assert!(err.contains("253"), "{err}");
    }

    #[test]
    fn normalization_refuses_urls_ports_wildcards_and_bad_labels_saying_why() {
        for (raw, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("https://shop.example.com", "scheme"),
            ("shop.example.com/return", "path"),
            ("shop.example.com?x=1", "path"),
            ("user@shop.example.com", "user info"),
            ("shop.example.com:8443", "port"),
            ("[::1]", "IPv6"),
            ("::1", "IPv6"),
            ("*", "wildcard"),
            ("*.", "wildcard"),
            ("*.com", "two labels"),
            ("*.com.", "two labels"),
            ("*example.com", "wildcard"),
            ("www.*.example.com", "wildcard"),
            ("**.example.com", "wildcard"),
            ("*.*.example.com", "letters, digits"),
            ("shop..example.com", "empty label"),
            (".example.com", "empty label"),
            ("-shop.example.com", "start or end"),
            ("shop-.example.com", "start or end"),
            ("shop_1.example.com", "letters, digits"),
            ("bücher.example", "punycode"),
            ("1.2.3", "IPv4"),
            ("256.1.1.1", "IPv4"),
            ("*.1.2.3.4", "IPv4"),
        ] {
            let err = normalize_return_host(raw).expect_err(raw);
            assert!(err.contains(why), "{raw:?}: {err}");
            assert!(err.contains(&format!("{raw:?}")), "names the entry: {err}");
        }
        let too_long = format!("{}.com", "a".repeat(64));
        assert!(normalize_return_host(&too_long)
            .unwrap_err()
            .contains("longer than 63"));
    }

    #[test]
    fn normalized_entries_match_as_written() {
        let entries: Vec<String> = ["Shop.Example.com.", "*.Pay.Example.com"]
            .iter()
            .map(|raw| normalize_return_host(raw).unwrap())
            .collect();
        let s = PaymentLinkSettings {
            allowed_return_hosts: entries,
            ..PaymentLinkSettings::default()
        };
        assert!(s.return_host_allowed("shop.example.com"));
        assert!(s.return_host_allowed("m.pay.example.com"));
        assert!(!s.return_host_allowed("pay.example.com"));
    }
}
