"""Preflight: image folders, host tools, credentials, report aggregation."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pytest
from PIL import Image as PIL  # Pillow: in the engine and dev-notorch extras

from taoskills.data import preflight
from taoskills.data.preflight import (
    CheckResult,
    check_credentials,
    check_dataset,
    check_host,
    check_image_folder,
    run_preflight,
)
from taoskills.errors import NotSupported, PreflightError

FIELD = "dataset.train_dataset.images_dir"


def _images(folder: Path, n: int, sub: str = "") -> list[Path]:
    out = []
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = folder / sub / f"img_{i}.png"
        PIL.new("RGB", (8, 8), (i * 10 % 255, 0, 0)).save(p)
        out.append(p)
    return out


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_good_folder_passes(tmp_path):
    _images(tmp_path, 3)
    _images(tmp_path, 2, sub="nested")
    (tmp_path / "readme.txt").write_text("not an image")
    res = _by_name(check_image_folder(tmp_path, field=FIELD, batch_size=4))
    assert all(r.ok for r in res.values())
    assert res["image_folder.count"].details["images"] == 5
    assert res["image_folder.count"].details["other_files"] == 1
    assert res["image_folder.readable"].details["method"] == "PIL verify"
    report = run_preflight(res.values())
    assert report.ok and report.issues == []
    report.raise_if_failed()


def test_missing_folder(tmp_path):
    (tmp_path / "images_train.tar.gz").write_bytes(b"x")
    res = check_image_folder(tmp_path / "images_train", field=FIELD)
    assert [r.name for r in res] == ["image_folder.exists"]
    assert not res[0].ok and res[0].field == FIELD
    assert "stage it" in res[0].message


def test_archive_given(tmp_path):
    archive = tmp_path / "images_train.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    res = _by_name(check_image_folder(archive, field=FIELD))
    bad = res["image_folder.is_folder"]
    assert not bad.ok and "archive" in bad.message and "extracted folder" in bad.fix


def test_empty_folder(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    res = _by_name(check_image_folder(tmp_path, field=FIELD))
    count = res["image_folder.count"]
    assert not count.ok and "no images" in count.message and "images.zip" in count.message
    report = run_preflight(res.values())
    assert not report.ok
    assert report.issues[0]["field"] == FIELD and report.issues[0]["code"] == "image_folder.count"
    with pytest.raises(PreflightError) as exc:
        report.raise_if_failed()
    assert exc.value.issues and exc.value.issues[0].fix


def test_corrupt_image_listed(tmp_path):
    _images(tmp_path, 2)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    res = _by_name(check_image_folder(tmp_path, field=FIELD))
    readable = res["image_folder.readable"]
    assert not readable.ok
    listed = " ".join(readable.details["corrupt"])
    assert "broken.jpg" in listed and "empty.png" in listed and "img_0.png" not in listed
    assert res["image_folder.count"].details["readable"] == 2


def test_sample_limit(tmp_path):
    _images(tmp_path, 4)
    (tmp_path / "zz_broken.png").write_bytes(b"nope")
    res = _by_name(check_image_folder(tmp_path, field=FIELD, sample_limit=2))
    assert res["image_folder.readable"].ok and res["image_folder.readable"].details["checked"] == 2


def test_batch_bigger_than_dataset(tmp_path):
    _images(tmp_path, 3)
    res = _by_name(check_image_folder(tmp_path, field=FIELD, batch_size=8))
    batch = res["image_folder.batch"]
    assert not batch.ok and "fewer than one batch of 8" in batch.message and "at most 3" in batch.fix
    res = _by_name(check_image_folder(tmp_path, field=FIELD, min_images=10))
    assert not res["image_folder.count"].ok


def test_magic_byte_fallback_without_pil(tmp_path, monkeypatch):
    _images(tmp_path, 2)
    (tmp_path / "fake.png").write_bytes(b"GIF89a not a png")
    real = importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda n, *a: None if n == "PIL" else real(n, *a))
    res = _by_name(check_image_folder(tmp_path, field=FIELD))
    readable = res["image_folder.readable"]
    assert readable.details["method"] == "magic bytes"
    assert any("fake.png" in c for c in readable.details["corrupt"])
    report = run_preflight(res.values())
    assert any("PIL" in w for w in report.warnings)


def test_check_dataset_dispatches_by_format(tmp_path):
    coco = check_dataset(tmp_path / "missing.json", "coco", field="dataset.train_data_sources[0].json_file")
    assert coco[0].name == "coco.file" and not coco[0].ok and "does not exist" in coco[0].message
    odvg = check_dataset(tmp_path / "missing.jsonl", "odvg", field="json_file")
    assert odvg[0].name == "odvg.file" and not odvg[0].ok
    assert check_dataset(tmp_path, "ssl", field=FIELD)[0].name == "image_folder.exists"
    with pytest.raises(NotSupported) as exc:
        check_dataset(tmp_path, "kitti", field="x")
    assert exc.value.fix


def test_special_files_are_never_opened(tmp_path):
    import os

    fifo = tmp_path / "images"
    os.mkfifo(fifo)
    res = _by_name(check_image_folder(fifo, field=FIELD))
    assert not res["image_folder.is_folder"].ok and "fifo" in res["image_folder.is_folder"].message
    folder = tmp_path / "imgs"
    _images(folder, 3)
    os.mkfifo(folder / "pipe.jpg")  # named like an image: skipped by the one listing rule, not opened
    res = _by_name(check_image_folder(folder, field=FIELD))
    assert res["image_folder.count"].ok and res["image_folder.count"].details["images"] == 3


def test_credentials_by_name_only():
    env = {"NGC_KEY": "super-secret-value", "EMPTY_ONE": ""}
    res = check_credentials(["NGC_KEY", "HF_TOKEN", "EMPTY_ONE"], env=env)
    assert [r.ok for r in res] == [True, False, False]
    assert [r.field for r in res] == ["NGC_KEY", "HF_TOKEN", "EMPTY_ONE"]
    report = run_preflight(res)
    dumped = report.model_dump_json()
    assert "super-secret-value" not in dumped
    assert not report.ok and {i["field"] for i in report.issues} == {"HF_TOKEN", "EMPTY_ONE"}
    optional = run_preflight(check_credentials(["HF_TOKEN"], required=False, env=env))
    assert optional.ok and optional.warnings


def test_host_builtin_never_fails_for_no_gpu():
    res = _by_name(check_host("builtin", "local"))
    engine = res["host.builtin_engine"]
    have_all = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "pytorch_lightning"))
    assert engine.ok == have_all
    if importlib.util.find_spec("torch"):
        gpu = res["host.gpu"]
        assert gpu.ok and gpu.severity == "info"
        import torch

        assert gpu.details["cuda"] == torch.cuda.is_available()


def test_host_tao_names_missing_tool(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # empty PATH: no tao, docker, nvidia-smi
    res = _by_name(check_host("tao", "local", network="nvdinov2"))
    cli = res["host.tao_cli"]
    assert not cli.ok and "tao" in cli.message and "nvdinov2" in cli.message and cli.fix
    assert not res["host.gpu"].ok and res["host.gpu"].severity == "warning"
    res = _by_name(check_host("tao", "docker"))
    assert not res["host.docker"].ok and "docker" in res["host.docker"].message
    assert not run_preflight(res.values()).ok

    # a tao launcher on PATH satisfies the local check
    tao = tmp_path / "tao"
    tao.write_text("#!/bin/sh\nexit 0\n")
    tao.chmod(0o755)
    assert _by_name(check_host("tao", "local"))["host.tao_cli"].ok


def test_host_unknown_engine():
    res = check_host("magic", "local")
    assert not res[0].ok and "tao" in res[0].fix
