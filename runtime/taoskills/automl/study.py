"""An AutoML run's configuration, its Optuna study storage and its run folder.

Run folder (the AutoML job's ``results_dir``)::

    automl.json        RunConfig (what to search, how, with which budget)
    study.db           Optuna study (SQLite; absent when ``storage`` is another URL)
    trials/<n>.json    each trial: state, sampled values, segment jobs (job ids), value
    best_rec.json      best recommendation: spec (budget moved out), metric, checkpoint, budget
    report.md / .json  summary: algorithm, budget, every trial, best
    plots/             optimization history, parameter importances, intermediate values
    train/status.json  the controller's TAO status lines (progress, best so far)
    train/<ckpt>       links to best_rec's checkpoint files (resolve_checkpoint on the run)

Storage URLs: any SQLAlchemy URL (``sqlite:////abs/study.db`` default, ``postgresql://...``
for workers on several machines) or ``journal:///abs/path.log`` for Optuna's journal file
storage (safe on NFS: its lock is an ``O_CREAT|O_EXCL`` open, not ``fcntl``).
SQLite connections wait up to 60 s for a lock (Optuna 5.0 on SQLite, several processes:
tested with 4 x 100 trials without "database is locked").
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from taoskills.automl.metric import Objective

CONFIG_FILE = "automl.json"
BEST_REC_FILE = "best_rec.json"
BEST_REC_SCHEMA_VERSION = 1
#: Spec keys that hold the epoch budget (moved into best_rec ``observed_budget``).
BUDGET_KEYS = ("train.num_epochs", "train.max_epochs", "num_epochs", "epochs")


class RunConfig(BaseModel):
    """Everything the controller needs (written to ``automl.json`` before launch)."""

    run_id: str
    skill: str
    network_arch: str
    algorithm: str
    max_trials: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    min_epochs: int = 1
    reduction_factor: int = 3
    parallel: int = Field(default=1, ge=1)
    seed: int | None = None
    n_startup_trials: int = 4
    objectives: list[Objective]
    storage: str
    study_name: str
    request: dict[str, Any] = Field(default_factory=dict)  # SpecRequest of every trial (before sampled values)
    base_spec: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Any]
    engine: str = "builtin"
    platform: str = "local"
    keep_checkpoints: bool = False
    home: str
    skills_dir: str
    automl_job_id: str | None = None
    checkpoint_action: str = "inference"  # whose checkpoint rule picks best_rec's checkpoint
    poll_s: float = 2.0
    max_retries: int = 1
    heartbeat_s: float = 15.0
    stale_after_s: float = 120.0
    baseline: bool = True  # trial 0 trains the base spec's values (taoskills.automl.baseline)


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    write_json(Path(run_dir) / CONFIG_FILE, cfg.model_dump())


def load_config(run_dir: str | Path) -> RunConfig:
    """The run's RunConfig. NotFound when ``run_dir`` is not an AutoML run folder."""
    from taoskills.errors import NotFound

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise NotFound(
            f"{run_dir} is not an AutoML run folder (no {CONFIG_FILE})", field="run_dir", fix="pass the AutoML job's results_dir"
        )
    return RunConfig.model_validate(read_json(path))


def default_storage(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"


def open_storage(url: str) -> Any:
    """Optuna storage for ``url`` (``journal://<path>`` or a SQLAlchemy URL)."""
    import optuna

    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        path = url[len("journal://") :]
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if not url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    _serialize_sqlite(storage.engine)
    return storage


def _serialize_sqlite(engine: Any) -> None:
    """Make every transaction on ``engine`` (SQLAlchemy, SQLite) start with ``BEGIN IMMEDIATE``.

    Python's sqlite3 driver opens a transaction only at the first write, so Optuna's
    read-check-write steps are not atomic across processes: two workers can both move one
    WAITING trial (a queued promotion) to RUNNING and run it twice (seen with two worker
    processes, tests/integration/test_automl_controller.py). With the driver's own transaction
    handling off and ``BEGIN IMMEDIATE`` at each begin, SQLite serializes them (SQLAlchemy's
    documented recipe, "Serializable isolation / Savepoints / Transactional DDL" in its
    SQLite dialect notes). Connections pooled before the hooks are dropped."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def open_study(cfg: RunConfig, *, create: bool = False) -> Any:
    """The run's study with its sampler and pruner (created when ``create``)."""
    import optuna

    from taoskills.automl import baseline
    from taoskills.automl.algorithms import make_study_objects

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = cfg.baseline and len(cfg.objectives) == 1
    sampler, pruner = make_study_objects(
        cfg.algorithm,
        seed=cfg.seed,
        n_startup=baseline.startup_trials(cfg.n_startup_trials, first),
        min_epochs=cfg.min_epochs,
        max_epochs=cfg.max_epochs,
        eta=cfg.reduction_factor,
        n_objectives=len(cfg.objectives),
        baseline=first,
    )
    storage = open_storage(cfg.storage)
    directions = [o.direction for o in cfg.objectives]
    if create:
        return optuna.create_study(
            storage=storage, study_name=cfg.study_name, sampler=sampler, pruner=pruner, directions=directions, load_if_exists=True
        )
    return optuna.load_study(storage=storage, study_name=cfg.study_name, sampler=sampler, pruner=pruner)


def strip_budget(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec without epoch-budget keys and resume path, observed_budget) — so a rung's epoch
    count never overrides a downstream spec (the skill bank's best_rec adapter rule)."""
    import copy

    from taoskills.specs.dotted import delete_dotted, get_dotted

    out = copy.deepcopy(spec)
    budget = {}
    for key in BUDGET_KEYS:
        v = get_dotted(out, key, default=None)
        if v is not None:
            budget[key] = v
            delete_dotted(out, key)
    delete_dotted(out, "train.resume_training_checkpoint_path")
    return out, budget
