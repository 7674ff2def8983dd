//! Arbitrary bytes as a partner's stream into the framer and the receiving state machine:
//! no panic, nothing delivered from an unauthenticated peer, every error says why.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use tokio_util::codec::Decoder;
use xmppfed_policy::{Negotiation, NegotiationSettings};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::framer::{Frame, FramerLimits, StanzaFramer};
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::inbound::{Action, InboundPolicy, InboundSession, Input};

struct Policy;

impl InboundPolicy for Policy {
    fn serves(&self, d: &str) -> bool {
        d == "example.com"
    }
    fn partner(&self, d: &str) -> Option<NegotiationSettings> {
        (d == "partner.example").then(|| {
            NegotiationSettings::new(Negotiation::Optional, Negotiation::Optional, true)
        })
    }
    fn max_stanza_bytes(&self) -> usize {
        65_536
    }
    fn idle_seconds(&self) -> u64 {
        600
    }
}

fuzz_target!(|data: &[u8]| {
    let mut framer = StanzaFramer::new(FramerLimits::PRE_AUTH);
    let mut session = InboundSession::new(
        Arc::new(TrustStore::new()),
        DialbackSecret::new("fuzz"),
        false,
        Vec::new(),
    );
    let mut buf = BytesMut::from(data);
    loop {
        let input = match framer.decode(&mut buf) {
            Ok(Some(Frame::Header(h))) => Input::Header(h),
            Ok(Some(Frame::Element(e))) => Input::Element(e),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        };
        for action in session.handle(input, &Policy) {
            match action {
                // No dialback answer ever comes back and TLS never completes here, so
                // nothing may be delivered.
                Action::Deliver { .. } => panic!("delivered from an unauthenticated peer"),
                Action::Close(Some(e)) => assert!(!e.text.is_empty()),
                Action::ResetFramer(l) => framer.reset(l),
                Action::SetLimits(l) => framer.set_limits(l),
                _ => {}
            }
        }
    }
});
