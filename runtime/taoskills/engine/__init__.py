"""The built-in engine: real PyTorch training that speaks TAO's CLI and results contract.

``tao-skills-engine <network> <action> -e spec.yaml [results_dir=DIR] [key=value ...]``
(or ``python -m taoskills.engine``) behaves like TAO's in-container entrypoint: it reads a
TAO spec, writes ``<results_dir>/<action>/status.json`` (JSON Lines), ``experiment.yaml``
and TAO-named checkpoints, and ends by printing ``Execution status: PASS|FAIL``.

Importing this package does not import torch; :mod:`taoskills.engine.registry` says what can
run (one descriptor per network, discovered from ``<net>/descriptor.py``). Output formats are
described in ``README.md`` next to this file.
"""

from taoskills.engine.registry import supports

__all__ = ["supports"]
