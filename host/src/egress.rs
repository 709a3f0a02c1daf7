//! Where the host may connect on a tenant's word. A job's `callback_url`
//! is a URL a tenant chose, and the host POSTs to it: left alone, a tenant
//! could make the host call its own loopback services, the private
//! network it sits in, or a cloud metadata service. So webhooks go only to
//! public addresses, unless the operator allows a range
//! (`--webhook-allow 10.1.0.0/16`).
//!
//! The check runs twice: at enqueue, so a refused URL is a 400 naming why,
//! and at every delivery, inside the resolver the HTTP client connects
//! with ([`CheckedResolver`]): the addresses checked are the addresses
//! connected to, so a name that resolves to a public address at enqueue
//! and to a private one later (DNS rebinding) is refused then too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// An address range: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr =
            address.trim().parse().map_err(|_| format!("{text:?} is not an address range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(bits) => bits.trim().parse().ok().filter(|b| *b <= max),
            None => Some(max),
        }
        .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?;
        Ok(Cidr { network, bits })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Cidr, String> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> String {
        format!("{}/{}", cidr.network, cidr.bits)
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix(net.to_bits().into(), ip.to_bits().into(), self.bits, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix(net.to_bits(), ip.to_bits(), self.bits, 128)
            }
            _ => false,
        }
    }
}

fn prefix(network: u128, ip: u128, bits: u8, width: u32) -> bool {
    let shift = width - u32::from(bits);
    shift == width || (network >> shift) == (ip >> shift)
}

/// Why `ip` is not a public address, if it is not.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => non_public_v4(ip),
        IpAddr::V6(ip) => non_public_v6(ip),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("0.0.0.0/8", "an unspecified (\"this network\") address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata services live there)"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved or broadcast address"),
    ];
    in_table(RANGES, IpAddr::V4(ip))
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b, c, d] = ip.octets()[12..] else { unreachable!() };
        return non_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    const RANGES: &[(&str, &str)] = &[
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible address"),
        ("100::/64", "a discard address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("ff00::/8", "a multicast address"),
    ];
    in_table(RANGES, IpAddr::V6(ip))
}

/// What the first range of `table` that holds `ip` says about it.
fn in_table(table: &[(&str, &'static str)], ip: IpAddr) -> Option<&'static str> {
    table.iter().find_map(|(range, why)| {
        let range: Cidr = range.parse().expect("the table's ranges parse");
        range.contains(ip).then_some(*why)
    })
}

/// Which addresses the host connects to for a tenant: public ones, and the
/// ranges the operator allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Cidr>,
}

impl EgressPolicy {
    /// Public addresses, and `allow` besides.
    pub fn new(allow: Vec<Cidr>) -> EgressPolicy {
        EgressPolicy { allow }
    }

    /// Refuses `ip` unless it is public or allowed; the refusal names why.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match non_public(ip) {
            Some(why) if !self.allow.iter().any(|range| range.contains(ip)) => {
                Err(format!("{ip} is {why}; the host's operator may allow it with --webhook-allow"))
            }
            _ => Ok(()),
        }
    }

    /// The addresses `host` resolves to that may be connected to; refused
    /// if it resolves to none (or to nothing).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect();
        let mut refusals = Vec::new();
        let allowed: Vec<SocketAddr> = found
            .iter()
            .filter(|addr| match self.check(addr.ip()) {
                Ok(()) => true,
                Err(why) => {
                    refusals.push(why);
                    false
                }
            })
            .copied()
            .collect();
        match (allowed.is_empty(), refusals.first()) {
            (false, _) => Ok(allowed),
            (true, Some(why)) => Err(format!("{host} resolves to {why}")),
            (true, None) => Err(format!("{host} resolves to no address")),
        }
    }

    /// Checks a webhook URL at enqueue: an absolute `http://` URL whose host
    /// is, or resolves to, an address this policy allows; the refusal names
    /// why.
    pub async fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = parse(url)?;
        let host = parsed.host_str().expect("parse checked it");
        let port = parsed.port_or_known_default().unwrap_or(80);
        self.resolve(host, port).await.map(drop).map_err(|why| refused(url, &why))
    }

    /// Checks a webhook URL before a delivery, without a lookup of its own:
    /// an address in the URL is checked here, a name by the client's
    /// [`CheckedResolver`] as it connects.
    pub fn check_before_connect(&self, url: &str) -> Result<(), String> {
        let parsed = parse(url)?;
        let host = parsed.host_str().expect("parse checked it");
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.check(ip).map_err(|why| refused(url, &why)),
            Err(_) => Ok(()),
        }
    }

    /// A resolver for an HTTP client that connects only where this policy
    /// allows.
    pub fn resolver(&self) -> Arc<CheckedResolver> {
        Arc::new(CheckedResolver { policy: self.clone() })
    }
}

