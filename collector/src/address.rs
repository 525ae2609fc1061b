//! [`SourceAddress`]: where a receiver listens, parsed from the `scheme://…` form used on the
//! command line and in the configuration file.
//!
//! | form | meaning | used by |
//! |---|---|---|
//! | `tcp://HOST:PORT` | TCP stream listener | socket and syslog receivers |
//! | `unix:///PATH` | unix stream socket | socket receiver |
//! | `unixgram:///PATH` | unix datagram socket (the `/dev/log` kind) | syslog receiver |
//! | `udp://HOST:PORT` | UDP datagrams | syslog receiver |
//!
//! Errors name the input they refuse, so a typo in a long command line is easy to find.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use vigil_event::SourceKind;

/// Where a receiver listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceAddress {
    /// `tcp://HOST:PORT`: a TCP listener. `HOST` may be a name, an IPv4 address or a bracketed
    /// IPv6 address; it is resolved when the receiver binds.
    Tcp {
        /// Host part, without brackets for IPv6.
        host: String,
        /// Port (0 lets the system choose; see the receivers' `local_addr`).
        port: u16,
    },
    /// `udp://HOST:PORT`: a UDP socket (syslog only).
    Udp {
        /// Host part, without brackets for IPv6.
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:///PATH`: a unix stream socket (socket device).
    Unix(PathBuf),
    /// `unixgram:///PATH`: a unix datagram socket (syslog device, `/dev/log`).
    UnixDatagram(PathBuf),
}

/// Why an address was refused. Every variant carries the input as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `scheme://` in front.
    #[error("`{input}`: expected SCHEME://…, e.g. tcp://127.0.0.1:9090 or unix:///run/vigil.sock")]
    MissingScheme {
        /// The refused input.
        input: String,
    },
    /// A scheme we do not know.
    #[error("`{input}`: unknown scheme `{scheme}` (expected tcp, udp, unix or unixgram)")]
    UnknownScheme {
        /// The refused input.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// `unix://` and `unixgram://` need an absolute path (three slashes in all).
    #[error("`{input}`: expected an absolute path, e.g. {scheme}:///run/vigil.sock")]
    NotAbsolutePath {
        /// The refused input.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// `tcp://` and `udp://` need `HOST:PORT`.
    #[error("`{input}`: expected HOST:PORT after the scheme: {reason}")]
    BadHostPort {
        /// The refused input.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The address is valid but not for this receiver.
    #[error("`{input}`: the {receiver} receiver accepts only {}", .receiver.accepted_forms())]
    WrongKind {
        /// The refused input.
        input: String,
        /// Which receiver refused it.
        receiver: ReceiverKind,
    },
}

impl SourceAddress {
    /// Parses `tcp://HOST:PORT`, `udp://HOST:PORT`, `unix:///PATH` or `unixgram:///PATH`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(AddressError::MissingScheme {
                input: input.to_owned(),
            });
        };
        match scheme {
            "tcp" | "udp" => {
                let (host, port) = host_port(input, rest)?;
                Ok(if scheme == "tcp" {
                    Self::Tcp { host, port }
                } else {
                    Self::Udp { host, port }
                })
            }
            "unix" | "unixgram" => {
                if !rest.starts_with('/') || rest.len() < 2 {
                    return Err(AddressError::NotAbsolutePath {
                        input: input.to_owned(),
                        scheme: scheme.to_owned(),
                    });
                }
                let path = PathBuf::from(rest);
                Ok(if scheme == "unix" {
                    Self::Unix(path)
                } else {
                    Self::UnixDatagram(path)
                })
            }
            _ => Err(AddressError::UnknownScheme {
                input: input.to_owned(),
                scheme: scheme.to_owned(),
            }),
        }
    }

    /// Parses an address for a receiver of `kind`, refusing the forms it does not accept
    /// ([`ReceiverKind::accepts`]).
    pub fn parse_for(kind: ReceiverKind, input: &str) -> Result<Self, AddressError> {
        let address = Self::parse(input)?;
        if kind.accepts(&address) {
            Ok(address)
        } else {
            Err(AddressError::WrongKind {
                input: input.to_owned(),
                receiver: kind,
            })
        }
    }

    /// [`SourceAddress::parse_for`] the socket receiver (`tcp://` or `unix://`).
    pub fn parse_socket(input: &str) -> Result<Self, AddressError> {
        Self::parse_for(ReceiverKind::Socket, input)
    }

    /// [`SourceAddress::parse_for`] the syslog receiver (`unixgram://`, `udp://` or `tcp://`).
    pub fn parse_syslog(input: &str) -> Result<Self, AddressError> {
        Self::parse_for(ReceiverKind::Syslog, input)
    }

    /// `HOST:PORT` for the network forms (IPv6 hosts bracketed), `None` for unix sockets.
    pub fn host_port(&self) -> Option<String> {
        match self {
            Self::Tcp { host, port } | Self::Udp { host, port } => Some(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }),
            Self::Unix(_) | Self::UnixDatagram(_) => None,
        }
    }
}

