//! `up --route-reflectors N`: BGP route reflection set up as Calico's documentation does it (label the
//! reflector nodes, give them a cluster ID, one BGPPeer from every node to the reflectors, then the
//! node-to-node mesh off), written through the datastore client as calicoctl would write it.

use anyhow::{Context, Result, bail};
use calico_api::documents::decode_documents;
use calico_api::{Kind, Resource, Spec};
use calico_datastore::client::{Client, ClientError};

use crate::datastore;
use crate::state::DatastoreState;

/// The label the BGPPeer's `peerSelector` picks reflectors by.
pub const LABEL: (&str, &str) = ("route-reflector", "true");
/// The cluster ID Calico's documentation gives its reflectors (any unused IPv4 address will do).
pub const CLUSTER_ID: &str = "244.0.0.1";

/// The BGPPeer of Calico's "Configure BGP route reflectors" page.
pub const BGP_PEER_YAML: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
";

/// The BGPConfiguration of Calico's "Disable the default BGP node-to-node mesh" (with this cluster's
/// default AS number).
pub const BGP_CONFIGURATION_YAML: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 64512
";

/// The cluster-wide half, written before any calico-node starts: the BGPPeer from every node to the
/// nodes labelled as reflectors, and the mesh off. So no mesh session is ever made only to be turned
/// into a reflector session (a peer changing type under a live session costs a reconnection).
pub fn configure_cluster(ds: &DatastoreState) -> Result<()> {
    datastore::with_client(ds, |client| async move {
        for yaml in [BGP_PEER_YAML, BGP_CONFIGURATION_YAML] {
            let resource = parse_one(yaml)?;
            let (kind, name) = (resource.kind(), resource.name().to_string());
            client
                .apply(resource)
                .await
                .with_context(|| format!("applying {kind} {name}"))?;
        }
        Ok(())
    })
}

/// Makes `reflectors` route reflectors (label and cluster ID). Their Nodes must exist: calico-node
/// registers them at start-up.
pub fn make_reflectors(ds: &DatastoreState, reflectors: &[String]) -> Result<()> {
    datastore::with_client(ds, |client| async move {
        for node in reflectors {
            make_reflector(&client, node).await?;
        }
        Ok(())
    })
}

fn parse_one(yaml: &str) -> Result<Resource> {
    let mut docs = decode_documents(yaml).context("parsing a built-in resource")?;
    let doc = docs.pop().context("a built-in resource is empty")?;
    doc.resource
        .map_err(|errors| anyhow::anyhow!("a built-in {} is invalid: {errors}", doc.kind))
}

/// `calicoctl label nodes <node> route-reflector=true` and `routeReflectorClusterID: 244.0.0.1`, one
/// compare-and-swap write (retried if calico-node wrote the Node in between).
async fn make_reflector(client: &Client, node: &str) -> Result<()> {
    for _attempt in 0..5 {
        let mut resource = client
            .get(Kind::Node, None, node)
            .await
            .with_context(|| format!("reading Node {node}"))?;
        let mut labels = resource.metadata.labels.clone().unwrap_or_default();
        labels.insert(LABEL.0.to_string(), LABEL.1.to_string());
        resource.metadata.labels = Some(labels);
        let Spec::Node(spec) = &mut resource.spec else {
            bail!("Node {node} holds a {} spec", resource.kind());
        };
        let Some(bgp) = spec.bgp.as_mut() else {
            bail!("Node {node} has no spec.bgp: calico-node registered no IPv4 address for it");
        };
        bgp.route_reflector_cluster_id = Some(CLUSTER_ID.to_string());
        match client.replace(resource).await {
            Ok(_) => return Ok(()),
            Err(ClientError::Conflict { .. }) => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("making Node {node} a route reflector"));
            }
        }
    }
    bail!("making Node {node} a route reflector: kept conflicting with other writers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_resources_are_valid() {
        assert_eq!(parse_one(BGP_PEER_YAML).unwrap().kind(), Kind::BGPPeer);
        assert_eq!(
            parse_one(BGP_CONFIGURATION_YAML).unwrap().kind(),
            Kind::BGPConfiguration
        );
    }
}
