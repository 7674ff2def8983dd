//! Stream headers, stream ids and stream features (RFC 6120 §4, §4.3), with the SASL EXTERNAL
//! (XEP-0178), dialback (XEP-0220 §2.1), bidi (XEP-0288) and stream-limits (XEP-0478) bits a
//! server-to-server stream negotiates.

use crate::element::Element;
use crate::framer::StreamHeader;
use crate::ns;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A fresh, unguessable stream id: 128 bits from the system CSPRNG, hex. Dialback keys are
/// bound to it, so it must never repeat nor be predictable.
pub fn new_stream_id() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random number generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header we answer with when a peer's stream fails before we know who it is: a fresh
/// id and nothing else, so the stream error that follows is well-formed XMPP.
pub fn default_header() -> StreamHeader {
    StreamHeader {
        id: Some(new_stream_id()),
        version: Some("1.0".into()),
        ..StreamHeader::default()
    }
}

/// Serialises an opening `<stream:stream>` tag for a `jabber:server` stream, declaring the
/// dialback prefix as peers expect.
pub fn open_stream(header: &StreamHeader) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='");
    out.push_str(ns::STREAMS);
    out.push_str("' xmlns:db='");
    out.push_str(ns::DIALBACK);
    out.push('\'');
    let fields = [
        ("from", &header.from),
        ("to", &header.to),
        ("id", &header.id),
        ("version", &header.version),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            out.push(' ');
            out.push_str(name);
            out.push_str("='");
            out.push_str(&escape_attr(v));
            out.push('\'');
        }
    }
    if let Some(lang) = &header.lang {
        out.push_str(" xml:lang='");
        out.push_str(&escape_attr(lang));
        out.push('\'');
    }
    out.push('>');
    out
}

/// `</stream:stream>`.
pub const CLOSE_STREAM: &str = "</stream:stream>";

fn escape_attr(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    crate::element::escape_into(&mut out, v, true);
    out
}

/// Features a receiving server offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `Some(required)` when STARTTLS is offered.
    pub starttls: Option<bool>,
    pub sasl_external: bool,
    /// XEP-0220 `<dialback><errors/></dialback>`.
    pub dialback: bool,
    /// XEP-0288.
    pub bidi: bool,
    /// XEP-0478: `(max-bytes, idle-seconds)`.
    pub limits: Option<(u64, u64)>,
}

impl Features {
    pub fn to_element(&self) -> Element {
        let mut f = Element::new(ns::STREAMS, "features");
        if let Some(required) = self.starttls {
            let mut st = Element::new(ns::TLS, "starttls");
            if required {
                st = st.child(Element::new(ns::TLS, "required"));
            }
            f = f.child(st);
        }
        if self.sasl_external {
            f = f.child(
                Element::new(ns::SASL, "mechanisms")
                    .child(Element::new(ns::SASL, "mechanism").text("EXTERNAL")),
            );
        }
        if self.dialback {
            f = f.child(
                Element::new(ns::DIALBACK_FEATURES, "dialback")
                    .child(Element::new(ns::DIALBACK_FEATURES, "errors")),
            );
        }
        if self.bidi {
            f = f.child(Element::new(ns::BIDI_FEATURE, "bidi"));
        }
        if let Some((bytes, idle)) = self.limits {
            f = f.child(
                Element::new(ns::STREAM_LIMITS, "limits")
                    .child(Element::new(ns::STREAM_LIMITS, "max-bytes").text(bytes.to_string()))
                    .child(Element::new(ns::STREAM_LIMITS, "idle-seconds").text(idle.to_string())),
            );
        }
        f
    }

    /// Reads received `<stream:features>`; `None` if the element is something else.
    pub fn from_element(e: &Element) -> Option<Self> {
        if !e.is(ns::STREAMS, "features") {
            return None;
        }
        let starttls = e
            .get_child(ns::TLS, "starttls")
            .map(|st| st.get_child(ns::TLS, "required").is_some());
        let sasl_external = e.get_child(ns::SASL, "mechanisms").is_some_and(|m| {
            m.elements()
                .any(|c| c.is(ns::SASL, "mechanism") && c.text_content().trim() == "EXTERNAL")
        });
        let limits = e.get_child(ns::STREAM_LIMITS, "limits").map(|l| {
            let num = |n: &str| {
                l.get_child(ns::STREAM_LIMITS, n)
                    .and_then(|c| c.text_content().trim().parse().ok())
                    .unwrap_or(0)
            };
            (num("max-bytes"), num("idle-seconds"))
        });
        Some(Self {
            starttls,
            sasl_external,
            dialback: e.get_child(ns::DIALBACK_FEATURES, "dialback").is_some(),
            bidi: e.get_child(ns::BIDI_FEATURE, "bidi").is_some(),
            limits,
        })
    }
}

