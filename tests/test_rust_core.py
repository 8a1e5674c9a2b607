"""The Rust core through its PyO3 skin: build info, error mapping, panics caught at the
boundary."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nemocore
from nemocore import _native

rs = _native.rust()


def test_build_info():
    info = rs.build_info()
    assert set(info) >= {"version", "target", "profile", "rustc"}
    assert info["version"] == rs.__version__
    assert info["profile"] == "release"


def test_rust_and_python_versions_agree():
    assert rs.__version__ == nemocore.__version__ or nemocore.__version__.endswith("unknown")


@pytest.mark.parametrize(
    ("kind", "exc", "base"),
    [
        ("invalid_argument", rs.NemocoreInvalidArgumentError, ValueError),
        ("invalid_config", rs.NemocoreInvalidConfigError, ValueError),
        ("io", rs.NemocoreIoError, ValueError),
        ("grammar", rs.NemocoreGrammarError, ValueError),
        ("internal", rs.NemocoreInternalError, RuntimeError),
    ],
)
def test_errors_map_to_named_exceptions(kind, exc, base):
    with pytest.raises(exc) as info:
        rs._raise_error_for_test(kind)
    assert isinstance(info.value, base)
    assert str(info.value)


def test_internal_error_is_not_a_user_error():
    assert not issubclass(rs.NemocoreInternalError, rs.NemocoreError)


def test_panic_becomes_exception_and_interpreter_survives():
    with pytest.raises(rs.NemocoreInternalError, match="boom"):
        rs._raise_panic_for_test("boom")
    # The module still works after a caught panic.
    assert rs.build_info()["version"] == rs.__version__


def test_panic_in_a_fresh_interpreter_exits_cleanly():
    code = (
        "import nemocore._rs as r\n"
        "try:\n    r._raise_panic_for_test('x')\n"
        "except r.NemocoreInternalError:\n    print('caught')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "caught"
