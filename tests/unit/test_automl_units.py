"""AutoML building blocks: the algorithm registry (TAO names -> Optuna), rungs, the metric
contract per network (explicit, never guessed from a name), settings validation, storage
URLs (SQLite, journal file) shared by two processes, best_rec budget stripping."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

optuna = pytest.importorskip("optuna")

from taoskills.automl.algorithms import ALGORITHMS, get_algorithm, make_study_objects, rungs  # noqa: E402
from taoskills.automl.metric import objectives_for  # noqa: E402
from taoskills.automl.service_hook import parse_settings  # noqa: E402
from taoskills.automl.study import open_storage, strip_budget  # noqa: E402
from taoskills.bank.catalog import Catalog  # noqa: E402
from taoskills.errors import NotSupported, SpecError  # noqa: E402


@pytest.mark.torch  # Optuna's GPSampler (bayesian) needs torch; without it the registry falls back to TPE
def test_registry_maps_tao_names_to_optuna_configurations():
    S, Pr = optuna.samplers, optuna.pruners
    expect = {
        "bayesian": (S.GPSampler, Pr.NopPruner),
        "b": (S.GPSampler, Pr.NopPruner),
        "tpe": (S.TPESampler, Pr.NopPruner),
        "random": (S.RandomSampler, Pr.NopPruner),
        "cmaes": (S.CmaEsSampler, Pr.NopPruner),
        "hyperband": (S.RandomSampler, Pr.HyperbandPruner),
        "h": (S.RandomSampler, Pr.HyperbandPruner),
        "asha": (S.RandomSampler, Pr.SuccessiveHalvingPruner),
        "bohb": (S.TPESampler, Pr.HyperbandPruner),
        "tpe_asha": (S.TPESampler, Pr.SuccessiveHalvingPruner),
    }
    for name, (sampler_cls, pruner_cls) in expect.items():
        sampler, pruner = make_study_objects(name, seed=0, n_startup=2, min_epochs=1, max_epochs=9, eta=3, n_objectives=1)
        assert isinstance(sampler, sampler_cls) and isinstance(pruner, pruner_cls), name
    sampler, _ = make_study_objects("nsga2", seed=0, n_startup=2, min_epochs=1, max_epochs=9, eta=3, n_objectives=2)
    assert isinstance(sampler, S.NSGAIISampler)
    with pytest.raises(SpecError, match="nsga2"):
        make_study_objects("tpe", seed=0, n_startup=2, min_epochs=1, max_epochs=9, eta=3, n_objectives=2)
    assert {"bayesian", "hyperband", "bohb", "asha", "random", "tpe", "gp", "cmaes", "nsga2"} <= set(ALGORITHMS)


def _goes_on_at_rung_1(values: list[float], baseline: float | None) -> list[bool]:
    """tpe_asha's decisions for trials that report ``values`` at rung 1, after the baseline
    trial (when given) reported there and was kept on, as Runner.run_trial does."""
    _, pruner = make_study_objects(
        "tpe_asha", seed=0, n_startup=2, min_epochs=1, max_epochs=9, eta=3, n_objectives=1, baseline=baseline is not None
    )
    study = optuna.create_study(pruner=pruner)
    out = []
    for value in ([baseline] if baseline is not None else []) + values:
        trial = study.ask()
        trial.report(value, 1)
        out.append(not trial.should_prune())
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return out[1:] if baseline is not None else out


def test_tpe_asha_judges_each_rung_against_the_baseline():
    # the first eta-1 searched trials stop at a rung (bootstrap); the next goes on when in the top
    # 1/eta of the trials there, the baseline (value 0.5) counted
    assert _goes_on_at_rung_1([0.1, 0.05], baseline=0.5) == [False, False]
    assert _goes_on_at_rung_1([0.9, 0.8, 0.6], baseline=None) == [False, False, True]
    assert _goes_on_at_rung_1([0.9, 0.8, 0.6], baseline=0.5) == [False, False, False]
    assert _goes_on_at_rung_1([0.9, 0.8, 0.3], baseline=0.5) == [False, False, True]


def test_tao_names_not_offered_and_unknown_names_say_what_to_use():
    for name, hint in (("pbt", "asha"), ("dehb", "bohb"), ("bfbo", "gp"), ("llm", "ask/tell")):
        with pytest.raises(NotSupported) as exc:
            get_algorithm(name)
        assert exc.value.field == "algorithm" and hint in exc.value.fix
    with pytest.raises(SpecError) as exc:
        get_algorithm("annealing")
    assert "bohb" in exc.value.fix


def test_rungs():
    assert rungs(get_algorithm("hyperband"), 27, 1, 3) == [1, 3, 9, 27]
    assert rungs(get_algorithm("asha"), 10, 2, 2) == [2, 4, 8, 10]
    assert rungs(get_algorithm("bayesian"), 10, 1, 3) == [10]
    with pytest.raises(SpecError):
        rungs(get_algorithm("hyperband"), 5, 6, 3)


def test_metric_contract_is_explicit_per_network():
    cat = Catalog.load()

    def obj(skill, spec=None, req=None):
        o = objectives_for(cat.get(skill).info, spec or {}, req)
        return [(x.name, x.direction) for x in o]

    assert obj("tao-train-dino") == [("val_mAP50", "maximize")]
    assert obj("tao-train-grounding-dino") == [("val_mAP50", "maximize")]
    assert obj("tao-train-nvdinov2") == [("train_loss", "minimize")]
    assert obj("tao-train-mask-auto-encoder", {"train": {"stage": "pretrain"}}) == [("train_loss", "minimize")]
    assert obj("tao-train-mask-auto-encoder", {"train": {"stage": "finetune"}}) == [("ACC_all", "maximize")]
    # a declared metric takes the skill's direction; an undeclared one needs a direction —
    # "val_loss" is not assumed to be minimized because of its name
    assert obj("tao-train-nvdinov2", req=[{"name": "train_loss"}]) == [("train_loss", "minimize")]
    with pytest.raises(SpecError) as exc:
        obj("tao-train-dino", req=[{"name": "val_loss"}])
    assert exc.value.field == "metric" and "direction" in exc.value.fix
    assert obj("tao-train-dino", req=[{"name": "latency_ms", "direction": "minimize"}, {"name": "val_mAP50"}]) == [
        ("latency_ms", "minimize"),
        ("val_mAP50", "maximize"),
    ]


def test_settings_are_validated_with_did_you_mean():
    assert parse_settings({"max_recommendations": 7}).max_trials == 7  # TAO's name
    with pytest.raises(SpecError) as exc:
        parse_settings({"max_trails": 3})
    assert "did you mean max_trials" in exc.value.message and exc.value.field == "automl.max_trails"
    with pytest.raises(SpecError):
        parse_settings({"parallel": 0})


def test_budget_is_moved_out_of_the_best_spec():
    spec = {"train": {"num_epochs": 9, "resume_training_checkpoint_path": "/x/model_epoch_002.pth", "optim": {"lr": 1e-4}}}
    out, budget = strip_budget(spec)
    assert budget == {"train.num_epochs": 9}
    assert out == {"train": {"optim": {"lr": 1e-4}}}
    assert spec["train"]["num_epochs"] == 9  # input untouched


def _two_processes(tmp_path, kind: str, loop: str) -> list:
    """Run ``loop`` (Python, with ``study`` and ``os`` bound) in two processes on one new study
    of storage ``kind`` (sqlite|journal); both must exit 0. Returns the study's trials."""
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'study.log'}"
    optuna.create_study(storage=open_storage(url), study_name="s", direction="minimize")
    head = f"""
import optuna, os
from taoskills.automl.study import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(storage=open_storage({url!r}), study_name="s")
"""
    procs = [subprocess.Popen([sys.executable, "-c", head + textwrap.dedent(loop)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    return optuna.load_study(storage=open_storage(url), study_name="s").get_trials()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_processes_on_one_storage_url(tmp_path, kind):
    loop = """
    for _ in range(15):
        t = study.ask()
        study.tell(t, t.suggest_float("x", 0, 1) ** 2)
    """
    trials = _two_processes(tmp_path, kind, loop)
    assert sorted(t.number for t in trials) == list(range(30))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_queued_trials_are_taken_once_by_two_processes(tmp_path, kind):
    # as the controller queues a promotion then asks: a queued trial runs in one process only
    # (Python's sqlite3 driver alone lets both processes take it: see study._serialize_sqlite)
    loop = """
    for i in range(25):
        study.enqueue_trial({"x": 0.5}, user_attrs={"queued_by": os.getpid()})
        t = study.ask()
        t.set_user_attr("owner", os.getpid())
        study.tell(t, t.suggest_float("x", 0, 1) ** 2)
    """
    trials = _two_processes(tmp_path, kind, loop)
    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials if t not in waiting)  # none told twice (exit 0)
    # Optuna's ask tries the queued trials it listed; when the other process took them all, it
    # starts a new trial and the other's newest queued one waits for the next ask (the controller
    # pops it before it queues or stops: runner.Controller._next_trial). It never runs twice.
    assert len(trials) == 50 + len(waiting)


def test_the_study_opens_in_optuna_dashboard(tmp_path):
    """optuna-dashboard's WSGI app lists a study on the run's storage URL (no server, no network)."""
    import io
    import json as _json

    dashboard = pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="automl-job-x")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    got = {}
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/studies",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
    }
    body = b"".join(dashboard.wsgi(url)(env, lambda status, headers, exc=None: got.setdefault("status", status)))
    assert got["status"].startswith("200")
    studies = _json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["automl-job-x"]
