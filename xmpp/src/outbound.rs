//! The initiating side of a server-to-server stream, as a sans-I/O state machine.
//!
//! It negotiates what the partner's settings allow, strongest first (Lync's matrix): STARTTLS
//! (unless already direct TLS), then SASL EXTERNAL when the receiving server's certificate
//! proves its domain, else dialback where allowed. The same machine runs the short dialback
//! *verify* streams a receiving server opens to an authoritative server (XEP-0220 §2.3).

use crate::conn::XmppConn;
use crate::dialback::{self, Dialback, DialbackSecret, Outcome};
use crate::element::Element;
use crate::framer::{Frame, FramerLimits, StreamHeader};
use crate::identity::{CertVerdict, TrustStore};
use crate::inbound::Method;
use crate::ns;
use crate::stream::{self, Features};
use crate::stream_error::{StreamError, StreamErrorCondition as C};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::collections::VecDeque;
use std::sync::Arc;
use xmppfed_policy::{AuthMethod, Negotiation, NegotiationSettings};

/// Why the stream is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Carry stanzas from `local` to `remote` once authenticated.
    Stanzas,
    /// Ask `remote` (the authoritative server) whether it issued `key` for the stream
    /// `stream_id` that claimed to come from it.
    Verify { stream_id: String, key: String },
}

