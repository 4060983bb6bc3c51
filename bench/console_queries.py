"""The console's inbox and conversation view on a big PostgreSQL database, next to the raw SQL of the same queries.

    .venv/bin/python bench/console_queries.py [--tickets 100000] [--messages-per-ticket 10] [--runs 200]
        [--admin-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]

A database `kefu_bench_<random>` is created on the server, migrated, seeded by COPY (bench/console_seed.py:
100,000 tickets, 1,000,000 messages by default), measured, and dropped. For each inbox view and for the
conversation view, the service call (crm.inbox: SQL + ORM + DTOs) is timed `--runs` times; the SQL statements it
sent are captured and replayed as they are on a bare asyncpg connection, timed the same way: the difference is
Kefu's own overhead. Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.console_seed import seed  # noqa: E402
from crm_store.bus import InProcessEventBus  # noqa: E402
from crm_store.crm import CRM  # noqa: E402
from crm_store.db import Database  # noqa: E402
from crm_store.dto import InboxFilter  # noqa: E402
from crm_store.migrations import upgrade  # noqa: E402
from crm_store.settings import StoreSettings  # noqa: E402


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3)}


class Capture:
    """The statements (with their parameters) the engine sends while `active`."""

    def __init__(self, db: Database) -> None:
        self.active = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.active:
            self.statements.append((statement, parameters))


async def measure(name: str, runs: int, call: Callable[[int], Awaitable[Any]], capture: Capture,
                  raw: Any) -> dict[str, Any]:
    """Time the service call, then the bare replay of the SQL it sent (warm-up runs excluded)."""
    for i in range(5):
        await call(i)
    service: list[float] = []
    replays: list[list[tuple[str, Any]]] = []
    for i in range(runs):
        capture.statements = []
        capture.active = True
        started = time.perf_counter()
        await call(i)
        service.append(time.perf_counter() - started)
        capture.active = False
        replays.append(list(capture.statements))
    sql: list[float] = []
    for statements in replays:
        started = time.perf_counter()
        for statement, parameters in statements:
            await raw.fetch(statement, *(parameters or ()))
        sql.append(time.perf_counter() - started)
    queries = statistics.mean(len(s) for s in replays)
    result = {"service": percentiles(service), "raw_sql": percentiles(sql), "statements_per_call": queries}
    say(f"{name}: service {result['service']}, raw SQL {result['raw_sql']}, {queries:.1f} statements")
    return result


async def measure_pages(crm: CRM, runs: int, active: list[int], rnd: random.Random) -> dict[str, Any]:
    """The whole pages as a signed-in supervisor gets them (ASGI, in process: routing, session and permission
    checks, the queries, Jinja2 rendering)."""
    from datetime import timedelta

    import httpx

    from console.app import create_console_app
    from console.settings import ConsoleSettings
    from console.throttle import MemoryLoginThrottle

    app = create_console_app(crm=crm, settings=ConsoleSettings(_env_file=None), throttle=MemoryLoginThrottle())
    supervisor = next(a for a in await crm.agents.list_agents() if a.role == "supervisor")
    session = await crm.agents.start_session(agent_id=supervisor.id, ttl=timedelta(hours=1))
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.bench") as client:
        client.cookies.set("kefu_session", session.token, domain="console.bench")
        targets = {"inbox_page": lambda: "/inbox",
                   "conversation_page": lambda: f"/conversations/{rnd.choice(active)}"}
        for name, path in targets.items():
            samples = []
            for i in range(runs + 5):
                started = time.perf_counter()
                response = await client.get(path())
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{path()}: {response.status_code}")
                if i >= 5:
                    samples.append(elapsed)
            results[name] = percentiles(samples)
            say(f"{name}: {results[name]}")
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin = make_url(args.admin_url)
    name = f"kefu_bench_{uuid.uuid4().hex[:8]}"
    admin_engine = create_async_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    async with admin_engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        db = Database(url)
        started = time.perf_counter()
        counts = await seed(db.engine, tickets=args.tickets, messages_per_ticket=args.messages_per_ticket,
                            customers=max(1000, args.tickets // 2), say=say)
        seed_s = time.perf_counter() - started
        crm = CRM(db=db, events=InProcessEventBus(), settings=StoreSettings(database_url=url))
        capture = Capture(db)
        rnd = random.Random(3)
        async with db.engine.connect() as conn:
            agents = [r[0] for r in (await conn.execute(text("SELECT id FROM agents WHERE role = 'agent'"))).all()]
            teams = [r[0] for r in (await conn.execute(text("SELECT id FROM teams"))).all()]
            active = [r[0] for r in (await conn.execute(text(
                "SELECT conversation_id FROM tickets WHERE status IN ('new', 'open', 'pending')"))).all()]
            raw_connection = await conn.get_raw_connection()
            raw = raw_connection.driver_connection
            views: dict[str, Callable[[int], Awaitable[Any]]] = {
                "inbox_all_active": lambda i: crm.inbox.tickets(viewer_id=agents[0], view=InboxFilter()),
                "inbox_mine_agent_visibility": lambda i: crm.inbox.tickets(
                    viewer_id=agents[i % len(agents)], view=InboxFilter(assignee="me"),
                    visible_to=agents[i % len(agents)]),
                "inbox_unassigned": lambda i: crm.inbox.tickets(viewer_id=agents[0],
                                                                view=InboxFilter(assignee="unassigned")),
                "inbox_team": lambda i: crm.inbox.tickets(viewer_id=agents[0],
                                                          view=InboxFilter(team_id=teams[i % len(teams)])),
                "inbox_overdue_urgent": lambda i: crm.inbox.tickets(
                    viewer_id=agents[0], view=InboxFilter(overdue=True, priorities=("urgent", "high"))),
                "inbox_counts": lambda i: crm.inbox.counts(viewer_id=agents[i % len(agents)]),
                "conversation_view": lambda i: crm.inbox.conversation_page(conversation_id=rnd.choice(active)),
            }
            results = {view: await measure(view, args.runs, call, capture, raw) for view, call in views.items()}
            pages = await measure_pages(crm, args.runs, active, rnd)
        await db.dispose()
        return {"benchmark": "console_queries", "database": "postgresql", "rows": counts,
                "seed_s": round(seed_s, 1), "runs": args.runs, "page_size": 50, "views": results,
                "pages_http": pages}
    finally:
        async with admin_engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages-per-ticket", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
