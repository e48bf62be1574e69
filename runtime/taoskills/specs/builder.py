"""Spec builder: template + parent-job carry + profile + data sources + shorthand + overrides
+ spec_params inference -> one nested TAO spec.

Order of application (later wins, except that inference functions never overwrite a
value the caller set explicitly):

1. the packaged spec template of the action (``references/spec_template_<action>.yaml``);
2. structural keys carried from the parent job's spec (``ActionInfo.carry_from_parent``, and
   ``carry_from_parent_as``: a key here taking the value of another key of the parent's spec,
   e.g. the DINO distill teacher structure from the parent train job's ``model``), after the
   parent is checked against ``ActionInfo.parent_when`` (:mod:`taoskills.specs.parent`);
3. the skill's ``smoke_overrides`` when ``profile="smoke"`` (keys carried from the parent stay);
4. data sources: dataset-role roots joined with ``ActionInfo.data_sources[*].path``;
   ``runtime: extracted_folder`` entries are staged (archive -> folder);
5. shorthand keys (``SkillInfo.shorthand``: ``num_epochs`` -> ``train.num_epochs``);
6. dotted overrides;
7. ``spec_params`` inference functions (TAO Core ``infer_params.py`` lineage):
   output_dir, key, parent_model, parent_model_folder, resume_model,
   ptm_if_no_resume_model (the caller's pretrained model, else the parent job's checkpoint by
   the action's ``checkpoint`` rule), create_onnx_file, create_engine_file, create_cal_cache;
8. ``drop_keys`` (docs/tao-contract.md §4.5 C16) are removed;
9. ``runtime: extracted_folder`` inputs are staged, then schedules are fitted to the run's
   length (:mod:`taoskills.specs.schedules`: each network declares its schedule keys; NVDINOv2
   step schedules when ``num_epochs x ceil(images / (batch_size x num_gpus))`` is below the
   learning-rate warm-up: warm-up 10%, teacher temperature 30%, decay to the last step; MAE
   milestones beyond ``train.num_epochs``), unless the caller set the values; a warm-up longer
   than the run is a warning;
10. ``ActionInfo.required_keys`` must hold a value (SpecError ``missing`` otherwise).

Dataset roots may be local folders or URIs (``s3://bucket/prefix``): a URI is joined with
``/`` and kept intact (staging it is the platform's job).

Secrets: ``encryption_key`` is written as an OmegaConf env interpolation
(``${oc.env:TAO_ENCRYPTION_KEY,tlt_encode}``) so the value travels by name only; TAO's
default key when none is set is ``tlt_encode`` (TAO Core infer_params.py ``key``).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taoskills.data import staging
from taoskills.errors import Issue, SpecError
from taoskills.jobs import checkpoints
from taoskills.specs import parent as parent_rules
from taoskills.specs import schedules
from taoskills.specs.dotted import copy_shared, delete_dotted, get_dotted, set_dotted, split_dotted
from taoskills.specs.parent import ParentJob

ENCRYPTION_KEY_ENV = "TAO_ENCRYPTION_KEY"
ENCRYPTION_KEY_REF = "${oc.env:" + ENCRYPTION_KEY_ENV + ",tlt_encode}"
MISSING = "???"  # Hydra MISSING in TAO templates


@dataclass
class BuiltSpec:
    """Result of :func:`build_spec`.

    ``spec``: nested dict ready to write as YAML. ``inferred``: dotted key ->
    ``{"fn", "value", "reason"}`` for each spec_params value filled in. ``staged``: dotted
    key -> ``{"source", "path", "extracted"}`` for each data path staged. ``notes``: what
    was carried or dropped, for the agent to read. ``warnings``: problems that do not stop the
    build (e.g. a warm-up longer than the run; also in ``notes`` as ``warning: ...``).
    ``total_steps``: the run's optimiser steps when known (:mod:`taoskills.specs.schedules`).
    """

    spec: dict
    inferred: dict[str, dict[str, Any]] = field(default_factory=dict)
    staged: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    total_steps: int | None = None


def expand_shorthand(skill_info, shorthand: dict[str, Any] | None) -> dict[str, Any]:
    """Map ``{"num_epochs": 5}`` to ``{"train.num_epochs": 5}`` via ``SkillInfo.shorthand``.

    Raises SpecError naming the unknown shorthand with a did-you-mean over the skill's names.
    """
    out: dict[str, Any] = {}
    issues: list[Issue] = []
    table = skill_info.shorthand
    for name, value in (shorthand or {}).items():
        if name in table:
            out[table[name]] = value
            continue
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(table))}"
        issues.append(
            Issue(
                field=name,
                reason=f"unknown shorthand key for {skill_info.name}",
                fix=f"{hint} Or pass a dotted override.",
                code="unknown_key",
            )
        )
    if issues:
        raise SpecError(f"unknown shorthand key(s): {', '.join(i.field for i in issues)}", issues=issues, fix=issues[0].fix)
    return out


def build_spec(
    skill,
    action: str,
    *,
    results_dir: Path,
    overrides: dict[str, Any] | None = None,
    shorthand: dict[str, Any] | None = None,
    data_sources: dict[str, str] | None = None,
    parent: ParentJob | None = None,
    resume_from: Path | None = None,
    pretrained_model: str | None = None,
    pretrained_backbone: str | None = None,
    profile: str | None = None,
    stage: bool = True,
    cache_dir: Path | None = None,
) -> BuiltSpec:
    """Build the spec for ``skill`` (a catalog Skill) and ``action``.

    ``results_dir``: this job's results folder (value of the ``output_dir`` function).
    ``data_sources``: dataset role (``train_datasets``, ``eval_dataset``,
    ``inference_dataset``, ``calibration_dataset``) -> root folder holding the files named
    in skill_info (e.g. ``images_train.tar.gz`` or ``images_train/``).
    ``parent``: the parent job (train for export/inference) for ``parent_model``
    and ``carry_from_parent``. ``resume_from``: a results_dir to resume from (``resume_model``).
    ``pretrained_model``: full-model weights; ``pretrained_backbone``: backbone-only weights.
    TAO maps both keys to ``ptm_if_no_resume_model``; the key the skill's shorthand calls
    ``pretrained_backbone`` (DINO ``model.pretrained_backbone_path``) takes the backbone
    input, the others (``train.pretrained_model_path``) the full model, so each input goes
    only to its own key. ``profile``: ``"smoke"`` applies the skill's small, representative overrides.
    Schedules are then fitted to the run length (:mod:`taoskills.specs.schedules`: NVDINOv2
    ``T = num_epochs x ceil(images / (batch_size x num_gpus))``; when ``T`` is below the
    learning-rate warm-up, unset warm-ups become 10% of ``T``, teacher temperature 30%,
    decays end at ``T``); a warm-up still longer than ``T`` is a warning in ``BuiltSpec.warnings``.

    Raises SpecError (bad keys, a required parent missing, a ``required_keys`` value unset,
    a pretrained input the action has no key for), StagingError (bad archive), NotFound (no
    checkpoint matches the rule).
    """
    info = skill.info
    act = skill.action(action)
    spec = copy_shared(skill.template(action))  # the cached template is shared and never changed
    out = BuiltSpec(spec=spec)
    explicit: set[str] = set()

    carried: set[str] = set()
    if parent is not None:
        parent_rules.check_parent_when(act, parent, info.name, action)
        carried = parent_rules.carry_from_parent(act, parent, spec, out.notes)

    if profile == "smoke":
        for key, value in info.smoke_overrides.items():
            if key in carried:  # the parent's checkpoint fixes the structure; smoke settings do not change it
                out.notes.append(f"smoke profile kept {key} carried from parent job {parent.job_id if parent else ''}")
                continue
            _set_known(spec, key, value, skill, action)
    elif profile not in (None, "", "default"):
        raise SpecError(f"unknown profile {profile!r}", field="profile", fix="use profile='smoke' or leave it unset")

    for key, value in _data_source_values(act, data_sources or {}, info.name).items():
        set_dotted(spec, key, value)
        explicit.add(key)
    _prune_empty_entries(spec, act.data_sources)

    for key, value in expand_shorthand(info, shorthand).items():
        _set_known(spec, key, value, skill, action)
        explicit.add(key)

    for key, value in (overrides or {}).items():
        _set_known(spec, key, value, skill, action)
        explicit.add(key)

    _match_gpu_ids(info, spec, explicit, out)
    _apply_spec_params(
        skill,
        action,
        spec,
        out,
        explicit,
        results_dir=results_dir,
        parent=parent,
        resume_from=resume_from,
        pretrained_model=pretrained_model,
        pretrained_backbone=pretrained_backbone,
    )

    for key in act.drop_keys:
        if delete_dotted(spec, key):
            out.notes.append(f"dropped {key} (not used by {action})")

    _stage_inputs(act, spec, out, cache_dir, stage=stage)
    _fit_schedule(info, spec, explicit, out)
    _require_data_sources(act, spec, info.name)
    _require_keys(act, spec, info.name, action)
    return out


def _set_known(spec: dict, key: str, value: Any, skill, action: str) -> None:
    """Set an override; an unknown top-level section is an error with did-you-mean.

    Deeper unknown keys are reported by the validator (which knows the schema).
    """
    head = split_dotted(key)[0]
    if isinstance(head, str) and head not in spec:
        close = difflib.get_close_matches(head, [k for k in spec if isinstance(k, str)], n=3)
        fix = f"did you mean {', '.join(close)}?" if close else f"top-level sections: {', '.join(sorted(spec))}"
        raise SpecError(
            f"unknown spec key {key!r} for {skill.name} {action}",
            field=key,
            fix=fix,
            issues=[Issue(field=key, reason="unknown top-level section", fix=fix, code="unknown_key")],
        )
    set_dotted(spec, key, copy.deepcopy(value))


def _data_source_values(act, roots: dict[str, str], skill_name: str) -> dict[str, Any]:
    """Dataset-role roots -> spec values (joined with the skill's per-action file names)."""
    known_roles = {ds.source for ds in act.data_sources.values()} | {
        ds.fallback for ds in act.data_sources.values() if ds.fallback
    }
    unknown = sorted(set(roots) - known_roles)
    if unknown:
        fix = f"this action takes: {', '.join(sorted(known_roles)) or 'no dataset roles'}"
        raise SpecError(f"unknown data source role(s) {', '.join(unknown)} for {skill_name}", field="data_sources", fix=fix)
    values: dict[str, Any] = {}
    for key, ds in act.data_sources.items():
        role = ds.source if ds.source in roots else ds.fallback
        if role not in roots:
            continue
        # one resolver for every rule (folder, archive, <stem>/ folder, same-stem archive, images
        # directly in the root): data/staging.py. Archives are extracted later by _stage_inputs.
        resolved = staging.resolve_data_source(roots[role], ds, field=key, stage=False, strict=False)
        path = resolved.path if resolved.rule != "not_found" else join_root(roots[role], ds.path)
        values[key] = [path] if ds.list else path
    return values


def join_root(root: str, relative: str) -> str:
    """``root`` + ``relative``: a URI (``s3://bucket/data``) joined with ``/`` and kept intact, a local path with ``Path``."""
    if "://" in root:
        return root.rstrip("/") + "/" + relative.lstrip("/")
    return str(Path(root).expanduser() / relative)


def _match_gpu_ids(info, spec: dict, explicit: set[str], out: BuiltSpec) -> None:
    """num_gpus set by the caller, gpu_ids not: gpu_ids becomes ``[0 .. num_gpus-1]``.

    TAO's entrypoint warns and reconciles a mismatch (docs/tao-contract.md §4.5 C7); the
    builder makes the spec consistent instead.
    """
    keys = info.multi_gpu.keys if info.multi_gpu else {}
    n_key, ids_key = keys.get("num_gpus"), keys.get("gpu_ids")
    if not n_key or not ids_key or n_key not in explicit or ids_key in explicit:
        return
    n = get_dotted(spec, n_key, default=None)
    if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        set_dotted(spec, ids_key, list(range(n)))
        out.notes.append(f"{ids_key} set to {list(range(n))} to match {n_key}={n}")


def _prune_empty_entries(spec: dict, keys) -> None:
    """Drop template list entries left blank (every leaf "", None or "???") beside filled ones.

    TAO templates may carry placeholder entries (Grounding DINO train has a second, empty
    ``train_data_sources`` item); TAO would read them as empty paths.
    """
    for key in keys:
        parts = split_dotted(key)
        idx = next((i for i, p in enumerate(parts) if isinstance(p, int)), None)
        if idx is None:
            continue
        list_key = ".".join(str(p) for p in parts[:idx])
        entries = get_dotted(spec, list_key, default=None)
        if not isinstance(entries, list):
            continue
        kept = [e for e in entries if not (isinstance(e, dict) and all(_blank(v) for v in e.values()))]
        if kept and len(kept) != len(entries):
            set_dotted(spec, list_key, kept)


def _blank(value: Any) -> bool:
    if isinstance(value, list):
        return all(_blank(v) for v in value)
    return value in (None, "", MISSING)


def _apply_spec_params(
    skill,
    action,
    spec,
    out: BuiltSpec,
    explicit: set[str],
    *,
    results_dir: Path,
    parent: ParentJob | None,
    resume_from: Path | None,
    pretrained_model: str | None,
    pretrained_backbone: str | None = None,
) -> None:
    info = skill.info
    act = skill.action(action)
    results_dir = Path(results_dir)
    # TAO maps both pretrained keys to ptm_if_no_resume_model (TAO Core network_configs); the
    # skill's shorthand names which key holds backbone-only weights (``pretrained_backbone``).
    backbone_key = info.shorthand.get("pretrained_backbone")
    ptm_keys = [k for k, f in act.spec_params.items() if f == "ptm_if_no_resume_model"]
    for given, flag, ok in (
        (pretrained_model, "pretrained_model", any(k != backbone_key for k in ptm_keys)),
        (pretrained_backbone, "pretrained_backbone", backbone_key in ptm_keys),
    ):
        if given and not ok:
            raise SpecError(
                f"{info.name} {action} takes no {flag}",
                field=flag,
                fix=(
                    f"this action's pretrained weights go to {', '.join(ptm_keys)}"
                    if ptm_keys
                    else "this action takes no pretrained weights"
                )
                + "; pass the matching input or set the spec key with an override",
            )
    resume_path: str = ""
    if resume_from is not None:
        choice = checkpoints.select_checkpoint(
            Path(resume_from), checkpoints.resume_rule(info), latest_alias=info.latest_checkpoint_alias
        )
        resume_path = str(choice.path)
    for key, fn in act.spec_params.items():
        if key in explicit:
            out.notes.append(f"{key} set by caller; inference function {fn} skipped")
            continue
        reason = ""
        if fn == "output_dir":
            value: Any = str(results_dir)
            reason = "this job's results_dir"
        elif fn == "key":
            value = ENCRYPTION_KEY_REF
            reason = f"encryption key by env-var name {ENCRYPTION_KEY_ENV} (default tlt_encode)"
        elif fn in ("parent_model", "parent_model_folder"):
            if parent is None:
                current = get_dotted(spec, key, default=None)
                if current in (None, "", MISSING):
                    raise SpecError(
                        f"{key} needs a parent job for {info.name} {action}",
                        field=key,
                        fix=f"pass parent_job_id=<the {act.parent_action} job id> (or set {key} to a checkpoint path)",
                    )
                continue
            if fn == "parent_model_folder":
                value = str(parent.results_dir)
                reason = f"results folder of parent job {parent.job_id}"
            else:
                assert act.checkpoint is not None  # enforced by ActionInfo
                choice = checkpoints.select_checkpoint(
                    parent.results_dir, act.checkpoint, latest_alias=info.latest_checkpoint_alias
                )
                value = str(choice.path)
                reason = f"{choice.reason} (parent job {parent.job_id})"
        elif fn == "resume_model":
            value = resume_path
            reason = "newest full training checkpoint of the resumed job" if resume_path else "no resume checkpoint"
        elif fn == "ptm_if_no_resume_model" and key == backbone_key:
            if resume_path or not pretrained_backbone:
                continue  # keep the template value (TAO: null = no backbone weights)
            value = pretrained_backbone
            reason = "backbone-only pretrained weights given by caller"
        elif fn == "ptm_if_no_resume_model":
            value, reason = parent_rules.pretrained_model(info, act, resume_path, pretrained_model, parent)
        elif fn == "create_onnx_file":
            value = str(results_dir / "export" / f"{info.network_arch}.onnx")
            reason = "new ONNX path under this job's results_dir"
        elif fn == "create_engine_file":
            value = str(results_dir / "gen_trt_engine" / f"{info.network_arch}.engine")
            reason = "new TensorRT engine path under this job's results_dir"
        elif fn == "create_cal_cache":
            value = str(results_dir / "gen_trt_engine" / "cal.bin")
            reason = "new INT8 calibration cache path under this job's results_dir"
        else:  # pragma: no cover - SpecParamFn is a closed Literal
            raise SpecError(f"unknown inference function {fn}", field=key, fix="fix skill_info.yaml spec_params")
        set_dotted(spec, key, value)
        out.inferred[key] = {"fn": fn, "value": value, "reason": reason}


def _stage_inputs(act, spec: dict, out: BuiltSpec, cache_dir: Path | None, *, stage: bool = True) -> None:
    """Archives given where TAO needs a folder are extracted (``images.tar.gz`` -> ``images/``).

    An archive name whose extracted folder already sits beside it resolves to that folder
    even when ``stage`` is false (a preview with no side effects).
    """
    folder_keys = {k for k, io in act.inputs.items() if io.type == "folder"}
    folder_keys |= {k for k, ds in act.data_sources.items() if ds.runtime == "extracted_folder"}
    for key in sorted(folder_keys):
        value = get_dotted(spec, key, default=None)
        values = value if isinstance(value, list) else [value]
        new_values = []
        for item in values:
            if not isinstance(item, str) or not item or "://" in item:
                new_values.append(item)  # remote URI: staged by the platform that runs the job
                continue
            # a missing path is left as it is: preflight reports missing data
            r = staging.resolve_spec_path(item, field=key, stage=stage, cache_dir=cache_dir, strict=False)
            if r.extracted or (r.rule == "archive" and not r.pending):
                out.staged[key] = {"source": r.source, "path": r.path, "extracted": r.extracted}
            new_values.append(r.path)
        set_dotted(spec, key, new_values if isinstance(value, list) else new_values[0])


def _fit_schedule(info, spec: dict, explicit: set[str], out: BuiltSpec) -> None:
    """Fit the network's schedules to the run (:mod:`taoskills.specs.schedules`); notes and warnings go to ``out``."""
    fit = schedules.fit_schedules(info.network_arch, spec, explicit)
    out.notes.extend(fit.notes)
    out.warnings.extend(fit.warnings)
    out.notes.extend(f"warning: {w}" for w in fit.warnings)
    out.total_steps = fit.total_steps


def _require_keys(act, spec: dict, skill_name: str, action: str) -> None:
    """``ActionInfo.required_keys`` must hold a value: not null, ``""``, ``"???"`` or a list of only those."""
    issues = []
    for key in act.required_keys:
        if _blank(get_dotted(spec, key, default=None)):
            issues.append(
                Issue(
                    field=key,
                    reason=f"required for {skill_name} {action} and not set",
                    fix=f"set {key} with an override (or the input that fills it: a parent job, data source or shorthand)",
                    code="missing",
                )
            )
    if issues:
        raise SpecError(
            f"{skill_name} {action}: required value(s) not set: {', '.join(i.field for i in issues)}",
            issues=issues,
            field=issues[0].field,
            fix=issues[0].fix,
        )


def _require_data_sources(act, spec: dict, skill_name: str) -> None:
    """Data-source keys are mandatory (seed: 'Data source overrides are mandatory')."""
    issues = []
    for key, ds in act.data_sources.items():
        if ds.optional:
            continue
        value = get_dotted(spec, key, default=None)
        empty = value in (None, "", MISSING) or (
            isinstance(value, list) and not [v for v in value if v not in (None, "", MISSING)]
        )
        if empty:
            issues.append(
                Issue(
                    field=key,
                    reason=f"data source not set ({ds.source}/{ds.path})",
                    fix=f"pass data_sources={{'{ds.source}': '<folder holding {ds.path} or its extracted folder>'}} or override {key}",
                    code="required",
                )
            )
    if issues:
        raise SpecError(
            f"{skill_name}: mandatory data source(s) missing: {', '.join(i.field for i in issues)}",
            issues=issues,
            field=issues[0].field,
            fix=issues[0].fix,
        )


__all__ = ["BuiltSpec", "ParentJob", "build_spec", "expand_shorthand", "ENCRYPTION_KEY_ENV"]
