"""The `kefu` command line, run for real in a subprocess against a fresh database (SQLite, or PostgreSQL when
KEFU_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from crm_store.crm import CRM
from crm_store.models import Base
from crm_store.settings import StoreSettings
from kefu.runtime import crm_session
from kefu.sample_data import DEMO_AGENTS
from tests import support

ROOT = Path(__file__).resolve().parents[2]


def kefu(
    *args: str, cwd: Path, database_url: str | None = None, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m kefu.cli ARGS` with no KEFU_* variables but the database URL given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if database_url is not None:
        env["KEFU_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "kefu.cli", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
        timeout=timeout,
        start_new_session=True,  # no controlling terminal: a hidden prompt reads stdin, never the developer's tty
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def on_crm(url: str, use: Callable[[CRM], object]) -> object:
    async def run() -> object:
        async with crm_session(StoreSettings(database_url=url)) as crm:
            return await use(crm)  # type: ignore[misc]

    return asyncio.run(run())


def table_names(url: str) -> set[str]:
    return asyncio.run(support.table_names(url))


@pytest.fixture
def new_db(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    """An empty database: a new SQLite file, or a new PostgreSQL database on the test server."""
    return fresh_database_url()


# --- kefu db -----------------------------------------------------------------------------------------------


def test_db_upgrade_builds_the_schema_on_a_new_database(new_db: str, tmp_path: Path) -> None:
    assert not set(Base.metadata.tables) & table_names(new_db)

    result = kefu("db", "upgrade", cwd=tmp_path, database_url=new_db)

    assert result.returncode == 0, result.stderr
    assert set(Base.metadata.tables) <= table_names(new_db)
    revision = result.stdout.strip().rsplit(" ", 1)[-1].rstrip(".")
    assert revision and revision != "(none)"
    current = kefu("db", "current", cwd=tmp_path, database_url=new_db)
    assert current.returncode == 0 and f"at revision {revision}." in current.stdout
    again = kefu("db", "upgrade", cwd=tmp_path, database_url=new_db)  # idempotent
    assert again.returncode == 0 and f"at revision {revision}." in again.stdout


def test_db_upgrade_creates_the_sqlite_folder(tmp_path: Path) -> None:
    result = kefu("db", "upgrade", cwd=tmp_path, database_url="sqlite+aiosqlite:///data/nested/kefu.db")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "nested" / "kefu.db").is_file()


def test_an_unreachable_database_is_a_one_line_error(tmp_path: Path) -> None:
    result = kefu("db", "upgrade", cwd=tmp_path, database_url="postgresql+asyncpg://kefu:secret@127.0.0.1:1/kefu")
    assert_one_line_error(result, "cannot reach the database", "127.0.0.1:1")
    assert "secret" not in result.stderr


def test_an_unknown_revision_is_a_one_line_error(new_db: str, tmp_path: Path) -> None:
    assert_one_line_error(kefu("db", "upgrade", "--revision", "nope", cwd=tmp_path, database_url=new_db), "nope")


# --- kefu demo ---------------------------------------------------------------------------------------------


def sqlite_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_demo_on_a_fresh_directory_prints_the_agents_credentials_twice(tmp_path: Path) -> None:
    first = kefu("demo", "--no-serve", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    database = tmp_path / "var" / "kefu.db"  # the default KEFU_DATABASE_URL
    assert database.is_file()
    for agent in DEMO_AGENTS:
        assert agent.email in first.stdout and agent.password in first.stdout
    assert "12 customers, 30 orders, 3 loyalty tiers, 5 rewards, 3 agents" in first.stdout
    assert "36 FAQ articles, 2 training courses" in first.stdout
    assert "kefu import customers FILE" in first.stdout
    counts = {t: sqlite_count(database, t) for t in ("customers", "orders", "agents", "messages")}

    second = kefu("demo", "--no-serve", cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    assert "nothing added" in second.stdout
    for agent in DEMO_AGENTS:
        assert agent.email in second.stdout and agent.password in second.stdout
    assert {t: sqlite_count(database, t) for t in counts} == counts


def test_demo_reset_starts_over(tmp_path: Path) -> None:
    assert kefu("demo", "--no-serve", cwd=tmp_path).returncode == 0
    database = tmp_path / "var" / "kefu.db"
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO teams (name, description, created_at, updated_at) "
                     "VALUES ('Leftover', '', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")

    result = kefu("demo", "--no-serve", "--reset", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "nothing added" not in result.stdout
    assert sqlite_count(database, "teams") == 2  # the leftover went with the old file


def test_demo_loads_into_a_database_server_only_when_asked(new_db: str, tmp_path: Path) -> None:
    """Its agents' passwords are printed and the same everywhere: a KEFU_DATABASE_URL left pointing at production
    must not get them."""
    server = "postgresql+asyncpg://kefu:s3cret@db.invalid:5432/kefu"
    refused = kefu("demo", "--no-serve", cwd=tmp_path, database_url=server)
    assert_one_line_error(refused, "only into an SQLite file", "--server-database", "db.invalid")
    assert "s3cret" not in refused.stderr and not (tmp_path / "var").exists()

    asked = kefu("demo", "--no-serve", "--server-database", cwd=tmp_path, database_url=new_db)
    assert asked.returncode == 0, asked.stderr
    assert DEMO_AGENTS[0].email in asked.stdout


# --- kefu import -------------------------------------------------------------------------------------------


def test_import_customers_reports_bad_rows_and_loads_the_rest(new_db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "name,email,phone,language,tags,marketing_consent\n"
        "Ada Lovelace,ada@example.com,+1 415 555 0100,en,vip,yes\n"
        "Bad Row,not-an-email,,en,,\n"
        "王小明,wang@example.cn,+86 138 0013 8000,zh,,no\n",
        encoding="utf-8",
    )

    result = kefu("import", "customers", str(csv_file), cwd=tmp_path, database_url=new_db)  # upgrades first

    assert result.returncode == 0, result.stderr
    assert "line 3:" in result.stdout
    assert "line 2:" not in result.stdout and "line 4:" not in result.stdout
    assert "customers: 3 rows" in result.stdout

    async def found(crm: CRM) -> list[object]:
        return [await crm.customers.find_by_contact(email=e) for e in ("ada@example.com", "wang@example.cn")]

    ada, wang = on_crm(new_db, found)  # type: ignore[misc]
    assert ada is not None and wang is not None and wang.language == "zh"


def test_import_lists_at_most_fifty_bad_lines(new_db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text("name,email\n" + "".join(f"Nobody {n},nobody-{n}\n" for n in range(60)), encoding="utf-8")

    result = kefu("import", "customers", str(csv_file), cwd=tmp_path, database_url=new_db)

    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if line.startswith("line ")]
    assert len(listed) == 50 and listed[0].startswith("line 2:")
    assert "... and 10 more" in result.stdout


def test_import_orders_reports_bad_rows(new_db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text(
        "order_id,customer_email,customer_name,amount,currency,placed_at,status\n"
        "A-1,grace@example.com,Grace Kim,120.50,USD,2026-05-01T10:00:00Z,paid\n"
        "A-2,grace@example.com,Grace Kim,lots,USD,2026-05-02T10:00:00Z,paid\n",
        encoding="utf-8",
    )

    result = kefu("import", "orders", str(csv_file), cwd=tmp_path, database_url=new_db)

    assert result.returncode == 0, result.stderr
    assert "line 3:" in result.stdout and "line 2:" not in result.stdout

    async def grace_points(crm: CRM) -> int:
        grace = await crm.customers.find_by_contact(email="grace@example.com")
        assert grace is not None
        return (await crm.loyalty.summary(customer_id=grace.id)).balance

    assert on_crm(new_db, grace_points) == 120


def test_import_of_an_unusable_file_is_a_one_line_error(new_db: str, tmp_path: Path) -> None:
    assert_one_line_error(
        kefu("import", "customers", str(tmp_path / "missing.csv"), cwd=tmp_path, database_url=new_db), "missing.csv"
    )
    no_header = tmp_path / "no_header.csv"
    no_header.write_text("Ada,ada@example.com\n", encoding="utf-8")
    assert_one_line_error(
        kefu("import", "customers", str(no_header), cwd=tmp_path, database_url=new_db), "no_header.csv"
    )


# --- kefu agent --------------------------------------------------------------------------------------------


def test_agent_create_makes_an_agent_who_can_sign_in(new_db: str, tmp_path: Path) -> None:
    result = kefu(
        "agent", "create", "--email", "Lin@Example.com", "--role", "supervisor", "--name", "Lin Mei",
        "--password", "tea-for-two", "--team", "Care", cwd=tmp_path, database_url=new_db,
    )

    assert result.returncode == 0, result.stderr
    agent = on_crm(new_db, lambda crm: crm.agents.authenticate(email="lin@example.com", password="tea-for-two"))
    assert agent is not None and (agent.role, agent.name) == ("supervisor", "Lin Mei")  # type: ignore[attr-defined]
    assert agent.team_id is not None  # type: ignore[attr-defined]

    duplicate = kefu("agent", "create", "--email", "lin@example.com", "--role", "agent", "--password", "another-pw",
                     cwd=tmp_path, database_url=new_db)
    assert_one_line_error(duplicate, "lin@example.com")


def test_agent_create_asks_for_the_password_when_omitted(new_db: str, tmp_path: Path) -> None:
    result = kefu("agent", "create", "--email", "ops@example.com", "--role", "admin", cwd=tmp_path,
                  database_url=new_db, stdin="oolong-123\noolong-123\n")

    assert result.returncode == 0, result.stderr
    assert "oolong-123" not in result.stdout
    agent = on_crm(new_db, lambda crm: crm.agents.authenticate(email="ops@example.com", password="oolong-123"))
    assert agent is not None and agent.role == "admin"  # type: ignore[attr-defined]


def test_agent_create_refuses_a_short_password(new_db: str, tmp_path: Path) -> None:
    result = kefu("agent", "create", "--email", "x@example.com", "--role", "agent", "--password", "short",
                  cwd=tmp_path, database_url=new_db)
    assert_one_line_error(result, "8 characters")


# --- startup -----------------------------------------------------------------------------------------------


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    probe = ("import kefu.cli, sys; "
             "print(*(name in sys.modules for name in ('torch', 'aiogram', 'sentence_transformers', 'sqlalchemy')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == ["False", "False", "False", "False"]

    help_text = kefu("--help", cwd=tmp_path)
    assert help_text.returncode == 0
    for command in ("db", "import", "agent", "demo"):
        assert command in help_text.stdout


@pytest.mark.parametrize("role", ["bot", "console", "worker"])
def test_a_production_process_without_redis_is_a_one_line_error(role: str, tmp_path: Path) -> None:
    result = kefu(role, "--port", "1", cwd=tmp_path)
    assert_one_line_error(result, "KEFU_REDIS_URL", "kefu demo")
