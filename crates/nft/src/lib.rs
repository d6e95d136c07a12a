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
