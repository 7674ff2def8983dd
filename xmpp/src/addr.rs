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

/// The normalised domains of the last few valid addresses one stream carried.
///
/// Consecutive stanzas on a server-to-server stream mostly repeat their `from` and `to`, and
/// parsing a JID (PRECIS profiles, IDNA) costs more than the rest of policing a stanza; the
/// answer for the same text never changes. Only short addresses are kept, so an idle stream
/// holds at most a few hundred bytes here.
#[derive(Debug, Default)]
pub struct DomainCache {
    entries: Vec<(Box<str>, Box<str>)>,
    /// The entry to replace next (round robin: cheap, and good enough for a handful).
    next: usize,
}

impl DomainCache {
    const ENTRIES: usize = 4;
    const MAX_LEN: usize = 128;

    /// The normalised domain of `value`, which must be a valid JID.
    pub fn domain_of(&mut self, value: &str) -> Result<String, AddressError> {
        if let Some((_, domain)) = self.entries.iter().find(|(raw, _)| &**raw == value) {
            return Ok(domain.to_string());
        }
        let domain = parse(value)?.domain;
        if value.len() <= Self::MAX_LEN {
            let entry = (value.into(), domain.as_str().into());
            if self.entries.len() < Self::ENTRIES {
                self.entries.push(entry);
            } else {
                self.entries[self.next] = entry;
                self.next = (self.next + 1) % Self::ENTRIES;
            }
        }
        Ok(domain)
    }
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
    fn the_cache_answers_as_parse_does() {
        let mut cache = DomainCache::default();
        let values = [
            "Alice@Partner.Example./res",
            "alice@bücher.example",
            "a@",
            "x.example",
            "bob@partner.example/phone",
            "Alice@Partner.Example./res",
            "@example.com",
            "c@other.example",
            "d@fourth.example",
            "alice@bücher.example",
            "a@",
        ];
        for _ in 0..3 {
            for v in values {
                assert_eq!(cache.domain_of(v), parse(v).map(|a| a.domain), "{v}");
            }
        }
        assert_eq!(cache.entries.len(), DomainCache::ENTRIES);
        let long = format!("{}@partner.example", "a".repeat(200));
        assert_eq!(cache.domain_of(&long).as_deref(), Ok("partner.example"));
        assert!(
            cache
                .entries
                .iter()
                .all(|(raw, _)| raw.len() <= DomainCache::MAX_LEN)
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
