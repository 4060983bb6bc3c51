"""`kefu backup` and `kefu restore`, through the real CLI: back up, wipe, restore, and every row returns; and what
they refuse. On SQLite by default, on PostgreSQL (pg_dump / pg_restore) when KEFU_TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import os
import pty
import select as selectors
import stat
import struct
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, func, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner, Result

from crm_store import models as m
from crm_store.crm import CRM
from crm_store.db import create_engine
from crm_store.dto import ArticleVectors
from crm_store.migrations import upgrade
from crm_store.settings import StoreSettings
from kefu.backup import PG_DUMP_MAGIC, SQLITE_MAGIC, libpq_environment, schema_head
from kefu.cli import app
from kefu.runtime import crm_session
from kefu.sample_data import load_sample_shop
from tests import support

ROOT = Path(__file__).resolve().parents[2]
Snapshot = dict[str, list[tuple[Any, ...]]]


def kefu(url: str, *args: str) -> Result:
    """`kefu ARGS` in this process with KEFU_DATABASE_URL=url and no terminal (CliRunner's stdin is not a TTY)."""
    return CliRunner().invoke(app, list(args), env={"KEFU_DATABASE_URL": url}, catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def on_crm(url: str, use: Any) -> Any:
    async def run() -> Any:
        async with crm_session(StoreSettings(database_url=url)) as crm:
            return await use(crm)

    return asyncio.run(run())


# --- what the database holds -----------------------------------------------------------------------------------


def snapshot(url: str) -> Snapshot:
    """Every row of every table (reflected: whatever the schema is), ordered by primary key; and the sequences."""

    def read(conn: Connection) -> Snapshot:
        metadata = MetaData()
        metadata.reflect(conn)
        rows = {
            table.name: [tuple(row) for row in conn.execute(
                select(table).order_by(*(table.primary_key.columns or table.columns)))]
            for table in metadata.sorted_tables
        }
        if conn.dialect.name == "postgresql":
            rows["(sequences)"] = [tuple(row) for row in conn.execute(text(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1"))]
        elif conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            rows["(sequences)"] = [tuple(row) for row in conn.execute(text("SELECT name, seq FROM sqlite_sequence "
                                                                           "ORDER BY name"))]  # AUTOINCREMENT
        return rows

    async def run() -> Snapshot:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def table_names(url: str) -> set[str]:
    return asyncio.run(support.table_names(url))


def wipe(url: str) -> None:
    """Lose everything: the SQLite file goes; PostgreSQL's schema is dropped and created again, empty."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        assert database
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(database + suffix).unlink(missing_ok=True)
        return

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()

    asyncio.run(run())


# --- seeding: the sample shop, and rows in the tables it leaves empty ---------------------------------------------


async def _seed(crm: CRM) -> None:
    await load_sample_shop(crm)  # customers, identities, chats in Chinese and English, tickets, loyalty, orders, KB
    async with crm.db.sessionmaker() as session:
        customer_ids = list((await session.scalars(select(m.Customer.id).order_by(m.Customer.id))).all())
        agent_id = await session.scalar(select(func.min(m.Agent.id)))
    assert len(customer_ids) >= 3 and agent_id is not None
    lina = customer_ids[0]
    article = (await crm.knowledge.published_articles())[0]
    vectors = struct.pack("<6f", 0.125, -0.5, 1e-7, 3.25e38, -0.0, 1.0)  # float32 bytes, as the KB caches them
    await crm.knowledge.save_vectors(model="test-encoder", items=[
        ArticleVectors(article.id, article.version, "test-encoder", vectors, 3, 2)])
    await crm.customers.create_link_token(customer_id=lina, agent_id=agent_id)
    await crm.agents.start_session(agent_id=agent_id, ttl=timedelta(hours=8), user_agent="pytest 浏览器",
                                   ip="127.0.0.1")
    await crm.agents.create_api_token(name="backup test", scopes=["customers:read"], created_by_agent_id=agent_id)
    await crm.canned.create(shortcut="xiexie", title="谢谢", body="感谢您的耐心等待！🍵", language="zh",
                            created_by_agent_id=agent_id)
    await crm.sla.set_policy(priority="high", first_response_minutes=30, resolution_minutes=240)
    await crm.glossary.add_term(language="zh", term="积分", synonyms=["分数", "点数"], agent_id=agent_id)
    await crm.app_settings.set_setting("backup.test", {"threshold": 0.62, "标签": ["常见问题"]}, by_agent_id=agent_id)
    await crm.updates.store(channel="telegram", bot_id="123456", update_id=987654321, chat_id="500100201",
                            payload={"update_id": 987654321, "message": {"text": "你好，还在吗？"}})
    await crm.loyalty.adjust_points(customer_id=lina, points=500, reason="备份测试 goodwill", agent_id=agent_id,
                                    idempotency_key="backup-test-adjust")
    voucher = min(await crm.loyalty.catalogue(), key=lambda reward: reward.cost)
    await crm.loyalty.redeem(customer_id=lina, reward_id=voucher.id, idempotency_key="backup-test-redeem")
    course = (await crm.courses.catalogue())[0]
    await crm.courses.enroll(customer_id=lina, course_id=course.id)
    await crm.customers.merge(source_id=customer_ids[-1], target_id=customer_ids[-2], agent_id=agent_id)
    await crm.privacy.request_erasure(customer_id=lina, channel="telegram")  # and its audit entry


@pytest.fixture(scope="module")
def shop_database(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    """A database at the newest schema with the sample shop and more; built once for the module."""
    url = fresh_database_url()
    asyncio.run(upgrade(url))
    on_crm(url, _seed)
    return url


@pytest.fixture
def shop(shop_database: str, tmp_path: Path) -> tuple[str, Snapshot, Path]:
    """The seeded database, a backup of it made by `kefu backup` (checked to succeed), and its rows at that time
    (earlier tests of the module may have added some)."""
    path = tmp_path / "backups" / "kefu.backup"
    result = kefu(shop_database, "backup", str(path))
    assert result.exit_code == 0, result.output
    return shop_database, snapshot(shop_database), path


# --- the round trip --------------------------------------------------------------------------------------------


def test_backup_wipe_restore_brings_back_every_row(shop: tuple[str, Snapshot, Path], is_postgres: bool) -> None:
    url, before, path = shop
    non_empty = {name for name, rows in before.items() if rows}
    assert {"alembic_version", "customers", "channel_identities", "conversations", "messages", "tickets",
            "ticket_events", "loyalty_accounts", "loyalty_transactions", "redemptions", "orders", "kb_articles",
            "kb_article_vectors", "surveys", "survey_invitations", "courses", "lessons", "enrollments",
            "agent_sessions", "api_tokens", "link_tokens", "canned_responses", "sla_policies", "app_settings",
            "inbound_updates", "customer_merges", "privacy_requests", "audit_log", "kb_glossary_terms"} <= non_empty
    assert not is_postgres or before["(sequences)"]
    assert any("你好" in str(row) for row in before["messages"])

    # The backup: private, in place, of the database's kind, and nothing left beside it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes()[:5] == (PG_DUMP_MAGIC if is_postgres else SQLITE_MAGIC[:5])
    assert sorted(p.name for p in path.parent.iterdir()) == ["kefu.backup"]

    wipe(url)
    assert not table_names(url)

    result = kefu(url, "restore", str(path), "--yes")

    assert result.exit_code == 0, result.output
    assert snapshot(url) == before
    tables = len([name for name in before if not name.startswith("(")])
    rows = sum(len(r) for name, r in before.items() if not name.startswith("("))
    assert f"Restored {tables} tables, {rows} rows from {path} (schema revision {schema_head()})." in result.stdout
    assert "kefu db upgrade" in result.stdout

    # The audit log is append-only again: its triggers came back with it.
    async def rewrite_audit_log(crm: CRM) -> str:
        async with crm.db.sessionmaker() as session:
            try:
                await session.execute(update(m.AuditEntry).values(actor_label="rewritten"))
            except DBAPIError as exc:
                return str(exc)
            return "accepted"
    assert "append-only" in on_crm(url, rewrite_audit_log)

    # The ids go on from where they were: a new customer gets a fresh one.
    existing = {row[0] for row in before["customers"]}
    created = on_crm(url, lambda crm: crm.customers.create(name="新客户 After Restore", email="after@example.com"))
    assert created.id not in existing and created.id > max(existing)


def test_restore_replaces_data_changed_since_the_backup(shop: tuple[str, Snapshot, Path]) -> None:
    url, before, path = shop

    async def change(crm: CRM) -> None:
        await crm.customers.create(name="Made after the backup", email="later@example.com")
        await crm.canned.create(shortcut="later", title="Later", body="Written after the backup.")
    on_crm(url, change)
    assert snapshot(url) != before

    result = kefu(url, "restore", str(path), "--yes")

    assert result.exit_code == 0, result.output
    assert snapshot(url) == before


def test_restoring_an_older_backup_leaves_the_schema_for_db_upgrade(
    fresh_database_url, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A backup from an older Kefu replaces a newer schema entirely; `kefu db upgrade` then brings it up to date."""
    from alembic.script import ScriptDirectory

    from crm_store.migrations import alembic_config

    head = schema_head()
    older = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(older, str)
    old_url, url = fresh_database_url(), fresh_database_url()
    asyncio.run(upgrade(old_url, older))
    backed_up = kefu(old_url, "backup", str(tmp_path / "old.backup"))
    assert backed_up.exit_code == 0, backed_up.output
    asyncio.run(upgrade(url))
    on_crm(url, lambda crm: crm.customers.create(name="Only in the newer database", email="newer@example.com"))

    restored = kefu(url, "restore", str(tmp_path / "old.backup"), "--yes")

    assert restored.exit_code == 0, restored.output
    assert f"schema revision {older})" in restored.stdout and f"newest schema revision is {head}" in restored.stdout
    assert snapshot(url) == snapshot(old_url)
    upgraded = kefu(url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.strip().endswith(f"at revision {head}.")
    assert not snapshot(url)["customers"]


# --- what restore refuses, leaving the data as it was ---------------------------------------------------------------


def test_restore_without_yes_and_without_a_terminal_refuses(shop: tuple[str, Snapshot, Path]) -> None:
    url, before, path = shop
    on_crm(url, lambda crm: crm.customers.create(name="Still here", email="still@example.com"))
    now = snapshot(url)

    result = kefu(url, "restore", str(path))

    assert_one_line_error(result, "--yes", "replaces every row")
    assert snapshot(url) == now != before


def test_restore_asks_on_a_terminal_and_no_keeps_the_data(shop: tuple[str, Snapshot, Path]) -> None:
    url, before, path = shop
    on_crm(url, lambda crm: crm.customers.create(name="Kept by no", email="kept@example.com"))
    now = snapshot(url)

    answered_no = _on_a_terminal(url, ["restore", str(path)], answer="n")

    assert answered_no.returncode == 1, answered_no.stdout
    assert "Replace every row" in answered_no.stdout and "Restored" not in answered_no.stdout
    assert snapshot(url) == now != before


def _on_a_terminal(url: str, args: list[str], *, answer: str) -> subprocess.CompletedProcess[str]:
    """Run `kefu ARGS` with a pseudo-terminal as stdin/stdout; type `answer` when it asks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "kefu.cli", *args], stdin=follower, stdout=follower,
                               stderr=follower, env=env, start_new_session=True)
    os.close(follower)
    output, answered, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = selectors.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed: the process ended
                    break
                output += chunk
                if not answered and b"[y/N]" in output:
                    os.write(leader, answer.encode() + b"\n")
                    answered = True
            elif process.poll() is not None:
                break
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return subprocess.CompletedProcess(process.args, status, output.decode(errors="replace"), "")


def test_restore_refuses_a_backup_of_the_other_kind(shop: tuple[str, Snapshot, Path], tmp_path: Path,
                                                   is_postgres: bool) -> None:
    url, before, _ = shop
    other = tmp_path / "other.backup"
    if is_postgres:  # an SQLite backup, made by `kefu backup` of an SQLite database
        sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
        asyncio.run(upgrade(sqlite_url))
        assert kefu(sqlite_url, "backup", str(other)).exit_code == 0
    else:  # the first bytes of a pg_dump archive: the kind is told by them, before anything is read
        other.write_bytes(PG_DUMP_MAGIC + b"\x01\x0e\x00\x04\x08\x01" + bytes(200))

    result = kefu(url, "restore", str(other), "--yes")

    assert_one_line_error(result, "is a backup of", "the same kind of database")
    assert snapshot(url) == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"customer_id,name\n1,Li Na\n", "not a Kefu backup"),
        ("truncated", "not a readable"),
        ("foreign", "not a Kefu backup"),
    ],
    ids=["missing", "empty", "garbage", "truncated", "not-kefu"],
)
def test_restore_refuses_a_file_that_is_no_kefu_backup(
    shop: tuple[str, Snapshot, Path], tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    url, before, backup = shop
    path = tmp_path / "suspect.backup"
    if content == "truncated":  # the right first bytes, but half of the file is gone
        data = backup.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "foreign":  # a sound database file of the right kind, but not Kefu's
        path = _foreign_backup(url, tmp_path)
    elif content is not None:
        path.write_bytes(content)

    result = kefu(url, "restore", str(path), "--yes")

    assert_one_line_error(result, expected)
    assert snapshot(url) == before


def _foreign_backup(url: str, tmp_path: Path) -> Path:
    """A backup of the database's kind that holds someone else's tables (no alembic_version)."""
    import sqlite3

    path = tmp_path / "foreign.backup"
    if url.startswith("sqlite"):
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        return path
    environment = libpq_environment(url)
    subprocess.run(["psql", "-X", "-q", "-c", "CREATE TABLE IF NOT EXISTS backup_test_notes (id int)"],
                   env=environment, check=True)
    subprocess.run(["pg_dump", "--format=custom", "--table=backup_test_notes", f"--file={path}"], env=environment,
                   check=True)
    subprocess.run(["psql", "-X", "-q", "-c", "DROP TABLE backup_test_notes"], env=environment, check=True)
    return path


def test_a_restore_that_fails_midway_changes_nothing(shop: tuple[str, Snapshot, Path], tmp_path: Path,
                                                     is_postgres: bool) -> None:
    """A backup whose table of contents reads well but whose data is cut short: nothing is half-restored."""
    url, _, backup = shop
    on_crm(url, lambda crm: crm.customers.create(name="Not lost", email="not-lost@example.com"))
    now = snapshot(url)
    data = backup.read_bytes()
    damaged = tmp_path / "damaged.backup"
    if is_postgres:
        cut = next(n for n in (1000, 2000, 4000) if _lists(data[: len(data) - n], tmp_path))
        damaged.write_bytes(data[: len(data) - cut])
    else:  # SQLite: a page in the middle overwritten
        page = 4096
        middle = (len(data) // page // 2) * page
        damaged.write_bytes(data[:middle] + b"\xff" * page + data[middle + page:])

    result = kefu(url, "restore", str(damaged), "--yes")

    assert_one_line_error(result)
    assert snapshot(url) == now


def _lists(archive: bytes, tmp_path: Path) -> bool:
    """Whether pg_restore reads this archive's table of contents."""
    probe = tmp_path / "probe.backup"
    probe.write_bytes(archive)
    return subprocess.run(["pg_restore", "--list", str(probe)], capture_output=True, check=False).returncode == 0


def test_sqlite_backup_and_restore_while_kefu_holds_the_database_open(shop: tuple[str, Snapshot, Path],
                                                                       tmp_path: Path, is_postgres: bool) -> None:
    """Online: a write in progress does not block the backup and is not in it; a connection left open across the
    restore reads the restored data."""
    import sqlite3

    if is_postgres:
        pytest.skip("SQLite's backup API")
    url, before, _ = shop
    database = make_url(url).database or ""
    writer, reader = sqlite3.connect(database, isolation_level=None), sqlite3.connect(database)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO teams (name, description, created_at, updated_at) "
                       "VALUES ('Uncommitted', '', '2025-01-01', '2025-01-01')")
        backed_up = kefu(url, "backup", str(tmp_path / "online.backup"))
        writer.execute("COMMIT")
        assert backed_up.exit_code == 0, backed_up.output
        assert reader.execute("SELECT count(*) FROM teams WHERE name = 'Uncommitted'").fetchone() == (1,)

        restored = kefu(url, "restore", str(tmp_path / "online.backup"), "--yes")

        assert restored.exit_code == 0, restored.output
        assert reader.execute("SELECT count(*) FROM teams WHERE name = 'Uncommitted'").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM customers").fetchone() == (len(before["customers"]),)
    finally:
        writer.close()
        reader.close()
    assert snapshot(url) == before


# --- backup's own checks -------------------------------------------------------------------------------------


def test_backup_replaces_the_file_atomically_and_refuses_a_folder(shop: tuple[str, Snapshot, Path]) -> None:
    url, _, path = shop
    path.write_bytes(b"an older backup")
    path.chmod(0o644)

    assert kefu(url, "backup", str(path)).exit_code == 0
    assert path.read_bytes()[:5] in (PG_DUMP_MAGIC, SQLITE_MAGIC[:5])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["kefu.backup"]

    assert_one_line_error(kefu(url, "backup", str(path.parent)), "is a folder")


def test_backup_of_a_database_without_kefus_schema_is_refused(fresh_database_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url()
    if url.startswith("sqlite"):
        assert_one_line_error(kefu(url, "backup", str(tmp_path / "kefu.backup")), "no database at")
        Path(make_url(url).database or "").touch()  # an empty SQLite database

    result = kefu(url, "backup", str(tmp_path / "kefu.backup"))

    assert_one_line_error(result, "not a Kefu database", "kefu db upgrade")
    assert not (tmp_path / "kefu.backup").exists() and not list(tmp_path.glob(".kefu.backup.*"))


# --- PostgreSQL: the client tools, and the password -------------------------------------------------------------


def test_the_images_client_tools_match_the_compose_postgres_version() -> None:
    """pg_dump refuses a newer server: the image's postgresql-client is of the compose server's major version."""
    import re

    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    server = re.fullmatch(r"postgres:(\d+)(\.\d+)?(-\S+)?", compose["services"]["postgres"]["image"])
    client = re.search(r"^ARG PG_CLIENT_MAJOR=(\d+)$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    assert server and client and int(client.group(1)) >= int(server.group(1))
    assert re.search(r'apt-get install .*"postgresql-client-\$\{PG_CLIENT_MAJOR\}"',
                     (ROOT / "Dockerfile").read_text(encoding="utf-8"))


def test_libpq_environment_carries_the_url_and_the_password_in_variables() -> None:
    environment = libpq_environment("postgresql+asyncpg://kefu:s3cr%40t@db.example:6543/kefu?ssl=require")
    assert {key: environment[key] for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                                               "PGSSLMODE")} == {
        "PGHOST": "db.example", "PGPORT": "6543", "PGUSER": "kefu", "PGPASSWORD": "s3cr@t", "PGDATABASE": "kefu",
        "PGSSLMODE": "require",
    }


@pytest.fixture
def fake_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Put a pg_dump of a given version first on PATH; it records its arguments and PGPASSWORD, writes an archive."""

    def install(version: str) -> Path:
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        log = tmp_path / "pg_dump.log"
        script = folder / "pg_dump"
        script.write_text(
            "#!/usr/bin/env bash\n"
            f'if [[ "$1" == "--version" ]]; then echo "pg_dump (PostgreSQL) {version}"; exit 0; fi\n'
            f'echo "args: $* | password: ${{PGPASSWORD:-}}" >> "{log}"\n'
            'for arg in "$@"; do [[ "$arg" == --file=* ]] && printf "PGDMP fake" > "${arg#--file=}"; done\n'
            "exit 0\n",
            encoding="utf-8",
        )
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return log

    return install


def test_pg_dump_older_than_the_server_is_refused(database_url: str, is_postgres: bool, fake_pg_dump,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    if not is_postgres:
        pytest.skip("pg_dump backs up PostgreSQL only")
    fake_pg_dump("9.6.24")

    result = kefu(database_url, "backup", str(tmp_path / "kefu.backup"))

    assert_one_line_error(result, "older than the PostgreSQL", "postgresql-client-")
    assert not (tmp_path / "kefu.backup").exists()


def test_missing_pg_dump_is_a_one_line_error(database_url: str, is_postgres: bool, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if not is_postgres:
        pytest.skip("pg_dump backs up PostgreSQL only")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there

    result = kefu(database_url, "backup", str(tmp_path / "kefu.backup"))

    assert_one_line_error(result, "pg_dump was not found", "postgresql-client")


def test_the_password_reaches_pg_dump_in_pgpassword_only(database_url: str, is_postgres: bool, fake_pg_dump,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    if not is_postgres:
        pytest.skip("pg_dump backs up PostgreSQL only")
    log = fake_pg_dump("99.0")
    # The test server trusts local connections, so any password connects; pg_dump must still be given it.
    url = make_url(database_url).set(password="s3cret-pw").render_as_string(hide_password=False)

    result = kefu(url, "backup", str(tmp_path / "kefu.backup"))

    assert result.exit_code == 0, result.output
    [call] = log.read_text(encoding="utf-8").splitlines()
    arguments, password = call.split(" | password: ")
    assert password == "s3cret-pw" and "s3cret" not in arguments
    assert "--format=custom" in arguments and "--snapshot=" in arguments
