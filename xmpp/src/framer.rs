//! Incremental framing of an XMPP stream into validated frames, under hard limits.
//!
//! rxml enforces RFC 6120 §11 restricted XML on every byte (no DTD, entities beyond the five
//! predefined ones, PIs or comments; UTF-8 only; namespace well-formedness). On top, the framer
//! caps stanza bytes, nesting depth, attributes per element and name lengths, and counts bytes
//! the parser holds before it emits an event, so a peer cannot make it buffer more than one
//! stanza's worth. The parser consumes the input buffer as it goes: memory stays bounded.

use crate::element::{Attribute, Element, Node};
use crate::ns;
use crate::stream_error::{StreamError, StreamErrorCondition};
use bytes::{Buf, BytesMut};
use rxml::error::EndOrError;
use rxml::parser::{Options, Parse, WithOptions};
use rxml::{Event, Parser};
use thiserror::Error;
use tokio_util::codec::Decoder;

/// Hard limits applied while framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerLimits {
    /// Largest top-level element (stanza or negotiation element), in bytes as received.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a top-level element (the top-level element is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Longest element or attribute name.
    pub max_name_len: usize,
    /// Longest single token (attribute value, text chunk) the parser buffers.
    pub max_token_len: usize,
}

impl FramerLimits {
    /// Before the peer is authenticated: small, as ejabberd does.
    pub const PRE_AUTH: FramerLimits = FramerLimits {
        max_stanza_bytes: 10_000,
        max_depth: 8,
        max_attributes: 16,
        max_name_len: 64,
        max_token_len: 4096,
    };

    /// After authentication, with the federation's `maxStanzaBytes`.
    pub fn authenticated(max_stanza_bytes: usize) -> Self {
        Self {
            max_stanza_bytes,
            max_depth: 32,
            max_attributes: 64,
            max_name_len: 256,
            // One text node may fill the stanza (a base64 avatar in a vCard does).
            max_token_len: max_stanza_bytes,
        }
    }
}

/// The opening `<stream:stream>` tag's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

/// What the framer yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The stream was opened (or re-opened after a restart).
    Header(StreamHeader),
    /// A complete top-level element: a stanza or a negotiation element.
    Element(Element),
    /// Whitespace between top-level elements (a keepalive).
    KeepAlive,
    /// `</stream:stream>`.
    Close,
}

/// Why framing stopped. Each maps to the stream error the peer is sent.
#[derive(Debug, Error)]
pub enum FramingError {
    #[error("the stream is not well-formed XML: {0}")]
    Xml(rxml::Error),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Namespace(String),
    #[error("{0}")]
    Format(String),
    #[error("the connection closed in the middle of the stream")]
    UnexpectedEof,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl FramingError {
    /// The stream error to send the peer.
    pub fn stream_error(&self) -> StreamError {
        use StreamErrorCondition as C;
        let condition = match self {
            FramingError::Xml(rxml::Error::RestrictedXml(_)) => C::RestrictedXml,
            FramingError::Xml(rxml::Error::InvalidUtf8Byte(_)) => C::UnsupportedEncoding,
            FramingError::Xml(_) => C::NotWellFormed,
            FramingError::Limit(_) => C::PolicyViolation,
            FramingError::Namespace(_) => C::InvalidNamespace,
            FramingError::Format(_) => C::BadFormat,
            FramingError::UnexpectedEof | FramingError::Io(_) => C::UndefinedCondition,
        };
        StreamError::new(condition, self.to_string())
    }
}

/// The framer: a tokio-util [`Decoder`] over an XMPP stream.
pub struct StanzaFramer {
    parser: Parser,
    limits: FramerLimits,
    /// Element depth: 0 before the header, 1 inside the stream, 2+ inside a stanza.
    depth: usize,
    /// Elements of the top-level element being read, innermost last.
    stack: Vec<Element>,
    /// Bytes of the current top-level element so far.
    element_bytes: usize,
    /// Bytes given to the parser since its last event (it buffers them internally).
    pending: usize,
    closed: bool,
}

fn new_parser(limits: &FramerLimits) -> Parser {
    Parser::with_options(Options {
        max_token_length: limits.max_token_len,
        ..Options::default()
    })
}

impl StanzaFramer {
    pub fn new(limits: FramerLimits) -> Self {
        Self {
            parser: new_parser(&limits),
            limits,
            depth: 0,
            stack: Vec::new(),
            element_bytes: 0,
            pending: 0,
            closed: false,
        }
    }

    /// Start over for a stream restart (after STARTTLS or SASL), with new limits.
    pub fn reset(&mut self, limits: FramerLimits) {
        *self = Self::new(limits);
    }

