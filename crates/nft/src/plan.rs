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
    /// Flush the chain and delete it.
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
                    let _ = writeln!(
                        out,
                        "flush chain {table} {name}\ndelete chain {table} {name}"
                    );
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
/// Order within the transaction: new sets, maps and chains first (rules and verdict-map entries may
/// refer to them), then element deletions before additions (an interval may be replaced by an
/// overlapping one), then chain rewrites, then deleted chains, then deleted sets and maps (nothing
/// refers to them any more).
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
                creates.push(Op::AddChain(Chain {
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
    let mut ops = creates;
    ops.extend(element_deletes);
    ops.extend(element_adds);
    ops.extend(rewrites);
    ops.extend(chain_deletes);
    ops.extend(object_deletes);
    Some(ops)
}
