use super::*;
use crate::devca::{CertSpec, DevCa};
use crate::stream_error::StreamErrorCondition;
use std::collections::HashMap;
use xmppfed_policy::Negotiation::{self, NotSupported, Optional, Required};

struct TestPolicy {
    partners: HashMap<String, NegotiationSettings>,
}

impl InboundPolicy for TestPolicy {
    fn serves(&self, domain: &str) -> bool {
        domain == "example.com"
    }
    fn partner(&self, domain: &str) -> Option<NegotiationSettings> {
        self.partners.get(domain).copied()
    }
    fn max_stanza_bytes(&self) -> usize {
        262_144
    }
    fn idle_seconds(&self) -> u64 {
        600
    }
}

fn policy(tls: Negotiation, sasl: Negotiation, dialback: bool) -> TestPolicy {
    TestPolicy {
        partners: HashMap::from([(
            "partner.example".to_string(),
            NegotiationSettings::new(tls, sasl, dialback),
        )]),
    }
}

struct Fixture {
    ca: DevCa,
    trust: Arc<TrustStore>,
    secret: DialbackSecret,
}

fn fixture() -> Fixture {
    let ca = DevCa::new("test CA").unwrap();
    let mut trust = TrustStore::new();
    trust.add(&ca.cert_der).unwrap();
    Fixture {
        ca,
        trust: Arc::new(trust),
        secret: DialbackSecret::new("secret"),
    }
}

impl Fixture {
    fn session(&self) -> InboundSession {
        InboundSession::new(self.trust.clone(), self.secret.clone(), false, Vec::new())
    }
    fn chain(&self, domain: &str) -> Vec<CertificateDer<'static>> {
        vec![
            self.ca
                .issue(&CertSpec::for_domain(domain))
                .unwrap()
                .cert_der,
        ]
    }
}

fn header(from: Option<&str>, to: &str) -> Input {
    Input::Header(StreamHeader {
        from: from.map(str::to_string),
        to: Some(to.to_string()),
        id: None,
        version: Some("1.0".into()),
        lang: None,
    })
}

fn message(from: &str, to: &str) -> Input {
    Input::Element(
        Element::new(ns::SERVER, "message")
            .attr("from", from)
            .attr("to", to)
            .child(Element::new(ns::SERVER, "body").text("hi")),
    )
}

fn closed_with(actions: &[Action]) -> Option<(StreamErrorCondition, String)> {
    actions.iter().find_map(|a| match a {
        Action::Close(Some(e)) => Some((e.condition, e.text.clone())),
        _ => None,
    })
}

