//! The receiving side of a server-to-server stream, as a sans-I/O state machine.
//!
//! Feed it what the peer sent ([`Input`]); it answers with [`Action`]s for the driver (send
//! bytes, start TLS, verify a dialback key, deliver a stanza, close). Policy is applied per
//! **domain pair** at three points: the stream header (`to` served, `from` an allowed partner),
//! authentication (each partner's TLS / SASL / dialback settings, Lync's matrix), and every
//! stanza (`from` authenticated, `to` served). Every refusal is a stream error with `<text/>`.

use crate::addr;
use crate::dialback::{self, Dialback, DialbackSecret, Outcome};
use crate::element::Element;
use crate::framer::{FramerLimits, StreamHeader};
use crate::identity::{CertProblem, CertVerdict, TrustStore};
use crate::ns;
use crate::stream::{self, Features, SaslAuth};
use crate::stream_error::{StreamError, StreamErrorCondition as C};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::collections::BTreeMap;
use std::sync::Arc;
use xmppfed_policy::{AuthMethod, NegotiationSettings};

/// What the receiving side needs to know about policy, looked up at each decision so that a
/// reloaded policy applies at once.
pub trait InboundPolicy {
    /// Whether `domain` (normalised) is one of ours.
    fn serves(&self, domain: &str) -> bool;
    /// The negotiation settings of the partner owning `domain`, `None` if it is not allowed.
    fn partner(&self, domain: &str) -> Option<NegotiationSettings>;
    /// Largest stanza accepted after authentication.
    fn max_stanza_bytes(&self) -> usize;
    /// Idle timeout advertised with XEP-0478.
    fn idle_seconds(&self) -> u64;
}

/// How a domain pair was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// SASL EXTERNAL (XEP-0178).
    SaslExternal,
    /// Dialback confirmed by the certificate (XEP-0344), inside TLS.
    DialbackCertificate,
    /// Dialback confirmed by the authoritative server, inside TLS.
    TlsDialback,
    /// Dialback over plain TCP.
    TcpDialback,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::SaslExternal => "sasl-external",
            Method::DialbackCertificate => "dialback-certificate",
            Method::TlsDialback => "tls-dialback",
            Method::TcpDialback => "tcp-dialback",
        }
    }

    /// The Lync matrix method this counts as.
    pub fn auth_method(self) -> AuthMethod {
        match self {
            Method::SaslExternal | Method::DialbackCertificate => AuthMethod::SaslOverTls,
            Method::TlsDialback => AuthMethod::TlsDialback,
            Method::TcpDialback => AuthMethod::TcpDialback,
        }
    }
}