/// `<starttls/>`, `<proceed/>`, `<failure/>` of the TLS namespace.
pub fn tls_element(name: &str) -> Element {
    Element::new(ns::TLS, name)
}

/// `<auth mechanism='EXTERNAL'>` with the authorization identity (XEP-0178 §3: the
/// initiator's domain, base64; `=` for an empty one).
pub fn sasl_external_auth(authzid: Option<&str>) -> Element {
    let payload = match authzid {
        Some(id) if !id.is_empty() => BASE64.encode(id),
        _ => "=".to_string(),
    };
    Element::new(ns::SASL, "auth")
        .attr("mechanism", "EXTERNAL")
        .text(payload)
}

/// What a received `<auth/>` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslAuth {
    /// EXTERNAL with an optional authorization identity.
    External { authzid: Option<String> },
    /// Any other mechanism (never offered to servers).
    Unsupported(String),
}

/// Reads a received `<auth/>`. `Err` when the payload is not valid base64/UTF-8.
pub fn parse_sasl_auth(e: &Element) -> Option<Result<SaslAuth, String>> {
    if !e.is(ns::SASL, "auth") {
        return None;
    }
    let mechanism = e.get_attr("mechanism").unwrap_or_default();
    if mechanism != "EXTERNAL" {
        return Some(Ok(SaslAuth::Unsupported(
            mechanism.chars().take(40).collect(),
        )));
    }
    let text = e.text_content();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(Ok(SaslAuth::External { authzid: None }));
    }
    Some(
        BASE64
            .decode(text)
            .map_err(|e| format!("the authorization identity is not base64: {e}"))
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| "the authorization identity is not UTF-8".into())
            })
            .map(|s| SaslAuth::External {
                authzid: (!s.is_empty()).then_some(s),
            }),
    )
}

/// `<success/>`.
pub fn sasl_success() -> Element {
    Element::new(ns::SASL, "success")
}

/// `<failure><condition/><text/></failure>` of the SASL namespace.
pub fn sasl_failure(condition: &str, text: &str) -> Element {
    Element::new(ns::SASL, "failure")
        .child(Element::new(ns::SASL, condition))
        .child(Element::new(ns::SASL, "text").text(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Frame, FramerLimits, StanzaFramer};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    #[test]
    fn stream_ids_are_fresh_and_long() {
        let a = new_stream_id();
        let b = new_stream_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn header_and_features_round_trip_through_the_framer() {
        let header = StreamHeader {
            to: Some("partner.example".into()),
            from: Some("o'reilly.example".into()),
            id: Some("abc".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
        };
        let features = Features {
            starttls: Some(true),
            sasl_external: true,
            dialback: true,
            bidi: true,
            limits: Some((262144, 600)),
        };
        let mut wire = open_stream(&header);
        wire.push_str(&features.to_element().to_xml_in(ns::SERVER));
        let mut framer = StanzaFramer::new(FramerLimits::PRE_AUTH);
        let mut buf = BytesMut::from(wire.as_bytes());
        assert_eq!(
            framer.decode(&mut buf).unwrap(),
            Some(Frame::Header(header))
        );
        let Some(Frame::Element(e)) = framer.decode(&mut buf).unwrap() else {
            panic!("features expected")
        };
        assert_eq!(Features::from_element(&e), Some(features));
    }

    #[test]
    fn sasl_external_authzid_forms() {
        let parse = |e: &Element| parse_sasl_auth(e).unwrap().unwrap();
        assert_eq!(
            parse(&sasl_external_auth(Some("partner.example"))),
            SaslAuth::External {
                authzid: Some("partner.example".into())
            }
        );
        assert_eq!(
            parse(&sasl_external_auth(None)),
            SaslAuth::External { authzid: None }
        );
        let plain = Element::new(ns::SASL, "auth").attr("mechanism", "PLAIN");
        assert_eq!(parse(&plain), SaslAuth::Unsupported("PLAIN".into()));
        let bad = Element::new(ns::SASL, "auth")
            .attr("mechanism", "EXTERNAL")
            .text("!!");
        assert!(parse_sasl_auth(&bad).unwrap().is_err());
    }
}
