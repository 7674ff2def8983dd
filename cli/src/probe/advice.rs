//! Likely causes and fixes, in plain words, for what the remote did: stream errors, failed
//! handshakes, silence.

use super::report::{Advice, advice};
use std::net::SocketAddr;
use xmppfed_xmpp::stream_error::{StreamError, StreamErrorCondition as C};

pub(super) fn dns_unreachable() -> Advice {
    advice(
        "the DNS lookup itself failed: the resolver is unreachable or the domain's DNS servers answer with errors",
        "check the resolver (or name one with --dns-server ip:port) and the domain's DNS with `dig SRV _xmpp-server._tcp.<domain>`",
    )
}

pub(super) fn firewall(addr: SocketAddr) -> Advice {
    advice(
        format!("nothing answers at {addr}: a firewall drops the packets, or the host is down"),
        format!(
            "allow TCP port {} to {} in the partner's firewall (and outbound from here), and check the server is running",
            addr.port(),
            addr.ip()
        ),
    )
}

/// Cause and fix for a failed TLS handshake.
pub(super) fn tls_failure(text: &str, domain: &str, direct: bool) -> Advice {
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        if direct {
            return advice(
                "the server did not answer with TLS: this port probably speaks plaintext XMPP (STARTTLS), not direct TLS",
                format!(
                    "point _xmpps-server._tcp.{domain} at the direct-TLS port (often 5270), not the STARTTLS port (5269)"
                ),
            );
        }
        return advice(
            "the server did not continue with TLS after <proceed/>",
            format!("check {domain}'s server TLS configuration and its log"),
        );
    }
    if lower.contains("alert") {
        return advice(
            format!(
                "{domain}'s server refused the TLS handshake: often it has no certificate for the name asked (SNI {domain}), shares no TLS version or cipher with us (TLS 1.2 or 1.3 is needed), or demands a client certificate"
            ),
            format!(
                "check {domain}'s server TLS configuration and its log for the handshake error"
            ),
        );
    }
    advice(
        "the TLS handshake broke off",
        format!("check {domain}'s server TLS configuration and its log"),
    )
}

/// Cause and fix for a stream error the remote sent.
pub fn stream_error_advice(err: &StreamError, domain: &str, from: Option<&str>) -> Advice {
    let sender = from.unwrap_or("us (no --from given)");
    match err.condition {
        C::PolicyViolation => advice(
            format!("{domain}'s server refuses streams from {sender} by policy"),
            match from {
                Some(f) => format!(
                    "ask {domain}'s administrators to allow {f}: on an xmppfed edge an XmppAllowedPartner for {f}; on Prosody or ejabberd their s2s allow-list (mod_s2s_whitelist, s2s_access)"
                ),
                None => "probe again with --from <your domain>: servers with an allow-list refuse streams that do not name their sender".to_string(),
            },
        ),
        C::HostUnknown => advice(
            format!("the server at this address does not host {domain}"),
            format!("point {domain}'s SRV records at a server that hosts it, or add {domain} as a virtual host there"),
        ),
        C::InvalidFrom => advice(
            format!("{domain}'s server rejects the sending domain {sender} (not authenticated for it, or not allowed)"),
            format!("check that {sender} is allowed and authenticated on {domain}'s side"),
        ),
        C::NotAuthorized => match from {
            Some(f) => advice(
                format!("{domain}'s server did not accept our authentication as {f}"),
                format!("{domain} must trust our certificate's CA and the certificate must name {f}; or {domain} must allow dialback from {f}"),
            ),
            None => advice(
                format!("{domain}'s server refuses servers that do not authenticate (with a certificate it trusts)"),
                "probe again with --from <your domain> --cert <pem> --key <pem>",
            ),
        },
        C::Conflict => advice(
            format!("{domain}'s server refused another stream from {sender} (a connection limit, or a replaced stream)"),
            format!("close other streams to {domain} or raise its connection limit for {sender}"),
        ),
        C::ImproperAddressing | C::BadFormat | C::InvalidNamespace | C::UnsupportedVersion => advice(
            format!("{domain}'s server did not accept our stream header ({})", err.condition),
            format!("look in {domain}'s server log; report the error to the xmppfed developers if it persists"),
        ),
        C::SystemShutdown | C::ResourceConstraint | C::InternalServerError => advice(
            format!("{domain}'s server is shutting down, overloaded or failing"),
            format!("try again later; look in {domain}'s server log"),
        ),
        C::UnsupportedFeature => advice(
            format!("{domain}'s server has no authentication method it may use with {sender}"),
            "compare the TLS / SASL / dialback settings on both sides (an xmppfed edge: the partner's negotiation settings)".to_string(),
        ),
        _ => advice(
            format!("{domain}'s server closed the stream with <{}/>", err.condition),
            format!("look up the reason in {domain}'s server log"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_violation_advice_names_the_partner_entry_to_add() {
        let err = StreamError::new(C::PolicyViolation, "b.example is not an allowed partner");
        let a = stream_error_advice(&err, "a.example", Some("b.example"));
        assert!(a.fix.contains("XmppAllowedPartner for b.example"), "{a:?}");
        let a = stream_error_advice(&err, "a.example", None);
        assert!(a.fix.contains("--from"), "{a:?}");
    }

    #[test]
    fn tls_failures_on_a_plaintext_port_point_at_the_srv_record() {
        let a = tls_failure(
            "TLS handshake failed: received corrupt message of type InvalidContentType",
            "a.example",
            true,
        );
        assert!(a.fix.contains("_xmpps-server._tcp.a.example"), "{a:?}");
    }
}
