"""The machine contract of a skill: ``references/skill_info.yaml``.

Everything the runtime does for a skill is read from this file (never from Markdown).
The model is strict (unknown keys are errors) so a typo in a skill folder fails at load
time, with the field named. Field meanings follow TAO's own contract: the skill bank's
skill_info glossary and TAO Core 7.3.0 ``network_configs/<net>.config.json``
(``data_sources``, ``spec_params``, ``actions``, ``metrics``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Inference functions a spec_params entry may name (TAO Core infer_params.py lineage).
SpecParamFn = Literal[
    "output_dir",  # this job's results_dir
    "key",  # encryption key, by environment-variable name only
    "parent_model",  # checkpoint picked from the parent job's results (see ActionInfo.checkpoint)
    "parent_model_folder",  # the parent job's results folder
    "resume_model",  # full training checkpoint from this job's own results folder (restart)
    # pretrained weights, only when not resuming: the key the skill's shorthand names
    # ``pretrained_backbone`` takes the backbone-only input, every other key the full model
    "ptm_if_no_resume_model",
    "create_onnx_file",  # new ONNX path under this job's results_dir
    "create_engine_file",  # new TensorRT engine path (deploy)
    "create_cal_cache",  # new INT8 calibration cache path (deploy)
]

DatasetRole = Literal["train_datasets", "eval_dataset", "inference_dataset", "calibration_dataset"]

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?)*$")


def _check_dotted(key: str) -> str:
    if not _DOTTED.match(key):
        raise ValueError(f"{key!r} is not a dotted spec key like 'train.num_epochs' or 'a.b[0].c'")
    return key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IOEntry(_Strict):
    """A spec key that names a file or folder the platform must stage (input) or collect (output)."""

    type: Literal["file", "folder", "list"]
    optional: bool = False


class DataSource(_Strict):
    """Which dataset role feeds a spec key, and which file inside the dataset root.

    ``path`` is relative to the dataset root the user gives for ``source`` (e.g. the
    folder holding ``images_train.tar.gz``). ``runtime: extracted_folder`` means the value
    must be an extracted folder when TAO runs: ``images_train.tar.gz`` -> ``images_train/``.
    ``list: true`` means the spec value is a list of such paths.
    ``fallback`` is the role whose root is used (same ``path``) when no dataset was given
    for ``source`` (DINO: validation reuses the train dataset when there is no eval split).
    ``optional: true`` means the key is left at its template value when neither ``source``
    nor ``fallback`` was given (MAE pretrain has no val split; INT8 calibration images are
    needed only for an INT8 engine).
    """

    source: DatasetRole
    path: str
    list: bool = False
    runtime: Literal["extracted_folder", "file", "folder"] = "file"
    fallback: DatasetRole | None = None
    optional: bool = False


class MetricContract(_Strict):
    """A KPI: its ``name`` in status.json ``kpi``, ``direction``, and where it is logged.

    ``when`` restricts the contract to specs whose dotted keys hold the given values
    (MAE: ``{"train.stage": "finetune"}`` -> ACC_all, maximize).
    """

    name: str
    direction: Literal["minimize", "maximize"]
    logged_in: str = "results_dir/<action>/status.json kpi"
    aliases: list[str] = Field(default_factory=list)
    when: dict[str, str | int | float | bool] = Field(default_factory=dict)


class CheckpointRule(_Strict):
    """How to pick the model file an action consumes from its parent job's results.

    ``from_action`` is the sub-folder of the parent's results_dir (TAO writes
    ``results_dir/<action>/``). ``prefer`` are fnmatch globs in priority order; the newest
    epoch/step among the first glob that matches wins. Files matching ``avoid`` never win.
    ``*_latest*`` aliases are used only when ``allow_latest`` (or the caller asks).
    """

    from_action: str = "train"
    prefer: list[str]
    avoid: list[str] = Field(default_factory=list)
    allow_latest: bool = False


class ActionInfo(_Strict):
    """One TAO action of a network (train, evaluate, inference, export, gen_trt_engine, ...)."""

    description: str
    command: str  # in-container command template, e.g. "nvdinov2 train -e {config_path}"
    container: Literal["train", "deploy"] = "train"
    config_format: Literal["yaml"] = "yaml"
    spec_template: str  # file under references/, e.g. spec_template_train.yaml
    schema_file: str  # file under schemas/, e.g. train.schema.json
    inputs: dict[str, IOEntry] = Field(default_factory=dict)
    outputs: dict[str, IOEntry] = Field(default_factory=dict)
    data_sources: dict[str, DataSource] = Field(default_factory=dict)
    spec_params: dict[str, SpecParamFn] = Field(default_factory=dict)
    parent_action: str | None = None  # action whose job feeds this one (train for export)
    # how parent_model is picked; on a train action, the parent job's checkpoint that fills the
    # ``ptm_if_no_resume_model`` key when the caller gives no pretrained model (MAE finetune
    # from a pretrain job; TAO: ptm_if_no_resume_model -> the parent's model, base_checkpoint
    # when there is no parent)
    checkpoint: CheckpointRule | None = None
    # dotted key -> value the parent job's spec must hold (MAE train: ``{train.stage: pretrain}``,
    # a finetune takes its weights from a pretrain job); a parent that differs is a SpecError
    parent_when: dict[str, str | int | float | bool] = Field(default_factory=dict)
    resume: CheckpointRule | None = None  # how resume_model is picked from this job's own results
    carry_from_parent: list[str] = Field(default_factory=list)  # structural keys copied
    # key here -> key in the parent job's spec whose value it takes (DINO distill: the teacher
    # structure is the parent train job's model; MAE export: input size = the model's input size)
    carry_from_parent_as: dict[str, str] = Field(default_factory=dict)
    drop_keys: list[str] = Field(default_factory=list)  # keys removed from this action's spec
    required_keys: list[str] = Field(default_factory=list)  # must be set (Hydra MISSING "???")
    kpis: list[MetricContract] = Field(default_factory=list)  # KPIs this action logs

    @field_validator("inputs", "outputs", "data_sources", "spec_params", "parent_when")
    @classmethod
    def _keys_dotted(cls, v: dict) -> dict:
        for k in v:
            _check_dotted(k)
        return v

    @field_validator("carry_from_parent_as")
    @classmethod
    def _pairs_dotted(cls, v: dict[str, str]) -> dict[str, str]:
        for k, src in v.items():
            _check_dotted(k)
            _check_dotted(src)
        return v

    @field_validator("carry_from_parent", "drop_keys", "required_keys")
    @classmethod
    def _list_dotted(cls, v: list[str]) -> list[str]:
        for k in v:
            _check_dotted(k)
        return v

    @model_validator(mode="after")
    def _parent_rule(self) -> ActionInfo:
        uses_parent = any(fn in ("parent_model", "parent_model_folder") for fn in self.spec_params.values())
        if uses_parent and (self.parent_action is None or self.checkpoint is None):
            raise ValueError("spec_params names parent_model: set parent_action and checkpoint")
        if (self.carry_from_parent or self.carry_from_parent_as) and self.parent_action is None:
            raise ValueError("carry_from_parent needs parent_action (the job the keys come from)")
        if self.parent_when and self.parent_action is None:
            raise ValueError("parent_when needs parent_action (the job whose spec it checks)")
        if "{config_path}" not in self.command:
            raise ValueError("command must contain {config_path}")
        return self


class ErrorPattern(_Strict):
    """A known failure: ``regex`` over the job log -> ``cause`` -> ``fix``.

    ``fault`` says whether a retry on other hardware/infrastructure can help
    (``infrastructure``: OOM, missing GPU, docker daemon, network) or the spec/data must
    change (``program``).
    """

    id: str
    regex: str
    cause: str
    fix: str
    fault: Literal["infrastructure", "program"]
    actions: list[str] = Field(default_factory=list)  # empty = every action

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:  # re.error is not a ValueError: pydantic would not report it
            raise ValueError(f"regex does not compile: {exc}") from None
        return v


class Hardware(_Strict):
    min_gpus: int = 1
    recommended_gpus: int = 1
    min_gpu_memory_gb: int = 0
    notes: str = ""


class MultiGpu(_Strict):
    """How TAO launches the network on several GPUs/nodes (TAO entrypoint contract)."""

    launcher: Literal["lightning", "torchrun"]
    strategy: str = "auto"
    keys: dict[str, str] = Field(default_factory=dict)  # role -> dotted key (num_gpus, gpu_ids, num_nodes)
    env: list[str] = Field(default_factory=lambda: ["WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "NUM_GPU_PER_NODE"])
    notes: str = ""


class Routing(_Strict):
    """Words that route a request to this skill.

    ``triggers`` are phrases (matched as whole words, case-insensitive) that name this
    skill outright; ``keywords`` are weaker hints; ``negatives`` are words that, when
    present, mean a different model (they lower the score, never raise it).
    ``action_words`` maps an action to the words that ask for it.
    """

    triggers: list[str]
    keywords: list[str] = Field(default_factory=list)
    negatives: list[str] = Field(default_factory=list)
    action_words: dict[str, list[str]] = Field(default_factory=dict)


class AutoMLInfo(_Strict):
    """Application-level AutoML contract (tao-run-automl only)."""

    algorithms: list[str]
    default_algorithm: str
    default_max_recommendations: int = 10
    policy_off_phrases: list[str]
    policy_values: list[str] = Field(default_factory=lambda: ["on", "off", "auto"])
    requires: list[str] = Field(default_factory=lambda: ["schemas/train.schema.json", "references/spec_template_train.yaml"])
    notes: str = ""


class SkillInfo(_Strict):
    """The whole machine contract of one skill folder."""

    name: str
    kind: Literal["model", "application"] = "model"
    description: str
    network_arch: str | None = None  # TAO entrypoint, e.g. "nvdinov2"; None for applications
    automl_enabled: bool = False
    dataset_type: str | None = None
    data_formats: list[str] = Field(default_factory=list)
    images: dict[Literal["train", "deploy"], str] = Field(default_factory=dict)
    gpu_spec_key: str | None = None  # dotted key of the GPU count; must equal multi_gpu.keys.num_gpus
    node_spec_key: str | None = None  # dotted key of the node count; must equal multi_gpu.keys.num_nodes
    multi_gpu: MultiGpu | None = None
    hardware: Hardware = Field(default_factory=Hardware)
    metrics: list[MetricContract] = Field(default_factory=list)  # AutoML/monitoring metric; first match wins
    actions: dict[str, ActionInfo] = Field(default_factory=dict)
    shorthand: dict[str, str] = Field(default_factory=dict)  # friendly name -> dotted key
    latest_checkpoint_alias: str | None = None  # e.g. nvdinov2_model_latest.pth
    error_patterns: list[ErrorPattern] = Field(default_factory=list)
    smoke_overrides: dict[str, object] = Field(default_factory=dict)  # small, representative run
    # job environment of a smoke-profile run (built-in engine knobs, e.g. TAO_SKILLS_LEAN_CHECKPOINTS)
    smoke_env: dict[str, str] = Field(default_factory=dict)
    routing: Routing
    automl: AutoMLInfo | None = None

    @field_validator("shorthand")
    @classmethod
    def _shorthand_dotted(cls, v: dict[str, str]) -> dict[str, str]:
        for target in v.values():
            _check_dotted(target)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SkillInfo:
        if self.kind == "model":
            missing = [f for f in ("network_arch", "gpu_spec_key", "multi_gpu") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a model skill needs {', '.join(missing)}")
            if not self.actions:
                raise ValueError("a model skill needs at least one action")
            if not self.metrics:
                raise ValueError("a model skill needs a metric contract (metrics)")
            assert self.multi_gpu is not None
            for field_name, role in (("gpu_spec_key", "num_gpus"), ("node_spec_key", "num_nodes")):
                declared, key = getattr(self, field_name), self.multi_gpu.keys.get(role)
                if declared and key and declared != key:
                    raise ValueError(f"{field_name} {declared!r} differs from multi_gpu.keys.{role} {key!r}")
            for name, action in self.actions.items():
                if action.parent_action and action.parent_action not in self.actions:
                    raise ValueError(f"actions.{name}.parent_action names unknown action {action.parent_action!r}")
                if action.container == "deploy" and "deploy" not in self.images:
                    raise ValueError(f"actions.{name} runs in the deploy container: set images.deploy")
        else:
            if self.automl is None:
                raise ValueError("an application skill needs an automl section")
        return self

    def metric_for(self, spec: dict | None = None) -> MetricContract:
        """The metric contract that applies to ``spec`` (first whose ``when`` matches)."""
        from taoskills.specs.dotted import get_dotted  # local import: dotted has no deps

        for metric in self.metrics:
            if all(get_dotted(spec or {}, k, default=None) == v for k, v in metric.when.items()):
                return metric
        for metric in self.metrics:
            if not metric.when:
                return metric
        raise ValueError(f"{self.name}: no metric contract matches the spec")


#: Actions that train (the skill's ``hardware`` minimums apply in full); every other action
#: (evaluate, inference, export, gen_trt_engine, quantize) runs on one device.
TRAINING_ACTIONS = frozenset({"train", "distill", "retrain"})


class HardwareMinimums(BaseModel):
    """What a host needs to run one action of a skill (input to the platform/preflight host check).

    ``min_gpus``/``recommended_gpus``: GPU counts; ``min_gpu_memory_gb``: per GPU, 0 = no
    stated minimum; ``notes``: the skill's guidance in words. ``multi_gpu_keys``: role
    (``num_gpus``, ``gpu_ids``, ``num_nodes``) -> dotted spec key, for training actions only;
    ``env``: launcher environment variables (``WORLD_SIZE`` ...), for training actions only.
    """

    model_config = ConfigDict(frozen=True)

    action: str
    min_gpus: int
    recommended_gpus: int
    min_gpu_memory_gb: int
    notes: str = ""
    multi_gpu_keys: dict[str, str] = Field(default_factory=dict)
    env: list[str] = Field(default_factory=list)


def hardware_minimums(info: SkillInfo, action: str) -> HardwareMinimums:
    """The host minimums of ``action`` (a TAO action or manifest key such as ``deploy_gen_trt_engine``).

    Training actions (:data:`TRAINING_ACTIONS`) take ``info.hardware`` as it is, with the
    ``multi_gpu`` keys and env; other actions need at most one GPU and state no memory
    minimum (the skills' hardware tables size training). Source: each skill's
    ``references/skill_info.yaml`` ``hardware`` (from its requirement text's Hardware
    guidance, e.g. DINO: 1 GPU minimum, 4 recommended, 24 GB+). Raises ValueError for an
    action the skill does not have.
    """
    if action not in info.actions and action.removeprefix("deploy_") not in info.actions:
        raise ValueError(f"{info.name} has no action {action!r} (actions: {', '.join(info.actions)})")
    hw = info.hardware
    if action.removeprefix("deploy_") in TRAINING_ACTIONS and not action.startswith("deploy_"):
        mg = info.multi_gpu
        return HardwareMinimums(
            action=action,
            min_gpus=hw.min_gpus,
            recommended_gpus=hw.recommended_gpus,
            min_gpu_memory_gb=hw.min_gpu_memory_gb,
            notes=hw.notes,
            multi_gpu_keys=dict(mg.keys) if mg else {},
            env=list(mg.env) if mg else [],
        )
    one = min(hw.min_gpus, 1)
    return HardwareMinimums(action=action, min_gpus=one, recommended_gpus=max(one, 1), min_gpu_memory_gb=0, notes=hw.notes)
