//! Link settings for the `nemocore._rs` extension module.
//!
//! A distributable extension must not link `libpython`: the interpreter that
//! imports it provides the symbols. PyO3 skips the link when the environment
//! variable `PYO3_BUILD_EXTENSION_MODULE` is set (maturin sets it itself);
//! a plain `cargo build` links `libpython3.X.so`, which is right for
//! `cargo test -p nemocore-py` (the tests embed Python) but ties the library
//! to one interpreter. This script warns when a release build of such a
//! library is made, and adds the macOS `-undefined dynamic_lookup` flags.

use std::env;

fn main() {
    pyo3_build_config::add_extension_module_link_args();

    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    let extension_module = env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some();
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let unix = env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f.split(',').any(|f| f == "unix"));
    if release && unix && !extension_module {
        println!(
            "cargo:warning=nemocore-py: PYO3_BUILD_EXTENSION_MODULE is not set, so lib_rs links \
             libpython and is not a portable abi3 module; set PYO3_BUILD_EXTENSION_MODULE=1 when \
             building nemocore/_rs.abi3.so"
        );
    }
}
