//! Reading files of resources: multi-document YAML or JSON, `*List` kinds expanded to their items.

use serde_json::Value;

use crate::error::FieldErrors;
use crate::resource::Resource;

/// One object found in a file, decoded or not.
#[derive(Debug)]
pub struct Document {
    /// Position among the objects of the file, from 0, counting list items one by one.
    pub index: usize,
    /// The `kind:` as written (for messages even when it is not a known kind).
    pub kind: String,
    /// `metadata.name` as written, or empty.
    pub name: String,
    pub resource: Result<Resource, FieldErrors>,
}

/// The whole input could not be parsed as YAML or JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// Parse `text` (YAML with `---` separated documents, one JSON object, a JSON array, or
/// concatenated JSON objects) into raw values, skipping empty documents.
pub fn parse_values(text: &str) -> Result<Vec<Value>, SyntaxError> {
    let trimmed = text.trim_start();
    let values: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let v = v.map_err(|e| SyntaxError(format!("invalid JSON: {e}")))?;
            match v {
                Value::Array(items) => out.extend(items),
                other => out.push(other),
            }
        }
        out
    } else {
        serde_saphyr::from_multiple::<Value>(text)
            .map_err(|e| SyntaxError(format!("invalid YAML: {e}")))?
    };
    Ok(values.into_iter().filter(|v| !v.is_null()).collect())
}

/// Expand `kind: XList` / `kind: List` objects into their `items`.
pub fn expand_lists(values: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let is_list = v
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && v.get("items").is_some();
        if is_list {
            if let Some(Value::Array(items)) = v.get("items") {
                out.extend(items.iter().filter(|i| !i.is_null()).cloned());
            }
        } else {
            out.push(v);
        }
    }
    out
}

/// Parse and decode every object in `text`. Syntax errors fail the whole input; each object then
/// carries its own decode result, so callers can report every bad document before writing anything.
pub fn decode_documents(text: &str) -> Result<Vec<Document>, SyntaxError> {
    let values = expand_lists(parse_values(text)?);
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Document {
                index,
                kind,
                name,
                resource: Resource::from_value(value),
            }
        })
        .collect())
}

/// Render a JSON value as YAML, keys in the order the value holds them (sorted for `serde_json::Map`).
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_default()
}