fn host_port(input: &str, rest: &str) -> Result<(String, u16), AddressError> {
    let bad = |reason| AddressError::BadHostPort {
        input: input.to_owned(),
        reason,
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unclosed `[` around an IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("missing `:PORT`"))?;
        (host, port)
    } else {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("missing `:PORT`"))?;
        if host.contains(':') {
            return Err(bad("IPv6 addresses must be bracketed, e.g. [::1]:9090"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("empty host (use 0.0.0.0 or 127.0.0.1)"));
    }
    if host.contains('/') || port.contains('/') {
        return Err(bad("no path is allowed after HOST:PORT"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("PORT must be a number from 0 to 65535"))?;
    Ok((host.to_owned(), port))
}

impl FromStr for SourceAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { .. } => write!(f, "tcp://{}", self.host_port().unwrap_or_default()),
            Self::Udp { .. } => write!(f, "udp://{}", self.host_port().unwrap_or_default()),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::UnixDatagram(path) => write!(f, "unixgram://{}", path.display()),
        }
    }
}

/// Which audit device a [`Receiver`](crate::Receiver) receives, and so how it frames its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiverKind {
    /// Vault's socket audit device: newline-delimited JSON over TCP or a unix stream socket.
    Socket,
    /// Vault's syslog audit device: syslog messages over a unix datagram socket, UDP or TCP.
    Syslog,
}

impl ReceiverKind {
    /// The lowercase name (`socket`, `syslog`), as in [`SourceKind::as_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Syslog => "syslog",
        }
    }

    /// The kind of source recorded in the events' origin.
    pub fn source_kind(self) -> SourceKind {
        match self {
            Self::Socket => SourceKind::Socket,
            Self::Syslog => SourceKind::Syslog,
        }
    }

    /// Whether this receiver can listen on `address`.
    pub fn accepts(self, address: &SourceAddress) -> bool {
        match self {
            Self::Socket => matches!(address, SourceAddress::Tcp { .. } | SourceAddress::Unix(_)),
            Self::Syslog => matches!(
                address,
                SourceAddress::Tcp { .. }
                    | SourceAddress::Udp { .. }
                    | SourceAddress::UnixDatagram(_)
            ),
        }
    }

    /// The address forms [`ReceiverKind::accepts`], for error messages.
    pub fn accepted_forms(self) -> &'static str {
        match self {
            Self::Socket => "tcp://HOST:PORT and unix:///PATH",
            Self::Syslog => "unixgram:///PATH, udp://HOST:PORT and tcp://HOST:PORT",
        }
    }
}

impl fmt::Display for ReceiverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ReceiverKind> for SourceKind {
    fn from(kind: ReceiverKind) -> Self {
        kind.source_kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for input in [
            "tcp://127.0.0.1:9090",
            "tcp://[::1]:9090",
            "udp://0.0.0.0:514",
            "unix:///run/vigil.sock",
            "unixgram:///dev/log",
            "tcp://vault-collector.local:0",
        ] {
            let address = SourceAddress::parse(input).unwrap();
            assert_eq!(address.to_string(), input);
        }
        assert_eq!(
            SourceAddress::parse("tcp://[::1]:9090").unwrap(),
            SourceAddress::Tcp {
                host: "::1".into(),
                port: 9090
            }
        );
    }

    #[test]
    fn errors_name_the_input() {
        for input in [
            "127.0.0.1:9090",
            "http://x:1",
            "unix://relative.sock",
            "unixgram://",
            "tcp://127.0.0.1",
            "tcp://:9090",
            "tcp://::1:9090",
            "udp://host:99999",
            "tcp://[::1:9090",
            "tcp://host:9090/path",
        ] {
            let error = SourceAddress::parse(input).unwrap_err();
            assert!(error.to_string().contains(input), "{error}");
        }
    }

    #[test]
    fn receivers_accept_their_kinds_only() {
        assert!(SourceAddress::parse_socket("unix:///a").is_ok());
        assert!(SourceAddress::parse_socket("tcp://h:1").is_ok());
        assert!(SourceAddress::parse_socket("udp://h:1").is_err());
        assert!(SourceAddress::parse_socket("unixgram:///dev/log").is_err());
        assert!(SourceAddress::parse_syslog("unixgram:///dev/log").is_ok());
        assert!(SourceAddress::parse_syslog("udp://h:514").is_ok());
        assert!(SourceAddress::parse_syslog("tcp://h:514").is_ok());
        let error = SourceAddress::parse_syslog("unix:///a").unwrap_err();
        assert!(error.to_string().contains("syslog receiver"), "{error}");
        let error = SourceAddress::parse_for(ReceiverKind::Socket, "udp://h:1").unwrap_err();
        assert_eq!(
            error,
            AddressError::WrongKind {
                input: "udp://h:1".into(),
                receiver: ReceiverKind::Socket
            }
        );
        assert_eq!(
            SourceAddress::parse_for(ReceiverKind::Syslog, "udp://h:514"),
            SourceAddress::parse_syslog("udp://h:514")
        );
    }
}
