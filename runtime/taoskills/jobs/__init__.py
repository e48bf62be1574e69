"""Jobs: the durable job store, status.json monitor and failure analysis.

* :mod:`taoskills.jobs.store` - :class:`JobStore` (SQLite, WAL), :class:`JobRecord`,
  job states and the no-secrets rule.
* :mod:`taoskills.jobs.monitor` - :func:`read_status`, :func:`progress` -> :class:`StatusSummary`.
* :mod:`taoskills.jobs.failure` - :func:`analyze_failure` -> :class:`FailureAnalysis`.
"""

from taoskills.jobs.failure import FailureAnalysis, FailureMatch, analyze_failure
from taoskills.jobs.monitor import StatusSummary, progress, read_status, status_path
from taoskills.jobs.store import (
    JOB_STATES,
    TERMINAL_STATES,
    JobRecord,
    JobState,
    JobStore,
    check_no_secrets,
    is_env_reference,
    is_secret_key,
    new_job_id,
    utc_now,
)

__all__ = [
    "JOB_STATES",
    "TERMINAL_STATES",
    "FailureAnalysis",
    "FailureMatch",
    "JobRecord",
    "JobState",
    "JobStore",
    "StatusSummary",
    "analyze_failure",
    "check_no_secrets",
    "is_env_reference",
    "is_secret_key",
    "new_job_id",
    "progress",
    "read_status",
    "status_path",
    "utc_now",
]
