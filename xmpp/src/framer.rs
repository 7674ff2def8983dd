//! Incremental framing of an XMPP stream into validated frames, under hard limits.
//!
//! rxml enforces RFC 6120 §11 restricted XML on every byte (no DTD, entities beyond the five
//! predefined ones, PIs or comments; UTF-8 only; reserved prefixes). The framer resolves
//! namespaces (undeclared prefixes and duplicate attributes refused) and, on top, it
//! caps stanza bytes, nesting depth, attributes per element and name lengths, and counts bytes
//! the parser holds before it emits an event, so a peer cannot make it buffer more than one
//! stanza's worth. The parser consumes the input buffer as it goes: memory stays bounded.

use crate::element::{Attribute, Element, Node};
use crate::ns::{self, Namespace};
use crate::stream_error::{StreamError, StreamErrorCondition};
use bytes::{Buf, BytesMut};
use rxml::error::EndOrError;
use rxml::parser::{Options, Parse, RawEvent, RawParser, WithOptions};
use rxml::strings::NcName;
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
///
/// It drives rxml's `RawParser` (well-formedness, restricted XML, reserved `xml`/`xmlns`
/// prefixes, matching end tags) and resolves namespaces itself in [`Scopes`]: rxml's own
/// resolver builds a map per element and interns every namespace, which cost a third of the
/// framing time; XMPP streams declare a handful of namespaces and rarely nest declarations, so a
/// flat stack searched from the innermost declaration is faster and just as strict.
pub struct StanzaFramer {
    parser: RawParser,
    limits: FramerLimits,
    /// Element depth: 0 before the header, 1 inside the stream, 2+ inside a stanza.
    depth: usize,
    /// The start tag being read, until its `>`.
    head: StartTag,
    /// Namespace declarations in scope.
    scopes: Scopes,
    /// Elements of the top-level element being read, innermost last.
    stack: Vec<Element>,
    /// Bytes of the current top-level element (or of the stream header) so far.
    element_bytes: usize,
    /// Bytes given to the parser since its last event (it buffers them internally).
    pending: usize,
    closed: bool,
}

/// A start tag as the raw parser reports it, before namespace resolution. One is kept and
/// reused: its vectors keep their capacity from one element to the next.
#[derive(Default)]
struct StartTag {
    prefix: Option<NcName>,
    /// The element's local name while its start tag is being read, `None` otherwise.
    name: Option<NcName>,
    /// `xmlns='…'` on this element (an empty value undeclares the default namespace).
    default_ns: Option<Namespace>,
    /// `xmlns:prefix='…'` declarations on this element.
    declarations: Vec<(NcName, Namespace)>,
    /// Other attributes: prefix, local name, value.
    attrs: Vec<(Option<NcName>, NcName, String)>,
}

/// The namespace declarations in scope, as two flat stacks.
#[derive(Default)]
struct Scopes {
    /// Every `xmlns:prefix` declaration of the open elements, innermost last.
    prefixes: Vec<(NcName, Namespace)>,
    /// Per open element: the default namespace in effect inside it, and how many entries of
    /// `prefixes` were declared outside it.
    elements: Vec<(Namespace, usize)>,
}

impl Scopes {
    fn default_ns(&self) -> &Namespace {
        const NONE: &Namespace = &Namespace::Borrowed("");
        self.elements.last().map_or(NONE, |(ns, _)| ns)
    }

    /// Namespaces in XML 1.0, "Prefix Declared"; `xml` is bound by definition.
    fn resolve(&self, prefix: &str) -> Result<Namespace, FramingError> {
        if prefix == "xml" {
            return Ok(Namespace::Borrowed(ns::XML));
        }
        self.prefixes
            .iter()
            .rev()
            .find(|(p, _)| p.as_str() == prefix)
            .map(|(_, ns)| ns.clone())
            .ok_or(FramingError::Xml(rxml::Error::UndeclaredNamespacePrefix(
                None,
            )))
    }

    fn open(
        &mut self,
        default_ns: Option<Namespace>,
        declarations: impl Iterator<Item = (NcName, Namespace)>,
    ) {
        let outer = self.prefixes.len();
        let default_ns = default_ns.unwrap_or_else(|| self.default_ns().clone());
        self.prefixes.extend(declarations);
        self.elements.push((default_ns, outer));
    }

    fn close(&mut self) {
        if let Some((_, outer)) = self.elements.pop() {
            self.prefixes.truncate(outer);
        }
    }
}

