//! The initiating machine negotiated against the receiving machine, through real framers:
//! both sides of every matrix row the two can meet on.

use super::*;
use crate::devca::{CertSpec, DevCa};
use crate::framer::{Frame, StanzaFramer};
use crate::inbound::{self, InboundPolicy, InboundSession};
use bytes::BytesMut;
use tokio_util::codec::Decoder;
use xmppfed_policy::Negotiation::{NotSupported, Optional, Required};

struct Receiver {
    partner: NegotiationSettings,
}

impl InboundPolicy for Receiver {
    fn serves(&self, d: &str) -> bool {
        d == "example.com"
    }
    fn partner(&self, d: &str) -> Option<NegotiationSettings> {
        (d == "partner.example").then_some(self.partner)
    }
    fn max_stanza_bytes(&self) -> usize {
        65_536
    }
    fn idle_seconds(&self) -> u64 {
        600
    }
}

struct Certs {
    trust: Arc<TrustStore>,
    ca: DevCa,
}

fn certs() -> Certs {
    let ca = DevCa::new("ca").unwrap();
    let mut t = TrustStore::new();
    t.add(&ca.cert_der).unwrap();
    Certs {
        trust: Arc::new(t),
        ca,
    }
}

impl Certs {
    fn chain(&self, domain: &str) -> Vec<CertificateDer<'static>> {
        vec![
            self.ca
                .issue(&CertSpec::for_domain(domain))
                .unwrap()
                .cert_der,
        ]
    }
}

/// Runs both machines until the initiator is established or fails. `initiator_cert` and
/// `receiver_cert` name the domains their certificates prove.
fn negotiate(
    ours: NegotiationSettings,
    theirs: NegotiationSettings,
    initiator_cert: &str,
    receiver_cert: &str,
) -> Result<Method, String> {
    let c = certs();
    let secret = DialbackSecret::new("partner secret");
    let mut out = OutboundSession::new(
        "partner.example",
        "example.com",
        ours,
        c.trust.clone(),
        secret.clone(),
        Purpose::Stanzas,
        false,
        Vec::new(),
    );
    let policy = Receiver { partner: theirs };
    let mut inb = InboundSession::new(
        c.trust.clone(),
        DialbackSecret::new("ours"),
        false,
        Vec::new(),
    );
    let (mut to_in, mut to_out) = (
        StanzaFramer::new(FramerLimits::PRE_AUTH),
        StanzaFramer::new(FramerLimits::PRE_AUTH),
    );
    let (mut wire_in, mut wire_out) = (BytesMut::new(), BytesMut::new());
    let mut pending: Vec<Action> = out.start();
    for _ in 0..100 {
        for a in std::mem::take(&mut pending) {
            match a {
                Action::Send(s) => wire_in.extend_from_slice(s.as_bytes()),
                Action::StartTls => {
                    pending.extend(out.handle(Input::TlsEstablished(c.chain(receiver_cert))));
                }
                Action::ResetFramer(l) => to_out.reset(l),
                Action::Established(m) => return Ok(m),
                Action::Verified(_) => unreachable!(),
                Action::Fail { reason, .. } => return Err(reason),
            }
        }
        let mut inbound_actions = Vec::new();
        while let Some(frame) = to_in.decode(&mut wire_in).map_err(|e| e.to_string())? {
            let input = match frame {
                Frame::Header(h) => inbound::Input::Header(h),
                Frame::Element(e) => inbound::Input::Element(e),
                _ => continue,
            };
            inbound_actions.extend(inb.handle(input, &policy));
        }
        let mut queue: std::collections::VecDeque<_> = inbound_actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                inbound::Action::Send(s) => wire_out.extend_from_slice(s.as_bytes()),
                inbound::Action::StartTls => {
                    queue.extend(inb.handle(
                        inbound::Input::TlsEstablished(c.chain(initiator_cert)),
                        &policy,
                    ));
                    wire_in.clear();
                }
                inbound::Action::ResetFramer(l) => to_in.reset(l),
                inbound::Action::VerifyDialback {
                    from,
                    to,
                    stream_id,
                    key,
                } => {
                    // The authoritative server for partner.example knows its own secret.
                    let valid = secret.verify(&to, &from, &stream_id, &key);
                    queue.extend(inb.handle(
                        inbound::Input::DialbackChecked {
                            from,
                            to,
                            result: Ok(valid),
                        },
                        &policy,
                    ));
                }
                inbound::Action::Close(Some(e)) => return Err(format!("receiver: {e}")),
                _ => {}
            }
        }
        while let Some(frame) = to_out.decode(&mut wire_out).map_err(|e| e.to_string())? {
            let input = match frame {
                Frame::Header(h) => Input::Header(h),
                Frame::Element(e) => Input::Element(e),
                _ => continue,
            };
            pending.extend(out.handle(input));
        }
    }
    Err("no progress".into())
}

fn s(tls: Negotiation, sasl: Negotiation, dialback: bool) -> NegotiationSettings {
    NegotiationSettings::new(tls, sasl, dialback)
}

#[test]
fn defaults_on_both_sides_use_sasl_external() {
    let d = s(Required, Required, true);
    assert_eq!(
        negotiate(d, d, "partner.example", "example.com"),
        Ok(Method::SaslExternal)
    );
}

#[test]
fn wrong_receiver_certificate_fails_without_dialback_and_says_why() {
    let d = s(Required, Required, true);
    let e = negotiate(d, d, "partner.example", "imposter.example").unwrap_err();
    assert!(e.contains("not valid for example.com"), "{e}");
}

#[test]
fn wrong_initiator_certificate_falls_back_to_tls_dialback() {
    let d = s(Required, Optional, true);
    assert_eq!(
        negotiate(d, d, "imposter.example", "example.com"),
        Ok(Method::TlsDialback)
    );
}

#[test]
fn tls_not_supported_on_both_sides_uses_plain_dialback() {
    let d = s(NotSupported, NotSupported, true);
    assert_eq!(
        negotiate(d, d, "partner.example", "example.com"),
        Ok(Method::TcpDialback)
    );
}

#[test]
fn tls_required_against_tls_not_supported_fails_clearly() {
    let e = negotiate(
        s(Required, Required, true),
        s(NotSupported, NotSupported, true),
        "partner.example",
        "example.com",
    )
    .unwrap_err();
    assert!(e.contains("does not offer STARTTLS"), "{e}");
}

#[test]
fn certificate_shortcut_when_dialback_is_used_with_a_valid_certificate() {
    // The initiator does not do SASL; the receiver accepts its dialback by certificate.
    let ours = s(Required, NotSupported, true);
    let theirs = s(Required, Optional, true);
    assert_eq!(
        negotiate(ours, theirs, "partner.example", "example.com"),
        Ok(Method::TlsDialback)
    );
}
