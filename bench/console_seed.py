"""Seed a PostgreSQL database for the console benchmark: 100,000 tickets and 1,000,000 messages by default.

Used by bench/console_queries.py. Rows go in with PostgreSQL's COPY (asyncpg), after the Alembic chain built the
schema, so the seeded data has exactly the production indexes. The shape follows a busy shop: most tickets
resolved, a working set of new/open/pending ones spread over agents, teams, channels and SLA deadlines (some
overdue), about ten messages per conversation.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

FIRST = ["Ann", "Bo", "Carl", "Dee", "Eve", "Finn", "Gil", "Hana", "Ivan", "Jo", "王伟", "李娜", "张敏", "陈静"]
LAST = ["Lee", "Smith", "Garcia", "Chen", "Novak", "Khan", "Silva", "Brown", "", "", "", ""]
STATUSES = ["new"] * 6 + ["open"] * 10 + ["pending"] * 4 + ["resolved"] * 70 + ["closed"] * 10
PRIORITIES = ["low"] * 2 + ["normal"] * 6 + ["high"] * 2 + ["urgent"]
LINES = ["Where is my order?", "The parcel arrived broken.", "Can I change the delivery address?",
         "我的积分怎么用？", "I was charged twice.", "Do you ship to Canada?", "Thanks, that helps!",
         "订单什么时候发货？", "Can I return an opened tea box?", "My discount code does not work."]


async def copy(engine: AsyncEngine, table: str, columns: list[str], records: list[tuple[Any, ...]]) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(table, records=records, columns=columns)  # type: ignore[union-attr]
        await conn.commit()


async def seed(engine: AsyncEngine, *, tickets: int = 100_000, messages_per_ticket: int = 10,
               customers: int = 50_000, agents: int = 20, seed_value: int = 7,
               say: Any = print) -> dict[str, int]:
    """Fill an empty, migrated database; returns the row counts."""
    rnd = random.Random(seed_value)
    now = datetime.now(UTC)
    start = now - timedelta(days=365)

    async with engine.begin() as conn:
        for name in ("Support", "VIP care"):
            await conn.execute(text("INSERT INTO teams (name, description, created_at, updated_at) "
                                    "VALUES (:n, '', :t, :t)"), {"n": name, "t": now})
        team_ids = [r[0] for r in (await conn.execute(text("SELECT id FROM teams ORDER BY id"))).all()]
    await copy(engine, "agents", ["email", "name", "role", "password_hash", "active", "team_id", "language",
                                  "created_at", "updated_at"],
               [(f"agent{i}@bench.example", f"Agent {i}", "supervisor" if i == 0 else "agent", "x", True,
                 team_ids[i % len(team_ids)], "en", now, now) for i in range(agents)])
    say(f"{agents} agents")

    await copy(engine, "customers", ["name", "language", "tags", "marketing_consent", "created_at", "updated_at"],
               [(f"{rnd.choice(FIRST)} {rnd.choice(LAST)}".strip(), "zh" if i % 4 == 0 else "en", "[]",
                 i % 3 == 0, start, start) for i in range(customers)])
    await copy(engine, "channel_identities", ["customer_id", "channel", "external_id", "display_name",
                                              "created_at"],
               [(i + 1, "telegram" if i % 2 else "webchat", f"bench-{i}", "", start) for i in range(customers)])
    say(f"{customers} customers with a chat each")

    conversations, ticket_rows = [], []
    for i in range(tickets):
        customer = rnd.randrange(customers) + 1
        opened = start + timedelta(seconds=rnd.randrange(365 * 86400))
        status = rnd.choice(STATUSES)
        priority = rnd.choice(PRIORITIES)
        assignee = None if status == "new" or rnd.random() < 0.05 else rnd.randrange(agents) + 1
        team = team_ids[rnd.randrange(len(team_ids))]
        channel = "telegram" if customer % 2 == 0 else "webchat"
        active = status in ("new", "open", "pending")
        due = now + timedelta(minutes=rnd.randrange(-2 * 1440, 3 * 1440)) if active else None
        resolved = None if active else opened + timedelta(hours=rnd.randrange(1, 96))
        conversation_status = {"new": "pending", "open": "open", "pending": "open"}.get(status, "resolved")
        conversations.append((customer, customer, conversation_status, assignee, team, priority, opened, opened,
                              opened + timedelta(minutes=messages_per_ticket), resolved))
        ticket_rows.append((i + 1, customer, LINES[i % len(LINES)], priority, status, assignee, team, due, due,
                            due, channel, resolved, opened, opened, "{}"))
    await copy(engine, "conversations", ["customer_id", "identity_id", "status", "assignee_id", "team_id",
                                         "priority", "created_at", "updated_at", "last_message_at", "resolved_at"],
               conversations)
    await copy(engine, "tickets", ["conversation_id", "customer_id", "subject", "priority", "status", "assignee_id",
                                   "team_id", "sla_due_at", "first_response_due_at", "resolution_due_at", "channel",
                                   "resolved_at", "created_at", "updated_at", "context"], ticket_rows)
    say(f"{tickets} conversations and tickets")

    senders = [("incoming", "customer"), ("outgoing", "bot"), ("incoming", "customer"), ("outgoing", "agent")]
    batch: list[tuple[Any, ...]] = []
    total = 0
    for conversation_id, row in enumerate(conversations, start=1):
        opened = row[6]
        for k in range(messages_per_ticket):
            direction, sender = senders[k % len(senders)]
            batch.append((conversation_id, direction, sender, LINES[(conversation_id + k) % len(LINES)],
                          json.dumps({}), False, "delivered", opened + timedelta(seconds=30 * k)))
        if len(batch) >= 100_000:
            await copy(engine, "messages", ["conversation_id", "direction", "sender", "text", "payload", "is_private",
                                            "delivery_status", "created_at"], batch)
            total += len(batch)
            batch = []
            say(f"{total} messages")
    if batch:
        await copy(engine, "messages", ["conversation_id", "direction", "sender", "text", "payload", "is_private",
                                        "delivery_status", "created_at"], batch)
        total += len(batch)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    say(f"{total} messages; analyzed")
    return {"agents": agents, "customers": customers, "tickets": tickets, "messages": total}
