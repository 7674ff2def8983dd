//! The internal link between proxy and gateway (Lync's "MTLS 23456"): one mutual-TLS
//! connection per gateway and proxy, carrying an XMPP stream that multiplexes every domain
//! pair, with XEP-0198-style acknowledgements so the sender knows what it may forget.
//!
//! The gateway opens the TLS connection and the stream; the proxy answers with features that
//! name the link protocol. Stanzas then flow both ways, unchanged (full `from`/`to`). Each side
//! counts the stanzas it has received and sends `<a xmlns='urn:xmppfed:link:0' h='N'/>`;
//! unacknowledged stanzas are re-sent over another link, or bounced, when a link drops.
//! See `docs/internal-link.md`.

use crate::element::Element;
use crate::framer::StreamHeader;
use crate::stream;

pub const NS: &str = "urn:xmppfed:link:0";
/// The `to` of the gateway's stream header.
pub const PROXY_NAME: &str = "xmppfed-proxy";
/// Acknowledge at least every this many stanzas.
pub const ACK_EVERY: u64 = 32;
/// Most stanzas in flight without acknowledgement; beyond it the sender waits (backpressure).
pub const WINDOW: usize = 4096;

/// The gateway's opening header.
pub fn client_header(gateway_name: &str) -> String {
    stream::open_stream(&StreamHeader {
        from: Some(gateway_name.to_string()),
        to: Some(PROXY_NAME.to_string()),
        id: None,
        version: Some("1.0".into()),
        lang: None,
    })
}

/// The proxy's answer: header and link features.
pub fn server_header(gateway_name: &str, stream_id: &str) -> String {
    let mut out = stream::open_stream(&StreamHeader {
        from: Some(PROXY_NAME.to_string()),
        to: Some(gateway_name.to_string()),
        id: Some(stream_id.to_string()),
        version: Some("1.0".into()),
        lang: None,
    });
    out.push_str(
        &Element::new(crate::ns::STREAMS, "features")
            .child(Element::new(NS, "link"))
            .to_xml_in(crate::ns::SERVER),
    );
    out
}

/// `<a h='N'/>`: N stanzas received so far.
pub fn ack(h: u64) -> String {
    Element::new(NS, "a")
        .attr("h", h.to_string())
        .to_xml_in(crate::ns::SERVER)
}

/// Reads an ack.
pub fn parse_ack(e: &Element) -> Option<u64> {
    if e.is(NS, "a") {
        e.get_attr("h")?.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Frame, FramerLimits, StanzaFramer};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    #[test]
    fn acks_round_trip() {
        let mut f = StanzaFramer::new(FramerLimits::PRE_AUTH);
        let mut buf = BytesMut::from(server_header("gw-0", "sid").as_bytes());
        buf.extend_from_slice(ack(41).as_bytes());
        assert!(matches!(f.decode(&mut buf), Ok(Some(Frame::Header(_)))));
        let Ok(Some(Frame::Element(features))) = f.decode(&mut buf) else {
            panic!()
        };
        assert!(features.get_child(NS, "link").is_some());
        let Ok(Some(Frame::Element(a))) = f.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(parse_ack(&a), Some(41));
    }
}
