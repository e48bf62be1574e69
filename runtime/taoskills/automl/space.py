"""Search space of a model skill's train action, derived from its packaged schema.

Source of every rule: the train schema's TAO metadata (``type``, ``minimum``/``maximum``,
``enum``, ``option_weights``, ``math_cond``, ``depends_on``, ``parent_param``,
``automl_enabled``) and the manifest's ``automl_default_parameters`` (the same fields TAO
AutoML 7.2.0 reads, see its ``search_space/params.py`` and ``utils/math_utils.py``). Where
we differ from TAO AutoML the rule is stated here.

Rules (documented, tested in tests/unit/test_automl_space.py):

* **Which parameters**: the manifest's ``automl_default_parameters`` of the train action,
  or the user's ``parameters`` list (any leaf of the schema); minus ``disabled``. A
  parameter the schema marks ``automl_enabled: false`` is refused unless the user lists it
  explicitly. Unknown keys raise SpecError with the nearest key.
* **Bounds**: schema ``minimum``/``maximum``. ``Infinity`` (or no maximum) is capped from the
  default: ints ``2 x default`` (at least ``minimum + 1``), floats ``10 x default`` — the
  caps TAO AutoML's ``get_valid_range`` uses — except unit-interval knobs (momentum,
  probabilities, decay rates, multipliers; ``UNIT_NAMES``) whose default is <= 1: cap 1.0.
  No minimum: ints ``max(1, default // 2)``, floats ``default / 10``.
* **Strict conditions**: ``math_cond`` ``> x`` with ``minimum == x`` lifts the lower bound
  (ints ``x + 1``; floats ``x + 1e-3 * (high - x)`` on a linear scale). ``/ k`` samples a
  multiple of k; ``^ k`` a power of k.
* **Log scale** (TAO AutoML samples these linearly): learning rates and weight decays
  (``LOG_NAMES``; NVDINOv2 ``train.schedulers.learning_rate.val_*``). A log range needs a
  positive low: ``[max(minimum, default / 100), min(maximum, default * 100)]``. A default
  of 0 keeps the linear scale. An ``Infinity`` maximum of a log parameter is ``default * 100``.
* **Dependencies**: ``depends_on`` with ``math_cond`` ``> | >= | < | <= depends_on`` bounds
  the value by its parent's sampled (or base spec) value; ``depends_on`` without a
  relational math_cond means ``<=`` parent (``model.num_select <= model.num_queries``,
  TAO Core dino ``ModelConfig``), and for DINO also ``< num_queries * dataset.num_classes``.
  A dependent parameter is searched as a fraction ``u`` in [0, 1] of its feasible range
  (Optuna name ``<key>@frac``) so every sampler sees one fixed distribution.
* **Weighted enums**: ``option_weights`` are honoured exactly: the choice is drawn as
  ``u`` ~ U(0, 1) through the cumulative weights (name ``<key>@weighted``); enums without
  weights are plain categoricals.
* **Schedule coherence** with the epoch budget ``max_epochs``: epoch-valued schedule
  knobs (``EPOCH_KEYS``: lr_step_size, warmup_epochs, ...) are capped at the budget
  (``warmup_epochs`` < budget; step sizes and milestones >= 1); step-valued NVDINOv2 schedule knobs are capped at
  ``max_epochs * steps_per_epoch`` when the number of steps is known, and
  ``warm_up_steps <= max_decay_steps``.
* **custom_param_ranges**: ``{key: {valid_min, valid_max, valid_options, option_weights,
  log}}`` narrow a parameter; a range outside the schema bounds or an option outside the
  enum raises SpecError (field ``custom_param_ranges``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from taoskills.errors import SpecError

LOG_NAMES = frozenset({"lr", "lr_backbone", "base_lr", "learning_rate", "min_lr", "weight_decay", "warmup_lr"})
UNIT_NAMES = re.compile(r"(^momentum$|_prob$|^lr_decay$|_decay_rate$|_mult$|multiplier$)")
#: Epoch-valued schedule knobs (capped at the epoch budget); value: strict (< budget) or not.
EPOCH_KEYS: dict[str, bool] = {
    "train.optim.lr_step_size": False,
    "train.optim.warmup_epochs": True,
    "train.optim.lr_steps": False,
    "train.optim.milestones": False,
}
_STEP_SCHED = re.compile(r"^train\.schedulers\.[a-z_]+\.(warm_up_steps|max_decay_steps|freeze_steps)$")
_REL = re.compile(r"^\s*(>=|<=|>|<)\s*depends_on\s*$")
_NUM_COND = re.compile(r"^\s*(>=|>)\s*(-?[0-9.]+)\s*$")
_MULT = re.compile(r"^\s*/\s*(\d+)\s*$")
_POW = re.compile(r"^\s*\^\s*(\d+)\s*$")


@dataclass
class Param:
    """One searched parameter. ``kind``: float | int | categorical. ``relation``: how the
    value is bounded by ``depends_on`` (``> >= < <=``). ``weights``: option weights."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: list[Any] | None = None
    weights: list[float] | None = None
    default: Any = None
    depends_on: str | None = None
    relation: str | None = None
    multiple_of: int | None = None
    power_of: int | None = None
    note: str = ""
    schema_min: float | None = None  # the schema's own bounds (custom ranges must stay inside)
    schema_max: float | None = None

    @property
    def optuna_name(self) -> str:
        if self.depends_on:
            return f"{self.key}@frac"
        if self.weights:
            return f"{self.key}@weighted"
        return self.key


