"""Bounded, safe extraction of data-source archives (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
``.tar.xz``, ``.zip``) into a folder this runtime owns.

Every archive is first *planned*: its member list is read (nothing written) and refused with a
:class:`~taoskills.errors.StagingError` naming the archive, the member, the rule and how to
change it when

* it holds more than ``max_members`` members, or expands past ``max_bytes``, or expands more
  than ``max_ratio`` times its own size (once the expansion passes ``ratio_floor_bytes``), or
  a member is bigger than ``max_member_bytes``. "Expands to" is the disk estimate: each
  member's size rounded up to 4 KiB blocks plus one block per member (so a million empty
  files count as the 4 GB of blocks and inodes they cost, not as zero bytes);
* a member name is absolute, contains ``..``, or appears twice (a later member would overwrite
  an earlier one, e.g. a hard link followed by a same-named file that rewrites the link's
  target);
* a member is a device, FIFO or socket node; a link whose target is absolute or leaves the
  destination; a hard link to anything but an earlier regular file of the archive; or a
  member whose path goes through a link member.

Then the free space of the destination's disk is checked (expansion + ``reserve_bytes``), and
only then are members written: tar members through Python's ``tarfile`` ``data`` filter
(PEP 706: also clears setuid/setgid/sticky bits and group/other write bits), zip members by
this module (written as plain ``0o644`` files, never with the archive's mode bits; a member
that decompresses to more bytes than its header declares is refused). Limits come from
:class:`ArchiveLimits` (function arguments, else the ``TAO_SKILLS_MAX_EXTRACT_*`` environment
variables, else the defaults below).

A tar read while it downloads (:func:`extract_tar_stream`, tarfile's streaming mode ``r|*``)
cannot be planned first: each member passes the same checks just before it is written, the
free disk is re-read as it fills (:class:`DiskBudget`), and on a refusal the caller discards
the partly filled temporary folder, so nothing outside it is ever written.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from taoskills import tao
from taoskills.errors import StagingError

GiB = 1024**3
MiB = 1024**2
BLOCK = 4096  # disk block assumed per member and per partial block

#: Environment variable for each :class:`ArchiveLimits` field.
LIMIT_ENV: dict[str, str] = {
    "max_bytes": "TAO_SKILLS_MAX_EXTRACT_BYTES",
    "max_ratio": "TAO_SKILLS_MAX_EXTRACT_RATIO",
    "max_members": "TAO_SKILLS_MAX_EXTRACT_MEMBERS",
    "max_member_bytes": "TAO_SKILLS_MAX_MEMBER_BYTES",
    "ratio_floor_bytes": "TAO_SKILLS_EXTRACT_RATIO_FLOOR_BYTES",
    "reserve_bytes": "TAO_SKILLS_STAGING_RESERVE_BYTES",
}


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds for one extraction. Bytes are bytes; ``max_ratio`` is expanded / archive size.

    Defaults: 100 GiB expanded (COCO train2017 is ~19 GB), ratio 100 (JPEG/PNG datasets stay
    near 1; a zip bomb is ~1000), 2,000,000 members (ImageNet-1k train has 1.28 M images),
    64 GiB per member, ratio checked above 64 MiB of expansion, 1 GiB left free on the disk.
    """

    max_bytes: int = 100 * GiB
    max_ratio: float = 100.0
    max_members: int = 2_000_000
    max_member_bytes: int = 64 * GiB
    ratio_floor_bytes: int = 64 * MiB
    reserve_bytes: int = 1 * GiB

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: float | None) -> ArchiveLimits:
        """Defaults, replaced by the ``TAO_SKILLS_*`` variables set in ``env`` (default
        ``os.environ``), replaced by the non-``None`` ``overrides`` (field name -> value).

        Raises StagingError naming the variable when one is not a positive number.
        """
        source = os.environ if env is None else env
        values: dict[str, float] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:
                continue
            raw = source.get(LIMIT_ENV[f.name])
            if raw is None or raw.strip() == "":
                continue
            try:
                num = float(raw.strip().replace("_", ""))
            except ValueError:
                num = -1.0
            if not num > 0 or num != num or num == float("inf"):
                raise StagingError(
                    f"{LIMIT_ENV[f.name]}={raw!r} is not a positive number.",
                    field=LIMIT_ENV[f.name],
                    fix=f"Set {LIMIT_ENV[f.name]} to a positive number (bytes for sizes) or unset it "
                    f"(default {getattr(cls(), f.name)}).",
                )
            values[f.name] = num if f.name == "max_ratio" else int(num)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown archive limit(s): {', '.join(sorted(unknown))}")
        return replace(cls(), **values)  # type: ignore[arg-type]