/// Events from the driver.
#[derive(Debug, Clone)]
pub enum Input {
    Header(StreamHeader),
    Element(Element),
    /// The TLS handshake finished; the peer's chain (possibly empty).
    TlsEstablished(Vec<CertificateDer<'static>>),
    /// The authoritative server's answer to a [`Action::VerifyDialback`]; `Err` when it
    /// could not be reached.
    DialbackChecked {
        from: String,
        to: String,
        result: Result<bool, String>,
    },
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Write these bytes.
    Send(String),
    /// Write nothing more in plaintext; run the TLS handshake as server.
    StartTls,
    /// The stream restarts: a fresh framer with these limits.
    ResetFramer(FramerLimits),
    /// Change the framer's limits at this element boundary.
    SetLimits(FramerLimits),
    /// Ask `from`'s authoritative server whether `key` is valid (XEP-0220 §2.3).
    VerifyDialback {
        from: String,
        to: String,
        stream_id: String,
        key: String,
    },
    /// A domain pair is now authenticated.
    Authenticated {
        from: String,
        to: String,
        method: Method,
    },
    /// A policed stanza to relay, with its normalised domains.
    Deliver {
        stanza: Element,
        from: String,
        to: String,
    },
    /// The peer sent a stream error (for the logs); a `Close(None)` follows.
    PeerError(Option<StreamError>),
    /// Send this stream error (if any), close the stream and the connection.
    Close(Option<StreamError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the (re)opened stream header.
    AwaitHeader,
    /// Header answered; negotiation elements or stanzas follow.
    Open,
    /// Closed; nothing more is processed.
    Closed,
}

/// The receiving side of one S2S stream.
pub struct InboundSession {
    trust: Arc<TrustStore>,
    secret: DialbackSecret,
    stage: Stage,
    stream_id: String,
    tls: bool,
    peer_chain: Vec<CertificateDer<'static>>,
    cert_verdicts: BTreeMap<String, CertVerdict>,
    /// `to` and `from` of the first header: restarts must repeat them.
    header_to: Option<String>,
    header_from: Option<String>,
    /// The peer is authenticated by SASL as this domain (for every served domain).
    sasl_domain: Option<String>,
    /// Dialback pairs `(from, to)` and their state.
    pairs: BTreeMap<(String, String), PairState>,
    offered: Features,
    /// The peer asked for XEP-0288 bidi: its authenticated pairs carry our stanzas back.
    bidi: bool,
    /// Stanza addresses seen lately (policing parses `from` and `to` of every stanza).
    addresses: addr::DomainCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Pending,
    Valid(Method),
}

fn err(condition: crate::stream_error::StreamErrorCondition, text: impl Into<String>) -> Action {
    Action::Close(Some(StreamError::new(condition, text)))
}

impl InboundSession {
    /// A new stream; `tls` is true for direct TLS (XEP-0368), where the handshake came first.
    pub fn new(
        trust: Arc<TrustStore>,
        secret: DialbackSecret,
        tls: bool,
        peer_chain: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            trust,
            secret,
            stage: Stage::AwaitHeader,
            stream_id: stream::new_stream_id(),
            tls,
            peer_chain,
            cert_verdicts: BTreeMap::new(),
            header_to: None,
            header_from: None,
            sasl_domain: None,
            pairs: BTreeMap::new(),
            offered: Features::default(),
            bidi: false,
            addresses: addr::DomainCache::default(),
        }
    }

    /// Whether the peer negotiated XEP-0288 bidi: stanzas from our domain to the peer's, for
    /// each authenticated pair, may go back over this stream instead of a second connection.
    pub fn is_bidi(&self) -> bool {
        self.bidi
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether at least one domain pair is authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.sasl_domain.is_some()
            || self
                .pairs
                .values()
                .any(|s| matches!(s, PairState::Valid(_)))
    }

    /// The authenticated `(from, to)` pairs and how (`to` is `*` for SASL: every served domain).
    pub fn authenticated_pairs(&self) -> Vec<(String, String, Method)> {
        let mut out: Vec<_> = self
            .sasl_domain
            .iter()
            .map(|d| (d.clone(), "*".to_string(), Method::SaslExternal))
            .collect();
        out.extend(self.pairs.iter().filter_map(|((f, t), s)| match s {
            PairState::Valid(m) => Some((f.clone(), t.clone(), *m)),
            PairState::Pending => None,
        }));
        out
    }

    fn verdict(&mut self, domain: &str) -> CertVerdict {
        if !self.tls {
            return Err(CertProblem::Missing);
        }
        if let Some(v) = self.cert_verdicts.get(domain) {
            return v.clone();
        }
        let v = self.trust.judge(&self.peer_chain, domain, UnixTime::now());
        self.cert_verdicts.insert(domain.to_string(), v.clone());
        v
    }

    /// Handles one input under the current policy.
    pub fn handle(&mut self, input: Input, policy: &dyn InboundPolicy) -> Vec<Action> {
        if self.stage == Stage::Closed {
            return Vec::new();
        }
        let actions = match input {
            Input::Header(h) => self.on_header(h, policy),
            Input::Element(e) => self.on_element(e, policy),
            Input::TlsEstablished(chain) => {
                self.tls = true;
                self.peer_chain = chain;
                self.cert_verdicts.clear();
                self.stage = Stage::AwaitHeader;
                self.stream_id = stream::new_stream_id();
                vec![Action::ResetFramer(FramerLimits::PRE_AUTH)]
            }
            Input::DialbackChecked { from, to, result } => {
                self.on_dialback_checked(from, to, result, policy)
            }
        };
        if actions.iter().any(|a| matches!(a, Action::Close(_))) {
            self.stage = Stage::Closed;
        }
        actions
    }

    fn on_header(&mut self, h: StreamHeader, policy: &dyn InboundPolicy) -> Vec<Action> {
        if self.stage != Stage::AwaitHeader {
            return vec![err(C::BadFormat, "a stream header inside an open stream")];
        }
        // Our header goes out first, even when the answer is an error (RFC 6120 §4.9.1.2).
        let our_header = |to: Option<String>, from: Option<String>, id: &str| {
            Action::Send(stream::open_stream(&StreamHeader {
                from,
                to,
                id: Some(id.to_string()),
                version: Some("1.0".into()),
                lang: None,
            }))
        };
        let to = match h.to.as_deref().map(addr::domain) {
            Some(Ok(to)) => to,
            Some(Err(e)) => {
                return vec![
                    our_header(None, None, &self.stream_id),
                    err(
                        C::ImproperAddressing,
                        format!("the stream 'to' is invalid: {e}"),
                    ),
                ];
            }
            None => {
                return vec![
                    our_header(None, None, &self.stream_id),
                    err(
                        C::ImproperAddressing,
                        "the stream header has no 'to' attribute",
                    ),
                ];
            }
        };
        let from = match h.from.as_deref().map(addr::domain) {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                return vec![
                    our_header(None, Some(to), &self.stream_id),
                    err(C::InvalidFrom, format!("the stream 'from' is invalid: {e}")),
                ];
            }
            None => None,
        };
        let mut actions = vec![our_header(from.clone(), Some(to.clone()), &self.stream_id)];
        if !policy.serves(&to) {
            actions.push(err(C::HostUnknown, format!("{to} is not served here")));
            return actions;
        }
        // A restart must keep the addresses of the first header.
        if let Some(first_to) = &self.header_to
            && (first_to != &to || (self.header_from.is_some() && self.header_from != from))
        {
            actions.push(err(
                C::ImproperAddressing,
                "the restarted stream changed its 'to' or 'from'",
            ));
            return actions;
        }
        self.header_to = Some(to);
        if from.is_some() {
            self.header_from = from.clone();
        }
        if let Some(f) = &from
            && policy.partner(f).is_none()
        {
            actions.push(err(
                C::PolicyViolation,
                format!("{f} is not an allowed partner of this federation"),
            ));
            return actions;
        }
        self.stage = Stage::Open;
        if h.version.as_deref() != Some("1.0") {
            // Pre-1.0 peers get no features and may only use plain dialback.
            self.offered = Features {
                dialback: true,
                ..Features::default()
            };
            return actions;
        }
        match self.features(policy) {
            Ok(features) => {
                actions.push(Action::Send(features.to_element().to_xml_in(ns::SERVER)));
                self.offered = features;
            }
            Err(e) => actions.push(Action::Close(Some(e))),
        }
        actions
    }

