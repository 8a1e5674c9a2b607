//! JSON Schema -> Lark.
//!
//! Every schema node becomes one Lark rule (named after its JSON pointer), so
//! `$ref` cycles are plain recursive rules. White space between JSON tokens
//! is free (`%ignore`), as RFC 8259 allows. What is supported and what is
//! rejected is listed in `docs/grammar.md`; rejected keywords are errors that
//! name the keyword, the JSON pointer and the line and column of the node.

use std::fmt::Write as _;

use std::collections::HashMap;

use super::json_scalars::{
    FORMATS, JSON_CHAR, JSON_INTEGER, JSON_NUMBER, integer_range, string_with_format,
    string_with_length, string_with_pattern,
};
use super::json_value::{Spanned, Value, json_string, parse};
use super::lark_out::{rule_name, string_literal};
use super::source::error_at;
use crate::{Error, Result};

/// Keywords that only annotate; they never change what is generated.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$anchor",
    "contentMediaType",
    "contentEncoding",
    "$defs",
    "definitions",
];

/// Keywords we cannot express as a context-free grammar (or have not done).
const UNSUPPORTED: &[&str] = &[
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "if",
    "then",
    "else",
    "not",
    "contains",
    "minContains",
    "maxContains",
    "multipleOf",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
];

/// Translates a JSON Schema (JSON text) into a Lark grammar for the JSON
/// documents it accepts.
pub fn json_schema_to_lark(schema: &str) -> Result<String> {
    let root = parse(schema)?;
    let mut c = Compiler {
        src: schema,
        root: &root,
        rules: Vec::new(),
        by_pointer: HashMap::new(),
        generic: false,
    };
    let start = c.node(&root, "")?;
    let mut out = format!("start: {start}\n");
    for (name, body) in &c.rules {
        let _ = writeln!(out, "{name}: {body}");
    }
    if c.generic {
        out.push_str(GENERIC_JSON);
        let _ = writeln!(out, "JSON_NUMBER: /{JSON_NUMBER}/");
    }
    let _ = writeln!(out, "JSON_STRING: /\"{JSON_CHAR}*\"/");
    out.push_str("JSON_WS: /[ \\t\\n\\r]+/\n%ignore JSON_WS\n");
    Ok(out)
}

/// Rules for any JSON value, used by `true`, `{}` and `additionalProperties: true`.
const GENERIC_JSON: &str = concat!(
    "json_value: json_object | json_array | JSON_STRING | JSON_NUMBER | \"true\" | \"false\" | \"null\"\n",
    "json_object: \"{\" [json_member (\",\" json_member)*] \"}\"\n",
    "json_member: JSON_STRING \":\" json_value\n",
    "json_array: \"[\" [json_value (\",\" json_value)*] \"]\"\n",
);

struct Compiler<'a> {
    src: &'a str,
    root: &'a Spanned,
    rules: Vec<(String, String)>,
    by_pointer: HashMap<String, String>,
    generic: bool,
}

impl<'a> Compiler<'a> {
    fn error(&self, node: &Spanned, pointer: &str, message: &str) -> Error {
        let at = if pointer.is_empty() {
            "the root"
        } else {
            pointer
        };
        error_at(
            self.src,
            node.offset,
            format!("JSON Schema at {at}: {message}"),
        )
    }

    /// The rule for the schema `node` at `pointer` (compiled once per pointer).
    fn node(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        if let Some(name) = self.by_pointer.get(pointer) {
            return Ok(name.clone());
        }
        let hint = pointer.rsplit('/').next().unwrap_or("");
        let name = rule_name(
            self.rules.len(),
            if pointer.is_empty() { "root" } else { hint },
        );
        self.by_pointer.insert(pointer.to_string(), name.clone());
        let index = self.rules.len();
        self.rules.push((name.clone(), String::new()));
        let body = self.body(node, pointer)?;
        self.rules[index].1 = body;
        Ok(name)
    }

