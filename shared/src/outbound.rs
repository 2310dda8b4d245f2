//! Outbound requests to merchant URLs (webhooks), guarded against SSRF: the host is resolved by
//! us and only public addresses are dialled (IPv4 outside the IANA special-purpose ranges, IPv6
//! in global unicast 2000::/3 outside its special-purpose ranges; the forms that embed an IPv4
//! address, such as NAT64, 6to4 and Teredo, are refused, the IPv4-mapped one judged as its IPv4
//! address; the resolver itself filters, so a DNS answer cannot change between the check and
//! the connection), literal IPs are checked too, only https in production, no redirects
//! followed, no proxy from the environment, a timeout on everything. The dev stack explicitly
//! allows loopback http.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How much of a receiver's answer is kept in the attempt log.
pub const RESPONSE_PREFIX_BYTES: usize = 1024;

/// What outbound URLs may point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// `http://` as well as `https://` (dev only).
    pub allow_http: bool,
    /// Loopback addresses (dev and tests only: local receivers).
    pub allow_loopback: bool,
}

impl OutboundPolicy {
    pub const PRODUCTION: OutboundPolicy = OutboundPolicy {
        allow_http: false,
        allow_loopback: false,
    };
    pub const DEV: OutboundPolicy = OutboundPolicy {
        allow_http: true,
        allow_loopback: true,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Network(String),
}

/// Whether an address is one we may connect to for a merchant.
pub fn ip_allowed(ip: IpAddr, policy: OutboundPolicy) -> bool {
    if ip.is_loopback() {
        return policy.allow_loopback;
    }
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        // An IPv4-mapped address (`::ffff:a.b.c.d`) is the IPv4 address itself to the socket
        // layer: judged as that address. Every other form that embeds an IPv4 address lies
        // outside 2000::/3 or in a refused range of it (see `v6_public`).
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_loopback() && policy.allow_loopback || v4_public(v4),
            None => v6_public(v6),
        },
    }
}

/// IPv4 ranges no merchant's server lives in: the IANA IPv4 Special-Purpose Address Registry
/// (as of 2024), whether or not an entry is "globally reachable" (its anycast services are no
/// webhook receivers), plus multicast and the limited broadcast.
const V4_REFUSED: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (DS-Lite, NAT64 discovery, PCP, TURN)
    ([192, 0, 2, 0], 24),    // documentation TEST-NET-1
    ([192, 31, 196, 0], 24), // AS112-v4
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112 service
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation TEST-NET-2
    ([203, 0, 113, 0], 24),  // documentation TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved (and 255.255.255.255, the limited broadcast)
];

fn v4_public(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    !V4_REFUSED.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        ip & mask == u32::from(Ipv4Addr::from(net)) & mask
    })
}

/// Ranges refused inside 2000::/3 (the only space IANA allocates as global unicast; all else,
/// `::/8` with its IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48` and discard `100::/64`, unique local `fc00::/7`,
/// link-local `fe80::/10`, site-local `fec0::/10` and multicast `ff00::/8`, is refused whole).
/// From the IANA IPv6 Special-Purpose Address Registry (as of 2024).
const V6_REFUSED_GLOBAL: &[(u128, u8)] = &[
    // IETF protocol assignments: Teredo 2001::/32 (embeds an IPv4 address), PCP, TURN and
    // DNS-SD anycast 2001:1::/48, benchmarking 2001:2::/48, AMT 2001:3::/32, AS112-v6
    // 2001:4:112::/48, ORCHID 2001:10::/28 and 2001:20::/28, DRIP 2001:30::/28.
    (0x2001_0000 << 96, 23),
    (0x2001_0db8 << 96, 32),      // documentation
    (0x2002 << 112, 16),          // 6to4 (embeds an IPv4 address, often a private one)
    (0x2620_004f_8000 << 80, 48), // direct delegation AS112 service
    (0x3fff << 112, 20),          // documentation (RFC 9637)
    (0x5f00 << 112, 16),          // SRv6 SIDs (RFC 9602)
];

