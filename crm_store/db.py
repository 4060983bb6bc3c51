"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine; for SQLite: WAL, foreign keys, a busy timeout and write-locking transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # Look-ups by key lists go out as prepared `IN ($1 .. $500)` statements; after five runs PostgreSQL may
        # switch to a generic plan that is ~50x slower on them (measured by the orders import). Custom plans
        # cost a little planning time on every statement and avoid that cliff.
        return create_async_engine(
            url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
            # timeout: a connection attempt to a server that is down fails in seconds, not asyncpg's minute.
            connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}, "timeout": 5},
        )
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, echo=echo, pool_pre_ping=True)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling starts transactions late and as DEFERRED, so two writers that both
    # read first deadlock ("database is locked"). Kefu takes the write lock at BEGIN instead (BEGIN IMMEDIATE):
    # writers queue on the busy timeout, and a read-check-write use case (a redemption) is serialized.
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and its session factory; built by the entry point and passed down."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()