    /// What to offer now, per the partner's settings (Lync's matrix).
    fn features(&mut self, policy: &dyn InboundPolicy) -> Result<Features, StreamError> {
        let limits = Some((policy.max_stanza_bytes() as u64, policy.idle_seconds()));
        if self.sasl_domain.is_some() {
            return Ok(Features {
                limits,
                ..Features::default()
            });
        }
        let from = self.header_from.clone();
        let rules = from.as_deref().and_then(|f| policy.partner(f));
        let methods = rules.map(NegotiationSettings::allowed_methods);
        let allows = |m: AuthMethod| methods.as_ref().is_none_or(|ms| ms.contains(&m));
        if !self.tls {
            let tls_possible =
                rules.is_none_or(|r| r.tls != xmppfed_policy::Negotiation::NotSupported);
            let plain_dialback = allows(AuthMethod::TcpDialback);
            if !tls_possible && !plain_dialback {
                return Err(StreamError::new(
                    C::UnsupportedFeature,
                    "no authentication method is allowed for this partner",
                ));
            }
            return Ok(Features {
                starttls: tls_possible.then_some(!plain_dialback),
                dialback: plain_dialback,
                limits,
                ..Features::default()
            });
        }
        let (Some(from), Some(_)) = (from, rules) else {
            // Without a 'from', only dialback can name the peer's domain.
            return Ok(Features {
                dialback: true,
                limits,
                ..Features::default()
            });
        };
        let verdict = self.verdict(&from);
        let sasl = allows(AuthMethod::SaslOverTls) && verdict.is_ok();
        let dialback = allows(AuthMethod::TlsDialback);
        if !sasl && !dialback {
            let why = match verdict {
                Err(problem) => format!("the certificate is not accepted for {from}: {problem}"),
                Ok(()) => "SASL EXTERNAL is not allowed".to_string(),
            };
            return Err(StreamError::new(
                C::NotAuthorized,
                format!(
                    "{why}; the partner policy for {from} allows no other method (supportDialbackNegotiation is off or TLS and SASL are both Required)"
                ),
            ));
        }
        Ok(Features {
            sasl_external: sasl,
            dialback,
            // Only over TLS: the peer authenticates us in the reverse direction by our
            // certificate, as Prosody's mod_s2s_bidi requires too.
            bidi: true,
            limits,
            ..Features::default()
        })
    }

