//! Operations on one table, batched into one `nft -f` transaction, and the pure plan that finds the
//! fewest of them turning the observed table into the desired one.

use std::fmt::Write as _;

use crate::rule::Rule;
use crate::table::{
    Chain, Family, Map, MapValue, Set, Table, render_elements, render_entries, render_key_type,
    render_map_type,
};
use crate::value::{Key, Name};

/// One change to the table. Ops are applied in the order given, all in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the table if missing, delete it, and define it whole: what a first load or a change no
    /// smaller op can make (a set's type changed) does.
    LoadTable(Table),
    /// Delete the table; a table that does not exist is not an error.
    DeleteTable,
    AddSet(Set),
    DeleteSet(Name),
    AddMap(Map),
    DeleteMap(Name),
    AddElements {
        set: Name,
        elements: Vec<Key>,
    },
    DeleteElements {
        set: Name,
        elements: Vec<Key>,
    },
    AddEntries {
        map: Name,
        entries: Vec<(Key, MapValue)>,
    },
    /// Deletes entries by key.
    DeleteEntries {
        map: Name,
        keys: Vec<Key>,
    },
    /// Declare a chain (a base chain with its hook); its rules come with [`Op::ReplaceRules`].
    AddChain(Chain),
    /// Delete a chain. It must hold no rules by then: [`plan`] empties it first with
    /// [`Op::ReplaceRules`] in the same transaction.
    DeleteChain(Name),
    /// Flush the chain and add these rules: the chain then holds exactly them.
    ReplaceRules {
        chain: Name,
        rules: Vec<Rule>,
    },
}

