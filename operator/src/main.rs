//! `xmppfed-operator`: reconciles `XmppFederation` objects. Flags map to the Helm chart's
//! values; the logic lives in the library (`controller`, `reconcile`, `build`, `status`).

use clap::{ArgAction, Parser};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube_lease_manager::LeaseManagerBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tracing::{error, info};
use xmppfed_operator::build::Settings;
use xmppfed_operator::controller::{self, Setup};
use xmppfed_operator::labels::MANAGER;
use xmppfed_operator::metrics::Metrics;
use xmppfed_operator::reconcile::Discovery;
use xmppfed_policy_source::health::{self, OPENMETRICS};
use xmppfed_policy_source::pod;

#[derive(Parser)]
#[command(
    version,
    about = "xmppfed operator: XmppFederation → proxies, gateways, certificates, DNS and policy"
)]
struct Args {
    /// Image holding xmppfed-proxy and xmppfed-gateway.
    #[arg(long, env = "XMPPFED_IMAGE", default_value_t = Settings::default().image)]
    image: String,
    /// imagePullPolicy of the proxy and gateway pods (Kubernetes' default when unset).
    #[arg(long, env = "XMPPFED_IMAGE_PULL_POLICY")]
    image_pull_policy: Option<String>,
    /// The cluster's DNS domain.
    #[arg(long, env = "XMPPFED_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Size of each gateway's contact-store volume.
    #[arg(long, env = "XMPPFED_GATEWAY_STATE_SIZE", default_value = "1Gi")]
    gateway_state_size: String,
    /// /healthz, /readyz and /metrics.
    #[arg(long, env = "XMPPFED_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Run only while holding the Lease, so several replicas are safe.
    #[arg(long, env = "XMPPFED_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "xmppfed-system")]
    lease_namespace: String,
    /// This replica's name in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Ask running proxies and gateways which policy version they loaded (needs `get
    /// pods/proxy`); without it `PolicyApplied` stays Unknown.
    #[arg(long, env = "XMPPFED_CONFIRM_POLICY", default_value_t = true, action = ArgAction::Set)]
    confirm_policy: bool,
    /// Log as JSON lines.
    #[arg(long, env = "XMPPFED_LOG_JSON")]
    log_json: bool,
    /// Print the ClusterRole and leader-election Role this operator needs, and exit.
    #[arg(long)]
    print_rbac: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_rbac {
        print!(
            "{}",
            xmppfed_operator::rbac::render(MANAGER, &args.lease_namespace)
        );
        return Ok(());
    }
    pod::init_logging(args.log_json);
    let client = Client::try_default().await?;
    if let Err(e) = controller::check_crds(&client).await {
        error!("{e}");
        anyhow::bail!(e);
    }
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| MANAGER.into());

    let metrics = Arc::new(Metrics::default());
    let leading = Arc::new(AtomicBool::new(!args.leader_election));
    let http = TcpListener::bind(args.http_listen).await?;
    info!(addr = %args.http_listen, "serving /healthz, /readyz, /metrics");
    let http_task = tokio::spawn(health::serve(http, {
        let (metrics, leading) = (metrics.clone(), leading.clone());
        Arc::new(move |path: &str| match path {
            "/healthz" => (hyper::StatusCode::OK, "text/plain", "ok\n".into()),
            // A standby replica is ready too: it is healthy and waiting for the Lease.
            "/readyz" => (
                hyper::StatusCode::OK,
                "text/plain",
                if leading.load(Ordering::Relaxed) {
                    "leading\n".into()
                } else {
                    "standby\n".into()
                },
            ),
            "/metrics" => (hyper::StatusCode::OK, OPENMETRICS, metrics.encode()),
            _ => health::not_found(),
        })
    }));

    // Wait for the Lease; stop (and let Kubernetes restart us) if it is lost.
    let mut lease = None;
    let mut lost = None;
    if args.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), MANAGER)
            .with_namespace(&args.lease_namespace)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .with_field_manager(MANAGER)
            .build()
            .await?;
        let (mut is_leader, task) = manager.watch().await;
        info!(%identity, namespace = %args.lease_namespace, "waiting for the leader Lease");
        tokio::select! {
            _ = pod::wait_for_termination() => {
                drop(is_leader);
                let _ = task.await;
                http_task.abort();
                return Ok(());
            }
            _ = async { while !*is_leader.borrow_and_update() { if is_leader.changed().await.is_err() { break } } } => {}
        }
        info!(%identity, "leading");
        leading.store(true, Ordering::Relaxed);
        lost = Some(is_leader);
        lease = Some(task);
    }

    let discovery = Discovery::new(std::time::Duration::from_secs(60));
    let crds = discovery.optional_crds(&client).await?;
    info!(
        cert_manager = crds.cert_manager,
        external_dns = crds.external_dns,
        "optional CRDs"
    );
    let setup = Setup {
        settings: Settings {
            image: args.image,
            image_pull_policy: args.image_pull_policy,
            cluster_domain: args.cluster_domain,
            gateway_state_size: args.gateway_state_size,
        },
        metrics,
        recorder: Some(Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(identity),
            },
        )),
        confirm_policy: args.confirm_policy,
        discovery,
        watch_certificates: crds.cert_manager,
    };
    let shutdown = async move {
        match lost {
            Some(mut is_leader) => {
                tokio::select! {
                    _ = pod::wait_for_termination() => {}
                    _ = async { while *is_leader.borrow_and_update() { if is_leader.changed().await.is_err() { break } } } => {
                        error!("lost the leader Lease; stopping");
                    }
                }
            }
            None => pod::wait_for_termination().await,
        }
    };
    controller::run(client, setup, shutdown).await;
    info!("stopped");
    if let Some(task) = lease {
        // The receiver went with the shutdown future: the manager releases the Lease.
        let _ = task.await;
    }
    http_task.abort();
    Ok(())
}
