//! The framer resolves namespaces itself (rxml's `RawParser` does not). These tests hold it to
//! rxml's own namespace-resolving `Parser`: on generated documents full of prefixes,
//! declarations, undeclarations and duplicates, both accept the same documents and resolve
//! them to the same elements.

use super::tests::{HEADER, auth, frames};
use super::*;
use proptest::prelude::*;
use rxml::Event;
use rxml::error::EndOrError;
use rxml::parser::Parse;

/// Top-level elements as rxml's `Parser` resolves them (attributes sorted: its map does not
/// keep document order).
pub(super) fn reference(input: &str) -> Result<Vec<Element>, rxml::Error> {
    let mut parser = rxml::Parser::new();
    let mut rest = input.as_bytes();
    let mut stack: Vec<Element> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    loop {
        match parser.parse(&mut rest, true) {
            Ok(Some(Event::XmlDeclaration(..))) => {}
            Ok(Some(Event::StartElement(_, (ns, name), attrs))) => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
                let mut element = Element::new(ns.as_str().to_string(), name.to_string());
                for ((ans, aname), value) in attrs {
                    element.attrs.push(Attribute {
                        ns: ans.as_str().to_string().into(),
                        name: aname.to_string(),
                        value,
                    });
                }
                stack.push(element);
            }
            Ok(Some(Event::EndElement(_))) => {
                depth -= 1;
                if depth == 0 {
                    continue;
                }
                let done = stack.pop().expect("rxml nests elements");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(done)),
                    None => out.push(done),
                }
            }
            Ok(Some(Event::Text(_, text))) => {
                if let Some(e) = stack.last_mut() {
                    match e.children.last_mut() {
                        Some(Node::Text(t)) => t.push_str(&text),
                        _ => e.children.push(Node::Text(text)),
                    }
                }
            }
            Ok(None) => return Ok(out),
            Err(EndOrError::NeedMoreData) => unreachable!("the whole input was given"),
            Err(EndOrError::Error(e)) => return Err(e),
        }
    }
}

pub(super) fn sorted(mut e: Element) -> Element {
    e.attrs
        .sort_by(|a, b| (&a.ns, &a.name).cmp(&(&b.ns, &b.name)));
    e.children = e
        .children
        .into_iter()
        .map(|n| match n {
            Node::Element(c) => Node::Element(sorted(c)),
            text => text,
        })
        .collect();
    e
}

pub(super) fn ours(input: &str) -> Result<Vec<Element>, FramingError> {
    ours_in_chunks(input, input.len())
}

/// Top-level elements as the framer reads them from `input` in `chunk`-byte reads (attributes
/// sorted, as in [`reference`]).
pub(super) fn ours_in_chunks(input: &str, chunk: usize) -> Result<Vec<Element>, FramingError> {
    let (frames, error) = frames(input.as_bytes(), chunk, auth());
    if let Some(e) = error {
        return Err(e);
    }
    Ok(frames
        .into_iter()
        .filter_map(|f| match f {
            Frame::Element(e) => Some(sorted(e)),
            _ => None,
        })
        .collect())
}

fn prefix() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", "", "a:", "b:", "xml:", "stream:", "db:", "c:", "xmlns:",
    ])
}

fn namespace() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "urn:x",
        "urn:y",
        "jabber:server",
        "http://www.w3.org/XML/1998/namespace",
        "http://www.w3.org/2000/xmlns/",
    ])
}

/// One item of a start tag: a namespace declaration or an attribute.
fn tag_item() -> impl Strategy<Value = String> {
    prop_oneof![
        namespace().prop_map(|ns| format!(" xmlns='{ns}'")),
        (
            prop::sample::select(vec!["a", "b", "stream", "xml", "xmlns"]),
            namespace()
        )
            .prop_map(|(p, ns)| format!(" xmlns:{p}='{ns}'")),
        (prefix(), prop::sample::select(vec!["p", "q", "lang"]))
            .prop_map(|(p, n)| format!(" {p}{n}='v'")),
    ]
}

