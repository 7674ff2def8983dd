use super::*;
use crate::stream_error::StreamErrorCondition as C;
use proptest::prelude::*;

pub(super) const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='contoso.com' from='fabrikam.com' version='1.0' xml:lang='en'>";

/// Feed `input` in chunks of `chunk` bytes; collect frames until the first error.
pub(super) fn frames(
    input: &[u8],
    chunk: usize,
    limits: FramerLimits,
) -> (Vec<Frame>, Option<FramingError>) {
    let mut framer = StanzaFramer::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        // The framer holds on to one unfinished token at most (its length is limited).
        let token = limits.max_token_len + 2 * limits.max_name_len + 64;
        assert!(
            buf.len() <= chunk.max(1).saturating_add(token),
            "input buffer grew to {}",
            buf.len()
        );
    }
    match framer.decode_eof(&mut buf) {
        Ok(Some(f)) => out.push(f),
        Ok(None) => {}
        Err(e) => return (out, Some(e)),
    }
    (out, None)
}

pub(super) fn auth() -> FramerLimits {
    FramerLimits::authenticated(262_144)
}

fn error_of(input: &str, limits: FramerLimits) -> StreamError {
    let (_, err) = frames(input.as_bytes(), 7, limits);
    err.expect("input must be refused").stream_error()
}

#[test]
fn frames_header_stanzas_keepalives_and_close() {
    let input = format!(
        "{HEADER}<message to='alice@contoso.com' from='bob@fabrikam.com' type='chat'><body>hi &amp; bye</body></message> \n<db:result from='fabrikam.com' to='contoso.com'>abc</db:result></stream:stream>"
    );
    let (f, err) = frames(input.as_bytes(), 1000, auth());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(f.len(), 5, "{f:#?}");
    let Frame::Header(h) = &f[0] else { panic!() };
    assert_eq!(
        (
            h.to.as_deref(),
            h.from.as_deref(),
            h.version.as_deref(),
            h.lang.as_deref()
        ),
        (
            Some("contoso.com"),
            Some("fabrikam.com"),
            Some("1.0"),
            Some("en")
        )
    );
    let Frame::Element(m) = &f[1] else { panic!() };
    assert!(m.is(ns::SERVER, "message"));
    assert_eq!(
        m.get_child(ns::SERVER, "body").unwrap().text_content(),
        "hi & bye"
    );
    assert_eq!(f[2], Frame::KeepAlive);
    let Frame::Element(db) = &f[3] else { panic!() };
    assert!(db.is(ns::DIALBACK, "result"));
    // Re-serialised with the prefix our stream header binds, whatever prefix the peer used;
    // standalone, it declares it.
    assert_eq!(
        db.to_xml_in(ns::SERVER),
        "<db:result from='fabrikam.com' to='contoso.com'>abc</db:result>"
    );
    assert_eq!(
        db.to_xml(),
        "<db:result xmlns:db='jabber:server:dialback' from='fabrikam.com' to='contoso.com'>abc</db:result>"
    );
    assert_eq!(f[4], Frame::Close);
}

#[test]
fn hostile_xml_is_refused_with_the_right_condition() {
    let cases = [
        (
            "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            Some(C::RestrictedXml),
        ),
        ("<message><!DOCTYPE x></message>", Some(C::RestrictedXml)),
        ("<message><?evil pi?></message>", None),
        ("<message><!-- comment --></message>", None),
        ("<message>&foo;</message>", None),
        ("<message><x:body/></message>", None),
        ("<message><a></b></message>", Some(C::NotWellFormed)),
        ("<message a='1' a='2'/>", None),
        ("<message>\u{1}</message>", None),
        ("<message>]]></message>", None),
    ];
    for (body, expected) in cases {
        let input = if body.starts_with("<!DOCTYPE") {
            body.to_string()
        } else {
            format!("{HEADER}{body}")
        };
        let e = error_of(&input, auth());
        match expected {
            Some(c) => assert_eq!(e.condition, c, "{body}"),
            None => assert!(
                matches!(e.condition, C::NotWellFormed | C::RestrictedXml),
                "{body}: {e}"
            ),
        }
        assert!(!e.text.is_empty());
    }
}

#[test]
fn invalid_utf8_is_an_encoding_error() {
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(b"<message><body>\xff\xfe</body></message>");
    let (_, err) = frames(&input, 5, auth());
    assert_eq!(
        err.unwrap().stream_error().condition,
        C::UnsupportedEncoding
    );
}

