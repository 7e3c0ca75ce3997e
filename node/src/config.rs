//! `custodia.toml`: the node's configuration.
//!
//! ```toml
//! [agency]
//! name = "NBI Cybercrime Division"
//! country = "PH"
//! key = "identity.key"          # relative to the node directory
//!
//! [node]
//! listen = "127.0.0.1:7400"
//! data = "store.sqlite"
//! witness_interval_secs = 10    # at most one witness per case this often
//!
//! [[peer]]
//! name = "bka"
//! addr = "127.0.0.1:7401"
//! key = "<64 hex characters: the peer agency's public key>"
//! ```
//!
//! Addresses (`listen`, a peer's `addr`) are `HOST:PORT`, HOST an IP
//! address or a DNS name; a name is kept as written and resolved when the
//! node starts listening and each time it dials the peer.
//!
//! An error names the file, the line and what is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use custodia_protocol::AgencyId;
use serde::{Deserialize, Serialize};

/// The file name inside the node directory.
pub const CONFIG_FILE: &str = "custodia.toml";

/// The most of a configuration file that is read (one peer takes about
/// 150 bytes).
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This agency.
    pub agency: AgencySection,
    /// The node.
    pub node: NodeSection,
    /// Pinned peers.
    #[serde(default, rename = "peer", skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
}

/// `[agency]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencySection {
    /// The agency's name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Path of the identity key file, relative to the node directory.
    pub key: PathBuf,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// UDP address the QUIC endpoint listens on.
    pub listen: String,
    /// Path of the store file, relative to the node directory.
    pub data: PathBuf,
    /// At most one witness per case this often (seconds).
    #[serde(default = "default_witness")]
    pub witness_interval_secs: u64,
}

fn default_witness() -> u64 {
    10
}

/// `[[peer]]`: an agency this node talks to, pinned by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// A short local name.
    pub name: String,
    /// Its address (host:port).
    pub addr: String,
    /// Its agency public key, 64 hex characters.
    pub key: String,
    /// Its country (ISO 3166-1 alpha-2), used when sharing a case with it.
    #[serde(default = "unknown_country")]
    pub country: String,
}

/// ISO 3166-1 reserves "ZZ" for user assignment; it stands for "unknown".
fn unknown_country() -> String {
    "ZZ".into()
}

impl Peer {
    /// The pinned key.
    pub fn agency(&self) -> Option<AgencyId> {
        AgencyId::from_hex(&self.key).ok()
    }

    /// The address when it is written as an IP address and port (a host
    /// name is resolved with [`Peer::resolve`]).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addr.parse().ok()
    }

    /// The address to dial now: a host name is resolved each time, so a
    /// partner's move to a new address is followed. `local` is the
    /// node's own socket address (its family is preferred).
    pub async fn resolve(&self, local: Option<SocketAddr>) -> std::io::Result<SocketAddr> {
        resolve(&self.addr, local).await
    }
}

/// An ISO 3166-1 alpha-2 country code as typed (`ph`, ` PH`): the code in
/// capitals, or why it is not one.
pub fn country_code(typed: &str) -> Result<String, String> {
    let c = typed.trim();
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(c.to_ascii_uppercase())
    } else {
        Err(format!(
            "{typed:?} is not an ISO 3166-1 alpha-2 country code (two letters, e.g. PH)"
        ))
    }
}

/// Checks a network address as typed: `HOST:PORT`, where HOST is an IP
/// address (IPv6 in brackets) or a DNS name (agencies publish host names).
/// Why it is not one otherwise. The name is kept as written and resolved
/// when it is used (by the node, at each connection), so a partner that moves its node to
/// another address needs no change here.
pub fn check_addr(typed: &str) -> Result<(), String> {
    if typed.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let why = || {
        format!(
            "{typed:?} is not an address: give HOST:PORT, HOST a DNS name or an IP address (e.g. node.agency.example:7400 or 127.0.0.1:7400)"
        )
    };
    let (host, port) = typed.rsplit_once(':').ok_or_else(why)?;
    if port.parse::<u16>().is_err() || !is_dns_name(host) {
        return Err(why());
    }
    Ok(())
}

