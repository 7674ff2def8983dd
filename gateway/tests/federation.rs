//! The whole path with real servers and real users: a user of a partner's Prosody and users of
//! the organisation's own Prosody exchange messages, presence and subscriptions through
//! partner Prosody → proxy → link → gateway → internal Prosody, and back.
//!
//! The lab itself (topology, servers, the gateway in process or as its binary) is in
//! `support/`, shared with the federation benchmark. Users are slixmpp clients
//! (`testkit/fixtures/c2s_script.py`).

mod support;

use std::time::Duration;
use support::*;
use xmppfed_gateway::store::SubState;
use xmppfed_testkit::servers::{c2s_available, ejabberd_available, log_tail};
use xmppfed_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_partner_messages_presence_and_subscription_both_ways() {
    if !c2s_available() {
        return;
    }
    let limits = format!("{DEFAULT_LIMITS}, subscriptionRefreshInterval: 4s");
    let lab = lab_with(81, "Federated", &limits, false).await;
    let mut bob = lab.local(
        "bob",
        &[
            "status:in the lab",
            "expect-message:alice@partner.example",
            "send:alice@partner.example:hello alice",
            "sleep:30",
        ],
    );
    online(&mut bob, "bob", &lab).await;
    let alice = lab.alice(&[
        "send:bob@org.example:hello bob",
        "expect-message:bob@org.example",
        "subscribe:bob@org.example",
        "expect-presence:bob@org.example",
    ]);
    let out = alice.finish().await;
    let got_hello = bob
        .line(
            "MESSAGE from=alice@partner.example type=chat body='hello bob'",
            WAIT,
        )
        .await
        .is_some();
    let logs = || format!("alice: {out}\nbob: {:?}\n{}", bob.output, lab.logs());
    assert!(got_hello, "{}", logs());
    assert!(
        out.contains("MESSAGE from=bob@org.example type=chat body='hello alice'"),
        "{}",
        logs()
    );
    // Federated partners see status notes.
    assert!(
        out.contains("PRESENCE from=bob@org.example type=available status='in the lab'"),
        "{}",
        logs()
    );
    // The gateway tracked the subscription alice holds on bob's presence.
    let sub = lab
        .gateway()
        .shared
        .store
        .subscription("bob@org.example", "alice@partner.example")
        .expect("store");
    assert_eq!(sub.remote_to_local, SubState::Active, "{sub:?}");
    assert!(
        lab.metric("xmppfed_gateway_subscriptions ")
            .iter()
            .any(|l| !l.ends_with(" 0")),
        "{:?}",
        lab.metric("subscriptions")
    );
    assert!(
        lab.metric("stanzas_total{direction=\"inbound\",partner=\"p0\",verdict=\"forwarded\"}")
            .len()
            == 1
    );

    // Refresh: after two intervals (4 s) the gateway has probed alice on bob's behalf, her
    // server answered, and the subscription is still tracked.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let probes = lab.metric("xmppfed_gateway_subscription_probes_total");
    assert!(
        probes.iter().any(|l| !l.ends_with(" 0")),
        "{probes:?}\n{}",
        lab.logs()
    );
    let sub = lab
        .gateway()
        .shared
        .store
        .subscription("bob@org.example", "alice@partner.example")
        .expect("store");
    assert!(!sub.is_empty(), "the answered probes must keep it alive");

    // Hot reload: bob loses XMPP access; his next message is refused with the reason.
    let mut yaml = policy_yaml(81, "Federated", &limits);
    yaml.push_str("---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: bob-grounded, namespace: t}\nspec: {scope: User, users: [bob@org.example], enableFederationAccess: true, enableXmppAccess: false}\n");
    lab.apply(&yaml).await;
    let out = lab
        .local(
            "bob",
            &[
                "send:alice@partner.example:after the change",
                "expect-message:alice@partner.example",
            ],
        )
        .finish()
        .await;
    assert!(
        out.contains("condition=policy-violation") && out.contains("bob-grounded"),
        "{out}\n{}",
        lab.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_xmpp_access_are_refused_and_invisible() {
    if !c2s_available() {
        return;
    }
    let lab = lab(82, "Federated").await;
    let mut carol = lab.local(
        "carol",
        &[
            "send:alice@partner.example:psst",
            "expect-message:alice@partner.example",
        ],
    );
    online(&mut carol, "carol", &lab).await;
    let out = carol.finish().await;
    // Carol learns why, in words.
    assert!(
        out.contains("MESSAGE from=alice@partner.example type=error")
            && out.contains("condition=policy-violation")
            && out.contains("'no-xmpp-for-carol' does not enable XMPP federation"),
        "{out}\n{}",
        lab.logs()
    );
    // The partner's user gets what a non-existent user would give: service-unavailable.
    let mut carol_online = lab.local("carol", &["sleep:20"]);
    online(&mut carol_online, "carol", &lab).await;
    let out = lab
        .alice(&[
            "send:carol@org.example:hi carol",
            "expect-message:carol@org.example",
        ])
        .finish()
        .await;
    assert!(
        out.contains("type=error") && out.contains("condition=service-unavailable"),
        "{out}\n{}",
        lab.logs()
    );
    assert!(
        carol_online
            .line("MESSAGE", Duration::from_millis(500))
            .await
            .is_none(),
        "carol must not receive it: {:?}",
        carol_online.output
    );
    assert_eq!(
        lab.metric("denials_total{reason=\"no-access\"}"),
        vec!["xmppfed_gateway_denials_total{reason=\"no-access\"} 2".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_unverified_partner_waits_for_the_local_user_and_the_gateway_remembers() {
    if !c2s_available() {
        return;
    }
    let mut lab = lab(83, "PublicUnverified").await;
    let mut erin = lab.local("erin", &["status:secret plans", "sleep:90"]);
    online(&mut erin, "erin", &lab).await;

    // Unsolicited: refused as if erin did not exist.
    let out = lab
        .alice(&[
            "send:erin@org.example:unsolicited",
            "expect-message:erin@org.example",
        ])
        .finish()
        .await;
    assert!(
        out.contains("condition=service-unavailable"),
        "{out}\n{}",
        lab.logs()
    );
    assert_eq!(
        lab.metric("denials_total{reason=\"not-contacted\"}"),
        vec!["xmppfed_gateway_denials_total{reason=\"not-contacted\"} 1".to_string()]
    );

    // Erin reaches out (from a second session); the gateway writes it down.
    let mut erin2 = lab.local("erin", &["send:alice@partner.example:hi alice"]);
    online(&mut erin2, "erin (second session)", &lab).await;
    erin2.finish().await;
    let store = lab.gateway().shared.store.clone();
    for _ in 0..100 {
        if store
            .reached_out("erin@org.example", "alice@partner.example")
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store
            .reached_out("erin@org.example", "alice@partner.example")
            .expect("store"),
        "{}",
        lab.logs()
    );

    // Now alice may write and subscribe; erin's status note is not shown to a public partner.
    let out = lab
        .alice(&[
            "send:erin@org.example:hi erin",
            "subscribe:erin@org.example",
            "expect-presence:erin@org.example",
        ])
        .finish()
        .await;
    assert!(
        erin.line(
            "MESSAGE from=alice@partner.example type=chat body='hi erin'",
            WAIT
        )
        .await
        .is_some(),
        "{:?}\n{out}\n{}",
        erin.output,
        lab.logs()
    );
    assert!(
        out.contains("PRESENCE from=erin@org.example type=available status=''"),
        "{out}\n{}",
        lab.logs()
    );

    // A gateway restart forgets nothing.
    let gateway = lab.gateway.take().expect("running");
    let link = lab.proxy.link_addr;
    drop(store);
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    lab.gateway = Some(
        start_gateway(
            &target_host(lab.net, false),
            &lab.pki,
            lab.net,
            &lab.policy_file,
            &lab.state_file,
            link,
        )
        .await,
    );
    let out = lab
        .alice(&["send:erin@org.example:after the restart"])
        .finish()
        .await;
    assert!(
        erin.line(
            "MESSAGE from=alice@partner.example type=chat body='after the restart'",
            WAIT
        )
        .await
        .is_some(),
        "{:?}\n{out}\n{}",
        erin.output,
        lab.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_as_the_internal_server() {
    if !ejabberd_available() || !c2s_available() {
        return;
    }
    let lab = lab_with(84, "Federated", DEFAULT_LIMITS, true).await;
    let mut bob = lab.local(
        "bob",
        &[
            "expect-message:alice@partner.example",
            "send:alice@partner.example:hello from ejabberd",
            "sleep:20",
        ],
    );
    online(&mut bob, "bob", &lab).await;
    let out = lab
        .alice(&[
            "send:bob@org.example:hello ejabberd",
            "expect-message:bob@org.example",
        ])
        .finish()
        .await;
    let got = bob
        .line(
            "MESSAGE from=alice@partner.example type=chat body='hello ejabberd'",
            WAIT,
        )
        .await
        .is_some();
    assert!(got, "{:?}\n{out}\n{}", bob.output, lab.logs());
    assert!(
        out.contains("MESSAGE from=bob@org.example type=chat body='hello from ejabberd'"),
        "{out}\n{}",
        lab.logs()
    );
}

/// PublicVerified: no prior contact needed, no status notes. And the scopes' precedence: a
/// Domain policy switching XMPP off for org.example beats the Global one, and a User policy
/// for bob beats the Domain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_verified_partner_and_policy_scopes() {
    if !c2s_available() {
        return;
    }
    let lab = lab(85, "PublicVerified").await;
    let mut yaml = policy_yaml(85, "PublicVerified", DEFAULT_LIMITS);
    yaml.push_str(
        "---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: org-no-xmpp, namespace: t}\nspec: {scope: Domain, domains: [org.example], enableFederationAccess: true, enableXmppAccess: false}\n\
         ---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: bob-may, namespace: t}\nspec: {scope: User, users: [bob@org.example], enableFederationAccess: true, enableXmppAccess: true}\n",
    );
    lab.apply(&yaml).await;

    // Bob (User policy) is reached without having written first; his status note is stripped.
    let mut bob = lab.local(
        "bob",
        &[
            "status:in the lab",
            "expect-message:alice@partner.example",
            "sleep:20",
        ],
    );
    online(&mut bob, "bob", &lab).await;
    let out = lab
        .alice(&[
            "send:bob@org.example:unannounced hello",
            "subscribe:bob@org.example",
            "expect-presence:bob@org.example",
        ])
        .finish()
        .await;
    let got = bob
        .line(
            "MESSAGE from=alice@partner.example type=chat body='unannounced hello'",
            WAIT,
        )
        .await
        .is_some();
    assert!(got, "{:?}\n{out}\n{}", bob.output, lab.logs());
    assert!(
        out.contains("PRESENCE from=bob@org.example type=available status=''"),
        "{out}\n{}",
        lab.logs()
    );

    // Erin falls under the Domain policy: refused with its name; the partner sees nobody.
    let out = lab
        .local(
            "erin",
            &[
                "send:alice@partner.example:hi",
                "expect-message:alice@partner.example",
            ],
        )
        .finish()
        .await;
    assert!(
        out.contains("condition=policy-violation") && out.contains("'org-no-xmpp'"),
        "{out}\n{}",
        lab.logs()
    );
    let out = lab
        .alice(&[
            "send:erin@org.example:hi erin",
            "expect-message:erin@org.example",
        ])
        .finish()
        .await;
    assert!(
        out.contains("condition=service-unavailable"),
        "{out}\n{}",
        lab.logs()
    );
    // Erin is offline, so the gateway's count shows it was the policy that answered both.
    assert_eq!(
        lab.metric("denials_total{reason=\"no-access\"}"),
        vec!["xmppfed_gateway_denials_total{reason=\"no-access\"} 2".to_string()]
    );
}

/// Nothing acknowledged is lost across gateway restarts, crash or drain: while alice sends a
/// steady stream of messages, the gateway process is killed (SIGKILL) and restarted, then
/// drained (SIGTERM) and restarted. Every message reaches bob, or alice is told it did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restarts_while_messages_flow_lose_nothing() {
    if !c2s_available() {
        return;
    }
    const N: usize = 1000;
    let mut lab = lab(86, "Federated").await;
    // From here on the gateway is the real binary, in its own process.
    lab.gateway.take().expect("running").shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway = GatewayProcess::spawn(&lab);
    linked(&lab).await;

    let mut bob = lab.local("bob", &["sleep:40"]);
    online(&mut bob, "bob", &lab).await;
    let alice = lab.alice(&[
        "send:bob@org.example:first",
        "sleep:1",
        &format!("send-many:bob@org.example:{N}:4"),
        "sleep:8",
    ]);
    assert!(
        bob.line(
            "MESSAGE from=alice@partner.example type=chat body='first'",
            WAIT
        )
        .await
        .is_some(),
        "{:?}\n{}",
        bob.output,
        lab.logs()
    );
    // About 1.5 s into the stream: crash, and come back at once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gateway.signal("-KILL");
    gateway.exited().await;
    let gateway = GatewayProcess::spawn(&lab);
    // A second later: a graceful restart (what Kubernetes does on a rollout).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gateway.signal("-TERM");
    gateway.exited().await;
    let gateway = GatewayProcess::spawn(&lab);
    linked(&lab).await;

    let last = format!(
        "MESSAGE from=alice@partner.example type=chat body='n-{}'",
        N - 1
    );
    let _ = bob.line(&last, Duration::from_secs(30)).await;
    let alice_out = alice.finish().await;
    let received: std::collections::HashMap<String, usize> =
        bob.output.iter().fold(Default::default(), |mut m, l| {
            if let Some(b) = l
                .strip_prefix("MESSAGE from=alice@partner.example type=chat body='")
                .and_then(|r| r.strip_suffix("' condition= text=''"))
            {
                *m.entry(b.to_string()).or_default() += 1;
            }
            m
        });
    let bounced: Vec<&str> = alice_out
        .lines()
        .filter(|l| l.starts_with("MESSAGE from=bob@org.example type=error"))
        .collect();
    let lost: Vec<String> = (0..N)
        .map(|i| format!("n-{i}"))
        .filter(|b| {
            !received.contains_key(b) && !bounced.iter().any(|l| l.contains(&format!("'{b}'")))
        })
        .collect();
    let duplicates = received.values().filter(|&&c| c > 1).count();
    eprintln!(
        "restarts: {} of {N} delivered, {duplicates} twice, {} bounced",
        received.keys().filter(|b| b.starts_with("n-")).count(),
        bounced.len()
    );
    assert!(
        lost.is_empty(),
        "lost without an error to the sender: {lost:?}\nbounced: {bounced:?}\n{}\n{}",
        log_tail(
            "gateway",
            &std::fs::read_to_string(lab._dir.path().join("gateway.log")).unwrap_or_default(),
            40
        ),
        lab.logs()
    );
    // The restarts were quick: the proxy held everything for the new gateway.
    assert!(bounced.is_empty(), "{bounced:?}");
    gateway.signal("-TERM");
    gateway.exited().await;
}