    fn on_element(&mut self, e: Element, policy: &dyn InboundPolicy) -> Vec<Action> {
        if self.stage == Stage::AwaitHeader {
            return vec![err(C::BadFormat, "an element before the stream header")];
        }
        if e.ns == ns::TLS && e.name == "starttls" {
            return self.on_starttls();
        }
        if let Some(auth) = stream::parse_sasl_auth(&e) {
            return self.on_sasl(auth, policy);
        }
        if let Some(db) = dialback::parse(&e) {
            return match db {
                Ok(db) => self.on_dialback(db, policy),
                Err(why) => vec![err(C::BadFormat, why)],
            };
        }
        if e.is(ns::BIDI, "bidi") {
            if !self.offered.bidi || self.is_authenticated() {
                return vec![err(
                    C::UnsupportedFeature,
                    "bidirectional streams (XEP-0288) are offered only over TLS, before authentication",
                )];
            }
            self.bidi = true;
            return Vec::new();
        }
        if e.is(ns::STREAMS, "error") {
            return vec![
                Action::PeerError(StreamError::from_element(&e)),
                Action::Close(None),
            ];
        }
        if matches!(e.name.as_str(), "message" | "presence" | "iq") {
            if e.ns != ns::SERVER {
                return vec![err(
                    C::InvalidNamespace,
                    format!("stanzas must be in '{}', not '{}'", ns::SERVER, e.ns),
                )];
            }
            return self.on_stanza(e, policy);
        }
        vec![err(
            C::UnsupportedStanzaType,
            format!("<{}/> in '{}' is not understood here", e.name, e.ns),
        )]
    }

    fn on_starttls(&mut self) -> Vec<Action> {
        if self.tls || self.offered.starttls.is_none() {
            let why = if self.tls {
                "TLS is already established"
            } else {
                "STARTTLS was not offered: the partner policy does not support TLS"
            };
            return vec![
                Action::Send(stream::tls_element("failure").to_xml_in(ns::SERVER)),
                err(C::PolicyViolation, why),
            ];
        }
        vec![
            Action::Send(stream::tls_element("proceed").to_xml_in(ns::SERVER)),
            Action::StartTls,
        ]
    }

    fn on_sasl(
        &mut self,
        auth: Result<SaslAuth, String>,
        policy: &dyn InboundPolicy,
    ) -> Vec<Action> {
        let fail = |this: &Self, condition: &str, text: String| {
            let mut out = vec![Action::Send(
                stream::sasl_failure(condition, &text).to_xml_in(ns::SERVER),
            )];
            // XEP-0178 §3: close, unless dialback is still on offer.
            if !this.offered.dialback {
                out.push(err(C::NotAuthorized, text));
            }
            out
        };
        if !self.offered.sasl_external {
            return fail(
                self,
                "invalid-mechanism",
                "SASL EXTERNAL was not offered on this stream".into(),
            );
        }
        let authzid = match auth {
            Ok(SaslAuth::External { authzid }) => authzid,
            Ok(SaslAuth::Unsupported(m)) => {
                return fail(
                    self,
                    "invalid-mechanism",
                    format!("mechanism {m:?} is not offered; use EXTERNAL"),
                );
            }
            Err(why) => return fail(self, "incorrect-encoding", why),
        };
        let Some(from) = self.header_from.clone() else {
            return fail(
                self,
                "not-authorized",
                "the stream header has no 'from'".into(),
            );
        };
        if let Some(id) = authzid {
            match addr::domain(&id) {
                Ok(d) if d == from => {}
                _ => {
                    return fail(
                        self,
                        "invalid-authzid",
                        format!("authorization identity {id:?} is not the stream's 'from' {from}"),
                    );
                }
            }
        }
        if policy.partner(&from).is_none() {
            return vec![err(
                C::PolicyViolation,
                format!("{from} is not an allowed partner of this federation"),
            )];
        }
        if let Err(problem) = self.verdict(&from) {
            return fail(self, "not-authorized", problem.to_string());
        }
        self.sasl_domain = Some(from.clone());
        self.stage = Stage::AwaitHeader;
        self.stream_id = stream::new_stream_id();
        vec![
            Action::Send(stream::sasl_success().to_xml_in(ns::SERVER)),
            Action::Authenticated {
                from,
                to: self.header_to.clone().unwrap_or_default(),
                method: Method::SaslExternal,
            },
            Action::ResetFramer(FramerLimits::authenticated(policy.max_stanza_bytes())),
        ]
    }

