//! `nemocore._rs`: the PyO3 skin over [`nemocore_core`].
//!
//! This crate only converts types, releases the GIL and maps errors; all
//! logic lives in `nemocore-core`. Every exported function runs its body
//! through `call`, which detaches from the interpreter and catches panics,
//! so no Rust panic ever unwinds into Python.

#![allow(
    clippy::doc_markdown,
    reason = "doc comments on exported items become Python docstrings, written for Python readers"
)]

mod errors;
mod grammar;
mod tokenizer;

use nemocore_core::{Result, panic_guard};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Runs `f` without holding the GIL, inside the panic guard, and maps its
/// error to the matching Python exception.
fn call<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    py.detach(|| panic_guard::catch(f))
        .map_err(|err| errors::to_py(py, err))
}

/// Rust core of nemocore (errors, panic guard, build info, tokenizer).
#[pymodule(name = "_rs")]
mod nemocore_rs {
    use super::{PyDict, call};
    use nemocore_core::{build_info as core_build_info, test_hooks};
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::errors::{
        NemocoreError, NemocoreGrammarError, NemocoreInternalError, NemocoreInvalidArgumentError,
        NemocoreInvalidConfigError, NemocoreIoError,
    };

    #[pymodule_export]
    use crate::tokenizer::{PyDecodeStream, PyTokenizer};

    #[pymodule_export]
    use crate::grammar::{
        PyGrammar, PyMatcher, PyTokenTable, builtin_grammar, gbnf_to_lark, json_schema_to_lark,
        regex_to_lark,
    };

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", nemocore_core::VERSION)
    }

    /// Facts about this build of the Rust core, for `nemocore doctor`.
    ///
    /// Returns a dict with str values for the keys "version", "target"
    /// (target triple), "profile" ("debug" or "release") and "rustc"
    /// (`rustc --version`, or "unknown").
    #[pyfunction]
    fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let info = call(py, || Ok(core_build_info()))?;
        let dict = PyDict::new(py);
        for (key, value) in info.entries() {
            dict.set_item(key, value)?;
        }
        Ok(dict)
    }

    /// Test hook: panics inside the panic guard with `message`.
    ///
    /// Always raises NemocoreInternalError; the interpreter survives.
    #[pyfunction]
    fn _raise_panic_for_test(py: Python<'_>, message: String) -> PyResult<()> {
        call(py, move || test_hooks::panic_with(&message))
    }

    /// Test hook: raises the exception mapped from the core error of `kind`.
    ///
    /// `kind` is one of "invalid_argument", "invalid_config", "io",
    /// "internal"; any other
    /// value raises NemocoreInvalidArgumentError.
    #[pyfunction]
    fn _raise_error_for_test(py: Python<'_>, kind: String) -> PyResult<()> {
        call(py, move || Err(test_hooks::sample_error(&kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::errors::{NemocoreError, NemocoreInternalError, NemocoreInvalidArgumentError};
    use pyo3::prelude::*;
    use pyo3::types::PyDict;
    use pyo3::wrap_pymodule;

    fn with_module<R>(f: impl FnOnce(Python<'_>, &Bound<'_, PyModule>) -> R) -> R {
        Python::initialize();
        Python::attach(|py| {
            let module = wrap_pymodule!(super::nemocore_rs)(py);
            let module = module.bind(py).cast::<PyModule>().unwrap().clone();
            f(py, &module)
        })
    }

    #[test]
    fn panic_hook_raises_internal_error_through_the_guard() {
        with_module(|py, m| {
            let err = m
                .call_method1("_raise_panic_for_test", ("boom",))
                .unwrap_err();
            assert!(err.is_instance_of::<NemocoreInternalError>(py), "{err}");
            let text = err.value(py).str().unwrap().to_string();
            assert_eq!(text, "internal error: Rust panic: boom");
            // The module keeps working after a panic.
            assert!(m.call_method0("build_info").is_ok());
        });
    }

    #[test]
    fn error_hook_raises_mapped_classes() {
        with_module(|py, m| {
            let err = m
                .call_method1("_raise_error_for_test", ("invalid_argument",))
                .unwrap_err();
            assert!(err.is_instance_of::<NemocoreInvalidArgumentError>(py));
            let err = m
                .call_method1("_raise_error_for_test", ("io",))
                .unwrap_err();
            assert!(err.is_instance_of::<NemocoreError>(py));
            let err = m
                .call_method1("_raise_error_for_test", ("internal",))
                .unwrap_err();
            assert!(err.is_instance_of::<NemocoreInternalError>(py));
            let err = m
                .call_method1("_raise_error_for_test", ("bogus",))
                .unwrap_err();
            assert!(err.is_instance_of::<NemocoreInvalidArgumentError>(py));
        });
    }

    #[test]
    fn module_exports_version_build_info_and_classes() {
        with_module(|_py, m| {
            let version: String = m.getattr("__version__").unwrap().extract().unwrap();
            assert_eq!(version, nemocore_core::VERSION);
            let info = m.call_method0("build_info").unwrap();
            let info = info.cast::<PyDict>().unwrap();
            let mut keys: Vec<String> = info.keys().extract().unwrap();
            keys.sort();
            assert_eq!(keys, ["profile", "rustc", "target", "version"]);
            let v: String = info
                .get_item("version")
                .unwrap()
                .unwrap()
                .extract()
                .unwrap();
            assert_eq!(v, version);
            for class in [
                "NemocoreError",
                "NemocoreInvalidArgumentError",
                "NemocoreInvalidConfigError",
                "NemocoreIoError",
                "NemocoreGrammarError",
                "NemocoreInternalError",
            ] {
                assert!(m.hasattr(class).unwrap(), "{class} not exported");
            }
        });
    }
}
