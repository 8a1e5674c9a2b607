"""The JSON Schema front end and the built-in JSON grammar, checked through lark.

Schema instances: a document is accepted by the Lark translation iff ``jsonschema`` validates
it, for documents whose object keys follow the schema's property order (the generated grammar
fixes that order, as xgrammar's does; see docs/grammar.md). The built-in grammar is compared with
``json.loads`` plus RFC 8259's rules that Python's parser does not enforce (no NaN/Infinity, no
lone surrogate escapes)."""

from __future__ import annotations

import json
import random

import pytest
from lark_oracle import lark_accepts

from nemocore.grammar import Grammar, GrammarError, builtin_lark, json_schema_to_lark

jsonschema = pytest.importorskip("jsonschema")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", 3, None]}, "maxItems": 3},
        "kind": {"const": "person"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

MISC = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "when": {"type": "string", "format": "date-time"},
        "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        "loose": {"type": "string", "pattern": "ab+"},
        "n": {"anyOf": [{"type": "integer", "exclusiveMinimum": -5}, {"type": "null"}]},
        "pair": {
            "type": "array",
            "prefixItems": [{"type": "boolean"}, {"type": "string"}],
            "items": False,
        },
        "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
        "ip": {"type": "string", "format": "ipv4"},
        "day": {"type": "string", "format": "date"},
        "list": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    },
    "additionalProperties": False,
}

VALID = [
    (PERSON, {"name": "Ann", "age": 31}),
    (
        PERSON,
        {"name": "Bob", "age": 0, "email": "b.o+b@ex-ample.co.uk", "tags": [], "kind": "person"},
    ),
    (PERSON, {"name": "Éva\n", "age": 150, "tags": ["a", 3, None]}),
    (TREE, {"value": 1.5e3, "children": [{"value": -2}, {"value": 0, "children": []}]}),
    (MISC, {}),
    (MISC, {"id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-02-29T13:05:00.25Z"}),
    (MISC, {"code": "AB-123", "loose": "xxabbby", "n": -4, "pair": [True, "x"]}),
    (MISC, {"n": None, "extra": {"a": 1, "b": -2}, "ip": "192.168.0.255", "day": "1999-12-31"}),
    (MISC, {"list": [1, 2]}),
    (MISC, {"loose": 'ab"\\\u0001', "list": [1, 2, 3, 4]}),
]

INVALID = [
    (PERSON, {"name": "Ann"}),
    (PERSON, {"name": "", "age": 3}),
    (PERSON, {"name": "123456789", "age": 3}),
    (PERSON, {"name": "A", "age": -1}),
    (PERSON, {"name": "A", "age": 151}),
    (PERSON, {"name": "A", "age": 1.5}),
    (PERSON, {"name": "A", "age": 1, "email": "nope"}),
    (PERSON, {"name": "A", "age": 1, "tags": ["c"]}),
    (PERSON, {"name": "A", "age": 1, "tags": ["a", "a", "a", "a"]}),
    (PERSON, {"name": "A", "age": 1, "kind": "robot"}),
    (PERSON, {"name": "A", "age": 1, "other": 1}),
    (TREE, {"children": []}),
    (TREE, {"value": 1, "children": [{"value": "x"}]}),
    (MISC, {"id": "123e4567-e89b-12d3-a456-42661417400"}),
    (MISC, {"code": "AB-1234"}),
    (MISC, {"code": "ab-123"}),
    (MISC, {"loose": "b"}),
    (MISC, {"n": -5}),
    (MISC, {"pair": [True, "x", 1]}),
    (MISC, {"extra": {"a": "1"}}),
    (MISC, {"ip": "256.1.1.1"}),
    (MISC, {"day": "2024-13-01"}),
    (MISC, {"list": [1]}),
    (MISC, {"list": [1, 2, 3, 4, 5]}),
]


def dumps(value: object, rng: random.Random) -> str:
    """JSON text of ``value`` in one of several white-space styles."""
    style = rng.randrange(3)
    if style == 0:
        return json.dumps(value, ensure_ascii=False)
    if style == 1:
        return json.dumps(value, separators=(",", ":"))
    return " \n" + json.dumps(value, indent="\t") + "\r\n "


@pytest.mark.parametrize(("schema", "instance"), VALID + INVALID)
def test_schema_grammar_agrees_with_jsonschema(schema, instance):
    want = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).is_valid(instance)
    assert want == ((schema, instance) in VALID)
    text = json_schema_to_lark(schema)
    rng = random.Random(repr(instance))
    for _ in range(2):
        doc = dumps(instance, rng)
        assert lark_accepts(text, doc) == want, (doc, text)


def test_properties_follow_schema_order_and_commas_are_exact():
    text = json_schema_to_lark(PERSON)
    assert lark_accepts(text, '{"name": "A", "age": 1, "kind": "person"}')
    assert not lark_accepts(text, '{"age": 1, "name": "A"}')  # order is fixed (documented)
    assert not lark_accepts(text, '{"name": "A", "age": 1,}')
    assert not lark_accepts(text, '{"name": "A",, "age": 1}')
    assert not lark_accepts(text, '{"name": "A" "age": 1}')


