//! Reading and writing Hugging Face tokenizer.json.
//!
//! Errors name the offending field as a path (`model.merges[3]`,
//! `pre_tokenizer.pretokenizers[0].behavior`) and, for unsupported
//! components, the supported values.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::added_tokens::AddedToken;
use super::bpe::{Bpe, BpeOptions};
use super::decoders::Decoder;
use super::normalizers::{Normalizer, ReplacePattern};
use super::pretokenizer::{PreTokenizer, SplitBehavior, SplitPattern};
use super::{PostProcessor, Tokenizer};
use crate::error::{Error, Result};

const NORMALIZERS: &str = "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence";
const PRE_TOKENIZERS: &str = "ByteLevel, Split, Digits, Sequence";
const DECODERS: &str = "ByteLevel, ByteFallback, Fuse, Strip, Replace, Sequence";
const POST_PROCESSORS: &str = "ByteLevel, TemplateProcessing, Sequence";

fn bad(path: &str, what: impl std::fmt::Display) -> Error {
    Error::invalid_config(format!("{path}: {what}"))
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| bad(path, "expected an object"))
}

fn str_field<'a>(obj: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("{path}.{key}"), "expected a string"))
}

fn opt_str(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("{path}.{key}"), "expected a string or null")),
    }
}

fn bool_field(obj: &Map<String, Value>, path: &str, key: &str, default: bool) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(&format!("{path}.{key}"), "expected true or false")),
    }
}

fn usize_field(obj: &Map<String, Value>, path: &str, key: &str) -> Result<usize> {
    obj.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad(&format!("{path}.{key}"), "expected a non-negative integer"))
}

fn list<'a>(obj: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a Vec<Value>> {
    obj.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(&format!("{path}.{key}"), "expected a list"))
}

fn type_of<'a>(obj: &'a Map<String, Value>, path: &str) -> Result<&'a str> {
    str_field(obj, path, "type")
}

fn unsupported(path: &str, kind: &str, supported: &str) -> Error {
    bad(
        &format!("{path}.type"),
        format!("unsupported {kind:?}; supported: {supported}"),
    )
}

fn pattern(obj: &Map<String, Value>, path: &str) -> Result<(String, bool)> {
    let p = object(
        obj.get("pattern")
            .ok_or_else(|| bad(&format!("{path}.pattern"), "missing"))?,
        &format!("{path}.pattern"),
    )?;
    if let Some(s) = p.get("String").and_then(Value::as_str) {
        return Ok((s.to_owned(), false));
    }
    if let Some(s) = p.get("Regex").and_then(Value::as_str) {
        return Ok((s.to_owned(), true));
    }
    Err(bad(
        &format!("{path}.pattern"),
        "expected {\"String\": ...} or {\"Regex\": ...}",
    ))
}

fn pattern_json(is_regex: bool, source: &str) -> Value {
    if is_regex {
        json!({ "Regex": source })
    } else {
        json!({ "String": source })
    }
}

fn normalizer(v: &Value, path: &str) -> Result<Normalizer> {
    let obj = object(v, path)?;
    Ok(match type_of(obj, path)? {
        "NFC" => Normalizer::Nfc,
        "NFD" => Normalizer::Nfd,
        "NFKC" => Normalizer::Nfkc,
        "NFKD" => Normalizer::Nfkd,
        "Lowercase" => Normalizer::Lowercase,
        "Prepend" => Normalizer::Prepend(str_field(obj, path, "prepend")?.to_owned()),
        "Replace" => {
            let (source, is_regex) = pattern(obj, path)?;
            Normalizer::Replace {
                pattern: ReplacePattern::new(&source, is_regex, &format!("{path}.pattern"))?,
                content: str_field(obj, path, "content")?.to_owned(),
            }
        }
        "Strip" => Normalizer::Strip {
            left: bool_field(obj, path, "strip_left", true)?,
            right: bool_field(obj, path, "strip_right", true)?,
        },
        "Sequence" => Normalizer::Sequence(
            list(obj, path, "normalizers")?
                .iter()
                .enumerate()
                .map(|(i, n)| normalizer(n, &format!("{path}.normalizers[{i}]")))
                .collect::<Result<_>>()?,
        ),
        other => return Err(unsupported(path, other, NORMALIZERS)),
    })
}

