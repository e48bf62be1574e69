"""taoskills.specs.yamlio.dump_yaml writes exactly what PyYAML's safe dumper writes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from taoskills.specs import yamlio

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "skills").rglob("*.yaml"))
TEMPLATES = [p for p in SHIPPED if p.name.startswith("spec_template_")]


def _pyyaml(tree) -> str:
    return yaml.dump(tree, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, default_flow_style=False)


def test_shipped_yaml_is_written_as_pyyaml_writes_it():
    assert len(TEMPLATES) >= 20  # every network's actions ship a template
    for path in SHIPPED:
        tree = yaml.safe_load(path.read_text())
        assert yamlio.dump_yaml(tree) == _pyyaml(tree), path


def test_spec_templates_take_the_fast_path():
    """No template needs PyYAML (else build_spec pays PyYAML's cost on every call)."""
    for path in TEMPLATES:
        out: list[str] = []
        yamlio._emit(yaml.safe_load(path.read_text()), "", out, set())  # raises _Fallback otherwise
        assert "".join(out) == _pyyaml(yaml.safe_load(path.read_text())), path


_ATOMS = [
    "",
    "???",
    "?",
    "-",
    "-x",
    "- x",
    ":",
    "a:",
    "a: b",
    "a:b",
    "s3://bucket/key",
    "${oc.env:TAO_ENCRYPTION_KEY}",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "true",
    "1",
    "1.5",
    "1e3",
    "1:20",
    "0x1f",
    "0o17",
    ".5",
    "...",
    "---",
    "a #b",
    "a#b",
    "#a",
    " lead",
    "trail ",
    "two  spaces",
    "tab\there",
    "line\nbreak",
    "quote'd",
    'dq"x',
    "[x]",
    "x[0]",
    "{a}",
    "a,b",
    "café",
    "@at",
    "%pct",
    "!bang",
    "*star",
    "&amp",
    "|pipe",
    ">gt",
    "<lt",
    "`tick",
    "/abs/path/images_train",
    "a b c",
]


_WORDS = ["images", "train", "s3://b/k", "a-b", "x_y", "(ok)", "a,b", "v1.2", "$HOME", "???", "1", "-x", "ok?", "50%"]


def _atom(rng: random.Random, tricky: float):
    pick = rng.random()
    if pick < 0.45:
        words = _ATOMS if rng.random() < tricky else _WORDS
        text = rng.choice(words)
        if rng.random() < 0.4:  # sentences of every length around the 80-column fold
            text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 16)))
        return text
    return rng.choice([0, 1, -3, 10**20, True, False, None, 0.0, -0.5, 1e17, 3.14159, 1e-9, float("inf"), float("nan"), 2.5e300])


def _tree(rng: random.Random, depth: int, tricky: float):
    if depth <= 0 or rng.random() < 0.3:
        return _atom(rng, tricky)
    if rng.random() < 0.6:
        odd = ["x y", "1", "true", "a:", "k" * 120, "", "?"] if rng.random() < tricky else []
        keys = [rng.choice(["a", "b", "train", "num_epochs", "dataset", *odd]) for _ in range(4)]
        return {k: _tree(rng, depth - 1, tricky) for k in keys[: rng.randint(0, 4)]}
    return [_tree(rng, depth - 1, tricky) for _ in range(rng.randint(0, 4))]


@pytest.mark.parametrize("seed", range(6))
def test_generated_trees_match_pyyaml(seed):
    """Trees of odd scalars (mostly written by PyYAML) and of plain ones (mostly written by
    dump_yaml itself); both must give PyYAML's text."""
    rng = random.Random(seed)
    fast = 0
    for i in range(300):
        tricky = 0.5 if i % 2 else 0.02
        tree = {"root": _tree(rng, 5, tricky), "other": _tree(rng, 3, tricky)}
        if rng.random() < 0.2:
            shared = [1, {"x": 2}]
            tree["s1"], tree["s2"] = shared, shared  # PyYAML writes an anchor + alias
        if rng.random() < 0.1:
            tree[3] = "int key"
        if rng.random() < 0.1:
            tree["tuple"] = (1, 2)
        assert yamlio.dump_yaml(tree) == _pyyaml(tree), tree
        try:
            yamlio._emit(tree, "", [], set())
            fast += 1
        except yamlio._Fallback:
            pass
    assert fast >= 60  # the fast path is exercised, not only the fallback


def test_non_mapping_roots_and_the_round_trip():
    for tree in ({}, [], [1, 2], "x", None, 3):
        assert yamlio.dump_yaml(tree) == _pyyaml(tree)
    spec = yaml.safe_load(TEMPLATES[0].read_text())
    assert yaml.safe_load(yamlio.dump_yaml(spec)) == spec
