"""What the running app holds: built at start-up, closed at shut-down."""

from __future__ import annotations

from dataclasses import dataclass

from common.executors.base import Executor
from common.identity import Identity
from common.jobs.service import JobService
from common.runtime import Runtime
from common.settings import Settings
from web.hub import EventHub


@dataclass
class AppState:
    settings: Settings
    runtime: Runtime
    executor: Executor
    jobs: JobService
    hub: EventHub
    identity: Identity
