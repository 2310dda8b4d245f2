//! A merchant's settings for jump-pay links (`/pay/gateway?key=pk_...&...`): the links are
//! public URLs, so these say which of them ferrypay honours.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::MerchantSecret;

/// The most hosts a merchant may list for `return_url` (checked by the admin).
pub const MAX_RETURN_HOSTS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLinkSettings {
    /// `lsk_...`: signs payment links (HMAC-SHA256); kept usable (not hashed), like the webhook secret.
    pub signing_secret: Option<MerchantSecret>,
    /// Unsigned links are refused (needs a signing secret).
    pub require_signed: bool,
    /// Hosts a link's `return_url` may point to; empty means the host of the merchant's
    /// default notify URL and its subdomains (see [`PaymentLinkSettings::return_url_allowed`]).
    pub allowed_return_hosts: Vec<String>,
}

impl PaymentLinkSettings {
    /// Whether a link may send the payer back to `url`, so that nobody can use ferrypay's
    /// domain to send payers elsewhere. With registered hosts, its host must be one of them
    /// ([`PaymentLinkSettings::return_host_allowed`]); with none, it must be the host of the
    /// merchant's default notify URL or a subdomain of it (an IP address: that address only);
    /// with neither, no return URL is allowed. Ports never matter.
    pub fn return_url_allowed(&self, url: &Url, default_notify_url: Option<&str>) -> bool {
        if !self.allowed_return_hosts.is_empty() {
            return url
                .host_str()
                .is_some_and(|host| self.return_host_allowed(host));
        }
        let notify_host = default_notify_url
            .and_then(|notify| Url::parse(notify).ok())
            .and_then(|notify| notify.host().map(|h| h.to_owned()));
        match (notify_host, url.host()) {
            (Some(Host::Domain(site)), Some(Host::Domain(host))) => same_site(&site, host),
            (Some(Host::Ipv4(site)), Some(Host::Ipv4(host))) => site == host,
            (Some(Host::Ipv6(site)), Some(Host::Ipv6(host))) => site == host,
            _ => false,
        }
    }

    /// Whether a registered host entry allows `host` (as a URL parser gives it: ASCII, IDNs
    /// in punycode). Entries match exactly (ignoring case), or `*.example.com` matches
    /// subdomains of example.com at any depth but not example.com itself: a merchant who wants
    /// both lists both. A trailing dot (the DNS root) is ignored on either side.
    pub fn return_host_allowed(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        !host.is_empty()
            && self
                .allowed_return_hosts
                .iter()
                .any(|entry| host_matches(entry, host))
    }
}