fn normalizer_json(n: &Normalizer) -> Value {
    match n {
        Normalizer::Nfc => json!({"type": "NFC"}),
        Normalizer::Nfd => json!({"type": "NFD"}),
        Normalizer::Nfkc => json!({"type": "NFKC"}),
        Normalizer::Nfkd => json!({"type": "NFKD"}),
        Normalizer::Lowercase => json!({"type": "Lowercase"}),
        Normalizer::Prepend(p) => json!({"type": "Prepend", "prepend": p}),
        Normalizer::Replace { pattern, content } => json!({
            "type": "Replace",
            "pattern": pattern_json(pattern.is_regex, &pattern.source),
            "content": content,
        }),
        Normalizer::Strip { left, right } => {
            json!({"type": "Strip", "strip_left": left, "strip_right": right})
        }
        Normalizer::Sequence(items) => json!({
            "type": "Sequence",
            "normalizers": items.iter().map(normalizer_json).collect::<Vec<_>>(),
        }),
    }
}

fn pre_tokenizer(v: &Value, path: &str) -> Result<PreTokenizer> {
    let obj = object(v, path)?;
    Ok(match type_of(obj, path)? {
        "ByteLevel" => PreTokenizer::ByteLevel {
            add_prefix_space: bool_field(obj, path, "add_prefix_space", true)?,
            trim_offsets: bool_field(obj, path, "trim_offsets", true)?,
            use_regex: bool_field(obj, path, "use_regex", true)?,
        },
        "Split" => {
            let (source, is_regex) = pattern(obj, path)?;
            let name = str_field(obj, path, "behavior")?;
            let behavior = SplitBehavior::from_name(name).ok_or_else(|| {
                bad(
                    &format!("{path}.behavior"),
                    format!(
                        "unsupported {name:?}; supported: {}",
                        SplitBehavior::NAMES.join(", ")
                    ),
                )
            })?;
            PreTokenizer::Split {
                pattern: SplitPattern::new(&source, is_regex)
                    .map_err(|e| bad(&format!("{path}.pattern"), e))?,
                behavior,
                invert: bool_field(obj, path, "invert", false)?,
            }
        }
        "Digits" => PreTokenizer::Digits {
            individual_digits: bool_field(obj, path, "individual_digits", false)?,
        },
        "Sequence" => PreTokenizer::Sequence(
            list(obj, path, "pretokenizers")?
                .iter()
                .enumerate()
                .map(|(i, p)| pre_tokenizer(p, &format!("{path}.pretokenizers[{i}]")))
                .collect::<Result<_>>()?,
        ),
        other => return Err(unsupported(path, other, PRE_TOKENIZERS)),
    })
}

fn pre_tokenizer_json(p: &PreTokenizer) -> Value {
    match p {
        PreTokenizer::ByteLevel {
            add_prefix_space,
            trim_offsets,
            use_regex,
        } => json!({
            "type": "ByteLevel",
            "add_prefix_space": add_prefix_space,
            "trim_offsets": trim_offsets,
            "use_regex": use_regex,
        }),
        PreTokenizer::Split {
            pattern,
            behavior,
            invert,
        } => json!({
            "type": "Split",
            "pattern": pattern_json(pattern.is_regex, &pattern.source),
            "behavior": behavior.name(),
            "invert": invert,
        }),
        PreTokenizer::Digits { individual_digits } => {
            json!({"type": "Digits", "individual_digits": individual_digits})
        }
        PreTokenizer::Sequence(items) => json!({
            "type": "Sequence",
            "pretokenizers": items.iter().map(pre_tokenizer_json).collect::<Vec<_>>(),
        }),
    }
}

fn decoder(v: &Value, path: &str) -> Result<Decoder> {
    let obj = object(v, path)?;
    Ok(match type_of(obj, path)? {
        "ByteLevel" => Decoder::ByteLevel,
        "ByteFallback" => Decoder::ByteFallback,
        "Fuse" => Decoder::Fuse,
        "Strip" => {
            let content = str_field(obj, path, "content")?;
            let mut chars = content.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(bad(&format!("{path}.content"), "expected one character"));
            };
            Decoder::Strip {
                content: c,
                start: usize_field(obj, path, "start")?,
                stop: usize_field(obj, path, "stop")?,
            }
        }
        "Replace" => {
            let (source, is_regex) = pattern(obj, path)?;
            Decoder::Replace {
                pattern: ReplacePattern::new(&source, is_regex, &format!("{path}.pattern"))?,
                content: str_field(obj, path, "content")?.to_owned(),
            }
        }
        "Sequence" => Decoder::Sequence(
            list(obj, path, "decoders")?
                .iter()
                .enumerate()
                .map(|(i, d)| decoder(d, &format!("{path}.decoders[{i}]")))
                .collect::<Result<_>>()?,
        ),
        other => return Err(unsupported(path, other, DECODERS)),
    })
}

