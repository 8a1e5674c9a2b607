//! `nemocore._rs` grammar classes and functions: the engine of
//! [`nemocore_core::grammar`] (`Grammar`, `TokenTable`, `Matcher`), the front
//! ends of [`nemocore_core::grammar_text`] (GBNF, JSON Schema, regex -> Lark)
//! and the built-in grammars. Types are converted here, the work runs in `call`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "arguments are extracted as owned values: the work runs without the GIL"
)]

use std::sync::{Arc, Mutex};

use nemocore_core::Error;
use nemocore_core::grammar::{Grammar, GrammarOptions, Matcher, TokenTable};
use nemocore_core::grammar_text;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

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

/// A compiled grammar (immutable, shared by every matcher over it).
#[pyclass(name = "Grammar", module = "nemocore._rs", frozen)]
pub struct PyGrammar {
    inner: Arc<Grammar>,
}

#[pymethods]
impl PyGrammar {
    /// Compiles Lark text; `python_indenter` lexes longest-match with the
    /// Python indenter (for the built-in Python grammar).
    #[staticmethod]
    #[pyo3(signature = (text, start="start".to_string(), python_indenter=false))]
    fn from_lark(
        py: Python<'_>,
        text: String,
        start: String,
        python_indenter: bool,
    ) -> PyResult<Self> {
        let opts = GrammarOptions {
            start,
            python_indenter,
        };
        let inner = call(py, || Grammar::from_lark_with(&text, &opts))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Whether the whole `data` (UTF-8 bytes) is a sentence of the grammar.
    fn accepts(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<bool> {
        let data = data.as_bytes().to_vec();
        call(py, || Ok(self.inner.accepts(&data)))
    }

    /// Whether `data` can be continued into a sentence of the grammar.
    fn accepts_prefix(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<bool> {
        let data = data.as_bytes().to_vec();
        call(py, || Ok(self.inner.accepts_prefix(&data)))
    }

    /// Warnings from compiling (unused or unproductive rules, ...).
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }
}

/// A vocabulary prepared for token masks (built once per tokenizer).
#[pyclass(name = "TokenTable", module = "nemocore._rs", frozen)]
pub struct PyTokenTable {
    inner: Arc<TokenTable>,
}

#[pymethods]
impl PyTokenTable {
    /// `tokens[i]`: bytes of token id i (b"" for ids without bytes);
    /// `special` ids are never allowed, `eos` ids only where the grammar can
    /// end; `vocab_size` >= len(tokens) is the model's vocabulary size.
    #[new]
    fn new(
        py: Python<'_>,
        tokens: Vec<Bound<'_, PyBytes>>,
        special: Vec<u32>,
        eos: Vec<u32>,
        vocab_size: usize,
    ) -> PyResult<Self> {
        let tokens: Vec<Vec<u8>> = tokens.iter().map(|t| t.as_bytes().to_vec()).collect();
        let inner = call(py, || TokenTable::new(tokens, &special, &eos, vocab_size))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Computes the token sets of every lexer state of `grammar` now
    /// (compile time) instead of at its first mask.
    fn prepare(&self, py: Python<'_>, grammar: &PyGrammar) -> PyResult<()> {
        let (table, grammar) = (Arc::clone(&self.inner), Arc::clone(&grammar.inner));
        call(py, || {
            table.prepare(&grammar);
            Ok(())
        })
    }

    /// The model's vocabulary size (bits in a mask row).
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// 32-bit words in a mask row.
    #[getter]
    fn mask_words(&self) -> usize {
        self.inner.mask_words()
    }

    /// Bytes of token `id` (None past the tokenizer's tokens).
    fn token_bytes<'py>(&self, py: Python<'py>, id: u32) -> Option<Bound<'py, PyBytes>> {
        self.inner.token_bytes(id).map(|b| PyBytes::new(py, b))
    }
}

/// Incremental matching state of one sequence (see `nemocore.grammar.GrammarMatcher`).
#[pyclass(name = "Matcher", module = "nemocore._rs", frozen)]
pub struct PyMatcher {
    inner: Mutex<Matcher>,
}

impl PyMatcher {
    fn with<T>(&self, f: impl FnOnce(&mut Matcher) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self.inner.lock().map_err(|_| {
            Error::internal("a matcher call panicked earlier; create a new matcher")
        })?;
        f(&mut guard)
    }
}

#[pymethods]
impl PyMatcher {
    /// Consumes the left context `prefix` first; with `suffix`, the text
    /// can only end where prefix + middle + suffix is a sentence.
    #[new]
    #[pyo3(signature = (grammar, prefix=None, suffix=None))]
    fn new(
        py: Python<'_>,
        grammar: &PyGrammar,
        prefix: Option<&Bound<'_, PyBytes>>,
        suffix: Option<&Bound<'_, PyBytes>>,
    ) -> PyResult<Self> {
        let prefix = prefix.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
        let suffix = suffix.map(|s| s.as_bytes().to_vec());
        let g = Arc::clone(&grammar.inner);
        let inner = call(py, || Matcher::new(g, &prefix, suffix.as_deref()))?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// Consumes `data` as one step; False (state unchanged) if it would
    /// make the text impossible to complete.
    fn accept_bytes(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<bool> {
        let data = data.as_bytes().to_vec();
        call(py, || self.with(|m| Ok(m.accept_bytes(&data))))
    }

    /// Undoes the last `n` steps; raises past the start.
    fn rollback(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        call(py, || self.with(|m| m.rollback(n)))
    }

    /// Steps accepted since the start (or the last reset).
    fn num_checkpoints(&self, py: Python<'_>) -> PyResult<usize> {
        call(py, || self.with(|m| Ok(m.num_checkpoints())))
    }

    /// Whether the text so far (plus the suffix) is a sentence.
    fn can_terminate(&self, py: Python<'_>) -> PyResult<bool> {
        call(py, || self.with(|m| Ok(m.can_terminate())))
    }

    /// Back to the state right after the prefix.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        call(py, || {
            self.with(|m| {
                m.reset();
                Ok(())
            })
        })
    }

