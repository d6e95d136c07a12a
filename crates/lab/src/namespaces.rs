//! Kubernetes namespaces in the lab, written as Calico's kube-controllers sync them: a namespace is the
//! profile `kns.<name>` (allow all, its labels handed to its pods as `pcns.<key>`), which every pod of
//! the namespace lists. `up` makes `default`; `calico-lab add-namespace` makes others.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use calico_api::spec::k8s_namespace::KubernetesNamespaceSpec;
use calico_api::{Kind, ObjectMeta, Resource, Spec};
use calico_datastore::client::ClientError;

use crate::datastore;
use crate::state::DatastoreState;

/// Writes (or updates) namespace `name` with `labels`.
pub fn apply(ds: &DatastoreState, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    let namespace = Resource::new(
        ObjectMeta {
            name: name.to_string(),
            labels: (!labels.is_empty()).then(|| labels.clone()),
            ..ObjectMeta::default()
        },
        Spec::KubernetesNamespace(KubernetesNamespaceSpec::default()),
    );
    let profile = calico_api::k8s::to_calico(namespace)
        .map_err(|errors| anyhow::anyhow!("namespace {name:?}: {errors}"))?;
    datastore::with_client(ds, |client| async move {
        client
            .apply(profile)
            .await
            .with_context(|| format!("writing the profile of namespace {name}"))?;
        Ok(())
    })
}

/// Whether namespace `name` exists (its profile does).
pub fn exists(ds: &DatastoreState, name: &str) -> Result<bool> {
    let profile = format!("{}{name}", calico_api::k8s::PROFILE_NAME_PREFIX);
    datastore::with_client(ds, |client| async move {
        match client.get(Kind::Profile, None, &profile).await {
            Ok(_) => Ok(true),
            Err(ClientError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("reading profile {profile}")),
        }
    })
}
