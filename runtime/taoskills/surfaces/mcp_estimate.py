"""The ``estimate`` tool of the MCP server: wall time, peak memory and disk before launch.

Registered by :func:`register` from :func:`taoskills.surfaces.mcp.build_server`. A thin skin
over :meth:`taoskills.service.Service.estimate` (rules in :mod:`taoskills.jobs.estimate`).
Errors have the server's JSON shape (``error``, ``message``, ``field``, ``fix``).
"""

from typing import Annotated, Any

from pydantic import Field

from taoskills.service_estimate import Estimate
from taoskills.surfaces.mcp_runtime import ENGINE_HELP, PROFILE, RO, ToolRunner, hints, registry_enums

#: The tools :func:`register` adds.
ESTIMATE_TOOLS = frozenset({"estimate"})


def register(server: Any, service: Any, call: ToolRunner) -> None:
    """Add the ``estimate`` tool to ``server`` (an MCPServer) over ``service``; ``call`` is the
    server's :class:`~taoskills.surfaces.mcp_runtime.ToolRunner` (threads, time limit, redaction)."""
    EngineName, PlatformName = registry_enums()  # noqa: N806 (types of the engine/platform enums)

    @server.tool(annotations=hints(**RO, title="Estimate a run"))
    async def estimate(
        skill: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2'")],
        action: Annotated[str, Field(description="action name, e.g. 'train'")],
        overrides: Annotated[dict[str, Any] | None, Field(description="dotted spec keys -> values")] = None,
        shorthand: Annotated[dict[str, Any] | None, Field(description="skill shorthand names -> values")] = None,
        data_sources: Annotated[
            dict[str, str] | None, Field(description="dataset role -> local folder or archive, e.g. {'train_datasets': '/data'}")
        ] = None,
        parent_job_id: Annotated[str | None, Field(description="COMPLETE parent job")] = None,
        resume_job_id: Annotated[str | None, Field(description="job to resume training from")] = None,
        pretrained_model: Annotated[str | None, Field(description="path of a pretrained model file")] = None,
        profile: Annotated[PROFILE | None, Field(description="'smoke' for a small validation run")] = None,
        engine: Annotated[EngineName, Field(description=ENGINE_HELP)] = "auto",  # type: ignore[valid-type]
        platform: Annotated[PlatformName, Field(description="where it would run, e.g. 'local'")] = "local",  # type: ignore[valid-type]
    ) -> Estimate:
        """Estimate wall time (s), peak memory (GB; GPU memory on GPU hosts, RAM on CPU) and disk
        (MB at the end and at the peak) of the run launch_job would start with the same
        arguments, from the built-in engine's measured throughput table and the data source's
        image count. Launches nothing (archives are staged to count images). ``fits`` false
        with ``issues`` (field, reason, fix) means launch_job would refuse it. wall_time_s and
        memory are null with a note "no measurement for this device" where the table has no
        row. Errors: not_supported (no table for this network/action/engine), spec errors.
        """

        def run() -> Estimate:
            return service.estimate(
                skill,
                action,
                engine=engine,
                platform=platform,
                overrides=overrides,
                shorthand=shorthand,
                data_sources=data_sources,
                parent_job_id=parent_job_id,
                resume_job_id=resume_job_id,
                pretrained_model=pretrained_model,
                profile=profile,
            )

        return await call("estimate", run)
