//! Stanza addresses: JIDs validated by the `jid` crate (RFC 7622 PRECIS profiles), domains
//! normalised to lower-case IDNA A-labels without a trailing dot before any comparison.

use xmppfed_policy::domain::normalize_domain;

/// A JID split into what routing and policy need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The normalised domainpart.
    pub domain: String,
    /// `local@domain` (or the domain alone), with the normalised domain.
    pub bare: String,
    /// The full JID as the peer wrote it (localpart/resource normalised by PRECIS).
    pub full: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid JID: {reason}")]
pub struct AddressError {
    pub value: String,
    pub reason: String,
}

/// Parses and normalises a JID.
pub fn parse(value: &str) -> Result<Address, AddressError> {
    let err = |reason: String| AddressError {
        value: value.chars().take(100).collect(),
        reason,
    };
    let jid = jid::Jid::new(value).map_err(|e| err(e.to_string()))?;
    let domain = normalize_domain(jid.domain().as_str()).map_err(|e| err(e.to_string()))?;
    let bare = match jid.node() {
        Some(node) => format!("{}@{domain}", node.as_str()),
        None => domain.clone(),
    };
    let full = match jid.resource() {
        Some(resource) => format!("{bare}/{}", resource.as_str()),
        None => bare.clone(),
    };
    Ok(Address { domain, bare, full })
}

/// Normalises a domain given in a stream header or dialback element.
pub fn domain(value: &str) -> Result<String, AddressError> {
    if value.contains(['@', '/']) {
        return Err(AddressError {
            value: value.chars().take(100).collect(),
            reason: "a server address must be a bare domain".into(),
        });
    }
    normalize_domain(value).map_err(|e| AddressError {
        value: value.chars().take(100).collect(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_before_comparison() {
        assert_eq!(
            parse("Alice@Partner.Example./res").unwrap().domain,
            "partner.example"
        );
        assert_eq!(
            parse("alice@bücher.example").unwrap().domain,
            "xn--bcher-kva.example"
        );
        assert_eq!(domain("PARTNER.example.").unwrap(), "partner.example");
        assert_eq!(
            parse("Alice@Partner.Example/Res").unwrap().full,
            "alice@partner.example/Res"
        );
    }

    #[test]
    fn invalid_addresses_are_refused() {
        assert!(parse("").is_err());
        assert!(parse("a@").is_err());
        assert!(parse("@example.com").is_err());
        assert!(domain("user@example.com").is_err());
        assert!(domain("exa mple.com").is_err());
    }
}