fn v6_public(ip: Ipv6Addr) -> bool {
    let ip = u128::from(ip);
    let in_net = |net: u128, len: u8| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        ip & mask == net & mask
    };
    in_net(0x2000 << 112, 3) && !V6_REFUSED_GLOBAL.iter().any(|&(net, len)| in_net(net, len))
}

/// Where the guarded resolver gets its answers: the system's resolver, or (in tests) a fixed
/// DNS answer per host.
#[derive(Clone)]
enum Lookup {
    System,
    #[cfg(test)]
    Fixed(Arc<std::collections::HashMap<String, Vec<IpAddr>>>),
}

impl Lookup {
    async fn addresses(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Lookup::System => Ok(tokio::net::lookup_host((host, 0)).await?.collect()),
            #[cfg(test)]
            Lookup::Fixed(answers) => Ok(answers
                .get(host)
                .into_iter()
                .flatten()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect()),
        }
    }
}

/// The resolver behind the webhook client: resolves, then drops every address the policy
/// refuses; no address left is an error.
struct GuardedResolver {
    policy: OutboundPolicy,
    lookup: Lookup,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let lookup = self.lookup.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = lookup.addresses(&host).await?;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| ip_allowed(addr.ip(), policy))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no address we may connect to").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// A receiver's answer, as the attempt log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub latency: Duration,
    /// The first [`RESPONSE_PREFIX_BYTES`] of the body (lossy UTF-8).
    pub body_prefix: String,
    /// `Retry-After` in seconds, if the receiver sent one.
    pub retry_after: Option<Duration>,
}

/// The guarded HTTP client for merchant URLs. Build once, share.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    policy: OutboundPolicy,
    timeout: Duration,
}

impl OutboundClient {
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Result<Self, OutboundError> {
        Self::with_lookup(policy, timeout, Lookup::System)
    }

