//! The egress allowlist: which hosts and addresses outbound calls may reach.
//!
//! Entries are exact host names (`api.example.com`), suffix wildcards (`*.example.com`, which matches
//! `a.example.com` and `a.b.example.com` but not `example.com`), `*` (anything), IP addresses
//! (`10.0.0.7`, `::1`) and CIDR blocks (`127.0.0.0/8`, `fd00::/8`).
//!
//! A URL whose host is an IP literal is allowed when a CIDR (or IP) entry contains it. A host name is
//! allowed when a name entry matches it; otherwise its *resolved* addresses are filtered by the CIDR
//! entries at connect time (the resolver below), so a name that resolves into an allowed network
//! works and DNS rebinding to another network does not.

use futures::future::BoxFuture;
use hyper_util::client::legacy::connect::dns::Name;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

/// An allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Any,
    Host(String),
    Suffix(String),
    Cidr(IpAddr, u8),
}

/// Hosts and networks outbound calls may reach. `None` in the configuration means unrestricted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    entries: Option<Vec<Entry>>,
}

/// An allowlist entry that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid egress allowlist entry '{0}'")]
pub struct InvalidEntry(pub String);

/// What the allowlist says about a URL host before any resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostVerdict {
    /// Allowed by name or address.
    Allowed,
    /// Refused outright.
    Refused,
    /// A host name that matches no name entry: its resolved addresses must be in a CIDR entry.
    ByAddress,
}

/// Raised by the resolver when no resolved address of a host is allowed.
#[derive(Debug, thiserror::Error)]
#[error("no address of '{0}' is in the egress allowlist")]
pub(crate) struct Refused(pub(crate) String);

impl Allowlist {
    /// Everything is allowed.
    pub fn unrestricted() -> Allowlist {
        Allowlist { entries: None }
    }

    /// Parses entries; see the module documentation for the syntax.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Allowlist, InvalidEntry> {
        let entries = entries
            .iter()
            .map(|e| parse_entry(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Allowlist {
            entries: Some(entries),
        })
    }

    /// Whether every destination is allowed.
    pub fn is_unrestricted(&self) -> bool {
        match &self.entries {
            None => true,
            Some(e) => e.contains(&Entry::Any),
        }
    }

    fn entries(&self) -> &[Entry] {
        self.entries.as_deref().unwrap_or(&[])
    }

    fn has_cidrs(&self) -> bool {
        self.entries().iter().any(|e| matches!(e, Entry::Cidr(..)))
    }

    /// Whether `ip` is in a CIDR entry.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.is_unrestricted()
            || self.entries().iter().any(|e| match e {
                Entry::Cidr(net, bits) => cidr_contains(*net, *bits, ip),
                _ => false,
            })
    }

    /// Whether a name entry matches `host` (an IP literal only matches CIDR entries).
    pub fn allows_name(&self, host: &str) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries().iter().any(|e| match e {
            Entry::Host(h) => *h == host,
            Entry::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            _ => false,
        })
    }

    /// The verdict for a URL host (brackets of IPv6 literals already stripped).
    pub(crate) fn verdict(&self, host: &str) -> HostVerdict {
        if self.is_unrestricted() {
            return HostVerdict::Allowed;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if self.allows_ip(ip) {
                HostVerdict::Allowed
            } else {
                HostVerdict::Refused
            };
        }
        if self.allows_name(host) {
            HostVerdict::Allowed
        } else if self.has_cidrs() {
            HostVerdict::ByAddress
        } else {
            HostVerdict::Refused
        }
    }
}

fn parse_entry(raw: &str) -> Result<Entry, InvalidEntry> {
    let s = raw.trim().to_ascii_lowercase();
    let bad = || InvalidEntry(raw.to_string());
    if s == "*" {
        return Ok(Entry::Any);
    }
    if let Some((net, bits)) = s.split_once('/') {
        let net: IpAddr = net.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
        return Ok(Entry::Cidr(net, bits));
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(Entry::Cidr(ip, if ip.is_ipv4() { 32 } else { 128 }));
    }
    if let Some(suffix) = s.strip_prefix("*.") {
        if valid_host(suffix) {
            return Ok(Entry::Suffix(format!(".{suffix}")));
        }
        return Err(bad());
    }
    if valid_host(&s) {
        Ok(Entry::Host(s.trim_end_matches('.').to_string()))
    } else {
        Err(bad())
    }
}

fn valid_host(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    // IPv4-mapped IPv6 addresses are compared as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A DNS resolver that drops resolved addresses the allowlist does not allow.
#[derive(Clone)]
pub(crate) struct AllowlistResolver {
    pub(crate) allowlist: Arc<Allowlist>,
}

impl tower_service::Service<Name> for AllowlistResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allowlist = self.allowlist.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allowlist.allows_name(&host) {
                return Ok(addrs.into_iter());
            }
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allowlist.allows_ip(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused(host)) as Self::Error);
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(e: &[&str]) -> Allowlist {
        Allowlist::new(e).expect("valid allowlist")
    }

    #[test]
    fn exact_and_suffix_hosts() {
        let a = list(&["api.example.com", "*.corp.example"]);
        assert_eq!(a.verdict("api.example.com"), HostVerdict::Allowed);
        assert_eq!(a.verdict("API.Example.com."), HostVerdict::Allowed);
        assert_eq!(a.verdict("x.api.example.com"), HostVerdict::Refused);
        assert_eq!(a.verdict("a.corp.example"), HostVerdict::Allowed);
        assert_eq!(a.verdict("a.b.corp.example"), HostVerdict::Allowed);
        assert_eq!(a.verdict("corp.example"), HostVerdict::Refused);
        assert_eq!(a.verdict("evilcorp.example"), HostVerdict::Refused);
        assert_eq!(a.verdict("127.0.0.1"), HostVerdict::Refused);
    }

    #[test]
    fn cidrs() {
        let a = list(&["127.0.0.0/8", "10.1.2.3", "fd00::/8"]);
        assert_eq!(a.verdict("127.9.9.9"), HostVerdict::Allowed);
        assert_eq!(a.verdict("10.1.2.3"), HostVerdict::Allowed);
        assert_eq!(a.verdict("10.1.2.4"), HostVerdict::Refused);
        assert_eq!(a.verdict("fd12::1"), HostVerdict::Allowed);
        assert_eq!(a.verdict("::1"), HostVerdict::Refused);
        assert_eq!(a.verdict("localhost"), HostVerdict::ByAddress);
        assert!(a.allows_ip("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(list(&["0.0.0.0/0"]).allows_ip("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn unrestricted_and_invalid() {
        assert_eq!(Allowlist::unrestricted().verdict("x"), HostVerdict::Allowed);
        assert_eq!(list(&["*"]).verdict("1.2.3.4"), HostVerdict::Allowed);
        assert_eq!(list(&[]).verdict("a.b"), HostVerdict::Refused);
        for bad in ["", "10.0.0.0/33", "a..b", "http://x", "*.", "x/y"] {
            assert!(Allowlist::new(&[bad]).is_err(), "{bad}");
        }
    }
}
