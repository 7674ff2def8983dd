//! The live policy of a running proxy or gateway: one compiled document, swapped atomically
//! when a new one arrives, and never replaced by a document that fails to load (the refusal
//! is logged, counted and shown in `/readyz`).
//!
//! Two sources feed it: [`file`] (standalone mode, or the ConfigMap mounted as a volume),
//! polled by content hash; and [`config_map`], the operator's policy ConfigMap read through
//! the Kubernetes API with a watch (RBAC: `get`/`list`/`watch` on that one object), which
//! sees a change within a second instead of the kubelet's minute-long volume refresh.

pub mod config_map;
pub mod file;
pub mod health;
pub mod pod;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use xmppfed_policy::CompiledPolicy;

/// What `/readyz` reports about the policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyStatus {
    pub version: String,
    /// Where the policy comes from, e.g. a path or `configmap/<namespace>/<name>`.
    pub source: String,
    /// Why the most recent document was refused, if it was.
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

/// The policy's own metrics, registered by the component that serves `/metrics`.
#[derive(Clone, Default)]
pub struct PolicyMetrics {
    /// 1 for the policy version in use, 0 for versions used before.
    pub version: Family<VersionLabels, Gauge>,
    /// Documents refused (the last good one stayed in force).
    pub reload_failures: Counter,
}

impl PolicyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_version",
            "The policy document version in use (value 1)",
            self.version.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Policy documents refused (the last good one stays)",
            self.reload_failures.clone(),
        );
    }

    fn in_use(&self, version: &str, yes: bool) {
        self.version
            .get_or_create(&VersionLabels {
                version: version.to_string(),
            })
            .set(i64::from(yes));
    }
}

/// The policy in force, and what became of the last document offered.
pub struct PolicyHolder {
    tx: watch::Sender<Arc<CompiledPolicy>>,
    status: Mutex<PolicyStatus>,
    metrics: PolicyMetrics,
}

impl PolicyHolder {
    pub fn new(initial: CompiledPolicy, source: &str, metrics: PolicyMetrics) -> Self {
        let version = initial.version().to_string();
        metrics.in_use(&version, true);
        Self {
            tx: watch::Sender::new(Arc::new(initial)),
            status: Mutex::new(PolicyStatus {
                version,
                source: source.to_string(),
                last_error: None,
            }),
            metrics,
        }
    }

    /// The policy in force. Cheap: an `Arc` clone.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.tx.borrow().clone()
    }

    /// Notified on every swap.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CompiledPolicy>> {
        self.tx.subscribe()
    }

    pub fn status(&self) -> PolicyStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Offers a newly read document: swapped in if it loaded, refused (keeping the last good
    /// one) if not. Returns whether the policy changed.
    pub fn offer(&self, loaded: Result<CompiledPolicy, String>) -> bool {
        let Ok(mut status) = self.status.lock() else {
            return false;
        };
        match loaded {
            Ok(policy) => {
                status.last_error = None;
                if policy.version() == status.version {
                    return false;
                }
                tracing::info!(old = %status.version, new = %policy.version(), partners = policy.document().partners.len(), "policy swapped");
                self.metrics.in_use(&status.version, false);
                self.metrics.in_use(policy.version(), true);
                status.version = policy.version().to_string();
                self.tx.send_replace(Arc::new(policy));
                true
            }
            Err(why) => self.refuse(&mut status, why),
        }
    }

    /// Records that the source has no usable document (e.g. the ConfigMap was deleted): the
    /// last good policy stays in force and `/readyz` says why.
    pub fn keep_last_good(&self, why: String) {
        if let Ok(mut status) = self.status.lock() {
            self.refuse(&mut status, why);
        }
    }

    fn refuse(&self, status: &mut PolicyStatus, why: String) -> bool {
        tracing::error!(error = %why, kept = %status.version, "policy document refused; keeping the last good one");
        self.metrics.reload_failures.inc();
        status.last_error = Some(why);
        false
    }
}

/// Where a pod's policy comes from.
pub enum Source {
    /// A file, polled every `poll` for content changes.
    File { path: PathBuf, poll: Duration },
    /// The operator's ConfigMap, watched through the Kubernetes API.
    ConfigMap {
        client: kube::Client,
        config_map: config_map::ConfigMapRef,
    },
}

/// The running policy and the task that keeps it current (spawn it).
pub struct Loaded {
    pub holder: Arc<PolicyHolder>,
    pub updates: futures_util::future::BoxFuture<'static, ()>,
}

