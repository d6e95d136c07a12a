//! Calico's policy semantics as pure functions over a model updated one resource at a time.
//!
//! - [`PolicyModel`]: endpoints, network sets, tiers, policies, profiles and namespaces, updated
//!   per event; each update reports the selector-set membership changes it caused ([`SetDelta`]).
//! - [`PolicyModel::active_policies`]: the ordered tiers, policies and profiles that apply to a
//!   local endpoint in one direction.
//! - [`compile_policy`] / [`CompiledRule`]: a rule form independent of the kernel, selectors turned
//!   into set references ([`SetId`]).
//! - [`PolicyModel::evaluate`]: the verdict for one packet, with a trace of what was tried.

mod compile;
mod evaluate;
mod index;
mod model;
mod selectors;

pub use calico_api::spec::rule::{Action, Direction};
pub use compile::{
    CompileError, CompiledEntity, CompiledPolicy, CompiledRule, CompiledRules, IcmpMatch,
    IpVersion, PortRange, compile_policy, compile_profile,
};
pub use evaluate::{Decision, Packet, TraceStep, Verdict, VerdictAction};
pub use index::{SetDelta, SetElement, SetId, SetSpec};
pub use model::{
    ActivePolicies, ActiveTier, Endpoint, EndpointKey, ModelError, ModelUpdate, NamedPort,
    PolicyKey, PolicyKind, PolicyModel,
};
pub use selectors::{
    NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, NAMESPACE_NAME_LABEL, ORCHESTRATOR_LABEL,
    SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_LABEL_PREFIX,
};