fn new_parser(limits: &FramerLimits) -> RawParser {
    RawParser::with_options(Options {
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
            head: StartTag::default(),
            scopes: Scopes::default(),
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

    /// The stream header may not grow without bound either, though it is not a stanza.
    fn max_header_bytes(&self) -> usize {
        self.limits.max_token_len.max(4096) * 4
    }

    fn check_size(&self) -> Result<(), FramingError> {
        let size = self.element_bytes + self.pending;
        let max = self.limits.max_stanza_bytes;
        if self.depth >= 1 && size > max {
            return Err(self.limit(format!("stanza larger than the limit of {max} bytes")));
        }
        if self.depth == 0 && size > self.max_header_bytes() {
            return Err(self.limit("stream header too large".to_string()));
        }
        Ok(())
    }

    fn check_name(&self, name: &NcName, what: &str) -> Result<(), FramingError> {
        let max = self.limits.max_name_len;
        if name.len() > max {
            return Err(self.limit(format!("{what} name longer than {max} characters")));
        }
        Ok(())
    }

    /// Counts an event's bytes against the element (or header) being read.
    fn count(&mut self, bytes: usize) -> Result<(), FramingError> {
        self.pending = 0;
        self.element_bytes += bytes;
        self.check_size()
    }

    fn start_tag(&mut self, prefix: Option<NcName>, name: NcName) -> Result<(), FramingError> {
        if self.depth > self.limits.max_depth {
            return Err(self.limit(format!(
                "elements nested deeper than {}",
                self.limits.max_depth
            )));
        }
        self.check_name(&name, "element")?;
        let head = &mut self.head;
        head.prefix = prefix;
        head.name = Some(name);
        head.default_ns = None;
        head.declarations.clear();
        head.attrs.clear();
        Ok(())
    }

    fn attribute(
        &mut self,
        prefix: Option<NcName>,
        name: NcName,
        value: String,
    ) -> Result<(), FramingError> {
        self.check_name(&name, "attribute")?;
        let max = self.limits.max_attributes;
        let head = &mut self.head;
        let Some(element) = &head.name else {
            return Err(FramingError::Format("attribute outside a start tag".into()));
        };
        if head.attrs.len() + head.declarations.len() >= max {
            return Err(FramingError::Limit(format!(
                "more than {max} attributes on <{}>",
                element.as_str()
            )));
        }
        // XML 1.0 "Unique Att Spec" for declarations; rxml's raw parser already refused the
        // reserved `xml`/`xmlns` bindings and `xmlns:p=''`.
        let duplicate = FramingError::Xml(rxml::Error::DuplicateAttribute);
        match prefix {
            Some(p) if p.as_str() == "xmlns" => {
                if head.declarations.iter().any(|(d, _)| *d == name) {
                    return Err(duplicate);
                }
                head.declarations.push((name, ns::intern(value)));
            }
            None if name.as_str() == "xmlns" => {
                if head.default_ns.replace(ns::intern(value)).is_some() {
                    return Err(duplicate);
                }
            }
            prefix => head.attrs.push((prefix, name, value)),
        }
        Ok(())
    }

    /// The start tag is complete: resolve its names in the scope it opens.
    fn resolve_start_tag(&mut self) -> Result<Element, FramingError> {
        let head = &mut self.head;
        let Some(name) = head.name.take() else {
            return Err(FramingError::Format("'>' outside a start tag".into()));
        };
        self.scopes
            .open(head.default_ns.take(), head.declarations.drain(..));
        let ns = match &head.prefix {
            None => self.scopes.default_ns().clone(),
            Some(prefix) => self.scopes.resolve(prefix)?,
        };
        let mut element = Element::new(ns, String::from(name));
        element.attrs.reserve_exact(head.attrs.len());
        for (prefix, name, value) in head.attrs.drain(..) {
            // Unprefixed attributes are in no namespace (Namespaces in XML 1.0 §6.2).
            let ns = match &prefix {
                None => Namespace::Borrowed(""),
                Some(prefix) => self.scopes.resolve(prefix)?,
            };
            // "Attributes Unique": no two attributes with the same expanded name, which also
            // covers the same literal name twice.
            if element
                .attrs
                .iter()
                .any(|a| a.name == name.as_str() && a.ns == ns)
            {
                return Err(FramingError::Xml(rxml::Error::DuplicateAttribute));
            }
            element.attrs.push(Attribute {
                ns,
                name: String::from(name),
                value,
            });
        }
        Ok(element)
    }

    fn stream_header(element: Element) -> Result<Frame, FramingError> {
        if !element.is(ns::STREAMS, "stream") {
            return Err(FramingError::Namespace(format!(
                "the stream must open with <stream:stream xmlns:stream='{}'>, not <{}> in {:?}",
                ns::STREAMS,
                element.name,
                element.ns
            )));
        }
        let get = |n: &str| element.get_attr(n).map(str::to_string);
        let lang = element
            .attrs
            .iter()
            .find(|a| a.ns == ns::XML && a.name == "lang")
            .map(|a| a.value.clone());
        Ok(Frame::Header(StreamHeader {
            to: get("to"),
            from: get("from"),
            id: get("id"),
            version: get("version"),
            lang,
        }))
    }

    fn handle(&mut self, event: RawEvent) -> Result<Option<Frame>, FramingError> {
        match event {
            RawEvent::XmlDeclaration(m, _) => {
                self.count(m.len())?;
                Ok(None)
            }
            RawEvent::ElementHeadOpen(m, (prefix, name)) => {
                if self.depth == 1 {
                    self.element_bytes = 0;
                }
                self.count(m.len())?;
                self.start_tag(prefix, name)?;
                Ok(None)
            }
            RawEvent::Attribute(m, (prefix, name), value) => {
                self.count(m.len())?;
                self.attribute(prefix, name, value)?;
                Ok(None)
            }
            RawEvent::ElementHeadClose(m) => {
                self.count(m.len())?;
                let element = self.resolve_start_tag()?;
                if self.depth == 0 {
                    self.depth = 1;
                    return Self::stream_header(element).map(Some);
                }
                self.stack.push(element);
                self.depth += 1;
                Ok(None)
            }
            RawEvent::ElementFoot(m) => {
                self.scopes.close();
                if self.depth == 1 {
                    self.pending = 0;
                    self.depth = 0;
                    self.closed = true;
                    return Ok(Some(Frame::Close));
                }
                self.count(m.len())?;
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
            RawEvent::Text(m, text) => {
                self.pending = 0;
                if self.depth <= 1 {
                    if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                        return Ok(Some(Frame::KeepAlive));
                    }
                    return Err(FramingError::Format("text outside of any stanza".into()));
                }
                self.count(m.len())?;
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
mod namespace_tests;
#[cfg(test)]
mod tests;
