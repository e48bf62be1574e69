#!/usr/bin/env python3
"""Routing speed vs request length: route_request must be linear and bounded.

Routes a 1 KB, a 100 KB and a 1 MB request (the same sentence repeated) ``--repeat``
times each and prints each p50 and the ratios 1 MB / 100 KB and 100 KB / 1 KB. Routing
reads only the first ``MAX_SCORED_CHARS`` characters, so 1 MB / 100 KB stays near 1
(before the cap a 176 KB request took 31 s). Exits 1 when 1 MB / 100 KB exceeds
``--max-ratio`` (default 2.0); ratios are measured in the same run, never absolute times.

Usage: python scripts/bench_routing.py [--repeat 5] [--max-ratio 2.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

UNIT = "train DINO on /data/coco/ for 5 epochs, grouding dino 关闭AutoML 预训练, classify images with a ResNet-50. "


def _request(size: int) -> str:
    return (UNIT * (size // len(UNIT) + 1))[:size]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-ratio", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from taoskills.bank.catalog import Catalog
    from taoskills.bank.routing import MAX_SCORED_CHARS, route

    catalog = Catalog.load(strict=False)
    route("warm up", catalog)
    p50: dict[str, float] = {}
    work: dict[str, dict[str, int]] = {}
    for label, size in (("1KB", 1_000), ("100KB", 100_000), ("1MB", 1_000_000)):
        text = _request(size)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = route(text, catalog)
            times.append(time.perf_counter() - t0)
        p50[label] = statistics.median(times)
        work[label] = r.work
    report = {
        "max_scored_chars": MAX_SCORED_CHARS,
        "p50_s": {k: round(v, 4) for k, v in p50.items()},
        "ratio_1MB_vs_100KB": round(p50["1MB"] / p50["100KB"], 3),
        "ratio_100KB_vs_1KB": round(p50["100KB"] / p50["1KB"], 3),
        "work": work,
    }
    ok = report["ratio_1MB_vs_100KB"] <= args.max_ratio
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("routing p50: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in p50.items()))
        print(f"ratio 1MB/100KB {report['ratio_1MB_vs_100KB']}  100KB/1KB {report['ratio_100KB_vs_1KB']}")
        print(f"work (1MB): {work['1MB']}")
        if not ok:
            print(f"ABOVE TARGET: 1MB/100KB {report['ratio_1MB_vs_100KB']} > {args.max_ratio}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
