//! Tables, chains, sets and maps.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::rule::{Operand, Rule, Statement, Verdict};
use crate::value::{DataType, InvalidError, Key, Name, Value};

/// The address family of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
}

impl Family {
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }

    pub fn from_nft_name(name: &str) -> Option<Family> {
        [Family::Ip, Family::Ip6, Family::Inet]
            .into_iter()
            .find(|f| f.nft_name() == name)
    }
}

/// Set flags we use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetFlags {
    /// Elements may be prefixes and ranges.
    pub interval: bool,
    /// Elements cannot change after the set is created (a change reloads the table).
    pub constant: bool,
    /// Elements may carry timeouts.
    pub timeout: bool,
}

impl SetFlags {
    pub(crate) fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.constant {
            names.push("constant");
        }
        if self.interval {
            names.push("interval");
        }
        if self.timeout {
            names.push("timeout");
        }
        names
    }
}

/// A named set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    name: Name,
    key: Vec<DataType>,
    flags: SetFlags,
    pub(crate) elements: BTreeSet<Key>,
}

impl Set {
    /// An empty set keyed by `key` (several types: a concatenation).
    pub fn new(name: Name, key: Vec<DataType>, flags: SetFlags) -> Result<Set, InvalidError> {
        check_key_types(&key)?;
        Ok(Set {
            name,
            key,
            flags,
            elements: BTreeSet::new(),
        })
    }

    /// Adds elements, each checked against the key type.
    pub fn with_elements(
        mut self,
        elements: impl IntoIterator<Item = Key>,
    ) -> Result<Set, InvalidError> {
        for element in elements {
            element.check(&self.key, self.flags.interval)?;
            self.elements.insert(element);
        }
        Ok(self)
    }

    pub fn name(&self) -> &Name {
        &self.name
    }

    pub fn key(&self) -> &[DataType] {
        &self.key
    }

    pub fn flags(&self) -> SetFlags {
        self.flags
    }

    pub fn elements(&self) -> &BTreeSet<Key> {
        &self.elements
    }

    /// Same name, type and flags (elements aside).
    pub(crate) fn same_definition(&self, other: &Set) -> bool {
        self.name == other.name && self.key == other.key && self.flags == other.flags
    }
}

fn check_key_types(key: &[DataType]) -> Result<(), InvalidError> {
    if key.is_empty() {
        return Err(InvalidError::Type(
            "a key type needs at least one part".into(),
        ));
    }
    if key.contains(&DataType::CtState) && key.len() > 1 {
        return Err(InvalidError::Type("ct_state cannot be concatenated".into()));
    }
    Ok(())
}

/// What a map yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapData {
    Verdict,
    Value(DataType),
}

/// A map entry's data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapValue {
    Verdict(Verdict),
    Value(Value),
}

impl MapValue {
    pub(crate) fn render(&self, out: &mut String) {
        match self {
            MapValue::Verdict(verdict) => verdict.render(out),
            MapValue::Value(value) => value.render(out),
        }
    }
}

/// A named map: a verdict map (`ifname : verdict`) or a data map (`ipv4_addr : mark`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    name: Name,
    key: Vec<DataType>,
    data: MapData,
    /// Keys may be prefixes and ranges.
    interval: bool,
    pub(crate) entries: BTreeMap<Key, MapValue>,
}

impl Map {
    pub fn new(
        name: Name,
        key: Vec<DataType>,
        data: MapData,
        interval: bool,
    ) -> Result<Map, InvalidError> {
        check_key_types(&key)?;
        if let MapData::Value(DataType::CtState | DataType::Ifname) = data {
            return Err(InvalidError::Type(format!("{data:?} cannot be map data")));
        }
        Ok(Map {
            name,
            key,
            data,
            interval,
            entries: BTreeMap::new(),
        })
    }

