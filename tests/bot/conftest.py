"""A running bot stack for the channel tests: the CRM on the test database with a real event bus (in-process, or
Redis Streams when KEFU_TEST_REDIS_URL is set), the demo shop's knowledge base and Kefu's trained NLU."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.engine import DialogueEngine
from crm_store.bus import build_event_bus
from crm_store.crm import CRM
from kefu.runtime import open_knowledge_base
from kefu.sample_kb import load_sample_kb
from nlu.pipeline import NluModel
from nlu.service import LocalNlu


@dataclass
class Stack:
    crm: CRM
    bus: Any
    engine: DialogueEngine


@pytest.fixture
async def stack(db, settings, encoders, nlu_model_dir: Path) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    stream = f"kefu-test:bot:{uuid.uuid4().hex}"
    bus = build_event_bus(settings.redis_url, stream=stream)
    crm = CRM(db=db, events=bus, settings=settings)
    await load_sample_kb(crm)
    kb = await open_knowledge_base(crm, follow_changes=False, encoders=encoders)
    engine = DialogueEngine(crm=crm, kb=kb, nlu=LocalNlu(NluModel.load(nlu_model_dir, encoders=encoders)))
    try:
        yield Stack(crm, bus, engine)
    finally:
        await bus.close()
        if settings.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(settings.redis_url)
            await client.delete(stream)
            await client.aclose()