@dataclass
class Plan:
    """What an archive would write: member count and expansion estimate (bytes)."""

    archive: Path
    archive_bytes: int
    members: int = 0
    content_bytes: int = 0
    expanded_bytes: int = 0
    names: dict[str, str] = field(default_factory=dict)  # normalised name -> kind
    tar_members: list[tarfile.TarInfo] = field(default_factory=list)
    zip_members: list[tuple[zipfile.ZipInfo, str, str]] = field(default_factory=list)


def _size(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def refuse(field_: str, archive: Path, member: str, reason: str, *, fix: str | None = None) -> StagingError:
    """The StagingError for an unsafe member (names archive, member and reason)."""
    return StagingError(
        f"{field_}: refusing to extract {archive.name}: member {member!r} {reason}. Nothing was extracted.",
        field=field_,
        fix=fix
        or "Re-create the archive with relative member paths inside one folder, each name once, without links "
        "outside it or special files; or extract it yourself and pass the folder.",
        details={"archive": str(archive), "member": member, "reason": reason},
    )


def _limit_error(field_: str, archive: Path, what: str, name: str, limits: ArchiveLimits, needed: float) -> StagingError:
    env = LIMIT_ENV[name]
    value = getattr(limits, name)
    shown = f"{value:g}" if name == "max_ratio" else f"{int(value)} ({_size(value)})"
    return StagingError(
        f"{field_}: refusing to extract {archive.name}: {what}, over the limit {name}={shown}. Nothing was extracted.",
        field=field_,
        fix=f"If the archive is genuine, raise the limit: set {env} (or pass {name}=...) to at least "
        f"{int(needed) if name != 'max_ratio' else round(needed, 1)}; or extract it yourself and pass the folder.",
        details={"archive": str(archive), "limit": name, "env": env, "value": value, "needed": needed},
    )


def _blocks(size: int) -> int:
    return -(-max(size, 0) // BLOCK) * BLOCK + BLOCK


def check_name(name: str, *, field_: str, archive: Path) -> str:
    """Normalised relative member name, or StagingError for absolute / ``..`` names."""
    raw = name.replace("\\", "/") if "\\" in name and "/" not in name else name
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise refuse(field_, archive, name, "has an absolute path")
    if "\x00" in raw:
        raise refuse(field_, archive, name, "has a NUL character in its name")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse(field_, archive, name, "contains '..' (path traversal)")
    return "/".join(parts)


def _check_link_target(member: str, target: str, *, hard: bool, field_: str, archive: Path) -> str:
    kind = "hard" if hard else "symbolic"
    if not target or target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise refuse(field_, archive, member, f"is a {kind} link to absolute path {target!r}")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved in ("..", ".") or resolved.startswith("../"):
        raise refuse(field_, archive, member, f"is a {kind} link pointing outside the destination ({target!r})")
    return resolved


def _add(plan: Plan, name: str, kind: str, size: int, *, member: str, field_: str, limits: ArchiveLimits) -> None:
    """Account one member; refuse duplicates, writes through links and limit breaches."""
    archive = plan.archive
    if name:
        previous = plan.names.get(name)
        if previous is not None and not (previous == "dir" and kind == "dir"):
            raise refuse(
                field_,
                archive,
                member,
                f"appears twice (first as a {previous}); a later copy would overwrite the earlier one",
            )
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if plan.names.get(prefix) in ("symlink", "hardlink", "file"):
                raise refuse(field_, archive, member, f"would be written through the {plan.names[prefix]} member {prefix!r}")
        plan.names[name] = kind
    plan.members += 1
    if plan.members > limits.max_members:
        raise _limit_error(
            field_, archive, f"it holds more than {limits.max_members} members", "max_members", limits, plan.members
        )
    if size > limits.max_member_bytes:
        raise refuse(
            field_,
            archive,
            member,
            f"is {size} bytes ({_size(size)}), over the limit max_member_bytes={limits.max_member_bytes}",
            fix=f"If it is genuine, set {LIMIT_ENV['max_member_bytes']} to at least {size}; or extract it yourself.",
        )
    plan.content_bytes += max(size, 0)
    plan.expanded_bytes += _blocks(size)
    if plan.expanded_bytes > limits.max_bytes:
        raise _limit_error(
            field_,
            archive,
            f"it expands to more than {_size(limits.max_bytes)} (at least {_size(plan.expanded_bytes)} so far)",
            "max_bytes",
            limits,
            plan.expanded_bytes,
        )
    _check_ratio(plan, field_=field_, limits=limits)


def _check_ratio(plan: Plan, *, field_: str, limits: ArchiveLimits) -> None:
    if plan.expanded_bytes <= limits.ratio_floor_bytes:
        return
    ratio = plan.expanded_bytes / max(plan.archive_bytes, 1)
    if ratio > limits.max_ratio:
        raise _limit_error(
            field_,
            plan.archive,
            f"{_size(plan.archive_bytes)} expands to at least {_size(plan.expanded_bytes)} "
            f"({plan.members} member{'s' if plan.members != 1 else ''}), a ratio of {ratio:.0f}",
            "max_ratio",
            limits,
            ratio,
        )


def check_tar_member(plan: Plan, member: tarfile.TarInfo, *, field_: str, limits: ArchiveLimits) -> str:
    """Check one tar member against the rules of the module docstring and account it in
    ``plan`` (appended to ``plan.tar_members``). Returns its kind. Errors: StagingError."""
    archive = plan.archive
    name = check_name(member.name, field_=field_, archive=archive)
    if member.ischr() or member.isblk() or member.isfifo():
        raise refuse(field_, archive, member.name, "is a device or FIFO node")
    if member.issym():
        _check_link_target(name, member.linkname, hard=False, field_=field_, archive=archive)
        kind = "symlink"
    elif member.islnk():
        target = _check_link_target(name, member.linkname, hard=True, field_=field_, archive=archive)
        if plan.names.get(target) != "file":
            raise refuse(
                field_, archive, member.name, f"is a hard link to {member.linkname!r}, which is not an earlier regular file"
            )
        kind = "hardlink"
    elif member.isdir():
        kind = "dir"
    elif member.isfile():
        kind = "file"
    else:
        raise refuse(field_, archive, member.name, "is not a regular file, folder or link")
    _add(plan, name, kind, member.size if kind == "file" else 0, member=member.name, field_=field_, limits=limits)
    plan.tar_members.append(member)
    return kind


def plan_tar(tf: tarfile.TarFile, archive: Path, *, field_: str, limits: ArchiveLimits) -> Plan:
    """Read the member list of an open tar (stops at the first refusal; writes nothing)."""
    plan = Plan(archive=archive, archive_bytes=archive.stat().st_size)
    for member in tf:  # lazy: a limit is hit before the rest of the stream is decompressed
        check_tar_member(plan, member, field_=field_, limits=limits)
    return plan


def plan_zip(zf: zipfile.ZipFile, archive: Path, *, field_: str, limits: ArchiveLimits) -> Plan:
    """Check every zip member before anything is written."""
    plan = Plan(archive=archive, archive_bytes=archive.stat().st_size)
    for info in zf.infolist():
        name = check_name(info.filename, field_=field_, archive=archive)
        mode = (info.external_attr >> 16) & 0xFFFF
        if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise refuse(field_, archive, info.filename, "is a device, FIFO or socket node")
        if info.flag_bits & 0x1:
            raise refuse(
                field_,
                archive,
                info.filename,
                "is encrypted",
                fix="Re-create the archive without a password, or extract it yourself and pass the folder.",
            )
        if mode and stat.S_ISLNK(mode):
            if info.file_size > 4096:
                raise refuse(field_, archive, info.filename, "is a symbolic link with an oversized target")
            target = zf.read(info).decode("utf-8", "replace")
            _check_link_target(name, target, hard=False, field_=field_, archive=archive)
            kind, size = "symlink", 0
        elif info.is_dir():
            kind, size = "dir", 0
        else:
            kind, size = "file", info.file_size
        _add(plan, name, kind, size, member=info.filename, field_=field_, limits=limits)
        plan.zip_members.append((info, name, kind))
    return plan


def check_free_space(plan: Plan, dest_dir: Path, *, field_: str, limits: ArchiveLimits) -> None:
    """StagingError when ``dest_dir``'s disk lacks the expansion plus ``reserve_bytes``."""
    free = shutil.disk_usage(dest_dir).free
    needed = plan.expanded_bytes + limits.reserve_bytes
    if free < needed:
        raise StagingError(
            f"{field_}: not enough free disk space to extract {plan.archive.name}: it needs about "
            f"{_size(plan.expanded_bytes)} plus a {_size(limits.reserve_bytes)} reserve, and {dest_dir} has "
            f"{_size(free)} free. Nothing was extracted.",
            field=field_,
            fix="Free disk space, or point TAO_SKILLS_HOME (the staging cache) at a larger disk, or extract the "
            f"archive yourself and pass the folder; {LIMIT_ENV['reserve_bytes']} sets the reserve.",
            details={"archive": str(plan.archive), "needed": needed, "free": free, "dest": str(dest_dir)},
        )


def _data_only(field_: str, archive: Path):
    def data_only(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as exc:  # defence in depth: the stdlib filter disagrees
            raise refuse(field_, archive, member.name, f"was rejected by tarfile's data filter ({exc})") from exc

    return data_only


def extract_tar(tf: tarfile.TarFile, plan: Plan, dest: Path, *, field_: str) -> None:
    """Write the planned tar members into ``dest`` through the ``data`` filter."""
    tf.extractall(dest, members=plan.tar_members, filter=_data_only(field_, plan.archive))


class DiskBudget:
    """Free space of ``dest``'s disk while members stream in: :meth:`charge` refuses a member
    that would leave less than ``limits.reserve_bytes`` free. The disk is re-read
    (``statvfs``) after every ``recheck_bytes`` written or when the last reading is too close,
    so the check costs a syscall per ~64 MiB, not per member; other writers (the download
    itself) are seen at the next reading."""

    def __init__(self, dest: Path, plan: Plan, *, field_: str, limits: ArchiveLimits, recheck_bytes: int = 64 * MiB):
        self.dest, self.plan, self.field_, self.limits, self.recheck = dest, plan, field_, limits, recheck_bytes
        self.free = shutil.disk_usage(dest).free
        self.since = 0

    def charge(self, nbytes: int) -> None:
        """Account ``nbytes`` about to be written. Errors: StagingError (disk too full)."""
        if self.since + nbytes > self.recheck or self.free - self.since - nbytes < self.limits.reserve_bytes:
            self.free, self.since = shutil.disk_usage(self.dest).free, 0
        if self.free - self.since - nbytes < self.limits.reserve_bytes:
            raise StagingError(
                f"{self.field_}: not enough free disk space to extract {self.plan.archive.name}: "
                f"{_size(self.plan.expanded_bytes)} written so far, the next member needs {_size(nbytes)} and "
                f"{self.dest} has {_size(self.free - self.since)} free, of which {_size(self.limits.reserve_bytes)} "
                "must stay free. Nothing was kept.",
                field=self.field_,
                fix="Free disk space, or point TAO_SKILLS_HOME (the staging cache) at a larger disk; "
                f"{LIMIT_ENV['reserve_bytes']} sets the reserve.",
                details={"archive": str(self.plan.archive), "free": self.free - self.since, "dest": str(self.dest)},
            )
        self.since += nbytes


def extract_tar_stream(
    tf: tarfile.TarFile, archive: Path, archive_bytes: int, dest: Path, *, field_: str, limits: ArchiveLimits
) -> Plan:
    """Check and write the members of a tar opened in streaming mode (``r|*``) one at a time,
    in archive order: each member passes :func:`check_tar_member` (names, links, devices,
    duplicates, size / ratio / member limits, with ``archive_bytes`` the compressed size) and
    :class:`DiskBudget` before the ``data`` filter writes it. A refusal stops at that member;
    what was written is inside ``dest``, which the caller removes. Links are verified after
    the last member (:func:`verify_links`). Returns the plan of what was written."""
    plan = Plan(archive=archive, archive_bytes=archive_bytes)
    budget = DiskBudget(dest, plan, field_=field_, limits=limits)
    data_only = _data_only(field_, archive)
    for member in tf:
        kind = check_tar_member(plan, member, field_=field_, limits=limits)
        budget.charge(_blocks(member.size if kind == "file" else 0))
        tf.extract(member, dest, filter=data_only)
        plan.tar_members.clear()  # streamed: nothing to keep per member
    verify_links(dest, field_=field_, archive=archive)
    return plan


def extract_zip(zf: zipfile.ZipFile, plan: Plan, dest: Path, *, field_: str) -> None:
    """Write the planned zip members into ``dest`` (plain files, mode 0o644; links checked)."""
    archive = plan.archive
    root = dest.resolve()
    for info, name, kind in plan.zip_members:
        if not name:
            continue
        out = dest / name
        target_dir = out if kind == "dir" else out.parent
        target_dir.mkdir(parents=True, exist_ok=True)
        real = target_dir.resolve()
        if real != root and root not in real.parents:
            raise refuse(field_, archive, info.filename, "would be written through a link outside the destination")
        if kind == "dir":
            continue
        if os.path.lexists(out):
            raise refuse(field_, archive, info.filename, "would overwrite an earlier member")
        if kind == "symlink":
            os.symlink(zf.read(info).decode("utf-8"), out)
            continue
        written = 0
        with zf.open(info) as src, open(out, "xb") as dst:
            while chunk := src.read(MiB):
                written += len(chunk)
                if written > info.file_size:
                    raise refuse(
                        field_,
                        archive,
                        info.filename,
                        f"decompresses to more than the {info.file_size} bytes its header declares (a zip bomb)",
                    )
                dst.write(chunk)
        os.chmod(out, 0o644)


def verify_links(root: Path, *, field_: str, archive: Path) -> None:
    """After extraction: every symlink must resolve inside ``root`` (catches link chains)."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            p = Path(dirpath) / entry
            if p.is_symlink():
                real = Path(os.path.realpath(p))
                if real != real_root and real_root not in real.parents:
                    rel = p.relative_to(root).as_posix()
                    raise refuse(
                        field_, archive, rel, f"is a symbolic link resolving outside the destination ({os.readlink(p)!r})"
                    )


def _looks_like_zip(archive: Path) -> bool:
    """Zip by content (local-file or empty-archive signature), whatever the name says; a name
    ending in ``.zip`` that holds something else is read as zip and reported corrupt."""
    with archive.open("rb") as fh:
        head = fh.read(4)
    return head in (b"PK\x03\x04", b"PK\x05\x06") or tao.archive_suffix(archive) == ".zip"


def extract(archive: Path, dest: Path, *, field_: str, limits: ArchiveLimits) -> Plan:
    """Plan, check free space on ``dest``'s disk, then extract ``archive`` into the empty ``dest``.

    The format is read from the content (zip signature, else tar with any compression
    ``tarfile`` detects), so ``images.tar.gz`` that is really a zip still extracts.

    ``dest`` must exist (a fresh temporary folder: the caller removes it on any error).
    Raises StagingError (refusals above) and lets tarfile/zipfile/OSError errors through
    for the caller to name.
    """
    if _looks_like_zip(archive):
        with zipfile.ZipFile(archive) as zf:
            plan = plan_zip(zf, archive, field_=field_, limits=limits)
            check_free_space(plan, dest, field_=field_, limits=limits)
            extract_zip(zf, plan, dest, field_=field_)
    else:
        with tarfile.open(archive, "r:*") as tf:
            plan = plan_tar(tf, archive, field_=field_, limits=limits)
            check_free_space(plan, dest, field_=field_, limits=limits)
            extract_tar(tf, plan, dest, field_=field_)
    verify_links(dest, field_=field_, archive=archive)
    return plan
