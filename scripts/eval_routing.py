#!/usr/bin/env python3
"""Routing evals: run case files through taoskills.bank.routing.route().

For each case file, separately: per-skill precision/recall, overall micro
precision/recall (over skill predictions; a null expectation counts as a negative case),
negative accuracy (null expected -> null predicted), action accuracy (cases whose skill
was right and that name an action), policy accuracy (cases that name automl_policy),
near-miss accuracy (cases that name one), accuracy per tag (typo, zh, near-miss, ...;
a case is right when it has no problem), and every miss. By default the three sets are
run: the tuned set (evals/routing_cases.yaml), the first held-out set
(evals/routing_holdout.yaml), the second (evals/routing_holdout2.yaml, written before
the fuzzy/multilingual tuning, whose failures then guided it) and the third
(evals/routing_holdout3.yaml, written after that tuning and never tuned on). ``--json`` prints one JSON object instead: the report of
the one file given, or ``{"sets": {name: report}}`` for several. Exits 1 when a metric
of any set is below its ``--min-*`` threshold, 2 when the cases or the catalog cannot be
loaded.

Usage: python scripts/eval_routing.py [--cases FILE ...] [--skills-dir skills]
       [--json] [--min-precision 0.95] [--min-recall 0.95] [--min-action-accuracy 0.9] ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SETS = ("routing_cases.yaml", "routing_holdout.yaml", "routing_holdout2.yaml", "routing_holdout3.yaml")


def _policy_value(value: Any) -> str | None:
    """YAML 1.1 reads bare on/off as booleans: map them back."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def load_cases(path: Path) -> list[dict[str, Any]]:
    """Cases from YAML: a list of mappings with at least ``text`` and ``skill``."""
    cases = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(cases, list):
        raise ValueError(f"{path}: expected a list of cases")
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or "text" not in case or "skill" not in case:
            raise ValueError(f"{path}: case {i} needs text and skill (null allowed)")
        for key in ("automl_policy", "explicit_policy"):
            if key in case:
                case[key] = _policy_value(case[key])
    return cases


def load_catalog(skills_dir: Path | None, skill_info_only: bool) -> Any:
    """The real catalog (taoskills.bank.catalog.Catalog.load), or, with ``skill_info_only``,
    just each folder's references/skill_info.yaml (for a bank under construction)."""
    if skill_info_only:
        from taoskills.bank.skill_info import SkillInfo

        root = skills_dir or REPO / "skills"
        skills = {}
        for folder in sorted(p for p in root.iterdir() if (p / "references/skill_info.yaml").is_file()):
            info = SkillInfo.model_validate(yaml.safe_load((folder / "references/skill_info.yaml").read_text(encoding="utf-8")))
            skills[folder.name] = SimpleNamespace(name=folder.name, dir=folder, info=info)
        return SimpleNamespace(skills=skills)
    from taoskills.bank.catalog import Catalog

    return Catalog.load(skills_dir, strict=False) if skills_dir else Catalog.load(strict=False)


def evaluate(cases: list[dict[str, Any]], catalog: Any) -> dict[str, Any]:
    """Run every case; return metrics and misses (see module docstring)."""
    from taoskills.bank.routing import route
    from taoskills.errors import TaoSkillsError

    skills = sorted(catalog.skills)
    per = {s: {"tp": 0, "fp": 0, "fn": 0} for s in skills}
    results = []
    neg_total = neg_ok = act_total = act_ok = pol_total = pol_ok = nm_total = nm_ok = 0
    misses = []
    tags: dict[str, dict[str, int]] = {}
    for case in cases:
        expected = case.get("skill")
        try:
            r = route(case["text"], catalog, action=case.get("explicit_action"), automl_policy=case.get("explicit_policy"))
            got, got_action = r.skill, r.action
            got_policy = r.automl_policy.policy if r.automl_policy else None
            got_nm = r.near_miss.name if r.near_miss else None
            reason = r.no_skill_reason or r.reason
        except TaoSkillsError as exc:
            got = got_action = got_policy = got_nm = None
            reason = f"error: {exc}"
        row = {
            "text": case["text"],
            "expected": expected,
            "got": got,
            "action": got_action,
            "policy": got_policy,
            "near_miss": got_nm,
            "reason": reason,
            "problems": [],
        }
        if got is not None:
            per.setdefault(got, {"tp": 0, "fp": 0, "fn": 0})
        if expected is not None:
            per.setdefault(expected, {"tp": 0, "fp": 0, "fn": 0})
        if expected == got:
            if got is not None:
                per[got]["tp"] += 1
        else:
            if got is not None:
                per[got]["fp"] += 1
            if expected is not None:
                per[expected]["fn"] += 1
            row["problems"].append(f"skill: expected {expected}, got {got}")
        if expected is None:
            neg_total += 1
            neg_ok += got is None
        if expected is not None and got == expected and "action" in case:
            act_total += 1
            if got_action == case["action"]:
                act_ok += 1
            else:
                row["problems"].append(f"action: expected {case['action']}, got {got_action}")
        if case.get("automl_policy") is not None:
            pol_total += 1
            if got_policy == case["automl_policy"]:
                pol_ok += 1
            else:
                row["problems"].append(f"automl_policy: expected {case['automl_policy']}, got {got_policy}")
        if case.get("near_miss") is not None:
            nm_total += 1
            if got_nm == case["near_miss"]:
                nm_ok += 1
            else:
                row["problems"].append(f"near_miss: expected {case['near_miss']}, got {got_nm}")
        results.append(row)
        if row["problems"]:
            misses.append(row)
        for tag in case.get("tags") or []:
            t = tags.setdefault(str(tag), {"cases": 0, "correct": 0})
            t["cases"] += 1
            t["correct"] += not row["problems"]

    def ratio(a: int, b: int) -> float:
        return round(a / b, 4) if b else 1.0

    per_skill = {
        s: {
            "precision": ratio(v["tp"], v["tp"] + v["fp"]),
            "recall": ratio(v["tp"], v["tp"] + v["fn"]),
            "support": v["tp"] + v["fn"],
            **v,
        }
        for s, v in sorted(per.items())
    }
    tp = sum(v["tp"] for v in per.values())
    fp = sum(v["fp"] for v in per.values())
    fn = sum(v["fn"] for v in per.values())
    return {
        "cases": len(cases),
        "skills": skills,
        "per_skill": per_skill,
        "micro_precision": ratio(tp, tp + fp),
        "micro_recall": ratio(tp, tp + fn),
        "negative_accuracy": ratio(neg_ok, neg_total),
        "negatives": neg_total,
        "action_accuracy": ratio(act_ok, act_total),
        "actions_checked": act_total,
        "policy_accuracy": ratio(pol_ok, pol_total),
        "policies_checked": pol_total,
        "near_miss_accuracy": ratio(nm_ok, nm_total),
        "near_misses_checked": nm_total,
        "per_tag": {k: {**v, "accuracy": ratio(v["correct"], v["cases"])} for k, v in sorted(tags.items())},
        "misses": misses,
    }


