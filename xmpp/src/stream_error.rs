//! RFC 6120 §4.9 stream errors. Every refused peer gets one, with a `<text/>` saying why.

use crate::element::{Attribute, Element};
use crate::ns;
use std::fmt;

/// Declares the conditions once: the enum, [`StreamErrorCondition::ALL`] and their names.
macro_rules! conditions {
    ($($variant:ident => $name:literal,)*) => {
        /// The defined stream error conditions (RFC 6120 §4.9.3).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum StreamErrorCondition {
            $($variant,)*
        }

        impl StreamErrorCondition {
            pub const ALL: &[StreamErrorCondition] = &[$(StreamErrorCondition::$variant,)*];

            /// The element name, e.g. `policy-violation`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(StreamErrorCondition::$variant => $name,)*
                }
            }
        }
    };
}

conditions! {
    BadFormat => "bad-format",
    BadNamespacePrefix => "bad-namespace-prefix",
    Conflict => "conflict",
    ConnectionTimeout => "connection-timeout",
    HostGone => "host-gone",
    HostUnknown => "host-unknown",
    ImproperAddressing => "improper-addressing",
    InternalServerError => "internal-server-error",
    InvalidFrom => "invalid-from",
    InvalidNamespace => "invalid-namespace",
    InvalidXml => "invalid-xml",
    NotAuthorized => "not-authorized",
    NotWellFormed => "not-well-formed",
    PolicyViolation => "policy-violation",
    RemoteConnectionFailed => "remote-connection-failed",
    Reset => "reset",
    ResourceConstraint => "resource-constraint",
    RestrictedXml => "restricted-xml",
    SeeOtherHost => "see-other-host",
    SystemShutdown => "system-shutdown",
    UndefinedCondition => "undefined-condition",
    UnsupportedEncoding => "unsupported-encoding",
    UnsupportedFeature => "unsupported-feature",
    UnsupportedStanzaType => "unsupported-stanza-type",
    UnsupportedVersion => "unsupported-version",
}

impl StreamErrorCondition {
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream error with its human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: String,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        Self {
            condition,
            text: text.into(),
        }
    }

    /// `<stream:error>` with the condition and `<text/>`.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new(ns::STREAMS, "error")
            .child(Element::new(ns::STREAM_ERRORS, self.condition.as_str()));
        if !self.text.is_empty() {
            let mut text = Element::new(ns::STREAM_ERRORS, "text").text(self.text.clone());
            text.attrs.push(Attribute {
                ns: ns::XML.into(),
                name: "lang".into(),
                value: "en".into(),
            });
            e = e.child(text);
        }
        e
    }

    /// Read a received `<stream:error>`.
    pub fn from_element(e: &Element) -> Option<Self> {
        if !e.is(ns::STREAMS, "error") {
            return None;
        }
        let condition = e
            .elements()
            .filter(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
            .find_map(|c| StreamErrorCondition::from_name(&c.name))
            .unwrap_or(StreamErrorCondition::UndefinedCondition);
        let text = e
            .get_child(ns::STREAM_ERRORS, "text")
            .map(Element::text_content)
            .unwrap_or_default();
        Some(Self { condition, text })
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}/>", self.condition)?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_condition_and_text() {
        let e = StreamError::new(
            StreamErrorCondition::PolicyViolation,
            "fabrikam.com is not an allowed partner",
        );
        assert_eq!(
            e.to_element().to_xml(),
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>fabrikam.com is not an allowed partner</text></stream:error>"
        );
        // On a stream, the header's binding of `stream:` is used.
        assert!(
            e.to_element()
                .to_xml_in(ns::SERVER)
                .starts_with("<stream:error><policy-violation xmlns=")
        );
        assert_eq!(StreamError::from_element(&e.to_element()), Some(e));
    }

    #[test]
    fn every_condition_round_trips_by_name() {
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for &c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::from_name(c.as_str()), Some(c));
        }
    }
}
