"""Everything a process needs, built once from settings and held for its life: the web
server, a local worker process and a Modal container each make one. The stores over the
database and the objects live here, so nothing builds its own per request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.capabilities import load_capabilities
from common.datasets import Datasets
from common.files import FileCatalog, Files
from common.jobs.queries import JobQueries
from common.jobs.store import JobStore
from common.objects import ObjectStore
from common.records import make_engine, make_sessionmaker
from common.settings import Settings
from common.slides import Slides
from common.uploads import Uploads


def _nothing(*_args: Any) -> None:
    return None


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    db: sessionmaker[Session]
    objects: ObjectStore
    jobs: JobStore
    queries: JobQueries
    files: Files
    catalog: FileCatalog
    datasets: Datasets
    uploads: Uploads
    slides: Slides
    #: Hands a newly created child job to the executor (the local pool finds queued jobs
    #: itself, so its hook does nothing; Modal's spawns a FunctionCall).
    submit: Callable[[uuid.UUID], None] = field(default=_nothing)
    #: Tells the executor this worker blocks on children (the local pool lends a slot).
    waiting: Callable[[bool], None] = field(default=_nothing)

    @classmethod
    def from_settings(cls, settings: Settings, **hooks: Any) -> Runtime:
        from common.objects import make_store

        load_capabilities(settings.extra_capabilities)
        engine = make_engine(settings.resolved_database_url)
        db = make_sessionmaker(engine)
        objects = make_store(settings)
        files = Files(db, objects)
        return cls(
            settings=settings,
            engine=engine,
            db=db,
            objects=objects,
            jobs=JobStore(db),
            queries=JobQueries(db),
            files=files,
            catalog=FileCatalog(db),
            datasets=Datasets(db),
            uploads=Uploads(files, settings),
            slides=Slides(db),
            **hooks,
        )

    def close(self) -> None:
        self.engine.dispose()
