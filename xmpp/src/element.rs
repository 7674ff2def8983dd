//! A small XML element tree for stanzas, and its canonical serialisation.
//!
//! The serialisation declares every namespace it uses, so it is well-formed in any stream it is
//! written into, whatever prefixes the peer's stream header declared. A relay that has the
//! stanza's received bytes, and the framer's word that they stand on their own
//! ([`crate::framer::StanzaFramer::take_verbatim`]), writes those instead.

use crate::ns::{self, Namespace};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// One attribute: namespace (empty for none), local name, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub ns: Namespace,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ns: Namespace,
    pub name: String,
    pub attrs: Vec<Attribute>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(ns: impl Into<Namespace>, name: impl Into<String>) -> Self {
        Self {
            ns: ns.into(),
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute without namespace.
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: append a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: append text.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// The value of an attribute without namespace.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .attrs
            .iter_mut()
            .find(|a| a.ns.is_empty() && a.name == name)
        {
            Some(a) => a.value = value,
            None => self.attrs.push(Attribute {
                ns: Namespace::Borrowed(""),
                name: name.to_string(),
                value,
            }),
        }
    }

    pub fn remove_attr(&mut self, name: &str) {
        self.attrs.retain(|a| !(a.ns.is_empty() && a.name == name));
    }

    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this namespace and name.
    pub fn get_child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// Concatenated text children.
    pub fn text_content(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Serialise, declaring the element's namespace unless it equals `parent_ns` (the default
    /// namespace in scope; empty for a standalone document).
    ///
    /// Stream-level elements get the prefixes every stream header binds — `stream:features`,
    /// `stream:error`, `db:result`, `db:verify` — rather than a default-namespace declaration:
    /// both are equally correct XML, but some servers match the prefixed names literally
    /// (ejabberd 23.01 never sees `<features xmlns='http://etherx.jabber.org/streams'>`).
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        let prefix = stream_prefix(&self.ns);
        out.push('<');
        if let Some(p) = prefix {
            out.push_str(p);
            out.push(':');
            out.push_str(&self.name);
            if parent_ns.is_empty() {
                // Standalone: no stream header binds the prefix.
                out.push_str(" xmlns:");
                out.push_str(p);
                out.push_str("='");
                escape_into(out, &self.ns, true);
                out.push('\'');
            }
        } else {
            out.push_str(&self.name);
            if self.ns != parent_ns {
                out.push_str(" xmlns='");
                escape_into(out, &self.ns, true);
                out.push('\'');
            }
        }
        let mut prefixes = 0usize;
        for a in &self.attrs {
            out.push(' ');
            if a.ns.is_empty() {
                out.push_str(&a.name);
            } else if a.ns == ns::XML {
                out.push_str("xml:");
                out.push_str(&a.name);
            } else {
                // Each foreign-namespace attribute gets its own prefix declaration.
                let prefix = format!("a{prefixes}");
                prefixes += 1;
                out.push_str("xmlns:");
                out.push_str(&prefix);
                out.push_str("='");
                escape_into(out, &a.ns, true);
                out.push_str("' ");
                out.push_str(&prefix);
                out.push(':');
                out.push_str(&a.name);
            }
            out.push_str("='");
            escape_into(out, &a.value, true);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        // A prefixed element leaves the default namespace as it was.
        let children_default = if prefix.is_some() {
            parent_ns
        } else {
            &self.ns
        };
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, children_default),
                Node::Text(t) => escape_into(out, t, false),
            }
        }
        out.push_str("</");
        if let Some(p) = prefix {
            out.push_str(p);
            out.push(':');
        }
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serialise for a stream whose default namespace is `stream_ns`.
    pub fn to_xml_in(&self, stream_ns: &str) -> String {
        let mut out = String::with_capacity(256);
        self.write_to(&mut out, stream_ns);
        out
    }

    /// Serialise with every namespace declared.
    pub fn to_xml(&self) -> String {
        self.to_xml_in("")
    }
}

/// The prefix a stream header binds for `ns`, if any.
fn stream_prefix(ns: &str) -> Option<&'static str> {
    match ns {
        ns::STREAMS => Some("stream"),
        ns::DIALBACK => Some("db"),
        _ => None,
    }
}

pub(crate) fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' if attribute => out.push_str("&apos;"),
            '"' if attribute => out.push_str("&quot;"),
            // Keep attribute-value whitespace as it was parsed (the parser normalised it).
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_minimal_namespace_declarations() {
        let e = Element::new(ns::SERVER, "message")
            .attr("to", "a@b.example")
            .attr("type", "chat")
            .child(Element::new(ns::SERVER, "body").text("1 < 2 & 'x'"))
            .child(Element::new("urn:xmpp:receipts", "request"));
        assert_eq!(
            e.to_xml_in(ns::SERVER),
            "<message to='a@b.example' type='chat'><body>1 &lt; 2 &amp; 'x'</body><request xmlns='urn:xmpp:receipts'/></message>"
        );
        assert!(e.to_xml().starts_with("<message xmlns='jabber:server'"));
    }

    #[test]
    fn escapes_attribute_values_and_prefixes_foreign_attributes() {
        let mut e = Element::new(ns::SERVER, "x").attr("a", "'\"<&\n");
        e.attrs.push(Attribute {
            ns: ns::XML.into(),
            name: "lang".into(),
            value: "en".into(),
        });
        e.attrs.push(Attribute {
            ns: "urn:other".into(),
            name: "k".into(),
            value: "v".into(),
        });
        assert_eq!(
            e.to_xml_in(ns::SERVER),
            "<x a='&apos;&quot;&lt;&amp;&#10;' xml:lang='en' xmlns:a0='urn:other' a0:k='v'/>"
        );
    }
}
