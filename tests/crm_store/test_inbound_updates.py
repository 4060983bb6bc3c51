"""Channels' raw updates: stored once, claimed by one process, handed out again when a process died mid-way."""

from __future__ import annotations

import asyncio
from datetime import timedelta


def update(update_id: int, text: str = "hi") -> dict:
    return {"update_id": update_id, "message": {"message_id": 1, "text": text, "chat": {"id": 5, "type": "private"}}}


async def test_an_update_is_stored_once_and_a_redelivery_is_recognised(crm) -> None:
    first = await crm.updates.store(channel="telegram", bot_id="42", update_id=7, payload=update(7), chat_id="5")
    again = await crm.updates.store(channel="telegram", bot_id="42", update_id=7, payload=update(7, "changed"))
    assert first.new and not again.new and again.id == first.id and not again.handled
    assert again.payload["message"]["text"] == "hi"  # what was stored first stands
    await crm.updates.handled(stored_id=first.id)
    assert (await crm.updates.store(channel="telegram", bot_id="42", update_id=7, payload=update(7))).handled
    # Update ids are per bot.
    other_bot = await crm.updates.store(channel="telegram", bot_id="43", update_id=7, payload=update(7))
    assert other_bot.new
    assert await crm.updates.counts(channel="telegram") == {"stored": 2, "unhandled": 1}


async def test_concurrent_redeliveries_store_one_row(crm, is_postgres) -> None:
    results = await asyncio.gather(*(
        crm.updates.store(channel="telegram", bot_id="42", update_id=99, payload=update(99)) for _ in range(6)
    ))
    assert sum(r.new for r in results) == 1
    assert len({r.id for r in results}) == 1


async def test_an_update_left_unhandled_is_claimed_again_after_its_lease_by_one_process(crm) -> None:
    stored = await crm.updates.store(channel="telegram", bot_id="42", update_id=1, payload=update(1))
    done = await crm.updates.store(channel="telegram", bot_id="42", update_id=2, payload=update(2))
    await crm.updates.handled(stored_id=done.id)
    # Claimed by the process that stored it: not due while its lease runs.
    assert await crm.updates.claim_due(channel="telegram", bot_id="42", lease=timedelta(minutes=5)) == []
    await crm.updates.failed(stored_id=stored.id, error="database went away")
    # Lease over: exactly one of two racing processes takes it (the winner's claim starts a new lease).
    await asyncio.sleep(1.1)
    first, second = await asyncio.gather(
        crm.updates.claim_due(channel="telegram", bot_id="42", lease=timedelta(seconds=1)),
        crm.updates.claim_due(channel="telegram", bot_id="42", lease=timedelta(seconds=1)),
    )
    claimed = first + second
    assert [c.update_id for c in claimed] == [1]
    assert claimed[0].payload == update(1)
