//! Front ends that translate other grammar notations into Lark text, and the
//! built-in grammars.
//!
//! The engine ([`crate::grammar`]) reads one notation, the Lark subset of the
//! grammar contract; everything else is translated to it here:
//!
//! - [`gbnf_to_lark`]: llama.cpp's GBNF (`root ::= ...`).
//! - [`json_schema_to_lark`]: a JSON Schema document (the subset listed in
//!   `docs/grammar.md`; anything else is an error naming the keyword and the
//!   JSON pointer of the node that uses it).
//! - [`regex_to_lark`]: one regular expression that must match the whole text.
//! - [`builtin`]: the embedded `json.lark` (RFC 8259) and `python.lark`.
//!
//! Errors are [`crate::Error::Grammar`] with the 1-based line and column in
//! the text the user gave (the schema text for JSON Schema).

mod gbnf;
mod json_scalars;
mod json_schema;
mod json_value;
mod lark_out;
mod regex;
mod source;

pub use gbnf::gbnf_to_lark;
pub use json_schema::json_schema_to_lark;
pub use regex::regex_to_lark;

/// RFC 8259 JSON, exactly (see the comments in the file).
pub const JSON_LARK: &str = include_str!("json.lark");
/// Python 3 (the language reference's grammar), to be used with the indenter.
pub const PYTHON_LARK: &str = include_str!("python.lark");

/// The built-in grammar called `name` ("json" or "python"): its Lark text and
/// whether the engine must run the Python indenter over it.
pub fn builtin(name: &str) -> Option<(&'static str, bool)> {
    match name {
        "json" => Some((JSON_LARK, false)),
        "python" => Some((PYTHON_LARK, true)),
        _ => None,
    }
}

/// Names accepted by [`builtin`], for error messages.
pub const BUILTIN_NAMES: &[&str] = &["json", "python"];
