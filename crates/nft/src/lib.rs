//! Typed nftables for a table we own (`calico`): its sets, maps, chains and rules as Rust values.
//!
//! - [`value`], [`rule`], [`table`]: the types. Names, comments and values are validated when built,
//!   and kept in the canonical form nft lists them in, so a table read back compares equal to the one
//!   rendered.
//! - [`plan::plan`] (pure): the fewest [`Op`]s turning the observed table into the desired one, as one
//!   [`Transaction`] rendered to `nft -f` text.
//! - [`json`]: reads `nft -j list table` back into the same types (only our table, never the whole
//!   ruleset).
//! - [`driver::Nft`]: runs `nft` in the calling thread's network namespace with a time limit.
//!
//! Round trip: rules are compared expression by expression, not by comment. Values are canonical at
//! construction (a `/32` is an address, a one-port range a port, a one-element anonymous set a plain
//! value, protocol 6 is `tcp`, a `meta l4proto` a port match implies is left out), priorities compare
//! by number, counters compare without their values, and tables, sets and maps compare without
//! order. So render → load → `nft -j -p list table` → parse gives an equal [`Table`], and [`plan()`]
//! against it yields no ops; the kernel tests check this for every kind of object and for random
//! tables.
//!
//! Text, not JSON, goes to nft: it loads faster, and it is what the golden files show. The `nftables`
//! crate's typed JSON was not used for reading back either: its expression and statement types are a
//! generic tree that would still need mapping onto these types, it brings schemars and strum to
//! build, and a table holding anything we do not model must be an error naming it, which a small
//! reader over `serde_json::Value` does directly.

pub mod driver;
pub mod json;
pub mod plan;
pub mod rule;
pub mod table;
pub mod value;

pub use driver::{Nft, NftError};
pub use plan::{Op, Transaction, plan};
pub use rule::{Field, Match, Operand, PortEnd, PortProto, Rule, Statement, Verdict};
pub use table::{
    BaseChain, Chain, ChainType, Family, Hook, Map, MapData, MapValue, Policy, Priority,
    PriorityName, Set, SetFlags, Table,
};
pub use value::{
    Comment, CtState, DataType, IcmpType, Ifname, InvalidError, Key, L4Proto, LogPrefix, Name,
    Value,
};
