"""Jobs: statuses, compare-and-set transitions, events, the runner shared by every executor."""

from common.jobs.models import JobError, JobEventRecord, JobRecord
from common.jobs.status import ACTIVE, TERMINAL, Status
from common.jobs.store import JobStore

__all__ = ["ACTIVE", "TERMINAL", "JobError", "JobEventRecord", "JobRecord", "JobStore", "Status"]
