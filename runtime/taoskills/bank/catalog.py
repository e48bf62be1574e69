"""The skill catalog: loads and validates every skill folder of the bank.

A skill folder (DESIGN.md "A skill folder") holds ``SKILL.md`` (Agent Skills frontmatter +
body), ``references/skill_info.yaml`` (the machine contract, :class:`SkillInfo`),
``references/spec_template_<action>.yaml`` and ``schemas/<action>.schema.json`` plus
``schemas/manifest.json`` (generated from TAO Core). Everything below the catalog reads
skills through this module; nothing parses Markdown to decide what to run.

Loading is strict: a malformed folder raises :class:`SkillError` naming the file and the
field. ``Catalog.load()`` is cached per (path, strict) so it is cheap to call anywhere.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from taoskills import paths
from taoskills.bank.skill_info import ActionInfo, SkillInfo
from taoskills.errors import Issue, NotFound, SkillError

# Agent Skills specification (agentskills docs/specification.mdx; skills-ref validator.py).
FRONTMATTER_KEYS = frozenset({"name", "description", "license", "compatibility", "metadata", "allowed-tools"})
MAX_DESCRIPTION = 1024
MAX_COMPATIBILITY = 500
BODY_MAX_LINES = 500
_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SKILL_PREFIXES = ("tao-train-", "tao-run-", "tao-")

SKILL_MD = "SKILL.md"
SKILL_INFO = "references/skill_info.yaml"
MANIFEST = "schemas/manifest.json"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _norm(name: str) -> str:
    """Lower-case, ``_``/space -> ``-``: ``"Grounding_DINO"`` -> ``"grounding-dino"``."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def parse_skill_md(path: Path) -> tuple[dict[str, Any], str]:
    """Split ``SKILL.md`` into (frontmatter dict, body text) and check the frontmatter.

    Rules (Agent Skills spec): the file starts with a ``---`` YAML block; top-level keys only
    ``name, description, license, compatibility, metadata, allowed-tools``; ``name`` 1-64 of
    ``a-z0-9-`` without leading/trailing/double hyphens; ``description`` 1-1024 characters with
    no ``<`` or ``>``; ``compatibility`` <= 500 characters; ``metadata`` maps strings to
    strings. Raises SkillError (field = the frontmatter key) on any violation.
    """
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise SkillError(
            f"{path}: SKILL.md must start with a '---' YAML frontmatter block",
            field=f"{path}:frontmatter",
            fix="add '---' frontmatter with name and description",
        )
    parts = text.split("---", 2)
    if len(parts) < 3:
        raise SkillError(
            f"{path}: frontmatter is not closed with '---'",
            field=f"{path}:frontmatter",
            fix="close the frontmatter block with a line '---'",
        )
    try:
        front = yaml.safe_load(parts[1])
    except yaml.YAMLError as exc:
        raise SkillError(
            f"{path}: frontmatter is not valid YAML: {exc}",
            field=f"{path}:frontmatter",
            fix="fix the YAML syntax of the frontmatter",
        ) from None
    if not isinstance(front, dict):
        raise SkillError(
            f"{path}: frontmatter must be a YAML mapping",
            field=f"{path}:frontmatter",
            fix="write 'key: value' lines between the '---' markers",
        )
    issues: list[Issue] = []
    extra = sorted(set(front) - FRONTMATTER_KEYS)
    if extra:
        issues.append(
            Issue(
                "frontmatter." + extra[0],
                f"unexpected top-level keys {extra}",
                f"only {sorted(FRONTMATTER_KEYS)} are allowed; move extras under metadata",
            )
        )
    name = front.get("name")
    if not isinstance(name, str) or not name or len(name) > 64 or not _NAME_RE.match(name):
        issues.append(
            Issue(
                "frontmatter.name",
                f"name {name!r} is not 1-64 of a-z, 0-9 and single hyphens",
                "use the folder name, e.g. tao-train-dino",
            )
        )
    desc = front.get("description")
    if not isinstance(desc, str) or not desc.strip():
        issues.append(
            Issue(
                "frontmatter.description",
                "description is missing or empty",
                "say what the skill does and when to use it (trigger phrases)",
            )
        )
    else:
        if len(desc) > MAX_DESCRIPTION:
            issues.append(
                Issue(
                    "frontmatter.description",
                    f"description has {len(desc)} characters (max {MAX_DESCRIPTION})",
                    "shorten it; move detail into the body",
                )
            )
        if "<" in desc or ">" in desc:
            issues.append(Issue("frontmatter.description", "description contains '<' or '>'", "remove angle brackets"))
    compat = front.get("compatibility")
    if compat is not None and (not isinstance(compat, str) or len(compat) > MAX_COMPATIBILITY):
        issues.append(
            Issue(
                "frontmatter.compatibility",
                f"compatibility must be a string of at most {MAX_COMPATIBILITY} characters",
                "shorten it",
            )
        )
    meta = front.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            issues.append(Issue("frontmatter.metadata", "metadata must be a mapping", 'write metadata as key: "value" lines'))
        else:
            for key, value in meta.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    issues.append(
                        Issue(
                            f"frontmatter.metadata.{key}",
                            f"metadata value {value!r} is not a string",
                            'quote it, e.g. automl_enabled: "true"',
                        )
                    )
    tools = front.get("allowed-tools")
    if tools is not None and not isinstance(tools, str):
        issues.append(
            Issue(
                "frontmatter.allowed-tools",
                "allowed-tools must be a space-separated string",
                "write e.g. allowed-tools: Read Bash",
            )
        )
    if issues:
        raise SkillError(
            f"{path}: invalid SKILL.md frontmatter ({len(issues)} problem(s)): {issues[0]}",
            field=f"{path}:{issues[0].field}",
            fix=issues[0].fix,
            issues=issues,
        )
    return front, parts[2].lstrip("\n")


