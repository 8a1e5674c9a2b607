"""The built-in Python grammar, validated with lark's own Earley parser (basic longest-match
lexer + ``lark.indenter.PythonIndenter``, the conventions the engine follows): hand-written
statements of every kind, their broken variants, and real files of the standard library that
lark's own Python grammar parses. ``NEMOCORE_FULL_TESTS=1`` sweeps every stdlib file up to
25 kB (slow: lark's Earley parser takes seconds per file)."""

from __future__ import annotations

import glob
import os
import sysconfig

import pytest
from lark_oracle import lark, lark_accepts, lark_parser

from nemocore.grammar import builtin_lark

VALID = [
    "x = 1\n",
    "def f(a, b=2, /, *args, c, **kw) -> int:\n    return a + b\n",
    "if x:\n    pass\nelif y:\n  pass\nelse:\n    z = [i for i in range(3) if i]\n",
    "class A(B, metaclass=M):\n    '''doc'''\n    @property\n    def x(self): return self._x\n",
    "match p:\n    case [1, *rest] if rest:\n        pass\n    case {'a': 1, **kw}:\n        pass\n"
    "    case Point(x=0) | None:\n        pass\n    case _:\n        pass\n",
    "s = f'{x!r:>{w}}' + rb'\\x00' + '''a\n\"b\"'''\n",
    "async def f():\n    async with a as b, c:\n        await g()\n    async for x in y: pass\n",
    "try:\n    pass\nexcept* (A, B) as e:\n    raise X from e\nfinally:\n    pass\n",
    "type Point[T: int, *Ts, **P] = tuple[T, *Ts]\n",
    "x = (1,\n  2)  # c\n# only comment\n\n",
    "def g():\n    x = yield\n    yield from h()\n",
    "a[1:2, ::3, ...] += 0x_ff if b else 1_000.5e-3j\n",
    "with (open(a) as f, open(b) as g):\n    pass\n",
    "print(*a, **k, sep='')\nmatch = 1\ncase(2)\ntype = 3\n",
    "from . import a\nfrom ...b.c import (d as e, f,)\nimport g.h as i\n",
    "x = 1 \\\n  + 2\n",
    "if a:\n\tif b:\n\t\tc = {k: v for k, v in d.items()}\n",
    "while (n := n - 1) > 0: del a[n], b\nelse: assert n == 0, 'msg'\n",
    "global a, b\nlambda x, *y, z=1, **w: (x, y)\n",
    '"""a ""quoted"" b"""\n',
]

INVALID = [
    "x = (1\n",
    "def f(:\n",
    "if x:\npass\n",
    "x = 1 +\n",
    "class A:\n  x = 1\n    y = 2\n",
    "'''abc\n",
    "return\n  x\n",
    "x = 1 2\n",
    "if x:\n    pass\n  else:\n    pass\n",
    "f(]\n",
    '"""a""""\n',
    "for x in y\n    pass\n",
]


@pytest.fixture(scope="module")
def python_lark() -> str:
    text, indenter = builtin_lark("python")
    assert indenter
    return text


@pytest.mark.parametrize("source", VALID)
def test_accepts_valid_statements(python_lark, source):
    assert lark_accepts(python_lark, source, python=True), source


@pytest.mark.parametrize("source", INVALID)
def test_rejects_broken_statements(python_lark, source):
    assert not lark_accepts(python_lark, source, python=True), source


def stdlib_files(max_bytes: int) -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    return sorted(
        (f for f in glob.glob(os.path.join(root, "*.py")) if os.path.getsize(f) <= max_bytes),
        key=os.path.getsize,
    )


def test_parses_stdlib_files_that_larks_own_grammar_parses(python_lark):
    full = os.environ.get("NEMOCORE_FULL_TESTS") == "1"
    files = stdlib_files(25_000 if full else 3_000)
    if not full:
        files = files[-4:]  # the largest few small files: a couple of seconds in all
    if not files:
        pytest.skip("no standard-library sources found")
    from lark.indenter import PythonIndenter

    peer = lark.Lark.open_from_package(
        "lark", "python.lark", ["grammars"], parser="lalr", postlex=PythonIndenter(),
        start="file_input",
    )  # fmt: skip
    ours = lark_parser(python_lark, True)
    checked = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        if not source.endswith("\n"):
            source += "\n"
        try:
            peer.parse(source)
        except lark.exceptions.LarkError:
            continue
        ours.parse(source)  # raises with the position if our grammar rejects it
        checked += 1
    assert checked > 0
