"""tao-skills runtime: skill catalog, routing, specs, preflight, runners, jobs, checkpoints.

The service API (:mod:`taoskills.service`) is the one entry point; the CLI and the MCP
server are thin skins over it. The built-in engine lives in :mod:`taoskills.engine`.
"""

__version__ = "0.1.0"
