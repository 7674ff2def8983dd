//! XML namespaces of XMPP server-to-server streams.

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