    /// Writes the mask of allowed next tokens into row `index` of
    /// `bitmask` (a torch int32 `(batch, words)` or `(words,)` tensor) when
    /// that row is the common case: `int32` is `torch.int32`, the tensor is
    /// on the CPU, the row has at least `table.mask_words` contiguous words
    /// (bit j of word w: token 32w + j; words past the vocabulary cleared)
    /// and `index` is in range. Returns False, writing nothing, for any
    /// other tensor: the Python caller handles (or rejects) those.
    ///
    /// Tensor attributes are read here rather than in Python because, once
    /// a mask is memoised, those reads are most of the cost of a step.
    fn fill_bitmask_row(
        &self,
        py: Python<'_>,
        table: &PyTokenTable,
        bitmask: &Bound<'_, PyAny>,
        index: isize,
        int32: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let Some(address) = contiguous_row(bitmask, index, int32, table.inner.mask_words())? else {
            return Ok(false);
        };
        let table = Arc::clone(&table.inner);
        call(py, move || {
            // SAFETY: `contiguous_row` found this row of a live CPU int32
            // tensor (which the caller holds) to be `words` contiguous,
            // aligned words.
            #[allow(
                unsafe_code,
                reason = "torch tensors reach Rust as data pointers (no buffer protocol in abi3-py39)"
            )]
            let row = unsafe { std::slice::from_raw_parts_mut(address.0 as *mut u32, address.1) };
            self.with(|m| {
                m.fill_mask(&table, row);
                Ok(true)
            })
        })
    }
}

/// The address and length in words of row `index` of `bitmask` if it is
/// a CPU tensor of dtype `int32`, 1-D or 2-D, whose rows hold at least
/// `words` contiguous words and have an `index`; `None` otherwise.
fn contiguous_row(
    bitmask: &Bound<'_, PyAny>,
    index: isize,
    int32: &Bound<'_, PyAny>,
    words: usize,
) -> PyResult<Option<(usize, usize)>> {
    let py = bitmask.py();
    if !bitmask.getattr(intern!(py, "dtype"))?.is(int32)
        || !bitmask.getattr(intern!(py, "is_cpu"))?.is_truthy()?
    {
        return Ok(None);
    }
    let shape = bitmask.getattr(intern!(py, "shape"))?;
    let Ok(shape) = shape.cast::<PyTuple>() else {
        return Ok(None);
    };
    let strides = bitmask.call_method0(intern!(py, "stride"))?;
    let Ok(strides) = strides.cast::<PyTuple>() else {
        return Ok(None);
    };
    let at = |t: &Bound<'_, PyTuple>, i: usize| -> PyResult<isize> { t.get_item(i)?.extract() };
    let (rows, width, row_step, word_step) = match (shape.len(), strides.len()) {
        (2, 2) => (
            at(shape, 0)?,
            at(shape, 1)?,
            at(strides, 0)?,
            at(strides, 1)?,
        ),
        (1, 1) => (1, at(shape, 0)?, 0, at(strides, 0)?),
        _ => return Ok(None),
    };
    let Ok(width_words) = usize::try_from(width) else {
        return Ok(None);
    };
    if word_step != 1 || width_words < words || !(-rows..rows).contains(&index) {
        return Ok(None);
    }
    let data: usize = bitmask.call_method0(intern!(py, "data_ptr"))?.extract()?;
    let row = usize::try_from(index.rem_euclid(rows) * row_step).unwrap_or(usize::MAX);
    if data == 0 || data % 4 != 0 || row == usize::MAX {
        return Ok(None);
    }
    Ok(Some((data + 4 * row, width_words)))
}
