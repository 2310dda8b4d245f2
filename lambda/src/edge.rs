//! The client's address behind the optional CloudFront distribution (infra/template.yaml,
//! `EnableEdge`). There API Gateway's `sourceIp` is a CloudFront edge address, shared by many
//! payers, so ferrypay's per-IP limits and allowlists would count edges, not clients.
//! CloudFront names the viewer in `CloudFront-Viewer-Address` (`ip:port`), but anyone can send
//! that header straight to the API's own URL. So the viewer address counts only when the
//! request also carries the origin-verification header with the secret CloudFront adds to
//! every origin request (a Secrets Manager secret the template generates; the functions read
//! it once per cold start). Without the secret configured, or with the header missing or
//! wrong, the address is `sourceIp`, exactly as without CloudFront.

use std::net::IpAddr;

use ferrypay::{config::Env, model::Secret, runtime::SdkConfig, sign::constant_time_eq};
use lambda_http::http::HeaderMap;

/// The header CloudFront adds to every origin request (an origin custom header), holding the
/// origin-verification secret.
pub const ORIGIN_VERIFY_HEADER: &str = "x-ferrypay-origin-verify";

/// CloudFront's viewer address: `198.51.100.10:46532`, or for IPv6 the address and the port
/// joined by one more colon (`2001:db8::1:46532`).
pub const VIEWER_ADDRESS_HEADER: &str = "cloudfront-viewer-address";

/// Whether, and on which proof, a request may name its viewer's address.
#[derive(Debug, Clone, Default)]
pub struct EdgeTrust {
    origin_verify: Option<Secret<String>>,
}

impl EdgeTrust {
    /// Behind CloudFront: trust the viewer address of requests carrying `origin_verify`.
    pub fn cloudfront(origin_verify: Secret<String>) -> EdgeTrust {
        EdgeTrust {
            origin_verify: Some(origin_verify),
        }
    }

    /// From `FERRYPAY_ORIGIN_VERIFY_SECRET_ARN` (read once); without it, no edge is trusted.
    pub async fn from_env(
        env: &Env<'_>,
        sdk: &SdkConfig,
    ) -> Result<EdgeTrust, ferrypay::runtime::StartError> {
        let origin_verify = ferrypay::runtime::origin_verify_secret(env, sdk).await?;
        Ok(EdgeTrust { origin_verify })
    }

    /// The client's address: the viewer's, if the request proves it came through CloudFront
    /// and names one; else `source_ip`.
    pub fn client_addr(&self, headers: &HeaderMap, source_ip: Option<IpAddr>) -> Option<IpAddr> {
        if !self.came_through_cloudfront(headers) {
            return source_ip;
        }
        let viewer = headers
            .get(VIEWER_ADDRESS_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_viewer_address);
        if viewer.is_none() {
            tracing::warn!(
                "a request through CloudFront without a readable {VIEWER_ADDRESS_HEADER}; \
                 using sourceIp (is the header in the origin request policy?)"
            );
        }
        viewer.or(source_ip)
    }

    /// Exactly one origin-verification header, equal (in constant time) to the secret.
    fn came_through_cloudfront(&self, headers: &HeaderMap) -> bool {
        let Some(secret) = &self.origin_verify else {
            return false;
        };
        let mut values = headers.get_all(ORIGIN_VERIFY_HEADER).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => constant_time_eq(value.as_bytes(), secret.expose().as_bytes()),
            _ => false,
        }
    }
}

/// Removes the edge headers, so the secret never reaches the API's handlers (or a log of
/// headers) and nothing there can mistake a forged viewer address for the client's.
pub(crate) fn strip(headers: &mut HeaderMap) {
    headers.remove(ORIGIN_VERIFY_HEADER);
    headers.remove(VIEWER_ADDRESS_HEADER);
}

/// `ip:port` (IPv6: `ip:port` too, the port after the last colon; `[ip]:port` accepted).
fn parse_viewer_address(value: &str) -> Option<IpAddr> {
    let (ip, port) = value.trim().rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|ip| ip.strip_suffix(']'))
        .unwrap_or(ip);
    ip.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdefghijABCDEFGHIJ0123456789xyzXYZ";

    fn trust() -> EdgeTrust {
        EdgeTrust::cloudfront(Secret::new(SECRET.to_string()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn source() -> Option<IpAddr> {
        Some("130.176.1.1".parse().unwrap()) // a CloudFront edge
    }

    #[test]
    fn the_viewer_address_counts_with_the_secret() {
        let through = headers(&[
            (ORIGIN_VERIFY_HEADER, SECRET),
            (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
        ]);
        assert_eq!(
            trust().client_addr(&through, source()),
            Some("198.51.100.10".parse().unwrap())
        );
        let v6 = headers(&[
            (ORIGIN_VERIFY_HEADER, SECRET),
            (
                VIEWER_ADDRESS_HEADER,
                "2001:db8:3333:4444:5555:6666:7777:8888:443",
            ),
        ]);
        assert_eq!(
            trust().client_addr(&v6, source()),
            Some("2001:db8:3333:4444:5555:6666:7777:8888".parse().unwrap())
        );
        let short_v6 = headers(&[
            (ORIGIN_VERIFY_HEADER, SECRET),
            (VIEWER_ADDRESS_HEADER, "[2001:db8::1]:443"),
        ]);
        assert_eq!(
            trust().client_addr(&short_v6, source()),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn a_forged_viewer_address_without_the_secret_is_ignored() {
        let forged = [
            // No proof at all: a client going straight to the API's own URL.
            headers(&[(VIEWER_ADDRESS_HEADER, "198.51.100.10:46532")]),
            // A guess, a prefix of the secret, the secret with more after it, an empty value.
            headers(&[
                (ORIGIN_VERIFY_HEADER, "guess"),
                (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
            ]),
            headers(&[
                (ORIGIN_VERIFY_HEADER, &SECRET[..20]),
                (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
            ]),
            headers(&[
                (ORIGIN_VERIFY_HEADER, &format!("{SECRET}x")),
                (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
            ]),
            headers(&[
                (ORIGIN_VERIFY_HEADER, ""),
                (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
            ]),
            // The secret twice (one of them could be the client's): not CloudFront's shape.
            headers(&[
                (ORIGIN_VERIFY_HEADER, SECRET),
                (ORIGIN_VERIFY_HEADER, SECRET),
                (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
            ]),
        ];
        for headers in &forged {
            assert_eq!(
                trust().client_addr(headers, source()),
                source(),
                "{headers:?}"
            );
        }
        // Without CloudFront configured, even the right secret proves nothing.
        let through = headers(&[
            (ORIGIN_VERIFY_HEADER, SECRET),
            (VIEWER_ADDRESS_HEADER, "198.51.100.10:46532"),
        ]);
        assert_eq!(
            EdgeTrust::default().client_addr(&through, source()),
            source()
        );
    }

    #[test]
    fn an_unreadable_viewer_address_falls_back_to_the_source_ip() {
        for bad in [
            "198.51.100.10",
            "198.51.100.10:",
            "198.51.100.10:x",
            "nonsense:1",
            "",
        ] {
            let headers = headers(&[(ORIGIN_VERIFY_HEADER, SECRET), (VIEWER_ADDRESS_HEADER, bad)]);
            assert_eq!(trust().client_addr(&headers, source()), source(), "{bad}");
        }
        let without = headers(&[(ORIGIN_VERIFY_HEADER, SECRET)]);
        assert_eq!(trust().client_addr(&without, source()), source());
    }

    #[test]
    fn the_secret_is_never_printed() {
        assert!(!format!("{:?}", trust()).contains(SECRET));
    }
}