    /// Adds entries, each checked against the key and data types.
    pub fn with_entries(
        mut self,
        entries: impl IntoIterator<Item = (Key, MapValue)>,
    ) -> Result<Map, InvalidError> {
        for (key, value) in entries {
            key.check(&self.key, self.interval)?;
            match (&value, self.data) {
                (MapValue::Verdict(_), MapData::Verdict) => {}
                (MapValue::Value(v), MapData::Value(t))
                    if v.data_type() == t && !v.is_interval() => {}
                _ => {
                    return Err(InvalidError::Type(format!(
                        "{value:?} does not fit map {} of {:?}",
                        self.name, self.data
                    )));
                }
            }
            self.entries.insert(key, value);
        }
        Ok(self)
    }

    pub fn name(&self) -> &Name {
        &self.name
    }

    pub fn key(&self) -> &[DataType] {
        &self.key
    }

    pub fn data(&self) -> MapData {
        self.data
    }

    pub fn interval(&self) -> bool {
        self.interval
    }

    pub fn entries(&self) -> &BTreeMap<Key, MapValue> {
        &self.entries
    }

    pub(crate) fn same_definition(&self, other: &Map) -> bool {
        self.name == other.name
            && self.key == other.key
            && self.data == other.data
            && self.interval == other.interval
    }
}

/// A base chain's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

/// A base chain's hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

/// What a base chain does with a packet no rule decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

/// A standard priority name (values for the ip, ip6 and inet families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PriorityName {
    Raw,
    Mangle,
    Dstnat,
    Filter,
    Security,
    Srcnat,
}

impl PriorityName {
    fn value(self) -> i32 {
        match self {
            PriorityName::Raw => -300,
            PriorityName::Mangle => -150,
            PriorityName::Dstnat => -100,
            PriorityName::Filter => 0,
            PriorityName::Security => 50,
            PriorityName::Srcnat => 100,
        }
    }

    fn nft_name(self) -> &'static str {
        match self {
            PriorityName::Raw => "raw",
            PriorityName::Mangle => "mangle",
            PriorityName::Dstnat => "dstnat",
            PriorityName::Filter => "filter",
            PriorityName::Security => "security",
            PriorityName::Srcnat => "srcnat",
        }
    }
}

/// A base chain priority, written as a name plus offset (`srcnat + 10`) or as a number. Two
/// priorities are equal when their numbers are: nft lists them as numbers.
#[derive(Clone, Copy, Debug)]
pub enum Priority {
    Named(PriorityName, i32),
    Number(i32),
}

impl Priority {
    pub fn value(self) -> i32 {
        match self {
            Priority::Named(name, offset) => name.value() + offset,
            Priority::Number(n) => n,
        }
    }

    fn render(self, out: &mut String) {
        match self {
            Priority::Named(name, 0) => out.push_str(name.nft_name()),
            Priority::Named(name, offset) if offset > 0 => {
                let _ = write!(out, "{} + {offset}", name.nft_name());
            }
            Priority::Named(name, offset) => {
                let _ = write!(out, "{} - {}", name.nft_name(), offset.unsigned_abs());
            }
            Priority::Number(n) => {
                let _ = write!(out, "{n}");
            }
        }
    }
}

impl PartialEq for Priority {
    fn eq(&self, other: &Priority) -> bool {
        self.value() == other.value()
    }
}

impl Eq for Priority {}

/// The hook of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub chain_type: ChainType,
    pub hook: Hook,
    pub priority: Priority,
    pub policy: Policy,
}

impl BaseChain {
    pub(crate) fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            "type {} hook {} priority ",
            match self.chain_type {
                ChainType::Filter => "filter",
                ChainType::Nat => "nat",
                ChainType::Route => "route",
            },
            match self.hook {
                Hook::Prerouting => "prerouting",
                Hook::Input => "input",
                Hook::Forward => "forward",
                Hook::Output => "output",
                Hook::Postrouting => "postrouting",
            }
        );
        self.priority.render(out);
        out.push_str(match self.policy {
            Policy::Accept => "; policy accept;",
            Policy::Drop => "; policy drop;",
        });
    }
}

