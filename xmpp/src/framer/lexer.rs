//! The restricted-XML lexer under the framer (RFC 6120 §11; XML 1.0 5th edition).
//!
//! Why our own and not rxml's: rxml validates ~100 MB/s per core, a byte at a time through a
//! general state machine, which caps a proxy hop at 15 % of a plain TLS relay (spec §5 asks for
//! 25 %). This lexer runs table-driven loops over whole runs of text and attribute values and
//! borrows names, values and text from the input instead of copying them; it is held to rxml by
//! the differential tests in `lexer_tests.rs` and by the fuzz targets.
//!
//! It works on the framer's input buffer and consumes nothing until a token is complete, so
//! the caller advances the buffer by what each token consumed. It never rescans what it has
//! validated: an unfinished attribute value or end tag resumes where it stopped; text (and CDATA)
//! is handed out as far as it goes, holding back only the few bytes whose meaning the next read
//! decides (a `\r` before a possible `\n`, `]]` before a possible `>`, a split UTF-8 sequence, a
//! split reference). Names are rescanned, but they are bounded by `max_name`.
//!
//! What it refuses: anything that is not UTF-8; characters outside XML's `Char`; DTDs and other
//! markup declarations, comments and processing instructions (restricted XML); references other
//! than the five predefined entities and character references to `Char`s; `<` in attribute
//! values and `]]>` in text; malformed names (qualified names with one colon at most, each part
//! an NCName); attributes without whitespace before them; end tags that do not match; the
//! reserved `xmlns:xmlns`, `xmlns:xml` to anything but the XML namespace, anything else bound to
//! it or to the xmlns namespace, and `xmlns:p=''`. It decodes references, normalises line ends in text and whitespace in
//! attribute values, as XML 1.0 §2.11 and §3.3.3 require.

use super::FramerLimits;
use std::borrow::Cow;
use std::fmt;

/// Why the input is not acceptable XML; the framer turns it into a stream error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub kind: XmlErrorKind,
    pub reason: Cow<'static, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlErrorKind {
    /// Not well-formed (or not namespace-well-formed) XML.
    NotWellFormed,
    /// Well-formed XML that RFC 6120 §11 forbids in XMPP.
    Restricted,
    /// Not UTF-8.
    Encoding,
    /// A name or attribute value longer than the framer's limit.
    TooLong,
}

impl XmlError {
    pub(crate) fn malformed(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: XmlErrorKind::NotWellFormed,
            reason: reason.into(),
        }
    }

    fn restricted(reason: &'static str) -> Self {
        Self {
            kind: XmlErrorKind::Restricted,
            reason: Cow::Borrowed(reason),
        }
    }

    fn too_long(what: &str, max: usize) -> Self {
        Self {
            kind: XmlErrorKind::TooLong,
            reason: Cow::Owned(format!("{what} longer than {max} bytes")),
        }
    }

    fn control_character(b: u8) -> Self {
        Self::malformed(format!("control character U+{b:04X} is not allowed in XML"))
    }

    fn encoding() -> Self {
        Self {
            kind: XmlErrorKind::Encoding,
            reason: Cow::Borrowed("the stream is not valid UTF-8"),
        }
    }
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

type Result<T> = std::result::Result<T, XmlError>;

/// A qualified name as written: optional prefix and local part, both NCNames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QName<'a> {
    pub prefix: Option<&'a str>,
    pub local: &'a str,
}

/// One lexical unit. Everything borrows the input buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// `<?xml version='1.0' …?>`, validated.
    Declaration,
    /// `<name`: a start tag opens.
    StartTag(QName<'a>),
    /// `name='value'` inside a start tag, the value decoded and normalised.
    Attribute(QName<'a>, Cow<'a, str>),
    /// `>` or `/>`: the start tag is complete. An empty element is also closed.
    StartTagEnd { empty: bool },
    /// `</name>`, matching the innermost open element.
    EndTag,
    /// Character data (text or a CDATA section's content), decoded. Long text comes in pieces.
    Text(Cow<'a, str>),
    /// Bytes that carry nothing: whitespace inside a tag or before the root element, the
    /// opening `<![CDATA[`.
    Skip,
}

/// Where the lexer is between calls.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Character data, or markup starting with `<`.
    Content,
    /// Inside `<![CDATA[ … ]]>`.
    Cdata,
    /// Inside a start tag, after its name or an attribute; `space`: whitespace seen since.
    Tag { space: bool },
    /// Inside an attribute (resumable).
    Attribute(AttrScan),
    /// After `</name`, before `>`; `pos`: bytes of the end tag examined so far.
    EndTag { pos: usize },
    /// The root element has closed.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct AttrScan {
    /// The qualified name: `buf[start..end]`, `colon` its position if prefixed.
    start: usize,
    end: usize,
    colon: Option<usize>,
    phase: AttrPhase,
    /// Bytes of the attribute examined so far: where scanning resumes.
    pos: usize,
}

