"""Skill and spec tools of the MCP server: ``ping``, ``list_skills``, ``get_skill``,
``route_request``, ``get_spec_template``, ``build_spec``, ``validate_spec``, ``preflight``,
``render_runner``.

Registered by :func:`register` from :func:`taoskills.surfaces.mcp.build_server` (in this
order, which is the order ``tools/list`` shows). A thin skin over
:class:`taoskills.service.Service`: each tool is one service call run by the server's
:class:`taoskills.surfaces.mcp_runtime.ToolRunner` (worker threads, time limit, redaction,
JSON errors); no logic here.
"""

from typing import Annotated, Any

from pydantic import BaseModel, Field

from taoskills.data import preflight as pf
from taoskills.service import (
    RoutedRequest,
    RunnerResult,
    Service,
    SkillDetail,
    SkillSummary,
    SpecReply,
    ValidationResult,
    dump_yaml,
)
from taoskills.surfaces.mcp_runtime import AUTOML_POLICY, ENGINE_HELP, PROFILE, RO, ToolRunner, hints, registry_enums


class SkillList(BaseModel):
    """All skills in the bank."""

    skills: list[SkillSummary]


class SpecTemplate(BaseModel):
    """A packaged spec template: nested dict and the same as YAML text."""

    skill: str
    action: str
    spec: dict[str, Any]
    spec_yaml: str