pub(super) fn element() -> impl Strategy<Value = String> {
    let leaf = (prefix(), prop::collection::vec(tag_item(), 0..4))
        .prop_map(|(p, items)| format!("<{p}m{}/>", items.concat()));
    leaf.prop_recursive(3, 24, 3, |inner| {
        (
            prefix(),
            prop::collection::vec(tag_item(), 0..4),
            prop::collection::vec(prop_oneof![inner, Just("t &amp; u".to_string())], 0..3),
        )
            .prop_map(|(p, items, children)| {
                format!("<{p}n{}>{}</{p}n>", items.concat(), children.concat())
            })
    })
}

/// Whether a start tag has two `xmlns='…'` attributes.
fn declares_default_twice(input: &str) -> bool {
    input.split('<').any(|tag| {
        tag.split('>')
            .next()
            .unwrap_or("")
            .matches(" xmlns='")
            .count()
            > 1
    })
}

/// What rxml 0.14 accepts and Namespaces in XML 1.0 §3 reserves, so the framer refuses it: the
/// xmlns namespace declared, an element in the XML namespace (no output could declare either).
fn uses_reserved_namespace(input: &str, elements: &[Element]) -> bool {
    fn in_xml(e: &Element) -> bool {
        e.ns == ns::XML || e.elements().any(in_xml)
    }
    input.contains("='http://www.w3.org/2000/xmlns/'") || elements.iter().any(in_xml)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn namespaces_resolve_as_rxml_resolves_them(stanzas in prop::collection::vec(element(), 1..3)) {
        let input = format!("{HEADER}{}</stream:stream>", stanzas.concat());
        if declares_default_twice(&input) {
            // XML 1.0 "Unique Att Spec" forbids it; rxml 0.14's resolver keeps the last value.
            prop_assert!(ours(&input).is_err(), "{}", input);
            return Ok(());
        }
        match (ours(&input), reference(&input)) {
            (Ok(a), Ok(b)) => {
                let b: Vec<Element> = b.into_iter().map(sorted).collect();
                prop_assert_eq!(a, b, "{}", input);
            }
            (Err(_), Err(_)) => {}
            (Err(_), Ok(b)) if uses_reserved_namespace(&input, &b) => {}
            (a, b) => prop_assert!(false, "{input}\nours: {a:?}\nrxml: {b:?}"),
        }
    }
}

#[test]
fn generated_documents_are_accepted_often_enough_to_matter() {
    // The property above is only worth something if both outcomes occur often.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..500 {
        let tree = element().new_tree(&mut runner).expect("strategy");
        let input = format!("{HEADER}{}</stream:stream>", tree.current());
        match reference(&input) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 50 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn namespace_errors_and_their_stream_errors() {
    use crate::stream_error::StreamErrorCondition as C;
    let cases = [
        // Prefix not declared (in scope only inside the element that declares it).
        "<message><a:x/></message>",
        "<message><x xmlns:a='urn:a'/><a:y/></message>",
        "<message p='1' p='2'/>",
        // The same expanded name through two prefixes.
        "<message xmlns:a='urn:x' xmlns:b='urn:x' a:p='1' b:p='2'/>",
        "<message xmlns:a='urn:x' xmlns:a='urn:y'/>",
        "<message xmlns='urn:x' xmlns='urn:y'/>",
        "<message xmlns:a=''/>",
        "<message xmlns:xmlns='urn:x'/>",
        "<xmlns:message/>",
    ];
    for body in cases {
        let (_, error) = frames(format!("{HEADER}{body}").as_bytes(), 5, auth());
        let error = error
            .unwrap_or_else(|| panic!("accepted {body}"))
            .stream_error();
        assert_eq!(error.condition, C::NotWellFormed, "{body}: {error}");
        assert!(!error.text.is_empty());
    }
    // A default namespace undeclared, and a prefix redeclared in an inner scope.
    let (frames, error) = frames(
        format!(
            "{HEADER}<message xmlns:a='urn:outer'><x xmlns=''/><a:y xmlns:a='urn:inner'/><a:z/></message>"
        )
        .as_bytes(),
        3,
        auth(),
    );
    assert!(error.is_none() || matches!(error, Some(FramingError::UnexpectedEof)));
    let Some(Frame::Element(message)) = frames.get(1) else {
        panic!("{frames:?}")
    };
    let names: Vec<(&str, &str)> = message
        .elements()
        .map(|e| (e.ns.as_ref(), e.name.as_str()))
        .collect();
    assert_eq!(names, [("", "x"), ("urn:inner", "y"), ("urn:outer", "z")]);
}
