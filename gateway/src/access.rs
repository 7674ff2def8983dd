//! The gateway's decision for every stanza crossing it, as pure functions of the policy and
//! what the gateway remembers: the per-user `ExternalAccessPolicy` (user > domain > global,
//! both switches needed), and the partner type (spec §3.2):
//!
//! | partner type       | subscribe/IM without prior contact | status notes to the partner |
//! |--------------------|------------------------------------|-----------------------------|
//! | `Federated`        | yes                                | kept                        |
//! | `PublicVerified`   | yes                                | stripped                    |
//! | `PublicUnverified` | no: only after the local user reached out (message, `subscribe`, `subscribed`) | stripped |
//!
//! Answers, chosen so a partner learns nothing about who exists inside:
//! - a local user without XMPP access writing out gets `<policy-violation/>` with the reason;
//! - a partner user writing to such a user, or unsolicited to a `PublicUnverified` gate, gets
//!   `<service-unavailable/>` — the same answer as for a user who does not exist;
//! - presence from or to such users is not relayed, and not answered (RFC 6121 handles
//!   presence to unknown users silently too); errors and IQ results are never answered.
//!
//! The functions only decide; the caller applies the [`Effect`]s (durably, before forwarding)
//! and delivers or bounces.

use crate::store::{SubState, Subscription};
use xmppfed_policy::CompiledPolicy;
use xmppfed_xmpp::element::{Element, Node};
use xmppfed_xmpp::{addr, ns};

/// What happens to the stanza.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Relay it (possibly changed: status notes stripped).
    Forward(Element),
    /// Answer the sender with this stanza error instead (the stanza is given back for it).
    Reject {
        stanza: Element,
        condition: &'static str,
        text: String,
        reason: &'static str,
    },
    /// Neither relay nor answer (presence, errors, results).
    Drop { reason: &'static str },
}

/// A change to the gateway's memory that the stanza causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `local` reached out to `remote` (opens a `PublicUnverified` gate).
    ReachedOut { local: String, remote: String },
    /// A subscription between `local` and `remote` changed, or showed a sign of life.
    Subscription {
        local: String,
        remote: String,
        change: SubChange,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubChange {
    LocalRequests,
    LocalApproves,
    LocalCancels,
    LocalRevokes,
    RemoteRequests,
    RemoteApproves,
    RemoteCancels,
    RemoteRevokes,
    /// Presence between them: the subscription is alive.
    Seen,
}

impl SubChange {
    /// The subscription after this change at time `now`.
    pub fn apply(self, mut s: Subscription, now: u64) -> Subscription {
        match self {
            SubChange::LocalRequests if s.local_to_remote == SubState::None => {
                s.local_to_remote = SubState::Pending
            }
            SubChange::RemoteApproves => s.local_to_remote = SubState::Active,
            SubChange::LocalCancels | SubChange::RemoteRevokes => {
                s.local_to_remote = SubState::None
            }
            SubChange::RemoteRequests if s.remote_to_local == SubState::None => {
                s.remote_to_local = SubState::Pending
            }
            SubChange::LocalApproves => s.remote_to_local = SubState::Active,
            SubChange::RemoteCancels | SubChange::LocalRevokes => {
                s.remote_to_local = SubState::None
            }
            _ => {}
        }
        s.refreshed_at = now;
        s
    }
}

#[derive(Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub effects: Vec<Effect>,
}

impl Decision {
    fn forward(stanza: Element, effects: Vec<Effect>) -> Self {
        Self {
            verdict: Verdict::Forward(stanza),
            effects,
        }
    }
    fn reject(
        stanza: Element,
        condition: &'static str,
        reason: &'static str,
        text: impl Into<String>,
    ) -> Self {
        Self {
            verdict: Verdict::Reject {
                stanza,
                condition,
                text: text.into(),
                reason,
            },
            effects: Vec::new(),
        }
    }
    fn drop(reason: &'static str) -> Self {
        Self {
            verdict: Verdict::Drop { reason },
            effects: Vec::new(),
        }
    }
}