/// `host` is `site` or one of its subdomains (by labels, ignoring case and a trailing dot).
fn same_site(site: &str, host: &str) -> bool {
    let site = site.strip_suffix('.').unwrap_or(site);
    let host = host.strip_suffix('.').unwrap_or(host);
    !site.is_empty()
        && (site.eq_ignore_ascii_case(host) || host_matches(&format!("*.{site}"), host))
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
    fn an_empty_list_allows_no_registered_host() {
        let none = PaymentLinkSettings::default();
        assert!(!none.return_host_allowed("shop.example"));
        assert!(!none.return_host_allowed("203.0.113.7"));
    }

    /// Whether a return URL is allowed by the settings, for a merchant whose default notify
    /// URL is `notify`.
    fn return_ok(settings: &PaymentLinkSettings, notify: Option<&str>, url: &str) -> bool {
        settings.return_url_allowed(&Url::parse(url).unwrap(), notify)
    }

    #[test]
    fn without_registered_hosts_the_notify_urls_host_and_its_subdomains_are_allowed() {
        let none = PaymentLinkSettings::default();
        let notify = Some("https://example.com/ferrypay/notify");
        for url in [
            "https://example.com/done",
            "http://example.com/done",
            "https://EXAMPLE.com/done?x=1#top",
            "https://example.com.:443/done",
            "https://example.com:8443/done",
            "https://www.example.com/done",
            "https://a.b.example.com/done",
            "https://evil.com.example.com/done",
        ] {
            assert!(return_ok(&none, notify, url), "{url}");
        }
        for url in [
            "https://evilexample.com/done",
            "https://www.evilexample.com/done",
            "https://example.com.evil.com/done",
            "https://example.co/done",
            "https://example.org/done",
            "https://com/done",
            "https://evil.com/?.example.com",
            "https://evil.com/#.example.com",
            "https://evil.com\\.example.com/",
            "https://evil.com/example.com",
            "https://93.184.216.34/done",
            "https://[::1]/done",
            "http://0x7f000001/done",
        ] {
            assert!(!return_ok(&none, notify, url), "{url}");
        }
        // A userinfo trick names another host: the URL's host is what counts.
        assert!(!return_ok(&none, notify, "https://example.com@evil.com/"));
        assert!(!return_ok(&none, notify, "https://example.com:x@evil.com/"));
        // A notify URL on a subdomain allows that subdomain down, not its parent or siblings.
        let api = Some("https://api.shop.example/notify");
        assert!(return_ok(&none, api, "https://api.shop.example/r"));
        assert!(return_ok(&none, api, "https://m.api.shop.example/r"));
        assert!(!return_ok(&none, api, "https://shop.example/r"));
        assert!(!return_ok(&none, api, "https://www.shop.example/r"));
        // An internationalized name matches in either spelling (the parser gives punycode).
        let idn = Some("https://例子.example/notify");
        assert!(return_ok(&none, idn, "https://xn--fsqu00a.example/r"));
        assert!(return_ok(&none, idn, "https://www.例子.example/r"));
    }

    #[test]
    fn a_notify_url_on_an_ip_address_allows_that_address_only() {
        let none = PaymentLinkSettings::default();
        let v4 = Some("https://203.0.113.7:8443/notify");
        assert!(return_ok(&none, v4, "https://203.0.113.7/done"));
        assert!(return_ok(&none, v4, "http://203.0.113.7:9/done"));
        for url in [
            "https://203.0.113.70/done",
            "https://203.0.113.8/done",
            "https://203.0.113.7.evil.com/done",
            "https://[::ffff:203.0.113.7]/done",
        ] {
            assert!(!return_ok(&none, v4, url), "{url}");
        }
        // Numbers a URL parser reads as this address are this address.
        assert!(return_ok(&none, v4, "https://3405803783/done"));
        let v6 = Some("https://[2001:db8::7]/notify");
        assert!(return_ok(&none, v6, "https://[2001:DB8:0::7]/done"));
        assert!(!return_ok(&none, v6, "https://[2001:db8::8]/done"));
        assert!(!return_ok(&none, v6, "https://203.0.113.7/done"));
        // A domain never matches an address, nor the other way round.
        assert!(!return_ok(
            &none,
            Some("https://localhost/n"),
            "https://127.0.0.1/"
        ));
        assert!(!return_ok(
            &none,
            Some("https://127.0.0.1/n"),
            "https://localhost/"
        ));
    }

    #[test]
    fn without_a_notify_url_or_hosts_no_return_url_is_allowed() {
        let none = PaymentLinkSettings::default();
        for notify in [
            None,
            Some(""),
            Some("not a url"),
            Some("mailto:a@example.com"),
        ] {
            assert!(
                !return_ok(&none, notify, "https://example.com/done"),
                "{notify:?}"
            );
        }
    }

    #[test]
    fn registered_hosts_replace_the_notify_url_default() {
        let s = allowing(&["shop.example", "*.pay.example"]);
        let notify = Some("https://example.com/notify");
        assert!(return_ok(&s, notify, "https://shop.example/done"));
        assert!(return_ok(&s, notify, "https://a.pay.example:8443/done"));
        assert!(!return_ok(&s, notify, "https://example.com/done"));
        assert!(!return_ok(&s, notify, "https://www.shop.example/done"));
        assert!(return_ok(&s, None, "https://shop.example/done"));
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
