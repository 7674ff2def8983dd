//! Split-horizon DNS for the organisation's own XMPP server: partner domains resolve to the
//! gateway, everything else is forwarded.
//!
//! Real servers find their federation peers by DNS, and Debian's Prosody (0.12.3) and ejabberd
//! have no static S2S routes; pointing the internal server's resolver here works for every
//! server and follows the live policy: a partner added to the policy resolves to the gateway on
//! the next query, a removed one stops resolving (NXDOMAIN) at once.
//!
//! For each allowed partner domain `d` it answers
//! - `_xmpp-server._tcp.d` SRV → `0 0 <port> <target host>.`,
//! - `_xmpps-server._tcp.d` → NXDOMAIN (the gateway speaks STARTTLS only; servers fall back),
//! - `d` A/AAAA → the gateway's addresses (for servers that skip SRV),
//!
//! and `<target host>` A/AAAA → the gateway's addresses when they are configured. Every other
//! question goes to the upstream resolver unchanged (or is REFUSED without one). Answers carry
//! a short TTL so policy changes reach the internal server quickly. UDP only: these answers
//! are a few hundred bytes.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use xmppfed_policy::CompiledPolicy;
use xmppfed_policy_source::PolicyHolder;

/// TTL of the answers we make up.
pub const TTL: u32 = 30;

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    /// SRV target: a name for the gateway's S2S listener (in Kubernetes, its Service).
    pub target_host: String,
    /// Addresses of `target_host`; when empty, its A/AAAA questions are forwarded.
    pub target_addrs: Vec<IpAddr>,
    /// The gateway's S2S port as the internal server reaches it.
    pub port: u16,
    /// Where other questions go.
    pub upstream: Option<SocketAddr>,
}

/// What to answer for one question, decided from the policy alone.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Records(Vec<Record>),
    NxDomain,
    /// Not ours: forward (or refuse).
    Forward,
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// The answer for `(name, type)` under `policy`. Pure, for tests.
pub fn answer(
    config: &DnsConfig,
    policy: &CompiledPolicy,
    name: &Name,
    rtype: RecordType,
) -> Answer {
    let asked = name.to_lowercase().to_ascii();
    let asked = fqdn(&asked);
    let target = fqdn(&config.target_host);
    let addresses = |owner: &Name| -> Answer {
        let records = config
            .target_addrs
            .iter()
            .filter_map(|ip| match (ip, rtype) {
                (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A::from(*v4))),
                (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA::from(*v6))),
                _ => None,
            })
            .map(|rdata| Record::from_rdata(owner.clone(), TTL, rdata))
            .collect();
        Answer::Records(records)
    };
    if asked == target {
        if config.target_addrs.is_empty() {
            return Answer::Forward;
        }
        return addresses(name);
    }
    let bare = asked.trim_end_matches('.');
    if let Some(domain) = bare.strip_prefix("_xmpp-server._tcp.") {
        if policy.partner_for(domain).is_some() {
            if rtype != RecordType::SRV {
                return Answer::Records(Vec::new());
            }
            let Ok(target_name) = Name::from_ascii(&target) else {
                return Answer::Forward;
            };
            return Answer::Records(vec![Record::from_rdata(
                name.clone(),
                TTL,
                RData::SRV(SRV::new(0, 0, config.port, target_name)),
            )]);
        }
        return Answer::Forward;
    }
    if let Some(domain) = bare.strip_prefix("_xmpps-server._tcp.") {
        if policy.partner_for(domain).is_some() {
            return Answer::NxDomain;
        }
        return Answer::Forward;
    }
    if policy.partner_for(bare).is_some() && matches!(rtype, RecordType::A | RecordType::AAAA) {
        return addresses(name);
    }
    Answer::Forward
}

