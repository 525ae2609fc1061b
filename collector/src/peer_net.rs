//! [`PeerNet`]: a network of peer addresses in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`,
//! or one address), for a receiver's allow-list ([`crate::ReceiverConfig::allow`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network of IPv4 or IPv6 addresses: an address and a prefix length. Host bits given in
/// the address are cleared (`10.1.2.3/8` is `10.0.0.0/8`). IPv4 peers that reach an IPv6
/// socket as IPv4-mapped addresses (`::ffff:10.1.2.3`) match IPv4 networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerNet {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerNetError {
    /// The part before `/` is not an IP address.
    #[error("`{0}` is not an IP address or network (expected e.g. 10.0.0.0/8 or ::1)")]
    Address(String),
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("`{input}`: the prefix length must be a number from 0 to {max}")]
    Prefix {
        /// The whole text.
        input: String,
        /// The longest prefix for the address family.
        max: u8,
    },
}

impl PeerNet {
    /// The network of `address` with `prefix` leading bits; `None` when `prefix` is longer
    /// than the address.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let network = match address {
            IpAddr::V4(v4) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            _ => return None,
        };
        Some(Self { network, prefix })
    }

    /// The network's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `address` is in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(_), IpAddr::V4(v4)) => {
                Self::new(IpAddr::V4(v4), self.prefix).is_some_and(|net| net == *self)
            }
            (IpAddr::V6(_), IpAddr::V6(v6)) => {
                Self::new(IpAddr::V6(v6), self.prefix).is_some_and(|net| net == *self)
            }
            _ => false,
        }
    }
}

impl FromStr for PeerNet {
    type Err = PeerNetError;

    /// `ADDRESS` (a single host) or `ADDRESS/PREFIX`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match input.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (input, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| PeerNetError::Address(input.to_owned()))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&prefix| prefix <= max)
                .ok_or_else(|| PeerNetError::Prefix {
                    input: input.to_owned(),
                    max,
                })?,
        };
        Self::new(address, prefix).ok_or_else(|| PeerNetError::Prefix {
            input: input.to_owned(),
            max,
        })
    }
}

impl fmt::Display for PeerNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl serde::Serialize for PeerNet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PeerNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_single_hosts_and_prints_them_back() {
        for (input, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.168.1.5", "192.168.1.5/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("::1", "::1/128"),
        ] {
            let net: PeerNet = input.parse().unwrap();
            assert_eq!(net.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<PeerNet>().unwrap(), net);
        }
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for input in [
            "",
            "10.0.0",
            "10.0.0.0/33",
            "::1/129",
            "10.0.0.0/x",
            "host/8",
        ] {
            assert!(input.parse::<PeerNet>().is_err(), "{input}");
        }
        assert!(matches!(
            "10.0.0.0/40".parse::<PeerNet>(),
            Err(PeerNetError::Prefix { max: 32, .. })
        ));
    }

    #[test]
    fn contains_what_it_should_and_nothing_else() {
        let net: PeerNet = "10.20.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.20.255.1")));
        assert!(net.contains(ip("::ffff:10.20.0.9")), "IPv4-mapped");
        assert!(!net.contains(ip("10.21.0.1")));
        assert!(!net.contains(ip("::1")));
        let any: PeerNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("203.0.113.7")));
        let v6: PeerNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
    }
}
