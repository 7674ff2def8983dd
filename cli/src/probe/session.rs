//! Authentication and ping: a fresh stream negotiated as `--from` by the workspace's own
//! initiating state machine ([`OutboundSession`]), driven here so that the SASL and dialback
//! answers can be explained and XEP-0288 bidi requested, then an XEP-0199 ping over it.

use super::advice::stream_error_advice;
use super::report::{Advice, Status, Step, advice};
use super::{Prober, Reached, addr_target};
use std::time::Instant;
use tokio::time::timeout;
use xmppfed_policy::{Negotiation, NegotiationSettings};
use xmppfed_xmpp::conn::{XmppConn, connect_s2s};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::identity::CertFacts;
use xmppfed_xmpp::inbound::Method;
use xmppfed_xmpp::ns;
use xmppfed_xmpp::outbound::{Negotiated, OutboundSession, Purpose, negotiate_observed};
use xmppfed_xmpp::stream::{self, CLOSE_STREAM, Features};
use xmppfed_xmpp::stream_error::StreamError;
use xmppfed_xmpp::tls::{TlsMode, s2s_client_config};

/// Stanza size accepted once authenticated (a ping answer is tiny; a stray stanza may not be).
const AUTHENTICATED_STANZA_BYTES: usize = 256 * 1024;

impl Prober {
    pub(super) async fn authenticate(&mut self, reached: &Reached) {
        let d = self.domain.clone();
        let started = Instant::now();
        let Some(from) = self.from.clone() else {
            self.push(Step::new(
                "authentication",
                Some(d.clone()),
                started,
                Status::Skip,
                "no --from: authentication proves a sending domain, so the probe needs to know which (--from <your domain> with --cert/--key, or --dialback-secret)",
            ));
            self.push(Step::new(
                "ping",
                Some(d),
                started,
                Status::Skip,
                "needs an authenticated stream",
            ));
            return;
        };
        let settings = match (self.identity.is_some(), self.secret.is_some()) {
            (true, true) => {
                NegotiationSettings::new(Negotiation::Required, Negotiation::Optional, true)
            }
            (true, false) => {
                NegotiationSettings::new(Negotiation::Required, Negotiation::Required, false)
            }
            (false, true) => {
                NegotiationSettings::new(Negotiation::Required, Negotiation::NotSupported, true)
            }
            (false, false) => {
                self.push(Step::new(
                    "authentication",
                    Some(d.clone()),
                    started,
                    Status::Skip,
                    format!("no credentials for {from}: pass --cert/--key (a certificate for {from}) to try SASL EXTERNAL, or --dialback-secret to try dialback"),
                ));
                self.push(Step::new(
                    "ping",
                    Some(d),
                    started,
                    Status::Skip,
                    "needs an authenticated stream",
                ));
                return;
            }
        };
        let shown = addr_target(reached.addr, &reached.target);
        let mut trace = Trace::default();
        let secret = self
            .secret
            .clone()
            .unwrap_or_else(|| DialbackSecret::new(stream::new_stream_id()));
        let established = timeout(
            self.step_timeout,
            self.negotiate(reached, &from, settings, secret, &mut trace),
        )
        .await;
        let (mut conn, method) = match established {
            Ok(Ok((conn, method))) => {
                let how = match method {
                    Method::SaslExternal => {
                        "SASL EXTERNAL (XEP-0178) with our certificate".to_string()
                    }
                    Method::TlsDialback => format!(
                        "dialback over TLS (XEP-0220): {d} verified our key with {from}'s authoritative server"
                    ),
                    Method::TcpDialback => "dialback without TLS".to_string(),
                    Method::DialbackCertificate => {
                        "dialback confirmed by our certificate (XEP-0344)".to_string()
                    }
                };
                let bidi = if trace.bidi {
                    "; bidirectional (XEP-0288)"
                } else {
                    "; one-way (no XEP-0288 bidi)"
                };
                self.push(Step::new(
                    "authentication",
                    Some(shown),
                    started,
                    Status::Ok,
                    format!("authenticated as {from} by {how}{bidi}"),
                ));
                (conn, method)
            }
            Ok(Err(reason)) => {
                let why = self.auth_advice(&reason, &trace, &from);
                self.authentication_failed(shown, started, reason, why);
                return;
            }
            Err(_) => {
                let why = if self.secret.is_some() {
                    advice(
                        format!(
                            "{d} did not finish authentication within {} s; for dialback it connects back to {from}'s server (found through {from}'s SRV records), which may be unreachable from it",
                            self.secs()
                        ),
                        format!(
                            "check that {from}'s SRV records point at a running xmppfed edge reachable from {d}; raise --timeout"
                        ),
                    )
                } else {
                    advice(
                        format!("{d} did not finish authentication within {} s", self.secs()),
                        format!("look in {d}'s server log; raise --timeout"),
                    )
                };
                let text = format!("not authenticated within {} s", self.secs());
                self.authentication_failed(shown, started, text, why);
                return;
            }
        };
        if trace.bidi {
            self.ping(&mut conn, &from, method).await;
        } else {
            self.push(Step::new(
                "ping",
                Some(d.clone()),
                Instant::now(),
                Status::Skip,
                format!(
                    "{d} did not offer XEP-0288 bidi, so its answer would travel over a connection it opens to {from}'s own server, not to this probe; ping from your XMPP server instead (Prosody: prosodyctl shell xmpp ping {from} {d})"
                ),
            ));
        }
        let _ = conn.send(CLOSE_STREAM).await;
        conn.shutdown().await;
    }

