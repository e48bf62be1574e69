"""The metric an AutoML run optimizes: always explicit, from the model skill's skill_info.

``skill_info.yaml`` ``metrics`` is the contract (name, direction, aliases, ``when``): DINO and
Grounding DINO ``val_mAP50`` maximize, NVDINOv2 ``train_loss`` minimize, MAE ``ACC_all``
maximize when ``train.stage`` is ``finetune`` and ``train_loss`` minimize otherwise (TAO Core
7.3.0 network_configs ``monitoring_metric``; the skills' metric tables). The direction is
never guessed from the metric's name (TAO AutoML 7.2.0 minimizes anything containing
"loss" in its brains): a user-given metric must come with its direction, or be one the
skill declares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from taoskills.errors import SpecError
from taoskills.jobs import monitor


class Objective(BaseModel):
    """One objective: a KPI ``name`` (status.json ``kpi`` key), its ``direction`` and the
    ``aliases`` read when ``name`` is absent."""

    name: str
    direction: Literal["minimize", "maximize"]
    aliases: list[str] = Field(default_factory=list)
    source: str = "skill_info metrics"

    def read(self, kpis: dict[str, float]) -> float | None:
        """This objective's value in a KPI dict (name first, then aliases)."""
        for key in (self.name, *self.aliases):
            if key in kpis:
                return kpis[key]
        return None

    def history(self, summary: monitor.StatusSummary) -> list[tuple[Any, float]]:
        """(epoch, value) pairs of this objective in a status.json summary."""
        for key in (self.name, *self.aliases):
            if summary.kpi_history.get(key):
                return list(summary.kpi_history[key])
        return []

    def better(self, a: float, b: float | None) -> bool:
        """True when ``a`` beats ``b`` (None counts as worst)."""
        if b is None:
            return True
        return a < b if self.direction == "minimize" else a > b


def objectives_for(skill_info: Any, base_spec: dict, requested: list[dict[str, Any]] | None = None) -> list[Objective]:
    """The objectives of a run: the skill's metric for ``base_spec`` (``metric_for``), or the
    user's list ``[{name, direction}]`` (several -> multi-objective, NSGA-II).

    A requested metric the skill declares takes the skill's direction when none is given;
    one it does not declare needs an explicit direction (SpecError, field ``metric``).
    """
    declared = {m.name: m for m in skill_info.metrics}
    for act in skill_info.actions.values():
        for k in act.kpis:
            declared.setdefault(k.name, k)
    if not requested:
        m = skill_info.metric_for(base_spec)
        return [Objective(name=m.name, direction=m.direction, aliases=list(m.aliases))]
    out = []
    for item in requested:
        name = item.get("name") or item.get("metric")
        if not name:
            raise SpecError("an objective has no name", field="metric", fix="give {name, direction}")
        direction = item.get("direction")
        if direction is None:
            if name not in declared:
                raise SpecError(
                    f"metric {name!r} is not declared by {skill_info.name}; its direction cannot be assumed",
                    field="metric",
                    fix=f"pass direction 'minimize' or 'maximize' for {name} (declared: {sorted(declared)})",
                )
            direction = declared[name].direction
        if direction not in ("minimize", "maximize"):
            raise SpecError(f"direction {direction!r} for {name}", field="metric", fix="use 'minimize' or 'maximize'")
        aliases = list(declared[name].aliases) if name in declared else []
        out.append(Objective(name=name, direction=direction, aliases=aliases, source="request"))
    return out
