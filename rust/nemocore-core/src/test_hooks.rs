//! Deliberate failures, so that tests of the bindings can check that each
//! [`Error`] variant and a panic reach the caller as the right exception.
//!
//! Not for production use; exposed to Python as `_raise_error_for_test` and
//! `_raise_panic_for_test`.

use std::io;

use crate::error::Error;

/// Builds a sample error whose [`kind`](Error::kind) is `kind` (one of
/// [`Error::KINDS`]).
///
/// An unknown `kind` yields an [`Error::InvalidArgument`] that names the
/// accepted kinds.
pub fn sample_error(kind: &str) -> Error {
    match kind {
        "invalid_argument" => Error::invalid_argument("test hook: invalid argument"),
        "invalid_config" => Error::invalid_config("test hook: invalid config"),
        "io" => Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "test hook: i/o failure",
        )),
        "grammar" => Error::grammar(3, 7, "test hook: grammar error"),
        "internal" => Error::internal("test hook: internal error"),
        other => Error::invalid_argument(format!(
            "unknown error kind {other:?}; expected one of {:?}",
            Error::KINDS
        )),
    }
}

/// Panics with `message`; run it inside the panic guard.
///
/// # Panics
///
/// Always, with `message` as the panic message.
#[allow(
    clippy::panic,
    reason = "panicking is the whole point of this test hook"
)]
pub fn panic_with(message: &str) -> ! {
    panic!("{message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic_guard;

    #[test]
    fn every_kind_has_a_sample() {
        for kind in Error::KINDS {
            assert_eq!(sample_error(kind).kind(), *kind);
        }
    }

    #[test]
    fn unknown_kind_is_an_invalid_argument_naming_the_choices() {
        let err = sample_error("nope");
        assert_eq!(err.kind(), "invalid_argument");
        let text = err.to_string();
        assert!(
            text.contains("\"nope\"") && text.contains("\"io\""),
            "{text}"
        );
    }

    #[test]
    fn panic_with_is_caught_by_the_guard() {
        let err = panic_guard::catch_value(|| panic_with("hook fired")).unwrap_err();
        assert_eq!(err.to_string(), "internal error: Rust panic: hook fired");
    }
}
