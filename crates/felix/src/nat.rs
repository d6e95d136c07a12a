//! The `calico` nftables table: rendering (pure) and applying it in one `nft -f -` transaction.
//!
//! The whole table is rewritten in one transaction: `table ip calico {}` (creates it if missing, a no-op
//! otherwise), `delete table ip calico`, then the full definition. nft applies a file atomically, so
//! packets see either the old table or the new one, never a half-built one, and connections already
//! tracked keep their NAT mapping (conntrack entries outlive the rules that created them).
//!
//! NAT-outgoing runs in the `nat-POSTROUTING` base chain at priority `srcnat + 10` (110): after the
//! usual source-NAT chains at `srcnat`, so an explicit SNAT another program (or an administrator) set up
//! for the same packet wins; the first chain that NATs a connection decides its mapping.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::desired::{NFT_TABLE, NatOutgoing};

/// The nftables family of the `calico` table.
pub const NFT_FAMILY: &str = "ip";
/// Pools whose traffic is masqueraded when it leaves the pools.
pub const MASQ_POOLS_SET: &str = "masq-ipam-pools";
/// Every pool: destinations inside these are never masqueraded.
pub const ALL_POOLS_SET: &str = "all-ipam-pools";
/// The NAT-outgoing base chain.
pub const NAT_POSTROUTING_CHAIN: &str = "nat-POSTROUTING";
/// Priority of [`NAT_POSTROUTING_CHAIN`], in nft's symbolic form.
pub const NAT_POSTROUTING_PRIORITY: &str = "srcnat + 10";

/// How long one `nft` run may take before it is killed and reported as hung.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("nft not found on $PATH or in /usr/sbin, /sbin: install the nftables package")]
    NftMissing,
    #[error("run nft: {0}")]
    Spawn(String),
    #[error("nft -f - did not finish within {}s", NFT_TIMEOUT.as_secs())]
    Timeout,
    #[error("nft {what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },
}

/// A named set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    /// nft data type, e.g. `ipv4_addr`.
    pub data_type: String,
    /// `flags interval`: elements may be prefixes/ranges.
    pub interval: bool,
    /// Elements in nft syntax (`198.19.0.0/16`); none renders an empty set.
    pub elements: Vec<String>,
}

/// The hook of a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter`, `nat` or `route`.
    pub chain_type: String,
    /// `prerouting`, `input`, `forward`, `output`, `postrouting`.
    pub hook: String,
    /// nft priority expression, e.g. `srcnat + 10` or `0`.
    pub priority: String,
    /// `accept` or `drop`.
    pub policy: String,
}

/// A chain: a base chain when `base` is set, otherwise a regular chain reached by jump/goto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    /// Rules in nft syntax, in order.
    pub rules: Vec<String>,
}

/// One nftables table, rendered as a transaction that replaces it whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: String,
    pub name: String,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(family: &str, name: &str) -> Table {
        Table {
            family: family.to_string(),
            name: name.to_string(),
            sets: Vec::new(),
            chains: Vec::new(),
        }
    }

    pub fn with_set(mut self, set: Set) -> Table {
        self.sets.push(set);
        self
    }

    pub fn with_chain(mut self, chain: Chain) -> Table {
        self.chains.push(chain);
        self
    }

    /// `table F N {}` + `delete table F N` + the definition: valid input for `nft -f -` whether or not
    /// the table exists, replacing it atomically.
    pub fn render(&self) -> String {
        let (family, name) = (&self.family, &self.name);
        let mut text = format!("table {family} {name} {{}}\ndelete table {family} {name}\n");
        let _ = writeln!(text, "table {family} {name} {{");
        for set in &self.sets {
            let _ = writeln!(text, "\tset {} {{", set.name);
            let _ = writeln!(text, "\t\ttype {}", set.data_type);
            if set.interval {
                text.push_str("\t\tflags interval\n");
            }
            if !set.elements.is_empty() {
                let _ = writeln!(text, "\t\telements = {{ {} }}", set.elements.join(", "));
            }
            text.push_str("\t}\n");
        }
        for chain in &self.chains {
            let _ = writeln!(text, "\tchain {} {{", chain.name);
            if let Some(base) = &chain.base {
                let _ = writeln!(
                    text,
                    "\t\ttype {} hook {} priority {}; policy {};",
                    base.chain_type, base.hook, base.priority, base.policy
                );
            }
            for rule in &chain.rules {
                let _ = writeln!(text, "\t\t{rule}");
            }
            text.push_str("\t}\n");
        }
        text.push_str("}\n");
        text
    }
}

/// The elements of an interval set holding `nets`: overlapping or adjacent prefixes merged (nft refuses
/// overlapping intervals in one set), in address order.
fn prefix_elements(nets: &std::collections::BTreeSet<Ipv4Net>) -> Vec<String> {
    let nets: Vec<Ipv4Net> = nets.iter().map(|net| net.trunc()).collect();
    Ipv4Net::aggregate(&nets)
        .into_iter()
        .map(|net| net.to_string())
        .collect()
}

/// The `calico` table for `nat`: the two pool sets and the NAT-outgoing chain.
pub fn nat_table(nat: &NatOutgoing) -> Table {
    let set = |name: &str, nets| Set {
        name: name.to_string(),
        data_type: "ipv4_addr".to_string(),
        interval: true,
        elements: prefix_elements(nets),
    };
    Table::new(NFT_FAMILY, NFT_TABLE)
        .with_set(set(MASQ_POOLS_SET, &nat.masquerade_from))
        .with_set(set(ALL_POOLS_SET, &nat.all_pools))
        .with_chain(Chain {
            name: NAT_POSTROUTING_CHAIN.to_string(),
            base: Some(BaseChain {
                chain_type: "nat".to_string(),
                hook: "postrouting".to_string(),
                priority: NAT_POSTROUTING_PRIORITY.to_string(),
                policy: "accept".to_string(),
            }),
            rules: vec![format!(
                "ip saddr @{MASQ_POOLS_SET} ip daddr != @{ALL_POOLS_SET} masquerade"
            )],
        })
}

