//! Clean-ups an operator starts: releasing what a check report found leaked, and removing a node's
//! endpoints, addresses and block affinities when the node is deleted. calicoctl calls these; the
//! release itself is the allocator's, so there is one way an address goes back to the free list.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::{Kind, Spec};
use calico_datastore::StoreError;
use calico_datastore::client::ClientError;
use calico_model::ipam::block::ATTR_NODE;
use calico_model::ipam::model::handle_key;
use ipnet::IpNet;

use crate::IpamError;
use crate::allocator::{Ipam, client_err, is_race};
use crate::check::{Allocation, HandleInfo};

/// What happened to one handle a report listed as leaked.
#[derive(Debug)]
pub enum HandleDeletion {
    Deleted,
    /// The handle is gone or changed since the report (or the report's revision is unreadable).
    Skipped,
    Failed(StoreError),
}

/// What deleting a node released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRelease {
    /// `namespace/name` of each workload endpoint deleted.
    pub endpoints: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub affinities: Vec<IpNet>,
}

impl Ipam {
    /// Release the leaked addresses of a check report that are still held by the same handle with the
    /// same sequence number: an address released and handed out again since the report is left alone.
    /// Each block is changed with one compare-and-swap write together with its handles. Returns how many
    /// addresses were released.
    pub async fn release_leaked(&self, leaked: &[Allocation]) -> Result<usize, IpamError> {
        let blocks: Vec<IpNet> = self
            .blocks()
            .await?
            .into_iter()
            .map(|b| b.block.cidr)
            .collect();
        let mut by_block: BTreeMap<IpNet, Vec<(IpAddr, &Allocation)>> = BTreeMap::new();
        for a in leaked {
            // A report entry that is not an address, or not in any block now, has nothing to release.
            let Ok(ip) = a.ip.parse::<IpAddr>() else {
                continue;
            };
            if let Some(cidr) = blocks.iter().find(|c| c.contains(&ip)) {
                by_block.entry(*cidr).or_default().push((ip, a));
            }
        }
        let cooldown = self.config().await?.ip_cooldown_seconds;
        let mut released = 0;
        for (cidr, wanted) in by_block {
            let pick = |block: &crate::Block| -> Vec<IpAddr> {
                wanted
                    .iter()
                    .filter(|(ip, a)| {
                        block.attribute_of(*ip).is_some_and(|attr| {
                            attr.released_at.is_none()
                                && attr.handle_id == a.handle
                                && a.sequence_number
                                    .is_none_or(|seq| block.sequence_of(*ip) == Some(seq))
                        })
                    })
                    .map(|(ip, _)| *ip)
                    .collect()
            };
            released += self.release_in_block(cidr, cooldown, &pick).await?.len();
        }
        Ok(released)
    }

    /// Delete handles a report listed as leaked, each only if it has not changed since the report (its
    /// revision still matches). One outcome per handle, in order.
    pub async fn delete_leaked_handles(&self, handles: &[HandleInfo]) -> Vec<HandleDeletion> {
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let Ok(revision) = h.revision.parse::<i64>() else {
                out.push(HandleDeletion::Skipped);
                continue;
            };
            out.push(
                match self.store.delete(&handle_key(&h.id), Some(revision)).await {
                    Ok(_) => HandleDeletion::Deleted,
                    Err(e) if is_race(&e) => HandleDeletion::Skipped,
                    Err(e) => HandleDeletion::Failed(e),
                },
            );
        }
        out
    }

    /// What a deleted node leaves behind goes with it, as Calico's node deletion does: its workload
    /// endpoints, the addresses allocated to it, and its block affinities (blocks that still hold
    /// addresses keep them), so other hosts stop routing to it and its addresses can be reused.
    pub async fn release_node(&self, node: &str) -> Result<NodeRelease, IpamError> {
        let mut out = NodeRelease::default();
        let (endpoints, _) = self
            .client
            .list(Kind::WorkloadEndpoint, None)
            .await
            .map_err(client_err)?;
        for wep in endpoints {
            let on_node =
                matches!(&wep.spec, Spec::WorkloadEndpoint(s) if s.node.as_deref() == Some(node));
            if !on_node {
                continue;
            }
            match self
                .client
                .delete(Kind::WorkloadEndpoint, wep.namespace(), wep.name(), None)
                .await
            {
                Ok(_) => out.endpoints.push(format!(
                    "{}/{}",
                    wep.namespace().unwrap_or("default"),
                    wep.name()
                )),
                // Deleted by someone else meanwhile: the goal is met.
                Err(ClientError::NotFound { .. }) => {}
                Err(e) => return Err(client_err(e)),
            }
        }
        let mut held = Vec::new();
        for stored in self.blocks().await? {
            for (ip, attr) in stored.block.allocated() {
                if attr.secondary.get(ATTR_NODE).map(String::as_str) == Some(node) {
                    held.push(ip);
                }
            }
        }
        if !held.is_empty() {
            out.addresses = self.release_ips(&held).await?;
        }
        out.affinities = self.release_host_affinities(node).await?;
        Ok(out)
    }
}
