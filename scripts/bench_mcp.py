#!/usr/bin/env python
"""Benchmark the tao-skills MCP server over stdio with the MCP Python SDK client.

Starts ``python -m taoskills.surfaces.mcp`` as a subprocess (``TAO_SKILLS_HOME`` in a temp
dir) and times these tools through a real MCP client:

- ``ping`` - the baseline: a tool that does nothing, so its latency is the transport +
  SDK round trip (JSON-RPC over pipes, argument validation, result serialization);
- ``build_spec`` - tao-train-nvdinov2 train with ``data_sources`` pointing at an already
  extracted image folder (template + inference rules + schedule fit + validation + placement);
- ``validate_spec`` - the full tao-train-nvdinov2 train spec template against its schema
  and TAO's constraints;
- ``list_skills`` - catalog read (reported, not part of the target).

The calls are interleaved - each round calls every tool once, the order rotating from round to
round - so a load spike on a shared machine hits all tools alike; warm-up rounds come first.
Reported per tool: p50/p90/p95/mean in milliseconds, the ratio of its p50 and p90 to ping's
p50 and p90 in the same run, and the median of the per-round ratios (tool time / ping time of
the same round). ``--runs R`` repeats the whole measurement with a fresh server R times and
reports every run. In-process times of the same two calls (``Service`` in this process) show
how much of the latency is the tool's own work.

Target (issue #5): ``build_spec`` and ``validate_spec`` p50 within 2x ping's p50. ``--check``
exits 1 when the median over the runs of either p50 ratio is above ``--target`` (default 2.0).

Usage::

    python scripts/bench_mcp.py [-n 300] [--warmup 30] [--runs 3] [--check] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

SKILL = "tao-train-nvdinov2"
TARGET_TOOLS = ("build_spec", "validate_spec")
TOOLS = ("ping", "build_spec", "validate_spec", "list_skills")


def _pct(values: list[float], q: float) -> float:
    """Percentile ``q`` (0..100) with linear interpolation between closest ranks."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "n": len(times),
        "p50_ms": _pct(times, 50),
        "p90_ms": _pct(times, 90),
        "p95_ms": _pct(times, 95),
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
    }


def _requests(data_root: Path, template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "ping": {},
        "build_spec": {"skill": SKILL, "action": "train", "data_sources": {"train_datasets": str(data_root)}},
        "validate_spec": {"skill": SKILL, "action": "train", "spec": template},
        "list_skills": {},
    }


async def _one_run(n: int, warmup: int, workdir: Path, data_root: Path) -> dict[str, Any]:
    """One server process: ``warmup`` untimed rounds, then ``n`` timed interleaved rounds."""
    env = {**os.environ, "TAO_SKILLS_HOME": str(workdir / "home")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "taoskills.surfaces.mcp"], env=env)
    t0 = time.perf_counter()
    async with Client(params) as client:
        connect_ms = (time.perf_counter() - t0) * 1000
        template = await client.call_tool("get_spec_template", {"skill": SKILL, "action": "train"})
        if template.is_error:
            raise SystemExit(f"get_spec_template failed: {template.content[0].text}")
        calls = _requests(data_root, template.structured_content["spec"])
        times: dict[str, list[float]] = {tool: [] for tool in TOOLS}
        for r in range(warmup + n):
            k = r % len(TOOLS)
            for tool in TOOLS[k:] + TOOLS[:k]:  # rotate the order every round
                start = time.perf_counter()
                res = await client.call_tool(tool, calls[tool])
                elapsed = (time.perf_counter() - start) * 1000
                if res.is_error:
                    raise SystemExit(f"{tool} failed: {res.content[0].text}")
                if r >= warmup:
                    times[tool].append(elapsed)
    results = {tool: _stats(ts) for tool, ts in times.items()}
    base = results["ping"]
    for tool, r in results.items():
        r["p50_x_ping"] = r["p50_ms"] / base["p50_ms"]
        r["p90_x_ping"] = r["p90_ms"] / base["p90_ms"]
        r["paired_x_ping"] = statistics.median(t / p for t, p in zip(times[tool], times["ping"]))
    return {"connect_ms": connect_ms, "tools": results}


