#!/usr/bin/env python
"""Benchmark the tao-skills MCP server over stdio with the MCP Python SDK client.

Starts ``python -m taoskills.surfaces.mcp`` as a subprocess (``TAO_SKILLS_HOME`` in a temp
dir), warms up, then times N sequential calls of each tool:

- ``ping`` — the baseline: a tool that does nothing, so its latency is the transport +
  SDK round trip (JSON-RPC over pipes, argument validation, result serialization);
- ``list_skills`` — catalog read;
- ``build_spec`` — tao-train-nvdinov2 train with ``data_sources`` pointing at an already
  extracted image folder (template + inference rules + validation);
- ``validate_spec`` — the full tao-train-nvdinov2 train spec template against its schema
  and TAO's constraints.

Reports p50/p95/mean in milliseconds per tool and the ratio of each to ping's p50/p95 in
the same run (so numbers from different machines compare by ratio). Usage::

    python scripts/bench_mcp.py [-n 200] [--warmup 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

SKILL = "tao-train-nvdinov2"


def _pct(values: list[float], q: float) -> float:
    """Percentile ``q`` (0..100) with linear interpolation between closest ranks."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


async def _bench(n: int, warmup: int, workdir: Path) -> dict:
    from taoskills.data.sample_data import write_sample_images

    data_root = workdir / "data"
    write_sample_images(data_root / "images_train", n=8)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "taoskills.surfaces.mcp"], env={"TAO_SKILLS_HOME": str(workdir / "home")}
    )
    t0 = time.perf_counter()
    async with Client(params) as client:
        connect_ms = (time.perf_counter() - t0) * 1000
        template = await client.call_tool("get_spec_template", {"skill": SKILL, "action": "train"})
        if template.is_error:
            raise SystemExit(f"get_spec_template failed: {template.content[0].text}")
        calls = {
            "ping": {},
            "list_skills": {},
            "build_spec": {"skill": SKILL, "action": "train", "data_sources": {"train_datasets": str(data_root)}},
            "validate_spec": {"skill": SKILL, "action": "train", "spec": template.structured_content["spec"]},
        }
        results: dict[str, dict] = {}
        for tool, args in calls.items():
            for _ in range(warmup):
                res = await client.call_tool(tool, args)
                if res.is_error:
                    raise SystemExit(f"{tool} failed: {res.content[0].text}")
            times = []
            for _ in range(n):
                start = time.perf_counter()
                res = await client.call_tool(tool, args)
                times.append((time.perf_counter() - start) * 1000)
                if res.is_error:
                    raise SystemExit(f"{tool} failed: {res.content[0].text}")
            results[tool] = {
                "n": n,
                "p50_ms": _pct(times, 50),
                "p95_ms": _pct(times, 95),
                "mean_ms": statistics.fmean(times),
                "max_ms": max(times),
            }
    base = results["ping"]
    for r in results.values():
        r["p50_x_ping"] = r["p50_ms"] / base["p50_ms"]
        r["p95_x_ping"] = r["p95_ms"] / base["p95_ms"]
    return {
        "transport": "stdio",
        "client": "mcp Python SDK Client",
        "calls_per_tool": n,
        "warmup_per_tool": warmup,
        "connect_ms": connect_ms,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "tools": results,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--calls", type=int, default=200, help="timed calls per tool (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls per tool first (default 20)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if args.calls < 1:
        ap.error("--calls must be >= 1")
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        report = asyncio.run(_bench(args.calls, max(0, args.warmup), Path(tmp)))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"MCP stdio benchmark: {args.calls} calls per tool after {args.warmup} warm-up calls "
        f"(connect {report['connect_ms']:.0f} ms)"
    )
    print(f"{'tool':<15}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'p50/ping':>10}{'p95/ping':>10}")
    for tool, r in report["tools"].items():
        print(
            f"{tool:<15}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['mean_ms']:>9.2f}"
            f"{r['p50_x_ping']:>10.2f}{r['p95_x_ping']:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
