//! calico-rs's resource model: every `projectcalico.org/v3` kind (and `networking.k8s.io/v1`
//! NetworkPolicy and `v1` Namespace) with Calico's defaults and validation rules, errors that name
//! the field path, document decoding (multi-document YAML and JSON, `*List` kinds), the selector
//! language, and the conversion of Kubernetes objects to what Calico's kube-controllers store.
//!
//! Everything here is pure: no I/O.

pub mod documents;
pub mod error;
pub mod k8s;
pub mod kind;
pub mod meta;
pub mod parallel;
pub mod resource;
pub mod selector;
pub mod spec;
pub mod validate;

pub use error::{FieldError, FieldErrors};
pub use kind::Kind;
pub use meta::ObjectMeta;
pub use resource::{Resource, Spec, SpecType};
pub use selector::{Labels, Selector, SelectorError};
