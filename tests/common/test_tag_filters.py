"""Tag filters on SQLite and PostgreSQL: the tag is bound as JSON, never spliced into
SQL or JSON text, so quotes, backslashes, control characters and non-ASCII text find
exactly the rows that carry them (a hand-escaped JSON literal made PostgreSQL fail on
a control character)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from common.datasets import DatasetFilter, Datasets
from common.jobs import JobStore
from common.jobs.queries import JobFilter, JobQueries
from common.records import make_engine, make_sessionmaker, migrate

TAGS = ["plain", 'quote"inside', "back\\slash", "ctrl\x0echar", "tab\there", "ünïcode ✓", '["x"]']


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_job_tag_filter_finds_exactly_the_tagged(db: sessionmaker[Session]) -> None:
    jobs, queries = JobStore(db), JobQueries(db)
    owner = uuid.uuid4()
    ids = {
        tag: jobs.create(
            function="noop", params={}, executor="local", owner_id=owner, tags=[tag]
        ).id
        for tag in TAGS
    }
    for tag, job_id in ids.items():
        found, total = queries.find(JobFilter(owner_id=owner, tag=tag))
        assert [job.id for job in found] == [job_id] and total == 1, tag
        assert queries.stats(JobFilter(owner_id=owner, tag=tag)).total == 1
    assert queries.find(JobFilter(owner_id=owner, tag="quote"))[1] == 0  # whole tags only


def test_dataset_tag_filter_finds_exactly_the_tagged(db: sessionmaker[Session]) -> None:
    datasets = Datasets(db)
    owner = uuid.uuid4()
    ids = {tag: datasets.create(owner_id=owner, name=tag, tags=[tag]).id for tag in TAGS}
    for tag, dataset_id in ids.items():
        found, total = datasets.find(DatasetFilter(owner_id=owner, tag=tag))
        assert [d.id for d in found] == [dataset_id] and total == 1, tag