/// A DNS host name (RFC 1123): dot-separated labels of letters, digits and
/// hyphens, each 1 to 63 characters, not starting or ending with a hyphen,
/// 253 characters at most, the last label not all digits (that would be a
/// malformed IPv4 address).
fn is_dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (1..=253).contains(&host.len())
        && host.split('.').all(label_ok)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

/// Resolves an address from the configuration ([`check_addr`]) to a
/// socket address: an IP address as it is, a host name through the
/// system's resolver (without blocking the runtime). Of the addresses a
/// name has, the first of the same family as `like` is taken (a node's one
/// UDP socket reaches only its own family), else the first IPv4 one, else
/// the first.
pub(crate) async fn resolve(addr: &str, like: Option<SocketAddr>) -> std::io::Result<SocketAddr> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    check_addr(addr).map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?;
    let found: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    let want_v4 = like.is_none_or(|l| l.is_ipv4());
    found
        .iter()
        .find(|a| a.is_ipv4() == want_v4)
        .or(found.first())
        .copied()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{addr}: the name has no address"),
            )
        })
}

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable or unwritable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid, with the line (1-based) when known.
    #[error("{}{}: {what}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line.
        line: Option<usize>,
        /// What is wrong.
        what: String,
    },
}

impl Config {
    /// Reads and checks `DIR/custodia.toml`: a regular file of at most
    /// [`MAX_CONFIG_FILE`] bytes (a path naming a FIFO or a device is never
    /// opened).
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let path = dir.join(CONFIG_FILE);
        let io = |source| ConfigError::Io {
            path: path.clone(),
            source,
        };
        let invalid = |what: &str| ConfigError::Invalid {
            path: path.clone(),
            line: None,
            what: what.to_owned(),
        };
        if !std::fs::metadata(&path).map_err(io)?.is_file() {
            return Err(invalid("not a regular file"));
        }
        let file = std::fs::File::open(&path).map_err(io)?;
        if !file.metadata().map_err(io)?.is_file() {
            return Err(invalid("not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_CONFIG_FILE {
            return Err(invalid(&format!(
                "over {MAX_CONFIG_FILE} bytes, not a node configuration"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text"))?;
        Self::parse(&text, &path)
    }

    /// Parses and checks configuration text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(s.start)),
            what: e.message().to_string(),
        })?;
        // Semantic checks, each pointing at the line of the offending value.
        let find_line = |needle: &str| {
            text.find(&format!("\"{needle}\""))
                .or_else(|| text.find(needle))
                .map(line_of)
        };
        let invalid = |needle: &str, what: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: find_line(needle),
            what,
        };
        let c = &config.agency.country;
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "country",
                format!(
                    "agency.country {c:?} is not an ISO 3166-1 alpha-2 code (two capital letters)"
                ),
            ));
        }
        if let Err(why) = check_addr(&config.node.listen) {
            return Err(invalid(&config.node.listen, format!("node.listen {why}")));
        }
        let mut names = std::collections::HashSet::new();
        for p in &config.peers {
            if let Some(k) = p
                .agency()
                .filter(|k| !custodia_protocol::is_valid_agency_key(k))
            {
                return Err(invalid(
                    &p.key,
                    format!(
                        "peer {:?}: key {k} is not a usable Ed25519 public key (not a canonical point, or of small order)",
                        p.name
                    ),
                ));
            }
            if p.agency().is_none() {
                return Err(invalid(
                    &p.key,
                    format!(
                        "peer {:?}: key must be 64 hex characters (the agency's public key)",
                        p.name
                    ),
                ));
            }
            if let Err(why) = check_addr(&p.addr) {
                return Err(invalid(&p.addr, format!("peer {:?}: addr {why}", p.name)));
            }
            if p.country.len() != 2 || !p.country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(
                    &p.country,
                    format!(
                        "peer {:?}: country {:?} is not two capital letters",
                        p.name, p.country
                    ),
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    &p.name,
                    format!("peer name {:?} is used twice", p.name),
                ));
            }
        }
        Ok(config)
    }

    /// Writes the configuration to `DIR/custodia.toml` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            line: None,
            what: e.to_string(),
        })?;
        let tmp = dir.join(".custodia.toml.tmp");
        let io = |source| ConfigError::Io {
            path: path.clone(),
            source,
        };
        // Private like the rest of the node folder (it names the pinned
        // partner agencies and their addresses).
        {
            use std::io::Write as _;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// The store file's path.
    pub fn store_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.node.data)
    }

    /// The key file's path.
    pub fn key_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.agency.key)
    }

    /// The address to listen on: `node.listen`, a host name resolved now
    /// (an IPv4 address preferred).
    pub async fn listen_addr(&self) -> std::io::Result<SocketAddr> {
        resolve(&self.node.listen, None).await
    }

    /// The pinned peer keys.
    pub fn pinned(&self) -> Vec<AgencyId> {
        self.peers.iter().filter_map(Peer::agency).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agency]
