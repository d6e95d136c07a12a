//! Reading a document into a JSON value the way Calico's parser does: a key given twice in one mapping
//! is an error naming its field path (`spec.cidr`), never "the last one wins". Also the cheap checks
//! made before any parsing: a document's size and nesting depth are bounded, so a hostile file fails in
//! milliseconds instead of keeping the YAML parser busy for seconds.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Calico's resources nest about ten levels deep; this leaves ample room and stays far below the
/// point where parsing a deeply nested file gets slow.
pub const MAX_DEPTH: usize = 64;

/// The largest single document (or JSON input) read. Big NetworkSets are a few MiB.
pub const MAX_DOCUMENT_BYTES: usize = 32 << 20;

/// A JSON value read with duplicate keys rejected.
pub struct StrictValue(pub Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Seed { at: &Path::Root }
            .deserialize(deserializer)
            .map(StrictValue)
    }
}

/// Where in the document a value is, kept as a chain so no path text is built unless it is reported.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => write!(f, "{key}"),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    at: &'a Path<'a>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML or JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own Value: a float JSON cannot hold (NaN, infinity) becomes null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let at = Path::Index(self.at, items.len());
            match seq.next_element_seed(Seed { at: &at })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Seed {
                at: &Path::Key(self.at, &key),
            })?;
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(first) => {
                    let key = first.key();
                    return Err(de::Error::custom(format_args!(
                        "{}: duplicate key {key:?} (a key may appear only once in a mapping)",
                        Path::Key(self.at, key)
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Why a document is refused before it is parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLarge { bytes: usize },
    TooDeep { line: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooLarge { bytes } => write!(
                f,
                "document is {bytes} bytes, more than the {MAX_DOCUMENT_BYTES} bytes a document may have"
            ),
            Refusal::TooDeep { line } => write!(
                f,
                "nesting deeper than {MAX_DEPTH} levels at line {line}: not a Calico resource"
            ),
        }
    }
}

/// Size and depth checks on a document's text, in one pass over it and before any parsing.
///
/// The depth counted is an upper bound on the parser's nesting (a property test checks it never counts
/// less, and at most about twice as much): block mappings and sequences by their columns (also a
/// sequence at its parent key's column, and items' contents), compact sequences (`- - x`) by their
/// dashes, and flow collections (`[`, `{`) by their brackets. Quoted text, comments and block scalars
/// (`|`, `>`) are skipped. `first_line` is the line
/// (from 1) the text starts on in its file, for the message.
pub fn check_bounds(text: &str, first_line: usize) -> Result<(), Refusal> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Refusal::TooLarge { bytes: text.len() });
    }
    let mut scan = Scanner::default();
    for (n, line) in text.lines().enumerate() {
        if scan.line(line) > MAX_DEPTH {
            return Err(Refusal::TooDeep {
                line: first_line + n,
            });
        }
    }
    Ok(())
}

/// The bytes the scan looks at; every other byte is plain text.
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let special = b" \t#-?:\"'[]{},\\|>";
    let mut i = 0;
    while i < special.len() {
        table[special[i] as usize] = true;
        i += 1;
    }
    table
};

/// One open block collection: the column its entries start at, and whether it is a sequence.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Level {
    column: usize,
    sequence: bool,
}

#[derive(Default)]
struct Scanner {
    /// The open block collections, outermost first.
    levels: Vec<Level>,
    /// Open `[` / `{`.
    flow: usize,
    /// Inside a quoted scalar (opened by this quote byte) that continues on the next line.
    quote: Option<u8>,
    /// Inside a block scalar: lines indented more than this belong to it.
    block_scalar: Option<usize>,
}

impl Scanner {
    /// Open a block collection at `column` unless that collection is already the innermost one.
    fn open(&mut self, column: usize, sequence: bool) {
        let level = Level { column, sequence };
        if self.levels.last() != Some(&level) {
            self.levels.push(level);
        }
    }