def load_skill_info(path: Path) -> SkillInfo:
    """Parse and validate ``references/skill_info.yaml`` into :class:`SkillInfo`.

    Raises SkillError whose ``field`` is ``<file>:<dotted location>`` of the first problem
    (e.g. ``.../skill_info.yaml:actions.train.commnd``) and whose ``issues`` list them all.
    """
    if not path.is_file():
        raise SkillError(
            f"{path}: missing skill_info.yaml",
            field=str(path),
            fix="add references/skill_info.yaml (the machine contract) to the skill folder",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SkillError(f"{path}: not valid YAML: {exc}", field=str(path), fix="fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise SkillError(f"{path}: must be a YAML mapping", field=str(path), fix="write the SkillInfo fields as a mapping")
    try:
        return SkillInfo.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            issues.append(
                Issue(
                    loc,
                    err["msg"],
                    "see taoskills/skill_info.py for the allowed fields and types",
                    code=str(err.get("type", "invalid")),
                )
            )
        first = issues[0]
        raise SkillError(
            f"{path}: invalid skill_info at {first.field}: {first.reason}",
            field=f"{path}:{first.field}",
            fix=first.fix,
            issues=issues,
        ) from None


@dataclass(eq=False)
class Skill:
    """One validated skill folder.

    ``name`` (= folder = frontmatter name = skill_info name), ``dir`` (absolute folder),
    ``info`` (SkillInfo), ``frontmatter`` (dict), ``body`` (SKILL.md text after frontmatter).
    Schemas, templates and the manifest load lazily on first use and are cached.
    """

    name: str
    dir: Path
    info: SkillInfo
    frontmatter: dict[str, Any]
    body: str
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- identity -------------------------------------------------------------------------
    @property
    def network_arch(self) -> str | None:
        return self.info.network_arch

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def description(self) -> str:
        return str(self.frontmatter.get("description", ""))

    @property
    def actions(self) -> list[str]:
        """Action names in skill_info order (e.g. train, evaluate, ..., deploy_inference)."""
        return list(self.info.actions)

    def action(self, name: str) -> ActionInfo:
        """ActionInfo of ``name``; NotFound listing this skill's actions otherwise."""
        try:
            return self.info.actions[name]
        except KeyError:
            pass
        known = list(self.info.actions)
        near = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise NotFound(
            f"skill {self.name} has no action {name!r}.{hint} Actions: {', '.join(known) or '(none)'}",
            field="action",
            fix=f"use one of: {', '.join(known) or '(none: an application skill)'}",
            details={"skill": self.name, "actions": known},
        )

    # -- files ----------------------------------------------------------------------------
    def path(self, relative: str) -> Path:
        """Absolute path of a file inside the skill folder (no escaping the folder)."""
        target = (self.dir / relative).resolve()
        if target != self.dir and self.dir not in target.parents:
            raise NotFound(f"{relative!r} is outside skill {self.name}", field="path", fix="use a path inside the skill folder")
        return target

    def files(self) -> list[str]:
        """Every file of the skill as a sorted relative posix path (e.g. ``references/skill_info.yaml``).

        Hidden files and ``__pycache__`` are skipped. Used for MCP ``skill://`` resources.
        """
        out = []
        for p in self.dir.rglob("*"):
            rel = p.relative_to(self.dir)
            if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                out.append(rel.as_posix())
        return sorted(out)

    def required_files(self) -> list[str]:
        """Files the skill_info promises: per action its template and schema, plus the manifest."""
        req: list[str] = []
        if self.info.actions:
            req.append(MANIFEST)
        for act in self.info.actions.values():
            req.append(f"references/{act.spec_template}")
            req.append(f"schemas/{act.schema_file}")
        return req

    def check_files(self) -> None:
        """Raise SkillError listing every promised file that is missing (see required_files)."""
        missing = [rel for rel in self.required_files() if not (self.dir / rel).is_file()]
        if missing:
            raise SkillError(
                f"skill {self.name}: {len(missing)} file(s) named by skill_info.yaml are missing: {', '.join(missing)}",
                field=f"{self.dir / SKILL_INFO}:actions",
                fix="regenerate schemas and templates from TAO Core (scripts/generate_schemas.py) "
                "or fix spec_template/schema_file in skill_info.yaml",
                issues=[
                    Issue(rel, "file missing", "generate it or fix its name in skill_info.yaml", code="missing_file")
                    for rel in missing
                ],
                details={"skill": self.name, "missing": missing},
            )

    def automl_ready(self) -> tuple[bool, str]:
        """Whether AutoML can run for this skill's train action, and why not.

        Rule (the skills' Train Action Policy): ``automl_enabled`` and both
        ``schemas/train.schema.json`` and ``references/spec_template_train.yaml`` exist and parse.
        """
        if self.info.kind != "model":
            return False, f"{self.name} is an application skill"
        if not self.info.automl_enabled:
            return False, f"{self.name} is not AutoML-enabled (skill_info automl_enabled: false)"
        if "train" not in self.info.actions:
            return False, f"{self.name} has no train action"
        try:
            self.schema("train")
            self.template("train")
        except (SkillError, NotFound) as exc:
            return False, f"AutoML is enabled for {self.name} but not runnable until schemas are generated: {exc.message}"
        return True, "ok"

    # -- lazily loaded generated data -------------------------------------------------------
    def _cached(self, key: tuple[str, str], loader) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = loader()
            return self._cache[key]

    def _read_generated(self, rel: str) -> Any:
        """A generated file of the skill: ``.json`` schemas (``Infinity`` allowed, as json reads it)
        or ``.yaml`` templates. Missing -> NotFound, unparsable -> SkillError; both say to regenerate."""
        p = self.dir / rel
        if not p.is_file():
            raise NotFound(
                f"skill {self.name}: {rel} does not exist",
                field=str(p),
                fix="regenerate schemas and spec templates from TAO Core (scripts/generate_schemas.py)",
            )
        text = p.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SkillError(
                f"skill {self.name}: {rel} cannot be parsed: {exc}",
                field=str(p),
                fix="regenerate the file (scripts/generate_schemas.py)",
            ) from None
        return {} if data is None else data

    @property
    def manifest(self) -> dict[str, Any]:
        """``schemas/manifest.json`` (actions -> schema path, template, AutoML parameters). NotFound if absent."""
        return self._cached(("manifest", ""), lambda: self._read_generated(MANIFEST))

    def schema(self, action: str) -> dict[str, Any]:
        """TAO-dialect JSON schema of ``action`` (``schemas/<schema_file>``), cached."""
        act = self.action(action)
        return self._cached(("schema", action), lambda: self._read_generated(f"schemas/{act.schema_file}"))

    def template(self, action: str) -> dict[str, Any]:
        """Spec template of ``action`` (``references/<spec_template>``) as a nested dict, cached.

        Callers must deep-copy before mutating (the cached object is shared).
        """
        act = self.action(action)

        def load() -> dict[str, Any]:
            data = self._read_generated(f"references/{act.spec_template}")
            if not isinstance(data, dict):
                raise SkillError(
                    f"skill {self.name}: references/{act.spec_template} is not a mapping",
                    field=str(self.dir / "references" / act.spec_template),
                    fix="regenerate the template",
                )
            return data

        return self._cached(("template", action), load)

    def read_text(self, relative: str) -> str:
        """Text of a file inside the skill (for MCP resources); NotFound if absent."""
        p = self.path(relative)
        if not p.is_file():
            raise NotFound(
                f"skill {self.name} has no file {relative!r}", field="path", fix=f"use one of: {', '.join(self.files())}"
            )
        return p.read_text(encoding="utf-8")


def load_skill(folder: Path) -> Skill:
    """Load and validate one skill folder (frontmatter, skill_info, name agreement).

    Checks: SKILL.md frontmatter (parse_skill_md); skill_info.yaml validates (load_skill_info);
    frontmatter ``name`` == folder name == skill_info ``name``. Raises SkillError.
    """
    folder = folder.resolve()
    md = folder / SKILL_MD
    if not md.is_file():
        raise SkillError(f"{folder}: missing {SKILL_MD}", field=str(md), fix="add SKILL.md with Agent Skills frontmatter")
    front, body = parse_skill_md(md)
    info = load_skill_info(folder / SKILL_INFO)
    names = {"folder": folder.name, "SKILL.md name": front["name"], "skill_info name": info.name}
    if len(set(names.values())) != 1:
        detail = ", ".join(f"{k} {v!r}" for k, v in names.items())
        bad = f"{md}:name" if front["name"] != folder.name else f"{folder / SKILL_INFO}:name"
        raise SkillError(
            f"{folder}: skill names disagree ({detail})",
            field=bad,
            fix="make the folder name, SKILL.md 'name' and skill_info.yaml 'name' identical",
        )
    return Skill(name=folder.name, dir=folder, info=info, frontmatter=front, body=body)


class Catalog:
    """All skills of a bank folder, by name. Build with :meth:`Catalog.load`."""

    _cache: dict[tuple[str, bool], Catalog] = {}
    _cache_lock = threading.Lock()

    def __init__(self, root: Path, skills: dict[str, Skill]):
        self.root = root
        self.skills: dict[str, Skill] = dict(sorted(skills.items()))
        self._aliases: dict[str, str] = {}
        for name, skill in self.skills.items():
            keys = {_norm(name)}
            for prefix in _SKILL_PREFIXES:
                if name.startswith(prefix):
                    keys.add(_norm(name[len(prefix) :]))
                    break
            if skill.network_arch:
                keys.add(_norm(skill.network_arch))
            for key in keys:
                self._aliases.setdefault(key, name)
        # Single-word routing triggers ("GDINO", "GroundingDINO", "MAE") are weaker aliases:
        # used only when exactly one skill claims the word.
        claims: dict[str, set[str]] = {}
        for name, skill in self.skills.items():
            for trig in skill.info.routing.triggers:
                if " " not in trig.strip():
                    claims.setdefault(_norm(trig), set()).add(name)
        for key, owners in claims.items():
            if len(owners) == 1 and key not in self._aliases:
                self._aliases[key] = next(iter(owners))

    @classmethod
    def load(cls, path: str | Path | None = None, *, strict: bool = True, reload: bool = False) -> Catalog:
        """Load every skill folder (a folder holding SKILL.md) under ``path`` (default paths.skills_dir()).

        ``strict`` also runs ``Skill.check_files()`` (templates, schemas, manifest must exist).
        Cached per (resolved path, strict); ``reload=True`` re-reads the folder. Raises
        SkillError for the first malformed skill (its ``details['errors']`` lists all of them).
        """
        root = Path(path).expanduser().resolve() if path is not None else paths.skills_dir().resolve()
        key = (str(root), strict)
        with cls._cache_lock:
            if not reload and key in cls._cache:
                return cls._cache[key]
        if not root.is_dir():
            raise NotFound(
                f"skill bank folder {root} does not exist",
                field="skills_dir",
                fix="set TAO_SKILLS_DIR to the bank's skills/ folder",
            )
        skills: dict[str, Skill] = {}
        errors: list[SkillError] = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / SKILL_MD).is_file()):
            try:
                skill = load_skill(folder)
                if strict:
                    skill.check_files()
                skills[skill.name] = skill
            except SkillError as exc:
                errors.append(exc)
        if errors:
            first = errors[0]
            raise SkillError(
                first.message if len(errors) == 1 else f"{len(errors)} skills are invalid; first: {first.message}",
                field=first.field,
                fix=first.fix,
                issues=first.issues,
                details={"errors": [e.as_dict() for e in errors]},
            )
        catalog = cls(root, skills)
        with cls._cache_lock:
            cls._cache[key] = catalog
        return catalog

    @classmethod
    def clear_cache(cls) -> None:
        """Forget every loaded catalog (tests, or after the bank changed on disk)."""
        with cls._cache_lock:
            cls._cache.clear()

    # -- lookup -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Skill]:
        return iter(self.skills.values())

    def __len__(self) -> int:
        return len(self.skills)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._resolve(name) is not None

    def names(self) -> list[str]:
        return list(self.skills)

    def models(self) -> list[Skill]:
        """Model skills (kind model), sorted by name."""
        return [s for s in self.skills.values() if s.kind == "model"]

    def _resolve(self, name: str) -> str | None:
        if name in self.skills:
            return name
        return self._aliases.get(_norm(name))

    def get(self, name: str) -> Skill:
        """Skill by name, network_arch or short name (``dino``, ``nvdinov2``, ``mae``,
        ``grounding_dino``, ``grounding-dino``, ``mask-auto-encoder``, ``automl``), case-insensitive.

        NotFound with a did-you-mean suggestion (difflib) and the list of skills otherwise.
        """
        resolved = self._resolve(name) if isinstance(name, str) else None
        if resolved is not None:
            return self.skills[resolved]
        candidates = sorted(set(self._aliases) | set(self.skills))
        near = difflib.get_close_matches(_norm(str(name)), candidates, n=1, cutoff=0.5)
        hint = f" Did you mean {self._aliases.get(near[0], near[0])!r}?" if near else ""
        raise NotFound(
            f"no skill named {name!r}.{hint} Skills: {', '.join(self.skills)}",
            field="skill",
            fix=f"use one of: {', '.join(self.skills)}",
            details={"skills": list(self.skills), "suggestion": self._aliases.get(near[0]) if near else None},
        )

    def by_network(self, arch: str) -> Skill:
        """The model skill whose ``network_arch`` is ``arch`` (``dino``, ``grounding_dino``, ``nvdinov2``, ``mae``)."""
        for skill in self.skills.values():
            if skill.network_arch == arch:
                return skill
        archs = sorted(s.network_arch for s in self.skills.values() if s.network_arch)
        near = difflib.get_close_matches(str(arch), archs, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise NotFound(
            f"no skill for network_arch {arch!r}.{hint} Networks: {', '.join(archs)}",
            field="network_arch",
            fix=f"use one of: {', '.join(archs)}",
        )

    def automl_skill(self) -> Skill | None:
        """The application skill carrying the AutoML contract (tao-run-automl), if present."""
        for skill in self.skills.values():
            if skill.kind == "application" and skill.info.automl is not None:
                return skill
        return None
