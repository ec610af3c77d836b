"""Property: the loader either builds a space or raises SpaceError (one line, file first), never
anything else; and a space that loads only yields configurations whose proxies build."""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.errors import SpaceError
from nas.models.layers import ACTS, NORMS
from nas.models.mixers import MIXERS
from nas.models.model import validate
from search_spaces import Space, load_space
from search_spaces._space import CONSTRAINT_KEYS, PROXY_KEYS, STAGE_KEYS, TOP_KEYS

from ._docs import SHIPPED, shipped_doc

EXAMPLES = int(os.environ.get("NAS_FUZZ_EXAMPLES", "200"))  # raise it for a deeper run
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VOCAB = sorted({*TOP_KEYS["metaformer"], *TOP_KEYS["convmixer"], *STAGE_KEYS, *CONSTRAINT_KEYS,
                *PROXY_KEYS, "total", "ratios", "per_stage", "base", "multipliers", "divisor",
                "lists", *MIXERS.names(), "kernel_size", "pool_size", "head_dim",
                "expansion_ratio", "act"})
PLAUSIBLE = [*MIXERS.names(), *NORMS.names(), *ACTS.names(), "metaformer", "convmixer", "v1",
             "v2", "mlp", "linear", "1:1:3:1", "1:2:4:8", "64:128:320:512", "1:1", "8.0e9",
             "1e-5", "0x10", "1_000", ".nan", "-4", "", 0, 1, 2, 3, 4, 7, 8, 16, 32, 64, 224, 0.5,
             0.25, 1.0e-5, 223448, 2**70, -1, float("nan"), float("inf"), True, False, None]

scalars = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.none(), st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80), st.integers(min_value=-2, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
keys = st.one_of(st.sampled_from(VOCAB), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=12,
)


def _check(make: Any, source: str) -> None:
    """Load; a SpaceError is fine, anything else fails; a loaded space must sample and build."""
    try:
        space = make()
    except SpaceError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1, f"expected a one-line message, got {msg!r}"
        assert msg.startswith(source), f"expected the message to start with {source!r}: {msg!r}"
        return
    arch, _ = space.sample_random(0, feasible=False)
    validate(arch)
    validate(space.proxy(arch, 10))
    space.size()
    space.parameters()


# --------------------------------------------------------------------------- (a) mutations


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


def _typo(data: st.DataObject, key: str) -> str:
    if not key:
        return "x"
    i = data.draw(st.integers(0, len(key) - 1), label="typo position")
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "upper", "insert"]), label="typo")
    if kind == "drop":
        return key[:i] + key[i + 1:] or "x"
    if kind == "double":
        return key[:i] + key[i] + key[i:]
    if kind == "swap" and i + 1 < len(key):
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]
    if kind == "upper":
        return key[:i] + key[i].upper() + key[i + 1:]
    return key[:i] + data.draw(st.sampled_from(string.ascii_lowercase), label="char") + key[i:]


def _mutate(data: st.DataObject, doc: Any) -> None:
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    parent, last = _parent(doc, path), path[-1]
    op = data.draw(st.sampled_from(["delete", "replace", "rename", "insert"]), label="op")
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = data.draw(values, label="value")
    elif op == "rename" and isinstance(parent, dict):
        parent[_typo(data, str(last))] = parent.pop(last)
    elif op == "insert" and isinstance(parent[last], dict):
        parent[last][data.draw(keys, label="key")] = data.draw(values, label="value")
    elif op == "insert" and isinstance(parent[last], list):
        parent[last].append(data.draw(values, label="value"))
    else:
        parent[last] = data.draw(scalars, label="scalar")


@FUZZ
@given(name=st.sampled_from(SHIPPED), data=st.data())
def test_mutated_shipped_documents(name: str, data: st.DataObject) -> None:
    doc = shipped_doc(name)  # fresh: YAML anchors share lists, so never reuse a document
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if not _paths(doc):
            break
        _mutate(data, doc)
    _check(lambda: Space(doc, source=f"{name}.yaml"), f"{name}.yaml")


