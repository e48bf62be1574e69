"""Request and result models of :class:`taoskills.service.Service` (MCP structured output)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import yaml
from pydantic import BaseModel, Field, WithJsonSchema, computed_field

from taoskills.bank.routing import RouteResult
from taoskills.platforms.placement import Placement


def dump_yaml(spec: dict[str, Any]) -> str:
    """Spec -> YAML text (key order kept, block style); libyaml's emitter when PyYAML has it (~10x faster)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(spec, Dumper=dumper, sort_keys=False, default_flow_style=False)


class SpecRequest(TypedDict, total=False):
    """What a spec is built from (build_spec and launch_job take the same keys).

    ``overrides``: dotted key -> value. ``shorthand``: skill shorthand name -> value
    (``num_epochs``). ``data_sources``: dataset role (``train_datasets``, ``eval_dataset``,
    ``inference_dataset``, ``calibration_dataset``) -> local root folder. ``parent_job_id``:
    the job whose checkpoint and structure this action consumes (train for export).
    ``resume_job_id``: a train job to resume. ``pretrained_model``: full-model PTM file used
    when not resuming; ``pretrained_backbone``: backbone-only weights (DINO, Grounding DINO
    ``model.pretrained_backbone_path``), used when not resuming. ``profile``: ``"smoke"`` for
    the skill's small, representative settings.
    """

    overrides: dict[str, Any] | None
    shorthand: dict[str, Any] | None
    data_sources: dict[str, str] | None
    parent_job_id: str | None
    resume_job_id: str | None
    pretrained_model: str | None
    pretrained_backbone: str | None
    profile: str | None


# ----------------------------------------------------------------------------- results


class SkillSummary(BaseModel):
    """One skill. ``engine_actions``: runtime engine -> the actions it implements for this skill
    (whether this host has what it needs is in :class:`SkillDetail` ``runs_here``)."""

    name: str
    kind: str
    network_arch: str | None
    description: str
    actions: list[str]
    automl_enabled: bool
    builtin_engine_actions: list[str]
    engine_actions: dict[str, list[str]] = Field(default_factory=dict)


class SkillDetail(SkillSummary):
    frontmatter: dict[str, Any]
    body: str
    files: list[str]
    shorthand: dict[str, str]
    metrics: list[dict[str, Any]]
    data_sources: dict[str, dict[str, Any]]
    runs_here: dict[str, Placement] = Field(
        default_factory=dict, description="action -> which engines/platforms can run it here, or the one thing to do"
    )


class SpecResult(BaseModel):
    """A built spec (``spec``, nested TAO keys), what was inferred and staged, and its issues.

    ``spec_yaml`` (the same spec as YAML text) is computed on first access only: dumping it is
    half of a build's cost, and the MCP reply (:class:`SpecReply`) does not carry it."""

    skill: str
    action: str
    spec: dict[str, Any]
    inferred: dict[str, dict[str, Any]] = Field(default_factory=dict)
    staged: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    issues: list[dict[str, str]] = Field(default_factory=list)
    valid: bool = True
    runs_here: Placement | None = Field(default=None, description="where this action can run here, or the one thing to do")

    @computed_field  # type: ignore[prop-decorator]
    @functools.cached_property
    def spec_yaml(self) -> str:
        """``spec`` as YAML (:func:`dump_yaml`)."""
        return dump_yaml(self.spec)


_PLACEMENT_FLAT = {
    "type": ["object", "null"],
    "description": "where this action can run here, or the one thing to do: {skill, action, runs_here: bool, "
    "engine: str|null, platform: str|null, options: the (engine, platform) pairs checked when none runs here, else [] (get_skill lists them all), next: str|null}",
}


#: Object schemas without ``additionalProperties`` (its default is true, so they accept the same
#: replies): a client's check then does not descend into every key of the spec.
_SPEC_OBJECT = {"type": "object", "description": "the spec: nested TAO keys"}
_INFERRED_OBJECT = {"type": "object", "description": "dotted key -> {fn, value, reason}: values filled by TAO's rules"}
_STAGED_OBJECT = {
    "type": "object",
    "description": "dotted key -> {source, path, extracted}: dataset archives staged for this spec",
}


