//! The XMPP server-to-server protocol library shared by the xmppfed proxy and gateway.
//!
//! One module per concern: [`framer`] turns the bytes of an endless `<stream:stream>` into
//! validated frames under hard limits; [`element`] is the small tree stanzas are held in and
//! re-serialised from (raw peer bytes are never forwarded); [`stream_error`] holds the RFC 6120
//! stream errors.

pub mod element;
pub mod framer;
pub mod ns;
pub mod stream_error;

pub use element::{Element, Node};
pub use framer::{Frame, FramerLimits, FramingError, StanzaFramer, StreamHeader};
pub use stream_error::{StreamError, StreamErrorCondition};
