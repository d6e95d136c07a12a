//! An allocation block: a power-of-two slice of a pool (a /26 by default), stored as one JSON document.
//!
//! Every change to the addresses of a block is a change to this one document, written back with
//! compare-and-swap, so two hosts (or two plugin processes) can never hand out the same address: the loser's
//! write fails and it re-reads. Everything in this file is pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::addr::{net_size, nth_addr, offset_of};
use crate::ipam::model::{EncodeError, encode_json, fixture};

/// Attribute keys Calico records with an allocation.
pub const ATTR_NODE: &str = "node";
pub const ATTR_POD: &str = "pod";
pub const ATTR_NAMESPACE: &str = "namespace";
pub const ATTR_TIMESTAMP: &str = "timestamp";
pub const ATTR_TYPE: &str = "type";

/// Who an allocation belongs to: the handle (one per container attachment or tunnel) and free-form
/// attributes such as the pod, namespace and node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
    /// Set while a released address cools down before it returns to the free list (RFC 3339).
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

/// The stored form of a block (`/calico/ipam/v2/assignment/ipv4/block/<cidr with - for />`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub cidr: IpNet,
    /// `host:<node>` for a host-affine block; `None` once the host released it while addresses remained.
    pub affinity: Option<String>,
    #[serde(
        rename = "affinity_claim_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub affinity_claim_time: Option<String>,
    /// One slot per address (ordinal): `None` is free, otherwise an index into `attributes`.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals in the order they will be handed out.
    pub unallocated: Vec<usize>,
    pub attributes: Vec<AllocationAttribute>,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    #[serde(rename = "sequenceNumberForAllocation", default)]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
}

/// A block operation that cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("{ip} is not in block {cidr}")]
    NotInBlock { ip: IpAddr, cidr: IpNet },
    #[error("{ip} is already assigned")]
    InUse { ip: IpAddr },
    #[error("{ip} is cooling down after release and cannot be assigned yet")]
    CoolingDown { ip: IpAddr },
    #[error("block {cidr} is damaged: {reason}")]
    Corrupt { cidr: IpNet, reason: String },
}

impl Block {
    /// A new empty block; addresses are handed out from the block's first address upwards.
    pub fn new(cidr: IpNet, affinity: Option<String>, claim_time: Option<String>) -> Block {
        let size = block_len(cidr);
        Block {
            cidr,
            affinity,
            affinity_claim_time: claim_time,
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
        }
    }

    /// Parse a stored block, checking the invariants every other operation relies on.
    pub fn from_json(bytes: &[u8]) -> Result<Block, String> {
        let block: Block = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        block.check().map_err(|e| e.to_string())?;
        Ok(block)
    }

