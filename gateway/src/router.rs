//! The gateway's stanza pipeline, both ways: decide ([`crate::access`]), remember (the
//! decision's effects, durably, before anything is forwarded), audit, then deliver — to the
//! internal server, or to a proxy over the link — or answer the sender with a stanza error.
//! Nothing is dropped silently: a stanza is delivered, answered with an error, or (presence,
//! errors, results, by policy) counted as not relayed.

use crate::access::{self, Decision, Effect, Verdict};
use crate::{Shared, internal};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use xmppfed_policy::CompiledPolicy;
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::link::Receipt;
use xmppfed_xmpp::{addr, ns, stanza};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn partner_name(policy: &CompiledPolicy, jid: Option<&str>) -> String {
    jid.and_then(|j| addr::parse(j).ok())
        .and_then(|a| policy.partner_for(&a.domain).map(|p| p.name.clone()))
        .unwrap_or_default()
}

/// A stanza from a partner (through a proxy) for the organisation. `receipt` is dropped once
/// the stanza is written to the internal server or refused, which lets the link acknowledge it.
pub async fn from_partner(shared: &Arc<Shared>, stanza: Element, receipt: Receipt) {
    let policy = shared.policy.current();
    let partner = partner_name(&policy, stanza.get_attr("from"));
    let store = shared.store.clone();
    let reached_out = |local: &str, remote: &str| {
        store.reached_out(local, remote).unwrap_or_else(|e| {
            // Fail closed: an unreadable store admits nobody through a PublicUnverified gate.
            tracing::error!(error = %e, "contact store unreadable");
            false
        })
    };
    let decision = access::from_partner(&policy, stanza, &reached_out);
    // Subscription bookkeeping only: failing to write it must not lose the stanza.
    if let Err(e) = remember(shared, &decision) {
        tracing::warn!(error = %e, "could not record a subscription change");
    }
    match decision.verdict {
        Verdict::Forward(s) => {
            shared.metrics.stanza("inbound", &partner, "forwarded");
            audit(shared, &policy, "inbound", &s);
            internal::send(shared, s, receipt).await;
        }
        Verdict::Reject {
            stanza,
            condition,
            text,
            reason,
        } => {
            shared.metrics.stanza("inbound", &partner, "rejected");
            shared.metrics.denial(reason);
            tracing::info!(reason, condition, %partner, "stanza from a partner refused");
            if let Some(reply) = stanza::bounce(&stanza, condition, &text) {
                bounce_to_partner(shared, reply);
            }
        }
        Verdict::Drop { reason } => {
            shared.metrics.stanza("inbound", &partner, "dropped");
            shared.metrics.denial(reason);
        }
    }
}

/// A stanza from the organisation (an internal server) for a partner.
pub async fn to_partner(shared: &Arc<Shared>, stanza: Element) {
    let policy = shared.policy.current();
    let partner = partner_name(&policy, stanza.get_attr("to"));
    let decision = access::to_partner(&policy, stanza);
    // A reach-out must be on disk before the stanza leaves: the partner's answer depends on it.
    if let Err(e) = remember(shared, &decision) {
        tracing::error!(error = %e, "could not record a contact; refusing to forward");
        shared.metrics.stanza("outbound", &partner, "rejected");
        let (Verdict::Forward(s) | Verdict::Reject { stanza: s, .. }) = decision.verdict else {
            return;
        };
        bounce_to_internal(
            shared,
            &s,
            "internal-server-error",
            "the federation gateway could not record this contact; try again later",
        )
        .await;
        return;
    }
    match decision.verdict {
        Verdict::Forward(s) => {
            audit(shared, &policy, "outbound", &s);
            match shared.hub.try_deliver(s, shared.link_wait).await {
                Ok(()) => shared.metrics.stanza("outbound", &partner, "forwarded"),
                Err(s) => {
                    shared.metrics.stanza("outbound", &partner, "rejected");
                    if let Some(s) = s.into_element() {
                        bounce_to_internal(
                            shared,
                            &s,
                            "remote-server-timeout",
                            "the federation edge cannot be reached from the gateway right now",
                        )
                        .await;
                    }
                }
            }
        }
        Verdict::Reject {
            stanza,
            condition,
            text,
            reason,
        } => {
            shared.metrics.stanza("outbound", &partner, "rejected");
            shared.metrics.denial(reason);
            tracing::info!(reason, condition, %partner, "stanza from a local user refused");
            bounce_to_internal(shared, &stanza, condition, &text).await;
        }
        Verdict::Drop { reason } => {
            shared.metrics.stanza("outbound", &partner, "dropped");
            shared.metrics.denial(reason);
        }
    }
}