fn decoder_json(d: &Decoder) -> Value {
    match d {
        Decoder::ByteLevel => json!({
            "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true
        }),
        Decoder::ByteFallback => json!({"type": "ByteFallback"}),
        Decoder::Fuse => json!({"type": "Fuse"}),
        Decoder::Strip {
            content,
            start,
            stop,
        } => json!({"type": "Strip", "content": content.to_string(), "start": start, "stop": stop}),
        Decoder::Replace { pattern, content } => json!({
            "type": "Replace",
            "pattern": pattern_json(pattern.is_regex, &pattern.source),
            "content": content,
        }),
        Decoder::Sequence(items) => json!({
            "type": "Sequence",
            "decoders": items.iter().map(decoder_json).collect::<Vec<_>>(),
        }),
    }
}

/// `(prefix, suffix)` ids of a post-processor's single-sequence template.
fn post_processor(v: &Value, path: &str) -> Result<(Vec<u32>, Vec<u32>)> {
    let obj = object(v, path)?;
    match type_of(obj, path)? {
        "ByteLevel" => Ok((Vec::new(), Vec::new())),
        "Sequence" => {
            let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
            for (i, p) in list(obj, path, "processors")?.iter().enumerate() {
                let (pre, suf) = post_processor(p, &format!("{path}.processors[{i}]"))?;
                // Later processors wrap the result of earlier ones.
                prefix.splice(0..0, pre);
                suffix.extend(suf);
            }
            Ok((prefix, suffix))
        }
        "TemplateProcessing" => template(obj, path),
        other => Err(unsupported(path, other, POST_PROCESSORS)),
    }
}

fn template(obj: &Map<String, Value>, path: &str) -> Result<(Vec<u32>, Vec<u32>)> {
    let specials = obj
        .get("special_tokens")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(&format!("{path}.special_tokens"), "expected an object"))?;
    let (mut prefix, mut suffix) = (Vec::new(), Vec::new());
    let mut seen_sequence = false;
    for (i, item) in list(obj, path, "single")?.iter().enumerate() {
        let item_path = format!("{path}.single[{i}]");
        let item = object(item, &item_path)?;
        if item.contains_key("Sequence") {
            seen_sequence = true;
            continue;
        }
        let name = item
            .get("SpecialToken")
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&item_path, "expected {\"Sequence\"} or {\"SpecialToken\"}"))?;
        let ids = specials
            .get(name)
            .and_then(|s| s.get("ids"))
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&format!("{path}.special_tokens.{name}.ids"), "missing"))?;
        let target = if seen_sequence {
            &mut suffix
        } else {
            &mut prefix
        };
        for id in ids {
            let id = id
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(&format!("{path}.special_tokens.{name}.ids"), "bad id"))?;
            target.push(id);
        }
    }
    Ok((prefix, suffix))
}

fn bpe_model(v: &Value) -> Result<Bpe> {
    let path = "model";
    let obj = object(v, path)?;
    match obj.get("type").and_then(Value::as_str) {
        Some("BPE") => {}
        None if obj.contains_key("merges") => {}
        Some(other) => return Err(unsupported(path, other, "BPE")),
        None => return Err(bad("model.type", "missing; supported: BPE")),
    }
    match obj.get("dropout") {
        None | Some(Value::Null) => {}
        Some(d) if d.as_f64() == Some(0.0) => {}
        Some(_) => return Err(bad("model.dropout", "unsupported; supported: null")),
    }
    let vocab_obj = obj
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("model.vocab", "expected an object of token -> id"))?;
    let mut vocab = HashMap::with_capacity(vocab_obj.len());
    for (token, id) in vocab_obj {
        let id = id
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(&format!("model.vocab[{token:?}]"), "expected an id"))?;
        vocab.insert(token.clone(), id);
    }
    let mut merges = Vec::new();
    for (i, m) in list(obj, path, "merges")?.iter().enumerate() {
        let pair = match m {
            Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())),
            Value::Array(items) => match items.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        };
        merges.push(pair.ok_or_else(|| {
            bad(
                &format!("model.merges[{i}]"),
                "expected \"left right\" or [\"left\", \"right\"]",
            )
        })?);
    }
    let options = BpeOptions {
        unk_token: opt_str(obj, path, "unk_token")?,
        continuing_subword_prefix: opt_str(obj, path, "continuing_subword_prefix")?,
        end_of_word_suffix: opt_str(obj, path, "end_of_word_suffix")?,
        fuse_unk: bool_field(obj, path, "fuse_unk", false)?,
        byte_fallback: bool_field(obj, path, "byte_fallback", false)?,
        ignore_merges: bool_field(obj, path, "ignore_merges", false)?,
    };
    Bpe::new(vocab, merges, options)
}

