//! The one error type of nemocore.
//!
//! Every fallible function in the core returns [`Result<T>`]. New features add
//! variants to [`Error`] rather than defining their own error types. The enum
//! is deliberately *not* `#[non_exhaustive]`: the Python glue matches it
//! exhaustively, so adding a variant fails to compile until the variant is
//! given a Python exception class (see `nemocore-py/src/errors.rs`).
//!
//! Each variant has a stable `snake_case` [`kind`](Error::kind) name, listed in
//! [`Error::KINDS`]; tests and diagnostics use it to refer to variants.

use std::io;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the nemocore core can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed a value that the operation cannot accept
    /// (bad shape, out-of-range id, malformed text, unknown name, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A configuration document (a tokenizer.json, for instance) is malformed
    /// or uses a component nemocore does not support; the message names the
    /// field and, for unsupported values, the supported ones.
    #[error("invalid config: {0}")]
    InvalidConfig(String),

    /// An operating-system I/O operation failed (reading a vocabulary or
    /// grammar file, for instance).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// A grammar (Lark, GBNF, JSON Schema or regex source) is malformed or
    /// cannot be compiled; `line` and `column` are 1-based positions in the
    /// source text the caller gave.
    #[error("grammar error at line {line}, column {column}: {message}")]
    Grammar {
        /// 1-based line in the grammar source.
        line: usize,
        /// 1-based column (in characters) in the grammar source.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A bug in nemocore: a broken internal invariant or a caught Rust panic.
    /// Never the caller's fault; worth a bug report.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The [`kind`](Error::kind) names of all variants, in declaration order.
    pub const KINDS: &'static [&'static str] = &[
        "invalid_argument",
        "invalid_config",
        "io",
        "grammar",
        "internal",
    ];

    /// Stable `snake_case` name of this error's variant (one of [`Error::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::InvalidConfig(_) => "invalid_config",
            Error::Io(_) => "io",
            Error::Grammar { .. } => "grammar",
            Error::Internal(_) => "internal",
        }
    }

    /// Shorthand for [`Error::InvalidArgument`] from anything string-like.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// Shorthand for [`Error::InvalidConfig`] from anything string-like.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Error::InvalidConfig(message.into())
    }

    /// Shorthand for [`Error::Grammar`] at a 1-based `line` and `column`.
    pub fn grammar(line: usize, column: usize, message: impl Into<String>) -> Self {
        Error::Grammar {
            line,
            column,
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Internal`] from anything string-like.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_prefixes_each_variant() {
        assert_eq!(
            Error::invalid_argument("vocab size must be > 0").to_string(),
            "invalid argument: vocab size must be > 0"
        );
        assert_eq!(
            Error::internal("state machine out of sync").to_string(),
            "internal error: state machine out of sync"
        );
        let io = Error::from(io::Error::new(
            io::ErrorKind::NotFound,
            "vocab.json missing",
        ));
        assert_eq!(io.to_string(), "I/O error: vocab.json missing");
    }

    #[test]
    fn io_error_keeps_its_source() {
        let err = Error::from(io::Error::new(io::ErrorKind::PermissionDenied, "no access"));
        let source = err
            .source()
            .expect("Io must expose the io::Error as source");
        let io_err = source.downcast_ref::<io::Error>().unwrap();
        assert_eq!(io_err.kind(), io::ErrorKind::PermissionDenied);
        assert!(Error::invalid_argument("x").source().is_none());
    }

    #[test]
    fn kinds_are_unique_and_match_variants() {
        let samples = [
            Error::invalid_argument("a"),
            Error::invalid_config("a2"),
            Error::Io(io::Error::other("b")),
            Error::grammar(1, 2, "g"),
            Error::internal("c"),
        ];
        let kinds: Vec<&str> = samples.iter().map(Error::kind).collect();
        assert_eq!(kinds, Error::KINDS);
        let mut dedup = kinds.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), kinds.len(), "kind names must be unique");
    }

    #[test]
    fn question_mark_converts_io_errors() {
        fn read_missing() -> Result<String> {
            Ok(std::fs::read_to_string(
                "/nonexistent/nemocore/definitely/missing",
            )?)
        }
        let err = read_missing().unwrap_err();
        assert_eq!(err.kind(), "io");
    }
}