#[test]
fn limits_are_policy_violations_before_buffering() {
    // A stanza over the limit, made of many small text chunks.
    let big = format!(
        "{HEADER}<message><body>{}</body></message>",
        "x".repeat(20_000)
    );
    let limits = FramerLimits {
        max_stanza_bytes: 10_000,
        ..auth()
    };
    let e = error_of(&big, limits);
    assert_eq!(e.condition, C::PolicyViolation);
    assert!(e.text.contains("10000 bytes"), "{e}");

    // A gigantic attribute value: refused at the token limit, never buffered whole.
    let attr = format!("{HEADER}<message to='{}'/>", "a".repeat(1 << 20));
    let e = error_of(&attr, FramerLimits::PRE_AUTH);
    assert!(
        matches!(e.condition, C::RestrictedXml | C::PolicyViolation),
        "{e}"
    );

    // A start tag that never ends: many small attributes.
    let attrs: String = (0..5000).map(|i| format!(" a{i}='v'")).collect();
    let e = error_of(&format!("{HEADER}<message{attrs}>"), FramerLimits::PRE_AUTH);
    assert_eq!(e.condition, C::PolicyViolation, "{e}");

    let deep = format!("{HEADER}<message>{}", "<a>".repeat(100));
    assert!(
        error_of(&deep, auth())
            .text
            .contains("nested deeper than 32")
    );

    let many: String = (0..20).map(|i| format!(" a{i}='v'")).collect();
    assert!(
        error_of(&format!("{HEADER}<message{many}/>"), FramerLimits::PRE_AUTH)
            .text
            .contains("more than 16 attributes")
    );

    let long_name = format!("{HEADER}<{}/>", "m".repeat(100));
    assert!(
        error_of(&long_name, FramerLimits::PRE_AUTH)
            .text
            .contains("name longer than 64")
    );
}

#[test]
fn stream_shape_errors() {
    let e = error_of("<stream xmlns='jabber:server'>", auth());
    assert_eq!(e.condition, C::InvalidNamespace);
    let e = error_of(&format!("{HEADER}hello<message/>"), auth());
    assert_eq!(e.condition, C::BadFormat);
    let (_, err) = frames(
        format!("{HEADER}<message><body>unfinished").as_bytes(),
        9,
        auth(),
    );
    assert!(matches!(err, Some(FramingError::UnexpectedEof)));
}

#[test]
fn slow_headers_do_not_accumulate() {
    // A peer that sends a header byte by byte: the framer holds nothing but parser state.
    let (f, err) = frames(HEADER.as_bytes(), 1, auth());
    assert!(matches!(f[0], Frame::Header(_)));
    // The stream was never closed, which end-of-input reports.
    assert!(matches!(err, Some(FramingError::UnexpectedEof)));
}

fn sample_stream() -> String {
    format!(
        "{HEADER}<message to='a@contoso.com' from='b@fabrikam.com' id='1'><body>h\u{e9}llo &lt;world&gt; <![CDATA[raw <b>]]></body><x xmlns='urn:x' k='v'/></message>\n\t<presence from='b@fabrikam.com/r' to='a@contoso.com'><status>\u{1F600}</status></presence><iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
    )
}

proptest! {
    /// However the bytes are split, the frames are the same (whitespace between stanzas is
    /// reported as it arrives, so a split run of it may count as two keepalives).
    #[test]
    fn chunking_does_not_change_the_frames(chunk in 1usize..64) {
        let input = sample_stream();
        let (mut whole, e1) = frames(input.as_bytes(), input.len(), auth());
        let (mut split, e2) = frames(input.as_bytes(), chunk, auth());
        prop_assert!(e1.is_none() && e2.is_none());
        for f in [&mut whole, &mut split] {
            f.dedup_by(|a, b| *a == Frame::KeepAlive && *b == Frame::KeepAlive);
        }
        prop_assert_eq!(whole, split);
    }

    /// Re-serialised stanzas parse back to the same tree.
    #[test]
    fn reserialised_stanzas_round_trip(chunk in 1usize..32) {
        let (frames1, _) = frames(sample_stream().as_bytes(), chunk, auth());
        let elements: Vec<&Element> = frames1.iter().filter_map(|f| match f { Frame::Element(e) => Some(e), _ => None }).collect();
        let again = format!("{HEADER}{}</stream:stream>", elements.iter().map(|e| e.to_xml_in(ns::SERVER)).collect::<String>());
        let (frames2, err) = frames(again.as_bytes(), chunk, auth());
        prop_assert!(err.is_none());
        let elements2: Vec<&Element> = frames2.iter().filter_map(|f| match f { Frame::Element(e) => Some(e), _ => None }).collect();
        prop_assert_eq!(elements, elements2);
    }

    /// Arbitrary bytes after a valid header never panic and never grow the buffer.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..50) {
        let mut input = HEADER.as_bytes().to_vec();
        input.extend(bytes);
        let _ = frames(&input, chunk, FramerLimits::PRE_AUTH);
    }
}

#[test]
fn an_empty_element_is_yielded_without_waiting_for_more_bytes() {
    // A peer that sent <starttls/> waits for <proceed/>: nothing follows until we answer.
    let mut framer = StanzaFramer::new(FramerLimits::PRE_AUTH);
    let mut buf = BytesMut::from(HEADER.as_bytes());
    assert!(matches!(
        framer.decode(&mut buf),
        Ok(Some(Frame::Header(_)))
    ));
    buf.extend_from_slice(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    let frame = framer.decode(&mut buf).unwrap();
    assert!(
        matches!(&frame, Some(Frame::Element(e)) if e.name == "starttls"),
        "{frame:?}"
    );
}

#[test]
fn one_text_node_may_fill_the_whole_stanza() {
    // A vCard avatar is one long base64 text node; only the stanza limit applies to it.
    let limits = FramerLimits::authenticated(200_000);
    let input = format!(
        "{HEADER}<iq><vCard><PHOTO>{}</PHOTO></vCard></iq></stream:stream>",
        "A".repeat(150_000)
    );
    let (frames, error) = frames(input.as_bytes(), 8192, limits);
    assert!(error.is_none(), "{error:?}");
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::Element(e) if e.name == "iq")),
        "{frames:?}"
    );
}
