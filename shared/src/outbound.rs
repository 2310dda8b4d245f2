//! Outbound requests to merchant URLs (webhooks), guarded against SSRF: the host is resolved by
//! us and only public addresses are dialled (no private, loopback, link-local, CGNAT, multicast,
//! documentation or IPv6 local ranges; the resolver itself filters, so a DNS answer cannot change
//! between the check and the connection), literal IPs are checked too, only https in production,
//! no redirects followed, no proxy from the environment, a timeout on everything. The dev stack
//! explicitly allows loopback http.

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
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_loopback() && policy.allow_loopback || v4_public(v4),
            None => v6_public(v6),
        },
    }
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240) // reserved 240.0.0.0/4
}

fn v6_public(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || s[..6] == [0; 6] // IPv4-compatible ::/96 (deprecated, embeds IPv4: ::127.0.0.1)
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96, local-use 64:ff9b:1::/48 (both in this /32)
        || s[0] == 0x2002 // 6to4 (embeds IPv4)
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)) // discard 100::/64
}

/// The resolver behind the webhook client: resolves, then drops every address the policy
/// refuses; no address left is an error.
struct GuardedResolver {
    policy: OutboundPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved
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
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
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

    #[test]
    fn private_and_special_addresses_are_refused_in_production() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "2002:a00:1::",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!allowed(ip, OutboundPolicy::PRODUCTION), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
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
}