/// Applies a decision's effects to the store.
fn remember(shared: &Shared, decision: &Decision) -> Result<(), crate::store::StoreError> {
    let now = now();
    for effect in &decision.effects {
        match effect {
            Effect::ReachedOut { local, remote } => {
                shared.store.record_reach_out(local, remote, now)?
            }
            Effect::Subscription {
                local,
                remote,
                change,
            } => {
                let before = shared.store.subscription(local, remote)?;
                let after = change.apply(before, now);
                shared.store.put_subscription(local, remote, after)?;
                match (before.is_empty(), after.is_empty()) {
                    (true, false) => shared.metrics.subscriptions.inc(),
                    (false, true) => shared.metrics.subscriptions.dec(),
                    _ => 0,
                };
            }
        }
    }
    Ok(())
}

/// One audited message (Lync's `EnableLoggingAllMessageBodies`).
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub direction: &'static str,
    pub from: String,
    pub to: String,
    /// Unix seconds.
    pub time: u64,
    pub body: String,
}

/// The audit record of `stanza`: only with `logMessageBodies`, and only for messages with a
/// body. Without it, bodies appear nowhere: not in logs, not in metrics.
pub fn audit_record(
    policy: &CompiledPolicy,
    direction: &'static str,
    stanza: &Element,
    time: u64,
) -> Option<AuditRecord> {
    if !policy.document().gateway.log_message_bodies || stanza.name != "message" {
        return None;
    }
    let body = stanza
        .get_child(ns::SERVER, "body")
        .or_else(|| stanza.get_child(ns::CLIENT, "body"))?;
    Some(AuditRecord {
        direction,
        from: stanza.get_attr("from").unwrap_or_default().to_string(),
        to: stanza.get_attr("to").unwrap_or_default().to_string(),
        time,
        body: body.text_content(),
    })
}

/// Writes the audit record, if any, as one JSON object on the `xmppfed_audit` log target, so
/// it can be routed apart from operational logs (e.g. `RUST_LOG=xmppfed_audit=info`).
fn audit(shared: &Shared, policy: &CompiledPolicy, direction: &'static str, stanza: &Element) {
    let Some(record) = audit_record(policy, direction, stanza, now()) else {
        return;
    };
    shared.metrics.audit_records.inc();
    match serde_json::to_string(&record) {
        Ok(json) => tracing::info!(target: "xmppfed_audit", record = %json, "message"),
        Err(e) => tracing::warn!(error = %e, "audit record not serialisable"),
    }
}

/// Answers a partner's sender with a stanza error, over a link. Spawned: this may run inside
/// a link's own receive loop, which must not wait on its own queue.
pub fn bounce_to_partner(shared: &Arc<Shared>, reply: Element) {
    let shared = shared.clone();
    tokio::spawn(async move {
        if shared
            .hub
            .try_deliver(reply, shared.link_wait)
            .await
            .is_err()
        {
            tracing::warn!("no proxy link for an error reply to a partner; dropped and counted");
            shared.metrics.bounce("undeliverable-bounce");
        }
    });
}

/// The error answer to a partner's stanza, sent back over a link.
pub fn refuse_from_partner(shared: &Arc<Shared>, stanza: &Element, condition: &str, text: &str) {
    shared.metrics.bounce(condition);
    if let Some(reply) = stanza::bounce(stanza, condition, text) {
        bounce_to_partner(shared, reply);
    }
}

/// Answers a local sender with a stanza error, through the internal server.
pub async fn bounce_to_internal(
    shared: &Arc<Shared>,
    stanza: &Element,
    condition: &str,
    text: &str,
) {
    shared.metrics.bounce(condition);
    match stanza::bounce(stanza, condition, text) {
        Some(reply) => internal::send(shared, reply, Receipt::none()).await,
        None => tracing::debug!(
            condition,
            "an error or result could not be delivered; not answered"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpolicy::policy;
    use xmppfed_policy::PartnerType;

    fn message() -> Element {
        Element::new(ns::SERVER, "message")
            .attr("from", "bob@org.example/r")
            .attr("to", "alice@p.example")
            .child(Element::new(ns::SERVER, "body").text("the quarterly numbers"))
    }

    #[test]
    fn bodies_are_audited_only_when_asked() {
        let off = policy(PartnerType::Federated);
        assert_eq!(audit_record(&off, "outbound", &message(), 7), None);
        let mut doc = off.into_document();
        doc.gateway.log_message_bodies = true;
        let on = CompiledPolicy::new(doc).unwrap();
        assert_eq!(
            audit_record(&on, "outbound", &message(), 7),
            Some(AuditRecord {
                direction: "outbound",
                from: "bob@org.example/r".into(),
                to: "alice@p.example".into(),
                time: 7,
                body: "the quarterly numbers".into(),
            })
        );
        // Presence and body-less messages (chat states) make no record.
        let typing = Element::new(ns::SERVER, "message").attr("from", "a@org.example");
        assert_eq!(audit_record(&on, "outbound", &typing, 7), None);
    }
}
