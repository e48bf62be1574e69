"""``python -m taoskills.automl run|worker <run_dir>``: the AutoML controller process.

``run``: the controller of an AutoML job (recovers trials a dead controller left running,
then runs trials, then writes best_rec and the report). ``worker``: an extra process on the
same study (new trials only; no recovery, no final report). Exit code 0 when a trial
completed, 1 when all failed, 2 when canceled.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("run", "worker"):
        print("usage: python -m taoskills.automl run|worker <run_dir>", file=sys.stderr)
        return 64
    from taoskills.automl.runner import run

    return run(args[1], worker=args[0] == "worker")


if __name__ == "__main__":
    sys.exit(main())