#[derive(Debug, Clone, Copy)]
enum AttrPhase {
    /// Expecting `=`.
    Eq,
    /// Expecting the opening quote.
    Open,
    /// Inside the value, which starts at `start`; `decode`: references or whitespace to
    /// normalise seen.
    Value {
        quote: u8,
        start: usize,
        decode: bool,
    },
}

/// The lexer. One per stream (and per stream restart).
pub struct Lexer {
    mode: Mode,
    /// Qualified names of the open elements, concatenated; `ends` marks where each ends.
    names: String,
    ends: Vec<usize>,
    /// Nothing consumed yet: only here may an XML declaration come.
    at_start: bool,
    max_name: usize,
    max_value: usize,
}

/// Longest character reference (`&#x10FFFF;` is 10 bytes; leading zeros are legal but silly).
const MAX_REFERENCE: usize = 32;
/// Longest XML declaration.
const MAX_DECLARATION: usize = 256;

// Byte classes for character data and attribute values.
const PLAIN: u8 = 0;
const LT: u8 = 1;
const AMP: u8 = 2;
const RBRACKET: u8 = 3;
const CR: u8 = 4;
const HIGH: u8 = 5;
const CONTROL: u8 = 6;
/// Tab or line feed: plain in text, normalised to a space in attribute values.
const TAB_LF: u8 = 7;
const QUOTE: u8 = 8;

const fn classes() -> [u8; 256] {
    let mut t = [PLAIN; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'\t' | b'\n' => TAB_LF,
            b'\r' => CR,
            0..=0x1f => CONTROL,
            b'<' => LT,
            b'&' => AMP,
            b']' => RBRACKET,
            b'\'' | b'"' => QUOTE,
            0x80..=0xff => HIGH,
            _ => PLAIN,
        };
        b += 1;
    }
    t
}
static CLASS: [u8; 256] = classes();

const NAME_START: u8 = 1;
const NAME: u8 = 2;
const COLON: u8 = 3;

const fn name_classes() -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = match b as u8 {
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => NAME_START,
            b'0'..=b'9' | b'-' | b'.' => NAME,
            b':' => COLON,
            _ => 0,
        };
        b += 1;
    }
    t
}
static NAME_CLASS: [u8; 128] = name_classes();

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// XML 1.0 `Char` (production 2).
fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Validates the UTF-8 character starting at `buf[i]` (a byte ≥ 0x80): its length, or `None`
/// if the buffer ends inside it.
fn utf8_char(buf: &[u8], i: usize) -> Result<Option<usize>> {
    let len = match buf[i] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Err(XmlError::encoding()),
    };
    let Some(bytes) = buf.get(i..i + len) else {
        // Refuse what cannot become valid without waiting for more.
        if buf[i + 1..].iter().any(|b| b & 0xC0 != 0x80) {
            return Err(XmlError::encoding());
        }
        return Ok(None);
    };
    match std::str::from_utf8(bytes) {
        // U+FFFE and U+FFFF are not XML characters; surrogates are not UTF-8.
        Ok(_) if len == 3 && bytes[0] == 0xEF && bytes[1] == 0xBF && bytes[2] >= 0xBE => {
            Err(XmlError::malformed(format!(
                "character U+FFF{:X} is not allowed in XML",
                bytes[2] - 0xB0
            )))
        }
        Ok(_) => Ok(Some(len)),
        Err(_) => Err(XmlError::encoding()),
    }
}

