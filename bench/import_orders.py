"""Benchmark of the CSV import: 10,000 customers, then 100,000 orders, into a fresh database; prints one JSON object.

    .venv/bin/python bench/import_orders.py                       # a new SQLite file in a temp dir
    .venv/bin/python bench/import_orders.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

With --database-url (an admin URL), a database `kefu_bench_<random>` is created on that server, used, and dropped.
The progress bar goes to stderr; stdout carries only the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crm_store import models as m
from crm_store.bus import InProcessEventBus
from crm_store.crm import CRM
from crm_store.db import Database
from crm_store.importing import CUSTOMER_COLUMNS, ORDER_COLUMNS, import_customers, import_orders
from crm_store.migrations import upgrade
from crm_store.settings import StoreSettings

SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵"]
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳"]
FIRST = ["Ann", "Bo", "Carl", "Dee", "Eve", "Finn", "Gil", "Hana", "Ivan", "Jo"]
LAST = ["Lee", "Smith", "Garcia", "Chen", "Novak", "Khan", "Silva", "Brown"]
ITEMS = ["Green tea", "Oolong", "Tea cup", "Gift box", "Kettle", "Matcha", "Honey", "Teapot"]
STATUSES = ["paid"] * 7 + ["shipped", "completed", "pending", "refunded"]


def write_customers(path: Path, n: int, rnd: random.Random) -> list[dict[str, str]]:
    """`n` customers (a quarter of them Chinese-speaking); returns them for the orders generator."""
    people = []
    for i in range(n):
        zh = i % 4 == 0
        phone = f"+86 138 {i:04d} {rnd.randrange(10000):04d}" if zh else f"(646) {200 + i // 10000:03d}-{i % 10000:04d}"
        people.append({
            "name": rnd.choice(SURNAMES) + rnd.choice(GIVEN) if zh else f"{rnd.choice(FIRST)} {rnd.choice(LAST)}",
            "email": f"customer{i}@example.com",
            "phone": phone,
            "language": "zh" if zh else "en",
            "tags": "|".join(rnd.sample(["vip", "wholesale", "newsletter", "会员"], rnd.randrange(3))),
            "marketing_consent": rnd.choice(["yes", "no", ""]),
            "external_id": f"C{i:06d}",
        })
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CUSTOMER_COLUMNS)
        writer.writeheader()
        writer.writerows(people)
    return people


def write_orders(path: Path, n: int, people: list[dict[str, str]], rnd: random.Random) -> None:
    """`n` orders naming their customer by external id, e-mail (any case) or phone; 1% for new customers,
    0.1% with a bad amount."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ORDER_COLUMNS)
        writer.writeheader()
        for i in range(n):
            row = {c: "" for c in ORDER_COLUMNS}
            if i % 100 == 99:
                row["customer_email"] = f"walkin{i % 5000}@example.org"
                row["customer_name"] = f"Walk-in {i % 5000}"
            else:
                who = rnd.choice(people)
                how = rnd.random()
                if how < 0.4:
                    row["customer_external_id"] = who["external_id"]
                elif how < 0.8:
                    row["customer_email"] = f"  {who['email'].upper() if rnd.random() < 0.3 else who['email']}"
                else:
                    row["customer_phone"] = who["phone"]
            placed = start + timedelta(seconds=rnd.randrange(365 * 24 * 3600))
            row.update({
                "order_id": f"ORD-{i:07d}",
                "amount": "oops" if i % 1000 == 500 else f"{rnd.randrange(500, 50000) / 100:.2f}",
                "currency": rnd.choice(["USD", "USD", "CNY"]),
                "placed_at": placed.isoformat().replace("+00:00", "Z"),
                "status": rnd.choice(STATUSES),
                "items": "|".join(rnd.sample(ITEMS, rnd.randrange(1, 4))),
            })
            writer.writerow(row)


async def create_database(admin_url: str) -> tuple[str, str]:
    name = f"kefu_bench_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def bench(url: str, workdir: Path, args: argparse.Namespace, bar: Progress) -> dict[str, Any]:
    rnd = random.Random(args.seed)
    customers_csv, orders_csv = workdir / "customers.csv", workdir / "orders.csv"
    people = write_customers(customers_csv, args.customers, rnd)
    write_orders(orders_csv, args.orders, people, rnd)
    await upgrade(url)

    settings = StoreSettings(database_url=url)
    crm = CRM(db=Database(url), events=InProcessEventBus(), settings=settings)
    try:
        t0 = time.perf_counter()
        customers = await import_customers(crm, customers_csv, progress=_bar(bar, "customers"),
                                           batch_size=args.batch_size)
        t1 = time.perf_counter()
        orders = await import_orders(crm, orders_csv, progress=_bar(bar, "orders"), batch_size=args.batch_size)
        t2 = time.perf_counter()
        result: dict[str, Any] = {
            "rows": orders.total,
            "seconds": round(t2 - t1, 2),
            "rows_per_s": round(orders.total / (t2 - t1)),
            "customers": await _count(crm, m.Customer),
            "errors": len(orders.errors),
            "database": crm.db.dialect,
            "orders_created": orders.created,
            "customers_created_by_orders": orders.customers_created,
            "customer_rows": customers.total,
            "customer_seconds": round(t1 - t0, 2),
            "customer_rows_per_s": round(customers.total / (t1 - t0)),
            "batch_size": args.batch_size,
        }
        if args.reimport:
            t3 = time.perf_counter()
            again = await import_orders(crm, orders_csv, progress=_bar(bar, "orders again"),
                                        batch_size=args.batch_size)
            result["reimport_seconds"] = round(time.perf_counter() - t3, 2)
            result["reimport_created"] = again.created
        return result
    finally:
        await crm.close()


def _bar(bar: Progress, label: str) -> Callable[[int, int], None]:
    task = bar.add_task(label, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


async def _count(crm: CRM, model: type[m.Base]) -> int:
    async with crm.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bar = Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=False)
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp, bar:
        workdir = Path(tmp)
        if not args.database_url:
            return await bench(f"sqlite+aiosqlite:///{workdir / 'bench.db'}", workdir, args, bar)
        name, url = await create_database(args.database_url)
        try:
            return await bench(url, workdir, args, bar)
        finally:
            await drop_database(args.database_url, name)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="admin URL of a PostgreSQL server (default: a temp SQLite file)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--reimport", action="store_true", help="also time importing the orders file a second time")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args(sys.argv[1:])))))