/// What kind of stanza, as far as policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    /// Available or unavailable presence (carries status notes).
    Presence,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    IqRequest,
    /// Errors and IQ results: answers, never answered.
    Response,
}

fn kind(stanza: &Element) -> Kind {
    let t = stanza.get_attr("type").unwrap_or_default();
    match (stanza.name.as_str(), t) {
        (_, "error") | ("iq", "result") => Kind::Response,
        ("iq", _) => Kind::IqRequest,
        ("presence", "subscribe") => Kind::Subscribe,
        ("presence", "subscribed") => Kind::Subscribed,
        ("presence", "unsubscribe") => Kind::Unsubscribe,
        ("presence", "unsubscribed") => Kind::Unsubscribed,
        ("presence", "probe") => Kind::Probe,
        ("presence", _) => Kind::Presence,
        _ => Kind::Message,
    }
}

fn is_presence(k: Kind) -> bool {
    matches!(
        k,
        Kind::Presence
            | Kind::Subscribe
            | Kind::Subscribed
            | Kind::Unsubscribe
            | Kind::Unsubscribed
            | Kind::Probe
    )
}

fn addresses(stanza: &Element) -> Result<(addr::Address, addr::Address), String> {
    let get = |a: &str| {
        stanza
            .get_attr(a)
            .ok_or_else(|| format!("the stanza has no '{a}' address"))
            .and_then(|v| addr::parse(v).map_err(|e| e.to_string()))
    };
    match (get("from"), get("to")) {
        (Ok(f), Ok(t)) => Ok((f, t)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// A JID with a localpart is a user; a bare domain is the server itself.
fn is_user(a: &addr::Address) -> bool {
    a.bare != a.domain
}

/// A stanza from a partner user (or server) for the organisation.
pub fn from_partner(
    policy: &CompiledPolicy,
    stanza: Element,
    reached_out: &dyn Fn(&str, &str) -> bool,
) -> Decision {
    let (from, to) = match addresses(&stanza) {
        Ok(a) => a,
        Err(e) => return Decision::reject(stanza, "jid-malformed", "malformed", e),
    };
    let k = kind(&stanza);
    let Some(partner) = policy.partner_for(&from.domain) else {
        return Decision::reject(
            stanza,
            "not-allowed",
            "partner-not-allowed",
            format!(
                "{} is not an allowed partner of this federation",
                from.domain
            ),
        );
    };
    if !policy.serves(&to.domain) {
        return Decision::reject(
            stanza,
            "service-unavailable",
            "not-served",
            format!("{} is not served here", to.domain),
        );
    }
    // Server-to-server traffic (pings, disco of the domain) involves no user's policy.
    if !is_user(&to) {
        return Decision::forward(stanza, Vec::new());
    }
    let access = policy.access_for(&to.bare);
    if !access.allows_xmpp() {
        return match k {
            Kind::Response => Decision::drop("no-access"),
            k if is_presence(k) => Decision::drop("no-access"),
            _ => Decision::reject(
                stanza,
                "service-unavailable",
                "no-access",
                "the recipient is not available",
            ),
        };
    }
    if is_user(&from)
        && partner.partner_type.requires_prior_contact()
        && matches!(k, Kind::Message | Kind::IqRequest | Kind::Subscribe)
        && !reached_out(&to.bare, &from.bare)
    {
        return Decision::reject(
            stanza,
            "service-unavailable",
            "not-contacted",
            "the recipient is not available",
        );
    }
    let change = match k {
        Kind::Subscribe => Some(SubChange::RemoteRequests),
        Kind::Subscribed => Some(SubChange::RemoteApproves),
        Kind::Unsubscribe => Some(SubChange::RemoteCancels),
        Kind::Unsubscribed => Some(SubChange::RemoteRevokes),
        Kind::Presence | Kind::Probe => Some(SubChange::Seen),
        _ => None,
    };
    let effects = change
        .filter(|_| is_user(&from))
        .map(|change| Effect::Subscription {
            local: to.bare.clone(),
            remote: from.bare.clone(),
            change,
        })
        .into_iter()
        .collect();
    Decision::forward(stanza, effects)
}

/// A stanza from a local user (or the internal server) for a partner.
pub fn to_partner(policy: &CompiledPolicy, mut stanza: Element) -> Decision {
    let (from, to) = match addresses(&stanza) {
        Ok(a) => a,
        Err(e) => return Decision::reject(stanza, "jid-malformed", "malformed", e),
    };
    let k = kind(&stanza);
    if !policy.serves(&from.domain) {
        return Decision::reject(
            stanza,
            "not-allowed",
            "not-served",
            format!("{} is not a domain of this federation", from.domain),
        );
    }
    let Some(partner) = policy.partner_for(&to.domain) else {
        return Decision::reject(
            stanza,
            "not-allowed",
            "partner-not-allowed",
            format!(
                "{} is not an allowed XMPP partner of this federation",
                to.domain
            ),
        );
    };
    if !is_user(&from) {
        return Decision::forward(stanza, Vec::new());
    }
    let access = policy.access_for(&from.bare);
    if !access.allows_xmpp() {
        if k == Kind::Response || is_presence(k) {
            return Decision::drop("no-access");
        }
        let why = match access.policy() {
            Some(p) => format!("external access policy '{p}' does not enable XMPP federation"),
            None => "no external access policy applies to this account".to_string(),
        };
        return Decision::reject(
            stanza,
            "policy-violation",
            "no-access",
            format!(
                "{} may not communicate with XMPP federated partners: {why}",
                from.bare
            ),
        );
    }
    let mut effects = Vec::new();
    if is_user(&to) && matches!(k, Kind::Message | Kind::Subscribe | Kind::Subscribed) {
        effects.push(Effect::ReachedOut {
            local: from.bare.clone(),
            remote: to.bare.clone(),
        });
    }
    let change = match k {
        Kind::Subscribe => Some(SubChange::LocalRequests),
        Kind::Subscribed => Some(SubChange::LocalApproves),
        Kind::Unsubscribe => Some(SubChange::LocalCancels),
        Kind::Unsubscribed => Some(SubChange::LocalRevokes),
        _ => None,
    };
    if let Some(change) = change.filter(|_| is_user(&to)) {
        effects.push(Effect::Subscription {
            local: from.bare.clone(),
            remote: to.bare.clone(),
            change,
        });
    }
    if k == Kind::Presence && !partner.partner_type.sees_status_notes() {
        strip_status(&mut stanza);
    }
    Decision::forward(stanza, effects)
}

/// Removes the `<status/>` texts ("status notes") from a presence.
fn strip_status(presence: &mut Element) {
    presence.children.retain(|n| match n {
        Node::Element(e) => !(e.name == "status" && (e.ns == ns::SERVER || e.ns == ns::CLIENT)),
        Node::Text(_) => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpolicy::policy;
    use xmppfed_policy::PartnerType;

    fn stanza(name: &str, from: &str, to: &str, t: Option<&str>) -> Element {
        let mut e = Element::new(ns::SERVER, name)
            .attr("from", from)
            .attr("to", to);
        if let Some(t) = t {
            e = e.attr("type", t);
        }
        e
    }

    fn presence_with_status(from: &str, to: &str) -> Element {
        stanza("presence", from, to, None)
            .child(Element::new(ns::SERVER, "show").text("away"))
            .child(Element::new(ns::SERVER, "status").text("at the dentist"))
    }

    const NEVER: &dyn Fn(&str, &str) -> bool = &|_, _| false;

    fn condition(d: &Decision) -> Option<&'static str> {
        match d.verdict {
            Verdict::Reject { condition, .. } => Some(condition),
            _ => None,
        }
    }

    #[test]
    fn federated_partners_reach_users_and_see_status_notes() {
        let p = policy(PartnerType::Federated);
        let m = stanza(
            "message",
            "alice@p.example/x",
            "bob@org.example",
            Some("chat"),
        );
        assert!(matches!(
            from_partner(&p, m, NEVER).verdict,
            Verdict::Forward(_)
        ));
        let d = to_partner(
            &p,
            presence_with_status("bob@org.example/r", "alice@p.example"),
        );
        let Verdict::Forward(out) = d.verdict else {
            panic!("{d:?}")
        };
        assert!(out.get_child(ns::SERVER, "status").is_some());
    }

    #[test]
    fn public_partners_never_see_status_notes() {
        for t in [PartnerType::PublicVerified, PartnerType::PublicUnverified] {
            let p = policy(t);
            let d = to_partner(
                &p,
                presence_with_status("bob@org.example/r", "alice@p.example"),
            );
            let Verdict::Forward(out) = d.verdict else {
                panic!("{d:?}")
            };
            assert!(out.get_child(ns::SERVER, "status").is_none(), "{t:?}");
            assert!(out.get_child(ns::SERVER, "show").is_some(), "{t:?}");
        }
    }

    #[test]
    fn public_unverified_needs_the_local_user_to_reach_out_first() {
        let p = policy(PartnerType::PublicUnverified);
        let m = || {
            stanza(
                "message",
                "alice@p.example/x",
                "bob@org.example",
                Some("chat"),
            )
        };
        let sub = || {
            stanza(
                "presence",
                "alice@p.example",
                "bob@org.example",
                Some("subscribe"),
            )
        };
        assert_eq!(
            condition(&from_partner(&p, m(), NEVER)),
            Some("service-unavailable")
        );
        assert_eq!(
            condition(&from_partner(&p, sub(), NEVER)),
            Some("service-unavailable")
        );
        // Bob writes first: that is recorded as a reach-out to alice's bare JID...
        let out = to_partner(
            &p,
            stanza(
                "message",
                "bob@org.example/r",
                "alice@p.example",
                Some("chat"),
            ),
        );
        assert_eq!(
            out.effects,
            vec![Effect::ReachedOut {
                local: "bob@org.example".into(),
                remote: "alice@p.example".into()
            }]
        );
        // ...and with it recorded, alice's stanzas pass.
        let known = |l: &str, r: &str| l == "bob@org.example" && r == "alice@p.example";
        assert!(matches!(
            from_partner(&p, m(), &known).verdict,
            Verdict::Forward(_)
        ));
        assert!(matches!(
            from_partner(&p, sub(), &known).verdict,
            Verdict::Forward(_)
        ));
        // PublicVerified needs no prior contact.
        let p = policy(PartnerType::PublicVerified);
        assert!(matches!(
            from_partner(&p, m(), NEVER).verdict,
            Verdict::Forward(_)
        ));
    }

    #[test]
    fn subscription_requests_and_approvals_count_as_reaching_out() {
        let p = policy(PartnerType::PublicUnverified);
        for t in ["subscribe", "subscribed"] {
            let d = to_partner(
                &p,
                stanza("presence", "bob@org.example", "alice@p.example", Some(t)),
            );
            assert!(
                d.effects
                    .iter()
                    .any(|e| matches!(e, Effect::ReachedOut { .. })),
                "{t}"
            );
        }
        let d = to_partner(
            &p,
            stanza("presence", "bob@org.example/r", "alice@p.example", None),
        );
        assert!(d.effects.is_empty());
    }

    #[test]
    fn users_without_access_are_refused_out_and_invisible_in() {
        let p = policy(PartnerType::Federated);
        let d = to_partner(
            &p,
            stanza(
                "message",
                "carol@org.example/r",
                "alice@p.example",
                Some("chat"),
            ),
        );
        let Verdict::Reject {
            condition, text, ..
        } = &d.verdict
        else {
            panic!("{d:?}")
        };
        assert_eq!(*condition, "policy-violation");
        assert!(text.contains("no-xmpp"), "{text}");
        // The partner side learns nothing: the same answer as for a user who does not exist.
        let d = from_partner(
            &p,
            stanza(
                "message",
                "alice@p.example/x",
                "carol@org.example",
                Some("chat"),
            ),
            NEVER,
        );
        let Verdict::Reject {
            condition, text, ..
        } = &d.verdict
        else {
            panic!("{d:?}")
        };
        assert_eq!(*condition, "service-unavailable");
        assert!(!text.contains("polic"), "{text}");
        // Presence either way is neither relayed nor answered.
        for d in [
            to_partner(
                &p,
                presence_with_status("carol@org.example/r", "alice@p.example"),
            ),
            from_partner(
                &p,
                stanza(
                    "presence",
                    "alice@p.example",
                    "carol@org.example",
                    Some("subscribe"),
                ),
                NEVER,
            ),
        ] {
            assert_eq!(
                d.verdict,
                Verdict::Drop {
                    reason: "no-access"
                }
            );
        }
    }

    #[test]
    fn errors_and_results_are_never_answered() {
        let p = policy(PartnerType::Federated);
        let d = to_partner(
            &p,
            stanza(
                "iq",
                "carol@org.example/r",
                "alice@p.example/x",
                Some("result"),
            ),
        );
        assert!(matches!(d.verdict, Verdict::Drop { .. }));
        let d = from_partner(
            &p,
            stanza(
                "message",
                "alice@p.example/x",
                "carol@org.example",
                Some("error"),
            ),
            NEVER,
        );
        assert!(matches!(d.verdict, Verdict::Drop { .. }));
    }

    #[test]
    fn unlisted_partners_and_foreign_domains_are_refused() {
        let p = policy(PartnerType::Federated);
        let d = to_partner(
            &p,
            stanza(
                "message",
                "bob@org.example",
                "eve@evil.example",
                Some("chat"),
            ),
        );
        assert_eq!(condition(&d), Some("not-allowed"));
        let d = from_partner(
            &p,
            stanza(
                "message",
                "eve@evil.example",
                "bob@org.example",
                Some("chat"),
            ),
            NEVER,
        );
        assert_eq!(condition(&d), Some("not-allowed"));
        let d = to_partner(
            &p,
            stanza("message", "x@other.example", "alice@p.example", None),
        );
        assert_eq!(condition(&d), Some("not-allowed"));
    }

    #[test]
    fn server_addressed_stanzas_involve_no_user_policy() {
        let p = policy(PartnerType::PublicUnverified);
        let ping = stanza("iq", "p.example", "org.example", Some("get"))
            .child(Element::new(ns::PING, "ping"));
        assert!(matches!(
            from_partner(&p, ping, NEVER).verdict,
            Verdict::Forward(_)
        ));
    }

    #[test]
    fn subscription_bookkeeping_follows_rfc_6121() {
        let mut s = Subscription::default();
        s = SubChange::LocalRequests.apply(s, 1);
        assert_eq!(s.local_to_remote, SubState::Pending);
        s = SubChange::RemoteApproves.apply(s, 2);
        assert_eq!(s.local_to_remote, SubState::Active);
        // A repeated request does not downgrade an active subscription.
        s = SubChange::LocalRequests.apply(s, 3);
        assert_eq!(s.local_to_remote, SubState::Active);
        s = SubChange::RemoteRequests.apply(s, 4);
        s = SubChange::LocalApproves.apply(s, 5);
        assert_eq!(s.remote_to_local, SubState::Active);
        s = SubChange::RemoteRevokes.apply(s, 6);
        assert_eq!(s.local_to_remote, SubState::None);
        s = SubChange::Seen.apply(s, 7);
        assert_eq!(s.refreshed_at, 7);
        s = SubChange::RemoteCancels.apply(s, 8);
        assert!(s.is_empty());
    }
}