    /// Scan one line; returns the deepest nesting seen on it.
    fn line(&mut self, line: &str) -> usize {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if let Some(parent) = self.block_scalar {
            if content.trim().is_empty() || indent > parent {
                return 0;
            }
            self.block_scalar = None;
        }
        let block_context = self.quote.is_none() && self.flow == 0;
        if block_context {
            if content.trim().is_empty() || content.starts_with('#') {
                return 0;
            }
            while self.levels.last().is_some_and(|l| l.column > indent) {
                self.levels.pop();
            }
            let item = content.starts_with("- ") || content == "-";
            // A key at the column of a sequence that sits at its parent key's column ("indentless")
            // ends that sequence.
            if !item
                && self
                    .levels
                    .last()
                    .is_some_and(|l| l.sequence && l.column == indent)
            {
                self.levels.pop();
            }
            if !item && self.levels.last().is_none_or(|l| l.column != indent) {
                self.open(indent, false);
            }
        }
        let mut deepest = self.levels.len() + self.flow;
        // Bytes, not chars: every character that matters is ASCII, and no byte of a multi-byte UTF-8
        // character is.
        let bytes = content.as_bytes();
        // The byte before the current one that is not a space: a quote or bracket opens a quoted
        // scalar or a flow collection only where a value starts.
        let mut prev: Option<u8> = None;
        let mut prev_indicator = false;
        // A `#` after a space (or first on the line) starts a comment.
        let mut after_space = true;
        // Where the line's text ends, without a trailing comment or spaces.
        let mut text_end = 0;
        // After a block item's `- `: its content opens one more level where it starts.
        let mut item_content_pending = false;
        let mut i = 0;
        while let Some(&c) = bytes.get(i) {
            let next = bytes.get(i + 1).copied();
            let column = indent + i;
            i += 1;
            // Most bytes are plain text: nothing to decide.
            if self.quote.is_none() && !item_content_pending && !SPECIAL[usize::from(c)] {
                prev_indicator = false;
                after_space = false;
                prev = Some(c);
                text_end = i;
                continue;
            }
            if let Some(q) = self.quote {
                // An escaped character (`\"`) or a doubled single quote (`''`) does not close.
                let escaped =
                    (c == b'\\' && q == b'"') || (c == b'\'' && q == b'\'' && next == Some(b'\''));
                if escaped {
                    i += 1;
                } else if c == q {
                    self.quote = None;
                    prev = Some(c);
                    prev_indicator = false;
                }
                after_space = false;
                text_end = i;
                continue;
            }
            if c == b' ' || c == b'\t' {
                after_space = true;
                continue;
            }
            if c == b'#' && after_space {
                break;
            }
            let block_item = self.flow == 0
                && matches!(c, b'-' | b'?')
                && (prev.is_none() || (after_space && prev_indicator && prev != Some(b':')))
                && next.is_none_or(|n| n == b' ');
            if block_item {
                self.open(column, true);
                item_content_pending = true;
            } else if item_content_pending {
                // A block scalar (`- |`) is text, not a collection.
                if !matches!(c, b'|' | b'>') {
                    self.open(column, false);
                }
                item_content_pending = false;
            }
            deepest = deepest.max(self.levels.len() + self.flow);
            // In a flow collection a value may also start right after `[`, `{`, `,` or `:`; in block
            // context those are plain text (`a: b[c` is the string "b[c", `-'` a plain key).
            // Otherwise a value starts at the beginning of the line or after `: `, `- ` or `? `.
            let starts_value = prev.is_none()
                || (after_space && prev_indicator)
                || (self.flow > 0 && matches!(prev, Some(b'[' | b'{' | b',' | b':')));
            match c {
                b'"' | b'\'' if starts_value => self.quote = Some(c),
                b'[' | b'{' if starts_value => {
                    self.flow += 1;
                    deepest = deepest.max(self.levels.len() + self.flow);
                }
                b']' | b'}' if self.flow > 0 => self.flow -= 1,
                _ => {}
            }
            // `- `, `? ` (checked above) and `: ` are indicators; inside a plain scalar they are text.
            prev_indicator = block_item || (c == b':' && next.is_none_or(|n| n == b' '));
            after_space = false;
            prev = Some(c);
            text_end = i;
        }
        let text = content.get(..text_end).unwrap_or(content);
        if self.flow == 0 && self.quote.is_none() && starts_block_scalar(text) {
            // Its lines are those indented more than the collection holding it.
            self.block_scalar = Some(self.levels.last().map_or(indent, |l| l.column));
        }
        deepest
    }
}