@dataclass
class SearchSpace:
    """Ordered parameters (parents before dependants) plus the epoch budget they obey."""

    network_arch: str
    params: list[Param]
    max_epochs: int
    steps_per_epoch: int | None = None
    base: dict[str, Any] = field(default_factory=dict)  # base-spec values of parents not searched

    def to_dict(self) -> dict[str, Any]:
        return {
            "network_arch": self.network_arch,
            "max_epochs": self.max_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "base": self.base,
            "params": [asdict(p) for p in self.params],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        return cls(
            network_arch=d["network_arch"],
            params=[Param(**p) for p in d["params"]],
            max_epochs=int(d["max_epochs"]),
            steps_per_epoch=d.get("steps_per_epoch"),
            base=dict(d.get("base") or {}),
        )

    # -- sampling -------------------------------------------------------------------------

    def sample(self, trial: Any) -> dict[str, Any]:
        """Dotted key -> value for one Optuna ``trial`` (``trial.suggest_*``)."""
        values: dict[str, Any] = {}
        for p in self.params:
            values[p.key] = self._sample_one(trial, p, values)
        return values

    def _bounds(self, p: Param, values: dict[str, Any]) -> tuple[Any, Any]:
        low, high = p.low, p.high
        if p.depends_on:
            parent = values.get(p.depends_on, self.base.get(p.depends_on))
            if parent is not None:
                step = 1 if p.kind == "int" else 0.0
                rel = p.relation or "<="
                if rel == ">":
                    low = max(low, parent + (step or _eps(parent)))
                elif rel == ">=":
                    low = max(low, parent)
                elif rel == "<":
                    high = min(high, parent - (step or _eps(parent)))
                else:
                    high = min(high, parent)
                if p.key == "model.num_select" and self.network_arch == "dino":
                    n_cls = self.base.get("dataset.num_classes")
                    if isinstance(n_cls, int) and n_cls > 0:
                        high = min(high, values.get(p.depends_on, parent) * n_cls - 1)
        return low, high

    def _sample_one(self, trial: Any, p: Param, values: dict[str, Any]) -> Any:
        if p.kind == "categorical":
            if p.weights:
                u = trial.suggest_float(p.optuna_name, 0.0, 1.0)
                return pick_weighted(p.choices or [], p.weights, u)
            return trial.suggest_categorical(p.optuna_name, p.choices)
        low, high = self._bounds(p, values)
        if high < low:
            raise SpecError(
                f"{p.key}: no value satisfies {p.relation or '<='} {p.depends_on} (range {low}..{high})",
                field=p.key,
                fix=f"widen the range of {p.key} or {p.depends_on} (custom_param_ranges)",
            )
        if p.depends_on:
            u = trial.suggest_float(p.optuna_name, 0.0, 1.0)
            return self.from_fraction(p, u, low, high)
        if p.kind == "int":
            if p.power_of:
                powers = _powers(p.power_of, low, high)
                return trial.suggest_categorical(p.optuna_name, powers)
            step = p.multiple_of or 1
            lo = _ceil_to(low, step)
            return trial.suggest_int(p.optuna_name, lo, max(lo, high - (high - lo) % step), step=step, log=p.log)
        return trial.suggest_float(p.optuna_name, float(low), float(high), log=p.log)

    def from_fraction(self, p: Param, u: float, low: Any, high: Any) -> Any:
        """Map ``u`` in [0, 1] to a value of ``p`` in [low, high] (log-aware)."""
        u = min(1.0, max(0.0, float(u)))
        if p.log and low > 0:
            v = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            v = low + u * (high - low)
        if p.kind == "int":
            return int(min(high, max(low, math.floor(v + 0.5))))
        return float(min(high, max(low, v)))

    def to_optuna_params(self, values: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`sample`: spec values -> Optuna parameter values (for an agent's
        proposed trial). Raises SpecError when a value is outside its range or relation."""
        out: dict[str, Any] = {}
        merged = dict(values)
        for p in self.params:
            if p.key not in values:
                raise SpecError(
                    f"proposed trial lacks {p.key}", field=p.key, fix=f"give a value for every searched key: {self.keys()}"
                )
            v = values[p.key]
            if p.kind == "categorical":
                if v not in (p.choices or []):
                    raise SpecError(f"{p.key}={v!r} is not one of {p.choices}", field=p.key, fix=f"use one of {p.choices}")
                out[p.optuna_name] = _weighted_midpoint(p.choices or [], p.weights, v) if p.weights else v
                continue
            low, high = self._bounds(p, merged)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (low <= v <= high):
                raise SpecError(
                    f"{p.key}={v!r} is outside its search range {low}..{high}",
                    field=p.key,
                    fix=f"propose {p.key} in [{low}, {high}]",
                )
            if p.kind == "int" and int(v) != v:
                raise SpecError(f"{p.key}={v!r} must be an integer", field=p.key, fix=f"propose an integer for {p.key}")
            if p.depends_on:
                if high == low:
                    out[p.optuna_name] = 0.0
                elif p.log and low > 0:
                    out[p.optuna_name] = (math.log(v) - math.log(low)) / (math.log(high) - math.log(low))
                else:
                    out[p.optuna_name] = (v - low) / (high - low)
            else:
                out[p.optuna_name] = int(v) if p.kind == "int" else float(v)
        return out

    def keys(self) -> list[str]:
        return [p.key for p in self.params]


def pick_weighted(choices: list[Any], weights: list[float], u: float) -> Any:
    """The option whose cumulative-weight interval holds ``u`` (weights normalised)."""
    total = float(sum(weights))
    acc = 0.0
    for choice, w in zip(choices, weights):
        acc += w / total
        if u < acc:
            return choice
    return choices[-1]


def _weighted_midpoint(choices: list[Any], weights: list[float] | None, v: Any) -> float:
    total, acc = float(sum(weights or [])), 0.0
    for choice, w in zip(choices, weights or []):
        if choice == v:
            return (acc + w / 2) / total
        acc += w
    return 0.0


def _eps(x: float) -> float:
    return max(abs(x) * 1e-6, 1e-12)


def _ceil_to(x: int, k: int) -> int:
    return int(math.ceil(x / k) * k)


def _powers(k: int, low: int, high: int) -> list[int]:
    out, v = [], 1
    while v <= high:
        if v >= low:
            out.append(v)
        v *= k
    return out or [int(low)]


# ----------------------------------------------------------------------------- building


def _node(schema: dict, key: str) -> dict | None:
    node: Any = schema
    for part in key.split("."):
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or part not in props:
            return None
        node = props[part]
    return node


def _is_log(key: str, kind: str, default: Any) -> bool:
    parts = key.split(".")
    last = parts[-1]
    if kind != "float" or not isinstance(default, (int, float)) or default <= 0:
        return False
    return last in LOG_NAMES or (len(parts) > 1 and parts[-2] == "learning_rate" and last.startswith("val_"))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def build_param(schema: dict, key: str, default: Any, *, explicit: bool) -> Param:
    """One :class:`Param` from the schema node of ``key`` (rules in the module docstring).

    ``default``: the base spec's value (falls back to the schema default).
    Raises SpecError (field ``parameters``) for an unknown key, a non-leaf, a type that
    cannot be searched, or an ``automl_enabled: false`` parameter not listed explicitly.
    """
    node = _node(schema, key)
    if node is None or "properties" in node:
        import difflib

        from taoskills.specs.validator import schema_keys

        near = difflib.get_close_matches(key, sorted(schema_keys(schema)), n=1)
        raise SpecError(
            f"{key} is not a leaf parameter of the train schema" + (f" (did you mean {near[0]}?)" if near else ""),
            field="parameters",
            fix="use the schema's dotted keys (see the manifest's automl_default_parameters)",
        )
    if node.get("automl_enabled") is False and not explicit:
        raise SpecError(
            f"{key} is not an AutoML parameter (automl_enabled: false)", field="parameters", fix="list it explicitly to search it"
        )
    kind = node.get("type")
    default = node.get("default") if default is None else default
    enum = node.get("enum")
    if kind == "bool":
        return Param(key, "categorical", choices=[True, False], default=default, note="bool: fair choice")
    if enum or kind in ("categorical", "ordered_int", "string"):
        if not enum:
            raise SpecError(f"{key} is a free string; it cannot be searched", field="parameters", fix="pick enum parameters")
        weights = node.get("option_weights")
        weights = [float(w) for w in weights] if isinstance(weights, list) and len(weights) == len(enum) else None
        return Param(key, "categorical", choices=list(enum), weights=weights, default=default)
    if kind not in ("int", "float"):
        raise SpecError(f"{key} has type {kind}; only int, float, bool and enums are searched", field="parameters", fix="drop it")
    lo, hi = node.get("minimum"), node.get("maximum")
    schema_min = float(lo) if _finite(lo) else None
    schema_max = float(hi) if _finite(hi) else None
    d = default if _finite(default) else (lo if _finite(lo) else 1)
    notes = []
    last = key.split(".")[-1]
    log = _is_log(key, kind, d)
    if not _finite(hi) and log:
        hi = d * 100.0
    if not _finite(hi):
        if kind == "float" and UNIT_NAMES.search(last) and d <= 1:
            hi = 1.0
            notes.append("Infinity -> 1.0 (unit-interval knob)")
        elif kind == "int":
            hi = max(int(2 * d), int(lo if _finite(lo) else 1) + 1)
            notes.append("Infinity -> 2 x default")
        else:
            hi = 10.0 * d if d > 0 else 1.0
            notes.append("Infinity -> 10 x default")
    if not _finite(lo):
        lo = max(1, int(d) // 2) if kind == "int" else (d / 100.0 if log else d / 10.0)
    if key in EPOCH_KEYS and not EPOCH_KEYS[key]:
        lo = max(lo, 1)  # a step size / milestone of 0 epochs is no schedule
    cond = node.get("math_cond") or ""
    multiple_of = power_of = None
    m = _NUM_COND.match(cond)
    if m and lo <= float(m.group(2)):
        bound = float(m.group(2))
        if kind == "int":
            lo = int(math.floor(bound)) + 1 if m.group(1) == ">" else max(lo, int(math.ceil(bound)))
        elif m.group(1) == ">" and not log:
            lo = bound + 1e-3 * (hi - bound)
    if (mm := _MULT.match(cond)) and kind == "int":
        multiple_of = int(mm.group(1))
    if (mp := _POW.match(cond)) and kind == "int":
        power_of = int(mp.group(1))
    if log:
        lo, hi = max(float(lo), d / 100.0), min(float(hi), d * 100.0)
        notes.append("log scale")
    relation = None
    dep = node.get("depends_on")
    if dep:
        rm = _REL.match(cond)
        relation = rm.group(1) if rm else "<="
    if kind == "int":
        lo, hi = int(math.ceil(lo)), int(math.floor(hi))
    return Param(
        key,
        kind,
        low=lo,
        high=hi,
        log=log,
        default=default,
        depends_on=dep,
        relation=relation,
        multiple_of=multiple_of,
        power_of=power_of,
        note="; ".join(notes),
        schema_min=schema_min,
        schema_max=schema_max,
    )


def apply_custom_range(p: Param, rng: dict[str, Any]) -> None:
    """Narrow ``p`` with one ``custom_param_ranges`` entry (must stay inside the schema)."""
    allowed = {"valid_min", "valid_max", "valid_options", "option_weights", "log"}
    unknown = set(rng) - allowed
    if unknown:
        raise SpecError(
            f"custom_param_ranges[{p.key}] has unknown keys {sorted(unknown)}",
            field="custom_param_ranges",
            fix=f"use {sorted(allowed)}",
        )
    if p.kind == "categorical":
        if "valid_options" in rng:
            bad = [o for o in rng["valid_options"] if o not in (p.choices or [])]
            if bad or not rng["valid_options"]:
                raise SpecError(
                    f"custom_param_ranges[{p.key}].valid_options {bad or '[]'} are outside the schema options {p.choices}",
                    field="custom_param_ranges",
                    fix=f"pick options from {p.choices}",
                )
            p.choices = list(rng["valid_options"])
            p.weights = None
        if "option_weights" in rng:
            if len(rng["option_weights"]) != len(p.choices or []):
                raise SpecError(
                    f"custom_param_ranges[{p.key}].option_weights needs {len(p.choices or [])} weights",
                    field="custom_param_ranges",
                    fix="give one weight per option",
                )
            p.weights = [float(w) for w in rng["option_weights"]]
        return
    lo, hi = rng.get("valid_min", p.low), rng.get("valid_max", p.high)
    smin = p.schema_min if p.schema_min is not None else -math.inf
    smax = p.schema_max if p.schema_max is not None else math.inf
    if lo < smin or hi > smax or lo > hi or (p.log and lo <= 0):
        raise SpecError(
            f"custom_param_ranges[{p.key}] range {lo}..{hi} is outside the schema bounds {smin}..{smax}"
            + (" (a log-scale range needs valid_min > 0)" if p.log and lo <= 0 else ""),
            field="custom_param_ranges",
            fix=f"keep the range of {p.key} inside [{smin}, {smax}] with valid_min <= valid_max",
        )
    p.low, p.high = (int(lo), int(hi)) if p.kind == "int" else (float(lo), float(hi))
    if "log" in rng:
        p.log = bool(rng["log"]) and p.low > 0
    p.note = (p.note + "; " if p.note else "") + "custom range"


def _cap_schedule(p: Param, max_epochs: int, steps_per_epoch: int | None) -> None:
    """Cap an epoch- or step-valued schedule knob at the budget; when the cap falls below
    the derived minimum the range becomes [cap // 10, cap] (at least 1 for step sizes).
    Ints and floats (TAO Core 7.3.0 types MAE ``train.optim.warmup_epochs`` as float)."""
    if p.kind not in ("int", "float"):
        return
    if p.key in EPOCH_KEYS:
        cap = max_epochs - 1 if EPOCH_KEYS[p.key] else max_epochs
        what = f"epoch budget {max_epochs}"
    elif _STEP_SCHED.match(p.key) and steps_per_epoch:
        cap = max_epochs * steps_per_epoch
        what = f"total steps {cap}"
    else:
        return
    floor = 0 if EPOCH_KEYS.get(p.key, False) or p.key.endswith(("warm_up_steps", "freeze_steps")) else 1
    cap = max(cap, floor)
    p.high = min(p.high, cap)
    if p.low > p.high:
        p.low = max(floor, p.high // 10)
    p.note = (p.note + "; " if p.note else "") + f"<= {what}"


def build_space(
    schema: dict,
    manifest_action: dict,
    base_spec: dict,
    network_arch: str,
    *,
    max_epochs: int,
    parameters: list[str] | None = None,
    disabled: list[str] | None = None,
    custom_param_ranges: dict[str, dict[str, Any]] | None = None,
    steps_per_epoch: int | None = None,
) -> SearchSpace:
    """The :class:`SearchSpace` of one run (rules in the module docstring).

    ``schema``: the train schema; ``manifest_action``: the manifest's ``actions.train``
    entry; ``base_spec``: the base train spec (defaults of parameters, parent values);
    ``max_epochs``: the epoch budget of a full trial. Raises SpecError.
    """
    from taoskills.specs.dotted import get_dotted

    explicit = parameters is not None
    keys = list(parameters) if explicit else list(manifest_action.get("automl_default_parameters") or [])
    off = set(disabled or [])
    unknown_off = off - set(keys)
    if unknown_off:
        raise SpecError(
            f"disabled parameters {sorted(unknown_off)} are not in the search space",
            field="disabled_parameters",
            fix=f"disable some of {keys}",
        )
    keys = [k for k in keys if k not in off]
    params = [build_param(schema, k, get_dotted(base_spec, k, default=None), explicit=explicit) for k in keys]
    custom = dict(custom_param_ranges or {})
    by_key = {p.key: p for p in params}
    for key, rng in custom.items():
        if key not in by_key:
            raise SpecError(
                f"custom_param_ranges names {key}, which is not searched", field="custom_param_ranges", fix=f"use one of {keys}"
            )
        apply_custom_range(by_key[key], rng)
    for p in params:
        _cap_schedule(p, max_epochs, steps_per_epoch)
    # warm-up <= decay for step schedules: the warm-up's parent is its own max_decay_steps
    for p in params:
        m = _STEP_SCHED.match(p.key)
        if m and m.group(1) == "warm_up_steps":
            decay = p.key.rsplit(".", 1)[0] + ".max_decay_steps"
            if p.depends_on is None:
                p.depends_on, p.relation = decay, "<="
    order = {k: i for i, k in enumerate(keys)}
    params.sort(key=lambda p: (p.depends_on is not None and p.depends_on in by_key, order[p.key]))
    base = {}
    for p in params:
        if p.depends_on and p.depends_on not in by_key:
            base[p.depends_on] = get_dotted(base_spec, p.depends_on, default=None)
    if network_arch == "dino":
        base["dataset.num_classes"] = get_dotted(base_spec, "dataset.num_classes", default=None)
    return SearchSpace(network_arch, params, max_epochs, steps_per_epoch, base)
