//! Python exception classes for [`nemocore_core::Error`], and the mapping.
//!
//! Rule: core variant `X` raises `nemocore._rs.NemocoreXError`.
//!
//! ```text
//! ValueError
//! └── NemocoreError                      base of every "you asked for something
//!     │                                  that cannot be done" error
//!     ├── NemocoreInvalidArgumentError   Error::InvalidArgument
//!     ├── NemocoreInvalidConfigError     Error::InvalidConfig (malformed or
//!     │                                  unsupported tokenizer.json, ...)
//!     ├── NemocoreIoError                Error::Io (__cause__ is the OSError,
//!     │                                  e.g. FileNotFoundError, with errno)
//!     └── NemocoreGrammarError           Error::Grammar (attributes `line`,
//!                                        `column`, 1-based, and `msg`)
//! RuntimeError
//! └── NemocoreInternalError              Error::Internal: a bug in nemocore,
//!                                        including caught Rust panics
//! ```
//!
//! `NemocoreInternalError` is deliberately *not* a `NemocoreError`: callers
//! that catch `NemocoreError` (bad input) must not silently swallow bugs.
//!
//! The exception message (`str(exc)`) is the core error's `Display` text.
//! [`to_py`] matches the core enum exhaustively, so adding a core variant
//! does not compile until it is given a class here (and in `_rs.pyi`).

use nemocore_core::Error;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::types::PyAnyMethods;
use pyo3::{PyErr, Python, create_exception};

create_exception!(
    nemocore._rs,
    NemocoreError,
    PyValueError,
    "Base class of nemocore errors caused by the request (bad input, missing file, ...)."
);
create_exception!(
    nemocore._rs,
    NemocoreInvalidArgumentError,
    NemocoreError,
    "An argument was rejected by the nemocore core."
);
create_exception!(
    nemocore._rs,
    NemocoreInvalidConfigError,
    NemocoreError,
    "A configuration document (e.g. a tokenizer.json) is malformed or unsupported."
);
create_exception!(
    nemocore._rs,
    NemocoreIoError,
    NemocoreError,
    "An I/O operation in the nemocore core failed; __cause__ holds the OSError."
);
create_exception!(
    nemocore._rs,
    NemocoreGrammarError,
    NemocoreError,
    "A grammar is malformed or cannot be compiled; `line` and `column` (1-based) locate it."
);
create_exception!(
    nemocore._rs,
    NemocoreInternalError,
    PyRuntimeError,
    "A bug in nemocore (broken invariant or caught Rust panic); please report it."
);

/// Converts a core error into the matching Python exception.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::InvalidArgument(_) => NemocoreInvalidArgumentError::new_err(message),
        Error::InvalidConfig(_) => NemocoreInvalidConfigError::new_err(message),
        Error::Io(io_err) => {
            let py_err = NemocoreIoError::new_err(message);
            // pyo3 maps io::ErrorKind to the OSError subclass (FileNotFoundError, ...).
            py_err.set_cause(py, Some(PyErr::from(io_err)));
            py_err
        }
        Error::Grammar {
            line,
            column,
            message: msg,
        } => {
            let py_err = NemocoreGrammarError::new_err(message);
            let value = py_err.value(py);
            // Attributes for callers that point an editor at the problem;
            // setting attributes on a fresh exception object cannot fail.
            let _ = value.setattr("line", line);
            let _ = value.setattr("column", column);
            let _ = value.setattr("msg", msg);
            py_err
        }
        Error::Internal(_) => NemocoreInternalError::new_err(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemocore_core::test_hooks::sample_error;
    use pyo3::exceptions::{PyFileNotFoundError, PyOSError};
    use pyo3::types::{PyAnyMethods, PyTypeMethods};

    fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    #[test]
    fn every_kind_maps_to_its_class() {
        let expected = [
            ("invalid_argument", "NemocoreInvalidArgumentError"),
            ("invalid_config", "NemocoreInvalidConfigError"),
            ("io", "NemocoreIoError"),
            ("grammar", "NemocoreGrammarError"),
            ("internal", "NemocoreInternalError"),
        ];
        assert_eq!(
            expected.len(),
            Error::KINDS.len(),
            "a new variant needs a row here"
        );
        with_py(|py| {
            for (kind, class) in expected {
                let err = to_py(py, sample_error(kind));
                let ty = err.get_type(py);
                assert_eq!(ty.name().unwrap().to_string(), class, "{kind}");
                assert_eq!(ty.module().unwrap().to_string(), "nemocore._rs", "{kind}");
                let text = err.value(py).str().unwrap().to_string();
                assert_eq!(text, sample_error(kind).to_string(), "{kind}");
            }
        });
    }

    #[test]
    fn hierarchy_is_as_documented() {
        with_py(|py| {
            let bad = to_py(py, Error::invalid_argument("x"));
            assert!(bad.is_instance_of::<NemocoreError>(py));
            assert!(bad.is_instance_of::<PyValueError>(py));
            assert!(!bad.is_instance_of::<PyRuntimeError>(py));

            let internal = to_py(py, Error::internal("bug"));
            assert!(internal.is_instance_of::<PyRuntimeError>(py));
            assert!(!internal.is_instance_of::<NemocoreError>(py));
            assert!(!internal.is_instance_of::<PyValueError>(py));
        });
    }

    #[test]
    fn io_error_carries_the_os_error_as_cause() {
        with_py(|py| {
            let err = to_py(py, sample_error("io"));
            assert!(err.is_instance_of::<NemocoreIoError>(py));
            assert!(err.is_instance_of::<NemocoreError>(py));
            let cause = err.cause(py).expect("Io must set __cause__");
            assert!(cause.is_instance_of::<PyFileNotFoundError>(py));
            assert!(cause.is_instance_of::<PyOSError>(py));
        });
    }
}