/// A line ending in a block scalar header: `key: |`, `- >-`, `key: |2+`...
fn starts_block_scalar(line: &str) -> bool {
    let header = line.trim_end_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    let Some(before) = header
        .strip_suffix('|')
        .or_else(|| header.strip_suffix('>'))
    else {
        return false;
    };
    before.is_empty() || before.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        check_bounds(text, 1).is_ok()
    }

    #[test]
    fn ordinary_resources_pass() {
        let policy = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: a\n  labels: {app: web, 'x': \"[y\"}\nspec:\n  selector: app in {'a', 'b'} && !has(x)\n  ingress:\n  - action: Allow\n    source:\n      nets: [198.18.0.0/16, '198.19.0.0/16']\n      selector: \"it's [here\"\n    destination:\n      ports: [80, \"8080:8090\"]\n  description: |\n    text [[[[ {{{{\n          - - - - - - -\n  # comment [[[[\n";
        assert!(depth_ok(policy));
        let mut s = Scanner::default();
        let deepest = policy.lines().map(|l| s.line(l)).max().unwrap();
        assert!((5..=8).contains(&deepest), "{deepest}");
    }

    #[test]
    fn flow_block_and_compact_nesting_are_all_bounded() {
        let at = |depth: usize| {
            [
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
                format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth)),
                format!("{}x", "- ".repeat(depth)),
                (0..depth)
                    .map(|i| format!("{}k:\n", "  ".repeat(i)))
                    .collect::<String>(),
            ]
        };
        for text in at(MAX_DEPTH - 2) {
            assert!(depth_ok(&text), "{text}");
        }
        for text in at(MAX_DEPTH + 1) {
            assert!(
                matches!(check_bounds(&text, 1), Err(Refusal::TooDeep { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn quoted_and_block_scalars_are_not_structure() {
        let deep = "[".repeat(1000);
        assert!(depth_ok(&format!("a: \"{deep}\"\nb: '{deep}'\n")));
        assert!(depth_ok(&format!("a: |\n  {deep}\nb: >-\n  {deep}\n")));
        assert!(depth_ok(&format!("a: \"line one\n  {deep}\"\n")));
        assert!(depth_ok(&format!("a: b # {deep}\n")));
        assert!(depth_ok(&format!("a: b{deep}\n")), "plain scalar text");
    }

    #[test]
    fn the_refusal_names_the_line_in_the_file() {
        let text = format!("a: 1\nb:\n  c: {}\n", "[".repeat(100));
        assert_eq!(check_bounds(&text, 10), Err(Refusal::TooDeep { line: 12 }));
    }

    #[test]
    fn size_is_bounded() {
        let big = "#".repeat(MAX_DOCUMENT_BYTES + 1);
        assert_eq!(
            check_bounds(&big, 1),
            Err(Refusal::TooLarge {
                bytes: MAX_DOCUMENT_BYTES + 1
            })
        );
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let err = serde_json::from_str::<StrictValue>(
            r#"{"spec": {"ingress": [{"a": 1}, {"action": 1, "action": 2}]}}"#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("spec.ingress[1].action: duplicate key \"action\""),
            "{err}"
        );
        let ok = serde_json::from_str::<StrictValue>(
            r#"{"a": {"x": 1}, "b": {"x": [1.5, null, true]}}"#,
        )
        .unwrap();
        assert_eq!(
            ok.0,
            serde_json::json!({"a": {"x": 1}, "b": {"x": [1.5, null, true]}})
        );
    }

    mod props {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::*;

        /// Scalars full of the characters the scan treats specially.
        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-z\\[\\]{}#:,'\"|>\\-? \\n\\\\]{0,12}".prop_map(Value::String),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            scalar().prop_recursive(12, 64, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z#\\[:' -]{1,6}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Nesting as the parser sees it: a collection is one level more than its deepest item.
        fn depth(v: &Value) -> usize {
            match v {
                Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
                Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }

        fn scanned(text: &str) -> usize {
            let mut scan = Scanner::default();
            text.lines().map(|l| scan.line(l)).max().unwrap_or(0)
        }

        proptest! {
            /// The scan never counts less nesting than there is (so the bound protects), and never
            /// much more (so ordinary documents pass), for YAML as we write it and for JSON.
            #[test]
            fn the_scan_bounds_the_real_depth(v in value()) {
                let real = depth(&v);
                let yaml = crate::documents::to_yaml(&v).unwrap();
                for text in [yaml, serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
                    let counted = scanned(&text);
                    prop_assert!(counted >= real, "counted {counted} < {real}:\n{text}");
                    prop_assert!(counted <= 2 * real + 2, "counted {counted} for {real}:\n{text}");
                }
            }

            /// What we write reads back unchanged through the strict reader.
            #[test]
            fn written_yaml_reads_back(v in value()) {
                // Wrapped in a mapping: a bare top-level list in `[...]` form is read as JSON and its
                // items taken as separate documents.
                let doc = serde_json::json!({"v": v});
                let yaml = crate::documents::to_yaml(&doc).unwrap();
                prop_assert_eq!(crate::documents::parse_values(&yaml).unwrap(), vec![doc]);
            }
        }
    }
}