/// The nft transaction that (re)creates the `calico` table for `nat`.
pub fn render_table(nat: &NatOutgoing) -> String {
    nat_table(nat).render()
}

/// Runs `nft -f -` with `text` on stdin (in the calling thread's network namespace).
pub fn apply_table(text: &str) -> Result<(), NatError> {
    run_nft(&["-f", "-"], Some(text), "-f -").map(drop)
}

/// Whether the `calico` table exists in this network namespace.
pub fn table_exists() -> bool {
    run_nft(
        &["list", "table", NFT_FAMILY, NFT_TABLE],
        None,
        "list table",
    )
    .is_ok()
}

/// Deletes the `calico` table; succeeds when it does not exist.
pub fn delete_table() -> Result<(), NatError> {
    let text =
        format!("table {NFT_FAMILY} {NFT_TABLE} {{}}\ndelete table {NFT_FAMILY} {NFT_TABLE}\n");
    run_nft(&["-f", "-"], Some(&text), "delete table").map(drop)
}

fn nft_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|candidate| candidate.is_file())
}

/// Runs nft with `args` (and `stdin`), returning its stdout; errors carry nft's stderr.
fn run_nft(args: &[&str], stdin: Option<&str>, what: &str) -> Result<String, NatError> {
    let nft = nft_binary().ok_or(NatError::NftMissing)?;
    let finished = calico_process::run(
        Command::new(&nft).args(args),
        stdin.map(str::as_bytes),
        NFT_TIMEOUT,
    )
    .map_err(|e| match e {
        calico_process::RunError::TimedOut { .. } => NatError::Timeout,
        other => NatError::Spawn(other.to_string()),
    })?;
    if finished.status.success() {
        Ok(finished.stdout_text())
    } else {
        Err(NatError::Failed {
            what: what.to_string(),
            status: finished.status.to_string(),
            stderr: finished.stderr_text().trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> std::collections::BTreeSet<Ipv4Net> {
        list.iter().map(|s| s.parse().expect("prefix")).collect()
    }

    #[test]
    fn renders_pools_and_the_masquerade_rule() {
        let nat = NatOutgoing {
            masquerade_from: nets(&["198.19.0.0/16"]),
            all_pools: nets(&["198.19.0.0/16", "198.18.128.0/20"]),
        };
        assert_eq!(
            render_table(&nat),
            "table ip calico {}\n\
             delete table ip calico\n\
             table ip calico {\n\
             \tset masq-ipam-pools {\n\
             \t\ttype ipv4_addr\n\
             \t\tflags interval\n\
             \t\telements = { 198.19.0.0/16 }\n\
             \t}\n\
             \tset all-ipam-pools {\n\
             \t\ttype ipv4_addr\n\
             \t\tflags interval\n\
             \t\telements = { 198.18.128.0/20, 198.19.0.0/16 }\n\
             \t}\n\
             \tchain nat-POSTROUTING {\n\
             \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
             \t\tip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn renders_empty_sets_without_elements() {
        assert_eq!(
            render_table(&NatOutgoing::default()),
            "table ip calico {}\n\
             delete table ip calico\n\
             table ip calico {\n\
             \tset masq-ipam-pools {\n\
             \t\ttype ipv4_addr\n\
             \t\tflags interval\n\
             \t}\n\
             \tset all-ipam-pools {\n\
             \t\ttype ipv4_addr\n\
             \t\tflags interval\n\
             \t}\n\
             \tchain nat-POSTROUTING {\n\
             \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
             \t\tip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn overlapping_and_adjacent_pools_are_merged_and_host_bits_dropped() {
        let nat = NatOutgoing {
            masquerade_from: nets(&["198.19.0.0/26", "198.19.0.64/26", "198.19.0.5/32"]),
            all_pools: nets(&["198.19.0.0/16", "198.19.4.0/24", "198.18.7.9/24"]),
        };
        let text = render_table(&nat);
        assert!(
            text.contains("\t\telements = { 198.19.0.0/25 }\n"),
            "{text}"
        );
        assert!(
            text.contains("\t\telements = { 198.18.7.0/24, 198.19.0.0/16 }\n"),
            "{text}"
        );
    }

    #[test]
    fn more_chains_and_sets_render_in_order() {
        let table = Table::new("ip", "t")
            .with_set(Set {
                name: "s".into(),
                data_type: "ipv4_addr".into(),
                interval: false,
                elements: vec!["198.18.0.1".into(), "198.18.0.2".into()],
            })
            .with_chain(Chain {
                name: "filter-FORWARD".into(),
                base: Some(BaseChain {
                    chain_type: "filter".into(),
                    hook: "forward".into(),
                    priority: "0".into(),
                    policy: "accept".into(),
                }),
                rules: vec!["jump policy".into()],
            })
            .with_chain(Chain {
                name: "policy".into(),
                base: None,
                rules: vec!["ip saddr @s drop".into(), "counter".into()],
            });
        assert_eq!(
            table.render(),
            "table ip t {}\ndelete table ip t\ntable ip t {\n\
             \tset s {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.0.1, 198.18.0.2 }\n\t}\n\
             \tchain filter-FORWARD {\n\t\ttype filter hook forward priority 0; policy accept;\n\
             \t\tjump policy\n\t}\n\
             \tchain policy {\n\t\tip saddr @s drop\n\t\tcounter\n\t}\n\
             }\n"
        );
    }
}