#[derive(Debug)]
pub enum Input {
    Header(StreamHeader),
    Element(Element),
    TlsEstablished(Vec<CertificateDer<'static>>),
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Send(String),
    /// Run the TLS handshake as client, SNI = the remote domain.
    StartTls,
    ResetFramer(FramerLimits),
    /// Stanzas may flow.
    Established(Method),
    /// The answer to a [`Purpose::Verify`] stream; the stream is then closed politely.
    Verified(bool),
    /// Negotiation failed: send this stream error (if any) and close. The text says why in
    /// words an operator can act on.
    Fail {
        send: Option<StreamError>,
        reason: String,
    },
    /// A stanza the peer sent back over this stream (XEP-0288 bidi), addressed from the
    /// remote domain to the local one.
    Received(Element),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitHeader,
    AwaitFeatures,
    AwaitProceed,
    AwaitSasl,
    AwaitDialback,
    AwaitVerify,
    Established,
    Done,
}

pub struct OutboundSession {
    local: String,
    remote: String,
    rules: NegotiationSettings,
    trust: Arc<TrustStore>,
    secret: DialbackSecret,
    purpose: Purpose,
    stage: Stage,
    tls: bool,
    peer_chain: Vec<CertificateDer<'static>>,
    peer_stream_id: Option<String>,
    sasl_done: bool,
    /// Ask for XEP-0288 bidirectionality when the peer offers it.
    request_bidi: bool,
    bidi: bool,
}

impl OutboundSession {
    /// `direct_tls`: the connection is already TLS (XEP-0368) with `peer_chain`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local: &str,
        remote: &str,
        rules: NegotiationSettings,
        trust: Arc<TrustStore>,
        secret: DialbackSecret,
        purpose: Purpose,
        direct_tls: bool,
        peer_chain: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            local: local.to_string(),
            remote: remote.to_string(),
            rules,
            trust,
            secret,
            purpose,
            stage: Stage::AwaitHeader,
            tls: direct_tls,
            peer_chain,
            peer_stream_id: None,
            sasl_done: false,
            request_bidi: false,
            bidi: false,
        }
    }

    /// Ask for XEP-0288 bidirectionality when the peer offers it (over TLS, for a stanza
    /// stream, when the peer's certificate proves the remote domain): the peer may then send
    /// its stanzas to us over this stream instead of opening one of its own.
    pub fn with_bidi(mut self) -> Self {
        self.request_bidi = true;
        self
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the peer may send stanzas over this stream (we asked for bidi and it offered it).
    pub fn is_bidi(&self) -> bool {
        self.bidi
    }

    fn header(&self) -> Action {
        Action::Send(stream::open_stream(&StreamHeader {
            from: Some(self.local.clone()),
            to: Some(self.remote.clone()),
            id: None,
            version: Some("1.0".into()),
            lang: None,
        }))
    }

    /// The opening bytes.
    pub fn start(&self) -> Vec<Action> {
        vec![self.header()]
    }

    fn fail(
        &mut self,
        condition: crate::stream_error::StreamErrorCondition,
        reason: String,
    ) -> Vec<Action> {
        self.stage = Stage::Done;
        vec![Action::Fail {
            send: Some(StreamError::new(condition, reason.clone())),
            reason,
        }]
    }

    fn allows(&self, m: AuthMethod) -> bool {
        self.rules.allowed_methods().contains(&m)
    }

    fn verdict(&self) -> CertVerdict {
        self.trust
            .judge(&self.peer_chain, &self.remote, UnixTime::now())
    }

    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::Header(h) => {
                if self.stage != Stage::AwaitHeader {
                    return self.fail(C::BadFormat, "a second stream header".into());
                }
                self.peer_stream_id = h.id.clone();
                if h.version.as_deref() != Some("1.0") {
                    // No features will come: plain dialback is all a pre-1.0 server knows.
                    return self.after_features(Features {
                        dialback: true,
                        ..Features::default()
                    });
                }
                self.stage = Stage::AwaitFeatures;
                Vec::new()
            }
            Input::TlsEstablished(chain) => {
                self.tls = true;
                self.peer_chain = chain;
                self.stage = Stage::AwaitHeader;
                vec![Action::ResetFramer(FramerLimits::PRE_AUTH), self.header()]
            }
            Input::Element(e) => self.on_element(e),
        }
    }

    fn on_element(&mut self, e: Element) -> Vec<Action> {
        if let Some(err) = StreamError::from_element(&e) {
            self.stage = Stage::Done;
            return vec![Action::Fail {
                send: None,
                reason: format!("{} closed the stream with {err}", self.remote),
            }];
        }
        match self.stage {
            Stage::AwaitFeatures => match Features::from_element(&e) {
                Some(f) => self.after_features(f),
                None => self.fail(
                    C::BadFormat,
                    format!("expected <stream:features/>, got <{}/>", e.name),
                ),
            },
            Stage::AwaitProceed if e.is(ns::TLS, "proceed") => vec![Action::StartTls],
            Stage::AwaitProceed => self.fail(
                C::PolicyViolation,
                format!("{} refused STARTTLS (<{}/>)", self.remote, e.name),
            ),
            Stage::AwaitSasl if e.is(ns::SASL, "success") => {
                self.sasl_done = true;
                self.stage = Stage::AwaitHeader;
                vec![Action::ResetFramer(FramerLimits::PRE_AUTH), self.header()]
            }
            Stage::AwaitSasl => {
                let why = e
                    .elements()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(" ");
                if self.allows(AuthMethod::TlsDialback) {
                    self.send_dialback()
                } else {
                    self.fail(
                        C::NotAuthorized,
                        format!("{} refused our SASL EXTERNAL ({why}) and the partner policy allows no dialback", self.remote),
                    )
                }
            }
            Stage::AwaitDialback | Stage::AwaitVerify => self.on_dialback_answer(e),
            Stage::Established => {
                if e.ns == ns::DIALBACK {
                    // A late answer for a pair we no longer wait for: nothing to do.
                    return Vec::new();
                }
                if self.bidi && crate::stanza::is_stanza(&e) {
                    return self.on_returned_stanza(e);
                }
                self.fail(
                    C::UnsupportedStanzaType,
                    format!(
                        "<{}/> on an outbound stream that did not negotiate bidirectionality",
                        e.name
                    ),
                )
            }
            Stage::AwaitHeader | Stage::Done => Vec::new(),
        }
    }

    /// A stanza over a bidi stream: only the reverse of the pair this stream authenticated.
    fn on_returned_stanza(&mut self, e: Element) -> Vec<Action> {
        let (Some(raw_from), Some(raw_to)) = (e.get_attr("from"), e.get_attr("to")) else {
            return self.fail(
                C::ImproperAddressing,
                format!("a <{}/> without 'from' or 'to'", e.name),
            );
        };
        let (from, to) = match (crate::addr::parse(raw_from), crate::addr::parse(raw_to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(why), _) | (_, Err(why)) => {
                return self.fail(C::ImproperAddressing, why.to_string());
            }
        };
        if to.domain != self.local {
            return self.fail(
                C::HostUnknown,
                format!("this stream serves {} only, not {}", self.local, to.domain),
            );
        }
        if from.domain != self.remote {
            return self.fail(
                C::InvalidFrom,
                format!(
                    "{} is not authenticated on this stream (only {} is)",
                    from.domain, self.remote
                ),
            );
        }
        vec![Action::Received(e)]
    }

    fn after_features(&mut self, f: Features) -> Vec<Action> {
        if self.sasl_done {
            self.stage = Stage::Established;
            return vec![Action::Established(Method::SaslExternal)];
        }
        let mut actions = Vec::new();
        // Stanzas coming back over this stream are accepted as the remote domain's only because
        // its certificate proved that domain: dialback authenticates us to the peer, not the
        // peer to us.
        if self.tls
            && f.bidi
            && self.request_bidi
            && !self.bidi
            && self.purpose == Purpose::Stanzas
            && self.verdict().is_ok()
        {
            // XEP-0288 §2: asked for after the features, before authenticating.
            self.bidi = true;
            actions.push(Action::Send(
                Element::new(ns::BIDI, "bidi").to_xml_in(ns::SERVER),
            ));
        }
        actions.extend(self.authenticate(f));
        actions
    }

    fn authenticate(&mut self, f: Features) -> Vec<Action> {
        if !self.tls {
            if let Some(required) = f.starttls {
                if self.rules.tls != Negotiation::NotSupported {
                    self.stage = Stage::AwaitProceed;
                    return vec![Action::Send(
                        stream::tls_element("starttls").to_xml_in(ns::SERVER),
                    )];
                }
                if required {
                    return self.fail(
                        C::PolicyViolation,
                        format!("{} requires TLS but the partner policy says tlsNegotiation: NotSupported", self.remote),
                    );
                }
            }
            if self.rules.tls == Negotiation::Required {
                return self.fail(
                    C::PolicyViolation,
                    format!("{} does not offer STARTTLS and the partner policy says tlsNegotiation: Required", self.remote),
                );
            }
            if matches!(self.purpose, Purpose::Verify { .. }) {
                return self.send_verify();
            }
            if !self.allows(AuthMethod::TcpDialback) {
                return self.fail(
                    C::PolicyViolation,
                    format!(
                        "no TLS with {} and the partner policy does not allow dialback without TLS",
                        self.remote
                    ),
                );
            }
            return self.send_dialback();
        }
        if matches!(self.purpose, Purpose::Verify { .. }) {
            return self.send_verify();
        }
        let verdict = self.verdict();
        if verdict.is_ok() && f.sasl_external && self.allows(AuthMethod::SaslOverTls) {
            self.stage = Stage::AwaitSasl;
            return vec![Action::Send(
                stream::sasl_external_auth(Some(&self.local)).to_xml_in(ns::SERVER),
            )];
        }
        if self.allows(AuthMethod::TlsDialback) {
            return self.send_dialback();
        }
        let why = match verdict {
            Err(problem) => format!(
                "the certificate of {} is not accepted: {problem}",
                self.remote
            ),
            Ok(()) => format!("{} does not offer SASL EXTERNAL", self.remote),
        };
        self.fail(
            C::PolicyViolation,
            format!("{why}; the partner policy allows no other method"),
        )
    }

    fn send_dialback(&mut self) -> Vec<Action> {
        let Some(id) = self.peer_stream_id.clone() else {
            return self.fail(
                C::UndefinedCondition,
                format!("{} sent no stream id, which dialback needs", self.remote),
            );
        };
        self.stage = Stage::AwaitDialback;
        let key = self.secret.key(&self.remote, &self.local, &id);
        vec![Action::Send(
            dialback::result_request(&self.local, &self.remote, &key).to_xml_in(ns::SERVER),
        )]
    }

    fn send_verify(&mut self) -> Vec<Action> {
        let Purpose::Verify { stream_id, key } = &self.purpose else {
            return Vec::new();
        };
        self.stage = Stage::AwaitVerify;
        vec![Action::Send(
            dialback::verify_request(&self.local, &self.remote, stream_id, key)
                .to_xml_in(ns::SERVER),
        )]
    }

    fn on_dialback_answer(&mut self, e: Element) -> Vec<Action> {
        let answer = match dialback::parse(&e) {
            Some(Ok(a)) => a,
            Some(Err(why)) => return self.fail(C::BadFormat, why),
            None => {
                return self.fail(
                    C::UnsupportedStanzaType,
                    format!("<{}/> before dialback finished", e.name),
                );
            }
        };
        match (self.stage, answer) {
            (
                Stage::AwaitDialback,
                Dialback::ResultAnswer {
                    outcome: Outcome::Valid,
                    ..
                },
            ) => {
                self.stage = Stage::Established;
                let method = if self.tls {
                    Method::TlsDialback
                } else {
                    Method::TcpDialback
                };
                vec![Action::Established(method)]
            }
            (Stage::AwaitDialback, Dialback::ResultAnswer { outcome, .. }) => {
                self.stage = Stage::Done;
                vec![Action::Fail {
                    send: None,
                    reason: format!("{} answered our dialback with {outcome:?}", self.remote),
                }]
            }
            (Stage::AwaitVerify, Dialback::VerifyAnswer { outcome, .. }) => {
                self.stage = Stage::Done;
                vec![Action::Verified(outcome == Outcome::Valid)]
            }
            _ => Vec::new(),
        }
    }
}