    fn body(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        let members = match &node.value {
            Value::Bool(true) => return Ok(self.any_value()),
            Value::Bool(false) => {
                return Err(self.error(node, pointer, "the schema `false` accepts no document"));
            }
            Value::Object(members) => members,
            _ => return Err(self.error(node, pointer, "a schema must be an object or a boolean")),
        };
        for (key, value) in members {
            if UNSUPPORTED.contains(&key.as_str()) {
                let msg = format!(
                    "keyword {key:?} is not supported (it cannot be enforced while generating); remove it"
                );
                return Err(self.error(value, &format!("{pointer}/{key}"), &msg));
            }
        }
        if let Some(r) = node.get("$ref") {
            return self.reference(node, r, pointer);
        }
        if let Some(v) = node.get("const") {
            return Ok(literal(v));
        }
        if let Some(e) = node.get("enum") {
            let Value::Array(values) = &e.value else {
                return Err(self.error(e, &format!("{pointer}/enum"), "enum must be an array"));
            };
            if values.is_empty() {
                return Err(self.error(
                    e,
                    &format!("{pointer}/enum"),
                    "an empty enum accepts nothing",
                ));
            }
            return Ok(values.iter().map(literal).collect::<Vec<_>>().join(" | "));
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = node.get(key) {
                return self.combination(node, key, list, pointer);
            }
        }
        self.typed(node, pointer)
    }