/// A chain: a base chain when `base` is set, otherwise a regular chain reached by jump/goto/vmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: Name,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn regular(name: Name, rules: Vec<Rule>) -> Chain {
        Chain {
            name,
            base: None,
            rules,
        }
    }

    pub fn base(name: Name, base: BaseChain, rules: Vec<Rule>) -> Chain {
        Chain {
            name,
            base: Some(base),
            rules,
        }
    }
}

/// One nftables table and everything in it. Sets, maps and chains keep the order they were added in
/// (for rendering); comparison ignores that order, as nft lists objects in its own.
#[derive(Clone, Debug)]
pub struct Table {
    family: Family,
    name: Name,
    pub(crate) sets: Vec<Set>,
    pub(crate) maps: Vec<Map>,
    pub(crate) chains: Vec<Chain>,
}

impl Table {
    pub fn new(family: Family, name: Name) -> Table {
        Table {
            family,
            name,
            sets: Vec::new(),
            maps: Vec::new(),
            chains: Vec::new(),
        }
    }

    fn check_free(&self, name: &Name) -> Result<(), InvalidError> {
        if self.set(name).is_some() || self.map(name).is_some() {
            return Err(InvalidError::Table(format!(
                "a set or map named {name} is already in table {}",
                self.name
            )));
        }
        Ok(())
    }

    pub fn with_set(mut self, set: Set) -> Result<Table, InvalidError> {
        self.check_free(&set.name)?;
        self.sets.push(set);
        Ok(self)
    }

    pub fn with_map(mut self, map: Map) -> Result<Table, InvalidError> {
        self.check_free(&map.name)?;
        self.maps.push(map);
        Ok(self)
    }