class SpecReply(BaseModel):
    """:class:`SpecResult` as the MCP ``build_spec`` tool returns it: without ``spec_yaml`` (the
    same spec again as text; ``get_spec_template`` and ``render_runner`` show YAML) and, when the
    action runs here, ``runs_here`` without the list of every (engine, platform) pair checked
    (``get_skill`` has it). An agent pays for every byte of a reply, on every build."""

    skill: str
    action: str
    spec: Annotated[dict[str, Any], WithJsonSchema(_SPEC_OBJECT)]
    inferred: Annotated[dict[str, dict[str, Any]], WithJsonSchema(_INFERRED_OBJECT)] = Field(default_factory=dict)
    staged: Annotated[dict[str, dict[str, Any]], WithJsonSchema(_STAGED_OBJECT)] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    issues: list[dict[str, str]] = Field(default_factory=list)
    valid: bool = True
    #: A flat schema (no $ref/anyOf): every MCP client checks each reply against it, and the
    #: nested Placement schema doubled that check's cost. get_skill's schema keeps the full one.
    runs_here: Annotated[Placement | None, WithJsonSchema(_PLACEMENT_FLAT)] = None

    @classmethod
    def of(cls, result: SpecResult) -> SpecReply:
        where = result.runs_here
        if where is not None and where.runs_here:
            where = where.model_copy(update={"options": []})
        fields = {k: getattr(result, k) for k in cls.model_fields if k != "runs_here"}
        return cls.model_construct(**fields, runs_here=where)


class ValidationResult(BaseModel):
    skill: str
    action: str
    valid: bool
    issues: list[dict[str, str]]
    warnings: list[dict[str, str]]


class RunnerResult(BaseModel):
    skill: str
    action: str
    engine: str
    platform: str
    script: str
    script_path: str | None = None
    job_id: str | None = None  # the job id the script runs (and registers) as
    workdir: str | None = None  # its job folder (spec, exit_code, log.txt)


class JobHandle(BaseModel):
    job_id: str
    skill: str
    action: str
    status: str
    engine: str
    platform: str
    results_dir: str
    log_path: str
    script_path: str
    automl_policy: str
    automl_reason: str | None = None  # why automl_policy resolved as it did (train only)
    estimate: dict[str, Any] | None = None  # Service.estimate's reply (None where no throughput table covers the run)
    next: str


class JobStatus(BaseModel):
    job_id: str
    skill: str
    network_arch: str | None
    action: str
    status: str
    parent_job_id: str | None
    results_dir: str
    log_path: str
    exit_code: int | None = None
    epoch: int | None = None
    max_epoch: int | None = None
    eta: str | None = None
    step: int | None = Field(default=None, description="optimiser steps done (engine progress lines)")
    max_step: int | None = Field(default=None, description="the run's total optimiser steps")
    steps_per_s: float | None = Field(default=None, description="optimiser steps per second (engine progress lines)")
    kpis: dict[str, float] = Field(default_factory=dict)
    message: str | None = None
    failure: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    next: str = ""


class JobLogs(BaseModel):
    """A bounded slice of a job's log."""

    job_id: str
    tail: int
    grep: str | None
    max_bytes: int
    lines: int = Field(description="log lines in text (the truncation marker not counted)")
    truncated: bool = Field(description="earlier log output was left out (text starts with a marker line)")
    text: str


class CheckpointResult(BaseModel):
    job_id: str
    for_action: str
    path: str
    reason: str
    candidates: list[str]


class RoutedRequest(RouteResult):
    """:class:`~taoskills.bank.routing.RouteResult` plus ``runs_here``: for the routed skill and
    action, which engines and platforms can run it here, or the one thing to do."""

    runs_here: Placement | None = None


# ----------------------------------------------------------------------------- stages


@dataclass
class PreparedJob:
    """What :meth:`taoskills.service.Service.prepare_job` hands on: every stage of a launch
    that writes nothing.

    ``skill``: the catalog skill (:class:`taoskills.bank.catalog.Skill`). ``engine``/``platform``:
    the placed runtime engine and platform objects (``auto`` resolved). ``decision``: the AutoML
    policy decision (:class:`taoskills.bank.automl_policy.PolicyDecision`); when its ``policy``
    is ``"on"`` the later stages did not run (``built`` and ``context`` are None). ``job_id``,
    ``workdir`` (``<home>/jobs/<job_id>``, not yet created), ``results_dir``. ``built``: the
    validated, preflighted :class:`taoskills.specs.builder.BuiltSpec`. ``context``: the
    rendered :class:`taoskills.platforms.render.RunnerContext` (None when not prepared for launch).
    """

    skill: Any
    action: str
    engine: Any
    platform: Any
    decision: Any
    job_id: str
    workdir: Path
    results_dir: Path
    built: Any = None
    context: Any = None

    @property
    def spec(self) -> dict[str, Any] | None:
        """The built, valid spec (nested dict), or None when the build stage did not run."""
        return self.built.spec if self.built is not None else None
