"""Rust core of nemocore (errors, panic guard, build info, tokenizer).

Built from ``rust/nemocore-py`` (PyO3, abi3, CPython >= 3.9). Every function
runs without the GIL and inside a panic guard: a Rust panic is raised as
:class:`NemocoreInternalError`, never a crash of the interpreter.

Exceptions (core ``Error`` variant ``X`` raises ``NemocoreXError``)::

    ValueError
    └── NemocoreError
        ├── NemocoreInvalidArgumentError   (Error::InvalidArgument)
        ├── NemocoreInvalidConfigError     (Error::InvalidConfig)
        ├── NemocoreIoError                (Error::Io)
        └── NemocoreGrammarError           (Error::Grammar)
    RuntimeError
    └── NemocoreInternalError              (Error::Internal, caught panics)

``str(exc)`` is the core error's message, e.g. ``"invalid argument: ..."``.
"""

from typing import Final, NoReturn, TypedDict, final, type_check_only

__all__ = [
    "DecodeStream",
    "Grammar",
    "Matcher",
    "NemocoreError",
    "NemocoreGrammarError",
    "NemocoreInternalError",
    "NemocoreInvalidArgumentError",
    "NemocoreInvalidConfigError",
    "NemocoreIoError",
    "TokenTable",
    "Tokenizer",
    "__version__",
    "_raise_error_for_test",
    "_raise_panic_for_test",
    "build_info",
    "builtin_grammar",
    "gbnf_to_lark",
    "json_schema_to_lark",
    "regex_to_lark",
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

class NemocoreInvalidConfigError(NemocoreError):
    """A configuration document (a tokenizer.json) is malformed or uses an unsupported component.

    The message names the field (``model.type``, ``pre_tokenizer.pretokenizers[0].behavior``)
    and, for unsupported values, the supported ones.
    """

class NemocoreIoError(NemocoreError):
    """An I/O operation in the nemocore core failed.

    ``__cause__`` is the matching :class:`OSError` subclass (for example
    :class:`FileNotFoundError`), carrying ``errno`` where the OS gave one.
    """

class NemocoreGrammarError(NemocoreError):
    """A grammar (Lark, GBNF, JSON Schema, regex) is malformed or cannot be compiled.

    ``str(exc)`` is ``"grammar error at line L, column C: ..."``; the attributes
    ``line`` and ``column`` (1-based, in the source text given) and ``msg`` (the
    message alone) locate the problem.
    """

    line: int
    column: int
    msg: str

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
    ``"invalid_config"`` (:class:`NemocoreInvalidConfigError`),
    ``"io"`` (:class:`NemocoreIoError`, caused by :class:`FileNotFoundError`),
    ``"grammar"`` (:class:`NemocoreGrammarError`, at line 3, column 7)
    or ``"internal"`` (:class:`NemocoreInternalError`). Any other value raises
    :class:`NemocoreInvalidArgumentError` naming the accepted kinds.
    """

@final
class Tokenizer:
    """Byte-level BPE tokenizer read from / written as a Hugging Face tokenizer.json.

    Wrapped by :class:`nemocore.Tokenizer`. Every method runs without the GIL.
    """

    @staticmethod
    def from_file(path: str) -> Tokenizer:
        """Reads tokenizer.json (:class:`NemocoreInvalidConfigError`, :class:`NemocoreIoError`)."""
    @staticmethod
    def from_str(text: str) -> Tokenizer:
        """Parses a tokenizer.json document."""
    @staticmethod
    def train(
        texts: list[str],
        files: list[str],
        vocab_size: int,
        min_frequency: int,
        special_tokens: list[str],
        pre_tokenizer: str,
        num_threads: int = 0,
    ) -> Tokenizer:
        """Learns BPE merges as Hugging Face's BpeTrainer does (files are read line by line)."""
    def to_str(self) -> str:
        """The tokenizer.json document."""
    def save(self, path: str) -> None:
        """Writes tokenizer.json atomically (temporary file, then rename)."""
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``."""
    def encode_batch(
        self, texts: list[str], add_special_tokens: bool = False, num_threads: int = 0
    ) -> list[list[int]]:
        """Token ids of each text, in parallel (``num_threads=0``: one thread per core)."""
    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; an id no token has raises :class:`NemocoreInvalidArgumentError`."""
    def decode_batch(
        self, batch: list[list[int]], skip_special_tokens: bool = False, num_threads: int = 0
    ) -> list[str]:
        """Text of each id list, in parallel."""
    def token_to_id(self, token: str) -> int | None:
        """The id of a token, or None."""
    def id_to_token(self, id: int) -> str | None:
        """The token of an id, or None."""
    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens, added tokens included."""
    def get_vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
    def special_token_ids(self) -> list[int]:
        """Ids of the special added tokens."""
    def token_bytes(self, id: int) -> bytes:
        """The raw bytes a token stands for."""
    def all_token_bytes(self) -> list[bytes]:
        """Raw bytes of every id up to the largest (``b""`` for unused ids)."""
    def decode_stream(self, skip_special_tokens: bool = False) -> DecodeStream:
        """A streaming decoder over this tokenizer."""

@final
class DecodeStream:
    """Decodes one id at a time, returning text only once it is complete UTF-8."""

    def step(self, id: int) -> str | None:
        """Feeds one id; returns the text it completes, or None."""

# ---- grammar (rust/nemocore-py/src/grammar.rs); wrapped by nemocore.grammar ----

def gbnf_to_lark(source: str) -> str:
    """Lark text of a GBNF grammar (:class:`NemocoreGrammarError` with line/column)."""

def json_schema_to_lark(schema: str) -> str:
    """Lark text of the documents a JSON Schema (JSON text) accepts."""

def regex_to_lark(pattern: str) -> str:
    """Lark text of the strings a regex fully matches."""

def builtin_grammar(name: str) -> tuple[str, bool]:
    """(Lark text, needs the Python indenter) of ``"json"`` or ``"python"``."""

@final
class Grammar:
    """A compiled grammar (immutable, shared)."""

    @staticmethod
    def from_lark(text: str, start: str = "start", python_indenter: bool = False) -> Grammar:
        """Compiles Lark text (:class:`NemocoreGrammarError` with line/column)."""
    def accepts(self, data: bytes) -> bool:
        """Whether ``data`` is a sentence."""
    def accepts_prefix(self, data: bytes) -> bool:
        """Whether ``data`` can be completed into a sentence."""
    def warnings(self) -> list[str]:
        """Compile warnings."""

@final
class TokenTable:
    """A vocabulary prepared for token masks."""

    def __init__(
        self, tokens: list[bytes], special: list[int], eos: list[int], vocab_size: int
    ) -> None: ...
    @property
    def vocab_size(self) -> int:
        """Bits in a mask row."""
    @property
    def mask_words(self) -> int:
        """32-bit words in a mask row."""
    def token_bytes(self, id: int) -> bytes | None:
        """Bytes of a token id."""
    def prepare(self, grammar: Grammar) -> None:
        """Computes the token sets of every lexer state of ``grammar`` now."""

@final
class Matcher:
    """Incremental matching state of one sequence."""

    def __init__(
        self, grammar: Grammar, prefix: bytes | None = None, suffix: bytes | None = None
    ) -> None: ...
    def accept_bytes(self, data: bytes) -> bool:
        """Consumes ``data`` as one step; False (unchanged) if not viable."""
    def rollback(self, n: int) -> None:
        """Undoes ``n`` steps (:class:`NemocoreInvalidArgumentError` past the start)."""
    def num_checkpoints(self) -> int:
        """Steps since the start."""
    def can_terminate(self) -> bool:
        """Whether the text so far (plus the suffix) is a sentence."""
    def reset(self) -> None:
        """Back to the state after the prefix."""
    def fill_mask(self, table: TokenTable) -> bytes:
        """Allowed next tokens: ``table.mask_words`` little-endian 32-bit words."""
