//! Incremental framing of an XMPP stream into validated frames, under hard limits.
//!
//! The lexer ([`lexer`]) enforces RFC 6120 §11 restricted XML on every byte (no DTD, entities
//! beyond the five predefined ones, PIs or comments; UTF-8 only; reserved prefixes). The framer
//! resolves namespaces (undeclared prefixes and duplicate attributes refused) and, on top, it
//! caps stanza bytes, nesting depth, attributes per element and name lengths, and counts the
//! bytes of an unfinished token left in the input buffer, so a peer cannot make it hold more
//! than one stanza's worth.

use crate::element::{Attribute, Element, Node};
use crate::ns::{self, Namespace};
use crate::stream_error::{StreamError, StreamErrorCondition};
use bytes::{Buf, BytesMut};
use lexer::{Lexer, QName, Token, XmlError, XmlErrorKind};
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
    /// Longest attribute value (text is handed on in pieces and needs no limit of its own).
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
    #[error("{0}")]
    Xml(XmlError),
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
            FramingError::Xml(e) => match e.kind {
                XmlErrorKind::Restricted => C::RestrictedXml,
                XmlErrorKind::Encoding => C::UnsupportedEncoding,
                XmlErrorKind::NotWellFormed => C::NotWellFormed,
                XmlErrorKind::TooLong => C::PolicyViolation,
            },
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
/// Its lexer checks well-formedness, restricted XML, the reserved `xml`/`xmlns` bindings and
/// matching end tags; the framer resolves namespaces in [`Scopes`]: XMPP streams declare a
/// handful of namespaces and rarely nest declarations, so a flat stack searched from the
/// innermost declaration is enough, and strict.
pub struct StanzaFramer {
    lexer: Lexer,
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
    /// A frame to hand out on the next call (`<stream:stream/>` opens and closes at once).
    queued: Option<Frame>,
    closed: bool,
    /// The received bytes of the top-level element being read, when asked for.
    verbatim: Option<Verbatim>,
}

/// The bytes of a top-level element exactly as received, and whether they mean the same
/// written into another stream whose default namespace is `jabber:server`: when the element
/// uses no prefix declared outside itself and inherits `jabber:server` as its default (see
/// [`StanzaFramer::capture_verbatim`]).
#[derive(Default)]
struct Verbatim {
    bytes: Vec<u8>,
    self_contained: bool,
    /// Those of the last complete element, until taken.
    done: Option<String>,
}

/// A start tag as the lexer reports it, before namespace resolution. One is kept and
/// reused: its vectors keep their capacity from one element to the next.
#[derive(Default)]
struct StartTag {
    prefix: Option<String>,
    /// The element's local name while its start tag is being read, `None` otherwise.
    name: Option<String>,
    /// `xmlns='…'` on this element (an empty value undeclares the default namespace).
    default_ns: Option<Namespace>,
    /// `xmlns:prefix='…'` declarations on this element.
    declarations: Vec<(String, Namespace)>,
    /// Other attributes: prefix, local name, value.
    attrs: Vec<(Option<String>, String, String)>,
}

/// The namespace declarations in scope, as two flat stacks.
#[derive(Default)]
struct Scopes {
    /// Every `xmlns:prefix` declaration of the open elements, innermost last.
    prefixes: Vec<(String, Namespace)>,
    /// Per open element: the default namespace in effect inside it, how many entries of
    /// `prefixes` were declared outside it, and whether that default comes from outside the
    /// top-level element (no element from the top-level one down declared it).
    elements: Vec<(Namespace, usize, bool)>,
}

impl Scopes {
    fn default_ns(&self) -> &Namespace {
        const NONE: &Namespace = &Namespace::Borrowed("");
        self.elements.last().map_or(NONE, |(ns, _, _)| ns)
    }

    /// Whether the default namespace in effect comes from the stream header.
    fn default_from_outside(&self) -> bool {
        self.elements.last().is_some_and(|(_, _, outside)| *outside)
    }

