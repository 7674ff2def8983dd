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
    run(ours, theirs, initiator_cert, receiver_cert, false).0
}

/// [`negotiate`], optionally asking for bidi, and the two machines afterwards.
fn run(
    ours: NegotiationSettings,
    theirs: NegotiationSettings,
    initiator_cert: &str,
    receiver_cert: &str,
    request_bidi: bool,
) -> (Result<Method, String>, OutboundSession, InboundSession) {
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
    if request_bidi {
        out = out.with_bidi();
    }
    let policy = Receiver { partner: theirs };
    let mut inb = InboundSession::new(
        c.trust.clone(),
        DialbackSecret::new("ours"),
        false,
        Vec::new(),
    );
    let result = drive(
        &c,
        &secret,
        &policy,
        &mut out,
        &mut inb,
        initiator_cert,
        receiver_cert,
    );
    (result, out, inb)
}

fn drive(
    c: &Certs,
    secret: &DialbackSecret,
    policy: &Receiver,
    out: &mut OutboundSession,
    inb: &mut InboundSession,
    initiator_cert: &str,
    receiver_cert: &str,
) -> Result<Method, String> {
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
                Action::Verified(_) | Action::Received(_) => unreachable!(),
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
            inbound_actions.extend(inb.handle(input, policy));
        }
        let mut queue: std::collections::VecDeque<_> = inbound_actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                inbound::Action::Send(s) => wire_out.extend_from_slice(s.as_bytes()),
                inbound::Action::StartTls => {
                    queue.extend(inb.handle(
                        inbound::Input::TlsEstablished(c.chain(initiator_cert)),
                        policy,
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
                        policy,
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

fn stanza(from: &str, to: &str) -> Element {
    Element::new(ns::SERVER, "message")
        .attr("from", from)
        .attr("to", to)
        .child(Element::new(ns::SERVER, "body").text("hi"))
}

fn fail_condition(actions: &[Action]) -> Option<C> {
    actions.iter().find_map(|a| match a {
        Action::Fail { send: Some(e), .. } => Some(e.condition),
        _ => None,
    })
}

#[test]
fn bidi_is_asked_for_when_offered_and_carries_the_reverse_pair_only() {
    let ours = s(Required, Required, true);
    let (result, mut out, inb) = run(ours, ours, "partner.example", "example.com", true);
    assert_eq!(result, Ok(Method::SaslExternal));
    assert!(out.is_bidi() && inb.is_bidi(), "both sides agreed on bidi");

    // Our stream is partner.example → example.com; the peer may send example.com → partner.example.
    let back = stanza("alice@example.com/r", "bob@partner.example");
    assert_eq!(
        out.handle(Input::Element(back.clone())),
        vec![Action::Received(back)]
    );
    let spoofed = out.handle(Input::Element(stanza(
        "eve@other.example",
        "bob@partner.example",
    )));
    assert_eq!(
        fail_condition(&spoofed),
        Some(C::InvalidFrom),
        "{spoofed:?}"
    );
}

#[test]
fn a_bidi_stanza_to_another_domain_is_host_unknown() {
    let ours = s(Required, Required, true);
    let (_, mut out, _) = run(ours, ours, "partner.example", "example.com", true);
    let elsewhere = out.handle(Input::Element(stanza(
        "alice@example.com",
        "bob@third.example",
    )));
    assert_eq!(
        fail_condition(&elsewhere),
        Some(C::HostUnknown),
        "{elsewhere:?}"
    );
    let (_, mut out, _) = run(ours, ours, "partner.example", "example.com", true);
    let unaddressed = out.handle(Input::Element(
        Element::new(ns::SERVER, "message").attr("to", "bob@partner.example"),
    ));
    assert_eq!(fail_condition(&unaddressed), Some(C::ImproperAddressing));
}

#[test]
fn without_asking_for_bidi_a_stanza_from_the_peer_is_refused() {
    let ours = s(Required, Required, true);
    let (result, mut out, inb) = run(ours, ours, "partner.example", "example.com", false);
    assert_eq!(result, Ok(Method::SaslExternal));
    assert!(!out.is_bidi() && !inb.is_bidi());
    let refused = out.handle(Input::Element(stanza(
        "alice@example.com",
        "bob@partner.example",
    )));
    assert_eq!(fail_condition(&refused), Some(C::UnsupportedStanzaType));
}

#[test]
fn bidi_works_with_dialback_too() {
    // A certificate for another name: no SASL EXTERNAL, dialback over TLS, still bidi.
    let ours = s(Required, Optional, true);
    let (result, out, inb) = run(ours, ours, "imposter.example", "example.com", true);
    assert_eq!(result, Ok(Method::TlsDialback));
    assert!(out.is_bidi() && inb.is_bidi());
}

#[test]
fn no_bidi_when_the_peer_certificate_does_not_prove_its_domain() {
    // Dialback over TLS still authenticates us to a receiver whose certificate names another
    // domain, but nothing proves the receiver is example.com: its stanzas must not come back
    // over this stream.
    let ours = s(Required, Optional, true);
    let (result, mut out, inb) = run(ours, ours, "partner.example", "imposter.example", true);
    assert_eq!(result, Ok(Method::TlsDialback));
    assert!(!out.is_bidi() && !inb.is_bidi());
    let refused = out.handle(Input::Element(stanza(
        "alice@example.com",
        "bob@partner.example",
    )));
    assert_eq!(fail_condition(&refused), Some(C::UnsupportedStanzaType));
}