fn refused(url: &str, why: &str) -> String {
    format!("callback_url {url:?}: {why}")
}

/// `url` if it has the shape of a webhook URL: absolute `http://` with a
/// host, at most 2048 bytes.
fn parse(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > 2048 {
        return Err(refused(url, "longer than 2048 bytes"));
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "http" && parsed.host().is_some() => Ok(parsed),
        Ok(parsed) if parsed.scheme() == "https" => {
            Err(refused(url, "https is not supported yet; use http (a relay inside your network)"))
        }
        Ok(_) => Err(refused(url, "must be an http:// URL with a host")),
        Err(e) => Err(refused(url, &e.to_string())),
    }
}

/// Name resolution that drops the addresses a policy refuses, so a
/// client connects only to checked addresses.
#[derive(Debug)]
pub struct CheckedResolver {
    policy: EgressPolicy,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addresses = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_name_and_public_ones_pass() {
        let policy = EgressPolicy::default();
        for (address, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.255.255", "private"),
            ("192.168.0.10", "private"),
            ("169.254.169.254", "link-local"),
            ("100.100.100.200", "shared"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00:ec2::254", "unique local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ] {
            let refusal = policy.check(ip(address)).unwrap_err();
            assert!(
                refusal.contains(why) && refusal.contains("--webhook-allow"),
                "{address}: {refusal}"
            );
        }
        for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn an_operator_allows_ranges() {
        let policy =
            EgressPolicy::new(vec!["10.1.0.0/16".parse().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(policy.check(ip("10.1.200.3")), Ok(()));
        assert!(policy.check(ip("10.2.0.1")).is_err());
        assert_eq!(policy.check(ip("::1")), Ok(()));
        assert!(policy.check(ip("127.0.0.1")).is_err(), "::1 allows no IPv4 loopback");
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("127.0.0.1")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked() {
        let policy = EgressPolicy::default();
        let refusal = policy.check_url("http://localhost:9/hook").await.unwrap_err();
        assert!(
            refusal.contains("localhost resolves to") && refusal.contains("loopback"),
            "{refusal}"
        );
        let refusal = policy.check_url("http://[::1]:9/hook").await.unwrap_err();
        assert!(refusal.contains("loopback"), "{refusal}");
        let loopback = EgressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let found = loopback.resolve("127.0.0.1", 9).await.unwrap();
        assert_eq!(found, [SocketAddr::new(ip("127.0.0.1"), 9)]);
        for bad in ["https://example.test/", "ftp://x/y", "not a url"] {
            assert!(policy.check_url(bad).await.unwrap_err().starts_with("callback_url"), "{bad}");
        }
        let refusal = policy.check_before_connect("http://169.254.169.254/").unwrap_err();
        assert!(refusal.contains("link-local"), "an address is checked at delivery: {refusal}");
        assert_eq!(
            policy.check_before_connect("http://hooks.example/done"),
            Ok(()),
            "names at connect"
        );
    }
}