/// Serves until the task is aborted.
pub async fn serve(socket: UdpSocket, config: DnsConfig, policy: Arc<PolicyHolder>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue; // not DNS: nothing sensible to answer
        };
        let current = policy.current();
        let Some(q) = query.queries().first() else {
            continue;
        };
        let decided = answer(&config, &current, q.name(), q.query_type());
        let reply = match decided {
            Answer::Forward => match config.upstream {
                Some(upstream) => {
                    let socket = socket.clone();
                    let packet = buf[..n].to_vec();
                    tokio::spawn(async move {
                        if let Some(answer) = forward(upstream, &packet).await {
                            let _ = socket.send_to(&answer, client).await;
                        }
                    });
                    continue;
                }
                None => respond(&query, ResponseCode::Refused, Vec::new()),
            },
            Answer::NxDomain => respond(&query, ResponseCode::NXDomain, Vec::new()),
            Answer::Records(records) => respond(&query, ResponseCode::NoError, records),
        };
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, client).await;
        }
    }
}

fn respond(query: &Message, code: ResponseCode, answers: Vec<Record>) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_authoritative(code != ResponseCode::Refused)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    for q in query.queries() {
        m.add_query(q.clone());
    }
    for r in answers {
        m.add_answer(r);
    }
    m
}

/// Relays one question to the upstream resolver and returns its answer.
async fn forward(upstream: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).await.ok()?;
    socket.send_to(packet, upstream).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The first `nameserver` of a resolv.conf (port 53): the cluster DNS inside a pod, which
/// `--dns-upstream auto` forwards every non-partner question to.
pub fn nameserver_from_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next())
            .flatten()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_nameserver_of_resolv_conf_is_the_upstream() {
        let conf = "# generated\nsearch xmpp.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n";
        assert_eq!(
            nameserver_from_resolv_conf(conf),
            Some("10.96.0.10:53".parse().unwrap())
        );
        assert_eq!(
            nameserver_from_resolv_conf("nameserver fe80::1%eth0\n"),
            None
        );
        assert_eq!(nameserver_from_resolv_conf(""), None);
    }

    use super::*;
    use crate::testpolicy::policy_with_partner;

    fn config() -> DnsConfig {
        DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            target_host: "xmppfed-gateway.fed.svc.cluster.local".into(),
            target_addrs: vec!["10.0.0.7".parse().unwrap()],
            port: 5269,
            upstream: None,
        }
    }

    fn ask(name: &str, t: RecordType) -> Answer {
        answer(
            &config(),
            &policy_with_partner("partner.example"),
            &Name::from_ascii(name).unwrap(),
            t,
        )
    }

    #[test]
    fn partner_srv_points_at_the_gateway() {
        let Answer::Records(r) = ask("_xmpp-server._tcp.Partner.Example.", RecordType::SRV) else {
            panic!()
        };
        let RData::SRV(srv) = r[0].data() else {
            panic!("{r:?}")
        };
        assert_eq!(srv.port(), 5269);
        assert_eq!(
            srv.target().to_ascii(),
            "xmppfed-gateway.fed.svc.cluster.local."
        );
        assert_eq!(r[0].ttl(), TTL);
    }

    #[test]
    fn direct_tls_is_not_offered_and_addresses_are_the_gateways() {
        assert_eq!(
            ask("_xmpps-server._tcp.partner.example.", RecordType::SRV),
            Answer::NxDomain
        );
        let Answer::Records(r) = ask("partner.example.", RecordType::A) else {
            panic!()
        };
        assert_eq!(r[0].data(), &RData::A(A::new(10, 0, 0, 7)));
        let Answer::Records(r) = ask("xmppfed-gateway.fed.svc.cluster.local.", RecordType::A)
        else {
            panic!()
        };
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn everything_else_is_forwarded() {
        assert_eq!(
            ask("_xmpp-server._tcp.unlisted.example.", RecordType::SRV),
            Answer::Forward
        );
        assert_eq!(ask("example.org.", RecordType::A), Answer::Forward);
        assert_eq!(
            ask("_xmpps-server._tcp.unlisted.example.", RecordType::SRV),
            Answer::Forward
        );
    }
}
