//! `nemocore._rs.Tokenizer` and `nemocore._rs.DecodeStream`: the PyO3 skin
//! over [`nemocore_core::tokenizer`]. Types are converted here, the work runs
//! in `call` (no GIL, panics caught).

#![allow(
    clippy::needless_pass_by_value,
    reason = "arguments are extracted as owned values: the work runs without the GIL, \
              where nothing may borrow from Python objects"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nemocore_core::Error;
use nemocore_core::tokenizer::stream::DecodeStream;
use nemocore_core::tokenizer::trainer::{BpeTrainer, PreTokenizerKind};
use nemocore_core::tokenizer::{Tokenizer, json};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::call;

/// Converts Python ints to ids, rejecting negative and too-large values
/// with the tokenizer's own error.
fn to_ids(ids: &[i64]) -> Result<Vec<u32>, Error> {
    ids.iter()
        .map(|&id| {
            u32::try_from(id)
                .map_err(|_| Error::invalid_argument(format!("token id {id} is out of range")))
        })
        .collect()
}

/// A byte-level BPE tokenizer read from (or written as) a Hugging Face
/// tokenizer.json. Thread-safe; batch calls run in parallel without the GIL.
#[pyclass(name = "Tokenizer", module = "nemocore._rs", frozen)]
pub struct PyTokenizer {
    inner: Arc<Tokenizer>,
}

#[pymethods]
impl PyTokenizer {
    /// Reads a tokenizer.json file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = call(py, || json::from_file(&path))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Parses a tokenizer.json document.
    #[staticmethod]
    fn from_str(py: Python<'_>, text: String) -> PyResult<Self> {
        let inner = call(py, || json::from_str(&text))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Learns a BPE vocabulary from texts and/or files.
    #[staticmethod]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the Python signature, keyword arguments included"
    )]
    #[pyo3(signature = (texts, files, vocab_size, min_frequency, special_tokens, pre_tokenizer, num_threads=0))]
    fn train(
        py: Python<'_>,
        texts: Vec<String>,
        files: Vec<PathBuf>,
        vocab_size: usize,
        min_frequency: u64,
        special_tokens: Vec<String>,
        pre_tokenizer: String,
        num_threads: usize,
    ) -> PyResult<Self> {
        let inner = call(py, || {
            let kind = PreTokenizerKind::from_name(&pre_tokenizer)?;
            let mut trainer = BpeTrainer::new(kind, num_threads)?;
            for path in &files {
                trainer.feed_file(path)?;
            }
            trainer.feed(&texts)?;
            trainer.train(vocab_size, min_frequency, &special_tokens)
        })?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The tokenizer.json text.
    fn to_str(&self, py: Python<'_>) -> PyResult<String> {
        call(py, || json::to_string(&self.inner))
    }

    /// Writes tokenizer.json atomically (temporary file, then rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        call(py, || json::save(&self.inner, &path))
    }

    /// Encodes text into token ids.
    #[pyo3(signature = (text, add_special_tokens=false))]
    fn encode(&self, py: Python<'_>, text: String, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        call(py, || self.inner.encode(&text, add_special_tokens))
    }

    /// Encodes many texts in parallel (`num_threads=0`: one thread per core).
    #[pyo3(signature = (texts, add_special_tokens=false, num_threads=0))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        add_special_tokens: bool,
        num_threads: usize,
    ) -> PyResult<Vec<Vec<u32>>> {
        call(py, || {
            self.inner
                .encode_batch(&texts, add_special_tokens, num_threads)
        })
    }

    /// Decodes ids into text; an id no token has raises.
    #[pyo3(signature = (ids, skip_special_tokens=false))]
    fn decode(&self, py: Python<'_>, ids: Vec<i64>, skip_special_tokens: bool) -> PyResult<String> {
        call(py, || {
            self.inner.decode(&to_ids(&ids)?, skip_special_tokens)
        })
    }

    /// Decodes many id lists in parallel.
    #[pyo3(signature = (batch, skip_special_tokens=false, num_threads=0))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        batch: Vec<Vec<i64>>,
        skip_special_tokens: bool,
        num_threads: usize,
    ) -> PyResult<Vec<String>> {
        call(py, || {
            let batch = batch
                .iter()
                .map(|ids| to_ids(ids))
                .collect::<Result<Vec<_>, _>>()?;
            self.inner
                .decode_batch(&batch, skip_special_tokens, num_threads)
        })
    }

    /// The id of a token, or None.
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id, or None.
    fn id_to_token(&self, id: i64) -> Option<String> {
        let id = u32::try_from(id).ok()?;
        self.inner.id_to_token(id).map(str::to_owned)
    }

    /// Number of distinct tokens, added tokens included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The vocabulary, token -> id, added tokens included.
    fn get_vocab(&self) -> std::collections::HashMap<String, u32> {
        let mut vocab = self.inner.model().vocab().clone();
        for t in self.inner.added_tokens() {
            vocab.insert(t.content.clone(), t.id);
        }
        vocab
    }

    /// Ids of the special added tokens.
    fn special_token_ids(&self) -> Vec<u32> {
        self.inner
            .added_tokens()
            .iter()
            .filter(|t| t.special)
            .map(|t| t.id)
            .collect()
    }

    /// The raw bytes a token stands for.
    fn token_bytes<'py>(&self, py: Python<'py>, id: i64) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = call(py, || {
            let id = u32::try_from(id)
                .map_err(|_| Error::invalid_argument(format!("token id {id} is out of range")))?;
            self.inner.token_bytes(id)
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The raw bytes of every id below the largest id + 1 (b"" for ids no
    /// token has).
    fn all_token_bytes<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let all = call(py, || Ok(self.inner.all_token_bytes()))?;
        Ok(all.iter().map(|b| PyBytes::new(py, b)).collect())
    }

    /// A streaming decoder over this tokenizer.
    #[pyo3(signature = (skip_special_tokens=false))]
    fn decode_stream(&self, skip_special_tokens: bool) -> PyDecodeStream {
        PyDecodeStream {
            tokenizer: Arc::clone(&self.inner),
            state: Mutex::new(DecodeStream::new(skip_special_tokens)),
        }
    }
}

/// Decodes one id at a time, returning text only once it is complete.
#[pyclass(name = "DecodeStream", module = "nemocore._rs", frozen)]
pub struct PyDecodeStream {
    tokenizer: Arc<Tokenizer>,
    state: Mutex<DecodeStream>,
}

#[pymethods]
impl PyDecodeStream {
    /// Feeds one id; returns the text it completes, or None.
    fn step(&self, py: Python<'_>, id: i64) -> PyResult<Option<String>> {
        call(py, || {
            let id = u32::try_from(id)
                .map_err(|_| Error::invalid_argument(format!("token id {id} is out of range")))?;
            let mut state = self
                .state
                .lock()
                .map_err(|_| Error::internal("decode stream poisoned by an earlier panic"))?;
            state.step(&self.tokenizer, id)
        })
    }
}
