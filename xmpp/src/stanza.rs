//! Stanza errors and bounces (RFC 6120 §8.3): what the sender gets back when a stanza cannot
//! be delivered, so nothing is dropped silently.

use crate::element::Element;
use crate::ns;

/// Parses one stanza serialised for a stream whose default namespace is `jabber:server` (as
/// a link carries it), under the hardened framer. `None` unless `xml` is exactly one
/// well-formed element.
pub fn parse_standalone(xml: &str) -> Option<Element> {
    use crate::framer::{Frame, FramerLimits, StanzaFramer};
    use tokio_util::codec::Decoder;
    let mut framer = StanzaFramer::new(FramerLimits::authenticated(xml.len()));
    let mut buf = bytes::BytesMut::from(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}'>{xml}",
            ns::SERVER,
            ns::STREAMS
        )
        .as_bytes(),
    );
    let Ok(Some(Frame::Header(_))) = framer.decode(&mut buf) else {
        return None;
    };
    match framer.decode(&mut buf) {
        Ok(Some(Frame::Element(e))) if buf.iter().all(u8::is_ascii_whitespace) => Some(e),
        _ => None,
    }
}

/// Stanza kinds relayed between servers.
pub fn is_stanza(e: &Element) -> bool {
    matches!(e.name.as_str(), "message" | "presence" | "iq")
        && (e.ns == ns::SERVER || e.ns == ns::CLIENT)
}

/// The error reply to `stanza` with `condition` (a defined stanza error condition) and a
/// human-readable `text`. `None` for stanzas that must not be answered with an error
/// (errors themselves and IQ results, RFC 6120 §8.3.1), which the caller counts and logs.
pub fn bounce(stanza: &Element, condition: &str, text: &str) -> Option<Element> {
    let kind = stanza.get_attr("type").unwrap_or_default();
    if kind == "error" || (stanza.name == "iq" && kind == "result") {
        return None;
    }
    let error_type = match condition {
        "remote-server-timeout" | "resource-constraint" | "service-unavailable" => "wait",
        _ => "cancel",
    };
    let mut reply = Element::new(ns::SERVER, stanza.name.clone());
    if let Some(id) = stanza.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(to) = stanza.get_attr("to") {
        reply.set_attr("from", to);
    }
    if let Some(from) = stanza.get_attr("from") {
        reply.set_attr("to", from);
    }
    reply.set_attr("type", "error");
    // Keep the original payload of messages so the sender can tell which one failed.
    if stanza.name == "message" {
        reply.children = stanza.children.clone();
    }
    Some(
        reply.child(
            Element::new(ns::SERVER, "error")
                .attr("type", error_type)
                .child(Element::new(ns::STANZA_ERRORS, condition))
                .child(Element::new(ns::STANZA_ERRORS, "text").text(text)),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_stanza_parses_back_to_its_tree() {
        let e = Element::new(ns::SERVER, "message")
            .attr("to", "a@contoso.com")
            .child(Element::new(ns::SERVER, "body").text("1 < 2"))
            .child(Element::new("urn:xmpp:receipts", "request"));
        assert_eq!(parse_standalone(&e.to_xml_in(ns::SERVER)), Some(e));
        for bad in ["<a/><b/>", "<a>", "text", "<db:result/>", "", "<a/>x"] {
            assert_eq!(parse_standalone(bad), None, "{bad}");
        }
    }

    #[test]
    fn bounces_swap_addresses_and_carry_the_reason() {
        let m = Element::new(ns::SERVER, "message")
            .attr("from", "alice@example.com/a")
            .attr("to", "bob@partner.example")
            .attr("id", "m1")
            .child(Element::new(ns::SERVER, "body").text("hi"));
        let b = bounce(
            &m,
            "remote-server-not-found",
            "partner.example has no XMPP service",
        )
        .unwrap();
        assert_eq!(b.get_attr("from"), Some("bob@partner.example"));
        assert_eq!(b.get_attr("to"), Some("alice@example.com/a"));
        assert_eq!(b.get_attr("type"), Some("error"));
        assert_eq!(b.get_attr("id"), Some("m1"));
        let xml = b.to_xml_in(ns::SERVER);
        assert!(
            xml.contains("<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"),
            "{xml}"
        );
        assert!(xml.contains("has no XMPP service"));
        assert!(xml.contains("<body>hi</body>"));
    }

    #[test]
    fn errors_and_results_are_never_bounced() {
        let e = Element::new(ns::SERVER, "message").attr("type", "error");
        assert!(bounce(&e, "service-unavailable", "x").is_none());
        let r = Element::new(ns::SERVER, "iq").attr("type", "result");
        assert!(bounce(&r, "service-unavailable", "x").is_none());
    }
}
