//! Reading files of resources: multi-document YAML or JSON, `*List` kinds expanded to their items.
//!
//! Big files (10,000 policies) are common in practice, so documents are split at their `---`
//! markers and parsed and decoded on every core. YAML is read with `serde_norway` (libyaml's
//! algorithm; several times faster than `serde-saphyr` on large inputs) and written with
//! `serde-saphyr`, whose output quotes and indents as Calico's Go tools do.

use serde_json::Value;

use crate::error::FieldErrors;

mod strict;
use crate::parallel::par_map;
use crate::resource::Resource;
pub use strict::{MAX_DEPTH, MAX_DOCUMENT_BYTES};
use strict::{StrictValue, check_bounds};

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

/// The input could not be parsed as YAML or JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// Parse `text` (YAML with `---` separated documents, one JSON object, a JSON array, or
/// concatenated JSON objects) into raw values, skipping empty documents.
pub fn parse_values(text: &str) -> Result<Vec<Value>, SyntaxError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        check_bounds(text, 1).map_err(|refused| SyntaxError(format!("invalid JSON: {refused}")))?;
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(text).into_iter::<StrictValue>() {
            match v.map_err(|e| SyntaxError(format!("invalid JSON: {e}")))?.0 {
                Value::Array(items) => out.extend(items.into_iter().filter(|v| !v.is_null())),
                Value::Null => {}
                other => out.push(other),
            }
        }
        return Ok(out);
    }
    // One contiguous run of documents per core: per-document parser set-up is not free.
    let docs = split_yaml_documents(text);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_chunk = docs.len().div_ceil(threads).max(256);
    let chunks: Vec<YamlChunk<'_>> = docs
        .chunks(per_chunk)
        .filter_map(|run| {
            let (first, last) = (run.first()?, run.last()?);
            Some(YamlChunk {
                first_line: first.first_line,
                text: &text[first.start..last.end],
                documents: run
                    .iter()
                    .map(|d| (d.first_line, d.start - first.start, d.end - first.start))
                    .collect(),
            })
        })
        .collect();
    let parsed = par_map(chunks, |chunk| parse_yaml_chunk(&chunk));
    let mut out = Vec::with_capacity(parsed.len());
    for values in parsed {
        out.extend(values?);
    }
    Ok(out)
}

/// One YAML document's text and the line (from 1) it starts on in the whole input.
struct YamlDocument<'a> {
    first_line: usize,
    /// Byte range in the whole input.
    start: usize,
    end: usize,
    text: &'a str,
}