    /// The authentication step failed, so the ping that needs it is skipped.
    fn authentication_failed(
        &mut self,
        shown: String,
        started: Instant,
        text: String,
        why: Advice,
    ) {
        self.push(
            Step::new("authentication", Some(shown), started, Status::Fail, text).because(why),
        );
        self.push(Step::new(
            "ping",
            Some(self.domain.clone()),
            Instant::now(),
            Status::Skip,
            "needs an authenticated stream",
        ));
    }

    /// A fresh connection and the real negotiation, asking for bidi when offered.
    async fn negotiate(
        &self,
        reached: &Reached,
        from: &str,
        settings: NegotiationSettings,
        secret: DialbackSecret,
        trace: &mut Trace,
    ) -> Result<(XmppConn, Method), String> {
        let direct = reached.target.direct_tls;
        let direct_config = if direct {
            Some(
                s2s_client_config(self.identity.as_ref(), TlsMode::Direct)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        // The whole negotiation is bounded by the caller's timeout of the same length.
        let mut conn =
            connect_s2s(reached.addr, direct_config, &self.domain, self.step_timeout).await?;
        let chain = conn.peer_chain();
        let mut session = OutboundSession::new(
            from,
            &self.domain,
            settings,
            self.trust.clone(),
            secret,
            Purpose::Stanzas,
            direct,
            chain,
        );
        let starttls = s2s_client_config(self.identity.as_ref(), TlsMode::StartTls)
            .map_err(|e| e.to_string())?;
        let observe = |e: &Element, session: &OutboundSession| observe(e, session.is_tls(), trace);
        match negotiate_observed(&mut conn, &mut session, starttls, observe).await? {
            Negotiated::Established(method) => {
                conn.framer_mut()
                    .set_limits(FramerLimits::authenticated(AUTHENTICATED_STANZA_BYTES));
                Ok((conn, method))
            }
            Negotiated::Verified(_) => Err("unexpected dialback verification answer".into()),
        }
    }

    fn auth_advice(&self, reason: &str, trace: &Trace, from: &str) -> Advice {
        let d = &self.domain;
        if let Some(err) = &trace.stream_error {
            return stream_error_advice(err, d, Some(from));
        }
        let eku_note = self
            .identity
            .as_ref()
            .and_then(|id| id.chain.first())
            .and_then(|c| CertFacts::from_der(c).ok())
            .and_then(|f| f.purposes)
            .filter(|p| !p.client_auth && !p.any)
            .map(|_| "; our certificate has no clientAuth, which some servers still require from a connecting server (public CAs stopped issuing it in 2026)")
            .unwrap_or("");
        let cert_fix = format!(
            "{d} must trust the CA of our certificate, and the certificate must name {from} (DNS-ID {from} or SRV-ID _xmpp-server.{from}); or authenticate by dialback (--dialback-secret)"
        );
        if let Some(failure) = &trace.sasl_failure {
            return advice(
                format!(
                    "{d} refused SASL EXTERNAL for {from} ({failure}): it does not accept our certificate as proof of {from}{eku_note}"
                ),
                cert_fix,
            );
        }
        if let Some(refused) = &trace.dialback_refused {
            return advice(
                format!(
                    "{d} answered our dialback with {refused}: it asked {from}'s authoritative server — found through {from}'s own SRV records — to verify the key, and got no or a negative answer. The key comes from --dialback-secret, so dialback works only when {from} is served by a running xmppfed edge holding that same secret"
                ),
                format!(
                    "probe with the dialback secret of the xmppfed edge serving {from} (xmppfed up: <state-dir>/dialback-secret; Kubernetes: the federation's dialback Secret), and make sure {d} can reach that edge through {from}'s SRV records"
                ),
            );
        }
        if reason.contains("is not accepted") {
            return advice(
                format!(
                    "{d}'s certificate is not trusted here (see the certificate steps), so SASL EXTERNAL was not attempted"
                ),
                format!("pass {d}'s CA with --ca if you mean to trust it"),
            );
        }
        if trace.external_offered == Some(false) && self.identity.is_some() {
            return advice(
                format!(
                    "{d} did not offer SASL EXTERNAL to us: it does not accept our certificate for {from} (a CA it does not trust, or a name other than {from}), or it does not do SASL EXTERNAL with servers{eku_note}"
                ),
                cert_fix,
            );
        }
        advice(
            format!("the negotiation with {d} failed: {reason}"),
            format!("look in {d}'s server log for the other side of the story"),
        )
    }

    async fn ping(&mut self, conn: &mut XmppConn, from: &str, method: Method) {
        let d = self.domain.clone();
        let id = format!("probe-{}", &stream::new_stream_id()[..12]);
        let iq = Element::new(ns::SERVER, "iq")
            .attr("type", "get")
            .attr("from", from)
            .attr("to", d.as_str())
            .attr("id", id.as_str())
            .child(Element::new(ns::PING, "ping"));
        let started = Instant::now();
        let exchange = async {
            conn.send(&iq.to_xml_in(ns::SERVER))
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match conn.next_frame().await.map_err(|e| e.to_string())? {
                    Some(Frame::Element(e)) => {
                        if let Some(err) = StreamError::from_element(&e) {
                            return Err(format!("stream error {err}"));
                        }
                        if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
                            return Ok(e);
                        }
                    }
                    Some(Frame::KeepAlive | Frame::Header(_)) => {}
                    Some(Frame::Close) | None => {
                        return Err(format!("{d} closed the stream"));
                    }
                }
            }
        };
        let step = match timeout(self.step_timeout, exchange).await {
            Ok(Ok(answer)) => {
                let rtt = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
                match answer.get_attr("type") {
                    Some("result") => Step::new(
                        "ping",
                        Some(d.clone()),
                        started,
                        Status::Ok,
                        format!("pong from {d} in {rtt} ms"),
                    ),
                    _ => {
                        let condition = answer
                            .get_child(ns::SERVER, "error")
                            .and_then(|err| {
                                err.elements()
                                    .find(|c| c.ns == ns::STANZA_ERRORS && c.name != "text")
                            })
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| "undefined-condition".into());
                        if matches!(
                            condition.as_str(),
                            "service-unavailable" | "feature-not-implemented"
                        ) {
                            Step::new(
                                "ping",
                                Some(d.clone()),
                                started,
                                Status::Ok,
                                format!("round trip in {rtt} ms; {d} answered <{condition}/> (it does not implement XEP-0199, which is fine)"),
                            )
                        } else {
                            Step::new(
                                "ping",
                                Some(d.clone()),
                                started,
                                Status::Warn,
                                format!("round trip in {rtt} ms, but {d} answered with error <{condition}/>"),
                            )
                            .because(advice(
                                format!("{d} received the ping from {from} and refused it"),
                                format!("look in {d}'s server log for why stanzas from {from} are refused"),
                            ))
                        }
                    }
                }
            }
            Ok(Err(text)) => Step::new("ping", Some(d.clone()), started, Status::Fail, text).because(
                advice(
                    format!("{d} closed the authenticated stream instead of answering"),
                    format!("look in {d}'s server log"),
                ),
            ),
            // To check our dialback key the remote connected to `from`'s own server, and it
            // may answer over that connection instead (Prosody does): seen with a real one.
            Err(_) if matches!(method, Method::TlsDialback | Method::TcpDialback) => Step::new(
                "ping",
                Some(d.clone()),
                started,
                Status::Warn,
                format!("no answer over this stream within {} s", self.secs()),
            )
            .because(advice(
                format!("to verify our dialback key {d} connected to {from}'s own server, and it most likely sent its answer over that connection (XEP-0288 lets it choose), so the answer reached {from}'s server, not this probe"),
                format!("nothing to fix if {from}'s server received the answer; to time a round trip here, authenticate with SASL EXTERNAL (--cert/--key)"),
            )),
            Err(_) => Step::new(
                "ping",
                Some(d.clone()),
                started,
                Status::Fail,
                format!("no answer within {} s", self.secs()),
            )
            .because(advice(
                format!("{d} accepted the stream but did not answer the ping over it"),
                format!("look in {d}'s server log; a server behind an xmppfed edge answers only when the edge's gateway and internal server are up"),
            )),
        };
        self.push(step);
    }
}

