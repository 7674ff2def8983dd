//! Server dialback (XEP-0220) with keys per XEP-0185, and the XEP-0344 shortcut.
//!
//! The key is `hex(HMAC-SHA256(hex(SHA256(secret)), receiving ‖ ' ' ‖ originating ‖ ' ' ‖
//! stream-id))`: bound to the domain pair and the stream, verifiable by every replica that
//! shares the secret, and revealing nothing about the secret.

use crate::element::Element;
use crate::ns;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The shared dialback secret, kept only as the HMAC key XEP-0185 derives from it
/// (`hex(SHA256(secret))`). Its `Debug` never shows the value.
#[derive(Clone)]
pub struct DialbackSecret(String);

impl std::fmt::Debug for DialbackSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialbackSecret(<redacted>)")
    }
}

impl DialbackSecret {
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(hex(&Sha256::digest(secret.as_ref())))
    }

    /// The XEP-0185 key for a stream from `originating` to `receiving` with `stream_id`.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        hex(&self
            .mac(receiving, originating, stream_id)
            .finalize()
            .into_bytes())
    }

    fn mac(&self, receiving: &str, originating: &str, stream_id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(stream_id.as_bytes());
        mac
    }

    /// Constant-time check of a key received in `<db:verify/>`.
    pub fn verify(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> bool {
        let Some(tag) = unhex(key.trim()) else {
            return false;
        };
        self.mac(receiving, originating, stream_id)
            .verify_slice(&tag)
            .is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The outcome carried in `type=` of a dialback answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    Invalid,
    /// `type='error'`: XEP-0220 §2.4, a stanza-style error, never a stream error.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

/// A dialback element received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialback {
    /// `<db:result from to>key</db:result>`: the peer asks to be authorised for a pair.
    ResultRequest {
        from: String,
        to: String,
        key: String,
    },
    /// `<db:result from to type/>`: the answer to our request.
    ResultAnswer {
        from: String,
        to: String,
        outcome: Outcome,
    },
    /// `<db:verify from to id>key</db:verify>`: a receiving server asks us, the authoritative
    /// server, whether a key is ours.
    VerifyRequest {
        from: String,
        to: String,
        id: String,
        key: String,
    },
    /// `<db:verify from to id type/>`: the authoritative server's answer.
    VerifyAnswer {
        from: String,
        to: String,
        id: String,
        outcome: Outcome,
    },
}

/// Reads a dialback element. `None` when it is not one; `Err` names what is missing.
pub fn parse(e: &Element) -> Option<Result<Dialback, String>> {
    if e.ns != ns::DIALBACK || (e.name != "result" && e.name != "verify") {
        return None;
    }
    let attr = |n: &str| {
        e.get_attr(n)
            .map(str::to_string)
            .ok_or_else(|| format!("<db:{}/> without '{n}'", e.name))
    };
    let outcome = match e.get_attr("type") {
        None => None,
        Some("valid") => Some(Outcome::Valid),
        Some("invalid") => Some(Outcome::Invalid),
        Some("error") => Some(Outcome::Error),
        Some(other) => return Some(Err(format!("unknown dialback type {other:?}"))),
    };
    Some((|| {
        let (from, to) = (attr("from")?, attr("to")?);
        Ok(match (e.name.as_str(), outcome) {
            ("result", None) => Dialback::ResultRequest {
                from,
                to,
                key: e.text_content(),
            },
            ("result", Some(outcome)) => Dialback::ResultAnswer { from, to, outcome },
            (_, None) => Dialback::VerifyRequest {
                from,
                to,
                id: attr("id")?,
                key: e.text_content(),
            },
            (_, Some(outcome)) => Dialback::VerifyAnswer {
                from,
                to,
                id: attr("id")?,
                outcome,
            },
        })
    })())
}

/// `<db:result from to>key</db:result>`.
pub fn result_request(from: &str, to: &str, key: &str) -> Element {
    Element::new(ns::DIALBACK, "result")
        .attr("from", from)
        .attr("to", to)
        .text(key)
}

/// `<db:result from to type/>`, with an error condition for `Outcome::Error`.
pub fn result_answer(from: &str, to: &str, outcome: Outcome, error: Option<&str>) -> Element {
    with_error(
        Element::new(ns::DIALBACK, "result")
            .attr("from", from)
            .attr("to", to)
            .attr("type", outcome.as_str()),
        error,
    )
}

/// `<db:verify from to id>key</db:verify>`.
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    Element::new(ns::DIALBACK, "verify")
        .attr("from", from)
        .attr("to", to)
        .attr("id", id)
        .text(key)
}

/// `<db:verify from to id type/>`.
pub fn verify_answer(from: &str, to: &str, id: &str, outcome: Outcome) -> Element {
    Element::new(ns::DIALBACK, "verify")
        .attr("from", from)
        .attr("to", to)
        .attr("id", id)
        .attr("type", outcome.as_str())
}

fn with_error(e: Element, condition: Option<&str>) -> Element {
    match condition {
        Some(c) => e.child(
            Element::new(ns::SERVER, "error")
                .attr("type", "cancel")
                .child(Element::new(ns::STANZA_ERRORS, c)),
        ),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_an_independent_implementation() {
        // Computed with Python's hmac/hashlib from the XEP-0185 formula (as Prosody does).
        let secret = DialbackSecret::new("s3cr3tf0rd14lb4ck");
        assert_eq!(
            secret.key("example.com", "example.org", "D60000229F"),
            "d7fb5bc36a4d69257ad5852c04d920273764968e96c6ce2cb66948db50533302"
        );
    }

    #[test]
    fn keys_are_bound_to_pair_stream_and_secret() {
        let s = DialbackSecret::new("one");
        let k = s.key("a.example", "b.example", "id1");
        assert!(s.verify("a.example", "b.example", "id1", &k));
        assert!(!s.verify("b.example", "a.example", "id1", &k));
        assert!(!s.verify("a.example", "b.example", "id2", &k));
        assert!(!DialbackSecret::new("two").verify("a.example", "b.example", "id1", &k));
        assert!(!s.verify("a.example", "b.example", "id1", "forged"));
        assert_eq!(format!("{s:?}"), "DialbackSecret(<redacted>)");
    }

    #[test]
    fn parses_the_four_forms() {
        let p = |e: Element| parse(&e).unwrap().unwrap();
        assert_eq!(
            p(result_request("b", "a", "k")),
            Dialback::ResultRequest {
                from: "b".into(),
                to: "a".into(),
                key: "k".into()
            }
        );
        assert_eq!(
            p(result_answer("a", "b", Outcome::Invalid, None)),
            Dialback::ResultAnswer {
                from: "a".into(),
                to: "b".into(),
                outcome: Outcome::Invalid
            }
        );
        assert_eq!(
            p(verify_request("a", "b", "i", "k")),
            Dialback::VerifyRequest {
                from: "a".into(),
                to: "b".into(),
                id: "i".into(),
                key: "k".into()
            }
        );
        assert!(matches!(
            p(verify_answer("b", "a", "i", Outcome::Valid)),
            Dialback::VerifyAnswer {
                outcome: Outcome::Valid,
                ..
            }
        ));
        assert!(
            parse(
                &Element::new(ns::DIALBACK, "verify")
                    .attr("from", "a")
                    .attr("to", "b")
            )
            .unwrap()
            .is_err()
        );
        assert!(parse(&Element::new(ns::SERVER, "message")).is_none());
    }
}
