"""``estimate`` of :class:`taoskills.service.Service`: wall time, peak memory and disk before launch.

The figures come from :mod:`taoskills.jobs.estimate` (rules and sources there) for the spec
``build_spec`` would build, the image count of its data source and the host the platform runs
on. ``launch_job`` calls :meth:`EstimateMixin.launch_estimate` after preflight and refuses a
run that would not fit (free disk; GPU memory where the table has a row for the GPU).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from typing_extensions import Unpack

from taoskills.errors import NotSupported, PreflightError, SpecError
from taoskills.jobs import estimate as E
from taoskills.jobs import estimate_measured as EM
from taoskills.platforms.engines import AUTO
from taoskills.service_models import SpecRequest
from taoskills.specs.schedules import count_images

#: Platforms whose jobs run on this host's devices and file system (free disk is measured here).
LOCAL_PLATFORMS = ("local", "docker")


class Estimate(BaseModel):
    """What a run will cost. Units: seconds, GB (1e9 bytes), MB (1e6 bytes).

    ``wall_time_s`` / ``memory`` are None when the throughput table has no row for ``device``
    ("no measurement for this device" in ``notes``). ``disk`` is always given for NVDINOv2 (it
    follows from the spec); for DINO, MAE and Grounding DINO its sizes are None when the spec's
    model structure is not the measured reference's. ``fits`` is false when ``issues`` (each
    {field, reason, fix}) would stop the run.
    """

    skill: str
    action: str
    engine: str
    platform: str
    device: str
    images: int
    steps: int
    steps_per_epoch: int
    saves: int
    saves_kept: int
    wall_time_s: float | None
    memory: dict[str, Any] | None
    disk: dict[str, Any]
    free_disk_gb: float | None
    gpu_memory_gb: float | None
    measured: bool
    fits: bool
    issues: list[dict[str, str]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)


def _free_disk_gb(path: Path) -> float | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return round(shutil.disk_usage(p).free / E.GB, 2)
    except OSError:
        return None


def _host_device(platform: str, spec: dict[str, Any]) -> tuple[str, int, float | None]:
    """(device, GPUs used, smallest GPU's memory in GB) on the host that runs ``platform``'s jobs."""
    if platform not in LOCAL_PLATFORMS:
        return f"{platform} nodes (device type unknown here)", 1, None
    from taoskills.platforms.hostchecks import check_nvidia_smi

    gpu = check_nvidia_smi("info").details
    if not gpu.get("cuda"):
        return "cpu", 1, None
    want = int((spec.get("train") or {}).get("num_gpus", 1) or 1)
    mem = gpu.get("memory_gb")
    return (gpu.get("names") or ["gpu"])[0], max(1, min(want, int(gpu.get("gpus") or 1))), mem * 1.073741824 if mem else None


def _images(spec: dict[str, Any]) -> int:
    field = "dataset.train_dataset.images_dir"
    folder = Path(str(((spec.get("dataset") or {}).get("train_dataset") or {}).get("images_dir") or "")).expanduser()
    count = count_images(str(folder))  # remembered while the tree is unchanged (the builder counted it already)
    if count is None:
        raise SpecError(
            f"{field}={folder} is not a folder of images here, so the image count is unknown.",
            field=field,
            fix="pass data_sources with the train images (a folder or an archive to stage)",
        )
    return count


def _keep() -> int | None:
    from taoskills.security.env import DEFAULT_KEEP_CHECKPOINTS

    raw = os.environ.get("TAO_SKILLS_KEEP_CHECKPOINTS", DEFAULT_KEEP_CHECKPOINTS)
    try:
        return int(raw) or None
    except ValueError:
        return int(DEFAULT_KEEP_CHECKPOINTS)


def _lean(sk, profile: str | None) -> bool:
    truthy = ("1", "true", "yes")
    env = sk.info.smoke_env if profile == "smoke" else {}
    return str(env.get("TAO_SKILLS_LEAN_CHECKPOINTS", os.environ.get("TAO_SKILLS_LEAN_CHECKPOINTS", ""))).lower() in truthy


def _nvdinov2(sk, spec: dict[str, Any], profile: str | None, **host: Any) -> dict[str, Any]:
    return E.estimate_nvdinov2_train(spec, images=_images(spec), lean=_lean(sk, profile), **host)


def _measured(sk, spec: dict[str, Any], profile: str | None, **host: Any) -> dict[str, Any]:
    network = sk.info.network_arch
    try:
        samples = EM.count_samples(network, spec)
    except ValueError as exc:
        raise SpecError(
            f"{exc}, so the number of training samples is unknown.",
            field="dataset.train_data_sources",
            fix="pass data_sources with the training data (a folder or an archive to stage)",
        ) from None
    return EM.estimate_train(network, spec, samples=samples, **host)


#: network_arch -> estimator of its built-in-engine train runs (rules in taoskills.jobs.estimate*).
ESTIMATORS = {"nvdinov2": _nvdinov2, **{network: _measured for network in EM.NETWORKS}}


def _check_supported(sk, action: str, engine: str) -> None:
    network = sk.info.network_arch
    if network not in ESTIMATORS or action != "train" or engine != "builtin":
        raise E.not_supported(network, action, engine)


class EstimateMixin:
    """Needs ``catalog``, ``home`` and the Service's ``_place`` / ``_build``."""

    catalog: Any
    home: Path

    def estimate(
        self,
        skill: str,
        action: str,
        *,
        engine: str = AUTO,
        platform: str = "local",
        automl_policy: str | None = None,
        request_text: str = "",
        automl: dict[str, Any] | None = None,
        speed_factor: float = 1.0,
        **request: Unpack[SpecRequest],
    ) -> Estimate:
        """Estimate wall time, peak memory (GPU memory on GPU hosts, RAM on CPU) and disk of the
        run ``launch_job`` would start with the same arguments; nothing is launched (archives
        are staged, as ``build_spec`` does, to count the images).

        ``speed_factor``: this host's step time over the table's (1: as measured). Errors:
        NotSupported when no throughput table covers the network/action/engine; SpecError when
        the data source has no image folder; the placement and build errors of ``launch_job``.
        ``automl_policy``/``automl``/``request_text`` are accepted for symmetry and not used
        (the estimate is of one plain train run).
        """
        from taoskills.security import inputs as guard

        del automl_policy, automl, request_text
        sk = self.catalog.get(skill)
        sk.action(action)
        guard.check_request(request, schema=sk.schema(action))
        eng, plat = self._place(sk, action, engine, platform)  # type: ignore[attr-defined]
        _check_supported(sk, action, eng.name)  # before the build: no data needed to learn that
        results = self.home / "preview" / "results"
        built = self._build(sk, action, results_dir=results, stage=True, **request)  # type: ignore[attr-defined]
        return self._estimate(sk, action, eng.name, plat.name, built.spec, request.get("profile"), results, speed_factor)

    def _estimate(self, sk, action, engine, platform, spec, profile, results_dir: Path, speed_factor: float = 1.0) -> Estimate:
        _check_supported(sk, action, engine)
        device, gpus, gpu_mem = _host_device(platform, spec)
        estimator = ESTIMATORS[sk.info.network_arch]
        raw = estimator(sk, spec, profile, device=device, gpus=gpus, keep=_keep(), speed_factor=speed_factor)
        free = _free_disk_gb(results_dir) if platform in LOCAL_PLATFORMS else None
        issues = E.fits(raw, free_disk_gb=free, gpu_memory_gb=gpu_mem)
        notes = list(raw["notes"])
        if free is None:
            notes.append(f"free disk on the {platform} platform's storage is not measured from here")
        return Estimate(
            skill=sk.name,
            action=action,
            engine=engine,
            platform=platform,
            device=device,
            images=raw["images"],
            steps=raw["steps"],
            steps_per_epoch=raw["steps_per_epoch"],
            saves=raw["saves"],
            saves_kept=raw["saves_kept"],
            wall_time_s=raw["wall_time_s"],
            memory=raw["memory"],
            disk=raw["disk"],
            free_disk_gb=free,
            gpu_memory_gb=round(gpu_mem, 2) if gpu_mem else None,
            measured=raw["measured"],
            fits=not issues,
            issues=issues,
            notes=notes,
            detail={k: raw[k] for k in ("params_M", "step_s", "measured_on", "speed_factor") if k in raw},
        )

    def launch_estimate(self, sk, action: str, engine: str, platform: str, spec, profile, results_dir: Path) -> dict | None:
        """The estimate ``launch_job`` puts in its reply (None where no table covers the run).

        Raises PreflightError (field and fix from the first issue) when the run would not fit,
        before anything is launched.
        """
        try:
            est = self._estimate(sk, action, engine, platform, spec, profile, results_dir)
        except (NotSupported, SpecError):
            return None
        if est.issues:
            first = est.issues[0]
            raise PreflightError(
                f"estimate: {first['reason']}", field=first["field"], fix=first["fix"], details={"estimate": est.model_dump()}
            )
        return est.model_dump()