/// What the authentication saw, to explain a refusal.
#[derive(Default)]
struct Trace {
    bidi: bool,
    external_offered: Option<bool>,
    sasl_failure: Option<String>,
    sasl_succeeded: bool,
    dialback_refused: Option<String>,
    stream_error: Option<StreamError>,
}

/// Records what the partner answered during negotiation, for the advice; asks for XEP-0288 bidi
/// right after the features, before authenticating.
fn observe(e: &Element, tls: bool, trace: &mut Trace) -> Option<String> {
    if let Some(err) = StreamError::from_element(e) {
        trace.stream_error = Some(err);
    } else if let Some(f) = Features::from_element(e) {
        if tls && !trace.sasl_succeeded {
            trace.external_offered = Some(f.sasl_external);
        }
        if tls && f.bidi && !trace.bidi && !trace.sasl_succeeded {
            trace.bidi = true;
            return Some(Element::new(ns::BIDI, "bidi").to_xml_in(ns::SERVER));
        }
    } else if e.is(ns::SASL, "failure") {
        let mut parts: Vec<String> = e
            .elements()
            .filter(|c| c.name != "text")
            .map(|c| c.name.clone())
            .collect();
        if let Some(text) = e.get_child(ns::SASL, "text") {
            parts.push(format!("\"{}\"", text.text_content()));
        }
        trace.sasl_failure = Some(parts.join(" "));
    } else if e.is(ns::SASL, "success") {
        trace.sasl_succeeded = true;
    } else if e.is(ns::DIALBACK, "result")
        && matches!(e.get_attr("type"), Some("invalid" | "error"))
    {
        let mut text = e.get_attr("type").unwrap_or_default().to_string();
        if let Some(err) = e.get_child(ns::SERVER, "error") {
            let conditions: Vec<&str> = err.elements().map(|c| c.name.as_str()).collect();
            if !conditions.is_empty() {
                text.push_str(&format!(" ({})", conditions.join(" ")));
            }
        }
        trace.dialback_refused = Some(text);
    }
    None
}
