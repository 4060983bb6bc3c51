"""The Alembic chain builds the schema on an empty database, agrees with the models, and goes both ways."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crm_store.db import create_engine
from crm_store.migrations import current_revision, downgrade, upgrade
from crm_store.models import Base
from tests.support import table_names


async def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
            )
    finally:
        await engine.dispose()


async def test_upgrade_builds_every_table_and_matches_the_models(fresh_database_url) -> None:
    url = fresh_database_url()
    await upgrade(url)
    assert await current_revision(url) is not None
    assert set(Base.metadata.tables) <= await table_names(url)
    assert await _diff(url) == []


async def test_models_and_migrations_disagree_is_detected(fresh_database_url) -> None:
    """The agreement check can fail: an empty database differs from the models."""
    url = fresh_database_url()
    diff = await _diff(url)
    assert any(op[0] == "add_table" for op in diff)


async def test_downgrade_to_base_and_up_again(fresh_database_url) -> None:
    url = fresh_database_url()
    await upgrade(url)
    await downgrade(url, "base")
    assert await table_names(url) <= {"alembic_version"}
    await upgrade(url)
    assert await _diff(url) == []