/// Split at document markers. A `---` (or `...`) at the start of a line always ends the document
/// before it in YAML, even inside a block scalar, so this never cuts a document in two.
fn split_yaml_documents(text: &str) -> Vec<YamlDocument<'_>> {
    let is_marker = |line: &str| {
        ["---", "..."].iter().any(|m| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
        })
    };
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare) {
            docs.push(YamlDocument {
                first_line: start_line,
                start,
                end: offset,
                text: &text[start..offset],
            });
            // The marker line itself may carry content after `--- `; keep it with the next document.
            start = offset
                + if bare.starts_with("---") {
                    3
                } else {
                    line.len()
                };
            start_line = n + 1;
        }
        offset += line.len();
    }
    docs.push(YamlDocument {
        first_line: start_line,
        start,
        end: text.len(),
        text: &text[start..],
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// A run of consecutive documents parsed by one thread.
struct YamlChunk<'a> {
    /// The line (from 1) the run starts on in the whole input.
    first_line: usize,
    text: &'a str,
    /// Each document's first line and byte range within `text`.
    documents: Vec<(usize, usize, usize)>,
}

fn parse_yaml_chunk(chunk: &YamlChunk<'_>) -> Result<Vec<Value>, SyntaxError> {
    use serde::Deserialize;
    // Size and depth first, document by document: a hostile document fails here in milliseconds.
    for &(first_line, start, end) in &chunk.documents {
        let text = chunk.text.get(start..end).unwrap_or("");
        check_bounds(text, first_line).map_err(|refused| {
            SyntaxError(format!(
                "invalid YAML in the document starting at line {first_line}: {refused}"
            ))
        })?;
    }
    let doc = chunk;
    let mut out = Vec::new();
    for de in serde_norway::Deserializer::from_str(doc.text) {
        let value = StrictValue::deserialize(de).map(|v| v.0).map_err(|e| {
            let at = e
                .location()
                .map(|l| {
                    format!(
                        " at line {} column {}",
                        l.line() + doc.first_line - 1,
                        l.column()
                    )
                })
                .unwrap_or_default();
            let message = e.to_string();
            // The parser's own "at line N column M" counts within the document: drop it.
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            SyntaxError(format!("invalid YAML{at}: {message}"))
        })?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Expand `kind: XList` / `kind: List` objects into their `items`.
pub fn expand_lists(values: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(values.len());
    for mut v in values {
        let is_list = v
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && v.get("items").is_some_and(Value::is_array);
        if is_list {
            if let Some(Value::Array(items)) = v.get_mut("items").map(Value::take) {
                out.extend(items.into_iter().filter(|i| !i.is_null()));
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
    let values: Vec<(usize, Value)> = expand_lists(parse_values(text)?)
        .into_iter()
        .enumerate()
        .collect();
    Ok(par_map(values, |(index, value)| {
        let text_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let kind = text_of(value.get("kind"));
        let name = text_of(value.get("metadata").and_then(|m| m.get("name")));
        Document {
            index,
            kind,
            name,
            resource: Resource::from_value(value),
        }
    }))
}

/// A value could not be rendered as YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot render as YAML: {0}")]
pub struct RenderError(String);

/// Render a JSON value as YAML, keys in the order the value holds them (sorted for `serde_json::Map`).
/// An error, never an empty text, if the value cannot be rendered.
pub fn to_yaml(value: &Value) -> Result<String, RenderError> {
    serde_saphyr::to_string(value).map_err(|e| RenderError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_markers_only() {
        let text =
            "a: 1\n---\nb: |\n  ---not a marker\n  x\n--- \nc: 3\n...\n# comment only\n---\n";
        let values = parse_values(text).unwrap();
        assert_eq!(
            values,
            vec![
                serde_json::json!({"a": 1}),
                serde_json::json!({"b": "---not a marker\nx\n"}),
                serde_json::json!({"c": 3})
            ]
        );
    }

    #[test]
    fn content_on_the_marker_line() {
        let values = parse_values("--- {a: 1}\n---\nb: 2\n--- {c: 3}\n").unwrap();
        assert_eq!(
            values,
            vec![
                serde_json::json!({"a": 1}),
                serde_json::json!({"b": 2}),
                serde_json::json!({"c": 3})
            ]
        );
    }

    #[test]
    fn syntax_errors_give_the_line_in_the_whole_file() {
        let text = "a: 1\n---\nb: 2\n---\nc: [unclosed\nd: 4\n";
        let err = parse_values(text).unwrap_err().to_string();
        assert!(err.starts_with("invalid YAML at line "), "{err}");
        let line: usize = err["invalid YAML at line ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((5..=7).contains(&line), "{err}");
    }

    #[test]
    fn many_documents_and_lists() {
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("---\nkind: IPPool\nmetadata:\n  name: p{i}\n"));
        }
        text.push_str("---\nkind: IPPoolList\nitems:\n- {kind: IPPool}\n- {kind: IPPool}\n");
        let values = expand_lists(parse_values(&text).unwrap());
        assert_eq!(values.len(), 3002);
        assert_eq!(values[2999]["metadata"]["name"], "p2999");
    }

    #[test]
    fn json_forms() {
        assert_eq!(parse_values("{\"a\":1}{\"b\":2}").unwrap().len(), 2);
        assert_eq!(parse_values("[{\"a\":1},{\"b\":2}]").unwrap().len(), 2);
        assert!(
            parse_values("{\"a\":")
                .unwrap_err()
                .to_string()
                .starts_with("invalid JSON")
        );
    }

    #[test]
    fn output_reads_back() {
        let v = serde_json::json!({"apiVersion": "projectcalico.org/v3", "items": [{"metadata": {"resourceVersion": "12", "labels": {"x": "true"}}}], "kind": "IPPoolList"});
        let text = to_yaml(&v).unwrap();
        assert!(text.contains("items:\n- metadata:\n"), "{text}");
        assert!(text.contains("resourceVersion: \"12\""), "{text}");
        assert_eq!(parse_values(&text).unwrap(), vec![v]);
    }
}
