"""Generated-corpus agreement between ``validate_spec`` and TAO Core 7.3.0 (tests/spec_corpus.py).

For every network x every action of its manifest:

* TAO Core's own defaults (``OmegaConf.to_yaml`` of the structured ExperimentConfig, filtered
  to the action's sections) validate with no error;
* every ``Optional`` field set to null validates (and TAO Core accepts it);
* every generated mutation gets the same verdict from us as from TAO Core's structured merge
  (wrong types, nulls, silent conversions, unknown keys, dataclass list items), and every
  value outside an enum is refused by us as by TAO Core's ``validate_jsonschema``; each
  refusal names the field (or a key below it) and carries a fix.
"""

from __future__ import annotations

import json

import pytest

import spec_corpus as corpus
from taoskills import paths
from taoskills.specs.dotted import copy_tree, set_dotted
from taoskills.specs.validator import validate_spec

pytestmark = pytest.mark.taocore

SKILLS = {
    "nvdinov2": "tao-train-nvdinov2",
    "dino": "tao-train-dino",
    "grounding_dino": "tao-train-grounding-dino",
    "mae": "tao-train-mask-auto-encoder",
}
SCHEMA_CODES = {"unknown_key", "type", "enum", "bound", "pattern", "invalid", "missing"}


def _cases() -> list[tuple[str, str]]:
    out = []
    for network, skill in SKILLS.items():
        manifest = json.loads((paths.skills_dir() / skill / "schemas" / "manifest.json").read_text(encoding="utf-8"))
        out.extend((network, key) for key in manifest["actions"])
    return out


CASES = _cases()
_SCHEMAS: dict[tuple[str, str], dict] = {}


def _schema(network: str, key: str) -> dict:
    if (network, key) not in _SCHEMAS:
        manifest = json.loads((paths.skills_dir() / SKILLS[network] / "schemas" / "manifest.json").read_text(encoding="utf-8"))
        path = paths.skills_dir() / SKILLS[network] / manifest["actions"][key]["path"]
        _SCHEMAS[(network, key)] = json.loads(path.read_text(encoding="utf-8"))
    return _SCHEMAS[(network, key)]


def _errors(issues, under: str | None = None):
    errs = [i for i in issues if i.code in SCHEMA_CODES]
    if under is None:
        return errs
    return [i for i in errs if i.field == under or i.field.startswith((under + ".", under + "["))]


def test_corpus_covers_every_network_and_action():
    assert {n for n, _ in CASES} == set(SKILLS)
    assert len(CASES) == 4 + 9 + 8 + 5


@pytest.mark.parametrize("network,key", CASES)
def test_tao_core_defaults_validate(network, key):
    schema = _schema(network, key)
    spec = corpus.default_spec(network, schema)
    assert set(spec) == {k for k, v in schema["properties"].items() if isinstance(v, dict)}
    errors = [i for i in validate_spec(schema, spec) if i.code != "warning"]
    assert errors == []


@pytest.mark.parametrize("network,key", CASES)
def test_every_optional_field_accepts_null(network, key):
    schema = _schema(network, key)
    base = corpus.default_spec(network, schema)
    optional = [f for f in corpus.fields(network) if f.optional and f.key.split(".")[0] in base]
    assert optional, "every action reads some Optional field"
    tao = {(m.key, m.kind): r for m, r in zip(corpus.mutations(network), corpus.tao_verdicts(network), strict=True)}
    for f in optional:
        assert tao[(f.key, "null")] is False, f"TAO Core refuses null at {f.key}"
        spec = copy_tree(base)
        set_dotted(spec, f.key, None)
        assert _errors(validate_spec(schema, spec)) == [], f.key


@pytest.mark.parametrize("network,key", CASES)
def test_mutations_get_tao_cores_verdict(network, key):
    schema = _schema(network, key)
    mutations = corpus.mutations(network)
    verdicts = corpus.tao_verdicts(network)
    checked = {True: 0, False: 0}
    disagree = []
    for m, tao_rejects in zip(mutations, verdicts, strict=True):
        if m.section not in schema["properties"]:
            continue  # a section this action does not read (TAO's action filter drops it)
        issues = validate_spec(schema, m.spec())
        ours = _errors(issues, m.key)
        if tao_rejects and not ours:
            disagree.append(f"TAO Core refuses {m}; validate_spec accepts it")
        elif tao_rejects and not all(i.fix for i in ours):
            disagree.append(f"{m}: an issue without a fix")
        elif not tao_rejects and _errors(issues):
            disagree.append(f"TAO Core accepts {m}; validate_spec says {[(i.field, i.reason) for i in _errors(issues)]}")
        checked[tao_rejects] += 1
    assert disagree == []
    assert checked[True] > 20 and checked[False] > 5, checked


@pytest.mark.parametrize("network,key", CASES)
def test_values_outside_an_enum_are_refused_like_tao_core(network, key):
    schema = _schema(network, key)
    judge = corpus.TaoJudge.__new__(corpus.TaoJudge)  # enum verdicts need no structured config
    planted = corpus.enum_mutations(schema)
    for m in planted:
        assert judge.rejects(m, schema), f"TAO Core's validate_jsonschema accepts {m}"
        ours = _errors(validate_spec(schema, m.spec()), m.key)
        assert [i.code for i in ours] == ["enum"], f"{m}: {ours}"
        assert "one of" in ours[0].fix or "did you mean" in ours[0].fix


@pytest.mark.parametrize("network,key", CASES)
def test_remembered_sections_give_the_answers_of_a_fresh_pass(network, key, monkeypatch):
    """validate_spec remembers each top-level section's prepared form by its JSON text
    (validator._prep_section), the gate its verdict per section and check_constraints its merge with
    the schema defaults (constraints._effective); over the whole corpus (defaults, each Optional set to null, every
    mutation, each twice) the answers must equal those of a pass that remembers nothing, and
    sections must really be reused."""
    from taoskills.specs import constraints, validator

    schema = _schema(network, key)
    base = corpus.default_spec(network, schema)
    specs = [base]
    for f in corpus.fields(network):
        if f.optional and f.key.split(".")[0] in base:
            spec = copy_tree(base)
            set_dotted(spec, f.key, None)
            specs.append(spec)
    specs += [m.spec() for m in corpus.mutations(network) if m.section in schema["properties"]]
    real = validator._prep_section
    hits = []

    def forgetful(index, section, value):
        validator._SECTIONS.clear()
        validator._compiled(schema)[2].seen.clear()  # the gate's verdicts per section too
        return real(index, section, value)

    def counting(index, section, value):
        hits.append(len(validator._SECTIONS))
        out = real(index, section, value)
        hits[-1] = len(validator._SECTIONS) == hits[-1]  # nothing added: the section was remembered
        return out

    real_effective = constraints._effective

    def forgetful_effective(default, given):
        constraints._MERGED.clear()
        return real_effective(default, given)

    def verdicts(remember: bool) -> list[list[tuple]]:
        monkeypatch.setattr(validator, "_prep_section", counting if remember else forgetful)
        monkeypatch.setattr(constraints, "_effective", real_effective if remember else forgetful_effective)
        out = []
        for spec in specs + specs:
            for complete in (False, True):
                out.append([(i.field, i.reason, i.fix, i.code) for i in validate_spec(schema, spec, require_complete=complete)])
        return out

    assert verdicts(False) == verdicts(True)
    assert sum(hits) > len(hits) // 2, (sum(hits), len(hits))