    /// Namespaces in XML 1.0, "Prefix Declared"; `xml` is bound by definition. Also says
    /// whether the declaration lies outside the top-level element (on the stream header).
    fn resolve(&self, prefix: &str) -> Result<(Namespace, bool), FramingError> {
        if prefix == "xml" {
            return Ok((Namespace::Borrowed(ns::XML), false));
        }
        let top_level_outer = self
            .elements
            .get(1)
            .map_or(usize::MAX, |(_, outer, _)| *outer);
        self.prefixes
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (p, _))| p == prefix)
            .map(|(at, (_, ns))| (ns.clone(), at < top_level_outer))
            .ok_or_else(|| {
                FramingError::Xml(XmlError::malformed(format!(
                    "the namespace prefix '{prefix}' is not declared"
                )))
            })
    }

    fn open(
        &mut self,
        default_ns: Option<Namespace>,
        declarations: impl Iterator<Item = (String, Namespace)>,
    ) {
        let outer = self.prefixes.len();
        // The stream element (depth 0) is outside every top-level element; the top-level
        // element (depth 1) starts from outside unless it declares its own default.
        let from_outside = match (&default_ns, self.elements.len()) {
            (Some(_), _) | (None, 0) => false,
            (None, 1) => true,
            (None, _) => self.default_from_outside(),
        };
        let default_ns = default_ns.unwrap_or_else(|| self.default_ns().clone());
        self.prefixes.extend(declarations);
        self.elements.push((default_ns, outer, from_outside));
    }

    fn close(&mut self) {
        if let Some((_, outer, _)) = self.elements.pop() {
            self.prefixes.truncate(outer);
        }
    }
}

impl StanzaFramer {
    pub fn new(limits: FramerLimits) -> Self {
        Self {
            lexer: Lexer::new(&limits),
            limits,
            depth: 0,
            head: StartTag::default(),
            scopes: Scopes::default(),
            stack: Vec::new(),
            element_bytes: 0,
            queued: None,
            closed: false,
            verbatim: None,
        }
    }

    /// Start over for a stream restart (after STARTTLS or SASL), with new limits.
    pub fn reset(&mut self, limits: FramerLimits) {
        let capture = self.verbatim.is_some();
        *self = Self::new(limits);
        if capture {
            self.capture_verbatim();
        }
    }

    /// From the next top-level element on (restarts included), keep each one's received bytes for
    /// [`take_verbatim`](Self::take_verbatim). A relay writes them on instead of re-serialising
    /// the tree: the lexer has checked every byte, and the same bytes parse to the same tree in
    /// any stream that binds what the element relies on.
    pub fn capture_verbatim(&mut self) {
        self.verbatim.get_or_insert_with(Verbatim::default);
    }

    /// The received bytes of the element the last [`Frame::Element`] carried, if they were
    /// captured and stand on their own in a stream whose default namespace is `jabber:server`:
    /// no prefix declared on the stream header, no default namespace inherited from it other
    /// than `jabber:server`. `None` means: serialise the tree.
    pub fn take_verbatim(&mut self) -> Option<String> {
        self.verbatim.as_mut()?.done.take()
    }

