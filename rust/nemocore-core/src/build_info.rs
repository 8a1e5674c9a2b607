//! Facts about this build, for `nemocore doctor` and bug reports.

/// Version of the nemocore Rust core (`CARGO_PKG_VERSION`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Target triple the core was compiled for, e.g. `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("NEMOCORE_BUILD_TARGET");

/// Cargo profile kind: `debug` or `release` (custom profiles report the one
/// they inherit from).
pub const PROFILE: &str = env!("NEMOCORE_BUILD_PROFILE");

/// `rustc --version` of the compiler that built the core, or `unknown`.
pub const RUSTC: &str = env!("NEMOCORE_BUILD_RUSTC");

/// All build facts in one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    /// See [`VERSION`].
    pub version: &'static str,
    /// See [`TARGET`].
    pub target: &'static str,
    /// See [`PROFILE`].
    pub profile: &'static str,
    /// See [`RUSTC`].
    pub rustc: &'static str,
}

impl BuildInfo {
    /// `(key, value)` pairs in a fixed order; the Python `build_info()` dict
    /// is built from these, so its keys are defined here once.
    pub fn entries(&self) -> [(&'static str, &'static str); 4] {
        [
            ("version", self.version),
            ("target", self.target),
            ("profile", self.profile),
            ("rustc", self.rustc),
        ]
    }
}

/// Returns the facts about this build.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: VERSION,
        target: TARGET,
        profile: PROFILE,
        rustc: RUSTC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_semver_like() {
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3, "{VERSION}");
        assert!(
            parts[0].parse::<u32>().is_ok() && parts[1].parse::<u32>().is_ok(),
            "{VERSION}"
        );
    }

    #[test]
    fn profile_matches_debug_assertions() {
        // Tests run under the dev profile (debug) unless `--release` is given.
        let expected = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert_eq!(PROFILE, expected);
    }

    #[test]
    fn target_matches_compile_time_cfg() {
        assert!(TARGET.contains(std::env::consts::ARCH), "{TARGET}");
        if cfg!(target_os = "linux") {
            assert!(TARGET.contains("linux"), "{TARGET}");
        }
    }

    #[test]
    fn rustc_is_reported() {
        assert!(RUSTC == "unknown" || RUSTC.starts_with("rustc "), "{RUSTC}");
    }

    #[test]
    fn entries_have_the_documented_keys() {
        let keys: Vec<&str> = build_info().entries().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["version", "target", "profile", "rustc"]);
        assert_eq!(build_info().entries()[0].1, VERSION);
    }
}
