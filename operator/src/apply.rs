//! The API side of the pipeline: server-side apply of the built objects with the operator's
//! one field manager, creation of the generated dialback Secret, and deletion of the objects it
//! made earlier but no longer wants (found by label).

use crate::build::{Desired, Object};
use crate::labels::{self, MANAGER};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, Error as KubeError};
use std::collections::BTreeSet;
use thiserror::Error;

/// A failed API call, with what it was about.
#[derive(Debug, Error)]
#[error("{action} {kind} {name}: {source}")]
pub struct ApiError {
    pub action: &'static str,
    pub kind: String,
    pub name: String,
    #[source]
    pub source: KubeError,
}

impl ApiError {
    pub fn new(action: &'static str, kind: &str, name: &str, source: KubeError) -> Self {
        Self {
            action,
            kind: kind.into(),
            name: name.into(),
            source,
        }
    }

    /// CamelCase reason for metrics and events, from the API server's answer.
    pub fn reason(&self) -> &'static str {
        match &self.source {
            KubeError::Api(s) => match s.code {
                401 | 403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                422 => "Invalid",
                429 => "TooManyRequests",
                500..=599 => "ServerError",
                _ => "ApiError",
            },
            _ => "ConnectionFailed",
        }
    }

    pub fn is_not_found(&self) -> bool {
        is_status(&self.source, 404)
    }
}

pub fn is_status(e: &KubeError, code: u16) -> bool {
    matches!(e, KubeError::Api(s) if s.code == code)
}

/// The API resource of `apiVersion` + `kind` (plural by kube's rules: `networkpolicies`,
/// `dnsendpoints`, …).
pub fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn dynamic_api(
    client: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &api_resource(api_version, kind))
}

/// Server-side applies every object in order (forcing: the operator owns these fields) and
/// returns the API server's answers, which carry the objects' status.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    desired: &Desired,
) -> Result<Vec<DynamicObject>, ApiError> {
    let params = PatchParams::apply(MANAGER).force();
    let mut applied = Vec::with_capacity(desired.objects.len());
    for o in &desired.objects {
        let api = dynamic_api(client, namespace, &o.api_version, &o.kind);
        let answer = api
            .patch(&o.name, &params, &Patch::Apply(&o.value))
            .await
            .map_err(|e| ApiError::new("apply", &o.kind, &o.name, e))?;
        applied.push(answer);
    }
    Ok(applied)
}

/// Whether the object exists.
pub async fn exists(
    client: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Result<bool, ApiError> {
    dynamic_api(client, namespace, api_version, kind)
        .get_metadata_opt(name)
        .await
        .map(|o| o.is_some())
        .map_err(|e| ApiError::new("get", kind, name, e))
}

/// Creates `secret` unless it exists; never updates it (a generated secret is not rotated
/// silently). Returns whether it was created.
pub async fn create_once(
    client: &Client,
    namespace: &str,
    secret: &Object,
) -> Result<bool, ApiError> {
    if exists(
        client,
        namespace,
        &secret.api_version,
        &secret.kind,
        &secret.name,
    )
    .await?
    {
        return Ok(false);
    }
    create(client, namespace, secret).await
}

/// Creates `secret`; one that appeared meanwhile (409) is kept. Returns whether it was created.
pub async fn create(client: &Client, namespace: &str, secret: &Object) -> Result<bool, ApiError> {
    let api = dynamic_api(client, namespace, &secret.api_version, &secret.kind);
    let object: DynamicObject = serde_json::from_value(secret.value.clone()).map_err(|e| {
        ApiError::new(
            "create",
            &secret.kind,
            &secret.name,
            KubeError::SerdeError(e),
        )
    })?;
    match api
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &object,
        )
        .await
    {
        Ok(_) => Ok(true),
        // Another reconcile (or replica) made it first: that one is the secret.
        Err(e) if is_status(&e, 409) => Ok(false),
        Err(e) => Err(ApiError::new("create", &secret.kind, &secret.name, e)),
    }
}

/// Deletes objects of `kinds` labelled as made for `instance` that `desired` no longer holds.
/// Returns `kind/name` of each deleted object.
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    instance: &str,
    kinds: &[(&str, &str)],
    desired: &Desired,
) -> Result<Vec<String>, ApiError> {
    let wanted: BTreeSet<(&str, &str)> = desired
        .objects
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str()))
        .collect();
    let selector = labels::owned_by_selector(instance);
    let mut deleted = Vec::new();
    for (api_version, kind) in kinds {
        let api = dynamic_api(client, namespace, api_version, kind);
        let list = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ApiError::new("list", kind, &selector, e))?;
        for item in list.items {
            let Some(name) = item.metadata.name else {
                continue;
            };
            if wanted.contains(&(*kind, name.as_str())) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(format!("{kind}/{name}")),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(ApiError::new("delete", kind, &name, e)),
            }
        }
    }
    Ok(deleted)
}
