"""status.json monitor: TAO JSON Lines, partial/garbage lines, KPI history, progress()."""

from __future__ import annotations

import json
import math

import pytest

from taoskills.jobs.monitor import parse_status_lines, progress, read_status, status_path, to_float


def line(**kw) -> str:
    base = {"date": "1/31/2025", "time": "9:5:7", "status": "RUNNING", "verbosity": "INFO"}
    base.update(kw)
    return json.dumps(base)


TRAIN_LINES = [
    line(status="STARTED", message="Starting DINO training."),
    line(
        epoch=0,
        max_epoch=3,
        time_per_epoch="0:01:02.500000",
        eta="0:02:05.000000",
        message="Training loop in progress",
        graphical={"train_loss": 3.5},
    ),
    line(epoch=0, max_epoch=3, kpi={"val_mAP50": 0.10, "val_mAP": 0.05}),
    "",
    "Epoch 1: 100%|#####| 10/10 [00:01<00:00]",  # stray stdout in the file
    line(
        epoch=1,
        max_epoch=3,
        time_per_epoch="0:01:01.000000",
        eta="0:01:01.000000",
        message="Training loop in progress",
        graphical={"train_loss": 2.25},
    ),
    line(epoch=1, max_epoch=3, kpi={"val_mAP50": {"value": 0.31}, "val_mAP": "0.12", "bogus": "n/a", "flag": True}),
    line(epoch=2, max_epoch=3, kpi={"val_mAP50": 0.42, "val_mAP": float("nan")}),
]


def test_train_run_in_progress_with_partial_last_line(tmp_path):
    f = tmp_path / "status.json"
    f.write_text("\n".join(TRAIN_LINES) + "\n" + line(epoch=3)[:25])  # writer mid-line
    s = read_status(f)
    assert s.exists and s.started
    assert s.last_status == "RUNNING" and not s.finished and not s.failed
    assert s.epoch == 2 and s.max_epoch == 3
    assert s.eta == "0:01:01.000000" and s.time_per_epoch == "0:01:01.000000"
    assert s.kpis == {"val_mAP50": 0.42, "val_mAP": 0.12}
    assert s.kpi_history["val_mAP50"] == [(0, 0.10), (1, 0.31), (2, 0.42)]
    assert s.kpi_history["val_mAP"] == [(0, 0.05), (1, 0.12)]  # NaN dropped
    assert "bogus" not in s.kpis and "flag" not in s.kpis
    assert s.graphical == {"train_loss": 2.25}
    assert s.bad_lines == 2  # the stray progress bar and the partial line
    assert s.lines == 6
    assert s.fraction == pytest.approx(2 / 3)
    assert s.last_update == "1/31/2025 9:5:7"


def test_success_and_failure_lines(tmp_path):
    ok = tmp_path / "ok.json"
    ok.write_text("\n".join(TRAIN_LINES + [line(message="Train finished successfully.")]) + "\n")
    s = read_status(ok)
    assert s.finished and not s.failed and s.failure_message is None
    assert s.message == "Train finished successfully."

    bad = tmp_path / "bad.json"
    bad.write_text(
        "\n".join(
            TRAIN_LINES[:3]
            + [line(status="FAILURE", verbosity="ERROR", message="CUDA out of memory. Tried to allocate 2.00 GiB")]
        )
        + "\n"
    )
    s = read_status(bad)
    assert s.failed and not s.finished
    assert s.last_status == "FAILURE"
    assert s.failure_message.startswith("CUDA out of memory")
    assert s.kpis["val_mAP50"] == pytest.approx(0.10)

    succ = tmp_path / "succ.json"
    succ.write_text(
        line(status="STARTED", message="Starting evaluate.")
        + "\n"
        + line(status="SUCCESS", message="Evaluation done", kpi={"test_mAP50": 0.5})
        + "\n"
    )
    s = read_status(succ)
    assert s.finished and s.last_status == "SUCCESS" and s.kpis == {"test_mAP50": 0.5}
    assert s.kpi_history == {"test_mAP50": [(None, 0.5)]}


def test_restart_resets_finished_and_failed():
    text = "\n".join(
        [
            line(status="STARTED", message="Starting train."),
            line(status="FAILURE", message="boom"),
            line(status="STARTED", message="Starting train."),
            line(epoch=0, max_epoch=1, kpi={"loss": 1.0}),
        ]
    )
    s = parse_status_lines(text)
    assert not s.failed and not s.finished
    assert s.failure_message == "boom"  # the last failure stays visible


