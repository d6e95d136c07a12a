//! The `calico` nftables table for NAT-outgoing, built as typed [`calico_nft`] objects.
//!
//! [`sync_table`] reads the table back, plans the fewest changes and applies them in one `nft -f -`
//! transaction: nothing when it already matches (also after a restart), set elements when pools
//! change, and a whole-table load when it is missing. nft applies a transaction atomically, so packets
//! see either the old table or the new one, and connections already tracked keep their NAT mapping
//! (conntrack entries outlive the rules that created them).
//!
//! The chains carry Calico's names: `nat-PREROUTING` and `nat-OUTPUT` jump to `cali-fip-dnat` (a
//! floating IP DNATed to its workload), `nat-POSTROUTING` to `cali-fip-snat` (the hairpin: a workload
//! reaching its own floating IP) and then `cali-nat-outgoing` (masquerade). `nat-POSTROUTING` runs at
//! priority `srcnat + 10` (110): after the usual source-NAT chains at `srcnat`, so an explicit SNAT
//! another program (or an administrator) set up for the same packet wins; the first chain that NATs a
//! connection decides its mapping.

use std::net::{IpAddr, Ipv4Addr};

use calico_nft::{
    BaseChain, Chain, ChainType, Comment, DataType, Family, Field, Hook, Key, Match, Name, Nft,
    NftError, Policy, Priority, PriorityName, Rule, Set, SetFlags, Statement, Table, Transaction,
    Value, Verdict,
};
use ipnet::{IpNet, Ipv4Net};

use crate::desired::{NFT_TABLE, Nat};

/// The nftables family of the `calico` table.
pub const NFT_FAMILY: Family = Family::Ip;
/// Pools whose traffic is masqueraded when it leaves the pools.
pub const MASQ_POOLS_SET: &str = "masq-ipam-pools";
/// Every pool: destinations inside these are never masqueraded.
pub const ALL_POOLS_SET: &str = "all-ipam-pools";
/// The source-NAT base chain: floating IPs' hairpin SNAT, then NAT-outgoing.
pub const NAT_POSTROUTING_CHAIN: &str = "nat-POSTROUTING";
/// The destination-NAT base chains (traffic arriving, and traffic the host itself sends).
pub const NAT_PREROUTING_CHAIN: &str = "nat-PREROUTING";
pub const NAT_OUTPUT_CHAIN: &str = "nat-OUTPUT";
/// Calico's chains: floating IPs' DNAT and hairpin SNAT, and NAT-outgoing's masquerade.
pub const FIP_DNAT_CHAIN: &str = "cali-fip-dnat";
pub const FIP_SNAT_CHAIN: &str = "cali-fip-snat";
pub const NAT_OUTGOING_CHAIN: &str = "cali-nat-outgoing";
/// Priority of the destination-NAT base chains: `dstnat` (-100). nft accepts the name only on the
/// prerouting hook, so the output chain states the number.
pub const NAT_DNAT_PRIORITY: Priority = Priority::Named(PriorityName::Dstnat, 0);
pub const NAT_OUTPUT_PRIORITY: Priority = Priority::Number(-100);
/// Priority of [`NAT_POSTROUTING_CHAIN`]: `srcnat + 10`.
pub const NAT_POSTROUTING_PRIORITY: Priority = Priority::Named(PriorityName::Srcnat, 10);

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error(transparent)]
    Nft(#[from] NftError),
}

/// A name of ours; the constants above are valid nft names, which the tests check.
fn name(constant: &str) -> Name {
    Name::new(constant).expect("our constant names are valid nft names")
}

/// The `calico` table's name.
pub fn table_name() -> Name {
    name(NFT_TABLE)
}

/// The elements of an interval set holding `nets`: overlapping or adjacent prefixes merged (nft refuses
/// overlapping intervals in one set), in address order.
fn prefix_elements(nets: &std::collections::BTreeSet<Ipv4Net>) -> Vec<Key> {
    let nets: Vec<Ipv4Net> = nets.iter().map(|net| net.trunc()).collect();
    Ipv4Net::aggregate(&nets)
        .into_iter()
        .map(|net| Key::one(Value::net(IpNet::V4(net))))
        .collect()
}