/// What a driven negotiation ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Negotiated {
    Established(Method),
    /// The answer of a [`Purpose::Verify`] stream (already closed).
    Verified(bool),
}

/// Drives `session` over `conn` until stanzas may flow, a verification is answered, or the
/// negotiation fails — in which case the peer has been sent the stream error and the reason
/// is returned. Callers bound it with their establishment timeout.
pub async fn negotiate(
    conn: &mut XmppConn,
    session: &mut OutboundSession,
    starttls: Arc<rustls::ClientConfig>,
) -> Result<Negotiated, String> {
    negotiate_observed(conn, session, starttls, |_, _| None).await
}

/// [`negotiate`], showing `observe` each element the peer sends before the session handles it.
/// Whatever `observe` returns is sent first: `xmppfed probe` records the peer's SASL and
/// dialback answers this way, and asks for XEP-0288 bidi right after the features.
pub async fn negotiate_observed(
    conn: &mut XmppConn,
    session: &mut OutboundSession,
    starttls: Arc<rustls::ClientConfig>,
    mut observe: impl FnMut(&Element, &OutboundSession) -> Option<String>,
) -> Result<Negotiated, String> {
    let mut pending: VecDeque<Action> = session.start().into();
    loop {
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Send(data) => conn.send(&data).await.map_err(|e| e.to_string())?,
                Action::StartTls => {
                    conn.upgrade_client(starttls.clone(), &session.remote)
                        .await
                        .map_err(|e| e.to_string())?;
                    pending.extend(session.handle(Input::TlsEstablished(conn.peer_chain())));
                }
                Action::ResetFramer(l) => conn.framer_mut().reset(l),
                Action::Established(method) => return Ok(Negotiated::Established(method)),
                Action::Verified(valid) => {
                    let _ = conn.send(stream::CLOSE_STREAM).await;
                    conn.shutdown().await;
                    return Ok(Negotiated::Verified(valid));
                }
                Action::Fail { send, reason } => {
                    if let Some(e) = send {
                        let _ = conn.close_with(&e).await;
                    }
                    conn.shutdown().await;
                    return Err(reason);
                }
                // Only an established stream receives stanzas, and negotiation returns as soon
                // as the stream is established.
                Action::Received(_) => {}
            }
        }
        match conn.next_frame().await.map_err(|e| e.to_string())? {
            Some(Frame::Header(h)) => pending.extend(session.handle(Input::Header(h))),
            Some(Frame::Element(e)) => {
                if let Some(first) = observe(&e, session) {
                    conn.send(&first).await.map_err(|e| e.to_string())?;
                }
                pending.extend(session.handle(Input::Element(e)));
            }
            Some(Frame::KeepAlive) => {}
            Some(Frame::Close) | None => {
                return Err(format!(
                    "{} closed the connection during negotiation",
                    session.remote
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
