"""The launch stages of :class:`taoskills.service.Service`: place, automl_policy, build,
validate, preflight and render, composed by :meth:`PrepareMixin.prepare_job`.

``launch_job`` (record and submit) and the AutoML run (:mod:`taoskills.automl.service_hook`,
whose base spec is prepared the same way) both start from :meth:`PrepareMixin.prepare_job`;
:meth:`PrepareMixin.runner_context` is the render stage alone. Nothing here writes a job
record or a job folder. The policy of each stage lives in its layer: engines in
:mod:`taoskills.platforms.engines`, platforms in :mod:`taoskills.platforms.registry`, data
checks in :mod:`taoskills.data.preflight`, spec rules in :mod:`taoskills.specs`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from typing_extensions import Unpack

from taoskills.bank import routing
from taoskills.data import preflight as pf
from taoskills.errors import Issue, SpecError
from taoskills.platforms import engines as engine_registry
from taoskills.platforms import placement
from taoskills.platforms.base import Platform
from taoskills.platforms.engines import AUTO, RuntimeEngine
from taoskills.platforms.registry import get_platform
from taoskills.platforms.render import RunnerContext
from taoskills.security import launch as launch_guard
from taoskills.service_jobs import TERMINAL, JobsMixin
from taoskills.service_models import PreparedJob, SpecRequest, dump_yaml
from taoskills.specs import validator
from taoskills.specs.builder import BuiltSpec, ParentJob, build_spec

#: Runtime engine name: ``auto`` (first that can run here), ``builtin``, ``tao`` or a registered one.
Engine = str


class PrepareMixin(JobsMixin):
    """Needs ``self.catalog``, ``self.store``, ``self.home``; reads parent and resume jobs
    through the job methods (:class:`taoskills.service_jobs.JobsMixin`)."""

    home: Path

    def _build(self, sk, action, *, results_dir: Path, parent_job_id=None, resume_job_id=None, **kw) -> BuiltSpec:
        parent = self._parent(sk, action, parent_job_id) if parent_job_id else None
        resume_from = self._artifacts(self.store.get(resume_job_id)).checkpoint_root() if resume_job_id else None
        return build_spec(
            sk, action, results_dir=results_dir, parent=parent, resume_from=resume_from, cache_dir=self.home / "staging", **kw
        )

    def _parent(self, sk, action: str, parent_job_id: str) -> ParentJob:
        rec = self.store.get(parent_job_id)
        act = sk.action(action)
        if act.parent_action and rec.action != act.parent_action:
            raise SpecError(
                f"parent job {parent_job_id} ran {rec.action}; {sk.name} {action} needs a {act.parent_action} job",
                field="parent_job_id",
                fix=f"pass the id of a {act.parent_action} job (tao-skills jobs list)",
            )
        if rec.status not in TERMINAL:
            rec = self._refresh(rec)
        if rec.status != "COMPLETE":
            raise SpecError(
                f"parent job {parent_job_id} is {rec.status}, not COMPLETE",
                field="parent_job_id",
                fix="wait for the parent job to finish (job_status) or pick a COMPLETE one",
            )
        root = self._artifacts(rec).checkpoint_root()
        return ParentJob(job_id=rec.job_id, spec=rec.spec, results_dir=root, action=rec.action)

    @staticmethod
    def _credential_checks(sk, action: str, spec: dict[str, Any], eng: RuntimeEngine) -> list[pf.CheckResult]:
        """Credentials by NAME only (values never read into results). A secret variable the spec
        references as ``${oc.env:NAME}`` (OmegaConf's env resolver) must be set, and so must the
        engine's secret names (the runner script stops without them); a reference with a default,
        ``${oc.env:NAME,default}``, is reported as a warning when unset."""
        import re

        from taoskills.security.env import is_secret_env_name

        refs: dict[str, bool] = {}  # name -> required
        for name, default in re.findall(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(,[^}]*)?\}", dump_yaml(spec)):
            if is_secret_env_name(name):
                refs[name] = refs.get(name, False) or not default
        for name in eng.secret_env_names(sk.info, action, spec):
            refs[name] = True
        return [c for n, req in refs.items() for c in pf.check_credentials([n], required=req)]

    def _checks(self, sk, action: str, spec: dict[str, Any], eng: RuntimeEngine, plat: Platform):
        """(data checks through the platform's input policy, host checks of the platform for the engine)."""
        data = pf.check_action_inputs(sk.action(action), spec, action=action, check_input=plat.check_input)
        data += pf.check_network_datasets(sk.info.network_arch, action, spec)  # annotations, class folders
        why = eng.why_not(sk.info, action)
        if why:
            return data, [
                pf.CheckResult(name="engine.supports", ok=False, field="engine", message=why, fix=eng.fix(sk.info, action))
            ]
        return data, plat.host_checks(eng, sk.info, action, spec)

    def _place(self, sk, action: str, engine: Engine, platform: str) -> tuple[RuntimeEngine, Platform]:
        sk.action(action)
        where = placement.require(sk.info, action, engine=engine, platform=platform)
        return engine_registry.get_engine(where.engine or ""), get_platform(platform)

    def _runner_context(self, sk, action, spec, eng: RuntimeEngine, plat: Platform, job_id, workdir: Path) -> RunnerContext:
        info = sk.info
        spec_path = plat.map_path(str(workdir / "spec.yaml"))
        return RunnerContext(
            job_id=job_id,
            skill=sk.name,
            network_arch=info.network_arch,
            action=action,
            engine=eng.name,
            platform=plat.name,
            workdir=plat.map_path(str(workdir)),
            results_dir=plat.map_path(str(_get(spec, "results_dir") or workdir / "results")),
            spec_path=spec_path,
            spec_yaml=dump_yaml(spec),
            command=eng.command(info, action, spec_path),
            env={**eng.env(info, action, spec), **plat.launch_env(info, action, spec)},
            secret_env_names=eng.secret_env_names(info, action, spec),
        )

    def runner_context(
        self, skill: str, action: str, spec: dict[str, Any], *, engine: Engine, platform: str, job_id: str, workdir: Path
    ) -> RunnerContext:
        """The render stage alone: the :class:`RunnerContext` (command, env, paths mapped by the
        platform, spec YAML) of ``spec`` run by the registered ``engine`` (a name, not ``auto``)
        on ``platform`` as job ``job_id`` in ``workdir``. Nothing is checked, written or launched;
        callers that replace the command (the AutoML controller job) start from it."""
        sk = self.catalog.get(skill)
        eng = engine_registry.get_engine(engine)
        return self._runner_context(sk, action, spec, eng, get_platform(platform), job_id, Path(workdir))

    # -- jobs ---------------------------------------------------------------------------

    def prepare_job(
        self,
        skill: str,
        action: str,
        *,
        engine: Engine = AUTO,
        platform: str = "local",
        automl_policy: str | None = None,
        request_text: str = "",
        job_id: str | None = None,
        results_dir: Path | None = None,
        for_launch: bool = True,
        **request: Unpack[SpecRequest],
    ) -> PreparedJob:
        """Every stage of a launch before anything is written: place -> automl_policy -> build
        (from a :class:`SpecRequest`) -> validate (complete) -> preflight -> render context.

        ``engine``/``platform``: as in :meth:`launch_job`; placement resolves ``auto``
        (NotSupported, whose ``fix`` is the one thing to do, when nothing can run the action
        here; checked before the AutoML policy). ``automl_policy``/``request_text``: the policy
        stage (each skill's "Train Action Policy"); when it decides ``on`` the result has
        ``decision.policy == "on"`` and no spec (the AutoML run is prepared by
        :mod:`taoskills.automl.service_hook`). ``job_id``: default a new ``job-<12 hex>``; its
        folder is ``<home>/jobs/<job_id>/`` (not created here); ``results_dir`` defaults to
        ``<workdir>/results``. ``for_launch=False`` stops after preflight: remote data roots are
        not staged by the platform, the launch guard and the runner context are skipped (the
        base spec of an AutoML run). Raises, in this order: PreflightError for missing data
        (the cause of most spec errors that follow), SpecError with every validation error,
        PreflightError for the host, then the launch guard's refusals (security).
        Security checks of the request itself (size caps, hostile values) are the caller's.
        """
        sk = self.catalog.get(skill)
        eng, plat = self._place(sk, action, engine, platform)  # place (checks the action too)
        decision = self._automl_policy(sk, action, automl_policy, request_text)  # policy
        job_id = job_id or "job-" + uuid.uuid4().hex[:12]
        workdir = self.home / "jobs" / job_id
        results = Path(results_dir) if results_dir else workdir / "results"
        prepared = PreparedJob(
            skill=sk,
            action=action,
            engine=eng,
            platform=plat,
            decision=decision,
            job_id=job_id,
            workdir=workdir,
            results_dir=results,
        )
        if decision.policy == "on":  # the AutoML run is itself a job (taoskills.automl.service_hook)
            return prepared
        if for_launch and request.get("data_sources"):  # remote roots (s3://) become local folders where the platform stages them
            stage_roots = getattr(plat, "stage_data_sources", None)  # plug-in platforms may predate it
            if stage_roots is not None:
                request["data_sources"] = stage_roots(sk.info, action, dict(request["data_sources"] or {}))
        built = self._build(sk, action, results_dir=results, stage=True, **request)  # build
        issues = validator.validate_spec(  # validate
            sk.schema(action), built.spec, network_arch=sk.info.network_arch, action=action, require_complete=True
        )
        data, host = self._checks(sk, action, built.spec, eng, plat)  # preflight
        # Report in this order: missing data (the cause of most spec errors that follow), spec, host.
        pf.run_preflight(data).raise_if_failed()
        _raise_spec_errors(issues)
        pf.run_preflight(host).raise_if_failed()
        prepared.built = built
        if not for_launch:
            return prepared
        launch_guard.check_launchable(built.spec, sk.info.network_arch)  # security: launch only what can run
        # security: the runner context is checked before the job folder exists (a refusal leaves nothing)
        prepared.context = self._runner_context(sk, action, built.spec, eng, plat, job_id, workdir)  # render
        return prepared

    def _automl_policy(self, sk, action: str, automl_policy: str | None, request_text: str):
        """The AutoML policy decision (each skill's SKILL.md "Train Action Policy"; Chinese off
        words and the request-length cap come from the router's lexicon)."""
        return routing.request_policy(sk.info, action, explicit=automl_policy, text=request_text, skill_dir=sk.dir)


# ----------------------------------------------------------------------------- helpers


def _get(spec: dict, key: str) -> Any:
    from taoskills.specs.dotted import get_dotted

    return get_dotted(spec, key, default=None)


def _raise_spec_errors(issues: list[Issue]) -> None:
    """SpecError carrying every error of a validation (warnings pass)."""
    errors = [i for i in issues if i.code != "warning"]
    if errors:
        first, more = errors[0], f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"spec is invalid: {first.field}: {first.reason}{more}", field=first.field, fix=first.fix, issues=errors)