    pub fn with_chain(mut self, chain: Chain) -> Result<Table, InvalidError> {
        if self.chain(&chain.name).is_some() {
            return Err(InvalidError::Table(format!(
                "chain {} is already in table {}",
                chain.name, self.name
            )));
        }
        self.chains.push(chain);
        Ok(self)
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn name(&self) -> &Name {
        &self.name
    }

    pub fn sets(&self) -> &[Set] {
        &self.sets
    }

    pub fn maps(&self) -> &[Map] {
        &self.maps
    }

    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    pub fn set(&self, name: &Name) -> Option<&Set> {
        self.sets.iter().find(|s| &s.name == name)
    }

    pub fn map(&self, name: &Name) -> Option<&Map> {
        self.maps.iter().find(|m| &m.name == name)
    }

    pub fn chain(&self, name: &Name) -> Option<&Chain> {
        self.chains.iter().find(|c| &c.name == name)
    }

    /// Checks what only the whole table can tell: every `@set` a rule matches against is a set of
    /// this table with the fields' types, every `vmap @map` a verdict map keyed by the field's type,
    /// and every jump or goto (in rules and verdict maps) names a chain of this table. nft would
    /// refuse the transaction otherwise; this says which rule, before nft runs.
    pub fn check_references(&self) -> Result<(), InvalidError> {
        let chain_exists = |verdict: &Verdict, place: &dyn Fn() -> String| match verdict {
            Verdict::Jump(target) | Verdict::Goto(target) if self.chain(target).is_none() => Err(
                InvalidError::Table(format!("{}: no chain {target}", place())),
            ),
            _ => Ok(()),
        };
        for map in &self.maps {
            for value in map.entries.values() {
                if let MapValue::Verdict(verdict) = value {
                    chain_exists(verdict, &|| format!("map {}", map.name))?;
                }
            }
        }
        for chain in &self.chains {
            for (index, rule) in chain.rules.iter().enumerate() {
                let place = || format!("chain {} rule {}", chain.name, index + 1);
                for m in rule.matches() {
                    if let Operand::Named(set) = m.operand() {
                        let types: Vec<DataType> =
                            m.fields().iter().map(|f| f.data_type()).collect();
                        match self.set(set) {
                            Some(found) if found.key == types => {}
                            Some(_) => {
                                return Err(InvalidError::Table(format!(
                                    "{}: set {set} has another key type",
                                    place()
                                )));
                            }
                            None => {
                                return Err(InvalidError::Table(format!(
                                    "{}: no set {set}",
                                    place()
                                )));
                            }
                        }
                    }
                }
                for statement in rule.statements() {
                    match statement {
                        Statement::Verdict(verdict) => chain_exists(verdict, &place)?,
                        Statement::Vmap { key, map } => match self.map(map) {
                            Some(found)
                                if found.data == MapData::Verdict
                                    && found.key == [key.data_type()] => {}
                            _ => {
                                return Err(InvalidError::Table(format!(
                                    "{}: no verdict map {map} keyed by {}",
                                    place(),
                                    key.data_type().nft_name()
                                )));
                            }
                        },
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The table's definition block (`table F N { ... }`), as in a whole-table load.
    pub fn render_definition(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "table {} {} {{", self.family.nft_name(), self.name);
        for set in &self.sets {
            let _ = writeln!(out, "\tset {} {{", set.name);
            out.push_str("\t\ttype ");
            render_key_type(&set.key, &mut out);
            out.push('\n');
            let flags = set.flags.names();
            if !flags.is_empty() {
                let _ = writeln!(out, "\t\tflags {}", flags.join(","));
            }
            if !set.elements.is_empty() {
                out.push_str("\t\telements = { ");
                render_elements(&set.elements, &mut out);
                out.push_str(" }\n");
            }
            out.push_str("\t}\n");
        }
        for map in &self.maps {
            let _ = writeln!(out, "\tmap {} {{", map.name);
            out.push_str("\t\ttype ");
            render_map_type(map, &mut out);
            out.push('\n');
            if map.interval {
                out.push_str("\t\tflags interval\n");
            }
            if !map.entries.is_empty() {
                out.push_str("\t\telements = { ");
                render_entries(map.entries.iter(), &mut out);
                out.push_str(" }\n");
            }
            out.push_str("\t}\n");
        }
        for chain in &self.chains {
            let _ = writeln!(out, "\tchain {} {{", chain.name);
            if let Some(base) = &chain.base {
                out.push_str("\t\t");
                base.render(&mut out);
                out.push('\n');
            }
            for rule in &chain.rules {
                let _ = writeln!(out, "\t\t{}", rule.render());
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }
}

/// Equal when family, name and every set, map and chain (by name) are equal; order is not compared.
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        fn same<T: PartialEq>(a: &[T], b: &[T], find: impl Fn(&T, &[T]) -> Option<bool>) -> bool {
            a.len() == b.len() && a.iter().all(|x| find(x, b) == Some(true))
        }
        self.family == other.family
            && self.name == other.name
            && same(&self.sets, &other.sets, |s, b| {
                b.iter().find(|o| o.name == s.name).map(|o| o == s)
            })
            && same(&self.maps, &other.maps, |m, b| {
                b.iter().find(|o| o.name == m.name).map(|o| o == m)
            })
            && same(&self.chains, &other.chains, |c, b| {
                b.iter().find(|o| o.name == c.name).map(|o| o == c)
            })
    }
}

impl Eq for Table {}

pub(crate) fn render_key_type(key: &[DataType], out: &mut String) {
    let names: Vec<&str> = key.iter().map(|t| t.nft_name()).collect();
    out.push_str(&names.join(" . "));
}

pub(crate) fn render_map_type(map: &Map, out: &mut String) {
    render_key_type(&map.key, out);
    out.push_str(" : ");
    out.push_str(match map.data {
        MapData::Verdict => "verdict",
        MapData::Value(t) => t.nft_name(),
    });
}

pub(crate) fn render_elements<'a>(elements: impl IntoIterator<Item = &'a Key>, out: &mut String) {
    for (i, element) in elements.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        element.render(out);
    }
}

pub(crate) fn render_entries<'a>(
    entries: impl IntoIterator<Item = (&'a Key, &'a MapValue)>,
    out: &mut String,
) {
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        key.render(out);
        out.push_str(" : ");
        value.render(out);
    }
}