THRESHOLDS = {
    "min_precision": "micro_precision",
    "min_recall": "micro_recall",
    "min_negative_accuracy": "negative_accuracy",
    "min_action_accuracy": "action_accuracy",
    "min_policy_accuracy": "policy_accuracy",
    "min_near_miss_accuracy": "near_miss_accuracy",
}


def _print(name: str, report: dict[str, Any]) -> None:
    print(f"== {name}: {report['cases']} cases, skills: {', '.join(report['skills'])}")
    print(f"{'skill':34} {'precision':>9} {'recall':>7} {'support':>8}")
    for skill, m in report["per_skill"].items():
        print(f"{skill:34} {m['precision']:9.3f} {m['recall']:7.3f} {m['support']:8d}")
    print(f"micro precision {report['micro_precision']:.3f}  micro recall {report['micro_recall']:.3f}")
    print(
        f"negatives {report['negative_accuracy']:.3f} ({report['negatives']})  "
        f"action {report['action_accuracy']:.3f} ({report['actions_checked']})  "
        f"policy {report['policy_accuracy']:.3f} ({report['policies_checked']})  "
        f"near miss {report['near_miss_accuracy']:.3f} ({report['near_misses_checked']})"
    )
    if report["per_tag"]:
        print("tags: " + "  ".join(f"{k} {v['accuracy']:.3f} ({v['cases']})" for k, v in report["per_tag"].items()))
    for miss in report["misses"]:
        print(f"MISS {miss['text']!r}: {'; '.join(miss['problems'])} -- {miss['reason']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, action="append", default=None, help="case file (repeatable; default: the three sets)")
    ap.add_argument("--skills-dir", type=Path, default=None, help="bank folder (default: the repo's skills/)")
    ap.add_argument("--skill-info-only", action="store_true", help="load only references/skill_info.yaml of each folder")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    for flag in THRESHOLDS:
        ap.add_argument("--" + flag.replace("_", "-"), type=float, default=0.0)
    args = ap.parse_args(argv)
    files = args.cases or [REPO / "evals" / name for name in DEFAULT_SETS]

    try:
        sets = {f.stem: load_cases(f) for f in files}
        catalog = load_catalog(args.skills_dir, args.skill_info_only)
    except Exception as exc:  # noqa: BLE001 - report any load failure with exit code 2
        print(f"cannot load cases or catalog: {exc}", file=sys.stderr)
        return 2
    reports = {name: evaluate(cases, catalog) for name, cases in sets.items()}
    failed = [
        (
            f"{metric} {r[metric]} < {getattr(args, flag)}"
            if len(reports) == 1
            else f"{name}: {metric} {r[metric]} < {getattr(args, flag)}"
        )
        for name, r in reports.items()
        for flag, metric in THRESHOLDS.items()
        if r[metric] < getattr(args, flag)
    ]
    if args.json:
        out = next(iter(reports.values())) if len(reports) == 1 else {"sets": reports}
        out["failed_thresholds"] = failed
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for name, report in reports.items():
            _print(name, report)
        for f in failed:
            print(f"BELOW THRESHOLD: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
