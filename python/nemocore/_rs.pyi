"""Rust core of nemocore (errors, panic guard, build info).

Built from ``rust/nemocore-py`` (PyO3, abi3, CPython >= 3.9). Every function
runs without the GIL and inside a panic guard: a Rust panic is raised as
:class:`NemocoreInternalError`, never a crash of the interpreter.

Exceptions (core ``Error`` variant ``X`` raises ``NemocoreXError``)::

    ValueError
    └── NemocoreError
        ├── NemocoreInvalidArgumentError   (Error::InvalidArgument)
        └── NemocoreIoError                (Error::Io)
    RuntimeError
    └── NemocoreInternalError              (Error::Internal, caught panics)

``str(exc)`` is the core error's message, e.g. ``"invalid argument: ..."``.
"""

from typing import Final, NoReturn, TypedDict, type_check_only

__all__ = [
    "NemocoreError",
    "NemocoreInternalError",
    "NemocoreInvalidArgumentError",
    "NemocoreIoError",
    "__version__",
    "_raise_error_for_test",
    "_raise_panic_for_test",
    "build_info",
]

__version__: Final[str]
"""Version of the Rust core (Cargo package version), e.g. ``"0.1.0"``."""

@type_check_only
class BuildInfo(TypedDict):
    """Result of :func:`build_info`. Exists only in this stub, not at run time."""

    version: str
    """Same as :data:`__version__`."""
    target: str
    """Target triple, e.g. ``"x86_64-unknown-linux-gnu"``."""
    profile: str
    """``"release"`` or ``"debug"``."""
    rustc: str
    """``rustc --version`` of the compiler that built the core, or ``"unknown"``."""

class NemocoreError(ValueError):
    """Base class of nemocore errors caused by the request (bad input, missing file, ...).

    Does not cover :class:`NemocoreInternalError`, which signals a bug.
    """

class NemocoreInvalidArgumentError(NemocoreError):
    """An argument was rejected by the nemocore core."""

class NemocoreIoError(NemocoreError):
    """An I/O operation in the nemocore core failed.

    ``__cause__`` is the matching :class:`OSError` subclass (for example
    :class:`FileNotFoundError`), carrying ``errno`` where the OS gave one.
    """

class NemocoreInternalError(RuntimeError):
    """A bug in nemocore (broken invariant or caught Rust panic); please report it."""

def build_info() -> BuildInfo:
    """Facts about this build of the Rust core, for ``nemocore doctor``.

    Returns a new dict with the str keys ``"version"``, ``"target"``,
    ``"profile"`` and ``"rustc"``.
    """

def _raise_panic_for_test(message: str) -> NoReturn:
    """Test hook: panic in Rust, inside the panic guard, with ``message``.

    Always raises :class:`NemocoreInternalError` whose message is
    ``"internal error: Rust panic: <message>"``; the interpreter survives.
    The panic is also reported on stderr by Rust's panic hook.
    """

def _raise_error_for_test(kind: str) -> NoReturn:
    """Test hook: raise the exception mapped from a sample core error.

    ``kind`` is ``"invalid_argument"`` (:class:`NemocoreInvalidArgumentError`),
    ``"io"`` (:class:`NemocoreIoError`, caused by :class:`FileNotFoundError`)
    or ``"internal"`` (:class:`NemocoreInternalError`). Any other value raises
    :class:`NemocoreInvalidArgumentError` naming the accepted kinds.
    """