def register(server: Any, svc: Service, call: ToolRunner) -> None:
    """Add the skill and spec tools to ``server`` (an MCPServer) over ``svc``; ``call`` runs
    each service call (:class:`taoskills.surfaces.mcp_runtime.ToolRunner`)."""
    EngineName, PlatformName = registry_enums()  # noqa: N806 (types of the engine/platform enums)

    # -- health ---------------------------------------------------------------------------

    @server.tool(annotations=hints(**RO, title="Health check"))
    async def ping() -> str:
        """Health check: returns "pong" (structured: {"result": "pong"}) and touches nothing (no skills, no jobs).

        Use it to see that the server is up; the MCP benchmark uses it as its baseline.
        """
        return "pong"

    # -- skills ---------------------------------------------------------------------------

    @server.tool(annotations=hints(**RO, title="List skills"))
    async def list_skills() -> SkillList:
        """List every skill in the bank: name, kind (model|application), network_arch, description,
        actions (train, inference, export, ...), automl_enabled, builtin_engine_actions (actions the
        built-in CPU/GPU engine implements) and engine_actions (runtime engine -> actions it implements).

        Next: route_request(text) to pick a skill for a request, or get_skill(name) for details.
        """
        return await call("list_skills", lambda: SkillList(skills=svc.list_skills()))

    @server.tool(annotations=hints(**RO, title="Get skill"))
    async def get_skill(
        name: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2' (see list_skills)")],
    ) -> SkillDetail:
        """One skill in full: frontmatter, SKILL.md body, file list (each readable as resource
        skill://<name>/<file>), shorthand keys (e.g. num_epochs -> train.num_epochs), metric contract,
        the data sources each action needs (role -> spec key, expected archive/folder), and runs_here:
        per action, which runtime engines on which platforms can run it on this host (engine/platform
        of the first that can), or 'next' - the one thing to do when none can.

        Errors: not_found with a did-you-mean when the name is unknown; fix = use a listed name.
        """
        return await call("get_skill", lambda: svc.get_skill(name))

    @server.tool(annotations=hints(**RO, title="Route a request"))
    async def route_request(
        text: Annotated[str, Field(description="the user's request in plain words, e.g. 'train NVDINOv2 on my photos'")],
        action: Annotated[
            str | None, Field(description="force an action (train, inference, export, ...); default: inferred")
        ] = None,
        automl_policy: Annotated[
            AUTOML_POLICY | None,
            Field(
                description="'on', 'off' or 'auto' to override the AutoML decision; default: inferred from the text and the skill"
            ),
        ] = None,
    ) -> RoutedRequest:
        """Map a request to a skill, action and automl_policy, with the parameters found in the text,
        a confidence and alternatives. skill is null when no skill applies (no_skill_reason names the
        nearest). automl_policy is the resolved decision (policy on/off, its source and the deciding
        phrase). runs_here says where the routed action can run on this host, or the one thing to do.
        Read-only: it launches nothing.

        Next: build_spec(skill, action, ...) with the returned parameters. For training, automl_policy
        'on' means launch_job starts an AutoML run (automl_start for its settings); 'off' trains directly.
        """
        return await call("route_request", lambda: svc.route_request(text, action=action, automl_policy=automl_policy))

    # -- specs ----------------------------------------------------------------------------

    @server.tool(annotations=hints(**RO, title="Get spec template"))
    async def get_spec_template(
        skill: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2'")],
        action: Annotated[str, Field(description="action name, e.g. 'train', 'inference', 'export'")],
    ) -> SpecTemplate:
        """The packaged spec template (TAO Core 7.3.0 defaults) of skill/action, as a nested dict and
        as YAML. Values '???' are required and are filled by build_spec from data sources, parent jobs
        and inference rules. Keys are TAO spec keys; override them with dotted names
        (e.g. 'train.num_epochs').

        Errors: not_found (unknown skill or action) with the valid names in the fix.
        """

        def run() -> SpecTemplate:
            spec = svc.get_spec_template(skill, action)
            return SpecTemplate(skill=skill, action=action, spec=spec, spec_yaml=dump_yaml(spec))

        return await call("get_spec_template", run)

    @server.tool(annotations=hints(read_only=False, idempotent=True, title="Build a spec"))
    async def build_spec(
        skill: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2'")],
        action: Annotated[str, Field(description="action name, e.g. 'train'")],
        overrides: Annotated[
            dict[str, Any] | None,
            Field(description="dotted spec keys -> values, e.g. {'train.num_epochs': 5, 'dataset.batch_size': 8}"),
        ] = None,
        shorthand: Annotated[
            dict[str, Any] | None,
            Field(description="skill shorthand names -> values, e.g. {'num_epochs': 5} (get_skill lists them)"),
        ] = None,
        data_sources: Annotated[
            dict[str, str] | None,
            Field(
                description="dataset role -> local folder or archive path, e.g. {'train_datasets': '/data/photos'}; the folder holds images_train/ or images_train.tar.gz (get_skill shows each action's roles)"
            ),
        ] = None,
        parent_job_id: Annotated[
            str | None, Field(description="COMPLETE job whose results feed this action (e.g. the train job for inference/export)")
        ] = None,
        resume_job_id: Annotated[str | None, Field(description="job whose full training checkpoint to resume from")] = None,
        pretrained_model: Annotated[str | None, Field(description="path of a pretrained model file to start from")] = None,
        pretrained_backbone: Annotated[
            str | None, Field(description="path of backbone-only pretrained weights (DINO, Grounding DINO)")
        ] = None,
        profile: Annotated[
            PROFILE | None, Field(description="'smoke' applies the skill's small validation-run settings; default none")
        ] = None,
        stage: Annotated[
            bool, Field(description="extract dataset archives into the staging cache (default true); false = pure preview")
        ] = True,
    ) -> SpecReply:
        """Build a complete spec for skill/action: template + parent-job carry + profile + data
        sources + shorthand + overrides + TAO inference rules. Returns the spec (a dict; YAML text
        comes from get_spec_template and render_runner), what
        was inferred or staged and why, notes, and validation issues (valid=false with issues listed;
        nothing raised for those, so you see all problems at once), and runs_here: the runtime
        engine/platform that runs this action on this host (get_skill lists every pair checked),
        or 'next', the one thing to do. Launches nothing.

        Not read-only: with stage=true it may extract dataset archives into the runtime's staging
        cache (<TAO_SKILLS_HOME>/staging); the user's data is never modified and a repeat call reuses
        the cache (idempotent). Pass stage=false for a side-effect-free preview.

        Errors: spec_invalid (unknown shorthand/override key, with did-you-mean; unknown data source
        role; parent job not COMPLETE), staging_failed (bad or unsafe archive), not_found.
        Next: fix issues and rebuild, then preflight and launch_job with the same arguments.
        """
        return await call(
            "build_spec",
            lambda: SpecReply.of(
                svc.build_spec(
                    skill,
                    action,
                    overrides=overrides,
                    shorthand=shorthand,
                    data_sources=data_sources,
                    parent_job_id=parent_job_id,
                    resume_job_id=resume_job_id,
                    pretrained_model=pretrained_model,
                    pretrained_backbone=pretrained_backbone,
                    profile=profile,
                    stage=stage,
                )
            ),
        )

    @server.tool(annotations=hints(**RO, title="Validate a spec"))
    async def validate_spec(
        skill: Annotated[str, Field(description="skill name")],
        action: Annotated[str, Field(description="action name")],
        spec: Annotated[dict[str, Any], Field(description="the nested spec (as from get_spec_template or build_spec)")],
        require_complete: Annotated[
            bool, Field(description="also flag required values still '???' (true before a launch)")
        ] = False,
    ) -> ValidationResult:
        """Check a nested spec against the action's schema (types, enums, bounds, unknown keys with
        did-you-mean) and TAO's semantic constraints. Returns valid, issues (each with field, reason,
        fix) and warnings. Launches nothing.

        Errors: not_found (unknown skill/action). Next: apply each issue's fix and validate again.
        """
        return await call("validate_spec", lambda: svc.validate_spec(skill, action, spec, require_complete=require_complete))

    @server.tool(annotations=hints(**RO, title="Preflight checks"))
    async def preflight(
        skill: Annotated[str, Field(description="skill name")],
        action: Annotated[str, Field(description="action name")],
        spec: Annotated[dict[str, Any], Field(description="the built spec (build_spec's 'spec')")],
        engine: Annotated[EngineName, Field(description=ENGINE_HELP)] = "auto",  # type: ignore[valid-type]
        platform: Annotated[PlatformName, Field(description="where the job runs, e.g. 'local'")] = "local",  # type: ignore[valid-type]
    ) -> pf.PreflightReport:
        """Check the data and host before a launch: each image folder exists, is a folder (not an
        archive), has enough readable images for one batch (corrupt files listed); host/engine and
        credential checks. Returns the report (ok + per-check results with fixes); launches nothing.

        Next: fix every failed check, then launch_job.
        """
        return await call("preflight", lambda: svc.preflight(skill, action, spec, engine=engine, platform=platform))

    @server.tool(annotations=hints(**RO, title="Render runner script"))
    async def render_runner(
        skill: Annotated[str, Field(description="skill name")],
        action: Annotated[str, Field(description="action name")],
        spec: Annotated[dict[str, Any], Field(description="the built spec")],
        engine: Annotated[EngineName, Field(description=ENGINE_HELP)] = "auto",  # type: ignore[valid-type]
        platform: Annotated[PlatformName, Field(description="platform name, e.g. 'local'")] = "local",  # type: ignore[valid-type]
    ) -> RunnerResult:
        """Render (not run, not write) the bash runner script a launch would use: it writes the spec
        and runs the engine, with secrets passed by env-var name only. For review before launch_job.

        Errors: not_supported when the engine cannot run this action here (fix names the engine to use).
        """
        return await call("render_runner", lambda: svc.render_runner(skill, action, spec, engine=engine, platform=platform))