    /// The stored form. An error (never an empty value) if it cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode_json("block", self)
    }

    /// [`Block::encode`] for fixtures that build stored data by hand; panics where `encode` errs.
    pub fn to_json(&self) -> Vec<u8> {
        fixture(self.encode())
    }

    /// The node this block is affine to, if it is a host block.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    pub fn size(&self) -> usize {
        self.allocations.len()
    }

    /// Addresses neither allocated nor cooling down.
    pub fn free_count(&self) -> usize {
        self.unallocated.len()
    }

    /// Addresses held by a handle (cooling-down addresses excluded).
    pub fn in_use_count(&self) -> usize {
        self.allocations
            .iter()
            .flatten()
            .filter(|&&a| {
                self.attributes
                    .get(a)
                    .is_some_and(|at| at.released_at.is_none())
            })
            .count()
    }

    /// No address is allocated or cooling down.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    pub fn ordinal_of(&self, ip: IpAddr) -> Option<usize> {
        offset_of(self.cidr, ip).and_then(|o| usize::try_from(o).ok())
    }

    pub fn ip_of(&self, ordinal: usize) -> Option<IpAddr> {
        nth_addr(self.cidr, ordinal as u128)
    }

    /// The attribute of an address, if it is allocated.
    pub fn attribute_of(&self, ip: IpAddr) -> Option<&AllocationAttribute> {
        let ord = self.ordinal_of(ip)?;
        let idx = (*self.allocations.get(ord)?)?;
        self.attributes.get(idx)
    }

    /// Sequence number recorded when `ip` was allocated.
    pub fn sequence_of(&self, ip: IpAddr) -> Option<u64> {
        let ord = self.ordinal_of(ip)?;
        self.sequence_number_for_allocation
            .get(&ord.to_string())
            .copied()
    }

    /// Allocated addresses with their attributes, in address order (cooling-down ones included, with
    /// `released_at` set).
    pub fn allocated(&self) -> impl Iterator<Item = (IpAddr, &AllocationAttribute)> + '_ {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(move |(ord, slot)| {
                let attr = self.attributes.get((*slot)?)?;
                Some((self.ip_of(ord)?, attr))
            })
    }

    /// Addresses held by `handle`.
    pub fn ips_of_handle(&self, handle: &str) -> Vec<IpAddr> {
        self.allocated()
            .filter(|(_, a)| a.released_at.is_none() && a.handle_id.as_deref() == Some(handle))
            .map(|(ip, _)| ip)
            .collect()
    }

    /// Take up to `count` free addresses, in free-list order, skipping those `reserved` refuses.
    pub fn allocate(
        &mut self,
        count: usize,
        attr: &AllocationAttribute,
        reserved: &dyn Fn(IpAddr) -> bool,
    ) -> Vec<IpAddr> {
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(self.unallocated.len());
        let mut attr_index = None;
        let free = std::mem::take(&mut self.unallocated);
        for &ord in &free {
            let Some(ip) = self.ip_of(ord) else { continue };
            if taken.len() == count || reserved(ip) {
                kept.push(ord);
                continue;
            }
            let idx = *attr_index.get_or_insert_with(|| self.attribute_index(attr));
            self.allocations[ord] = Some(idx);
            self.sequence_number_for_allocation
                .insert(ord.to_string(), self.sequence_number);
            self.sequence_number += 1;
            taken.push(ip);
        }
        self.unallocated = kept;
        taken
    }

    /// Take one specific address.
    pub fn assign(&mut self, ip: IpAddr, attr: &AllocationAttribute) -> Result<(), BlockError> {
        let ord = self.ordinal_of(ip).ok_or(BlockError::NotInBlock {
            ip,
            cidr: self.cidr,
        })?;
        if let Some(idx) = self.allocations[ord] {
            let cooling = self
                .attributes
                .get(idx)
                .is_some_and(|a| a.released_at.is_some());
            return Err(if cooling {
                BlockError::CoolingDown { ip }
            } else {
                BlockError::InUse { ip }
            });
        }
        let idx = self.attribute_index(attr);
        self.allocations[ord] = Some(idx);
        self.unallocated.retain(|&o| o != ord);
        self.sequence_number_for_allocation
            .insert(ord.to_string(), self.sequence_number);
        self.sequence_number += 1;
        Ok(())
    }

    /// Release addresses. With a cooldown the address keeps its slot, marked `releasedAt`, until
    /// [`Block::expire_cooldowns`] returns it to the tail of the free list; without one it goes there at once.
    /// Returns, per handle, how many addresses were released, so handle counts can follow.
    /// Releasing a free or cooling address is not an error (it is simply not counted).
    pub fn release(&mut self, ips: &[IpAddr], released_at: Option<&str>) -> BTreeMap<String, u64> {
        let mut per_handle: BTreeMap<String, u64> = BTreeMap::new();
        for &ip in ips {
            let Some(ord) = self.ordinal_of(ip) else {
                continue;
            };
            let Some(idx) = self.allocations[ord] else {
                continue;
            };
            let Some(attr) = self.attributes.get(idx).cloned() else {
                continue;
            };
            if attr.released_at.is_some() {
                continue;
            }
            if let Some(h) = &attr.handle_id {
                *per_handle.entry(h.clone()).or_default() += 1;
            }
            self.sequence_number_for_allocation.remove(&ord.to_string());
            match released_at {
                Some(at) => {
                    let cooling = AllocationAttribute {
                        handle_id: None,
                        secondary: attr.secondary.clone(),
                        released_at: Some(at.to_string()),
                    };
                    self.allocations[ord] = Some(self.attribute_index(&cooling));
                }
                None => {
                    self.allocations[ord] = None;
                    self.unallocated.push(ord);
                }
            }
        }
        self.compact_attributes();
        per_handle
    }

    /// Return cooled-down addresses (released at or before `cutoff`, RFC 3339 strings compare in time
    /// order when they share a format) to the tail of the free list, oldest first. Returns how many.
    pub fn expire_cooldowns(&mut self, is_expired: &dyn Fn(&str) -> bool) -> usize {
        let mut expired: Vec<(String, usize)> = Vec::new();
        for (ord, slot) in self.allocations.iter().enumerate() {
            if let Some(at) = slot
                .and_then(|idx| self.attributes.get(idx))
                .and_then(|a| a.released_at.as_deref())
                && is_expired(at)
            {
                expired.push((at.to_string(), ord));
            }
        }
        expired.sort();
        for (_, ord) in &expired {
            self.allocations[*ord] = None;
            self.unallocated.push(*ord);
        }
        if !expired.is_empty() {
            self.compact_attributes();
        }
        expired.len()
    }

    /// Index of an attribute equal to `attr`, adding it if there is none: addresses of one handle share one.
    fn attribute_index(&mut self, attr: &AllocationAttribute) -> usize {
        if let Some(i) = self.attributes.iter().position(|a| a == attr) {
            return i;
        }
        self.attributes.push(attr.clone());
        self.attributes.len() - 1
    }

    /// Drop attributes no slot refers to and renumber the slots.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for idx in self.allocations.iter().flatten() {
            if let Some(u) = used.get_mut(*idx) {
                *u = true;
            }
        }
        if used.iter().all(|&u| u) {
            return;
        }
        let mut remap = vec![usize::MAX; self.attributes.len()];
        let mut kept = Vec::new();
        for (i, attr) in self.attributes.drain(..).enumerate() {
            if used[i] {
                remap[i] = kept.len();
                kept.push(attr);
            }
        }
        self.attributes = kept;
        for slot in self.allocations.iter_mut().flatten() {
            *slot = remap[*slot];
        }
    }

    /// The invariants: one slot per address, every free ordinal listed once and empty, every slot's
    /// attribute present.
    pub fn check(&self) -> Result<(), BlockError> {
        check_slots(
            self.cidr,
            &self.allocations,
            &self.unallocated,
            self.attributes.len(),
        )
    }
}

