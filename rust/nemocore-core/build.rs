//! Records build facts for `nemocore_core::build_info` (shown by `nemocore doctor`).
//!
//! Emits three compile-time env vars for the crate:
//! - `NEMOCORE_BUILD_TARGET`: the target triple (`TARGET`),
//! - `NEMOCORE_BUILD_PROFILE`: `debug` or `release` (`PROFILE`),
//! - `NEMOCORE_BUILD_RUSTC`: the output of `$RUSTC --version`, or `unknown`.

use std::env;
use std::process::Command;

fn main() {
    let target = env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());

    println!("cargo:rustc-env=NEMOCORE_BUILD_TARGET={target}");
    println!("cargo:rustc-env=NEMOCORE_BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=NEMOCORE_BUILD_RUSTC={rustc_version}");
    // Only rerun when this script changes; target, profile and toolchain
    // changes already get their own build of the crate.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