    fn on_dialback(&mut self, db: Dialback, policy: &dyn InboundPolicy) -> Vec<Action> {
        match db {
            Dialback::VerifyRequest { from, to, id, key } => {
                // We are the authoritative server for `to`; `from` is the receiving server.
                let valid = match (addr::domain(&from), addr::domain(&to)) {
                    (Ok(f), Ok(t)) => policy.serves(&t) && self.secret.verify(&f, &t, &id, &key),
                    _ => false,
                };
                let outcome = if valid {
                    Outcome::Valid
                } else {
                    Outcome::Invalid
                };
                vec![Action::Send(
                    dialback::verify_answer(&to, &from, &id, outcome).to_xml_in(ns::SERVER),
                )]
            }
            Dialback::ResultRequest { from, to, key } => {
                self.on_result_request(from, to, key, policy)
            }
            Dialback::ResultAnswer { .. } | Dialback::VerifyAnswer { .. } => {
                vec![err(
                    C::UnsupportedStanzaType,
                    "a dialback answer on a stream we did not initiate",
                )]
            }
        }
    }

    fn on_result_request(
        &mut self,
        raw_from: String,
        raw_to: String,
        key: String,
        policy: &dyn InboundPolicy,
    ) -> Vec<Action> {
        let first = !self.is_authenticated();
        // A refusal ends the stream when it carries nothing else (XEP-0220 §2.4), and is a
        // dialback error otherwise, so that other domain pairs keep working.
        let refuse = |condition: crate::stream_error::StreamErrorCondition,
                      stanza_condition: &str,
                      text: String| {
            if first {
                vec![err(condition, text)]
            } else {
                vec![Action::Send(
                    dialback::result_answer(
                        &raw_to,
                        &raw_from,
                        Outcome::Error,
                        Some(stanza_condition),
                    )
                    .to_xml_in(ns::SERVER),
                )]
            }
        };
        if !self.offered.dialback {
            return refuse(
                C::PolicyViolation,
                "policy-violation",
                "dialback was not offered on this stream".into(),
            );
        }
        let (from, to) = match (addr::domain(&raw_from), addr::domain(&raw_to)) {
            (Ok(f), Ok(t)) => (f, t),
            _ => {
                return refuse(
                    C::ImproperAddressing,
                    "improper-addressing",
                    "invalid dialback addresses".into(),
                );
            }
        };
        if !policy.serves(&to) {
            return refuse(
                C::HostUnknown,
                "item-not-found",
                format!("{to} is not served here"),
            );
        }
        let Some(rules) = policy.partner(&from) else {
            return refuse(
                C::PolicyViolation,
                "policy-violation",
                format!("{from} is not an allowed partner of this federation"),
            );
        };
        let methods = rules.allowed_methods();
        if self.tls && self.verdict(&from).is_ok() && methods.contains(&AuthMethod::SaslOverTls) {
            // XEP-0344: the certificate already proves the domain; no callback needed.
            self.pairs.insert(
                (from.clone(), to.clone()),
                PairState::Valid(Method::DialbackCertificate),
            );
            return self.pair_valid(from, to, Method::DialbackCertificate, policy);
        }
        let needed = if self.tls {
            AuthMethod::TlsDialback
        } else {
            AuthMethod::TcpDialback
        };
        if !methods.contains(&needed) {
            let why = if self.tls {
                format!(
                    "dialback is not allowed for {from} (supportDialbackNegotiation is off, or TLS and SASL are both Required) and its certificate is not accepted"
                )
            } else {
                format!(
                    "dialback without TLS is not allowed for {from} (tlsNegotiation: {})",
                    rules.tls
                )
            };
            return refuse(C::PolicyViolation, "policy-violation", why);
        }
        self.pairs
            .insert((from.clone(), to.clone()), PairState::Pending);
        vec![Action::VerifyDialback {
            from,
            to,
            stream_id: self.stream_id.clone(),
            key,
        }]
    }

    fn pair_valid(
        &mut self,
        from: String,
        to: String,
        method: Method,
        policy: &dyn InboundPolicy,
    ) -> Vec<Action> {
        vec![
            Action::Send(
                dialback::result_answer(&to, &from, Outcome::Valid, None).to_xml_in(ns::SERVER),
            ),
            Action::SetLimits(FramerLimits::authenticated(policy.max_stanza_bytes())),
            Action::Authenticated { from, to, method },
        ]
    }

