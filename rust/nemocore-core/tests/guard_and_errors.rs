//! Integration tests of the public error and panic-guard API, as the glue
//! crate uses it.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread;

use nemocore_core::panic_guard::{self, PANIC_PREFIX};
use nemocore_core::{Error, Result, build_info, test_hooks};

fn parse_positive(text: &str) -> Result<u32> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|e| Error::invalid_argument(format!("{text:?} is not a number: {e}")))?;
    if n == 0 {
        return Err(Error::invalid_argument("must be > 0"));
    }
    Ok(n)
}

#[test]
fn guard_passes_values_and_errors_through() {
    assert_eq!(panic_guard::catch(|| parse_positive(" 12 ")).unwrap(), 12);
    let err = panic_guard::catch(|| parse_positive("0")).unwrap_err();
    assert_eq!(err.to_string(), "invalid argument: must be > 0");
    let err = panic_guard::catch(|| parse_positive("x")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid argument: \"x\" is not a number"),
        "{err}"
    );
}

#[test]
fn guard_turns_index_panic_into_internal() {
    let v: Vec<u8> = vec![1, 2, 3];
    let idx = v.len() + 4;
    let err = panic_guard::catch_value(|| v[idx]).unwrap_err();
    let Error::Internal(msg) = &err else {
        panic!("expected Internal, got {err:?}")
    };
    assert!(msg.starts_with(PANIC_PREFIX), "{msg}");
    assert!(msg.contains("index out of bounds"), "{msg}");
}

#[test]
fn guard_works_on_other_threads_and_poisons_mutexes() {
    let shared = Arc::new(Mutex::new(0_u32));
    let s = Arc::clone(&shared);
    let err = thread::spawn(move || {
        panic_guard::catch_value(|| {
            let mut guard = s.lock().unwrap();
            *guard += 1;
            test_hooks::panic_with("while holding the lock")
        })
        .unwrap_err()
    })
    .join()
    .expect("the guard must keep the panic inside the thread");
    assert_eq!(
        err.to_string(),
        "internal error: Rust panic: while holding the lock"
    );
    // The half-finished update is visible through poisoning, as documented.
    assert!(shared.lock().is_err());
}

#[test]
fn guard_survives_many_panics() {
    for i in 0..100 {
        let err =
            panic_guard::catch_value(|| test_hooks::panic_with(&format!("n{i}"))).unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(err.to_string().ends_with(&format!("n{i}")));
    }
}

#[test]
fn sample_errors_display_with_their_variant_prefix() {
    let prefixes = [
        ("invalid_argument", "invalid argument: "),
        ("invalid_config", "invalid config: "),
        ("io", "I/O error: "),
        ("grammar", "grammar error at line 3, column 7: "),
        ("internal", "internal error: "),
    ];
    assert_eq!(
        prefixes.len(),
        Error::KINDS.len(),
        "a new variant needs a row here"
    );
    for (kind, prefix) in prefixes {
        let err = test_hooks::sample_error(kind);
        assert_eq!(err.kind(), kind);
        assert!(err.to_string().starts_with(prefix), "{kind}: {err}");
    }
}

#[test]
fn io_errors_convert_with_question_mark() {
    fn open_it() -> Result<std::fs::File> {
        Ok(std::fs::File::open("/definitely/not/here/nemocore.vocab")?)
    }
    match open_it().unwrap_err() {
        Error::Io(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn build_info_is_filled_in() {
    let info = build_info();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(!info.target.is_empty() && info.target != "unknown");
    assert!(
        info.profile == "debug" || info.profile == "release",
        "{}",
        info.profile
    );
}
