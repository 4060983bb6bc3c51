"""Test helpers shared by every package's tests: a recording bus and factories (plain functions)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from crm_store.bus import Handler
from crm_store.events import DomainEvent


class RecordingBus:
    """An EventBus that keeps what was published, so a test can assert on it."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.subscriptions: list[tuple[str, Handler]] = []

    async def publish(self, event: DomainEvent) -> None:
        self.published.append(event)

    def subscribe(self, group: str, handler: Handler) -> None:
        """Kept, never called: a recording bus delivers nothing (the console subscribes at start-up)."""
        self.subscriptions.append((group, handler))

    def broadcast(self, name: str, handler: Handler) -> None:
        self.subscriptions.append((f"broadcast:{name}", handler))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def of(self, event_type: type[DomainEvent]) -> list[DomainEvent]:
        return [e for e in self.published if isinstance(e, event_type)]


async def make_agent(crm, *, email: str = "agent@example.com", role: str = "agent", name: str = "Agent"):  # type: ignore[no-untyped-def]
    """An active agent (factory)."""
    return await crm.agents.create_agent(email=email, name=name, password="correct horse", role=role)


async def make_chat(crm, *, external_id: str = "1001", text: str = "hello", channel: str = "telegram",  # type: ignore[no-untyped-def]
                    message_id: str | None = None):
    """A customer who wrote once on a chat channel (factory)."""
    return await crm.conversations.record_incoming(
        channel=channel, external_id=external_id, text=text, channel_message_id=message_id
    )


async def make_tiers(crm):  # type: ignore[no-untyped-def]
    """Silver (0), Gold (1000), Platinum (5000)."""
    return [
        await crm.loyalty.define_tier(name="Silver", threshold=0, names={"zh": "银卡"}),
        await crm.loyalty.define_tier(name="Gold", threshold=1000, names={"zh": "金卡"}),
        await crm.loyalty.define_tier(name="Platinum", threshold=5000, names={"zh": "白金卡"}),
    ]


async def table_names(url: str) -> set[str]:
    """The tables that exist in the database at `url`."""
    from sqlalchemy import inspect

    from crm_store.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app on a real uvicorn server on 127.0.0.1 (a free port); yields its base URL."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Accepted connections inherit it: without, every response waits ~40 ms for a delayed ACK (Nagle), as
    # uvicorn does not set it on sockets it is handed.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


async def personal_data_left(db: Any, needles: list[str]) -> list[tuple[str, str, str]]:
    """Every (table, column, value) in the whole database that holds one of `needles` (case aside): all tables,
    all columns, JSON and bytes included. An erasure test expects none."""
    import json

    from sqlalchemy import MetaData, select

    metadata = MetaData()
    async with db.engine.connect() as conn:
        await conn.run_sync(metadata.reflect)
        found = []
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    if isinstance(value, bytes):
                        shown = value.decode("utf-8", "ignore")
                    elif isinstance(value, dict | list):
                        shown = json.dumps(value, ensure_ascii=False)
                    else:
                        shown = str(value)
                    if any(needle.lower() in shown.lower() for needle in needles):
                        found.append((table.name, column, shown[:200]))
    return found


def write_file(path: Path, content: str | bytes) -> Path:
    """`content` into `path` as it is: text as UTF-8 with its own line ends, or bytes."""
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path
