//! Pure-Rust core of nemocore.
//!
//! This crate knows nothing about Python: the `nemocore-py` crate is a thin
//! PyO3 skin over it. Everything that can fail returns [`Result`], whose
//! error type is the single crate-wide [`Error`] enum; code that is called
//! from a foreign language runs inside [`panic_guard::catch`] so that a Rust
//! panic becomes [`Error::Internal`] instead of unwinding across the FFI
//! boundary.
//!
//! Later features (byte-level BPE tokenizer, Earley grammar engine,
//! scheduler) grow as modules of this crate and extend [`Error`].

#![forbid(unsafe_code)]

// The panic guard is only meaningful when panics unwind.
#[cfg(not(panic = "unwind"))]
compile_error!("nemocore-core requires `panic = \"unwind\"` (the panic guard uses catch_unwind)");

pub mod build_info;
pub mod error;
pub mod grammar;
pub mod grammar_text;
pub mod panic_guard;
pub mod test_hooks;
pub mod tokenizer;

pub use build_info::{BuildInfo, VERSION, build_info};
pub use error::{Error, Result};
