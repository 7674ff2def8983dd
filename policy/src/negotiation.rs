//! Lync's per-partner negotiation settings and the 18-row matrix that says what they allow.
//!
//! Source: "Negotiation settings for XMPP federated partners" (Lync Server 2013), reproduced in
//! `shared/reference/lync-xmpp.md` §5.4. Rows are numbered as Lync numbers them: SASL
//! Required (1–6), Optional (7–12), NotSupported (13–18); inside each, TLS Required, Optional,
//! NotSupported, each with dialback true then false.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a security layer must, may or must not be negotiated with a partner.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Negotiation {
    /// The layer must be negotiated; a partner that does not offer it is refused.
    #[default]
    Required,
    /// The layer is used when the partner offers it.
    Optional,
    /// The layer is never offered nor used with this partner.
    NotSupported,
}

impl Negotiation {
    fn index(self) -> u8 {
        match self {
            Negotiation::Required => 0,
            Negotiation::Optional => 1,
            Negotiation::NotSupported => 2,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Negotiation::Required => "Required",
            Negotiation::Optional => "Optional",
            Negotiation::NotSupported => "NotSupported",
        }
    }
    pub const ALL: [Negotiation; 3] = [
        Negotiation::Required,
        Negotiation::Optional,
        Negotiation::NotSupported,
    ];
}

impl fmt::Display for Negotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far the organisation trusts a partner to vouch for its users (Lync `PartnerType`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PartnerType {
    /// High trust: partner users may subscribe to presence and send messages without prior
    /// authorisation, and see status notes.
    Federated,
    /// A public provider trusted to verify its users: like `Federated` but status notes are
    /// never sent.
    PublicVerified,
    /// A public provider not trusted to verify its users (the default): a partner user reaches
    /// a local user only after that local user reached out first; no status notes.
    #[default]
    PublicUnverified,
}

impl PartnerType {
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerType::Federated => "Federated",
            PartnerType::PublicVerified => "PublicVerified",
            PartnerType::PublicUnverified => "PublicUnverified",
        }
    }
    /// Whether `<status/>` text of local users' presence may be sent to this partner.
    pub fn sees_status_notes(self) -> bool {
        matches!(self, PartnerType::Federated)
    }
    /// Whether a partner user needs the local user to reach out first.
    pub fn requires_prior_contact(self) -> bool {
        matches!(self, PartnerType::PublicUnverified)
    }
}

impl fmt::Display for PartnerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way a partner server can authenticate to us (or we to it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// SASL EXTERNAL with the TLS certificate (XEP-0178).
    SaslOverTls,
    /// Server dialback (XEP-0220) inside a TLS-protected stream.
    TlsDialback,
    /// Server dialback over a plain TCP stream.
    TcpDialback,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::SaslOverTls => "SASL over TLS",
            AuthMethod::TlsDialback => "TLS Dialback",
            AuthMethod::TcpDialback => "TCP Dialback",
        }
    }
}

/// How serious a finding about a partner's settings is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Accepted, but worth knowing (reported as a `Warning` condition).
    Warning,
    /// Rejected: the partner could never authenticate.
    Error,
}

/// A finding about a combination of negotiation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiationFinding {
    pub severity: Severity,
    /// CamelCase reason for conditions and events.
    pub reason: &'static str,
    pub message: String,
}

/// The three negotiation settings of one partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NegotiationSettings {
    pub tls: Negotiation,
    pub sasl: Negotiation,
    pub dialback: bool,
}

impl NegotiationSettings {
    pub fn new(tls: Negotiation, sasl: Negotiation, dialback: bool) -> Self {
        Self {
            tls,
            sasl,
            dialback,
        }
    }

    /// All 18 combinations in Lync's row order.
    pub fn all() -> impl Iterator<Item = NegotiationSettings> {
        Negotiation::ALL.into_iter().flat_map(|sasl| {
            Negotiation::ALL.into_iter().flat_map(move |tls| {
                [true, false]
                    .into_iter()
                    .map(move |dialback| NegotiationSettings::new(tls, sasl, dialback))
            })
        })
    }

    /// The row of Lync's negotiation matrix (1–18) for these settings.
    pub fn matrix_row(self) -> u8 {
        self.sasl.index() * 6 + self.tls.index() * 2 + if self.dialback { 1 } else { 2 }
    }

    /// The authentication methods Lync's matrix expects for these settings, strongest first.
    /// Empty for the invalid rows.
    pub fn allowed_methods(self) -> Vec<AuthMethod> {
        use Negotiation::*;
        let mut methods = Vec::with_capacity(3);
        if self.sasl != NotSupported && self.tls != NotSupported {
            methods.push(AuthMethod::SaslOverTls);
        }
        // Row 1: "Dialback will not operate if both SASL and TLS are required."
        if self.dialback
            && self.tls != NotSupported
            && !(self.tls == Required && self.sasl == Required)
        {
            methods.push(AuthMethod::TlsDialback);
        }
        if self.dialback && self.tls != Required {
            methods.push(AuthMethod::TcpDialback);
        }
        methods
    }

    /// Whether a partner with these settings can authenticate at all.
    pub fn is_valid(self) -> bool {
        !self.allowed_methods().is_empty()
    }