fn sent(actions: &[Action]) -> String {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

/// Plaintext header, STARTTLS, handshake with a certificate for `cert_domain`, new header.
fn through_tls(
    f: &Fixture,
    s: &mut InboundSession,
    p: &TestPolicy,
    cert_domain: &str,
) -> Vec<Action> {
    let a = s.handle(header(Some("partner.example"), "example.com"), p);
    assert!(sent(&a).contains("<starttls"), "{a:?}");
    let a = s.handle(Input::Element(stream::tls_element("starttls")), p);
    assert_eq!(a.last(), Some(&Action::StartTls));
    s.handle(Input::TlsEstablished(f.chain(cert_domain)), p);
    s.handle(header(Some("partner.example"), "example.com"), p)
}

#[test]
fn unserved_to_gets_host_unknown_after_our_header() {
    let f = fixture();
    let a = f.session().handle(
        header(Some("partner.example"), "other.example"),
        &policy(Required, Required, true),
    );
    assert!(sent(&a).starts_with("<?xml"), "our header goes first");
    assert_eq!(
        closed_with(&a).unwrap().0,
        StreamErrorCondition::HostUnknown
    );
}

#[test]
fn unlisted_partner_gets_policy_violation_with_reason() {
    let f = fixture();
    let a = f.session().handle(
        header(Some("stranger.example"), "example.com"),
        &policy(Required, Required, true),
    );
    let (condition, text) = closed_with(&a).unwrap();
    assert_eq!(condition, StreamErrorCondition::PolicyViolation);
    assert!(
        text.contains("stranger.example is not an allowed partner"),
        "{text}"
    );
}

#[test]
fn default_partner_negotiates_sasl_external_and_relays_stanzas() {
    let f = fixture();
    let p = policy(Required, Required, true);
    let mut pre = f.session();
    let a = pre.handle(header(Some("Partner.Example"), "example.com"), &p);
    assert!(
        sent(&a)
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
    );
    assert!(
        !sent(&a).contains("urn:xmpp:features:dialback"),
        "row 1: no plaintext dialback"
    );
    let mut s = f.session();
    let a = through_tls(&f, &mut s, &p, "partner.example");
    let features = sent(&a);
    assert!(
        features.contains("<mechanism>EXTERNAL</mechanism>"),
        "{features}"
    );
    assert!(
        !features.contains("urn:xmpp:features:dialback"),
        "row 1: dialback does not operate"
    );
    assert!(features.contains("<max-bytes>262144</max-bytes>"));
    let a = s.handle(
        Input::Element(stream::sasl_external_auth(Some("partner.example"))),
        &p,
    );
    assert!(sent(&a).contains("<success"));
    assert!(a.contains(&Action::Authenticated {
        from: "partner.example".into(),
        to: "example.com".into(),
        method: Method::SaslExternal
    }));
    let a = s.handle(header(Some("partner.example"), "example.com"), &p);
    assert!(
        !sent(&a).contains("mechanism"),
        "no auth offered after success"
    );
    let a = s.handle(
        message("alice@partner.example/phone", "bob@example.com"),
        &p,
    );
    assert!(
        matches!(&a[..], [Action::Deliver { from, to, .. }] if from == "partner.example" && to == "example.com")
    );
}

#[test]
fn spoofed_and_misaddressed_stanzas_are_refused() {
    let f = fixture();
    let p = policy(Required, Required, true);
    let mut s = f.session();
    through_tls(&f, &mut s, &p, "partner.example");
    s.handle(Input::Element(stream::sasl_external_auth(None)), &p);
    s.handle(header(Some("partner.example"), "example.com"), &p);
    let mut spoof = f.session();
    through_tls(&f, &mut spoof, &p, "partner.example");
    spoof.handle(Input::Element(stream::sasl_external_auth(None)), &p);
    spoof.handle(header(Some("partner.example"), "example.com"), &p);
    let a = spoof.handle(message("eve@evil.example", "bob@example.com"), &p);
    assert_eq!(
        closed_with(&a).unwrap().0,
        StreamErrorCondition::InvalidFrom
    );
    let a = s.handle(
        message("alice@partner.example", "bob@elsewhere.example"),
        &p,
    );
    assert_eq!(
        closed_with(&a).unwrap().0,
        StreamErrorCondition::HostUnknown
    );
}

#[test]
fn stanzas_before_authentication_are_not_authorized() {
    let f = fixture();
    let p = policy(Required, Required, true);
    let mut s = f.session();
    s.handle(header(Some("partner.example"), "example.com"), &p);
    let a = s.handle(message("alice@partner.example", "bob@example.com"), &p);
    assert_eq!(
        closed_with(&a).unwrap().0,
        StreamErrorCondition::NotAuthorized
    );
}

#[test]
fn wrong_domain_certificate_without_dialback_is_not_authorized() {
    let f = fixture();
    let p = policy(Required, Required, false);
    let mut s = f.session();
    let a = through_tls(&f, &mut s, &p, "imposter.example");
    let (condition, text) = closed_with(&a).unwrap();
    assert_eq!(condition, StreamErrorCondition::NotAuthorized);
    assert!(text.contains("not valid for partner.example"), "{text}");
}

#[test]
fn wrong_domain_certificate_falls_back_to_dialback_where_allowed() {
    let f = fixture();
    let p = policy(Required, Optional, true);
    let mut s = f.session();
    let a = through_tls(&f, &mut s, &p, "imposter.example");
    let features = sent(&a);
    assert!(!features.contains("EXTERNAL"), "{features}");
    assert!(
        features.contains("urn:xmpp:features:dialback"),
        "{features}"
    );
}

#[test]
fn plain_dialback_is_verified_with_the_authoritative_server() {
    let f = fixture();
    let p = policy(Optional, NotSupported, true);
    let mut s = f.session();
    let a = s.handle(header(Some("partner.example"), "example.com"), &p);
    assert!(
        sent(&a).contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "optional TLS"
    );
    assert!(sent(&a).contains("urn:xmpp:features:dialback"));
    let a = s.handle(
        Input::Element(dialback::result_request(
            "partner.example",
            "example.com",
            "k",
        )),
        &p,
    );
    assert!(
        matches!(&a[..], [Action::VerifyDialback { from, key, .. }] if from == "partner.example" && key == "k")
    );
    let a = s.handle(
        Input::DialbackChecked {
            from: "partner.example".into(),
            to: "example.com".into(),
            result: Ok(true),
        },
        &p,
    );
    assert!(sent(&a).contains("type='valid'"));
    assert!(a.contains(&Action::Authenticated {
        from: "partner.example".into(),
        to: "example.com".into(),
        method: Method::TcpDialback
    }));
    let a = s.handle(message("alice@partner.example", "bob@example.com"), &p);
    assert!(matches!(&a[..], [Action::Deliver { .. }]));
}

#[test]
fn forged_dialback_key_closes_the_stream() {
    let f = fixture();
    let p = policy(Optional, NotSupported, true);
    let mut s = f.session();
    s.handle(header(Some("partner.example"), "example.com"), &p);
    s.handle(
        Input::Element(dialback::result_request(
            "partner.example",
            "example.com",
            "forged",
        )),
        &p,
    );
    let a = s.handle(
        Input::DialbackChecked {
            from: "partner.example".into(),
            to: "example.com".into(),
            result: Ok(false),
        },
        &p,
    );
    assert!(sent(&a).contains("type='invalid'"));
    assert_eq!(
        closed_with(&a).unwrap().0,
        StreamErrorCondition::NotAuthorized
    );
}

#[test]
fn plaintext_dialback_is_refused_when_tls_is_required() {
    let f = fixture();
    let p = policy(Required, NotSupported, true);
    let mut s = f.session();
    let a = s.handle(header(Some("partner.example"), "example.com"), &p);
    assert!(!sent(&a).contains("urn:xmpp:features:dialback"));
    let a = s.handle(
        Input::Element(dialback::result_request(
            "partner.example",
            "example.com",
            "k",
        )),
        &p,
    );
    let (condition, text) = closed_with(&a).unwrap();
    assert_eq!(condition, StreamErrorCondition::PolicyViolation, "{text}");
}

#[test]
fn certificate_shortcut_skips_the_callback() {
    let f = fixture();
    let p = policy(Required, Optional, true);
    let mut s = f.session();
    through_tls(&f, &mut s, &p, "partner.example");
    let a = s.handle(
        Input::Element(dialback::result_request(
            "partner.example",
            "example.com",
            "k",
        )),
        &p,
    );
    assert!(sent(&a).contains("type='valid'"), "{a:?}");
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Authenticated {
            method: Method::DialbackCertificate,
            ..
        }
    )));
}