    /// Change limits at a top-level element boundary (e.g. after authentication).
    pub fn set_limits(&mut self, limits: FramerLimits) {
        self.limits = limits;
        self.lexer.set_limits(&limits);
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

    /// Checks the element (or header) read so far plus `pending` bytes of an unfinished
    /// token waiting in the input buffer.
    fn check_size(&self, pending: usize) -> Result<(), FramingError> {
        let size = self.element_bytes + pending;
        let max = self.limits.max_stanza_bytes;
        if self.depth >= 1 && size > max {
            return Err(self.limit(format!("stanza larger than the limit of {max} bytes")));
        }
        if self.depth == 0 && size > self.max_header_bytes() {
            return Err(self.limit("stream header too large".to_string()));
        }
        Ok(())
    }

    fn check_name(&self, name: &str, what: &str) -> Result<(), FramingError> {
        let max = self.limits.max_name_len;
        if name.len() > max {
            return Err(self.limit(format!("{what} name longer than {max} characters")));
        }
        Ok(())
    }

    /// Counts an event's bytes against the element (or header) being read.
    fn count(&mut self, bytes: usize) -> Result<(), FramingError> {
        self.element_bytes += bytes;
        self.check_size(0)
    }

    fn start_tag(&mut self, name: QName<'_>) -> Result<(), FramingError> {
        if self.depth > self.limits.max_depth {
            return Err(self.limit(format!(
                "elements nested deeper than {}",
                self.limits.max_depth
            )));
        }
        self.check_name(name.local, "element")?;
        if let Some(prefix) = name.prefix {
            self.check_name(prefix, "prefix")?;
        }
        let head = &mut self.head;
        head.prefix = name.prefix.map(str::to_string);
        head.name = Some(name.local.to_string());
        head.default_ns = None;
        head.declarations.clear();
        head.attrs.clear();
        Ok(())
    }

    fn attribute(&mut self, name: QName<'_>, value: String) -> Result<(), FramingError> {
        let QName { prefix, local } = name;
        self.check_name(local, "attribute")?;
        if let Some(prefix) = prefix {
            self.check_name(prefix, "prefix")?;
        }
        let max = self.limits.max_attributes;
        let head = &mut self.head;
        let Some(element) = &head.name else {
            return Err(FramingError::Format("attribute outside a start tag".into()));
        };
        if head.attrs.len() + head.declarations.len() >= max {
            return Err(FramingError::Limit(format!(
                "more than {max} attributes on <{element}>"
            )));
        }
        // XML 1.0 "Unique Att Spec" for declarations; the lexer already refused the reserved
        // `xml`/`xmlns` bindings and `xmlns:p=''`.
        let duplicate = || FramingError::Xml(duplicate_attribute(local));
        match prefix {
            Some("xmlns") => {
                if head.declarations.iter().any(|(d, _)| d == local) {
                    return Err(duplicate());
                }
                head.declarations
                    .push((local.to_string(), ns::intern(value)));
            }
            None if local == "xmlns" => {
                if head.default_ns.replace(ns::intern(value)).is_some() {
                    return Err(duplicate());
                }
            }
            prefix => head
                .attrs
                .push((prefix.map(str::to_string), local.to_string(), value)),
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
        let (ns, mut outer_binding) = match &head.prefix {
            None => {
                // A default namespace from the stream header means the same in the link's
                // stream only if it is the link stream's own.
                let default = self.scopes.default_ns();
                let outer = self.scopes.default_from_outside() && *default != ns::SERVER;
                (default.clone(), outer)
            }
            Some(prefix) => self.scopes.resolve(prefix)?,
        };
        if ns == ns::XML {
            // Reserved (Namespaces in XML 1.0 §3), and no output could declare it.
            return Err(FramingError::Xml(XmlError::malformed(format!(
                "the element <xml:{name}> is in the reserved XML namespace"
            ))));
        }
        // Each element and attribute holds its own copy of a namespace that is not a well-known
        // static one: those copies count against the stanza limit, or a long namespace
        // inherited by many small elements would cost memory quadratic in the stanza's size.
        let mut copied = copied_bytes(&ns);
        let mut element = Element::new(ns, name);
        element.attrs.reserve_exact(head.attrs.len());
        for (prefix, name, value) in head.attrs.drain(..) {
            // Unprefixed attributes are in no namespace (Namespaces in XML 1.0 §6.2).
            let ns = match &prefix {
                None => Namespace::Borrowed(""),
                Some(prefix) => {
                    let (ns, outer) = self.scopes.resolve(prefix)?;
                    outer_binding |= outer;
                    ns
                }
            };
            copied += copied_bytes(&ns);
            // "Attributes Unique": no two attributes with the same expanded name, which also
            // covers the same literal name twice.
            if element.attrs.iter().any(|a| a.name == name && a.ns == ns) {
                return Err(FramingError::Xml(duplicate_attribute(&name)));
            }
            element.attrs.push(Attribute { ns, name, value });
        }
        self.element_bytes += copied;
        self.check_size(0)?;
        if outer_binding && let Some(v) = &mut self.verbatim {
            v.self_contained = false;
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

    /// An element ends (`</name>` or `/>`).
    fn end_element(&mut self, bytes: usize) -> Result<Option<Frame>, FramingError> {
        self.scopes.close();
        if self.depth == 1 {
            self.depth = 0;
            self.closed = true;
            return Ok(Some(Frame::Close));
        }
        self.count(bytes)?;
        self.depth -= 1;
        let Some(done) = self.stack.pop() else {
            return Err(FramingError::Format("end tag without start tag".into()));
        };
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(done));
                Ok(None)
            }
            None => {
                // Whatever comes next (whitespace, the next stanza) starts a new count.
                self.element_bytes = 0;
                Ok(Some(Frame::Element(done)))
            }
        }
    }

    fn handle(&mut self, token: Token<'_>, bytes: usize) -> Result<Option<Frame>, FramingError> {
        match token {
            Token::Declaration | Token::Skip => {
                self.count(bytes)?;
                Ok(None)
            }
            Token::StartTag(name) => {
                if self.depth == 1 {
                    self.element_bytes = 0;
                }
                self.count(bytes)?;
                self.start_tag(name)?;
                Ok(None)
            }
            Token::Attribute(name, value) => {
                self.count(bytes)?;
                self.attribute(name, value.into_owned())?;
                Ok(None)
            }
            Token::StartTagEnd { empty } => {
                self.count(bytes)?;
                let element = self.resolve_start_tag()?;
                if self.depth == 0 {
                    self.depth = 1;
                    self.element_bytes = 0;
                    let header = Self::stream_header(element)?;
                    if empty {
                        self.queued = self.end_element(0)?;
                    }
                    return Ok(Some(header));
                }
                self.stack.push(element);
                self.depth += 1;
                if empty {
                    return self.end_element(0);
                }
                Ok(None)
            }
            Token::EndTag => self.end_element(bytes),
            Token::Text(text) => {
                if self.depth <= 1 {
                    if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                        return Ok(Some(Frame::KeepAlive));
                    }
                    return Err(FramingError::Format("text outside of any stanza".into()));
                }
                self.count(bytes)?;
                if let Some(e) = self.stack.last_mut() {
                    match e.children.last_mut() {
                        Some(Node::Text(t)) => t.push_str(&text),
                        _ => e.children.push(Node::Text(text.into_owned())),
                    }
                }
                Ok(None)
            }
        }
    }
}