    fn on_dialback_checked(
        &mut self,
        from: String,
        to: String,
        result: Result<bool, String>,
        policy: &dyn InboundPolicy,
    ) -> Vec<Action> {
        let key = (from.clone(), to.clone());
        if self.pairs.get(&key) != Some(&PairState::Pending) {
            return Vec::new();
        }
        match result {
            Ok(true) => {
                let method = if self.tls {
                    Method::TlsDialback
                } else {
                    Method::TcpDialback
                };
                self.pairs.insert(key, PairState::Valid(method));
                self.pair_valid(from, to, method, policy)
            }
            Ok(false) => {
                self.pairs.remove(&key);
                let mut out = vec![Action::Send(
                    dialback::result_answer(&to, &from, Outcome::Invalid, None)
                        .to_xml_in(ns::SERVER),
                )];
                if !self.is_authenticated() {
                    out.push(err(
                        C::NotAuthorized,
                        format!("the dialback key for {from} was not confirmed by {from}'s authoritative server"),
                    ));
                }
                out
            }
            Err(why) => {
                self.pairs.remove(&key);
                let mut out = vec![Action::Send(
                    dialback::result_answer(
                        &to,
                        &from,
                        Outcome::Error,
                        Some("remote-server-not-found"),
                    )
                    .to_xml_in(ns::SERVER),
                )];
                if !self.is_authenticated() {
                    out.push(err(
                        C::RemoteConnectionFailed,
                        format!("could not reach {from}'s authoritative server to verify dialback: {why}"),
                    ));
                }
                out
            }
        }
    }

    fn on_stanza(&mut self, stanza: Element, policy: &dyn InboundPolicy) -> Vec<Action> {
        if !self.is_authenticated() {
            return vec![err(
                C::NotAuthorized,
                "stanzas were sent before the stream was authenticated",
            )];
        }
        let (Some(raw_from), Some(raw_to)) = (stanza.get_attr("from"), stanza.get_attr("to"))
        else {
            return vec![err(
                C::ImproperAddressing,
                format!("a <{}/> without 'from' or 'to'", stanza.name),
            )];
        };
        let (from, to) = match (
            self.addresses.domain_of(raw_from),
            self.addresses.domain_of(raw_to),
        ) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return vec![err(C::ImproperAddressing, e.to_string())],
        };
        if !policy.serves(&to) {
            return vec![err(C::HostUnknown, format!("{to} is not served here"))];
        }
        // SASL first: it needs no key to look up.
        let authenticated = self.sasl_domain.as_deref() == Some(from.as_str())
            || matches!(
                self.pairs.get(&(from.clone(), to.clone())),
                Some(PairState::Valid(_))
            );
        if !authenticated {
            return vec![err(
                C::InvalidFrom,
                format!("{from} is not authenticated on this stream for {to}"),
            )];
        }
        if policy.partner(&from).is_none() {
            return vec![err(
                C::PolicyViolation,
                format!("{from} is no longer an allowed partner"),
            )];
        }
        vec![Action::Deliver { stanza, from, to }]
    }

    /// Re-checks the authenticated pairs against a new policy. Returns the stream error to
    /// close with when a partner was removed (`<policy-violation/>`) or the method its pairs
    /// used is no longer allowed (`<reset/>`: renegotiate under the new rules).
    pub fn recheck(&mut self, policy: &dyn InboundPolicy) -> Option<StreamError> {
        if self.stage == Stage::Closed {
            return None;
        }
        let mut domains: Vec<(String, Method)> = self
            .authenticated_pairs()
            .into_iter()
            .map(|(f, _, m)| (f, m))
            .collect();
        if domains.is_empty()
            && let Some(f) = &self.header_from
        {
            domains.push((f.clone(), Method::SaslExternal));
            if policy.partner(f).is_none() {
                self.stage = Stage::Closed;
                return Some(StreamError::new(
                    C::PolicyViolation,
                    format!("{f} was removed from the allowed partners"),
                ));
            }
            return None;
        }
        for (domain, method) in domains {
            let Some(rules) = policy.partner(&domain) else {
                self.stage = Stage::Closed;
                return Some(StreamError::new(
                    C::PolicyViolation,
                    format!("{domain} was removed from the allowed partners"),
                ));
            };
            if !rules.allowed_methods().contains(&method.auth_method()) {
                self.stage = Stage::Closed;
                return Some(StreamError::new(
                    C::Reset,
                    format!(
                        "the policy for {domain} changed and no longer allows {}; reconnect to renegotiate",
                        method.auth_method().as_str()
                    ),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
