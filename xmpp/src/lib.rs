//! The XMPP server-to-server protocol library shared by the xmppfed proxy and gateway.
//!
//! One module per concern: [`framer`] turns the bytes of an endless `<stream:stream>` into
//! validated frames under hard limits (and, for a relay, each stanza's received bytes when they
//! mean the same in the next stream); [`element`] is the small tree stanzas are held in and
//! serialised from otherwise; [`stream_error`] holds the RFC 6120
//! stream errors; [`identity`] judges peer certificates; [`tls`] builds the rustls
//! configurations; [`devca`] issues development and test certificates.

pub mod addr;
pub mod conn;
pub mod devca;
pub mod dialback;
pub mod element;
pub mod framer;
pub mod identity;
pub mod inbound;
pub mod link;
pub mod ns;
pub mod outbound;
pub mod stanza;
pub mod stream;
pub mod stream_error;
pub mod tls;

pub use element::{Element, Node};
pub use framer::{Frame, FramerLimits, FramingError, StanzaFramer, StreamHeader};
pub use stream_error::{StreamError, StreamErrorCondition};