    fn with_lookup(
        policy: OutboundPolicy,
        timeout: Duration,
        lookup: Lookup,
    ) -> Result<Self, OutboundError> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy, lookup }))
            .redirect(reqwest::redirect::Policy::none())
            // No proxy from the environment (HTTPS_PROXY, ALL_PROXY): a proxy resolves the
            // merchant's host itself, which would bypass the guarded resolver.
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("ferrypay-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OutboundError::Network(e.to_string()))?;
        Ok(OutboundClient {
            http,
            policy,
            timeout,
        })
    }

    /// Checks a URL before any connection: scheme, credentials, literal IPs.
    pub fn check_url(&self, raw: &str) -> Result<reqwest::Url, OutboundError> {
        let refused = |why: &str| OutboundError::Refused(format!("{why}: {raw}"));
        let url = reqwest::Url::parse(raw).map_err(|_| refused("not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_http => {}
            _ => return Err(refused("scheme not allowed")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("credentials in the URL"));
        }
        match url.host() {
            None => return Err(refused("no host")),
            Some(url::Host::Ipv4(ip)) if !ip_allowed(IpAddr::V4(ip), self.policy) => {
                return Err(refused("address not allowed"))
            }
            Some(url::Host::Ipv6(ip)) if !ip_allowed(IpAddr::V6(ip), self.policy) => {
                return Err(refused("address not allowed"))
            }
            Some(_) => {}
        }
        Ok(url)
    }

    /// POSTs a JSON body with the given headers. Any answer is returned (the caller decides what
    /// counts as delivered); refusals, timeouts and network errors are errors.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, OutboundError> {
        let url = self.check_url(url)?;
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let started = Instant::now();
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.classify(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut prefix = Vec::with_capacity(RESPONSE_PREFIX_BYTES);
        let mut response = response;
        while prefix.len() < RESPONSE_PREFIX_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status is what counts; a body cut short is still an answer.
                Err(_) => break,
            }
        }
        prefix.truncate(RESPONSE_PREFIX_BYTES);
        Ok(Answer {
            status,
            latency: started.elapsed(),
            body_prefix: String::from_utf8_lossy(&prefix).into_owned(),
            retry_after,
        })
    }

    fn classify(&self, err: &reqwest::Error) -> OutboundError {
        if err.is_timeout() {
            return OutboundError::Timeout(self.timeout);
        }
        let text = error_chain(err);
        if text.contains("no address we may connect to") {
            OutboundError::Refused(text)
        } else {
            OutboundError::Network(text)
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(ip: &str, policy: OutboundPolicy) -> bool {
        ip_allowed(ip.parse().unwrap(), policy)
    }

    /// The forms an IPv6 address embeds an IPv4 address in.
    fn embedded(v4: Ipv4Addr) -> Vec<(&'static str, Ipv6Addr)> {
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        vec![
            ("IPv4-mapped", v4.to_ipv6_mapped()),
            (
                "IPv4-translated",
                Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
            ),
            ("IPv4-compatible", v4.to_ipv6_compatible()),
            ("NAT64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
            (
                "NAT64 local-use",
                Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo),
            ),
            ("6to4", Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
            // Teredo: server 65.54.227.120, then flags, port and client, the last two inverted.
            (
                "Teredo",
                Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, !hi, !lo),
            ),
        ]
    }

    #[test]
    fn special_purpose_ipv4_ranges_are_refused_as_written_and_embedded() {
        for ip in [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.7",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            let v4: Ipv4Addr = ip.parse().unwrap();
            assert!(
                !ip_allowed(IpAddr::V4(v4), OutboundPolicy::PRODUCTION),
                "{ip}"
            );
            for (form, v6) in embedded(v4) {
                assert!(
                    !ip_allowed(IpAddr::V6(v6), OutboundPolicy::PRODUCTION),
                    "{ip} as {form}: {v6}"
                );
            }
        }
    }

    #[test]
    fn public_ipv4_is_allowed_as_written_and_mapped_but_not_in_other_embeddings() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.88.98.1",
            "192.88.100.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            let v4: Ipv4Addr = ip.parse().unwrap();
            assert!(
                ip_allowed(IpAddr::V4(v4), OutboundPolicy::PRODUCTION),
                "{ip}"
            );
            for (form, v6) in embedded(v4) {
                // A mapped address is the IPv4 address to the socket; the other forms go
                // through translators or relays nobody vouches for.
                let expected = form == "IPv4-mapped";
                assert_eq!(
                    ip_allowed(IpAddr::V6(v6), OutboundPolicy::PRODUCTION),
                    expected,
                    "{ip} as {form}: {v6}"
                );
            }
        }
    }

    #[test]
    fn embedded_forms_are_refused_as_written() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:10.0.0.1",
            "::ffff:0:8.8.8.8",
            "::ffff:0:0",
            "::10.0.0.1",
            "::127.0.0.1",
            "::169.254.169.254",
            "::8.8.8.8",
            "64:ff9b::10.0.0.1",
            "64:ff9b::8.8.8.8",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::808:808",
            "2002:a00:1::",
            "2002:c0a8:101::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001::1",
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(!allowed(ip, OutboundPolicy::PRODUCTION), "{ip}");
        }
    }

    #[test]
    fn special_purpose_ipv6_ranges_are_refused() {
        for ip in [
            "::1",
            "::",
            "::2",
            "1::1",
            "100::1",
            "100:0:0:1::1",
            "2001:1::1",
            "2001:1::3",
            "2001:2::1",
            "2001:2:0:ffff::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:10::1",
            "2001:20::1",
            "2001:30::1",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "2002::1",
            "2620:4f:8000::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "5f00::1",
            "4000::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(!allowed(ip, OutboundPolicy::PRODUCTION), "{ip}");
        }
        for ip in [
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2404:6800:4008::200e",
            "2620:4f:8001::1",
            "3fff:1000::1",
            "2a00:1450::1",
            "3ffe::1",
        ] {
            assert!(allowed(ip, OutboundPolicy::PRODUCTION), "{ip}");
        }
    }

    #[test]
    fn the_dev_policy_allows_loopback_only() {
        assert!(allowed("127.0.0.1", OutboundPolicy::DEV));
        assert!(allowed("::1", OutboundPolicy::DEV));
        assert!(!allowed("10.0.0.1", OutboundPolicy::DEV));
        assert!(!allowed("169.254.169.254", OutboundPolicy::DEV));
        assert!(
            allowed("::ffff:127.0.0.1", OutboundPolicy::DEV),
            "mapped loopback"
        );
        for ip in [
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            assert!(
                !allowed(ip, OutboundPolicy::DEV),
                "{ip}: not loopback to the socket"
            );
        }
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let prod = OutboundClient::new(OutboundPolicy::PRODUCTION, Duration::from_secs(1)).unwrap();
        for bad in [
            "http://merchant.example/notify",
            "ftp://merchant.example/notify",
            "https://user:pw@merchant.example/notify",
            "https://127.0.0.1/notify",
            "https://[::1]/notify",
            "https://[::127.0.0.1]/notify",
            "https://[::ffff:0:a00:1]/notify",
            "https://[64:ff9b::a9fe:a9fe]/notify",
            "https://[2002:a9fe:a9fe::]/notify",
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/notify",
            "https://192.88.99.1/notify",
            "https://169.254.169.254/latest/meta-data",
            "not a url",
        ] {
            assert!(
                matches!(prod.check_url(bad), Err(OutboundError::Refused(_))),
                "{bad}"
            );
        }
        assert!(prod.check_url("https://merchant.example/notify").is_ok());
        let dev = OutboundClient::new(OutboundPolicy::DEV, Duration::from_secs(1)).unwrap();
        assert!(dev.check_url("http://127.0.0.1:9/notify").is_ok());
    }

    /// A client whose resolver gives these answers (the guard filters them as it would a real
    /// DNS answer).
    fn client_resolving(policy: OutboundPolicy, answers: &[(&str, &[&str])]) -> OutboundClient {
        let answers = answers
            .iter()
            .map(|(host, ips)| {
                let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
                (host.to_string(), ips)
            })
            .collect();
        let lookup = Lookup::Fixed(Arc::new(answers));
        OutboundClient::with_lookup(policy, Duration::from_secs(5), lookup).unwrap()
    }

    #[tokio::test]
    async fn dns_answers_with_special_or_embedded_addresses_are_refused_before_connecting() {
        let answers: &[(&str, &[&str])] = &[
            ("private.example", &["10.0.0.1"]),
            ("metadata.example", &["169.254.169.254"]),
            ("relay.example", &["192.88.99.1"]),
            ("mapped.example", &["::ffff:10.0.0.1"]),
            ("translated.example", &["::ffff:0:10.0.0.1"]),
            ("compatible.example", &["::10.0.0.1"]),
            ("nat64.example", &["64:ff9b::a9fe:a9fe"]),
            ("nat64-local.example", &["64:ff9b:1::a00:1"]),
            ("sixtofour.example", &["2002:c0a8:101::1"]),
            ("teredo.example", &["2001:0:4136:e378:8000:63bf:3fff:fdd2"]),
            ("benchmark.example", &["2001:2::1"]),
            (
                "all-bad.example",
                &["10.0.0.1", "::ffff:0:7f00:1", "fd00::1", "2002:a00:1::"],
            ),
            ("nothing.example", &[]),
        ];
        let client = client_resolving(OutboundPolicy::PRODUCTION, answers);
        for (host, _) in answers {
            let url = format!("https://{host}/notify");
            let result = client.post_json(&url, &[], b"{}".to_vec()).await;
            let Err(OutboundError::Refused(why)) = result else {
                panic!("{host}: {result:?}")
            };
            assert!(
                why.contains("no address we may connect to"),
                "{host}: {why}"
            );
        }
    }

    #[tokio::test]
    async fn the_guard_drops_the_refused_addresses_of_an_answer_and_dials_the_rest() {
        let receiver = crate::testing::TestReceiver::start(204).await;
        let port = receiver.addr().port();
        // Under the dev policy only plain loopback may be dialled: the embedded forms of
        // 127.0.0.1 are dropped, and the webhook reaches the receiver through the one left.
        let answers: &[(&str, &[&str])] = &[(
            "merchant.example",
            &[
                "::ffff:0:7f00:1",
                "64:ff9b::7f00:1",
                "2002:7f00:1::",
                "127.0.0.1",
            ],
        )];
        let client = client_resolving(OutboundPolicy::DEV, answers);
        let url = format!("http://merchant.example:{port}/notify");
        let answer = client.post_json(&url, &[], b"{}".to_vec()).await.unwrap();
        assert_eq!(answer.status, 204);
        assert_eq!(receiver.count(), 1);
    }
}
