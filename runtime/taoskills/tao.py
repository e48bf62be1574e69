"""TAO's contract in one place: the names and values every layer shares (no torch, stdlib only).

Sources (files in this repository and public TAO projects):

* Job states: the TAO API / SDK job lifecycle (``PENDING`` -> ``RUNNING`` -> ``COMPLETE`` |
  ``ERROR`` | ``CANCELED``); ``UNKNOWN`` when the platform cannot tell.
* ``status.json``: TAO's ``StatusLogger`` (nvidia_tao_core / nvidia-tao-pytorch
  ``cloud_handlers``) writes JSON Lines to ``<results_dir>/<action>/status.json`` with
  ``status`` in ``STARTED|RUNNING|SUCCESS|FAILURE|SKIPPED`` and ``verbosity`` in
  ``DEBUG|INFO|WARNING|ERROR|CRITICAL``.
* ``???``: OmegaConf / Hydra ``MISSING`` (``omegaconf.MISSING == "???"``), used by TAO Core's
  structured configs and spec templates for values the user must set.
* Engines: ``builtin`` (this package's ``tao-skills-engine``) and ``tao`` (TAO's own CLI or
  containers).
* Image files: what the built-in engine's Pillow loading decodes (``PIL.Image.open`` +
  ``convert("RGB")``) and preflight verifies: JPEG, PNG, BMP, WebP, TIFF. Found recursively by
  extension (any case), skipping hidden files and folders (names starting with ``.``: editor
  and OS debris such as ``.ipynb_checkpoints/`` or macOS ``._a.jpg``), regular files only.
* Archives: the data-source archive types TAO's job runner and this runtime extract
  (``images_train.tar.gz`` -> ``images_train/``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

# -- jobs ------------------------------------------------------------------------------

JobState = Literal["PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED", "UNKNOWN"]
PENDING: JobState = "PENDING"
RUNNING: JobState = "RUNNING"
COMPLETE: JobState = "COMPLETE"
ERROR: JobState = "ERROR"
CANCELED: JobState = "CANCELED"
UNKNOWN: JobState = "UNKNOWN"
#: Every job state, in lifecycle order.
JOB_STATES: tuple[JobState, ...] = (PENDING, RUNNING, COMPLETE, ERROR, CANCELED, UNKNOWN)
#: States a job never leaves.
TERMINAL_STATES: frozenset[str] = frozenset({COMPLETE, ERROR, CANCELED})

# -- engines ---------------------------------------------------------------------------

EngineName = Literal["builtin", "tao"]
ENGINE_BUILTIN: EngineName = "builtin"
ENGINE_TAO: EngineName = "tao"
ENGINES: tuple[EngineName, ...] = (ENGINE_BUILTIN, ENGINE_TAO)

# -- specs -----------------------------------------------------------------------------

#: OmegaConf/Hydra MISSING: a required value not set yet.
MISSING = "???"

# -- results (status.json) --------------------------------------------------------------

STATUS_FILE = "status.json"
StatusValue = Literal["STARTED", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED"]
STATUS_VALUES: tuple[StatusValue, ...] = ("STARTED", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED")
STATUS_VERBOSITIES: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# -- data sources ----------------------------------------------------------------------

#: Image extensions (lower-case, with the dot) that preflight counts and every engine reads.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: Archive suffixes of data sources, longest first (``.tar.gz`` is matched before ``.tar``).
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tar.bz2", ".tar.xz", ".tbz2", ".tgz", ".txz", ".tar", ".zip")


def is_image_name(name: str | Path) -> bool:
    """True when the file name ends with one of :data:`IMAGE_EXTENSIONS` (any case) and is not hidden."""
    base = Path(name).name
    return not base.startswith(".") and Path(base).suffix.lower() in IMAGE_EXTENSIONS


def archive_suffix(name: str | Path) -> str | None:
    """The archive suffix of ``name`` (``".tar.gz"``, ``".zip"``, ...) or ``None`` (any case)."""
    low = Path(name).name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if low.endswith(suffix) and len(low) > len(suffix):
            return suffix
    return None


def is_archive_name(name: str | Path) -> bool:
    """True when ``name`` ends with one of :data:`ARCHIVE_SUFFIXES` (case-insensitive)."""
    return archive_suffix(name) is not None


def archive_stem(name: str | Path) -> str:
    """The name without its archive suffix: ``images_train.tar.gz`` -> ``images_train``."""
    base = Path(name).name
    suffix = archive_suffix(base)
    return base[: -len(suffix)] if suffix else base


def iter_image_files(folder: str | Path) -> Iterator[Path]:
    """Image files under ``folder``, recursively, in sorted order (the one image-folder rule).

    Regular files whose name passes :func:`is_image_name`; hidden files and hidden folders are
    skipped; symbolic links to folders are not followed; FIFOs, sockets and devices are skipped
    (checked with ``os.stat``, never opened).
    """
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not is_image_name(name):
                continue
            p = Path(dirpath) / name
            try:
                if stat.S_ISREG(os.stat(p).st_mode):
                    yield p
            except OSError:
                continue


__all__ = [
    "ARCHIVE_SUFFIXES",
    "CANCELED",
    "COMPLETE",
    "ENGINES",
    "ENGINE_BUILTIN",
    "ENGINE_TAO",
    "ERROR",
    "EngineName",
    "IMAGE_EXTENSIONS",
    "JOB_STATES",
    "JobState",
    "MISSING",
    "PENDING",
    "RUNNING",
    "STATUS_FILE",
    "STATUS_VALUES",
    "STATUS_VERBOSITIES",
    "StatusValue",
    "TERMINAL_STATES",
    "UNKNOWN",
    "archive_stem",
    "archive_suffix",
    "is_archive_name",
    "is_image_name",
    "iter_image_files",
]