    /// Errors (the five invalid rows) and warnings (the risky rows), with messages that name
    /// the fields involved.
    pub fn findings(self) -> Vec<NegotiationFinding> {
        use Negotiation::*;
        let row = self.matrix_row();
        let mut out = Vec::new();
        if !self.dialback && self.sasl == NotSupported {
            out.push(NegotiationFinding {
                severity: Severity::Error,
                reason: "NoAuthenticationMethod",
                message: format!(
                    "saslNegotiation: NotSupported with supportDialbackNegotiation: false leaves no way to \
                     authenticate the partner (Lync negotiation matrix row {row}): \"SASL or Dialback must be \
                     enabled\"; set supportDialbackNegotiation: true or allow SASL"
                ),
            });
        } else if !self.dialback && self.tls == NotSupported {
            out.push(NegotiationFinding {
                severity: Severity::Error,
                reason: "NoAuthenticationMethod",
                message: format!(
                    "tlsNegotiation: NotSupported with supportDialbackNegotiation: false leaves no way to \
                     authenticate the partner (Lync negotiation matrix row {row}): SASL EXTERNAL needs TLS and \
                     dialback is off; allow TLS or set supportDialbackNegotiation: true"
                ),
            });
        }
        if !out.is_empty() {
            return out;
        }
        if self.sasl != NotSupported && self.tls != Required {
            let extra = if self.tls == NotSupported {
                " Lync's Control Panel refuses to save this combination; only dialback over plain TCP \
                 will ever be used."
            } else {
                ""
            };
            out.push(NegotiationFinding {
                severity: Severity::Warning,
                reason: "SaslWithoutRequiredTls",
                message: format!(
                    "saslNegotiation: {} with tlsNegotiation: {} — SASL requires TLS, so TLS that is not \
                     required may make session negotiation fail (Lync negotiation matrix row {row}).{extra}",
                    self.sasl, self.tls,
                ),
            });
        }
        if self.dialback && self.tls == Required && self.sasl == Required {
            out.push(NegotiationFinding {
                severity: Severity::Warning,
                reason: "DialbackInoperative",
                message: format!(
                    "supportDialbackNegotiation: true has no effect while tlsNegotiation and saslNegotiation \
                     are both Required: dialback will not operate (Lync negotiation matrix row {row}); partners \
                     must authenticate with SASL EXTERNAL"
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::AuthMethod::*;
    use super::Negotiation::*;
    use super::*;

    /// Lync's matrix, row by row: (row, TLS, SASL, dialback, expected methods).
    const MATRIX: [(u8, Negotiation, Negotiation, bool, &[AuthMethod]); 18] = [
        (1, Required, Required, true, &[SaslOverTls]),
        (2, Required, Required, false, &[SaslOverTls]),
        (
            3,
            Optional,
            Required,
            true,
            &[SaslOverTls, TlsDialback, TcpDialback],
        ),
        (4, Optional, Required, false, &[SaslOverTls]),
        (5, NotSupported, Required, true, &[TcpDialback]),
        (6, NotSupported, Required, false, &[]),
        (7, Required, Optional, true, &[SaslOverTls, TlsDialback]),
        (8, Required, Optional, false, &[SaslOverTls]),
        (
            9,
            Optional,
            Optional,
            true,
            &[SaslOverTls, TlsDialback, TcpDialback],
        ),
        (10, Optional, Optional, false, &[SaslOverTls]),
        (11, NotSupported, Optional, true, &[TcpDialback]),
        (12, NotSupported, Optional, false, &[]),
        (13, Required, NotSupported, true, &[TlsDialback]),
        (14, Required, NotSupported, false, &[]),
        (
            15,
            Optional,
            NotSupported,
            true,
            &[TlsDialback, TcpDialback],
        ),
        (16, Optional, NotSupported, false, &[]),
        (17, NotSupported, NotSupported, true, &[TcpDialback]),
        (18, NotSupported, NotSupported, false, &[]),
    ];

    #[test]
    fn every_row_matches_lyncs_matrix() {
        for (row, tls, sasl, dialback, methods) in MATRIX {
            let s = NegotiationSettings::new(tls, sasl, dialback);
            assert_eq!(s.matrix_row(), row, "{s:?}");
            assert_eq!(s.allowed_methods(), methods, "row {row}");
            let errors = s
                .findings()
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            assert_eq!(
                errors > 0,
                methods.is_empty(),
                "row {row}: invalid exactly when no method"
            );
        }
        let rows: Vec<u8> = NegotiationSettings::all().map(|s| s.matrix_row()).collect();
        assert_eq!(rows, (1..=18).collect::<Vec<_>>());
    }

    #[test]
    fn invalid_rows_are_the_five_lync_rejects() {
        let invalid: Vec<u8> = NegotiationSettings::all()
            .filter(|s| !s.is_valid())
            .map(|s| s.matrix_row())
            .collect();
        assert_eq!(invalid, vec![6, 12, 14, 16, 18]);
    }

    #[test]
    fn warnings_are_the_risky_rows() {
        let warned: Vec<u8> = NegotiationSettings::all()
            .filter(|s| s.is_valid() && !s.findings().is_empty())
            .map(|s| s.matrix_row())
            .collect();
        assert_eq!(warned, vec![1, 3, 4, 5, 9, 10, 11]);
    }

    #[test]
    fn error_messages_name_the_fields() {
        let f = NegotiationSettings::new(Required, NotSupported, false).findings();
        assert!(f[0].message.contains("saslNegotiation: NotSupported"));
        assert!(f[0].message.contains("supportDialbackNegotiation: false"));
        assert!(f[0].message.contains("row 14"));
        let f = NegotiationSettings::new(NotSupported, Required, false).findings();
        assert!(f[0].message.contains("tlsNegotiation: NotSupported"));
        assert!(f[0].message.contains("row 6"));
    }
}