/// Validates the reference starting at `buf[0] == b'&'`: its length, or `None` if the buffer
/// ends inside it.
fn reference(buf: &[u8]) -> Result<Option<usize>> {
    let Some(end) = buf.iter().take(MAX_REFERENCE).position(|&b| b == b';') else {
        if buf.len() >= MAX_REFERENCE {
            return Err(XmlError::malformed("reference too long"));
        }
        // Refuse early what no `;` could make valid.
        let ok = match buf.get(1) {
            None => true,
            Some(b'#') => buf[2..]
                .iter()
                .enumerate()
                .all(|(k, b)| b.is_ascii_hexdigit() || (k == 0 && *b == b'x')),
            Some(_) => buf[1..].iter().all(|b| b.is_ascii_alphabetic()),
        };
        return if ok {
            Ok(None)
        } else {
            Err(XmlError::malformed("malformed reference: expected ';'"))
        };
    };
    let body = &buf[1..end];
    match body {
        b"amp" | b"lt" | b"gt" | b"apos" | b"quot" => Ok(Some(end + 1)),
        [b'#', rest @ ..] => {
            let (digits, radix) = match rest {
                [b'x', hex @ ..] => (hex, 16),
                _ => (rest, 10),
            };
            let valid_digits = !digits.is_empty()
                && digits.iter().all(|b| match radix {
                    16 => b.is_ascii_hexdigit(),
                    _ => b.is_ascii_digit(),
                });
            if !valid_digits {
                return Err(XmlError::malformed("malformed character reference"));
            }
            let value = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u32::from_str_radix(d, radix).ok());
            match value {
                Some(c) if is_xml_char(c) => Ok(Some(end + 1)),
                _ => Err(XmlError::malformed(
                    "character reference to a character XML does not allow",
                )),
            }
        }
        name if !name.is_empty() && name.iter().all(u8::is_ascii_alphanumeric) => Err(
            XmlError::restricted("only the five predefined entities may be referenced in XMPP"),
        ),
        _ => Err(XmlError::malformed("malformed reference: expected ';'")),
    }
}

/// The character a validated reference (without `&` and `;`) stands for.
fn resolve_reference(body: &str) -> char {
    match body {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let (digits, radix) = match body.strip_prefix("#x") {
                Some(hex) => (hex, 16),
                None => (&body[1..], 10),
            };
            u32::from_str_radix(digits, radix)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or(char::REPLACEMENT_CHARACTER)
        }
    }
}

/// What a validated run of characters is, for [`decoded`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Character data: references, and `\r\n` / `\r` to `\n` (§2.11).
    Text,
    /// A CDATA section's content: line ends only.
    Cdata,
    /// An attribute value: references, and each literal whitespace character (a `\r\n` pair
    /// counting as one) to a space (§3.3.3).
    Value,
}

/// `raw` decoded as `run` requires; borrowed when the scan found nothing to decode.
fn decoded(raw: &str, needed: bool, run: Run) -> Cow<'_, str> {
    if !needed {
        return Cow::Borrowed(raw);
    }
    let line_end = if run == Run::Value { ' ' } else { '\n' };
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\r', '\n', '\t']) {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        rest = match rest.as_bytes()[i] {
            b'&' if run != Run::Cdata => {
                let end = after.find(';').unwrap_or(after.len());
                out.push(resolve_reference(&after[..end]));
                &after[(end + 1).min(after.len())..]
            }
            b'\r' => {
                out.push(line_end);
                after.strip_prefix('\n').unwrap_or(after)
            }
            b'\n' | b'\t' if run == Run::Value => {
                out.push(' ');
                after
            }
            other => {
                out.push(char::from(other));
                after
            }
        };
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `buf[from..to]` as text; the lexer validated it as UTF-8 already.
fn text(buf: &[u8], from: usize, to: usize) -> Result<&str> {
    std::str::from_utf8(&buf[from..to]).map_err(|_| XmlError::encoding())
}

impl Lexer {
    pub fn new(limits: &FramerLimits) -> Self {
        let mut lexer = Self {
            mode: Mode::Content,
            names: String::new(),
            ends: Vec::new(),
            at_start: true,
            max_name: 0,
            max_value: 0,
        };
        lexer.set_limits(limits);
        lexer
    }

    pub fn set_limits(&mut self, limits: &FramerLimits) {
        // Qualified names whole (prefix, colon, local part); the framer checks each part.
        self.max_name = 2 * limits.max_name_len + 1;
        self.max_value = limits.max_token_len;
    }

