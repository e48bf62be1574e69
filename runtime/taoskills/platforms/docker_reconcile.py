"""Reconciliation of docker job records with the daemon, by label, after a restart of this
runtime (records without backend ids, stale RUNNING states) or of the Docker daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taoskills.platforms import docker_config as dc

if TYPE_CHECKING:
    from taoskills.jobs.store import JobStore
    from taoskills.platforms.docker import DockerPlatform


def reconcile(store: JobStore, platform: DockerPlatform | None = None) -> dict[str, Any]:
    """Bring docker job records in line with the daemon after a restart (of this runtime or
    the daemon): every non-terminal docker record is matched to its container by label; its
    state (and a missing backend id) is stored. Returns ``{"updated": {job_id: state},
    "orphans": [container names labelled with job ids the store does not know]}``."""
    from taoskills.platforms.docker import DockerPlatform

    plat = platform or DockerPlatform()
    records = [r for r in store.list(limit=0) if r.platform == "docker"]
    known = {r.job_id for r in records}
    live = [r for r in records if r.status not in ("COMPLETE", "ERROR", "CANCELED")]
    states = plat.poll_many(live)
    updated: dict[str, str] = {}
    for rec in live:
        st = states[rec.job_id]
        fields: dict[str, Any] = {"exit_code": st.exit_code}
        if rec.backend_id is None:
            c = plat.find(rec)
            if c is not None:
                fields["backend_id"] = c.id
        if st.state in ("PENDING", "UNKNOWN") and rec.status == "RUNNING":
            continue
        store.update_status(rec.job_id, st.state, **fields)
        updated[rec.job_id] = st.state
    orphans = [
        c.name
        for c in plat.client.containers.list(all=True, filters={"label": dc.LABEL_JOB})
        if (c.labels or {}).get(dc.LABEL_JOB) not in known
    ]
    return {"updated": updated, "orphans": orphans}
