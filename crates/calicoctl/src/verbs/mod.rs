//! The resource verbs, one module each, and what they share: reading the input documents and the
//! messages Calico prints.

use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};
use calico_api::{FieldErrors, Kind, Resource};
use calico_datastore::client::ClientError;

use crate::input::read_sources;

pub mod delete;
pub mod get;
pub mod label;
pub mod node;
pub mod patch;
pub mod version;
pub mod write;

/// `N 'Kind' resource(s)` when all share a kind, else `N resource(s)`.
pub fn count_message(resources: &[Resource]) -> String {
    match single_kind(resources) {
        Some(kind) => format!("{} '{}' resource(s)", resources.len(), kind),
        None => format!("{} resource(s)", resources.len()),
    }
}

pub fn single_kind(resources: &[Resource]) -> Option<Kind> {
    let first = resources.first()?.kind();
    resources.iter().all(|r| r.kind() == first).then_some(first)
}

/// Documents read from the input, each with a description naming its file, index, kind and name.
pub struct Input {
    pub items: Vec<(String, Resource)>,
    /// One line per problem found so far (decoding, namespace, duplicates, and validation if asked).
    pub problems: Vec<String>,
}

impl Input {
    /// Print every problem and fail, or carry on when there are none.
    pub fn fail_on_problems(problems: &[String]) -> Result<()> {
        if problems.is_empty() {
            return Ok(());
        }
        for p in problems {
            eprintln!("{p}");
        }
        bail!(
            "Failed to execute command: {} problem(s) found in the input; nothing was written",
            problems.len()
        )
    }
}

/// Decode and default every document of the input, and validate them when `validate` is set (the
/// write verbs leave validation to the client, which also checks the stored state, so every object
/// is validated once). Kubernetes objects (NetworkPolicy, Namespace) are checked against
/// Kubernetes' rules and replaced by the Calico resources kube-controllers would store for them.
/// Problems are collected, not returned early, so a bad file is reported whole.
pub fn load(
    filename: &str,
    recursive: bool,
    namespace: Option<&str>,
    validate: bool,
) -> Result<Input> {
    let sources = read_sources(filename, recursive)?;
    let docs: Vec<(String, usize, Result<Resource, FieldErrors>)> = sources
        .into_iter()
        .flat_map(|src| {
            let source = src.source;
            src.documents.into_iter().map(move |doc| {
                let what = if doc.kind.is_empty() {
                    format!("{source}: document {}", doc.index)
                } else {
                    format!(
                        "{source}: document {} ({} {:?})",
                        doc.index, doc.kind, doc.name
                    )
                };
                (what, doc.index, doc.resource)
            })
        })
        .collect();
    let lines = |what: &str, errs: FieldErrors| {
        errs.iter()
            .map(|e| format!("{what}: {e}"))
            .collect::<Vec<_>>()
    };
    // Independent per document: use every core.
    let checked = calico_api::parallel::par_map(docs, |(what, index, decoded)| {
        let outcome = decoded
            .map_err(|errs| lines(&what, errs))
            .and_then(|mut res| {
                apply_namespace(&mut res, namespace).map_err(|e| vec![format!("{what}: {e}")])?;
                res.apply_defaults();
                // The converted resource comes complete: no defaults left to fill in.
                let res = calico_api::k8s::to_calico(res).map_err(|errs| lines(&what, errs))?;
                if validate {
                    res.validate().map_err(|errs| lines(&what, errs))?;
                }
                enforceable(&res).map_err(|e| vec![format!("{what}: {e}")])?;
                Ok(res)
            });
        (what, index, outcome)
    });
    let mut input = Input {
        items: Vec::with_capacity(checked.len()),
        problems: Vec::new(),
    };
    let mut seen: HashMap<(Kind, Option<String>, String), usize> = HashMap::new();
    for (what, index, outcome) in checked {
        match outcome {
            Err(problem_lines) => input.problems.extend(problem_lines),
            Ok(res) => {
                let id = (
                    res.kind(),
                    res.namespace().map(String::from),
                    res.name().to_string(),
                );
                if let Some(first) = seen.insert(id, index) {
                    input.problems.push(format!(
                        "{what}: metadata.name: duplicate of document {first}"
                    ));
                } else {
                    input.items.push((what, res));
                }
            }
        }
    }
    Ok(input)
}

/// A policy or profile calico-node could not enforce as written (Calico accepts `http` matches and
/// `services` rules, which need parts calico-rs does not have) is refused here rather than stored and
/// silently enforced as something else. Staged policies are never enforced, so they pass. A malformed
/// resource is left to validation, which names the field in the resource's own terms.
fn enforceable(res: &Resource) -> Result<(), calico_policy::CompileError> {
    let compiled = match &res.spec {
        calico_api::Spec::NetworkPolicy(_) | calico_api::Spec::GlobalNetworkPolicy(_) => {
            calico_policy::compile_policy(res).map(|_| ())
        }
        calico_api::Spec::Profile(spec) => {
            calico_policy::compile_profile(res.name(), spec).map(|_| ())
        }
        _ => Ok(()),
    };
    match compiled {
        Err(unsupported @ calico_policy::CompileError::Unsupported { .. }) => Err(unsupported),
        _ => Ok(()),
    }
}

/// `-n` fills in the namespace of namespaced resources; a different namespace in the file is an error.
pub fn apply_namespace(res: &mut Resource, namespace: Option<&str>) -> Result<()> {
    let Some(ns) = namespace else { return Ok(()) };
    if !res.kind().namespaced() {
        return Ok(());
    }
    match res.metadata.namespace.as_deref() {
        None | Some("") => res.metadata.namespace = Some(ns.to_string()),
        Some(own) if own == ns => {}
        Some(own) => {
            bail!("metadata.namespace: {own:?} does not match the namespace given with -n ({ns:?})")
        }
    }
    Ok(())
}

pub fn describe_error(e: &ClientError) -> String {
    match e {
        ClientError::Invalid { kind, name, errors } => errors
            .iter()
            .map(|fe| format!("{kind} {name:?}: {fe}"))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// The kind a user typed, or a clear error listing what is known.
pub fn parse_kind(name: &str) -> Result<Kind> {
    Kind::from_alias(name).ok_or_else(|| {
        anyhow!("Failed to execute command: resource type '{name}' is not supported")
    })
}