    /// Change limits at a top-level element boundary (e.g. after authentication).
    pub fn set_limits(&mut self, limits: FramerLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> FramerLimits {
        self.limits
    }

    /// Whether the peer is in the middle of a top-level element.
    pub fn in_element(&self) -> bool {
        self.depth > 1
    }

    fn limit(&self, what: String) -> FramingError {
        FramingError::Limit(what)
    }

    fn check_size(&self) -> Result<(), FramingError> {
        let size = self.element_bytes + self.pending;
        let max = self.limits.max_stanza_bytes;
        if self.depth >= 1 && size > max {
            return Err(self.limit(format!("stanza larger than the limit of {max} bytes")));
        }
        if self.depth == 0 && self.pending > self.limits.max_token_len.max(4096) * 4 {
            return Err(self.limit("stream header too large".to_string()));
        }
        Ok(())
    }

    fn element_from(
        &self,
        qname: rxml::parser::QName,
        attrs: rxml::AttrMap,
    ) -> Result<Element, FramingError> {
        let (ns, name) = qname;
        if name.len() > self.limits.max_name_len {
            return Err(self.limit(format!(
                "element name longer than {} characters",
                self.limits.max_name_len
            )));
        }
        if attrs.len() > self.limits.max_attributes {
            return Err(self.limit(format!(
                "more than {} attributes on <{}>",
                self.limits.max_attributes,
                name.as_str()
            )));
        }
        let mut element = Element::new(ns.as_str(), name.as_str());
        for ((ans, aname), value) in attrs {
            if aname.len() > self.limits.max_name_len {
                return Err(self.limit(format!(
                    "attribute name longer than {} characters",
                    self.limits.max_name_len
                )));
            }
            element.attrs.push(Attribute {
                ns: ans.as_str().to_string(),
                name: aname.to_string(),
                value,
            });
        }
        Ok(element)
    }

    fn handle(&mut self, event: Event) -> Result<Option<Frame>, FramingError> {
        match event {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(m, qname, attrs) => {
                self.pending = 0;
                if self.depth == 0 {
                    let element = self.element_from(qname, attrs)?;
                    if !element.is(ns::STREAMS, "stream") {
                        return Err(FramingError::Namespace(format!(
                            "the stream must open with <stream:stream xmlns:stream='{}'>, not <{}> in {:?}",
                            ns::STREAMS,
                            element.name,
                            element.ns
                        )));
                    }
                    self.depth = 1;
                    let get = |n: &str| element.get_attr(n).map(str::to_string);
                    let lang = element
                        .attrs
                        .iter()
                        .find(|a| a.ns == ns::XML && a.name == "lang")
                        .map(|a| a.value.clone());
                    return Ok(Some(Frame::Header(StreamHeader {
                        to: get("to"),
                        from: get("from"),
                        id: get("id"),
                        version: get("version"),
                        lang,
                    })));
                }
                if self.depth == 1 {
                    self.element_bytes = 0;
                }
                self.element_bytes += m.len();
                self.check_size()?;
                if self.depth > self.limits.max_depth {
                    return Err(self.limit(format!(
                        "elements nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                let element = self.element_from(qname, attrs)?;
                self.stack.push(element);
                self.depth += 1;
                Ok(None)
            }
            Event::EndElement(m) => {
                self.pending = 0;
                if self.depth == 1 {
                    self.depth = 0;
                    self.closed = true;
                    return Ok(Some(Frame::Close));
                }
                self.element_bytes += m.len();
                self.check_size()?;
                self.depth -= 1;
                let Some(done) = self.stack.pop() else {
                    return Err(FramingError::Format("end tag without start tag".into()));
                };
                match self.stack.last_mut() {
                    Some(parent) => {
                        parent.children.push(Node::Element(done));
                        Ok(None)
                    }
                    None => Ok(Some(Frame::Element(done))),
                }
            }
            Event::Text(m, text) => {
                self.pending = 0;
                if self.depth <= 1 {
                    if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                        return Ok(Some(Frame::KeepAlive));
                    }
                    return Err(FramingError::Format("text outside of any stanza".into()));
                }
                self.element_bytes += m.len();
                self.check_size()?;
                if let Some(e) = self.stack.last_mut() {
                    match e.children.last_mut() {
                        Some(Node::Text(t)) => t.push_str(&text),
                        _ => e.children.push(Node::Text(text)),
                    }
                }
                Ok(None)
            }
        }
    }
}

/// `<!` followed by a letter: `<!DOCTYPE`, `<!ENTITY`, … (CDATA is `<![`).
fn declares_markup(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'<' && w[1] == b'!' && w[2].is_ascii_alphabetic())
}

impl Decoder for StanzaFramer {
    type Item = Frame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        loop {
            if self.closed {
                // Nothing may follow </stream:stream>; ignore trailing bytes.
                src.clear();
                return Ok(None);
            }
            // No early return on an empty buffer: the parser may still hold an event (the end
            // of `<x/>` comes one call after its start), and a peer waiting for our answer to
            // `<starttls/>` sends nothing more.
            let mut input: &[u8] = &src[..];
            let result = self.parser.parse(&mut input, false);
            let consumed = src.len() - input.len();
            let parsed = if result.is_err() {
                // What was parsed plus the bytes the error may sit on.
                src[..src.len().min(consumed + 16)].to_vec()
            } else {
                Vec::new()
            };
            src.advance(consumed);
            match result {
                Ok(Some(event)) => {
                    if let Some(frame) = self.handle(event)? {
                        return Ok(Some(frame));
                    }
                }
                Ok(None) => return Ok(None),
                Err(EndOrError::NeedMoreData) => {
                    self.pending += consumed;
                    self.check_size()?;
                    return Ok(None);
                }
                Err(EndOrError::Error(e)) => {
                    // rxml reports a DTD or other markup declaration as a syntax error; the
                    // peer should learn it broke RFC 6120 §11's restrictions.
                    // rxml's token-length limit: a size limit, so a policy violation.
                    if matches!(e, rxml::Error::RestrictedXml(m) if m.contains("long name")) {
                        return Err(self.limit(format!(
                            "a name, attribute value or text run longer than {} bytes",
                            self.limits.max_token_len
                        )));
                    }
                    if declares_markup(&parsed) {
                        return Err(FramingError::Xml(rxml::Error::RestrictedXml(
                            "DTDs and markup declarations are not allowed in XMPP",
                        )));
                    }
                    return Err(FramingError::Xml(e));
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if self.closed || (self.depth == 0 && self.pending == 0) => Ok(None),
            None => Err(FramingError::UnexpectedEof),
        }
    }
}

#[cfg(test)]
mod tests;
