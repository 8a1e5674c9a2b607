//! Turning Rust panics into [`Error::Internal`].
//!
//! A panic must never unwind into a foreign caller (Python, C): that is
//! undefined behaviour or, at best, an aborted interpreter. Every function
//! that the glue exposes therefore runs its body through [`catch`] (for
//! fallible bodies) or [`catch_value`] (for infallible ones).
//!
//! The panic still goes through the process's panic hook first (by default
//! it prints `thread '...' panicked at ...` on stderr), which keeps the
//! location visible for bug reports.
//!
//! Unwind safety: the closure is wrapped in [`AssertUnwindSafe`]. After a
//! caught panic, any state the closure was mutating may be half-updated;
//! callers that keep such state across calls must treat an
//! [`Error::Internal`] as "this object is no longer trustworthy" (mutexes
//! will also be poisoned, which surfaces the same way).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, Result};

/// Prefix of the [`Error::Internal`] message made from a caught panic.
pub const PANIC_PREFIX: &str = "Rust panic: ";

/// Runs a fallible `f`, turning a panic into [`Error::Internal`].
///
/// Errors returned by `f` pass through unchanged.
pub fn catch<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T>,
{
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(panic_to_error(payload)),
    }
}

/// Runs an infallible `f`, turning a panic into [`Error::Internal`].
pub fn catch_value<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T,
{
    catch(|| Ok(f()))
}

/// Extracts a human-readable message from a panic payload.
///
/// `panic!("literal")` yields a `&'static str` payload and formatted panics a
/// `String`; anything else (from `panic::panic_any`) has no message.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(e) = payload.downcast_ref::<Error>() {
        e.to_string()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Converts a caught panic payload into [`Error::Internal`].
///
/// The payload is dropped inside another guard: a payload whose `Drop`
/// panics would otherwise escape the first `catch_unwind`.
pub fn panic_to_error(payload: Box<dyn Any + Send>) -> Error {
    let message = panic_message(payload.as_ref());
    if let Err(nested) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // Leak the second payload rather than risk another panicking drop.
        std::mem::forget(nested);
    }
    Error::Internal(format!("{PANIC_PREFIX}{message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_err_pass_through() {
        assert_eq!(catch(|| Ok(41 + 1)).unwrap(), 42);
        let err = catch::<(), _>(|| Err(Error::invalid_argument("nope"))).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m == "nope"),
            "{err:?}"
        );
    }

    #[test]
    fn static_str_panic_becomes_internal() {
        let err = catch_value(|| -> u8 { panic!("static message") }).unwrap_err();
        match err {
            Error::Internal(msg) => assert_eq!(msg, "Rust panic: static message"),
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[test]
    fn formatted_panic_keeps_its_message() {
        let n = 7;
        let err = catch::<(), _>(|| panic!("bad index {n}")).unwrap_err();
        assert_eq!(err.to_string(), "internal error: Rust panic: bad index 7");
    }

    #[test]
    fn non_string_payload_is_described() {
        let err = catch_value(|| panic::panic_any(12_u32)).unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(err.to_string().contains("non-string payload"), "{err}");
    }

    #[test]
    fn error_payload_uses_its_display() {
        let err = catch_value(|| panic::panic_any(Error::invalid_argument("inner"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "internal error: Rust panic: invalid argument: inner"
        );
    }

    #[test]
    fn panicking_payload_drop_is_contained() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("drop of the payload panicked");
            }
        }
        let err = catch_value(|| panic::panic_any(Bomb)).unwrap_err();
        assert_eq!(err.kind(), "internal");
    }
}