    /// Whether the lexer is between tokens outside any tag (so an end of input here is clean
    /// as far as lexing goes).
    pub fn is_between_tokens(&self) -> bool {
        matches!(self.mode, Mode::Content | Mode::Done)
    }

    /// The next token of `buf` (the unconsumed input) and how many bytes it consumed; `None`
    /// when `buf` ends inside a token. After `Some`, the caller must drop exactly that many
    /// bytes from the front of its buffer before calling again.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>> {
        let step = match self.mode {
            Mode::Content => self.content(buf),
            Mode::Cdata => self.cdata(buf),
            Mode::Tag { space } => self.tag(buf, space),
            Mode::Attribute(scan) => self.attribute(buf, scan),
            Mode::EndTag { pos } => self.end_tag(buf, pos),
            // Nothing may follow the root element; the framer stops reading there.
            Mode::Done => Ok(None),
        }?;
        if step.as_ref().is_some_and(|(_, consumed)| *consumed > 0) {
            self.at_start = false;
        }
        Ok(step)
    }

    fn depth(&self) -> usize {
        self.ends.len()
    }

    /// A qualified name starting at `buf[start]`: its end and the colon's position, or `None`
    /// if the buffer ends inside it.
    fn qname(&self, buf: &[u8], start: usize) -> Result<Option<(usize, Option<usize>)>> {
        let mut i = start;
        let mut colon = None;
        let mut ascii = true;
        loop {
            if i - start > self.max_name {
                return Err(XmlError::too_long("name", self.max_name));
            }
            let Some(&b) = buf.get(i) else {
                return Ok(None);
            };
            if b >= 0x80 {
                match utf8_char(buf, i)? {
                    Some(len) => {
                        ascii = false;
                        i += len;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            let class = NAME_CLASS[b as usize];
            let part_start = colon.map_or(start, |c| c + 1);
            match class {
                NAME_START => {}
                NAME if i > part_start => {}
                COLON if colon.is_none() && i > start => colon = Some(i),
                COLON if colon.is_some() => {
                    return Err(XmlError::malformed("a name may contain one colon at most"));
                }
                _ if i == part_start => {
                    return Err(XmlError::malformed(match colon {
                        Some(_) => "a prefixed name needs a local part after the colon",
                        None => "expected a name",
                    }));
                }
                _ => break,
            }
            i += 1;
        }
        if !ascii {
            let parts = match colon {
                Some(c) => [text(buf, start, c)?, text(buf, c + 1, i)?],
                None => [text(buf, start, i)?, "a"],
            };
            for part in parts {
                rxml_validation::validate_ncname(part)
                    .map_err(|e| XmlError::malformed(format!("invalid name: {e}")))?;
            }
        }
        Ok(Some((i, colon)))
    }

    fn qname_at<'a>(
        buf: &'a [u8],
        start: usize,
        end: usize,
        colon: Option<usize>,
    ) -> Result<QName<'a>> {
        Ok(match colon {
            Some(c) => QName {
                prefix: Some(text(buf, start, c)?),
                local: text(buf, c + 1, end)?,
            },
            None => QName {
                prefix: None,
                local: text(buf, start, end)?,
            },
        })
    }

    fn content<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>> {
        if buf.is_empty() {
            return Ok(None);
        }
        if buf[0] == b'<' {
            return self.markup(buf);
        }
        if self.depth() == 0 {
            // Before the root element only whitespace may come.
            let n = buf.iter().take_while(|&&b| is_space(b)).count();
            return match n {
                0 => Err(XmlError::malformed("text before the root element")),
                n => Ok(Some((Token::Skip, n))),
            };
        }
        let mut i = 0;
        let mut decode = false;
        let n = buf.len();
        // Where the text safely ends if the buffer ends first.
        let stop;
        loop {
            while i < n && matches!(CLASS[buf[i] as usize], PLAIN | TAB_LF | QUOTE) {
                i += 1;
            }
            if i == n {
                stop = n;
                break;
            }
            match CLASS[buf[i] as usize] {
                LT => {
                    stop = i;
                    break;
                }
                AMP => match reference(&buf[i..])? {
                    Some(len) => {
                        decode = true;
                        i += len;
                    }
                    None => {
                        stop = i;
                        break;
                    }
                },
                RBRACKET => {
                    let rest = &buf[i..];
                    if rest.starts_with(b"]]>") {
                        return Err(XmlError::malformed("']]>' is not allowed in text"));
                    }
                    if b"]]>".starts_with(rest) {
                        stop = i;
                        break;
                    }
                    i += 1;
                }
                CR => {
                    if i + 1 == n {
                        stop = i;
                        break;
                    }
                    decode = true;
                    i += 1;
                }
                HIGH => match utf8_char(buf, i)? {
                    Some(len) => i += len,
                    None => {
                        stop = i;
                        break;
                    }
                },
                _ => {
                    return Err(XmlError::control_character(buf[i]));
                }
            }
        }
        if stop == 0 {
            return Ok(None);
        }
        let text = decoded(text(buf, 0, stop)?, decode, Run::Text);
        Ok(Some((Token::Text(text), stop)))
    }

    /// `buf` starts with `<`.
    fn markup<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>> {
        let Some(&second) = buf.get(1) else {
            return Ok(None);
        };
        match second {
            b'/' => {
                let Some((end, _)) = self.qname(buf, 2)? else {
                    return Ok(None);
                };
                let open = self.ends.len().checked_sub(1).map(|top| {
                    let from = if top == 0 { 0 } else { self.ends[top - 1] };
                    &self.names[from..self.ends[top]]
                });
                if open.map(str::as_bytes) != Some(&buf[2..end]) {
                    return Err(XmlError::malformed(format!(
                        "end tag </{}> does not match the open element <{}>",
                        String::from_utf8_lossy(&buf[2..end]),
                        open.unwrap_or("")
                    )));
                }
                self.end_tag(buf, end)
            }
            b'!' => {
                const CDATA: &[u8] = b"<![CDATA[";
                if buf.starts_with(CDATA) {
                    if self.depth() == 0 {
                        return Err(XmlError::malformed("CDATA outside the root element"));
                    }
                    self.mode = Mode::Cdata;
                    return Ok(Some((Token::Skip, CDATA.len())));
                }
                if buf.starts_with(b"<!--") {
                    return Err(XmlError::restricted("comments are not allowed in XMPP"));
                }
                if CDATA.starts_with(buf) || b"<!--".starts_with(buf) {
                    return Ok(None);
                }
                Err(XmlError::restricted(
                    "DTDs and markup declarations are not allowed in XMPP",
                ))
            }
            b'?' => {
                const DECL: &[u8] = b"<?xml";
                if self.at_start && buf.len() <= DECL.len() && DECL.starts_with(buf) {
                    return Ok(None);
                }
                if self.at_start && buf.starts_with(DECL) && is_space(buf[DECL.len()]) {
                    return self.declaration(buf);
                }
                Err(XmlError::restricted(
                    "processing instructions are not allowed in XMPP",
                ))
            }
            _ => {
                let Some((end, colon)) = self.qname(buf, 1)? else {
                    return Ok(None);
                };
                let name = Self::qname_at(buf, 1, end, colon)?;
                // Keep the name for matching the end tag: the buffer moves on.
                self.names.push_str(text(buf, 1, end)?);
                self.ends.push(self.names.len());
                self.mode = Mode::Tag { space: false };
                Ok(Some((Token::StartTag(name), end)))
            }
        }
    }

    /// `<?xml version='1.0' (encoding='UTF-8')? (standalone='yes'|'no')? ?>` (§2.8): XMPP
    /// allows only version 1.0 and UTF-8.
    fn declaration<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>> {
        let Some(end) = memchr::memmem::find(&buf[..buf.len().min(MAX_DECLARATION)], b"?>") else {
            if buf.len() >= MAX_DECLARATION {
                return Err(XmlError::malformed("XML declaration too long"));
            }
            return Ok(None);
        };
        let bad = || XmlError::malformed("malformed XML declaration");
        let mut rest = text(buf, 5, end)?;
        let mut seen = Vec::new();
        loop {
            let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
            if trimmed.is_empty() {
                break;
            }
            if trimmed.len() == rest.len() {
                return Err(bad());
            }
            let (name, after) = trimmed.split_once('=').ok_or_else(bad)?;
            let name = name.trim_end_matches([' ', '\t', '\r', '\n']);
            let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
            let quote = after.chars().next().filter(|q| matches!(q, '\'' | '"'));
            let quote = quote.ok_or_else(bad)?;
            let (value, tail) = after[1..].split_once(quote).ok_or_else(bad)?;
            let order = ["version", "encoding", "standalone"];
            let rank = order.iter().position(|n| *n == name).ok_or_else(bad)?;
            if seen.last().is_some_and(|&r| r >= rank) || (seen.is_empty() && rank != 0) {
                return Err(bad());
            }
            seen.push(rank);
            match rank {
                0 if value != "1.0" => {
                    return Err(XmlError::restricted("only XML version 1.0 is allowed"));
                }
                1 if !value.eq_ignore_ascii_case("utf-8") => {
                    return Err(XmlError::restricted("only UTF-8 is allowed in XMPP"));
                }
                // Exactly 'yes' or 'no' (XML 1.0 [32]); RFC 6120 forbids neither.
                2 if value != "yes" && value != "no" => return Err(bad()),
                _ => {}
            }
            rest = tail;
        }
        if seen.is_empty() {
            return Err(bad());
        }
        Ok(Some((Token::Declaration, end + 2)))
    }

    fn tag<'a>(&mut self, buf: &'a [u8], space: bool) -> Result<Option<(Token<'a>, usize)>> {
        let n = buf.iter().take_while(|&&b| is_space(b)).count();
        if n > 0 {
            self.mode = Mode::Tag { space: true };
            return Ok(Some((Token::Skip, n)));
        }
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        match b {
            b'>' => {
                self.mode = Mode::Content;
                Ok(Some((Token::StartTagEnd { empty: false }, 1)))
            }
            b'/' => match buf.get(1) {
                None => Ok(None),
                Some(b'>') => {
                    self.close_element();
                    Ok(Some((Token::StartTagEnd { empty: true }, 2)))
                }
                Some(_) => Err(XmlError::malformed("expected '>' after '/' in a start tag")),
            },
            _ if !space => Err(XmlError::malformed(
                "expected whitespace, '>' or '/>' after a name or attribute in a start tag",
            )),
            _ => {
                let Some((end, colon)) = self.qname(buf, 0)? else {
                    return Ok(None);
                };
                let scan = AttrScan {
                    start: 0,
                    end,
                    colon,
                    phase: AttrPhase::Eq,
                    pos: end,
                };
                self.attribute(buf, scan)
            }
        }
    }

    fn close_element(&mut self) {
        self.ends.pop();
        self.names.truncate(self.ends.last().copied().unwrap_or(0));
        self.mode = if self.ends.is_empty() {
            Mode::Done
        } else {
            Mode::Content
        };
    }

    fn attribute<'a>(
        &mut self,
        buf: &'a [u8],
        mut scan: AttrScan,
    ) -> Result<Option<(Token<'a>, usize)>> {
        let n = buf.len();
        let mut i = scan.pos;
        loop {
            match scan.phase {
                AttrPhase::Eq | AttrPhase::Open => {
                    while i < n && is_space(buf[i]) {
                        i += 1;
                    }
                    let Some(&b) = buf.get(i) else {
                        break;
                    };
                    scan.phase = match (scan.phase, b) {
                        (AttrPhase::Eq, b'=') => AttrPhase::Open,
                        (AttrPhase::Open, b'\'' | b'"') => AttrPhase::Value {
                            quote: b,
                            start: i + 1,
                            decode: false,
                        },
                        (AttrPhase::Eq, _) => {
                            return Err(XmlError::malformed(
                                "expected '=' after an attribute name",
                            ));
                        }
                        _ => return Err(XmlError::malformed("attribute values must be quoted")),
                    };
                    i += 1;
                }
                AttrPhase::Value {
                    quote,
                    start,
                    ref mut decode,
                } => {
                    while i < n && CLASS[buf[i] as usize] == PLAIN {
                        i += 1;
                    }
                    if i - start > self.max_value {
                        return Err(XmlError::too_long("attribute value", self.max_value));
                    }
                    let Some(&b) = buf.get(i) else {
                        break;
                    };
                    match CLASS[b as usize] {
                        QUOTE if b == quote => {
                            let value = decoded(text(buf, start, i)?, *decode, Run::Value);
                            let name = Self::qname_at(buf, scan.start, scan.end, scan.colon)?;
                            check_reserved(&name, &value)?;
                            self.mode = Mode::Tag { space: false };
                            return Ok(Some((Token::Attribute(name, value), i + 1)));
                        }
                        QUOTE | RBRACKET => i += 1,
                        TAB_LF | CR => {
                            *decode = true;
                            i += 1;
                        }
                        AMP => match reference(&buf[i..])? {
                            Some(len) => {
                                *decode = true;
                                i += len;
                            }
                            None => break,
                        },
                        HIGH => match utf8_char(buf, i)? {
                            Some(len) => i += len,
                            None => break,
                        },
                        LT => {
                            return Err(XmlError::malformed(
                                "'<' is not allowed in attribute values",
                            ));
                        }
                        _ => {
                            return Err(XmlError::control_character(b));
                        }
                    }
                }
            }
        }
        scan.pos = i;
        self.mode = Mode::Attribute(scan);
        Ok(None)
    }

    /// The rest of an end tag whose name, matched already, ends at `pos`.
    fn end_tag<'a>(&mut self, buf: &'a [u8], pos: usize) -> Result<Option<(Token<'a>, usize)>> {
        let mut i = pos;
        while i < buf.len() && is_space(buf[i]) {
            i += 1;
        }
        match buf.get(i) {
            None => {
                self.mode = Mode::EndTag { pos: i };
                Ok(None)
            }
            Some(b'>') => {
                self.close_element();
                Ok(Some((Token::EndTag, i + 1)))
            }
            Some(_) => Err(XmlError::malformed("expected '>' to close an end tag")),
        }
    }

    fn cdata<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>> {
        let n = buf.len();
        let mut i = 0;
        let mut decode = false;
        let (stop, consumed) = loop {
            while i < n && !matches!(CLASS[buf[i] as usize], RBRACKET | CR | HIGH | CONTROL) {
                i += 1;
            }
            let Some(&b) = buf.get(i) else {
                break (n, n);
            };
            match CLASS[b as usize] {
                RBRACKET => {
                    let rest = &buf[i..];
                    if rest.starts_with(b"]]>") {
                        self.mode = Mode::Content;
                        break (i, i + 3);
                    }
                    if b"]]>".starts_with(rest) {
                        break (i, i);
                    }
                    i += 1;
                }
                CR => {
                    if i + 1 == n {
                        break (i, i);
                    }
                    decode = true;
                    i += 1;
                }
                HIGH => match utf8_char(buf, i)? {
                    Some(len) => i += len,
                    None => break (i, i),
                },
                _ => {
                    return Err(XmlError::control_character(b));
                }
            }
        };
        if consumed == 0 {
            return Ok(None);
        }
        if stop == 0 {
            return Ok(Some((Token::Skip, consumed)));
        }
        let text = decoded(text(buf, 0, stop)?, decode, Run::Cdata);
        Ok(Some((Token::Text(text), consumed)))
    }
}

