"""Helpers every network of the built-in engine shares: image folders and the device choice.

Networks import these from here, never from one another (``engine/<network>/`` packages stay
independent). Folder rules: ``taoskills.tao`` (the one image rule preflight also uses: recursive,
extensions :data:`IMAGE_EXTS`, any case, hidden entries skipped; archives are refused, the engine
reads extracted folders - docs/tao-contract.md §4.5 C13). Torch is imported only by
:func:`pick_device`, so the folder helpers load without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from taoskills import tao
from taoskills.errors import Issue, NotSupported, PreflightError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("taoskills.engine")

IMAGE_EXTS = tao.IMAGE_EXTENSIONS  # the one list preflight also uses
ARCHIVE_SUFFIXES = tao.ARCHIVE_SUFFIXES


def is_archive(path: Path) -> bool:
    """True when ``path``'s name ends in an archive suffix (:data:`ARCHIVE_SUFFIXES`)."""
    return tao.is_archive_name(path)


def list_images(images_dir: str | Path, *, field: str) -> list[Path]:
    """Sorted image files under ``images_dir`` (:func:`taoskills.tao.iter_image_files`: recursive,
    extensions :data:`taoskills.tao.IMAGE_EXTENSIONS`, hidden entries skipped, the same rule
    preflight counts with). ``field`` is the spec key, for errors.

    Raises PreflightError when the path is missing, is an archive or a file, or holds no image.
    """
    path = Path(str(images_dir)).expanduser()
    if is_archive(path):
        raise PreflightError(
            f"{field}={path} is an archive; the engine reads an extracted folder of images.",
            field=field,
            fix=f"extract it (e.g. tar -xzf {path.name}) and pass the extracted folder.",
        )
    if not path.exists():
        raise PreflightError(f"{field}={path} does not exist.", field=field, fix="pass an existing folder of images.")
    if not path.is_dir():
        raise PreflightError(
            f"{field}={path} is a file, not a folder.", field=field, fix="pass the folder that holds the images."
        )
    files = list(tao.iter_image_files(path))
    if not files:
        archives = sorted(p.name for p in path.rglob("*") if p.is_file() and is_archive(p))
        extra = f" It holds archive(s) {', '.join(archives[:3])}: pass the extracted folder." if archives else ""
        raise PreflightError(
            f"{field}={path} holds no images ({', '.join(IMAGE_EXTS)}).{extra}",
            field=field,
            fix="put the images (any depth) in that folder, or point the key at the folder that has them.",
        )
    return files


def check_readable(files: Sequence[Path], *, field: str) -> list[tuple[int, int]]:
    """Open every image header (PIL); return their (width, height) in ``files`` order.

    Raises PreflightError listing the unreadable files (one Issue each, code ``unreadable``, at most 50).
    """
    from PIL import Image

    sizes, bad = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
        except Exception as exc:  # PIL raises several types for corrupt files
            bad.append(
                Issue(
                    str(f),
                    f"cannot be read as an image ({type(exc).__name__}: {exc}).",
                    "delete or replace the file.",
                    "unreadable",
                )
            )
    if bad:
        names = ", ".join(Path(i.field).name for i in bad[:5])
        raise PreflightError(
            f"{len(bad)} of {len(files)} files under {field} cannot be read as images: {names}"
            + (" ..." if len(bad) > 5 else ""),
            field=field,
            fix="remove or replace the listed files.",
            issues=bad[:50],
        )
    return sizes


def pick_device(*, want_gpu: bool, gpu_id: int, num_gpus: int = 1, field: str) -> torch.device:
    """``cuda:<gpu_id>`` when wanted and present, else CPU (with a logged warning when a GPU was wanted).

    ``num_gpus > 1`` raises NotSupported (single-device evaluate/inference/export only); a
    ``gpu_id`` beyond the host's device count raises PreflightError naming ``field``.
    """
    import torch

    if num_gpus > 1:
        raise NotSupported(
            f"{field}={num_gpus}: the built-in engine runs this action on one device.", field=field, fix=f"set {field}=1."
        )
    if not want_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        log.warning("No CUDA GPU found: running on the CPU.")
        return torch.device("cpu")
    if gpu_id >= torch.cuda.device_count():
        raise PreflightError(
            f"GPU {gpu_id} does not exist (this host has {torch.cuda.device_count()}).",
            field=field,
            fix="use a GPU id from 0 to device_count-1.",
        )
    return torch.device(f"cuda:{gpu_id}")


__all__ = ["ARCHIVE_SUFFIXES", "IMAGE_EXTS", "check_readable", "is_archive", "list_images", "pick_device"]
