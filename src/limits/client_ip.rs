//! Who the client is: the socket peer, unless the peer is a trusted proxy;
//! then the rightmost `X-Forwarded-For` address that is not one. Addresses
//! left of it were written by the client and prove nothing.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self { networks }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer`. With no trusted proxy
    /// (the default) the headers are not even read.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Every X-Forwarded-For line in order, read from the last address back.
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','));
        for entry in entries {
            // Garbage from a trusted hop: the client is the hop that sent it.
            let Some(ip) = address(entry) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// `192.0.2.1`, `2001:db8::1`, or either with a port (`[2001:db8::1]:443`).
fn address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(cidrs: &[&str]) -> TrustedProxies {
        TrustedProxies::new(cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    fn client(proxies: &TrustedProxies, peer: &str, forwarded: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        proxies
            .client_ip(peer.parse().unwrap(), &headers)
            .to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = proxies(&[]);
        assert_eq!(
            client(&none, "198.51.100.7", &["203.0.113.9"]),
            "198.51.100.7"
        );
        let lb = proxies(&["10.0.0.0/8"]);
        assert_eq!(client(&lb, "198.51.100.7", &["10.1.1.1"]), "198.51.100.7");
    }

    #[test]
    fn a_trusted_peer_gives_the_rightmost_untrusted_address() {
        let lbs = proxies(&["10.0.0.0/8", "192.0.2.10/32"]);
        // The client forged the first address; the balancer appended the real one.
        assert_eq!(
            client(&lbs, "10.0.0.2", &["1.1.1.1, 203.0.113.9"]),
            "203.0.113.9"
        );
        // Chains of trusted hops are skipped, across header lines too.
        assert_eq!(
            client(
                &lbs,
                "10.0.0.2",
                &["6.6.6.6, 203.0.113.9", "192.0.2.10, 10.9.9.9"]
            ),
            "203.0.113.9"
        );
        // Ports and IPv6 forms are read; v4-mapped addresses are plain v4.
        assert_eq!(
            client(&lbs, "10.0.0.2", &["[2001:db8::5]:443"]),
            "2001:db8::5"
        );
        assert_eq!(
            client(&lbs, "::ffff:10.0.0.2", &["203.0.113.9:5000"]),
            "203.0.113.9"
        );
    }

    #[test]
    fn missing_or_garbled_headers_stop_at_the_last_trusted_hop() {
        let lb = proxies(&["10.0.0.0/8"]);
        assert_eq!(client(&lb, "10.0.0.2", &[]), "10.0.0.2");
        assert_eq!(
            client(&lb, "10.0.0.2", &["203.0.113.9, garbage"]),
            "10.0.0.2"
        );
        assert_eq!(client(&lb, "10.0.0.2", &["garbage, 10.0.0.3"]), "10.0.0.3");
        // Only trusted hops: the farthest one is the client.
        assert_eq!(client(&lb, "10.0.0.2", &["10.0.0.4, 10.0.0.3"]), "10.0.0.4");
    }
}
