//! Policy benchmark: compile 10,000 partners and 10,000 user policies, encode to the ConfigMap
//! form, decode, and look up domains and users.
//!
//! Run: `cargo bench -p xmppfed-api --bench policy`
//! Budgets (spec §5): compile < 1 s, encoded < 1 MiB, decode < 100 ms.

use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};
use xmppfed_api::compile::compile;
use xmppfed_api::configmap::{from_config_map, to_config_map};
use xmppfed_api::v1alpha1::{ExternalAccessPolicy, XmppAllowedPartner, XmppFederation};

const PARTNERS: usize = 10_000;
const USER_POLICIES: usize = 10_000;
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        times.push(start.elapsed());
        last = Some(out);
    }
    (median(times), last.expect("runs > 0"))
}

fn main() {
    let federation: XmppFederation = serde_json::from_value(json!({
        "apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppFederation",
        "metadata": {"name": "bench", "namespace": "xmpp"},
        "spec": {"domains": ["example.com", "example.org"], "tls": {"secretName": "t"},
                 "gateway": {"internalServers": [{"host": "prosody.internal"}]}}
    }))
    .expect("federation");
    let partners: Vec<XmppAllowedPartner> = (0..PARTNERS)
        .map(|i| {
            let partner_type = ["Federated", "PublicVerified", "PublicUnverified"][i % 3];
            let sasl = ["Required", "Optional"][i % 2];
            serde_json::from_value(json!({
                "apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppAllowedPartner",
                "metadata": {"name": format!("partner-{i:05}"), "namespace": "xmpp"},
                "spec": {"domain": format!("partner-{i:05}.example"),
                         "additionalDomains": [format!("chat.partner-{i:05}.example")],
                         "partnerType": partner_type,
                         "saslNegotiation": sasl}
            }))
            .expect("partner")
        })
        .collect();
    let mut policies: Vec<ExternalAccessPolicy> = (0..USER_POLICIES)
        .map(|i| {
            let user = if i % 10 == 0 { format!("team-{i:05}-*@example.com") } else { format!("user-{i:05}@example.com") };
            serde_json::from_value(json!({
                "apiVersion": "xmppfed.io/v1alpha1", "kind": "ExternalAccessPolicy",
                "metadata": {"name": format!("user-{i:05}"), "namespace": "xmpp"},
                "spec": {"scope": "User", "users": [user], "enableFederationAccess": true, "enableXmppAccess": i % 2 == 0}
            }))
            .expect("policy")
        })
        .collect();
    policies.push(
        serde_json::from_value(json!({
            "apiVersion": "xmppfed.io/v1alpha1", "kind": "ExternalAccessPolicy",
            "metadata": {"name": "global", "namespace": "xmpp"}, "spec": {"scope": "Global"}
        }))
        .expect("global"),
    );

    let (t_compile, compiled) = time(RUNS, || {
        compile(&federation, &partners, &policies).expect("compile")
    });
    let doc = compiled.document;
    let (t_encode, cm) = time(RUNS, || {
        to_config_map(&doc, "bench-policy", "xmpp").expect("encode")
    });
    let encoded: usize = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.0.len())
            .sum::<usize>();
    let json_len = serde_json::to_vec(&doc).expect("json").len();
    let (t_decode, policy) = time(RUNS, || from_config_map(&cm).expect("decode"));

    let lookups = 1_000_000;
    let domains: Vec<String> = (0..1000)
        .map(|i| format!("chat.partner-{:05}.example", i * 7))
        .collect();
    let start = Instant::now();
    let mut hits = 0usize;
    for i in 0..lookups {
        hits += black_box(policy.partner_for(&domains[i % domains.len()])).is_some() as usize;
    }
    let t_lookup = start.elapsed() / lookups as u32;
    assert_eq!(hits, lookups);

    let users: Vec<String> = (0..1000)
        .map(|i| match i % 3 {
            0 => format!("user-{:05}@example.com", i * 7 + 1),
            1 => format!("team-{:05}-x@example.com", (i % 100) * 10),
            _ => format!("nobody-{i}@example.org"),
        })
        .collect();
    let user_lookups = 100_000;
    let start = Instant::now();
    for i in 0..user_lookups {
        black_box(policy.access_for(&users[i % users.len()]));
    }
    let t_access = start.elapsed() / user_lookups as u32;

    println!(
        "policy benchmark: {PARTNERS} partners (2 domains each), {USER_POLICIES} user policies (10% patterns), median of {RUNS}"
    );
    println!(
        "  compile                 {:>10.1} ms   (budget < 1000 ms)",
        t_compile.as_secs_f64() * 1e3
    );
    println!(
        "  encode to ConfigMap     {:>10.1} ms",
        t_encode.as_secs_f64() * 1e3
    );
    println!("  document JSON           {:>10} bytes", json_len);
    println!(
        "  encoded (gzip)          {:>10} bytes (budget < {} bytes)",
        encoded,
        1 << 20
    );
    println!(
        "  decode + check + index  {:>10.1} ms   (budget < 100 ms)",
        t_decode.as_secs_f64() * 1e3
    );
    println!("  partner lookup          {:>10} ns", t_lookup.as_nanos());
    println!(
        "  user access resolution  {:>10} ns   (1,000 patterns scanned in the worst case)",
        t_access.as_nanos()
    );
    let ok = t_compile < Duration::from_secs(1)
        && encoded < (1 << 20)
        && t_decode < Duration::from_millis(100);
    println!("  budgets {}", if ok { "met" } else { "MISSED" });
}
