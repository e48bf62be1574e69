"""Failure analysis: skill patterns first, generic signal/OOM/traceback rules after, bounded scan."""

from __future__ import annotations

from taoskills.bank.skill_info import ErrorPattern
from taoskills.jobs.failure import SCAN_BYTES, analyze_failure, last_exception

SKILL_PATTERNS = [
    ErrorPattern(
        id="num_classes_mismatch",
        regex=r"category id \d+ >= num_classes",
        cause="a category id in the COCO annotations is not below dataset.num_classes",
        fix="set dataset.num_classes to max(category_id) + 1",
        fault="program",
        actions=["train", "evaluate"],
    ),
    ErrorPattern(
        id="gpu_oom",
        regex=r"CUDA out of memory",
        cause="the GPU ran out of memory at this batch size",
        fix="lower dataset.batch_size",
        fault="infrastructure",
    ),
    ErrorPattern(
        id="export_only",
        regex=r"onnx export failed",
        cause="ONNX export failed",
        fix="check export.input_width",
        fault="program",
        actions=["export"],
    ),
]

TRACEBACK_LOG = """\
[tao-skills] running: python -m taoskills.engine dino train -e /w/spec.yaml
Epoch 0: loss 3.2
Error executing job with overrides: []
Traceback (most recent call last):
  File "/engine/train.py", line 10, in main
    run(cfg)
  File "/engine/data.py", line 99, in load
    raise ValueError(msg)
ValueError: category id 7 >= num_classes (5) in /data/annotations.json
Execution status: FAIL
[tao-skills] job finished with exit code 1
"""


def test_skill_pattern_is_primary_and_generic_follow():
    fa = analyze_failure(TRACEBACK_LOG, SKILL_PATTERNS, action="train", exit_code=1)
    ids = [m.id for m in fa.matched]
    assert ids == ["num_classes_mismatch", "execution_failed"]
    assert fa.primary.id == "num_classes_mismatch" and fa.fault == "program"
    assert fa.primary.line.startswith("ValueError: category id 7")
    assert "max(category_id) + 1" in fa.summary
    assert fa.excerpt.splitlines()[-1] == "[tao-skills] job finished with exit code 1"
    assert fa.exit_code == 1


def test_action_filter_and_traceback_fallback():
    # the mismatch pattern is scoped to train/evaluate: for export it must not apply
    fa = analyze_failure(TRACEBACK_LOG, SKILL_PATTERNS, action="export", exit_code=1)
    assert [m.id for m in fa.matched] == ["python_exception", "execution_failed"]
    assert fa.primary.line == "ValueError: category id 7 >= num_classes (5) in /data/annotations.json"
    assert fa.fault == "program"
    assert "ValueError" in fa.summary


def test_killed_by_exit_code_and_bash_line():
    log = "Epoch 3: loss 1.0\n/w/runner.sh: line 61:  4242 Killed                  python -m taoskills.engine dino train\n"
    fa = analyze_failure(log, SKILL_PATTERNS, action="train", exit_code=137)
    assert fa.primary.id == "killed" and fa.fault == "infrastructure"
    assert "Killed" in fa.primary.line
    assert "out-of-memory" in fa.primary.cause
    # the same from a Python subprocess return code, with no shell line in the log
    fa = analyze_failure("Epoch 3\n", [], exit_code=-9)
    assert fa.primary.id == "killed" and fa.primary.line == "exit code -9"
    # a 'Killed' line alone (exit code unknown) is enough
    fa = analyze_failure("step 10\nKilled\n", [], exit_code=None)
    assert fa.primary.id == "killed"


def test_terminated_lost_and_generic_oom():
    fa = analyze_failure("Epoch 1\n", SKILL_PATTERNS, exit_code=143)
    assert fa.primary.id == "terminated" and fa.fault == "infrastructure"
    fa = analyze_failure("Epoch 1\n", SKILL_PATTERNS, exit_code=None, lost=True)
    assert fa.primary.id == "lost_process" and fa.fault == "infrastructure"
    # the skill's own OOM pattern wins over the generic one for the same line
    oom = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    fa = analyze_failure(oom, SKILL_PATTERNS, action="train", exit_code=1)
    assert [m.id for m in fa.matched] == ["gpu_oom"]
    fa = analyze_failure(oom, [], action="train", exit_code=1)
    assert [m.id for m in fa.matched] == ["cuda_out_of_memory"]
    fa = analyze_failure("OSError: [Errno 28] No space left on device\n", [], exit_code=1)
    assert fa.primary.id == "no_space_left"


def test_signal_beats_traceback():
    log = 'Traceback (most recent call last):\n  File "x", line 1\nKeyboardInterrupt\n'
    fa = analyze_failure(log, [], exit_code=143)
    assert [m.id for m in fa.matched] == ["terminated"]


def test_nothing_matched():
    fa = analyze_failure("all good until here\n", SKILL_PATTERNS, action="train", exit_code=5)
    assert fa.matched == [] and fa.primary is None and fa.fault is None
    assert "exit" in fa.summary and "5" in fa.summary
    assert fa.excerpt == "all good until here"


def test_last_exception_picks_the_final_traceback():
    log = (
        "Traceback (most recent call last):\n  File \"a\"\nKeyError: 'x'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "b"\n    foo()\n'
        "omegaconf.errors.ConfigKeyError: Key 'workers' not in 'DatasetConfig'\n"
    )
    assert last_exception(log) == "omegaconf.errors.ConfigKeyError: Key 'workers' not in 'DatasetConfig'"
    assert last_exception("no traceback here") is None


def test_scan_is_bounded_to_the_log_end():
    head = "category id 9 >= num_classes (3)\n"
    filler = ("x" * 99 + "\n") * (SCAN_BYTES // 100 + 10)
    log = head + filler + "Execution status: FAIL\n"
    fa = analyze_failure(log, SKILL_PATTERNS, action="train", exit_code=1)
    ids = [m.id for m in fa.matched]
    assert "num_classes_mismatch" not in ids  # beyond the scanned window
    assert ids == ["execution_failed"]
    assert len(fa.excerpt.splitlines()) == 40


def test_status_failure_message_explains_when_no_pattern_does():
    log = "ERROR: NVDINOv2 train failed: boom\nExecution status: FAIL\n"
    msg = 'train.precision=16-mixed needs a CUDA GPU. Fix: set train.precision to "32-true".'
    fa = analyze_failure(log, [], "train", 1, status_message=msg)
    assert fa.primary.id == "status_failure"
    assert fa.primary.cause.startswith("train.precision=16-mixed needs a CUDA GPU")
    assert fa.primary.fix == 'set train.precision to "32-true".'
    assert [m.id for m in fa.matched] == ["status_failure", "execution_failed"]
    # a skill pattern that explains the log still wins
    pat = ErrorPattern(id="p", regex="boom", cause="c", fix="f", fault="program")
    assert analyze_failure(log, [pat], "train", 1, status_message=msg).primary.id == "p"