impl Source {
    /// The ConfigMap source with the pod's service account (or `KUBECONFIG` outside a cluster).
    /// The source a service binary's flags name: `--policy FILE` (polled every 500 ms) or
    /// `--policy-configmap NS/NAME`.
    pub async fn from_flags(
        file: Option<PathBuf>,
        config_map: Option<config_map::ConfigMapRef>,
    ) -> Result<Self, String> {
        match (file, config_map) {
            (Some(path), _) => Ok(Source::File {
                path,
                poll: Duration::from_millis(500),
            }),
            (None, Some(cm)) => Source::config_map(cm).await,
            (None, None) => Err("give --policy or --policy-configmap".into()),
        }
    }

    pub async fn config_map(config_map: config_map::ConfigMapRef) -> Result<Self, String> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
        Ok(Self::ConfigMap { client, config_map })
    }

    /// Loads the first good document — a file must load now; a ConfigMap is waited for, as
    /// a pod may start before the operator has written it — and returns the holder with the
    /// task that offers it every later version.
    pub async fn load(self, metrics: PolicyMetrics) -> Result<Loaded, String> {
        use futures_util::FutureExt;
        match self {
            Source::File { path, poll } => {
                let loaded =
                    file::load(&path).map_err(|e| format!("cannot load the policy: {e}"))?;
                let holder = Arc::new(PolicyHolder::new(
                    loaded.policy,
                    &path.display().to_string(),
                    metrics,
                ));
                let updates = file::watch(path, loaded.content_hash, holder.clone(), poll).boxed();
                Ok(Loaded { holder, updates })
            }
            Source::ConfigMap { client, config_map } => {
                let mut watch = config_map::PolicyWatch::new(client, &config_map);
                tracing::info!(source = %watch.source(), "waiting for the policy");
                let first = watch
                    .first_good()
                    .await
                    .ok_or_else(|| format!("the watch on {} ended", watch.source()))?;
                let holder = Arc::new(PolicyHolder::new(first, watch.source(), metrics));
                let updates = watch.run(holder.clone()).boxed();
                Ok(Loaded { holder, updates })
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testdoc {
    //! Policy documents for the sources' tests, compiled from CR YAML as users write it.
    use xmppfed_api::admission::Admission;
    use xmppfed_api::validate::{Source, validate_sources};
    use xmppfed_policy::PolicyDocument;

    /// A sealed document serving `example.com` with the given partner domains.
    pub fn document(partners: &[&str]) -> PolicyDocument {
        let mut yaml = String::from(
            "apiVersion: xmppfed.io/v1alpha1\nkind: XmppFederation\nmetadata: {name: test, namespace: t}\nspec:\n  domains: [example.com]\n  edge: {hostname: xmpp.example.com}\n  gateway:\n    internalServers: [{host: internal.example.com}]\n  tls: {secretName: edge-tls}\n",
        );
        for (i, d) in partners.iter().enumerate() {
            yaml.push_str(&format!(
                "---\napiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {{name: p{i}, namespace: t}}\nspec: {{domain: {d}}}\n"
            ));
        }
        let report = validate_sources(
            &[Source {
                path: "test.yaml".into(),
                text: yaml,
            }],
            &Admission::new(),
        );
        assert!(!report.has_errors(), "{:#?}", report.problems);
        let compiled = xmppfed_api::compile::compile(
            &report.objects.federations[0],
            &report.objects.partners,
            &report.objects.policies,
        )
        .expect("compiles");
        compiled.document
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(partners: &[&str]) -> CompiledPolicy {
        CompiledPolicy::new(testdoc::document(partners)).expect("valid")
    }

    #[test]
    fn a_refused_document_keeps_the_last_good_one_and_says_why() {
        let metrics = PolicyMetrics::default();
        let holder = PolicyHolder::new(compiled(&["a.example"]), "test", metrics.clone());
        let good = holder.current().version().to_string();
        assert!(!holder.offer(Err("broken".into())));
        assert_eq!(holder.current().version(), good);
        assert_eq!(holder.status().last_error.as_deref(), Some("broken"));
        assert_eq!(metrics.reload_failures.get(), 1);

        assert!(holder.offer(Ok(compiled(&["b.example"]))));
        assert_ne!(holder.current().version(), good);
        assert_eq!(holder.status().last_error, None);
        let old = VersionLabels { version: good };
        assert_eq!(metrics.version.get_or_create(&old).get(), 0);
    }

    #[test]
    fn the_same_version_again_is_not_a_swap() {
        let holder = PolicyHolder::new(compiled(&["a.example"]), "t", PolicyMetrics::default());
        let rx = holder.subscribe();
        assert!(!holder.offer(Ok(compiled(&["a.example"]))));
        assert!(!rx.has_changed().expect("sender alive"));
    }
}
