//! Keeps federated presence subscriptions fresh (Lync's `SubscriptionRefreshInterval`).
//!
//! Every subscription the gateway relays has a last sign of life: a subscription change or
//! presence between the two users. A sweep every quarter interval
//! - probes (`<presence type='probe'/>` from the local user's bare JID, RFC 6121 §4.3) the
//!   remote user of every subscription the local user holds once it is half an interval old —
//!   the partner's server answers with current presence, which refreshes it, or with
//!   `unsubscribed`/an error, which ends it;
//! - forgets subscriptions with no sign of life for a whole interval (counted in
//!   `xmppfed_gateway_subscriptions_expired`). Rosters stay the internal server's business:
//!   forgetting changes what the gateway tracks and probes, not what users see.

use crate::Shared;
use crate::store::{SubState, Subscription};
use std::sync::Arc;
use std::time::Duration;
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::ns;

/// What the sweep does with one subscription at `now` for a refresh interval of `interval` s.
#[derive(Debug, PartialEq, Eq)]
pub enum Sweep {
    Keep,
    Probe,
    Expire,
}

pub fn sweep(sub: &Subscription, now: u64, interval: u64) -> Sweep {
    let age = now.saturating_sub(sub.refreshed_at);
    if age >= interval {
        Sweep::Expire
    } else if age >= interval / 2 && sub.local_to_remote == SubState::Active {
        Sweep::Probe
    } else {
        Sweep::Keep
    }
}

pub async fn run(shared: Arc<Shared>) {
    // Count what survived a restart.
    if let Ok(all) = shared.store.subscriptions() {
        shared.metrics.subscriptions.set(all.len() as i64);
    }
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let interval = shared
            .policy
            .current()
            .document()
            .limits
            .subscription_refresh_interval_seconds
            .max(1);
        let tick = Duration::from_millis((interval * 1000 / 4).max(250));
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        let now = crate::router::now();
        let all = match shared.store.subscriptions() {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read subscriptions");
                continue;
            }
        };
        for (local, remote, sub) in all {
            match sweep(&sub, now, interval) {
                Sweep::Keep => {}
                Sweep::Probe => {
                    shared.metrics.subscription_probes.inc();
                    let probe = Element::new(ns::SERVER, "presence")
                        .attr("from", local.as_str())
                        .attr("to", remote.as_str())
                        .attr("type", "probe");
                    if shared.hub.try_deliver(probe, Duration::ZERO).await.is_err() {
                        tracing::debug!(
                            "no proxy link for a subscription probe; next sweep retries"
                        );
                    }
                }
                Sweep::Expire => {
                    tracing::info!(
                        interval,
                        "subscription expired: nothing refreshed it within subscriptionRefreshInterval"
                    );
                    if shared
                        .store
                        .put_subscription(&local, &remote, Subscription::default())
                        .is_ok()
                    {
                        shared.metrics.subscriptions.dec();
                        shared.metrics.subscriptions_expired.inc();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_subscriptions_are_probed_at_half_an_interval_and_expire_after_one() {
        let sub = Subscription {
            local_to_remote: SubState::Active,
            remote_to_local: SubState::None,
            refreshed_at: 1000,
        };
        assert_eq!(sweep(&sub, 1000 + 3599, 7200), Sweep::Keep);
        assert_eq!(sweep(&sub, 1000 + 3600, 7200), Sweep::Probe);
        assert_eq!(sweep(&sub, 1000 + 7200, 7200), Sweep::Expire);
        // The gateway cannot probe on the remote user's behalf: subscriptions the partner
        // holds are refreshed by the partner's own presence and probes, or expire.
        let theirs = Subscription {
            local_to_remote: SubState::None,
            remote_to_local: SubState::Active,
            refreshed_at: 1000,
        };
        assert_eq!(sweep(&theirs, 1000 + 3600, 7200), Sweep::Keep);
        assert_eq!(sweep(&theirs, 1000 + 7200, 7200), Sweep::Expire);
    }
}
