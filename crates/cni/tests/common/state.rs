//! The datastore as the plugin's libraries read it: blocks, handles, endpoints and what the IPAM check
//! finds, for tests that assert nothing is left behind.

use std::net::IpAddr;

use calico_api::{Kind, Resource, Spec};
use calico_datastore::client::Client;
use calico_datastore::config::{DatastoreConfig, OpenMode};
use calico_ipam::check::{CheckInput, HandleRecord, InUse, check, workload_addresses};
use calico_ipam::{Block, Ipam};

use super::{Datastore, calicoctl};

/// The datastore as the plugin's libraries read it.
pub struct StoreState {
    pub blocks: Vec<Block>,
    pub handles: Vec<String>,
    pub weps: Vec<Resource>,
    /// Problems `calico_ipam::check` finds (what `calicoctl ipam check` counts).
    pub problems: usize,
    pub summary: String,
}

impl StoreState {
    pub fn read(ds: &Datastore) -> StoreState {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            let env = ds.calicoctl_env().into_iter().collect();
            let store = DatastoreConfig::from_env(env)
                .expect("datastore config")
                .connect(OpenMode::MustExist)
                .await
                .expect("open the datastore");
            let ipam = Ipam::new(store.clone());
            let blocks: Vec<Block> = ipam
                .blocks()
                .await
                .expect("blocks")
                .into_iter()
                .map(|b| b.block)
                .collect();
            let handles: Vec<String> = ipam
                .handles()
                .await
                .expect("handles")
                .into_iter()
                .map(|h| h.handle_id)
                .collect();
            let affinities = ipam.affinities(None).await.expect("affinities");
            let pools = ipam.pools().await.expect("pools");
            let (weps, _) = Client::new(store)
                .list(Kind::WorkloadEndpoint, None)
                .await
                .expect("endpoints");
            let in_use: Vec<InUse> = weps
                .iter()
                .flat_map(|w| workload_addresses(w).expect("endpoint addresses"))
                .collect();
            let records: Vec<HandleRecord> = handles
                .iter()
                .map(|id| HandleRecord {
                    id: id.clone(),
                    revision: 0,
                })
                .collect();
            let result = check(CheckInput {
                blocks: &blocks,
                handles: &records,
                affinities: &affinities,
                pools: &pools,
                in_use: &in_use,
            });
            StoreState {
                problems: result.problem_count(),
                summary: format!("{result:?}"),
                blocks,
                handles,
                weps,
            }
        })
    }

    /// Addresses allocated to `handle` (read from the blocks, not the handle record).
    pub fn handle_ips(&self, handle: &str) -> Vec<IpAddr> {
        self.blocks
            .iter()
            .flat_map(|b| b.ips_of_handle(handle))
            .collect()
    }

    pub fn has_endpoint_of(&self, container_id: &str) -> bool {
        self.weps.iter().any(|w| {
            matches!(&w.spec, Spec::WorkloadEndpoint(s) if s.container_id.as_deref() == Some(container_id))
        })
    }

    pub fn assert_nothing_allocated(&self) {
        let names: Vec<&str> = self.weps.iter().map(Resource::name).collect();
        assert!(names.is_empty(), "endpoints left: {names:?}");
        assert!(
            self.handles.is_empty(),
            "IPAM handles left: {:?}",
            self.handles
        );
        let busy: Vec<String> = self
            .blocks
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| format!("{} ({} in use)", b.cidr, b.in_use_count()))
            .collect();
        assert!(busy.is_empty(), "blocks with allocations left: {busy:?}");
        assert_eq!(self.problems, 0, "IPAM check (library): {}", self.summary);
    }

    /// The block holding `ip`.
    pub fn block_of(&self, ip: IpAddr) -> Option<&Block> {
        self.blocks.iter().find(|b| b.cidr.contains(&ip))
    }
}

/// `calicoctl ipam check` runs and finds exactly `expected` problems.
pub fn assert_ipam_check_problems(ds: &Datastore, expected: usize) {
    let out = calicoctl(ds, &["ipam", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "calicoctl ipam check failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("Check complete; found {expected} problems.")),
        "calicoctl ipam check:\n{stdout}"
    );
}
