"""``tao-skills-engine <network> <action> -e spec.yaml [results_dir=DIR] [dotted.key=value ...]``.

Mirrors TAO's in-container entrypoint (docs/tao-contract.md §3.1): extra arguments are
Hydra-style dot overrides, ``results_dir=DIR`` (or ``-r DIR``) sets the results root, and the
last line printed is ``Execution status: PASS`` (exit 0) or ``Execution status: FAIL`` (exit 1).
An unknown network or action prints what is supported and exits 2 (after ``FAIL``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from taoskills.engine import registry
from taoskills.errors import TaoSkillsError

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _runner(network: str, action: str):
    """(action function, defaults, defaults source) of a registered network/action."""
    desc = registry.get(network)
    if desc is None:
        raise KeyError(network)
    defaults, source = desc.spec_defaults()
    return desc.action_fn(action), defaults, source


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tao-skills-engine",
        description="Built-in TAO-compatible engine. Supported: " + registry.describe(),
        epilog="Extra arguments are dot overrides, e.g. results_dir=/out train.num_epochs=5.",
    )
    p.add_argument("network", help="network_arch, e.g. nvdinov2")
    p.add_argument("action", help="action, e.g. train, inference, export")
    p.add_argument("-e", "--experiment_spec_file", required=True, help="path to the TAO spec YAML")
    p.add_argument("-r", "--results_dir", default=None, help="results root (same as results_dir=DIR)")
    return p


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run one action; returns the exit code (0 PASS, 1 FAIL, 2 unknown network/action or usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, overrides = _parser().parse_known_args(argv)
    except SystemExit as exc:  # argparse usage error or --help
        if exc.code not in (0, None):
            print("Execution status: FAIL", flush=True)
            return EXIT_USAGE
        return EXIT_PASS
    if not registry.supports(args.network, args.action):
        desc = registry.get(args.network)
        if desc is not None:
            msg = (
                f"Action {args.action!r} is not supported for {args.network} by the built-in engine; "
                f"supported actions: {', '.join(desc.actions)}. Run it with the TAO engine (engine='tao': the TAO container)."
            )
        else:
            msg = (
                f"Network {args.network!r} is not supported by the built-in engine; supported: {registry.describe()}. "
                "Run other networks with the TAO container engine."
            )
        print(f"ERROR: {msg}", file=sys.stderr, flush=True)
        print("Execution status: FAIL", flush=True)
        return EXIT_USAGE
    _setup_logging()
    if args.results_dir:
        overrides.append(f"results_dir={args.results_dir}")
    unknown_flags = [o for o in overrides if o.startswith("-")]
    if unknown_flags:
        print(f"ERROR: unknown option(s) {unknown_flags}; overrides are written key=value.", file=sys.stderr)
        print("Execution status: FAIL", flush=True)
        return EXIT_USAGE
    from taoskills.engine import contract
    from taoskills.engine.spec import apply_defaults, load_spec

    resolved: dict = {}
    try:
        resolved, raw = load_spec(args.experiment_spec_file, overrides)
        fn, defaults, source = _runner(args.network, args.action)
        cfg = apply_defaults(resolved, defaults, source=source)
    except TaoSkillsError as exc:
        logging.getLogger("taoskills.engine").error("%s", exc)
        # Record the failure where TAO would, if the results folder is known.
        try:
            out = contract.action_dir(resolved, args.action)
            out.mkdir(parents=True, exist_ok=True)
            contract.StatusLogger(out / "status.json").write("FAILURE", str(exc), verbosity="ERROR")
        except Exception:  # noqa: BLE001 - results_dir unknown: nothing to record
            pass
        print("Execution status: FAIL", flush=True)
        return EXIT_FAIL
    code = contract.run_action(args.network, args.action, cfg, fn, raw_cfg=raw)
    print(f"Execution status: {'PASS' if code == 0 else 'FAIL'}", flush=True)
    return EXIT_PASS if code == 0 else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
