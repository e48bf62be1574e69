#!/usr/bin/env python
"""Platform benchmarks: each figure is a ratio against a baseline measured in the same run.

1. **launch overhead** - a DINO train job through ``DockerPlatform.submit`` + polling until the
   container exits, vs a raw ``docker run`` (CLI) of the same image, command and mounts.
   Target: ratio <= 1.2.
2. **S3 staging** - ``taoskills.data.s3.stage_uri`` (parallel ranged GETs, the archive
   extracted while it downloads by the safe streaming extractor) of a ``.tar.gz`` of 1 MiB
   incompressible members from a moto S3 server (its own process) on 127.0.0.1, vs one
   streamed GET to a file then ``tar xzf``. Target: >= 1.5x faster. The archive is
   ``--archive-mib`` MiB (default 1024 = 1 GiB; the run needs about 4x that free on the
   temporary folder's disk and is skipped otherwise; every run's output is removed).
   ``--part-mib 64,256`` also measures other part sizes: moto's server copies the whole object
   for every ranged GET, so on this endpoint the number of parts, not their bytes, sets the cost.
3. **COCO preflight** - ``taoskills.data.annotations.check_coco`` on a file with
   ``--annotations`` annotations (default 1M) vs ``pycocotools.coco.COCO(path)`` (load and
   index; the ``dev`` extra installs it; without it ``json.load`` - COCO()'s first step - is
   the baseline and the output says so). Target: ratio <= 1.0.

Needs the Docker daemon and the stand-in images of tests/docker_support.py (built here).
Usage: ``.venv/bin/python scripts/bench_platforms.py [--runs 5] [--archive-mib 1024] [--part-mib N] [--annotations 1000000] [--only s3]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_launch(runs: int, work: Path) -> dict:
    import docker

    from docker_support import STANDIN_IMAGE, build_images, docker_env
    from fake_engine import write_tiny_images

    client = docker.from_env()
    build_images(client)
    ws = work / "ws"
    (ws / "data" / "images").mkdir(parents=True)
    os.environ.update(docker_env(ws))
    os.environ["TAO_SKILLS_HOME"] = str(ws)
    from taoskills.bank.catalog import Catalog
    from taoskills.jobs.store import JobRecord
    from taoskills.platforms.docker import DockerPlatform

    write_tiny_images(ws / "data" / "images", n=2)
    (ws / "data" / "annotations.json").write_text("{}")
    info = Catalog.load().get("tao-train-dino").info
    plat = DockerPlatform(client=client)
    spec = {"train": {"num_epochs": 1}, "dataset": {"train_data_sources": [{"image_dir": str(ws / "data" / "images")}]}}

    def ours():
        rec = JobRecord(skill=info.name, network_arch="dino", action="train", platform="docker", engine="tao", spec=spec)
        wd = ws / "jobs" / rec.job_id
        wd.mkdir(parents=True)
        rec.workdir, rec.results_dir, rec.log_path = str(wd), str(wd / "results"), str(wd / "log.txt")
        rec.spec = {**spec, "results_dir": rec.results_dir}
        rec.backend_id = plat.submit(rec)
        while plat.poll(rec).state not in ("COMPLETE", "ERROR", "CANCELED"):
            time.sleep(0.02)
        plat.remove(rec)

    def raw():
        wd = Path(tempfile.mkdtemp(dir=ws))
        (wd / "results").mkdir()
        raw_spec = {
            **spec,
            "results_dir": "/results",
            "dataset": {"train_data_sources": [{"image_dir": "/workspace/data/images"}]},
        }
        (wd / "spec.yaml").write_text(json.dumps(raw_spec))
        argv = ["docker", "run", "--rm", "--network", "none", "-e", f"PATH={plat.cfg.env_path}"]
        for m in plat.cfg.toolchain_mounts:
            argv += ["-v", f"{m}:{m}:ro"]
        argv += ["-v", f"{ws}:/workspace:ro", "-v", f"{wd / 'spec.yaml'}:/spec.yaml:ro", "-v", f"{wd / 'results'}:/results"]
        argv += [STANDIN_IMAGE, "dino", "train", "-e", "/spec.yaml", "results_dir=/results"]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"raw docker run failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")

    raw()
    ours()  # warm both paths (page cache, catalog)
    base, mine = _median(raw, runs), _median(ours, runs)
    return {
        "raw_docker_run_s": round(base, 3),
        "docker_platform_s": round(mine, 3),
        "ratio": round(mine / base, 3),
        "target": "<= 1.2",
    }


def bench_s3(archive_mib: int, work: Path, runs: int = 3, part_mibs: list[int] | None = None) -> dict:
    from taoskills.data import s3

    free = shutil.disk_usage(work).free
    if free < (4 * archive_mib << 20) + (2 << 30):
        return {"skipped": f"{free >> 20} MiB free in {work}: a {archive_mib} MiB run needs about 4x that"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the endpoint in its own process, like a real one (an in-process server would share our GIL)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    os.environ.update(
        {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    )
    try:
        c = s3.client()
        c.create_bucket(Bucket="bench")
        src = work / "src-images.tar.gz"
        rnd = random.Random(0)
        # 1 MiB incompressible members (JPEG-like); written to disk, never held in memory whole
        with tarfile.open(src, mode="w:gz", compresslevel=1) as tar:
            for i in range(archive_mib):
                data = rnd.randbytes(1 << 20)
                info = tarfile.TarInfo(f"images/img_{i:05d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        size = src.stat().st_size
        with open(src, "rb") as fh:  # one PUT: moto's CompleteMultipartUpload of 1 GiB can fail under load
            c.put_object(Bucket="bench", Key="ds/images.tar.gz", Body=fh)
        src.unlink()

        def timed(fn) -> float:
            times = []
            for _ in range(runs):
                d = Path(tempfile.mkdtemp(dir=work))
                t0 = time.perf_counter()
                fn(d)
                times.append(time.perf_counter() - t0)
                shutil.rmtree(d)
            return statistics.median(times)

        def baseline(d: Path) -> None:
            obj = c.get_object(Bucket="bench", Key="ds/images.tar.gz")["Body"]
            with open(d / "images.tar.gz", "wb") as fh:
                for chunk in iter(lambda: obj.read(1 << 20), b""):
                    fh.write(chunk)
            subprocess.run(["tar", "xzf", str(d / "images.tar.gz"), "-C", str(d)], check=True)

        def ours(part_size: int | None):
            def run(d: Path) -> None:
                uri = "s3://bench/ds/images.tar.gz"
                folder = s3.stage_uri(uri, field="images_dir", cache_dir=d, folder=True, s3=c, part_size=part_size)
                assert len(os.listdir(folder)) == archive_mib + 1  # the members plus the marker

            return run

        base = timed(baseline)
        out = {
            "archive_mib": round(size / (1 << 20), 1),
            "workers": s3.WORKERS,
            "runs": runs,
            "download_then_tar_xzf_s": round(base, 3),
            "target": ">= 1.5x (1 GiB archive)",
        }
        from taoskills.data.s3_extract import stream_part_size

        out["default_part_mib"] = stream_part_size(size) >> 20
        mine = timed(ours(None))
        out["stage_uri_s"], out["speedup"] = round(mine, 3), round(base / mine, 3)
        for mib in part_mibs or []:
            mine = timed(ours(mib << 20))
            out[f"stage_uri_part_{mib}mib_s"] = round(mine, 3)
            out[f"speedup_part_{mib}mib"] = round(base / mine, 3)
        return out
    finally:
        server.terminate()
        server.wait()


def bench_coco(n: int, work: Path) -> dict:
    try:
        from taoskills.data.annotations import check_coco
    except ImportError:
        return {"skipped": "taoskills.data.annotations (COCO preflight) is not in this tree"}
    images = max(1, n // 10)
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(1, images + 1)],
        "annotations": [
            {
                "id": i,
                "image_id": 1 + i % images,
                "category_id": 1 + i % 80,
                "bbox": [1.0, 2.0, 30.0, 40.0],
                "area": 1200.0,
                "iscrowd": 0,
            }
            for i in range(1, n + 1)
        ],
        "categories": [{"id": i, "name": f"c{i}"} for i in range(1, 81)],
    }
    path = work / "instances.json"
    path.write_text(json.dumps(coco))
    del coco

    try:
        from pycocotools.coco import COCO

        name = "pycocotools_COCO_s"

        def baseline():
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
                COCO(str(path))
    except ImportError:  # the dev extra installs it; json.load is COCO()'s first step
        name = "json_load_s (pycocotools missing)"

        def baseline():
            with open(path) as fh:
                json.load(fh)

    base = _median(baseline, 3)
    mine = _median(lambda: check_coco(path, field="dataset.train_data_sources[0].json_file", num_classes=91), 3)
    return {
        "annotations": n,
        name: round(base, 3),
        "check_coco_s": round(mine, 3),
        "ratio": round(mine / base, 3),
        "target": "<= 1.0 (vs pycocotools.coco.COCO)",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--archive-mib", type=int, default=1024, help="archive size (default 1 GiB; smaller for a quick run)")
    ap.add_argument(
        "--part-mib",
        default=None,
        help="extra ranged-GET part size(s) in MiB, comma-separated, each measured beside the runtime's default",
    )
    ap.add_argument("--s3-runs", type=int, default=3, help="runs of each S3 staging variant (median reported)")
    ap.add_argument("--annotations", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["launch", "s3", "coco"], default=None)
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-platforms-") as tmp:
        work = Path(tmp)
        if args.only in (None, "launch"):
            out["launch"] = bench_launch(args.runs, work)
        if args.only in (None, "s3"):
            parts = [int(p) for p in args.part_mib.split(",")] if args.part_mib else None
            out["s3_staging"] = bench_s3(args.archive_mib, work, runs=args.s3_runs, part_mibs=parts)
        if args.only in (None, "coco"):
            out["coco_preflight"] = bench_coco(args.annotations, work)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