/// The invariants of [`Block::check`], over the parts of a block they concern.
fn check_slots(
    cidr: IpNet,
    allocations: &[Option<usize>],
    unallocated: &[usize],
    attributes: usize,
) -> Result<(), BlockError> {
    let corrupt = |reason: String| BlockError::Corrupt { cidr, reason };
    if allocations.len() != block_len(cidr) {
        return Err(corrupt(format!(
            "{} allocation slots for {} addresses",
            allocations.len(),
            block_len(cidr)
        )));
    }
    let mut seen = vec![false; allocations.len()];
    for &ord in unallocated {
        match seen.get_mut(ord) {
            None => return Err(corrupt(format!("free ordinal {ord} out of range"))),
            Some(true) => return Err(corrupt(format!("free ordinal {ord} listed twice"))),
            Some(s) => *s = true,
        }
        if allocations[ord].is_some() {
            return Err(corrupt(format!("ordinal {ord} is both free and allocated")));
        }
    }
    for (ord, slot) in allocations.iter().enumerate() {
        match slot {
            Some(idx) if *idx >= attributes => {
                return Err(corrupt(format!(
                    "ordinal {ord} refers to missing attribute {idx}"
                )));
            }
            None if !seen[ord] => {
                return Err(corrupt(format!(
                    "ordinal {ord} is neither free nor allocated"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What routing needs of a stored block: its affinity and the node recorded with each allocated
/// address. Every calico-node decodes every block write in the cluster (one per pod added anywhere),
/// so this reads only those fields, skipping handles, the other attributes and sequence numbers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BlockRouting {
    pub cidr: IpNet,
    affinity: Option<String>,
    allocations: Vec<Option<usize>>,
    unallocated: Vec<usize>,
    attributes: Vec<RoutingAttribute>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
struct RoutingAttribute {
    #[serde(default)]
    secondary: RoutingSecondary,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
struct RoutingSecondary {
    #[serde(default)]
    node: Option<String>,
}

impl BlockRouting {
    /// Parse a stored block's routing fields, checking the same slot invariants as
    /// [`Block::from_json`].
    pub fn from_json(bytes: &[u8]) -> Result<BlockRouting, String> {
        let block: BlockRouting = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        check_slots(
            block.cidr,
            &block.allocations,
            &block.unallocated,
            block.attributes.len(),
        )
        .map_err(|e| e.to_string())?;
        Ok(block)
    }

    /// The node this block is affine to, if it is a host block (as [`Block::host`]).
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    /// Allocated addresses with the node their allocation names, if any (as [`Block::allocated`]).
    pub fn allocated_nodes(&self) -> impl Iterator<Item = (IpAddr, Option<&str>)> + '_ {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(move |(ord, slot)| {
                let attr = self.attributes.get((*slot)?)?;
                let ip = nth_addr(self.cidr, ord as u128)?;
                Some((ip, attr.secondary.node.as_deref()))
            })
    }

    /// What routing needs of this block (see [`BlockInfo`]).
    pub fn info(&self) -> BlockInfo {
        let affinity = self.host().map(str::to_string);
        let borrowed = self
            .allocated_nodes()
            .filter_map(|(ip, user)| {
                let user = user?;
                (Some(user) != affinity.as_deref()).then(|| (ip, user.to_string()))
            })
            .collect();
        BlockInfo {
            cidr: self.cidr,
            affinity,
            borrowed,
        }
    }
}

/// An IPAM block as routing sees it, for Felix's routes and BGP's originations alike: who it is
/// affine to, and the addresses in it that another node borrowed (each needs its own route to that
/// node, and that node announces it). Other allocations change no route, so a pod added or removed
/// in a block changes nothing here and wakes no calculation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockInfo {
    pub cidr: IpNet,
    pub affinity: Option<String>,
    /// Allocated addresses whose allocation names a node other than the block's owner, with that node.
    pub borrowed: Vec<(IpAddr, String)>,
}

/// Number of addresses in a block, capped so a misconfigured huge block cannot exhaust memory.
fn block_len(cidr: IpNet) -> usize {
    usize::try_from(net_size(cidr).min(1 << 20)).unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(handle: &str) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: Some(handle.into()),
            secondary: BTreeMap::from([(ATTR_NODE.into(), "n1".into())]),
            released_at: None,
        }
    }

    fn block() -> Block {
        Block::new(
            "198.18.4.0/29".parse().unwrap(),
            Some("host:n1".into()),
            None,
        )
    }

    #[test]
    fn first_address_goes_first_and_addresses_are_never_handed_out_twice() {
        let mut b = block();
        let a = b.allocate(3, &attr("h1"), &|_| false);
        let c = b.allocate(10, &attr("h2"), &|_| false);
        let all: Vec<String> = a.iter().chain(&c).map(|ip| ip.to_string()).collect();
        assert_eq!(all[0], "198.18.4.0");
        assert_eq!(all.len(), 8, "the /29 has 8 addresses");
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 8);
        assert_eq!(b.free_count(), 0);
        assert_eq!(b.in_use_count(), 8);
        assert_eq!(b.attributes.len(), 2, "one shared attribute per handle");
        b.check().unwrap();
    }

    #[test]
    fn reserved_addresses_are_skipped_and_stay_free() {
        let mut b = block();
        let reserved: IpAddr = "198.18.4.0".parse().unwrap();
        let got = b.allocate(1, &attr("h"), &|ip| ip == reserved);
        assert_eq!(got, vec!["198.18.4.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(b.unallocated[0], 0, "the reserved address keeps its place");
        b.check().unwrap();
    }

    #[test]
    fn released_addresses_go_to_the_tail_so_reuse_is_fifo() {
        let mut b = block();
        let got = b.allocate(2, &attr("h1"), &|_| false);
        let counts = b.release(&got[..1], None);
        assert_eq!(counts.get("h1"), Some(&1));
        assert_eq!(*b.unallocated.last().unwrap(), 0);
        // Releasing again is not an error and counts nothing.
        assert!(b.release(&got[..1], None).is_empty());
        b.check().unwrap();
        assert_eq!(b.attributes.len(), 1);
        b.release(&got[1..], None);
        assert!(b.is_empty());
        assert!(b.attributes.is_empty(), "unused attributes are dropped");
        b.check().unwrap();
    }

    #[test]
    fn cooldown_holds_an_address_until_it_expires() {
        let mut b = block();
        let got = b.allocate(1, &attr("h1"), &|_| false);
        b.release(&got, Some("2026-01-01T00:00:00Z"));
        assert!(!b.is_empty());
        assert_eq!(b.in_use_count(), 0);
        assert!(b.ips_of_handle("h1").is_empty());
        assert_eq!(
            b.assign(got[0], &attr("h2")),
            Err(BlockError::CoolingDown { ip: got[0] })
        );
        assert_eq!(b.expire_cooldowns(&|at| at < "2025-12-31"), 0);
        assert_eq!(b.expire_cooldowns(&|at| at <= "2026-01-01T00:00:00Z"), 1);
        assert!(b.is_empty());
        b.check().unwrap();
    }

    #[test]
    fn assign_takes_one_specific_address() {
        let mut b = block();
        let ip: IpAddr = "198.18.4.5".parse().unwrap();
        b.assign(ip, &attr("h")).unwrap();
        assert_eq!(b.assign(ip, &attr("x")), Err(BlockError::InUse { ip }));
        assert!(!b.unallocated.contains(&5));
        let outside: IpAddr = "198.18.5.1".parse().unwrap();
        assert!(matches!(
            b.assign(outside, &attr("h")),
            Err(BlockError::NotInBlock { .. })
        ));
        assert_eq!(b.ips_of_handle("h"), vec![ip]);
        assert_eq!(b.sequence_of(ip), Some(0));
        b.check().unwrap();
    }

    #[test]
    fn stored_form_round_trips_and_damage_is_detected() {
        let mut b = block();
        b.allocate(2, &attr("h1"), &|_| false);
        let parsed = Block::from_json(&b.to_json()).unwrap();
        assert_eq!(parsed, b);
        let mut v: serde_json::Value = serde_json::from_slice(&b.to_json()).unwrap();
        v["unallocated"] = serde_json::json!([0, 2, 3, 4, 5, 6, 7]);
        let err = Block::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.contains("both free and allocated"), "{err}");
    }

    #[test]
    fn stored_form_uses_calicos_field_names() {
        let b = block();
        let v: serde_json::Value = serde_json::from_slice(&b.to_json()).unwrap();
        for field in [
            "cidr",
            "affinity",
            "allocations",
            "unallocated",
            "attributes",
            "sequenceNumber",
            "sequenceNumberForAllocation",
            "deleted",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["affinity"], "host:n1");
        assert_eq!(v["cidr"], "198.18.4.0/29");
    }

    #[test]
    fn ipv6_blocks_work_the_same_way() {
        let mut b = Block::new("fd00:198::/122".parse().unwrap(), None, None);
        let got = b.allocate(2, &attr("h"), &|_| false);
        assert_eq!(got[0].to_string(), "fd00:198::");
        assert_eq!(got[1].to_string(), "fd00:198::1");
        assert_eq!(b.size(), 64);
    }

    #[test]
    fn the_routing_view_reads_what_the_full_block_holds_and_rejects_what_it_rejects() {
        let mut b = block();
        b.allocate(2, &attr("h1"), &|_| false);
        let mut borrowed = attr("h2");
        borrowed.secondary.insert(ATTR_NODE.into(), "n2".into());
        borrowed.secondary.insert(ATTR_POD.into(), "p".into());
        b.allocate(1, &borrowed, &|_| false);
        let mut anonymous = attr("h3");
        anonymous.secondary.clear();
        b.allocate(1, &anonymous, &|_| false);
        let json = b.to_json();
        let view = BlockRouting::from_json(&json).unwrap();
        assert_eq!(view.cidr, b.cidr);
        assert_eq!(view.host(), b.host());
        let full: Vec<(IpAddr, Option<&str>)> = b
            .allocated()
            .map(|(ip, a)| (ip, a.secondary.get(ATTR_NODE).map(String::as_str)))
            .collect();
        let lean: Vec<(IpAddr, Option<&str>)> = view.allocated_nodes().collect();
        assert_eq!(lean, full);
        assert_eq!(lean.len(), 4);

        // A damaged block is refused by both, for the same reason.
        let mut damaged = b.clone();
        damaged.allocations.pop();
        let json = serde_json::to_vec(&damaged).unwrap();
        let full = Block::from_json(&json).unwrap_err();
        assert_eq!(BlockRouting::from_json(&json).unwrap_err(), full);
        let mut damaged = b.clone();
        damaged.unallocated.push(0);
        let json = serde_json::to_vec(&damaged).unwrap();
        let full = Block::from_json(&json).unwrap_err();
        assert_eq!(BlockRouting::from_json(&json).unwrap_err(), full);
        assert!(BlockRouting::from_json(b"{}").is_err());
    }
}