#[test]
fn verify_requests_are_answered_from_the_shared_secret() {
    let f = fixture();
    let p = policy(Required, Required, true);
    let mut s = f.session();
    s.handle(header(Some("partner.example"), "example.com"), &p);
    let key = f.secret.key("partner.example", "example.com", "sid");
    let a = s.handle(
        Input::Element(dialback::verify_request(
            "partner.example",
            "example.com",
            "sid",
            &key,
        )),
        &p,
    );
    assert!(sent(&a).contains("type='valid'"));
    let a = s.handle(
        Input::Element(dialback::verify_request(
            "partner.example",
            "example.com",
            "sid",
            "00ff",
        )),
        &p,
    );
    assert!(sent(&a).contains("type='invalid'"));
}

#[test]
fn policy_changes_close_or_reset_authenticated_streams() {
    let f = fixture();
    let p = policy(Optional, NotSupported, true);
    let mut s = f.session();
    s.handle(header(Some("partner.example"), "example.com"), &p);
    s.handle(
        Input::Element(dialback::result_request(
            "partner.example",
            "example.com",
            "k",
        )),
        &p,
    );
    s.handle(
        Input::DialbackChecked {
            from: "partner.example".into(),
            to: "example.com".into(),
            result: Ok(true),
        },
        &p,
    );
    assert_eq!(s.recheck(&p), None, "unchanged policy keeps the stream");
    let tightened = policy(Required, NotSupported, true);
    assert_eq!(
        s.recheck(&tightened).unwrap().condition,
        StreamErrorCondition::Reset
    );
    let mut s2 = f.session();
    s2.handle(header(Some("partner.example"), "example.com"), &p);
    let removed = TestPolicy {
        partners: HashMap::new(),
    };
    let e = s2.recheck(&removed).unwrap();
    assert_eq!(e.condition, StreamErrorCondition::PolicyViolation);
    assert!(e.text.contains("removed"));
}

