//! A relay writes a stanza's received bytes on instead of re-serialising it
//! ([`StanzaFramer::take_verbatim`]). That is only sound if those bytes, read in the link's
//! stream (default namespace `jabber:server`, no other prefixes), give the very element the
//! framer produced. These tests check it on the generated streams of the lexer and namespace
//! tests, and that bytes relying on the partner's stream header are never offered.

use super::namespace_tests::{ours, sorted};
use super::tests::{HEADER, auth};
use super::*;
use proptest::prelude::*;

/// A stream as the internal link opens it: `jabber:server` and the `stream` prefix only.
const LINK_HEADER: &str =
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Partner headers binding other defaults and prefixes than the link's (the generated elements
/// use the prefixes `a`, `b`, `c`, `stream` and `db`).
const OTHER_HEADER: &str = "<stream:stream xmlns='urn:y' xmlns:stream='http://etherx.jabber.org/streams' xmlns:a='urn:x' xmlns:b='jabber:server'>";
const BARE_HEADER: &str =
    "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:c='urn:x'>";

/// Each top-level element with its verbatim bytes, reading `input` in `chunk`-byte reads;
/// `None` when the stream is refused.
fn with_verbatim(input: &str, chunk: usize) -> Option<Vec<(Element, Option<String>)>> {
    let mut framer = StanzaFramer::new(auth());
    framer.capture_verbatim();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.as_bytes().chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(Frame::Element(e))) => out.push((e, framer.take_verbatim())),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return None,
            }
        }
    }
    Some(out)
}

/// Every verbatim element parses, in the link's stream, to the element the framer produced.
/// Returns how many were offered verbatim.
fn check(input: &str, chunk: usize) -> Result<usize, TestCaseError> {
    let Some(elements) = with_verbatim(input, chunk) else {
        return Ok(0);
    };
    let mut offered = 0;
    for (element, verbatim) in elements {
        let Some(bytes) = verbatim else { continue };
        offered += 1;
        let again = ours(&format!("{LINK_HEADER}{bytes}</stream:stream>"));
        prop_assert!(again.is_ok(), "{bytes:?} from {input:?}: {again:?}");
        prop_assert_eq!(
            again.unwrap_or_default(),
            vec![sorted(element)],
            "{:?} from {:?}",
            bytes,
            input
        );
    }
    Ok(offered)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn verbatim_bytes_of_generated_text_and_references_mean_the_same(
        stanzas in prop::collection::vec(super::lexer_tests::element(), 1..3),
        chunk in prop_oneof![Just(usize::MAX), 1usize..5, 5usize..64],
    ) {
        check(&format!("{HEADER}{}</stream:stream>", stanzas.concat()), chunk)?;
    }

    #[test]
    fn verbatim_bytes_of_generated_namespaces_mean_the_same(
        stanzas in prop::collection::vec(super::namespace_tests::element(), 1..3),
        chunk in prop_oneof![Just(usize::MAX), 1usize..64],
        header in prop::sample::select(vec![HEADER, OTHER_HEADER, BARE_HEADER]),
    ) {
        check(&format!("{header}{}</stream:stream>", stanzas.concat()), chunk)?;
    }
}

#[test]
fn generated_namespaces_are_often_verbatim_and_often_not() {
    // The property is only worth something if both occur often.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut verbatim, mut serialised) = (0, 0);
    for _ in 0..2000 {
        let tree = super::namespace_tests::element()
            .new_tree(&mut runner)
            .expect("strategy");
        let input = format!("{HEADER}{}</stream:stream>", tree.current());
        for (_, v) in with_verbatim(&input, usize::MAX).unwrap_or_default() {
            match v {
                Some(_) => verbatim += 1,
                None => serialised += 1,
            }
        }
    }
    assert!(
        verbatim > 50 && serialised > 50,
        "{verbatim} verbatim, {serialised} not"
    );
}

#[test]
fn self_contained_stanzas_are_offered_byte_for_byte() {
    let stanza = "<message to='a@contoso.com' from='b@fabrikam.com'><body>1 &lt; 2 &#x263A; <![CDATA[<x>]]></body>\r\n<x:y xmlns:x='urn:x' x:k=\"v\"/><z xmlns='urn:z' xml:lang='en'/></message>";
    for chunk in [1, 7, usize::MAX] {
        let got =
            with_verbatim(&format!("{HEADER} \n{stanza}\t{stanza}"), chunk).expect("accepted");
        assert_eq!(got.len(), 2);
        for (_, v) in got {
            assert_eq!(v.as_deref(), Some(stanza), "in chunks of {chunk}");
        }
    }
}

#[test]
fn bytes_relying_on_the_stream_header_are_not_offered() {
    let jabber_client = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:a='urn:a'>";
    let no_default = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
    for (header, stanza) in [
        // Prefixes bound on the partner's stream header.
        (
            HEADER,
            "<db:result from='fabrikam.com' to='contoso.com'>k</db:result>",
        ),
        (HEADER, "<message><db:x/></message>"),
        (HEADER, "<message db:k='v'/>"),
        (jabber_client, "<message><a:x/></message>"),
        // A default namespace inherited from the header other than jabber:server, also below
        // a prefixed top-level element.
        (jabber_client, "<message/>"),
        (
            jabber_client,
            "<p:message xmlns:p='jabber:server'><body/></p:message>",
        ),
        (
            no_default,
            "<p:message xmlns:p='jabber:server'><body/></p:message>",
        ),
    ] {
        let got = with_verbatim(&format!("{header}{stanza}"), usize::MAX).expect("accepted");
        assert_eq!(got.len(), 1, "{stanza}");
        assert_eq!(got[0].1, None, "{stanza} after {header}");
    }
    // Declared on the element itself, the same is fine; so is jabber:server from the header.
    for (header, own) in [
        (
            jabber_client,
            "<message xmlns='jabber:server'><a:x xmlns:a='urn:a'/></message>",
        ),
        (
            jabber_client,
            "<p:message xmlns:p='jabber:server' xmlns='urn:x'><b/></p:message>",
        ),
        (
            HEADER,
            "<p:message xmlns:p='jabber:server'><body/></p:message>",
        ),
    ] {
        let got = with_verbatim(&format!("{header}{own}"), usize::MAX).expect("accepted");
        assert_eq!(got[0].1.as_deref(), Some(own), "{own} after {header}");
    }
}

#[test]
fn verbatim_bytes_are_only_kept_when_asked_for_and_taken_once() {
    let input = format!("{HEADER}<message/>");
    let mut framer = StanzaFramer::new(auth());
    let mut buf = BytesMut::from(input.as_bytes());
    assert!(matches!(
        framer.decode(&mut buf),
        Ok(Some(Frame::Header(_)))
    ));
    assert!(matches!(
        framer.decode(&mut buf),
        Ok(Some(Frame::Element(_)))
    ));
    assert_eq!(framer.take_verbatim(), None, "not asked for");

    framer.capture_verbatim();
    buf.extend_from_slice(b"<iq type='get'/>");
    assert!(matches!(
        framer.decode(&mut buf),
        Ok(Some(Frame::Element(_)))
    ));
    assert_eq!(framer.take_verbatim().as_deref(), Some("<iq type='get'/>"));
    assert_eq!(framer.take_verbatim(), None, "taken");
}