/// Capacity of the capture buffer kept between top-level elements.
const VERBATIM_KEEP: usize = 4096;

/// Bytes an element holds for a namespace beyond the well-known, shared ones.
fn copied_bytes(ns: &Namespace) -> usize {
    match ns {
        Namespace::Owned(s) => s.len(),
        Namespace::Borrowed(_) => 0,
    }
}

fn duplicate_attribute(name: &str) -> XmlError {
    XmlError::malformed(format!(
        "the attribute '{name}' appears twice on one element"
    ))
}

impl Decoder for StanzaFramer {
    type Item = Frame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        if let Some(frame) = self.queued.take() {
            return Ok(Some(frame));
        }
        loop {
            if self.closed {
                // Nothing may follow </stream:stream>; ignore trailing bytes.
                src.clear();
                return Ok(None);
            }
            let step = match self.lexer.next(&src[..]) {
                Ok(step) => step,
                Err(e) if e.kind == XmlErrorKind::TooLong => {
                    return Err(self.limit(e.to_string()));
                }
                Err(e) => return Err(FramingError::Xml(e)),
            };
            let Some((token, consumed)) = step else {
                self.check_size(src.len())?;
                return Ok(None);
            };
            // A top-level element's bytes: from its start tag (read at depth 1) to its end.
            let starts_top_level = self.depth == 1 && matches!(token, Token::StartTag(_));
            let element_bytes = starts_top_level
                || self.depth >= 2
                || (self.depth == 1 && self.head.name.is_some());
            if starts_top_level && let Some(v) = &mut self.verbatim {
                v.bytes.clear();
                v.self_contained = true;
                v.done = None;
            }
            let frame = self.handle(token, consumed)?;
            if element_bytes && let Some(v) = &mut self.verbatim {
                v.bytes.extend_from_slice(&src[..consumed]);
                if matches!(frame, Some(Frame::Element(_))) {
                    // The lexer validated every byte as UTF-8: `ok()` never drops one.
                    if v.self_contained {
                        v.done = std::str::from_utf8(&v.bytes).ok().map(str::to_owned);
                    }
                    // An idle stream keeps no large buffer from one big stanza.
                    if v.bytes.capacity() > VERBATIM_KEEP {
                        v.bytes = Vec::new();
                    }
                }
            }
            src.advance(consumed);
            if frame.is_some() {
                return Ok(frame);
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if self.closed
                || (self.depth == 0 && src.is_empty() && self.lexer.is_between_tokens()) =>
            {
                Ok(None)
            }
            None => Err(FramingError::UnexpectedEof),
        }
    }
}

mod lexer;
#[cfg(test)]
mod lexer_tests;
#[cfg(test)]
mod namespace_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verbatim_tests;
