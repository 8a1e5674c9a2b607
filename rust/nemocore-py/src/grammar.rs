//! `nemocore._rs` grammar functions: the front ends of
//! [`nemocore_core::grammar_text`] (GBNF, JSON Schema, regex -> Lark) and the
//! built-in grammars. Types are converted here, the work runs in `call`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "arguments are extracted as owned values: the work runs without the GIL"
)]

use nemocore_core::Error;
use nemocore_core::grammar_text;
use pyo3::prelude::*;

use crate::call;

/// Translates a GBNF grammar (llama.cpp notation) into Lark text.
#[pyfunction]
pub fn gbnf_to_lark(py: Python<'_>, source: String) -> PyResult<String> {
    call(py, || grammar_text::gbnf_to_lark(&source))
}

/// Translates a JSON Schema (JSON text) into Lark text.
#[pyfunction]
pub fn json_schema_to_lark(py: Python<'_>, schema: String) -> PyResult<String> {
    call(py, || grammar_text::json_schema_to_lark(&schema))
}

/// Lark text for "the whole text matches this regular expression".
#[pyfunction]
pub fn regex_to_lark(py: Python<'_>, pattern: String) -> PyResult<String> {
    call(py, || grammar_text::regex_to_lark(&pattern))
}

/// The built-in grammar `name` ("json" or "python"): (Lark text, whether it
/// needs the Python indenter).
#[pyfunction]
pub fn builtin_grammar(py: Python<'_>, name: String) -> PyResult<(String, bool)> {
    call(py, || {
        grammar_text::builtin(&name)
            .map(|(text, indenter)| (text.to_string(), indenter))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "unknown built-in grammar {name:?}; expected one of {:?}",
                    grammar_text::BUILTIN_NAMES
                ))
            })
    })
}