/// Ops on one table (family and name), rendered as one `nft -f` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub family: Family,
    pub table: Name,
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn new(family: Family, table: Name) -> Transaction {
        Transaction {
            family,
            table,
            ops: Vec::new(),
        }
    }

    /// A transaction that loads `table` whole.
    pub fn load(table: &Table) -> Transaction {
        Transaction {
            family: table.family(),
            table: table.name().clone(),
            ops: vec![Op::LoadTable(table.clone())],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The `nft -f` input, deterministic for the same ops.
    pub fn render(&self) -> String {
        let table = format!("{} {}", self.family.nft_name(), self.table);
        let mut out = String::new();
        for op in &self.ops {
            match op {
                Op::LoadTable(definition) => {
                    let _ = writeln!(out, "table {table} {{}}\ndelete table {table}");
                    out.push_str(&definition.render_definition());
                }
                Op::DeleteTable => {
                    let _ = writeln!(out, "table {table} {{}}\ndelete table {table}");
                }
                Op::AddSet(set) => {
                    let _ = write!(out, "add set {table} {} {{ type ", set.name());
                    render_key_type(set.key(), &mut out);
                    out.push(';');
                    let flags = set.flags().names();
                    if !flags.is_empty() {
                        let _ = write!(out, " flags {};", flags.join(","));
                    }
                    if !set.elements().is_empty() {
                        out.push_str(" elements = { ");
                        render_elements(set.elements(), &mut out);
                        out.push_str(" };");
                    }
                    out.push_str(" }\n");
                }
                Op::DeleteSet(name) => {
                    let _ = writeln!(out, "delete set {table} {name}");
                }
                Op::AddMap(map) => {
                    let _ = write!(out, "add map {table} {} {{ type ", map.name());
                    render_map_type(map, &mut out);
                    out.push(';');
                    if map.interval() {
                        out.push_str(" flags interval;");
                    }
                    if !map.entries().is_empty() {
                        out.push_str(" elements = { ");
                        render_entries(map.entries(), &mut out);
                        out.push_str(" };");
                    }
                    out.push_str(" }\n");
                }
                Op::DeleteMap(name) => {
                    let _ = writeln!(out, "delete map {table} {name}");
                }
                Op::AddElements { set, elements } if !elements.is_empty() => {
                    let _ = write!(out, "add element {table} {set} {{ ");
                    render_elements(elements, &mut out);
                    out.push_str(" }\n");
                }
                Op::DeleteElements { set, elements } if !elements.is_empty() => {
                    let _ = write!(out, "delete element {table} {set} {{ ");
                    render_elements(elements, &mut out);
                    out.push_str(" }\n");
                }
                Op::AddEntries { map, entries } if !entries.is_empty() => {
                    let _ = write!(out, "add element {table} {map} {{ ");
                    render_entries(entries.iter().map(|(k, v)| (k, v)), &mut out);
                    out.push_str(" }\n");
                }
                Op::DeleteEntries { map, keys } if !keys.is_empty() => {
                    let _ = write!(out, "delete element {table} {map} {{ ");
                    render_elements(keys, &mut out);
                    out.push_str(" }\n");
                }
                Op::AddElements { .. }
                | Op::DeleteElements { .. }
                | Op::AddEntries { .. }
                | Op::DeleteEntries { .. } => {}
                Op::AddChain(chain) => {
                    let _ = write!(out, "add chain {table} {}", chain.name);
                    if let Some(base) = &chain.base {
                        out.push_str(" { ");
                        base.render(&mut out);
                        out.push_str(" }");
                    }
                    out.push('\n');
                }
                Op::DeleteChain(name) => {
                    let _ = writeln!(out, "delete chain {table} {name}");
                }
                Op::ReplaceRules { chain, rules } => {
                    let _ = writeln!(out, "flush chain {table} {chain}");
                    for rule in rules {
                        let _ = writeln!(out, "add rule {table} {chain} {}", rule.render());
                    }
                }
            }
        }
        out
    }
}

/// The ops that turn `observed` (None: the table does not exist) into `desired`, fewest first:
/// nothing when they are equal; element and entry changes for sets and maps; rules rewritten only
/// for chains whose rules differ; whole objects added and deleted. A change no smaller op can make
/// (a set's or map's type or flags, a constant set's elements, a base chain's hook) loads the table
/// whole.
///
/// Order within the transaction: new chains first (verdict-map entries may jump to them), then new
/// sets and maps (rules may refer to them), then element deletions before additions (an interval may be replaced by an
/// overlapping one), then chain rewrites (chains to be deleted are emptied here), then deleted sets and
/// maps (no rule refers to them any more), then deleted chains (no rule or map entry jumps to them).
pub fn plan(desired: &Table, observed: Option<&Table>) -> Transaction {
    let mut tx = Transaction::new(desired.family(), desired.name().clone());
    let Some(observed) = observed else {
        tx.ops.push(Op::LoadTable(desired.clone()));
        return tx;
    };
    if observed.family() != desired.family() || observed.name() != desired.name() {
        tx.ops.push(Op::LoadTable(desired.clone()));
        return tx;
    }
    match incremental(desired, observed) {
        Some(ops) => tx.ops = ops,
        None => tx.ops.push(Op::LoadTable(desired.clone())),
    }
    tx
}

/// The incremental ops, or None when only a whole-table load can make the change.
fn incremental(desired: &Table, observed: &Table) -> Option<Vec<Op>> {
    let mut chain_creates = Vec::new();
    let mut creates = Vec::new();
    let mut element_deletes = Vec::new();
    let mut element_adds = Vec::new();
    let mut rewrites = Vec::new();
    let mut chain_deletes = Vec::new();
    let mut object_deletes = Vec::new();

    for set in desired.sets() {
        match observed.set(set.name()) {
            None => creates.push(Op::AddSet(set.clone())),
            Some(old) if !old.same_definition(set) => return None,
            Some(old) if old.elements() == set.elements() => {}
            Some(_) if set.flags().constant => return None,
            Some(old) => {
                let gone: Vec<Key> = old.elements().difference(set.elements()).cloned().collect();
                let new: Vec<Key> = set.elements().difference(old.elements()).cloned().collect();
                if !gone.is_empty() {
                    element_deletes.push(Op::DeleteElements {
                        set: set.name().clone(),
                        elements: gone,
                    });
                }
                if !new.is_empty() {
                    element_adds.push(Op::AddElements {
                        set: set.name().clone(),
                        elements: new,
                    });
                }
            }
        }
    }
    for map in desired.maps() {
        match observed.map(map.name()) {
            None => creates.push(Op::AddMap(map.clone())),
            Some(old) if !old.same_definition(map) => return None,
            Some(old) if old.entries() == map.entries() => {}
            Some(old) => {
                // A changed value is a delete of the old entry and an add of the new one.
                let gone: Vec<Key> = old
                    .entries()
                    .iter()
                    .filter(|(k, v)| map.entries().get(*k) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                let new: Vec<(Key, MapValue)> = map
                    .entries()
                    .iter()
                    .filter(|(k, v)| old.entries().get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !gone.is_empty() {
                    element_deletes.push(Op::DeleteEntries {
                        map: map.name().clone(),
                        keys: gone,
                    });
                }
                if !new.is_empty() {
                    element_adds.push(Op::AddEntries {
                        map: map.name().clone(),
                        entries: new,
                    });
                }
            }
        }
    }
    for chain in desired.chains() {
        match observed.chain(&chain.name) {
            None => {
                chain_creates.push(Op::AddChain(Chain {
                    name: chain.name.clone(),
                    base: chain.base,
                    rules: Vec::new(),
                }));
                if !chain.rules.is_empty() {
                    rewrites.push(Op::ReplaceRules {
                        chain: chain.name.clone(),
                        rules: chain.rules.clone(),
                    });
                }
            }
            Some(old) if old.base != chain.base => return None,
            Some(old) if old.rules == chain.rules => {}
            Some(_) => rewrites.push(Op::ReplaceRules {
                chain: chain.name.clone(),
                rules: chain.rules.clone(),
            }),
        }
    }
    for old in observed.chains() {
        if desired.chain(&old.name).is_none() {
            if !old.rules.is_empty() {
                rewrites.push(Op::ReplaceRules {
                    chain: old.name.clone(),
                    rules: Vec::new(),
                });
            }
            chain_deletes.push(Op::DeleteChain(old.name.clone()));
        }
    }
    for old in observed.sets() {
        if desired.set(old.name()).is_none() {
            if desired.map(old.name()).is_some() {
                return None; // a set became a map of the same name
            }
            object_deletes.push(Op::DeleteSet(old.name().clone()));
        }
    }
    for old in observed.maps() {
        if desired.map(old.name()).is_none() {
            if desired.set(old.name()).is_some() {
                return None;
            }
            object_deletes.push(Op::DeleteMap(old.name().clone()));
        }
    }
    let mut ops = chain_creates;
    ops.extend(creates);
    ops.extend(element_deletes);
    ops.extend(element_adds);
    ops.extend(rewrites);
    ops.extend(object_deletes);
    ops.extend(chain_deletes);
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Field, Match, Statement, Verdict};
    use crate::table::{
        BaseChain, ChainType, Hook, MapData, Policy, Priority, PriorityName, SetFlags,
    };
    use crate::value::{DataType, Value};
    use proptest::prelude::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn addr_key(last: u8) -> Key {
        Key::one(Value::addr(std::net::IpAddr::from([198, 18, 0, last])))
    }

    fn accept_from(last: u8) -> Rule {
        Rule::new(
            vec![
                Match::eq(
                    Field::IpSaddr,
                    Value::addr(std::net::IpAddr::from([198, 18, 0, last])),
                )
                .unwrap(),
            ],
            vec![Statement::Verdict(Verdict::Accept)],
            None,
        )
        .unwrap()
    }

    fn jump(chain: &str) -> MapValue {
        MapValue::Verdict(Verdict::Jump(name(chain)))
    }

    fn ifkey(s: &str) -> Key {
        Key::one(Value::ifname(s).unwrap())
    }

    /// A table with one set, one verdict map, a base chain and two regular chains.
    fn table(set: &[u8], map: &[(&str, &str)], rules_a: &[u8]) -> Table {
        let set = Set::new(name("s"), vec![DataType::Ipv4Addr], SetFlags::default())
            .unwrap()
            .with_elements(set.iter().map(|n| addr_key(*n)))
            .unwrap();
        let map = Map::new(name("m"), vec![DataType::Ifname], MapData::Verdict, false)
            .unwrap()
            .with_entries(map.iter().map(|(k, v)| (ifkey(k), jump(v))))
            .unwrap();
        let base = BaseChain {
            chain_type: ChainType::Filter,
            hook: Hook::Forward,
            priority: Priority::Named(PriorityName::Filter, 0),
            policy: Policy::Accept,
        };
        Table::new(Family::Ip, name("calico"))
            .with_set(set)
            .unwrap()
            .with_map(map)
            .unwrap()
            .with_chain(Chain::base(
                name("forward"),
                base,
                vec![
                    Rule::new(
                        vec![],
                        vec![Statement::Vmap {
                            key: Field::Iifname,
                            map: name("m"),
                        }],
                        None,
                    )
                    .unwrap(),
                ],
            ))
            .unwrap()
            .with_chain(Chain::regular(
                name("a"),
                rules_a.iter().map(|n| accept_from(*n)).collect(),
            ))
            .unwrap()
            .with_chain(Chain::regular(name("b"), vec![]))
            .unwrap()
    }

    #[test]
    fn equal_tables_need_no_ops() {
        let t = table(&[1, 2], &[("cali1", "a")], &[1]);
        assert!(plan(&t, Some(&t.clone())).is_empty());
    }

    #[test]
    fn a_missing_table_is_loaded_whole() {
        let t = table(&[1], &[], &[]);
        assert_eq!(plan(&t, None).ops, vec![Op::LoadTable(t.clone())]);
    }

    #[test]
    fn element_and_entry_changes_only_touch_what_changed() {
        let old = table(&[1, 2], &[("cali1", "a"), ("cali2", "a")], &[1]);
        let new = table(
            &[2, 3],
            &[("cali1", "a"), ("cali2", "b"), ("cali3", "b")],
            &[1],
        );
        let tx = plan(&new, Some(&old));
        assert_eq!(
            tx.ops,
            vec![
                Op::DeleteElements {
                    set: name("s"),
                    elements: vec![addr_key(1)]
                },
                Op::DeleteEntries {
                    map: name("m"),
                    keys: vec![ifkey("cali2")]
                },
                Op::AddElements {
                    set: name("s"),
                    elements: vec![addr_key(3)]
                },
                Op::AddEntries {
                    map: name("m"),
                    entries: vec![(ifkey("cali2"), jump("b")), (ifkey("cali3"), jump("b"))]
                },
            ]
        );
        assert_eq!(
            tx.render(),
            "delete element ip calico s { 198.18.0.1 }\n\
             delete element ip calico m { \"cali2\" }\n\
             add element ip calico s { 198.18.0.3 }\n\
             add element ip calico m { \"cali2\" : jump b, \"cali3\" : jump b }\n"
        );
    }

    #[test]
    fn only_chains_whose_rules_differ_are_rewritten() {
        let old = table(&[], &[], &[1, 2]);
        let new = table(&[], &[], &[2, 1]);
        let tx = plan(&new, Some(&old));
        assert_eq!(
            tx.render(),
            "flush chain ip calico a\n\
             add rule ip calico a ip saddr 198.18.0.2 accept\n\
             add rule ip calico a ip saddr 198.18.0.1 accept\n"
        );
    }

    #[test]
    fn new_objects_come_first_and_removed_ones_last() {
        let old = table(&[], &[], &[]);
        let extra_set = Set::new(
            name("t"),
            vec![DataType::InetService],
            SetFlags {
                interval: true,
                ..SetFlags::default()
            },
        )
        .unwrap()
        .with_elements([Key::one(Value::port_range(1, 9).unwrap())])
        .unwrap();
        let new = table(&[], &[("cali9", "c")], &[])
            .with_set(extra_set)
            .unwrap()
            .with_chain(Chain::regular(name("c"), vec![accept_from(7)]))
            .unwrap();
        let tx = plan(&new, Some(&old));
        assert_eq!(
            tx.render(),
            "add chain ip calico c\n\
             add set ip calico t { type inet_service; flags interval; elements = { 1-9 }; }\n\
             add element ip calico m { \"cali9\" : jump c }\n\
             flush chain ip calico c\n\
             add rule ip calico c ip saddr 198.18.0.7 accept\n"
        );
        // And back: the entry and the rules go before the chain, the set after the rules.
        let back = plan(&old, Some(&new));
        assert_eq!(
            back.render(),
            "delete element ip calico m { \"cali9\" }\n\
             flush chain ip calico c\n\
             delete set ip calico t\n\
             delete chain ip calico c\n"
        );
    }

    #[test]
    fn changes_no_small_op_can_make_load_the_table_whole() {
        let old = table(&[1], &[], &[]);
        // The set's flags change.
        let interval = Set::new(
            name("s"),
            vec![DataType::Ipv4Addr],
            SetFlags {
                interval: true,
                ..SetFlags::default()
            },
        )
        .unwrap();
        let mut new = table(&[1], &[], &[]);
        new.sets[0] = interval;
        assert_eq!(plan(&new, Some(&old)).ops, vec![Op::LoadTable(new.clone())]);
        // The base chain's policy changes.
        let mut new = table(&[1], &[], &[]);
        if let Some(base) = new.chains[0].base.as_mut() {
            base.policy = Policy::Drop;
        }
        assert_eq!(plan(&new, Some(&old)).ops, vec![Op::LoadTable(new.clone())]);
        // A constant set's elements change.
        let constant = |els: &[u8]| {
            Set::new(
                name("k"),
                vec![DataType::Ipv4Addr],
                SetFlags {
                    constant: true,
                    ..SetFlags::default()
                },
            )
            .unwrap()
            .with_elements(els.iter().map(|n| addr_key(*n)))
            .unwrap()
        };
        let old = table(&[], &[], &[]).with_set(constant(&[1])).unwrap();
        let new = table(&[], &[], &[]).with_set(constant(&[2])).unwrap();
        assert_eq!(plan(&new, Some(&old)).ops, vec![Op::LoadTable(new.clone())]);
    }

    #[test]
    fn priorities_compare_by_value() {
        assert_eq!(
            Priority::Named(PriorityName::Srcnat, 10),
            Priority::Number(110)
        );
        assert_ne!(
            Priority::Named(PriorityName::Srcnat, 10),
            Priority::Number(100)
        );
    }

    /// Applies ops to a table the way nft would (for the property below).
    fn simulate(table: &Table, tx: &Transaction) -> Table {
        let mut t = table.clone();
        for op in &tx.ops {
            match op {
                Op::LoadTable(new) => t = new.clone(),
                Op::DeleteTable => unreachable!("plan never deletes the table"),
                Op::AddSet(s) => t.sets.push(s.clone()),
                Op::DeleteSet(n) => t.sets.retain(|s| s.name() != n),
                Op::AddMap(m) => t.maps.push(m.clone()),
                Op::DeleteMap(n) => t.maps.retain(|m| m.name() != n),
                Op::AddElements { set, elements } => {
                    let s = t
                        .sets
                        .iter_mut()
                        .find(|s| s.name() == set)
                        .expect("set exists");
                    for e in elements {
                        assert!(s.elements.insert(e.clone()), "element added twice");
                    }
                }
                Op::DeleteElements { set, elements } => {
                    let s = t
                        .sets
                        .iter_mut()
                        .find(|s| s.name() == set)
                        .expect("set exists");
                    for e in elements {
                        assert!(s.elements.remove(e), "deleted a missing element");
                    }
                }
                Op::AddEntries { map, entries } => {
                    let m = t
                        .maps
                        .iter_mut()
                        .find(|m| m.name() == map)
                        .expect("map exists");
                    for (k, v) in entries {
                        assert!(
                            m.entries.insert(k.clone(), v.clone()).is_none(),
                            "entry exists"
                        );
                    }
                }
                Op::DeleteEntries { map, keys } => {
                    let m = t
                        .maps
                        .iter_mut()
                        .find(|m| m.name() == map)
                        .expect("map exists");
                    for k in keys {
                        assert!(m.entries.remove(k).is_some(), "deleted a missing entry");
                    }
                }
                Op::AddChain(c) => t.chains.push(c.clone()),
                Op::DeleteChain(n) => {
                    let c = t
                        .chains
                        .iter()
                        .find(|c| &c.name == n)
                        .expect("chain exists");
                    assert!(c.rules.is_empty(), "deleting chain {n} with rules");
                    t.chains.retain(|c| &c.name != n);
                }
                Op::ReplaceRules { chain, rules } => {
                    let c = t
                        .chains
                        .iter_mut()
                        .find(|c| &c.name == chain)
                        .expect("chain exists");
                    c.rules = rules.clone();
                }
            }
        }
        t
    }

    fn arb_table() -> impl Strategy<Value = Table> {
        (
            proptest::collection::btree_set(0u8..12, 0..6),
            proptest::collection::btree_map(0u8..6, 0u8..2, 0..4),
            proptest::collection::vec(0u8..4, 0..4),
            any::<bool>(),
        )
            .prop_map(|(set, map, rules, extra)| {
                let set: Vec<u8> = set.into_iter().collect();
                let names: Vec<(String, &str)> = map
                    .into_iter()
                    .map(|(k, v)| (format!("cali{k}"), if v == 0 { "a" } else { "b" }))
                    .collect();
                let map: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                let t = table(&set, &map, &rules);
                if extra {
                    t.with_chain(Chain::regular(name("extra"), vec![accept_from(9)]))
                        .unwrap()
                } else {
                    t
                }
            })
    }

    proptest! {
        #[test]
        fn applying_the_plan_yields_the_desired_table_and_planning_again_yields_nothing(
            desired in arb_table(),
            observed in arb_table(),
        ) {
            let tx = plan(&desired, Some(&observed));
            let result = simulate(&observed, &tx);
            prop_assert_eq!(&result, &desired);
            prop_assert!(plan(&desired, Some(&result)).is_empty());
            prop_assert!(!tx.ops.iter().any(|op| matches!(op, Op::LoadTable(_))));
            prop_assert_eq!(tx.is_empty(), desired == observed);
        }
    }
}