#[test]
fn mismatched_authzid_is_refused() {
    let f = fixture();
    let p = policy(Required, Required, false);
    let mut s = f.session();
    through_tls(&f, &mut s, &p, "partner.example");
    let a = s.handle(
        Input::Element(stream::sasl_external_auth(Some("other.example"))),
        &p,
    );
    assert!(sent(&a).contains("invalid-authzid"));
    assert_eq!(
        closed_with(&a).unwrap().0,
        StreamErrorCondition::NotAuthorized
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn domain() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("example.com".to_string()),
            Just("partner.example".to_string()),
            Just("stranger.example".to_string()),
            Just("".to_string()),
            Just("a@b/c".to_string()),
            "[a-zA-Z0-9.\\-]{0,20}",
        ]
    }

    fn element() -> impl Strategy<Value = Element> {
        let name = prop_oneof![
            Just((ns::TLS, "starttls")),
            Just((ns::SASL, "auth")),
            Just((ns::DIALBACK, "result")),
            Just((ns::DIALBACK, "verify")),
            Just((ns::SERVER, "message")),
            Just((ns::SERVER, "iq")),
            Just((ns::STREAMS, "error")),
            Just(("urn:x", "junk")),
        ];
        (name, domain(), domain(), "[ -~]{0,40}", any::<bool>()).prop_map(
            |((n, local), from, to, text, typed)| {
                let mut e = Element::new(n, local)
                    .attr("from", from)
                    .attr("to", to)
                    .attr("id", "i");
                if local == "auth" {
                    e = e.attr("mechanism", if typed { "EXTERNAL" } else { "PLAIN" });
                }
                if typed && n == ns::DIALBACK {
                    e = e.attr("type", "valid");
                }
                e.text(text)
            },
        )
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (
                proptest::option::of(domain()),
                proptest::option::of(domain()),
                any::<bool>()
            )
                .prop_map(|(from, to, v1)| {
                    Input::Header(StreamHeader {
                        from,
                        to,
                        id: None,
                        version: v1.then(|| "1.0".to_string()),
                        lang: None,
                    })
                }),
            element().prop_map(Input::Element),
            Just(Input::TlsEstablished(Vec::new())),
            (domain(), domain(), any::<bool>()).prop_map(|(from, to, ok)| Input::DialbackChecked {
                from,
                to,
                result: Ok(ok)
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Whatever a peer sends, the session never panics, never delivers a stanza from an
        /// unauthenticated or unlisted domain, and every error it closes with says why.
        #[test]
        fn arbitrary_peers_are_policed(inputs in proptest::collection::vec(input(), 1..30)) {
            let f = fixture();
            let p = policy(Optional, Optional, true);
            let mut s = f.session();
            for i in inputs {
                for a in s.handle(i, &p) {
                    match a {
                        Action::Close(Some(e)) => prop_assert!(!e.text.is_empty()),
                        Action::Deliver { from, to, .. } => {
                            prop_assert_eq!(from.as_str(), "partner.example");
                            prop_assert_eq!(to.as_str(), "example.com");
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn bidi_request() -> Input {
    Input::Element(Element::new(ns::BIDI, "bidi"))
}

#[test]
fn bidi_is_offered_over_tls_and_taken_before_authentication() {
    let f = fixture();
    let p = policy(Required, Required, true);
    // Plaintext: not offered, and asking for it anyway is refused.
    let mut plain = f.session();
    let a = plain.handle(header(Some("partner.example"), "example.com"), &p);
    assert!(!sent(&a).contains("urn:xmpp:features:bidi"));
    let a = plain.handle(bidi_request(), &p);
    assert_eq!(
        closed_with(&a).map(|c| c.0),
        Some(StreamErrorCondition::UnsupportedFeature)
    );

    let mut s = f.session();
    let a = through_tls(&f, &mut s, &p, "partner.example");
    assert!(
        sent(&a).contains("<bidi xmlns='urn:xmpp:features:bidi'/>"),
        "{a:?}"
    );
    assert!(!s.is_bidi());
    assert!(s.handle(bidi_request(), &p).is_empty(), "no answer is sent");
    assert!(s.is_bidi());
    let a = s.handle(Input::Element(stream::sasl_external_auth(None)), &p);
    assert!(sent(&a).contains("<success"), "{a:?}");
    let a = s.handle(header(Some("partner.example"), "example.com"), &p);
    assert!(!sent(&a).contains("urn:xmpp:features:bidi"), "{a:?}");
    assert!(s.is_bidi(), "bidi survives the stream restart");
    // Once authenticated, it is too late to ask.
    let a = s.handle(bidi_request(), &p);
    assert_eq!(
        closed_with(&a).map(|c| c.0),
        Some(StreamErrorCondition::UnsupportedFeature)
    );
}