name = "Alpha"
country = "PH"
key = "identity.key"

[node]
listen = "127.0.0.1:7400"
data = "store.sqlite"

[[peer]]
name = "bravo"
addr = "127.0.0.1:7401"
key = "0101010101010101010101010101010101010101010101010101010101010101"
"#;

    #[test]
    fn parses_and_round_trips() {
        let c = Config::parse(GOOD, Path::new("custodia.toml")).expect("parses");
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.node.witness_interval_secs, 10);
        let dir = tempfile::tempdir().expect("dir");
        c.save(dir.path()).expect("save");
        assert_eq!(Config::load(dir.path()).expect("load"), c);
    }

    #[test]
    fn addresses_are_ip_addresses_or_host_names_with_a_port() {
        for good in [
            "127.0.0.1:7400",
            "[::1]:7400",
            "localhost:7400",
            "node-1.bka.example:1",
            "x:0",
        ] {
            assert_eq!(check_addr(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "localhost",
            "localhost:",
            ":7400",
            "localhost:65536",
            "under_score:7400",
            "-lead.example:7400",
            "trail-.example:7400",
            "a..b:7400",
            "trailing.dot.:7400",
            "999.1.1.1:7400",
            "::1:7400",
            "[::1]:x",
            "host name:7400",
        ] {
            assert!(check_addr(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.example:7400", "a".repeat(64));
        assert!(check_addr(&long).is_err());
    }

    #[tokio::test]
    async fn a_host_name_resolves_in_the_family_asked_for() {
        let v4: SocketAddr = "127.0.0.1:1".parse().expect("v4");
        let a = resolve("localhost:7400", Some(v4))
            .await
            .expect("localhost");
        assert_eq!(a, "127.0.0.1:7400".parse().expect("addr"));
        let a = resolve("localhost:7400", None).await.expect("localhost");
        assert!(a.is_ipv4() && a.port() == 7400, "{a}");
        let a = resolve("[::1]:9", Some(v4)).await.expect("literal");
        assert_eq!(a, "[::1]:9".parse().expect("addr"));
        let e = resolve("no port", None).await.expect_err("malformed");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD.replace(
            "0101010101010101010101010101010101010101010101010101010101010101",
            "abc",
        );
        let e = Config::parse(&bad, Path::new("x/custodia.toml")).expect_err("bad key");
        assert_eq!(e.to_string(), "x/custodia.toml:14: peer \"bravo\": key must be 64 hex characters (the agency's public key)");
        let bad = GOOD.replace("listen = \"127.0.0.1:7400\"", "listen = 7400");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("type");
        assert!(e.to_string().starts_with("c.toml:8:"), "{e}");
        let bad = GOOD.replace("[node]", "[node]\nbogus = 1");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("unknown");
        assert!(e.to_string().contains("bogus"), "{e}");
        let bad = GOOD.replace("\"PH\"", "\"ph\"");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("country");
        assert!(e.to_string().starts_with("c.toml:4:"), "{e}");
    }
}