# --------------------------------------------------------------------------- (b), (c) random


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(doc=st.one_of(
    st.dictionaries(st.sampled_from(VOCAB), values, max_size=8),
    st.fixed_dictionaries({"name": st.just("x"),
                           "stages": st.lists(st.dictionaries(st.sampled_from(STAGE_KEYS), values,
                                                              max_size=3), max_size=5)},
                          optional={k: values for k in ("depth", "width", "mixers", "family",
                                                        "proxy", "constraints", "norm")}),
    values,
))
def test_random_yamlish_documents(fuzz_dir: Path, doc: Any) -> None:
    path = fuzz_dir / "doc.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    _check(lambda: load_space(path), str(path))
    _check(lambda: Space(doc, source="<python>"), "<python>")


YAML_TOKENS = ["name: x", "stages:", "depth:", "width:", "mixer:", "total:", "a", "b", "1",
               "1.5", "1:2", "\n", "\n  ", "\n- ", ": ", "- ", "[", "]", "{", "}", ", ", "'",
               '"', "&a ", "*a", "<<: ", "? ", "!!int ", "!!float ", "!!bool ", "!!str ",
               "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!python/none ", "2001-02-30",
               "2001-13-01", "maybe", "0x1G", ".nan", ".inf", "~", "|", ">", "#", "%YAML 1.1\n",
               "---\n", "...\n", "\t", "\x00", "\ud800", "é"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=st.one_of(
    st.lists(st.sampled_from(YAML_TOKENS), max_size=25).map("".join),
    st.text(max_size=60),  # characters() includes lone surrogates: invalid UTF-8 in the file
))
def test_random_text(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "text.yaml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    _check(lambda: load_space(path), str(path))


@pytest.mark.parametrize("key, rule", [("description", "must be a string"),
                                       ("family", "must be one of metaformer, convmixer")])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path, key: str, rule: str) -> None:
    # 840 bytes whose aliases nest 9 lists of 9 nine levels deep: the error's repr of the value
    # took 37 s and 5 GB (a MemoryError traceback, exit 1, under a 6 GB limit); under `family`
    # its "did you mean" turned the whole value into a string (a MemoryError again)
    names = "abcdefghi"
    levels = ["&a [x,x,x,x,x,x,x,x,x]"] + [
        f"&{names[i]} [{','.join(['*' + names[i - 1]] * 9)}]" for i in range(1, 9)]
    text = (Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text()
    path = tmp_path / "bomb.yaml"
    line = next(x for x in text.splitlines() if x.startswith(f"{key}:"))
    path.write_text(text.replace(line, f"{key}: [{', '.join(levels)}]"))
    assert path.stat().st_size < 1024
    with pytest.raises(SpaceError, match=rf"bomb.yaml: {key}: {rule}; got "
                                         r"\[\['x', 'x', .{40,50}\.\.\.$"):
        load_space(path)


def test_a_number_past_python_s_digit_limit_is_one_line(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text()
    path = tmp_path / "big.yaml"
    path.write_text(text.replace("num_classes: 1000", 'num_classes: "' + "9" * 5000 + '"'))
    with pytest.raises(SpaceError, match=r"big.yaml: num_classes: values must be finite and at "
                                         r"most 1e\+15 in magnitude; got '999"):
        load_space(path)


def test_a_path_the_system_refuses_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"^a{300}: cannot read: File name too long$"):
        load_space("a" * 300)
    with pytest.raises(SpaceError, match=r"/x{300}/tiny.yaml: cannot read: File name too long$"):
        load_space(tmp_path / ("x" * 300) / "tiny.yaml")


def test_an_error_writes_only_as_much_of_a_value_as_it_shows() -> None:
    from search_spaces._document import short

    written = []

    class Item:
        def __repr__(self) -> str:
            written.append(1)
            return "item"

    assert short([Item()] * 10_000) == "[" + ", ".join(["item"] * 10)[:56] + "..."
    assert len(written) <= 10, len(written)
    for value in ([1, "a", (2,)], (), {"k": {"z": [None, 3.5]}}, "x" * 100, [list(range(50))]):
        text = repr(value)
        assert short(value) == (text if len(text) <= 60 else text[:57] + "..."), value
