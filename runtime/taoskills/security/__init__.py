"""Hostile-input defences shared by every surface (MCP, CLI) and the job runner.

* :mod:`.redact` - one redaction layer: secret environment values, credentials inside
  URLs and literal values under secret-named keys are scrubbed from replies, log slices,
  job records and rendered files.
* :mod:`.inputs` - guards on caller-supplied values (interpolations, control characters,
  non-finite and absurd numbers, size caps, credentials in URLs).
* :mod:`.env` - the minimal environment a job runs with (allowlist + named secrets).
* :mod:`.launch` - launch only what can run (checkpoint header checks, one job per
  resume source).
* :mod:`.grep` - linear-time log filters (RE2).
* :mod:`.guard` - the MCP argument guard (a middleware: hostile arguments refused before a
  tool runs, SDK errors rewritten to the JSON error shape).
* :mod:`.transport` - JSON-RPC hygiene at the MCP transport edge (stdio framing, HTTP
  auth and per-client session caps).
"""
