//! Where a partner domain's servers are: XEP-0368 `_xmpps-server._tcp` merged with
//! `_xmpp-server._tcp` (RFC 2782 priority, then weighted random), a `.` target meaning "not
//! offered", A/AAAA on 5269 only when neither SRV exists; or a static route. hickory caches
//! answers by their TTL.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use std::net::SocketAddr;
use std::time::Duration;

/// One place to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// An SRV answer, either service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
    pub direct_tls: bool,
}

/// Orders merged SRV records: by priority, and inside a priority by RFC 2782's weighted
/// random selection (`random(n)` returns a value in `0..=n`). Records with target `.` are
/// dropped. At equal priority and weight, direct TLS comes first (it saves a round trip).
pub fn order(mut records: Vec<SrvRecord>, mut random: impl FnMut(u32) -> u32) -> Vec<Target> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| (r.priority, !r.direct_tls));
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let priority = records[i].priority;
        let mut group: Vec<SrvRecord> = records[i..]
            .iter()
            .take_while(|r| r.priority == priority)
            .cloned()
            .collect();
        i += group.len();
        // Zero-weight records first so they have a small chance, as RFC 2782 says.
        group.sort_by_key(|r| (r.weight != 0, !r.direct_tls));
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = random(total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            let r = group.remove(index);
            out.push(Target {
                host: r.target.trim_end_matches('.').to_string(),
                port: r.port,
                direct_tls: r.direct_tls,
            });
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0} has no XMPP server-to-server service (its SRV records say so with target '.')")]
    NotOffered(String),
    #[error("{0} has no address (no A or AAAA record)")]
    NoAddress(String),
    #[error("DNS lookup for {domain} failed: {message}")]
    Lookup { domain: String, message: String },
}

pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// The system's resolver (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, DnsError> {
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| DnsError::Lookup {
                domain: "(resolver)".into(),
                message: e.to_string(),
            })?
            .build();
        Ok(Self { resolver })
    }

    /// A resolver asking only `server` (tests, split-horizon setups).
    pub fn with_server(server: SocketAddr) -> Self {
        let mut config = ResolverConfig::new();
        config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        Self { resolver }
    }

    async fn srv(&self, name: &str, direct_tls: bool) -> Result<Option<Vec<SrvRecord>>, DnsError> {
        match self.resolver.srv_lookup(name).await {
            Ok(lookup) => Ok(Some(
                lookup
                    .iter()
                    .map(|r| SrvRecord {
                        priority: r.priority(),
                        weight: r.weight(),
                        port: r.port(),
                        target: r.target().to_ascii(),
                        direct_tls,
                    })
                    .collect(),
            )),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
            Err(e) => Err(DnsError::Lookup {
                domain: name.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// The SRV records of one service of `domain` as published: `_xmpps-server._tcp` (direct
    /// TLS) or `_xmpp-server._tcp` (STARTTLS); a `.` target (service explicitly not offered)
    /// is kept. `None` when the name has no SRV records at all. For diagnostics that report
    /// each service separately (`xmppfed probe`); [`Dns::targets`] merges both.
    pub async fn srv_records(
        &self,
        domain: &str,
        direct_tls: bool,
    ) -> Result<Option<Vec<SrvRecord>>, DnsError> {
        self.srv(&srv_name(domain, direct_tls), direct_tls).await
    }

    /// Targets for `domain`, in the order to try them.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, DnsError> {
        let (direct, starttls) = tokio::join!(
            self.srv_records(domain, true),
            self.srv_records(domain, false)
        );
        let (direct, starttls) = (direct?, starttls?);
        if direct.is_none() && starttls.is_none() {
            return Ok(vec![Target {
                host: domain.to_string(),
                port: 5269,
                direct_tls: false,
            }]);
        }
        let records: Vec<SrvRecord> = direct.into_iter().chain(starttls).flatten().collect();
        let ordered = order(records, random_up_to);
        if ordered.is_empty() {
            return Err(DnsError::NotOffered(domain.to_string()));
        }
        Ok(ordered)
    }

    /// Addresses of a target host.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DnsError> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let lookup = self.resolver.lookup_ip(fqdn).await.map_err(|e| {
            if e.is_no_records_found() || e.is_nx_domain() {
                DnsError::NoAddress(host.to_string())
            } else {
                DnsError::Lookup {
                    domain: host.to_string(),
                    message: e.to_string(),
                }
            }
        })?;
        Ok(lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// The fully qualified SRV name of a domain's server-to-server service.
pub fn srv_name(domain: &str, direct_tls: bool) -> String {
    let service = if direct_tls {
        "_xmpps-server"
    } else {
        "_xmpp-server"
    };
    format!("{service}._tcp.{}.", domain.trim_end_matches('.'))
}

fn random_up_to(n: u32) -> u32 {
    let mut b = [0u8; 4];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return 0;
    }
    if n == 0 {
        0
    } else {
        u32::from_le_bytes(b) % (n + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str, direct_tls: bool) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: if direct_tls { 5270 } else { 5269 },
            target: target.into(),
            direct_tls,
        }
    }

    #[test]
    fn priority_orders_and_dot_targets_are_dropped() {
        let t = order(
            vec![
                rec(20, 0, "backup.example.", false),
                rec(10, 0, "xmpp.example.", false),
                rec(10, 0, "xmpp.example.", true),
                rec(5, 0, ".", true),
            ],
            |_| 0,
        );
        let hosts: Vec<_> = t.iter().map(|t| (t.host.as_str(), t.direct_tls)).collect();
        assert_eq!(
            hosts,
            vec![
                ("xmpp.example", true),
                ("xmpp.example", false),
                ("backup.example", false)
            ]
        );
    }

    #[test]
    fn weights_steer_the_choice() {
        let records = vec![
            rec(0, 1, "light.example.", false),
            rec(0, 99, "heavy.example.", false),
        ];
        // random() returning the top of the range picks the record that ends the sum.
        assert_eq!(order(records.clone(), |n| n)[0].host, "heavy.example");
        assert_eq!(order(records, |_| 1)[0].host, "light.example");
    }

    #[test]
    fn srv_names_are_fully_qualified_per_service() {
        assert_eq!(
            srv_name("example.com", true),
            "_xmpps-server._tcp.example.com."
        );
        assert_eq!(
            srv_name("example.com.", false),
            "_xmpp-server._tcp.example.com."
        );
    }

    #[test]
    fn only_dot_targets_mean_not_offered() {
        assert!(order(vec![rec(0, 0, ".", false)], |_| 0).is_empty());
    }
}
