//! XML namespaces of XMPP server-to-server streams.

use std::borrow::Cow;

pub const STREAMS: &str = "http://etherx.jabber.org/streams";
pub const SERVER: &str = "jabber:server";
pub const CLIENT: &str = "jabber:client";
pub const DIALBACK: &str = "jabber:server:dialback";
pub const DIALBACK_FEATURES: &str = "urn:xmpp:features:dialback";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const PING: &str = "urn:xmpp:ping";
pub const STREAM_LIMITS: &str = "urn:xmpp:stream-limits:0";
pub const BIDI: &str = "urn:xmpp:bidi";
pub const BIDI_FEATURE: &str = "urn:xmpp:features:bidi";
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";

/// A namespace name as stored in parsed elements: the common ones borrowed from a static table,
/// so that framing a stanza does not allocate a copy of `jabber:server` for every element.
pub type Namespace = Cow<'static, str>;

/// The static copy of a well-known namespace, or the string itself.
pub fn intern(uri: String) -> Namespace {
    const KNOWN: &[&str] = &[
        SERVER,
        CLIENT,
        STREAMS,
        DIALBACK,
        DIALBACK_FEATURES,
        TLS,
        SASL,
        STREAM_ERRORS,
        STANZA_ERRORS,
        PING,
        STREAM_LIMITS,
        BIDI,
        BIDI_FEATURE,
        XML,
        "urn:xmpp:receipts",
        "http://jabber.org/protocol/chatstates",
        "urn:xmpp:chat-markers:0",
        "urn:xmpp:delay",
        "urn:xmpp:hints",
        "urn:xmpp:sid:0",
        "urn:xmpp:message-correct:0",
        "urn:xmpp:carbons:2",
        "urn:xmpp:mam:2",
        "urn:xmpp:time",
        "urn:xmpp:eme:0",
        "urn:xmpp:omemo:2",
        "eu.siacs.conversations.axolotl",
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/muc#user",
        "http://jabber.org/protocol/nick",
        "http://jabber.org/protocol/pubsub",
        "http://jabber.org/protocol/pubsub#event",
        "jabber:iq:roster",
        "jabber:iq:version",
        "jabber:iq:last",
        "jabber:x:oob",
        "vcard-temp",
        "vcard-temp:x:update",
    ];
    match KNOWN.iter().find(|known| **known == uri) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(uri),
    }
}
