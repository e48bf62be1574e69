"""AutoML search spaces from the packaged train schemas: 1000 samples per network are all
valid specs (validate_spec), and bounds, log scale, dependencies, weights, custom ranges
and schedule coherence hold."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest

optuna = pytest.importorskip("optuna")

from taoskills.automl.space import SearchSpace, build_space, pick_weighted  # noqa: E402
from taoskills.bank.catalog import Catalog  # noqa: E402
from taoskills.errors import SpecError  # noqa: E402
from taoskills.specs.dotted import get_dotted, set_dotted  # noqa: E402
from taoskills.specs.validator import validate_spec  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
SKILLS = ["tao-train-dino", "tao-train-grounding-dino", "tao-train-mask-auto-encoder", "tao-train-nvdinov2"]
EPOCHS = 10


def _space(name: str, **kw) -> tuple:
    sk = Catalog.load().get(name)
    base = sk.template("train")
    space = build_space(sk.schema("train"), sk.manifest["actions"]["train"], base, sk.info.network_arch, max_epochs=EPOCHS, **kw)
    return sk, base, space


def _samples(space: SearchSpace, n: int, sampler=None) -> list[dict]:
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=7))
    return [space.sample(study.ask()) for _ in range(n)]


@pytest.mark.parametrize("name", SKILLS)
def test_1000_samples_are_valid_specs_within_bounds(name):
    sk, base, space = _space(name)
    assert space.keys() and set(space.keys()) <= set(sk.manifest["actions"]["train"]["automl_default_parameters"])
    schema = sk.schema("train")
    seen: dict[str, set] = {k: set() for k in space.keys()}
    for values in _samples(space, 1000):
        spec = copy.deepcopy(base)
        for key, value in values.items():
            set_dotted(spec, key, value)
            seen[key].add(value)
        set_dotted(spec, "train.num_epochs", EPOCHS)
        errors = [
            i for i in validate_spec(schema, spec, network_arch=sk.info.network_arch, action="train") if i.code != "warning"
        ]
        assert errors == [], (values, errors)
        for p in space.params:
            v = values[p.key]
            if p.kind == "categorical":
                assert v in p.choices
                continue
            assert p.low <= v <= p.high, (p.key, v)
            assert math.isfinite(v)
            if p.kind == "int":
                assert isinstance(v, int)
            if p.relation:
                parent = values.get(p.depends_on, space.base.get(p.depends_on))
                ok = {">": v > parent, ">=": v >= parent, "<": v < parent, "<=": v <= parent}[p.relation]
                assert ok, (p.key, v, p.relation, p.depends_on, parent)
            if p.key in ("train.optim.lr_step_size",):
                assert 1 <= v <= EPOCHS
            if p.key == "train.optim.warmup_epochs":
                assert v < EPOCHS
    for key, values in seen.items():  # the search really varies every parameter
        assert len(values) > 1, key


def test_learning_rates_and_weight_decay_are_log_scaled():
    _, _, space = _space("tao-train-dino")
    by = {p.key: p for p in space.params}
    for key in ("train.optim.lr", "train.optim.lr_backbone", "train.optim.weight_decay"):
        assert by[key].log and by[key].low > 0
    assert not by["train.optim.momentum"].log and not by["dataset.batch_size"].log
    lr = by["train.optim.lr"]
    assert lr.low == pytest.approx(2e-6) and lr.high == pytest.approx(2e-2)  # default 2e-4 x/÷ 100
    values = [v["train.optim.lr"] for v in _samples(space, 1000)]
    # log-uniform: about a quarter per decade of the 4-decade range (linear would put ~90% in the top decade)
    decades = Counter(int(math.floor(math.log10(v / lr.low))) for v in values)
    for d in range(4):
        assert 170 < decades[d] < 330, decades


def test_infinity_caps_follow_the_documented_rule():
    _, _, dino = _space("tao-train-dino")
    by = {p.key: p for p in dino.params}
    assert (by["dataset.batch_size"].low, by["dataset.batch_size"].high) == (1, 8)  # 2 x default 4
    assert by["model.num_queries"].high == 600  # 2 x default 300
    _, _, gd = _space("tao-train-grounding-dino")
    gby = {p.key: p for p in gd.params}
    assert gby["train.optim.momentum"].high == 1.0  # unit-interval knob, not 10 x 0.9
    assert gby["train.optim.lr"].high == pytest.approx(2e-2)  # log: default x 100
    assert gby["dataset.augmentation.train_random_crop_min"].high == 768


def test_dependencies_num_select_and_crop():
    _, _, space = _space("tao-train-dino")
    for v in _samples(space, 300, optuna.samplers.TPESampler(seed=1, n_startup_trials=5)):
        assert v["model.num_select"] <= v["model.num_queries"]
        assert v["dataset.augmentation.train_random_crop_max"] > v["dataset.augmentation.train_random_crop_min"]
    # the dependent parameter is one fixed distribution for every sampler
    names = [p.optuna_name for p in space.params]
    assert "model.num_select@frac" in names and names.index("model.num_select@frac") > names.index("model.num_queries")


def test_schedule_coherence_with_the_epoch_budget():
    sk = Catalog.load().get("tao-train-mask-auto-encoder")
    space = build_space(sk.schema("train"), sk.manifest["actions"]["train"], sk.template("train"), "mae", max_epochs=3)
    warm = next(p for p in space.params if p.key == "train.optim.warmup_epochs")
    assert warm.high == 2
    sk = Catalog.load().get("tao-train-nvdinov2")
    keys = [
        "train.schedulers.learning_rate.warm_up_steps",
        "train.schedulers.learning_rate.max_decay_steps",
        "train.schedulers.learning_rate.val_base",
    ]
    space = build_space(
        sk.schema("train"),
        sk.manifest["actions"]["train"],
        sk.template("train"),
        "nvdinov2",
        max_epochs=4,
        parameters=keys,
        steps_per_epoch=5,
    )
    by = {p.key: p for p in space.params}
    assert by[keys[1]].high <= 20 and by[keys[0]].high <= 20
    assert by[keys[2]].log
    for v in _samples(space, 300):
        assert v[keys[0]] <= v[keys[1]] <= 20


def test_option_weights_are_honoured():
    assert pick_weighted(["a", "b"], [3, 1], 0.74) == "a" and pick_weighted(["a", "b"], [3, 1], 0.76) == "b"
    sk = Catalog.load().get("tao-train-dino")
    space = build_space(
        sk.schema("train"),
        sk.manifest["actions"]["train"],
        sk.template("train"),
        "dino",
        max_epochs=EPOCHS,
        parameters=["train.optim.optimizer"],
        custom_param_ranges={"train.optim.optimizer": {"valid_options": ["SGD", "AdamW"], "option_weights": [1, 3]}},
    )
    counts = Counter(v["train.optim.optimizer"] for v in _samples(space, 1000))
    assert 650 < counts["AdamW"] < 850, counts


def test_custom_ranges_disabled_and_explicit_parameters():
    sk, base, space = _space(
        "tao-train-dino",
        disabled=["dataset.workers"],
        custom_param_ranges={"train.optim.lr": {"valid_min": 1e-5, "valid_max": 1e-3}},
    )
    assert "dataset.workers" not in space.keys()
    lr = next(p for p in space.params if p.key == "train.optim.lr")
    assert (lr.low, lr.high, lr.log) == (1e-5, 1e-3, True)
    for bad, field in (
        ({"custom_param_ranges": {"train.optim.lr": {"valid_min": 0.0, "valid_max": 5.0}}}, "custom_param_ranges"),
        ({"custom_param_ranges": {"train.optim.nope": {"valid_min": 1}}}, "custom_param_ranges"),
        ({"parameters": ["train.optim.lrr"]}, "parameters"),
        ({"disabled": ["model.not_searched"]}, "disabled_parameters"),
    ):
        with pytest.raises(SpecError) as exc:
            _space("tao-train-dino", **bad)
        assert exc.value.field == field and exc.value.fix
    with pytest.raises(SpecError, match="did you mean train.optim.lr"):
        _space("tao-train-dino", parameters=["train.optim.lrr"])


def test_agent_proposals_round_trip_and_are_checked():
    _, _, space = _space("tao-train-dino")
    values = _samples(space, 1)[0]
    params = space.to_optuna_params(values)
    study = optuna.create_study()
    study.enqueue_trial(params)
    again = space.sample(study.ask())
    for k, v in values.items():
        assert again[k] == pytest.approx(v, rel=1e-6, abs=1), k
    bad = dict(values, **{"model.num_select": values["model.num_queries"] + 1})
    with pytest.raises(SpecError) as exc:
        space.to_optuna_params(bad)
    assert exc.value.field == "model.num_select"


def test_space_round_trips_through_json():
    _, _, space = _space("tao-train-dino")
    again = SearchSpace.from_dict(space.to_dict())
    assert again.to_dict() == space.to_dict()
    assert get_dotted(space.to_dict(), "max_epochs") == EPOCHS