def _in_process(data_root: Path, workdir: Path, n: int) -> dict[str, float]:
    """p50 ms of the same build_spec/validate_spec calls on a Service in this process."""
    os.environ["TAO_SKILLS_HOME"] = str(workdir / "home-inproc")
    from taoskills.platforms import placement
    from taoskills.service import Service

    placement.set_cache_ttl(placement.SERVER_CACHE_TTL_S)  # as the server does
    svc = Service()
    template = svc.get_spec_template(SKILL, "train")
    req = _requests(data_root, template)
    fns = {
        "build_spec": lambda: svc.build_spec(SKILL, "train", data_sources=req["build_spec"]["data_sources"]),
        "validate_spec": lambda: svc.validate_spec(SKILL, "train", template),
    }
    out = {}
    for name, fn in fns.items():
        for _ in range(10):
            fn()
        ts = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - start) * 1000)
        out[f"{name}_p50_ms"] = _pct(ts, 50)
    return out


def bench(n: int, warmup: int, runs: int, workdir: Path) -> dict[str, Any]:
    """The whole measurement: ``runs`` server runs plus in-process times (see the module docstring)."""
    from taoskills.data.sample_data import write_sample_images

    data_root = workdir / "data"
    write_sample_images(data_root / "images_train", n=8)
    all_runs = [asyncio.run(_one_run(n, warmup, workdir / f"run{i}", data_root)) for i in range(runs)]
    summary = {
        tool: {
            "p50_x_ping_median": statistics.median(r["tools"][tool]["p50_x_ping"] for r in all_runs),
            "p90_x_ping_median": statistics.median(r["tools"][tool]["p90_x_ping"] for r in all_runs),
        }
        for tool in TOOLS
    }
    return {
        "transport": "stdio",
        "client": "mcp Python SDK Client",
        "rounds_per_run": n,
        "warmup_rounds": warmup,
        "runs": all_runs,
        "summary": summary,
        "in_process": _in_process(data_root, workdir, min(n, 200)),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _print(report: dict[str, Any]) -> None:
    print(
        f"MCP stdio benchmark: {len(report['runs'])} run(s) x {report['rounds_per_run']} interleaved rounds "
        f"after {report['warmup_rounds']} warm-up rounds; load avg {report['load_avg']}"
    )
    for i, run in enumerate(report["runs"], 1):
        print(f"run {i} (connect {run['connect_ms']:.0f} ms)")
        print(f"  {'tool':<15}{'p50 ms':>9}{'p90 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'p50/ping':>10}{'p90/ping':>10}{'paired':>8}")
        for tool, r in run["tools"].items():
            print(
                f"  {tool:<15}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['mean_ms']:>9.2f}"
                f"{r['p50_x_ping']:>10.2f}{r['p90_x_ping']:>10.2f}{r['paired_x_ping']:>8.2f}"
            )
    print("median over runs: " + ", ".join(f"{t} p50/ping {report['summary'][t]['p50_x_ping_median']:.2f}" for t in TARGET_TOOLS))
    ip = report["in_process"]
    print(f"in-process p50: build_spec {ip['build_spec_p50_ms']:.2f} ms, validate_spec {ip['validate_spec_p50_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "-n", "--rounds", type=int, default=300, help="timed rounds per run, one call of each tool each (default 300)"
    )
    ap.add_argument("--warmup", type=int, default=30, help="untimed rounds first (default 30)")
    ap.add_argument("--runs", type=int, default=1, help="independent server runs (default 1)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target tool's median p50 ratio exceeds --target")
    ap.add_argument(
        "--target", type=float, default=2.0, help="allowed p50 ratio to ping for build_spec/validate_spec (default 2.0)"
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.runs < 1:
        ap.error("--rounds and --runs must be >= 1")
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        report = bench(args.rounds, max(0, args.warmup), args.runs, Path(tmp))
    missed = [t for t in TARGET_TOOLS if report["summary"][t]["p50_x_ping_median"] > args.target]
    report["target"] = {"p50_x_ping_max": args.target, "missed": missed}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
        verdict = f"MISSED by {', '.join(missed)}" if missed else "met"
        print(f"target p50 <= {args.target:g}x ping for {' and '.join(TARGET_TOOLS)}: {verdict}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
