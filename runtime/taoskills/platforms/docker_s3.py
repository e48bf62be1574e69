"""S3 on the docker platform: inputs staged into the workspace before the container starts,
results uploaded when the job ends (:mod:`taoskills.data.s3` does the transfers).

Staged data lands in ``<workspace>/staging/`` (the container sees it read-only under
``/workspace/staging``); the job's container spec names the extracted folders
(``runtime: extracted_folder``), while the job record keeps the ``s3://`` URIs the user gave.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taoskills.data import s3
from taoskills.jobs.store import JobRecord, utc_now

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.platforms.docker import DockerPlatform

UPLOADED_FILE = "uploaded.json"


def folder_keys(info: SkillInfo, action: str) -> set[str]:
    """Spec keys where TAO needs a folder (inputs of type folder, ``runtime: extracted_folder``)."""
    act = info.actions[action]
    keys = {k for k, io in act.inputs.items() if io.type == "folder"}
    return keys | {k for k, ds in act.data_sources.items() if ds.runtime == "extracted_folder"}


def stage_inputs(plat: DockerPlatform, record: JobRecord, info: SkillInfo) -> tuple[dict[str, Any], dict[str, str]]:
    """(spec with local paths for every ``s3://`` value, {key: local path}). Idempotent: a
    finished download is reused, an interrupted one resumes. Errors: StagingError."""
    cache = plat.cfg.workspace / "staging"
    spec, staged = s3.stage_spec(record.spec, folder_keys(info, record.action), cache_dir=cache)
    if staged and record.workdir:
        (Path(record.workdir) / "staged.json").write_text(json.dumps(staged, indent=1))
    return spec, staged


def upload_once(plat: DockerPlatform, record: JobRecord) -> list[str] | None:
    """Upload the results to ``s3://<results_bucket>/results/<job_id>/`` once (a marker in the
    workdir); None when no bucket is configured or it was done."""
    bucket = plat.cfg.results_bucket
    if not bucket or not record.workdir:
        return None
    marker = Path(record.workdir) / UPLOADED_FILE
    if marker.exists():
        return None
    root = plat.artifacts(record).checkpoint_root()  # the bind folder, or a copy of the volume
    keys = s3.upload_results(root, bucket, record.job_id, excludes=plat.cfg.upload_excludes)
    marker.write_text(json.dumps({"bucket": bucket, "prefix": f"results/{record.job_id}/", "files": len(keys), "at": utc_now()}))
    return keys


def stage_roots(plat: DockerPlatform, info: SkillInfo, action: str, data_sources: dict[str, str]) -> dict[str, str]:
    """``s3://`` dataset-role roots -> local folders under ``<workspace>/staging/s3/<bucket>/<prefix>``
    holding what the action's ``data_sources`` name there: files (``annotations.json``) downloaded,
    tar archives of ``runtime: extracted_folder`` sources extracted while they download into the
    folder beside them (``images.tar.gz`` -> ``images/``, :mod:`taoskills.data.s3_extract`), zips
    downloaded for the builder's safe extractor, an absent archive's prefix ``images/`` fetched
    as a folder. The spec builder then points the spec at the folders. Errors: StagingError."""
    from taoskills.data import staging
    from taoskills.data.s3_extract import stage_archive_uri
    from taoskills.errors import StagingError

    out = dict(data_sources)
    act = info.actions[action]
    conn = None
    for role, root in data_sources.items():
        if not s3.is_s3(root):
            continue
        conn = conn or s3.client()
        bucket, prefix = s3.parse(root)
        local_root = plat.cfg.workspace / "staging" / "s3" / bucket / prefix
        wanted = {ds.path: ds for ds in act.data_sources.values() if role in (ds.source, ds.fallback)}
        for rel, ds in wanted.items():
            key = f"{prefix}/{rel}".strip("/")
            field = f"data_sources.{role}"
            if s3.head(conn, bucket, key) is not None:
                if ds.runtime == "extracted_folder" and staging.archive_suffix(rel) not in (None, ".zip"):
                    # extracted while it downloads, into the folder beside it (the builder's
                    # user_extracted_folder rule then names it in the spec)
                    target = (local_root / rel).with_name(staging.archive_stem(rel))
                    stage_archive_uri(conn, bucket, key, field=field, cache_dir=plat.cfg.workspace / "staging", dest=target)
                else:
                    s3.download(conn, bucket, key, local_root / rel, field=field)
                continue
            folder = key
            if ds.runtime == "extracted_folder" and staging.is_archive(rel):
                folder = str(Path(key).with_name(staging.archive_stem(rel)))
            listing = conn.list_objects_v2(Bucket=bucket, Prefix=folder + "/", MaxKeys=1)
            if not listing.get("KeyCount") and not ds.optional:
                raise StagingError(
                    f"{field}: s3://{bucket}/{key} does not exist (nor s3://{bucket}/{folder}/)",
                    field=field,
                    fix=f"upload {rel} under s3://{bucket}/{prefix}/ or pass the prefix that holds it",
                )
            if listing.get("KeyCount"):
                s3.download_prefix(conn, bucket, folder, local_root / Path(folder).relative_to(prefix or "."), field=field)
        local_root.mkdir(parents=True, exist_ok=True)
        out[role] = str(local_root)
    return out