/// The `calico` table for `nat`: the two pool sets and the NAT-outgoing chain.
pub fn nat_table(nat: &Nat) -> Table {
    let interval = SetFlags {
        interval: true,
        ..SetFlags::default()
    };
    let set = |set_name: &str, nets| {
        Set::new(name(set_name), vec![DataType::Ipv4Addr], interval)
            .and_then(|set| set.with_elements(prefix_elements(nets)))
            .expect("IPv4 prefixes fit an interval set of ipv4_addr")
    };
    let masquerade = Rule::new(
        vec![
            Match::in_named(Field::IpSaddr, false, &name(MASQ_POOLS_SET)),
            Match::in_named(Field::IpDaddr, true, &name(ALL_POOLS_SET)),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("set matches are valid"),
        vec![Statement::Masquerade],
        None,
    )
    .expect("masquerade ends the rule");
    let address = |ip: Ipv4Addr| Value::addr(IpAddr::V4(ip));
    let (mut dnat, mut snat) = (Vec::new(), Vec::new());
    for fip in &nat.floating_ips {
        let comment = |what: &str| {
            Comment::new(&format!(
                "floating IP {} {what} {}",
                fip.external, fip.internal
            ))
            .ok()
        };
        dnat.push(
            Rule::new(
                vec![Match::eq(Field::IpDaddr, address(fip.external)).expect("an IPv4 address")],
                vec![Statement::Dnat {
                    addr: IpAddr::V4(fip.internal),
                    port: None,
                }],
                comment("to"),
            )
            .expect("dnat ends the rule"),
        );
        // Hairpin: the workload reaching its own floating IP sees the reply come from that IP.
        snat.push(
            Rule::new(
                vec![
                    Match::eq(Field::IpSaddr, address(fip.internal)).expect("an IPv4 address"),
                    Match::eq(Field::IpDaddr, address(fip.internal)).expect("an IPv4 address"),
                ],
                vec![Statement::Snat {
                    addr: IpAddr::V4(fip.external),
                    port: None,
                }],
                comment("hairpin from"),
            )
            .expect("snat ends the rule"),
        );
    }
    let jump = |chain: &str| {
        Rule::new(
            Vec::new(),
            vec![Statement::Verdict(Verdict::Jump(name(chain)))],
            None,
        )
        .expect("a jump ends the rule")
    };
    let nat_base = |chain: &str, hook: Hook, priority: Priority, rules: Vec<Rule>| {
        Chain::base(
            name(chain),
            BaseChain {
                chain_type: ChainType::Nat,
                hook,
                priority,
                policy: Policy::Accept,
            },
            rules,
        )
    };
    let chains = [
        nat_base(
            NAT_PREROUTING_CHAIN,
            Hook::Prerouting,
            NAT_DNAT_PRIORITY,
            vec![jump(FIP_DNAT_CHAIN)],
        ),
        nat_base(
            NAT_OUTPUT_CHAIN,
            Hook::Output,
            NAT_OUTPUT_PRIORITY,
            vec![jump(FIP_DNAT_CHAIN)],
        ),
        nat_base(
            NAT_POSTROUTING_CHAIN,
            Hook::Postrouting,
            NAT_POSTROUTING_PRIORITY,
            vec![jump(FIP_SNAT_CHAIN), jump(NAT_OUTGOING_CHAIN)],
        ),
        Chain::regular(name(FIP_DNAT_CHAIN), dnat),
        Chain::regular(name(FIP_SNAT_CHAIN), snat),
        Chain::regular(name(NAT_OUTGOING_CHAIN), vec![masquerade]),
    ];
    let mut table = Table::new(NFT_FAMILY, table_name())
        .with_set(set(MASQ_POOLS_SET, &nat.masquerade_from))
        .and_then(|table| table.with_set(set(ALL_POOLS_SET, &nat.all_pools)))
        .expect("the set names differ");
    for chain in chains {
        table = table.with_chain(chain).expect("the chain names differ");
    }
    table
}

/// The nft transaction that (re)creates the `calico` table for `nat` whole.
pub fn render_table(nat: &Nat) -> String {
    Transaction::load(&nat_table(nat)).render()
}

/// Runs `nft -f -` with `text` on stdin (in the calling thread's network namespace).
pub fn apply_table(text: &str) -> Result<(), NatError> {
    Ok(Nft::find()?.run_script(text)?)
}

/// Reads the `calico` table back; `None` when it does not exist.
pub fn read_table() -> Result<Option<Table>, NatError> {
    Ok(Nft::find()?.read_table(NFT_FAMILY, &table_name())?)
}

/// Makes the `calico` table match `nat`: reads it back, plans the changes and applies them in one
/// transaction. Returns whether anything was written (nothing when it already matches).
pub fn sync_table(nat: &Nat) -> Result<bool, NatError> {
    let nft = Nft::find()?;
    let desired = nat_table(nat);
    let observed = nft.read_table(NFT_FAMILY, desired.name())?;
    let transaction = calico_nft::plan(&desired, observed.as_ref());
    nft.apply(&transaction)?;
    Ok(!transaction.is_empty())
}

/// Whether the `calico` table exists in this network namespace (false also when it cannot be read).
pub fn table_exists() -> bool {
    matches!(read_table(), Ok(Some(_)))
}

/// Deletes the `calico` table; succeeds when it does not exist.
pub fn delete_table() -> Result<(), NatError> {
    let delete = Transaction {
        family: NFT_FAMILY,
        table: table_name(),
        ops: vec![calico_nft::Op::DeleteTable],
    };
    Ok(Nft::find()?.apply(&delete)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::FloatingIp;

    fn nets(list: &[&str]) -> std::collections::BTreeSet<Ipv4Net> {
        list.iter().map(|s| s.parse().expect("prefix")).collect()
    }

    #[test]
    fn renders_pools_and_the_masquerade_rule() {
        let nat = Nat {
            masquerade_from: nets(&["198.19.0.0/16"]),
            all_pools: nets(&["198.19.0.0/16", "198.18.128.0/20"]),
            ..Nat::default()
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
             \tchain nat-PREROUTING {\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tjump cali-fip-dnat\n\
             \t}\n\
             \tchain nat-OUTPUT {\n\
             \t\ttype nat hook output priority -100; policy accept;\n\
             \t\tjump cali-fip-dnat\n\
             \t}\n\
             \tchain nat-POSTROUTING {\n\
             \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
             \t\tjump cali-fip-snat\n\
             \t\tjump cali-nat-outgoing\n\
             \t}\n\
             \tchain cali-fip-dnat {\n\
             \t}\n\
             \tchain cali-fip-snat {\n\
             \t}\n\
             \tchain cali-nat-outgoing {\n\
             \t\tip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn floating_ips_dnat_in_and_hairpin_snat() {
        let nat = Nat {
            floating_ips: [FloatingIp {
                external: "198.18.200.10".parse().unwrap(),
                internal: "198.19.0.5".parse().unwrap(),
            }]
            .into(),
            ..Nat::default()
        };
        let text = render_table(&nat);
        assert!(
            text.contains(
                "\tchain cali-fip-dnat {\n\
                 \t\tip daddr 198.18.200.10 dnat to 198.19.0.5 comment \"floating IP 198.18.200.10 to 198.19.0.5\"\n\
                 \t}\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\tchain cali-fip-snat {\n\
                 \t\tip saddr 198.19.0.5 ip daddr 198.19.0.5 snat to 198.18.200.10 comment \"floating IP 198.18.200.10 hairpin from 198.19.0.5\"\n\
                 \t}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_empty_sets_without_elements() {
        assert_eq!(
            render_table(&Nat::default()),
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
             \tchain nat-PREROUTING {\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tjump cali-fip-dnat\n\
             \t}\n\
             \tchain nat-OUTPUT {\n\
             \t\ttype nat hook output priority -100; policy accept;\n\
             \t\tjump cali-fip-dnat\n\
             \t}\n\
             \tchain nat-POSTROUTING {\n\
             \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
             \t\tjump cali-fip-snat\n\
             \t\tjump cali-nat-outgoing\n\
             \t}\n\
             \tchain cali-fip-dnat {\n\
             \t}\n\
             \tchain cali-fip-snat {\n\
             \t}\n\
             \tchain cali-nat-outgoing {\n\
             \t\tip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn overlapping_and_adjacent_pools_are_merged_and_host_bits_dropped() {
        let nat = Nat {
            masquerade_from: nets(&["198.19.0.0/26", "198.19.0.64/26", "198.19.0.5/32"]),
            all_pools: nets(&["198.19.0.0/16", "198.19.4.0/24", "198.18.7.9/24"]),
            ..Nat::default()
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
    fn our_constant_names_are_valid() {
        for constant in [
            NFT_TABLE,
            MASQ_POOLS_SET,
            ALL_POOLS_SET,
            NAT_POSTROUTING_CHAIN,
        ] {
            assert!(Name::new(constant).is_ok(), "{constant}");
        }
        assert_eq!(NAT_POSTROUTING_PRIORITY.value(), 110);
    }

    #[test]
    fn a_pool_change_is_an_element_change_and_no_change_is_nothing() {
        let before = nat_table(&Nat {
            masquerade_from: nets(&["198.19.0.0/16"]),
            all_pools: nets(&["198.19.0.0/16"]),
            ..Nat::default()
        });
        let after = nat_table(&Nat {
            masquerade_from: nets(&["198.19.0.0/16"]),
            all_pools: nets(&["198.19.0.0/16", "198.18.128.0/20"]),
            ..Nat::default()
        });
        assert!(calico_nft::plan(&before, Some(&before)).is_empty());
        assert_eq!(
            calico_nft::plan(&after, Some(&before)).render(),
            "add element ip calico all-ipam-pools { 198.18.128.0/20 }\n"
        );
    }
}