def test_missing_empty_and_garbage_files(tmp_path):
    s = read_status(tmp_path / "nope.json")
    assert not s.exists and not s.started and s.kpis == {}
    (tmp_path / "empty.json").write_text("")
    s = read_status(tmp_path / "empty.json")
    assert s.exists and not s.started and s.last_status is None
    (tmp_path / "junk.json").write_bytes(b'\xff\xfe garbage\n[1, 2]\n"str"\nnull\n{not json}\n')
    s = read_status(tmp_path / "junk.json")
    assert not s.started and s.bad_lines == 5


def test_iteration_and_hf_style_lines():
    text = "\n".join(
        [
            line(cur_iter=100, max_iter=1000, kpi={"loss": 0.9}),
            line(cur_iter=200, max_iter=1000, kpi={"loss": 0.7}),
            line(epoch=0.5, step=20, max_step=40, max_epoch=1, kpi={"eval_loss": 1.5}),
        ]
    )
    s = parse_status_lines(text)
    assert s.kpi_history["loss"] == [(100, 0.9), (200, 0.7)]
    assert s.kpi_history["eval_loss"] == [(0.5, 1.5)]
    assert s.cur_iter == 200 and s.max_iter == 1000 and s.step == 20 and s.epoch == 0.5
    assert s.fraction == pytest.approx(0.5)


def test_to_float_rules():
    assert to_float(1) == 1.0 and to_float("0.5") == 0.5 and to_float({"value": 2}) == 2.0
    for bad in (True, None, "nan", "inf", float("inf"), {"value": None}, "abc", [1]):
        assert to_float(bad) is None


def test_progress_reads_action_folder_and_falls_back(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "status.json").write_text("\n".join(TRAIN_LINES) + "\n")
    s = progress(tmp_path, "train")
    assert s.path == str(tmp_path / "train" / "status.json") and s.kpis["val_mAP50"] == 0.42
    s = progress(tmp_path, "evaluate")
    assert not s.exists and s.path == str(tmp_path / "evaluate" / "status.json")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "status.json").write_text(line(status="STARTED", message="Starting export.") + "\n")
    assert status_path(flat, "export") == flat / "status.json"
    assert progress(flat, "export").started


def test_thousands_of_lines(tmp_path):
    f = tmp_path / "status.json"
    with f.open("w") as fh:
        fh.write(line(status="STARTED", message="Starting train.") + "\n")
        for e in range(5000):
            fh.write(line(epoch=e, max_epoch=5000, eta="0:00:01", kpi={"train_loss": 1.0 / (e + 1)}) + "\n")
    s = read_status(f)
    assert s.epoch == 4999 and len(s.kpi_history["train_loss"]) == 5000
    assert s.kpis["train_loss"] == pytest.approx(1 / 5000)
    # a bounded read keeps the newest lines only
    t = read_status(f, max_bytes=4096)
    assert t.epoch == 4999 and 0 < len(t.kpi_history["train_loss"]) < 100 and t.bad_lines == 0


def test_lines_written_by_tao_core_status_logger(tmp_path):
    """Real TAO Core 7.3.0 StatusLogger output parses (same writer the TAO container uses)."""
    import nvidia_tao_core.loggers.logging as logging_mod

    path = tmp_path / "train" / "status.json"
    slog = logging_mod.StatusLogger(filename=str(path), is_master=True, verbosity=logging_mod.Verbosity.INFO, append=True)
    slog.write(status_level=logging_mod.Status.STARTED, message="Starting nvdinov2 train.")
    for epoch in range(3):
        slog.kpi = {"train_loss": 1.0 / (epoch + 1)}
        slog.write(
            data={"epoch": epoch, "max_epoch": 3, "time_per_epoch": "0:00:10", "eta": f"0:00:{30 - 10 * epoch}"},
            message="Training loop in progress",
        )
    slog.kpi = {}
    slog.write(status_level=logging_mod.Status.RUNNING, message="Train finished successfully.")
    s = progress(tmp_path, "train")
    assert s.started and s.finished and s.epoch == 2 and s.max_epoch == 3
    assert [e for e, _ in s.kpi_history["train_loss"]] == [0, 1, 2]
    assert math.isclose(s.kpis["train_loss"], 1 / 3)
    assert s.bad_lines == 0


def test_closing_line_updates_latest_kpi_without_duplicating_history():
    from taoskills.jobs.monitor import parse_status_lines

    text = "\n".join(
        [
            '{"status": "RUNNING", "epoch": 0, "max_epoch": 2, "kpi": {"train_loss": 3.0}}',
            '{"status": "RUNNING", "epoch": 1, "max_epoch": 2, "kpi": {"train_loss": 2.0}}',
            '{"status": "SUCCESS", "message": "Train finished successfully.", "kpi": {"train_loss": 2.0}}',
        ]
    )
    s = parse_status_lines(text)
    assert s.kpi_history["train_loss"] == [(0, 3.0), (1, 2.0)]
    assert s.kpis["train_loss"] == 2.0