fn added_token(v: &Value, path: &str) -> Result<AddedToken> {
    let obj = object(v, path)?;
    let special = bool_field(obj, path, "special", false)?;
    Ok(AddedToken {
        id: obj
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(&format!("{path}.id"), "expected an id"))?,
        content: str_field(obj, path, "content")?.to_owned(),
        single_word: bool_field(obj, path, "single_word", false)?,
        lstrip: bool_field(obj, path, "lstrip", false)?,
        rstrip: bool_field(obj, path, "rstrip", false)?,
        normalized: bool_field(obj, path, "normalized", !special)?,
        special,
    })
}

fn optional<T>(
    root: &Map<String, Value>,
    key: &str,
    parse: impl Fn(&Value, &str) -> Result<T>,
) -> Result<Option<T>> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse(v, key).map(Some),
    }
}

/// Parses a tokenizer.json document.
pub fn from_str(text: &str) -> Result<Tokenizer> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid_config(format!("tokenizer.json is not valid JSON: {e}")))?;
    let root = object(&root, "tokenizer.json")?;
    for key in ["truncation", "padding"] {
        if !matches!(root.get(key), None | Some(Value::Null)) {
            return Err(bad(key, "unsupported; supported: null"));
        }
    }
    let model = bpe_model(root.get("model").ok_or_else(|| bad("model", "missing"))?)?;
    let added = match root.get("added_tokens") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| added_token(t, &format!("added_tokens[{i}]")))
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad("added_tokens", "expected a list")),
    };
    let post = match root.get("post_processor") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let (prefix, suffix) = post_processor(v, "post_processor")?;
            Some(PostProcessor {
                prefix,
                suffix,
                json: v.clone(),
            })
        }
    };
    Tokenizer::new(
        optional(root, "normalizer", normalizer)?,
        optional(root, "pre_tokenizer", pre_tokenizer)?,
        model,
        optional(root, "decoder", decoder)?,
        post,
        added,
    )
}

/// Reads a tokenizer.json file.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    from_str(&std::fs::read_to_string(path)?)
}

/// The tokenizer.json document of `tokenizer`, laid out as Hugging Face
/// writes it (vocabulary in id order, merges as pairs).
pub fn to_value(tokenizer: &Tokenizer) -> Value {
    let mut added: Vec<&AddedToken> = tokenizer.added_tokens().iter().collect();
    added.sort_by_key(|t| t.id);
    let model = tokenizer.model();
    let mut vocab: Vec<(&String, &u32)> = model.vocab().iter().collect();
    vocab.sort_by_key(|(_, id)| **id);
    let vocab: Map<String, Value> = vocab
        .into_iter()
        .map(|(t, id)| (t.clone(), json!(id)))
        .collect();
    let options = model.options();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added.iter().map(|t| json!({
            "id": t.id,
            "content": t.content,
            "single_word": t.single_word,
            "lstrip": t.lstrip,
            "rstrip": t.rstrip,
            "normalized": t.normalized,
            "special": t.special,
        })).collect::<Vec<_>>(),
        "normalizer": tokenizer.normalizer().map(normalizer_json),
        "pre_tokenizer": tokenizer.pre_tokenizer().map(pre_tokenizer_json),
        "post_processor": tokenizer.post_processor().map(|p| p.json.clone()),
        "decoder": tokenizer.decoder().map(decoder_json),
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": options.unk_token,
            "continuing_subword_prefix": options.continuing_subword_prefix,
            "end_of_word_suffix": options.end_of_word_suffix,
            "fuse_unk": options.fuse_unk,
            "byte_fallback": options.byte_fallback,
            "ignore_merges": options.ignore_merges,
            "vocab": vocab,
            "merges": model.merge_list().iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        },
    })
}

/// The tokenizer.json text of `tokenizer` (pretty-printed like Hugging Face's).
pub fn to_string(tokenizer: &Tokenizer) -> Result<String> {
    serde_json::to_string_pretty(&to_value(tokenizer))
        .map_err(|e| Error::internal(format!("serializing tokenizer.json: {e}")))
}

/// Writes tokenizer.json atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path`.
pub fn save(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    use std::io::Write;
    let text = to_string(tokenizer)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid_argument(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the temporary file is garbage either way.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