    fn reference(&mut self, node: &'a Spanned, r: &'a Spanned, pointer: &str) -> Result<String> {
        let here = format!("{pointer}/$ref");
        let Value::String(target) = &r.value else {
            return Err(self.error(r, &here, "$ref must be a string"));
        };
        if let Value::Object(members) = &node.value
            && let Some((key, _)) = members
                .iter()
                .find(|(k, _)| k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
        {
            let msg = format!(
                "$ref next to {key:?} is not supported; move {key:?} into the referenced schema"
            );
            return Err(self.error(node, pointer, &msg));
        }
        let Some(path) = target.strip_prefix('#') else {
            return Err(self.error(r, &here, "only local references (\"#/...\") are supported"));
        };
        let mut target_node = self.root;
        for part in path.split('/').skip(1) {
            let part = part.replace("~1", "/").replace("~0", "~");
            let next = match &target_node.value {
                Value::Object(_) => target_node.get(&part),
                Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            target_node =
                next.ok_or_else(|| self.error(r, &here, &format!("{target:?} does not resolve")))?;
        }
        self.node(target_node, path)
    }

    fn combination(
        &mut self,
        node: &'a Spanned,
        key: &str,
        list: &'a Spanned,
        pointer: &str,
    ) -> Result<String> {
        let here = format!("{pointer}/{key}");
        let Value::Array(items) = &list.value else {
            return Err(self.error(list, &here, &format!("{key} must be an array of schemas")));
        };
        if let Value::Object(members) = &node.value
            && let Some((other, _)) = members
                .iter()
                .find(|(k, _)| k != key && !ANNOTATIONS.contains(&k.as_str()))
        {
            let msg = format!(
                "{key} next to {other:?} is not supported; move {other:?} into each branch"
            );
            return Err(self.error(node, pointer, &msg));
        }
        if key == "allOf" && items.len() != 1 {
            return Err(self.error(
                list,
                &here,
                "allOf with more than one schema is not supported",
            ));
        }
        if items.is_empty() {
            return Err(self.error(list, &here, &format!("an empty {key} accepts nothing")));
        }
        // oneOf is generated as anyOf: exclusivity is not context-free in general.
        let mut alts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            alts.push(self.node(item, &format!("{here}/{i}"))?);
        }
        Ok(alts.join(" | "))
    }

    fn any_value(&mut self) -> String {
        self.generic = true;
        "json_value".to_string()
    }

    fn typed(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        let types: Vec<String> = match node.get("type").map(|t| &t.value) {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| match &t.value {
                    Value::String(s) => Ok(s.clone()),
                    _ => {
                        Err(self.error(t, &format!("{pointer}/type"), "type names must be strings"))
                    }
                })
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(self.error(
                    node,
                    &format!("{pointer}/type"),
                    "type must be a string or an array",
                ));
            }
            None => match infer_type(node) {
                Some(t) => vec![t.to_string()],
                None => return Ok(self.any_value()),
            },
        };
        let mut alts = Vec::new();
        for t in &types {
            alts.push(match t.as_str() {
                "string" => self.string(node, pointer)?,
                "integer" => self.integer(node, pointer)?,
                "number" => self.number(node, pointer)?,
                "boolean" => "\"true\" | \"false\"".to_string(),
                "null" => "\"null\"".to_string(),
                "object" => self.object(node, pointer)?,
                "array" => self.array(node, pointer)?,
                other => {
                    let msg = format!("unknown type {other:?}; expected string, integer, number, boolean, null, object or array");
                    return Err(self.error(node, &format!("{pointer}/type"), &msg));
                }
            });
        }
        Ok(alts.join(" | "))
    }

    fn count(&self, node: &Spanned, key: &str, pointer: &str) -> Result<Option<u32>> {
        let Some(v) = node.get(key) else {
            return Ok(None);
        };
        match &v.value {
            Value::Number(n) => n.parse::<u32>().map(Some).map_err(|_| {
                self.error(
                    v,
                    &format!("{pointer}/{key}"),
                    &format!("{key} must be a non-negative integer"),
                )
            }),
            _ => Err(self.error(
                v,
                &format!("{pointer}/{key}"),
                &format!("{key} must be a number"),
            )),
        }
    }

    fn string(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        let min = self.count(node, "minLength", pointer)?;
        let max = self.count(node, "maxLength", pointer)?;
        let pattern = node.get("pattern");
        let format = node.get("format");
        if (pattern.is_some() || format.is_some()) && (min.is_some() || max.is_some()) {
            return Err(self.error(
                node,
                pointer,
                "minLength/maxLength together with pattern or format is not supported",
            ));
        }
        if pattern.is_some() && format.is_some() {
            return Err(self.error(
                node,
                pointer,
                "pattern together with format is not supported",
            ));
        }
        let regex = if let Some(p) = pattern {
            let Value::String(text) = &p.value else {
                return Err(self.error(
                    p,
                    &format!("{pointer}/pattern"),
                    "pattern must be a string",
                ));
            };
            string_with_pattern(text).map_err(|e| self.pattern_error(p, pointer, e))?
        } else if let Some(f) = format {
            let name = match &f.value {
                Value::String(s) => s.as_str(),
                _ => "",
            };
            string_with_format(name).ok_or_else(|| {
                let known: Vec<&str> = FORMATS.iter().map(|(n, _)| *n).collect();
                self.error(
                    f,
                    &format!("{pointer}/format"),
                    &format!(
                        "unsupported format {name:?}; supported: {}",
                        known.join(", ")
                    ),
                )
            })?
        } else if min.is_some() || max.is_some() {
            if let (Some(a), Some(b)) = (min, max)
                && a > b
            {
                return Err(self.error(node, pointer, "minLength is larger than maxLength"));
            }
            string_with_length(min.unwrap_or(0), max)
        } else {
            return Ok("JSON_STRING".to_string());
        };
        Ok(format!("/{regex}/"))
    }

    fn pattern_error(&self, p: &Spanned, pointer: &str, err: Error) -> Error {
        let detail = match err {
            Error::Grammar {
                column, message, ..
            } => format!("{message} (pattern column {column})"),
            other => other.to_string(),
        };
        self.error(p, &format!("{pointer}/pattern"), &detail)
    }

    fn bound(&self, node: &Spanned, key: &str, pointer: &str) -> Result<Option<f64>> {
        let Some(v) = node.get(key) else {
            return Ok(None);
        };
        match &v.value {
            Value::Number(n) => Ok(n.parse::<f64>().ok()),
            Value::Bool(_) if key.starts_with("exclusive") => Err(self.error(
                v,
                &format!("{pointer}/{key}"),
                "boolean exclusiveMinimum/Maximum (draft 4) is not supported; use a number",
            )),
            _ => Err(self.error(
                v,
                &format!("{pointer}/{key}"),
                &format!("{key} must be a number"),
            )),
        }
    }

    fn integer(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        let lo = [("minimum", 0.0), ("exclusiveMinimum", 1.0)]
            .iter()
            .filter_map(|(k, d)| {
                self.bound(node, k, pointer)
                    .transpose()
                    .map(|b| b.map(|b| (b + d).ceil()))
            })
            .collect::<Result<Vec<f64>>>()?
            .into_iter()
            .reduce(f64::max);
        let hi = [("maximum", 0.0), ("exclusiveMaximum", 1.0)]
            .iter()
            .filter_map(|(k, d)| {
                self.bound(node, k, pointer)
                    .transpose()
                    .map(|b| b.map(|b| (b - d).floor()))
            })
            .collect::<Result<Vec<f64>>>()?
            .into_iter()
            .reduce(f64::min);
        if lo.is_none() && hi.is_none() {
            return Ok(format!("/{JSON_INTEGER}/"));
        }
        #[allow(
            clippy::cast_possible_truncation,
            reason = "bounds beyond 1e30 are clamped, as no generator reaches them"
        )]
        let to_int = |f: f64| f.clamp(-1e30, 1e30) as i128;
        let (lo, hi) = (lo.map(to_int), hi.map(to_int));
        if let (Some(a), Some(b)) = (lo, hi)
            && a > b
        {
            return Err(self.error(
                node,
                pointer,
                "no integer lies between the minimum and the maximum",
            ));
        }
        Ok(format!("/{}/", integer_range(lo, hi)))
    }

    fn number(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
            if node.get(key).is_some() {
                let msg = format!(
                    "{key} on type number is not supported (it is on integer); remove it or use integer"
                );
                return Err(self.error(node, &format!("{pointer}/{key}"), &msg));
            }
        }
        Ok(format!("/{JSON_NUMBER}/"))
    }

    fn object(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        let mut props: Vec<(String, String, bool)> = Vec::new(); // (key literal, rule, required)
        let required: Vec<String> = match node.get("required").map(|r| &r.value) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| {
                    if let Value::String(s) = &i.value {
                        Some(s.clone())
                    } else {
                        None
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        if let Some(p) = node.get("properties") {
            let Value::Object(members) = &p.value else {
                return Err(self.error(
                    p,
                    &format!("{pointer}/properties"),
                    "properties must be an object",
                ));
            };
            for (key, sub) in members {
                let rule = self.node(
                    sub,
                    &format!(
                        "{pointer}/properties/{}",
                        key.replace('~', "~0").replace('/', "~1")
                    ),
                )?;
                props.push((
                    string_literal(&json_string(key)),
                    rule,
                    required.contains(key),
                ));
            }
        }
        for name in &required {
            if !props
                .iter()
                .any(|(k, _, _)| *k == string_literal(&json_string(name)))
            {
                let msg =
                    format!("required property {name:?} is not listed in properties; add it there");
                return Err(self.error(node, &format!("{pointer}/required"), &msg));
            }
        }
        let additional = match node.get("additionalProperties") {
            None
            | Some(Spanned {
                value: Value::Bool(false),
                ..
            }) => None,
            Some(Spanned {
                value: Value::Bool(true),
                ..
            }) => Some(format!("JSON_STRING \":\" {}", self.any_value())),
            Some(s) => Some(format!(
                "JSON_STRING \":\" {}",
                self.node(s, &format!("{pointer}/additionalProperties"))?
            )),
        };
        Ok(self.object_rules(&props, additional.as_deref()))
    }

    /// `{` members `}` with the properties in schema order, optional ones
    /// skippable, commas exactly between members. Rule `first_k` starts at
    /// property k with nothing written yet; `rest_k` after something was.
    fn object_rules(
        &mut self,
        props: &[(String, String, bool)],
        additional: Option<&str>,
    ) -> String {
        let base = rule_name(self.rules.len(), "obj");
        let first = |k: usize| format!("{base}_f{k}");
        let rest = |k: usize| format!("{base}_r{k}");
        let n = props.len();
        let (first_end, rest_end) = match additional {
            Some(a) => (format!("[{a} (\",\" {a})*]"), format!("(\",\" {a})*")),
            None => (String::new(), String::new()),
        };
        self.rules.push((first(n), first_end));
        self.rules.push((rest(n), rest_end));
        for (k, (key, rule, required)) in props.iter().enumerate().rev() {
            let member = format!("{key} \":\" {rule}");
            let mut f = format!("{member} {}", rest(k + 1));
            let mut r = format!("\",\" {member} {}", rest(k + 1));
            if !required {
                let _ = write!(f, " | {}", first(k + 1));
                let _ = write!(r, " | {}", rest(k + 1));
            }
            self.rules.push((first(k), f));
            self.rules.push((rest(k), r));
        }
        format!("\"{{\" {} \"}}\"", first(0))
    }

    fn array(&mut self, node: &'a Spanned, pointer: &str) -> Result<String> {
        if let Some(u) = node.get("uniqueItems")
            && matches!(u.value, Value::Bool(true))
        {
            return Err(self.error(
                u,
                &format!("{pointer}/uniqueItems"),
                "uniqueItems: true is not supported; remove it",
            ));
        }
        let mut prefix = Vec::new();
        let (prefix_key, rest_key) = match node.get("items").map(|i| &i.value) {
            Some(Value::Array(_)) => ("items", "additionalItems"),
            _ => ("prefixItems", "items"),
        };
        if let Some(Spanned {
            value: Value::Array(items),
            ..
        }) = node.get(prefix_key)
        {
            for (i, item) in items.iter().enumerate() {
                prefix.push(self.node(item, &format!("{pointer}/{prefix_key}/{i}"))?);
            }
        }
        let rest = match node.get(rest_key) {
            Some(Spanned {
                value: Value::Bool(false),
                ..
            }) => None,
            None if !prefix.is_empty() => None,
            None => Some(self.any_value()),
            Some(s) => Some(self.node(s, &format!("{pointer}/{rest_key}"))?),
        };
        let min = self.count(node, "minItems", pointer)?.unwrap_or(0);
        let max = self.count(node, "maxItems", pointer)?;
        if max.is_some_and(|m| m < min) {
            return Err(self.error(node, pointer, "minItems is larger than maxItems"));
        }
        let k = u32::try_from(prefix.len()).unwrap_or(u32::MAX);
        if max.is_some_and(|m| m < k) {
            return Err(self.error(
                node,
                pointer,
                "maxItems is smaller than the number of prefixItems (all are generated)",
            ));
        }
        let mut seq: Vec<String> = prefix;
        if let Some(item) = rest {
            let lo = min.saturating_sub(k);
            let hi = max.map(|m| m - k);
            seq.extend(repeated_items(&item, lo, hi, seq.is_empty()));
        } else if min > k {
            return Err(self.error(
                node,
                pointer,
                "minItems needs more items than the schema allows",
            ));
        }
        let body = join_with_commas(&seq);
        Ok(format!("\"[\" {body} \"]\""))
    }
}

/// `lo..=hi` copies of `item`; the first copy has no comma when `leading`.
fn repeated_items(item: &str, lo: u32, hi: Option<u32>, leading: bool) -> Vec<String> {
    if hi == Some(0) {
        return Vec::new();
    }
    let tail = |lo: u32, hi: Option<u32>| -> String {
        match (lo, hi) {
            (_, Some(0)) => String::new(),
            (0, None) => format!("(\",\" {item})*"),
            (l, None) => format!("(\",\" {item}) ~ {l} (\",\" {item})*"),
            (l, Some(h)) if l == h => format!("(\",\" {item}) ~ {l}"),
            (l, Some(h)) => format!("(\",\" {item}) ~ {l}..{h}"),
        }
    };
    if leading {
        let inner = format!("{item} {}", tail(lo.saturating_sub(1), hi.map(|h| h - 1)));
        if lo == 0 {
            vec![format!("[{inner}]")]
        } else {
            vec![inner]
        }
    } else {
        vec![format!("<TAIL>{}", tail(lo, hi))]
    }
}

/// Joins array pieces with `","`; pieces marked `<TAIL>` carry their own commas.
fn join_with_commas(seq: &[String]) -> String {
    let mut out = String::new();
    for (i, piece) in seq.iter().enumerate() {
        if let Some(tail) = piece.strip_prefix("<TAIL>") {
            out.push_str(tail);
        } else {
            if i > 0 {
                out.push_str(" \",\" ");
            }
            out.push_str(piece);
        }
        out.push(' ');
    }
    out.trim_end().to_string()
}

/// The type a schema without `type` implies from its keywords.
fn infer_type(node: &Spanned) -> Option<&'static str> {
    let has = |keys: &[&str]| keys.iter().any(|k| node.get(k).is_some());
    if has(&["properties", "required", "additionalProperties"]) {
        Some("object")
    } else if has(&["items", "prefixItems", "minItems", "maxItems"]) {
        Some("array")
    } else if has(&["pattern", "minLength", "maxLength", "format"]) {
        Some("string")
    } else if has(&["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) {
        Some("number")
    } else {
        None
    }
}

/// A JSON value as a sequence of Lark literals (white space may go between).
fn literal(v: &Spanned) -> String {
    match &v.value {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(literal).collect();
            format!("\"[\" {} \"]\"", inner.join(" \",\" "))
        }
        Value::Object(members) => {
            let inner: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{} \":\" {}", string_literal(&json_string(k)), literal(v)))
                .collect();
            format!("\"{{\" {} \"}}\"", inner.join(" \",\" "))
        }
        _ => string_literal(&v.to_json()),
    }
}