/// Namespaces in XML 1.0, "Reserved Prefixes and Namespace Names" and "No Prefix Undeclaring".
fn check_reserved(name: &QName<'_>, value: &str) -> Result<()> {
    const XML_NS: &str = crate::ns::XML;
    const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
    match (name.prefix, name.local) {
        (Some("xmlns"), "xmlns") => Err(XmlError::malformed("the prefix 'xmlns' is reserved")),
        (Some("xmlns"), "xml") if value != XML_NS => Err(XmlError::malformed(
            "the prefix 'xml' is bound to the XML namespace and no other",
        )),
        (Some("xmlns"), local) if local != "xml" && value == XML_NS => Err(XmlError::malformed(
            "the XML namespace is bound to the prefix 'xml' and no other",
        )),
        (Some("xmlns"), _) if value.is_empty() => Err(XmlError::malformed(
            "a namespace prefix cannot be undeclared (xmlns:p='') in XML 1.0",
        )),
        (None, "xmlns") if value == XML_NS => Err(XmlError::malformed(
            "the XML namespace cannot be the default namespace",
        )),
        // Nothing may be bound to the namespace of `xmlns` itself (rxml 0.14 lets it through).
        (Some("xmlns"), _) | (None, "xmlns") if value == XMLNS_NS => Err(XmlError::malformed(
            "the xmlns namespace cannot be declared",
        )),
        _ => Ok(()),
    }
}