def test_prefix_items_are_all_generated():
    # A deliberate difference (docs/grammar.md): JSON Schema lets an array stop before the end
    # of prefixItems; the generated grammar always writes them all.
    text = json_schema_to_lark(MISC)
    assert jsonschema.Draft202012Validator(MISC).is_valid({"pair": [True]})
    assert not lark_accepts(text, '{"pair": [true]}')
    assert lark_accepts(text, '{"pair": [true, ""]}')


def test_true_schema_is_any_json_and_strings_escape_exactly():
    text = json_schema_to_lark(True)
    for doc in ['{"a": [1, 2.5e-3, "x\\u00e9\\ud83d\\ude00", null, true, false, {}]}', "[]", '"s"']:
        assert lark_accepts(text, doc)
    for doc in ['{"a" 1}', '"\\ud800"', '"\\x"', "01", "[1,]", '"a\tb"']:
        assert not lark_accepts(text, doc)


@pytest.mark.parametrize(
    ("schema", "pointer", "line", "column", "words"),
    [
        (
            '{"type": "object",\n "properties": {"a": {"not": {}}}}',
            "/properties/a/not",
            2,
            30,
            "not supported",
        ),
        ('{"type": "string", "format": "ipv6"}', "/format", 1, 30, "unsupported format"),
        ('{"type": "strin"}', "/type", 1, 1, "unknown type"),
        ('{"$ref": "#/$defs/missing"}', "/$ref", 1, 10, "does not resolve"),
        ('{"type": "string", "pattern": "a(?=b)"}', "/pattern", 1, 31, "lookahead"),
        ('{"required": ["x"], "properties": {}}', "/required", 1, 1, "not listed in properties"),
        ('{"type": "array", "uniqueItems": true}', "/uniqueItems", 1, 34, "uniqueItems"),
        ('{"type": "number", "minimum": 1}', "/minimum", 1, 1, "integer"),
        ('{"allOf": [{}, {}]}', "/allOf", 1, 11, "allOf"),
        ('{"type": "object",\n  "x": tru}', "", 2, 8, "invalid JSON"),
        ("false", "", 1, 1, "accepts no document"),
    ],
)
def test_schema_errors_name_pointer_line_and_column(schema, pointer, line, column, words):
    with pytest.raises(GrammarError) as info:
        json_schema_to_lark(schema)
    message = str(info.value)
    assert (info.value.line, info.value.column) == (line, column), message
    assert words in message
    if pointer:
        assert f"at {pointer}:" in message


# ---- the built-in JSON grammar (RFC 8259) -----------------------------------------------------


def rfc8259_accepts(doc: str) -> bool:
    """json.loads, minus what RFC 8259 forbids and Python allows: NaN/Infinity and lone
    surrogate escapes (strings that cannot be encoded as UTF-8)."""

    def no_constants(name: str) -> object:
        raise ValueError(name)

    try:
        value = json.loads(doc, parse_constant=no_constants)
    except (ValueError, RecursionError):
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


JSON_DOCS = [
    '{"a": [1, -0, 0.5, 1e5, 1E-5, 2.5e+3], "b": {"c": null}, "d": [true, false]}',
    " \t\n\r[ ]\n",
    '"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\"\\\\"',
    '"raw DEL \x7f and é and 😀"',
    '"\\ud83d"',
    '"\\ude00"',
    '"\\ud83dx"',
    '"\\ud83d\\u0041"',
    '"tab\there"',
    "NaN",
    "-Infinity",
    "01",
    "1.",
    ".5",
    "-",
    "+1",
    "[1,]",
    '{"a":1,}',
    "{'a': 1}",
    '"\\x41"',
    '"\\u12"',
    "\u00a0[]",
    "[]\u2028",
    "",
    "tru",
]


@pytest.mark.parametrize("doc", JSON_DOCS)
def test_builtin_json_is_rfc8259(doc):
    text, indenter = builtin_lark("json")
    assert not indenter
    assert lark_accepts(text, doc) == rfc8259_accepts(doc), doc


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 17, 3.25, -1e-7, 12345678901234567890])
    if kind in (2, 3, 4):
        return "".join(rng.choice('ab"\\/\n\t\x7fé😀\u2028 ') for _ in range(rng.randrange(5)))
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        random_json(rng, 3) if False else f"k{i}": random_json(rng, depth + 1)
        for i in range(rng.randrange(4))
    }


def test_builtin_json_on_random_documents_and_mutations():
    text, _ = builtin_lark("json")
    rng = random.Random(8259)
    alphabet = ' \t\n{}[],:"\\/u0123456789abcdefE.+-tnrl\x7f\x01é'
    for _ in range(150):
        doc = dumps(random_json(rng), rng)
        assert lark_accepts(text, doc), doc
        chars = list(doc)
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 or not chars[i:]:
                chars.insert(i, rng.choice(alphabet))
            else:
                del chars[i]
        mutated = "".join(chars)
        assert lark_accepts(text, mutated) == rfc8259_accepts(mutated), mutated


def test_compact_schema_grammar_admits_no_whitespace():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    spaced, compact = (
        Grammar.from_json_schema(schema),
        Grammar.from_json_schema(schema, any_whitespace=False),
    )
    assert spaced.accepts('{ "a" : 1 }')
    assert spaced.accepts('{"a":1}')
    assert compact.accepts('{"a":1}')
    assert not compact.accepts('{"a": 1}')
    assert not compact.accepts_prefix("{ ")
