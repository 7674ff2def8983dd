//! Domain names as XMPP compares them: lower-case IDNA A-labels without a trailing dot.
//!
//! Every comparison of a domain (stream `to`/`from`, stanza addresses, partner lookup) goes
//! through [`normalize_domain`] first, so `Partner.Example.`, `partner.example` and
//! `PARTNER.example` are one domain, and `bücher.example` matches its A-label
//! `xn--bcher-kva.example`.

use thiserror::Error;

/// Longest domain name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable domain name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("domain is empty")]
    Empty,
    #[error("domain is longer than {MAX_DOMAIN_LEN} characters")]
    TooLong,
    #[error("domain has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label {0:?} is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error(
        "label {0:?} may only contain letters, digits and '-', and may not start or end with '-'"
    )]
    BadLabel(String),
    #[error("not a valid internationalised domain name: {0}")]
    Idna(String),
}

/// Normalise a domain for comparison: strip one trailing dot, map to lower-case IDNA A-labels
/// (UTS #46), and check DNS syntax (letters, digits, hyphens; label and name lengths).
pub fn normalize_domain(input: &str) -> Result<String, DomainError> {
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty() {
        return Err(DomainError::Empty);
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(trimmed).map_err(|e| DomainError::Idna(e.to_string()))?
    };
    check_domain_syntax(&ascii)?;
    Ok(ascii)
}

/// Check that `domain` is already in normal form (what the CRDs require of users).
pub fn check_domain_syntax(domain: &str) -> Result<(), DomainError> {
    if domain.is_empty() {
        return Err(DomainError::Empty);
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong(label.to_string()));
        }
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ldh || label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::BadLabel(label.to_string()));
        }
    }
    Ok(())
}

/// True when `domain` is a normalised domain name.
pub fn is_normalized(domain: &str) -> bool {
    check_domain_syntax(domain).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_and_strips_one_trailing_dot() {
        assert_eq!(
            normalize_domain("Partner.Example.").unwrap(),
            "partner.example"
        );
        assert_eq!(
            normalize_domain("partner.example").unwrap(),
            "partner.example"
        );
        assert_eq!(
            normalize_domain("a..").unwrap_err(),
            DomainError::EmptyLabel
        );
    }

    #[test]
    fn maps_unicode_to_a_labels() {
        assert_eq!(
            normalize_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_domain("BÜCHER.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn rejects_bad_syntax() {
        assert_eq!(normalize_domain("").unwrap_err(), DomainError::Empty);
        assert_eq!(normalize_domain(".").unwrap_err(), DomainError::Empty);
        assert!(matches!(
            normalize_domain("-a.example"),
            Err(DomainError::BadLabel(_))
        ));
        assert!(matches!(
            normalize_domain("a_b.example"),
            Err(DomainError::BadLabel(_))
        ));
        assert!(matches!(
            normalize_domain("a b.example"),
            Err(DomainError::BadLabel(_))
        ));
        let long_label = "a".repeat(64);
        assert!(matches!(
            normalize_domain(&format!("{long_label}.example")),
            Err(DomainError::LabelTooLong(_))
        ));
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert_eq!(
            normalize_domain(&long_name).unwrap_err(),
            DomainError::TooLong
        );
    }

    #[test]
    fn syntax_check_requires_normal_form() {
        assert!(is_normalized("xn--bcher-kva.example"));
        assert!(!is_normalized("Partner.example"));
        assert!(!is_normalized("partner.example."));
    }
}
