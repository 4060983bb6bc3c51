"""`kefu backup` and `kefu restore`: the whole CRM database in one file, and back.

SQLite: a consistent online copy through SQLite's backup API (safe while Kefu runs), restored through the same API so
that an open connection always sees a valid file. PostgreSQL: `pg_dump --format=custom`, restored by `pg_restore`
into `psql --single-transaction`, which first drops Kefu's tables: the database then holds exactly the backup, or,
when anything fails, exactly what it held before.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_store.errors import DomainError

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
ALEMBIC_TABLE = "alembic_version"
BACKUP_MODE = 0o600  # a backup holds customers' personal data
CHUNK = 1 << 20

# Run first, in the restore's transaction: the schema then holds exactly what the backup holds. pg_restore --clean
# drops only what the backup has; a newer schema's tables (and their trigger functions) would stay behind, block
# the drops by their foreign keys, and make `kefu db upgrade` fail on objects that already exist. An extension's
# objects are the extension's to manage, and stay.
DROP_SCHEMA_CONTENTS = """
DO $kefu$
DECLARE
    statements text[];
    drop_statement text;
BEGIN
    -- The whole list first: a drop's CASCADE may take later objects with it (hence IF EXISTS, and names as text).
    SELECT coalesce(array_agg(statement ORDER BY rank, name), '{}') INTO statements FROM (
        SELECT format('DROP %s IF EXISTS %I.%I CASCADE',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                     WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                      n.nspname, c.relname) AS statement,
               CASE c.relkind WHEN 'S' THEN 2 ELSE 1 END AS rank, c.relname::text AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        UNION ALL
        SELECT format('DROP %s IF EXISTS %s CASCADE',
                      CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                      p.oid::regprocedure),
               3, p.proname::text
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = current_schema()
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    ) AS objects;
    FOREACH drop_statement IN ARRAY statements LOOP
        EXECUTE drop_statement;
    END LOOP;
END
$kefu$
"""


class BackupError(DomainError):
    """A backup that cannot be made or restored; the message says why, on one line."""

    code = "backup"


class BackupKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Contents:
    """What a database holds: its tables (alembic_version included), their rows, and its schema revision."""

    tables: int
    rows: int
    revision: str | None

    def counted(self) -> str:
        return f"{_plural(self.tables, 'table')}, {_plural(self.rows, 'row')}"


@dataclass(frozen=True)
class BackupReport:
    path: Path
    kind: BackupKind
    size: int
    contents: Contents

    def summary(self) -> str:
        return (f"Backed up {self.contents.counted()} (schema revision {self.contents.revision}) to {self.path} "
                f"({_size(self.size)}, {self.kind}).")


@dataclass(frozen=True)
class Backup:
    """A backup file checked against the database it is to be restored into."""

    path: Path
    kind: BackupKind
    revision: str | None


@dataclass(frozen=True)
class RestoreReport:
    path: Path
    contents: Contents
    head: str | None  # the newest schema revision this Kefu knows

    def lines(self) -> list[str]:
        restored = f"Restored {self.contents.counted()} from {self.path} (schema revision {self.contents.revision})."
        if self.contents.revision == self.head:
            return [restored, "The schema is this Kefu's newest; after restoring a backup made by an older Kefu, "
                              "`kefu db upgrade` brings its schema up to date."]
        return [restored, f"This Kefu's newest schema revision is {self.head}: run `kefu db upgrade` to bring "
                          "the restored schema up to date."]


# --------------------------------------------------------------------------------------------------------------
# What a file or a database is
# --------------------------------------------------------------------------------------------------------------


def database_kind(database_url: str) -> BackupKind:
    """SQLite or PostgreSQL, from the database URL; any other database is refused."""
    backend = make_url(database_url).get_backend_name()
    if backend == "sqlite":
        return BackupKind.SQLITE
    if backend == "postgresql":
        return BackupKind.POSTGRESQL
    raise BackupError(f"kefu backup and restore work on SQLite and PostgreSQL, not on {backend}.")


def backup_kind(path: Path) -> BackupKind:
    """What made this backup, from its first bytes: SQLite's header or pg_dump's custom format."""
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BackupError(f"{path} is a folder, not a backup file") from None
    if not head:
        raise BackupError(f"{path} is empty: not a backup")
    if head == SQLITE_MAGIC:
        return BackupKind.SQLITE
    if head.startswith(PG_DUMP_MAGIC):
        return BackupKind.POSTGRESQL
    raise BackupError(f"{path} is not a Kefu backup: neither an SQLite database nor a pg_dump custom-format "
                      "archive (made by `kefu backup`)")


def _sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"kefu backup and restore need an SQLite database file, not {database or 'in memory'}.")
    return Path(database)


def _same_file(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


# --------------------------------------------------------------------------------------------------------------
# kefu backup
# --------------------------------------------------------------------------------------------------------------


async def create_backup(database_url: str, path: Path) -> BackupReport:
    """Write a backup of the database to `path` (atomically, mode 0600)."""
    kind = database_kind(database_url)
    if kind is BackupKind.SQLITE:
        size, contents = await asyncio.to_thread(_backup_sqlite, _sqlite_path(database_url), path)
    else:
        size, contents = await _backup_postgres(database_url, path)
    return BackupReport(path=path, kind=kind, size=size, contents=contents)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> int:
    """Let `write` fill a private temporary file beside `path`, then rename it into place; its size."""
    if path.is_dir():
        raise BackupError(f"{path} is a folder: name the backup file, e.g. {path / 'kefu.backup'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)  # mode 0600
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, BACKUP_MODE)
        with temporary.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
            leftover.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path.stat().st_size


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a platform without directory descriptors skips it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _open_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def _backup_sqlite(database: Path, path: Path) -> tuple[int, Contents]:
    if not database.is_file():
        raise BackupError(f"no database at {database}: nothing to back up")
    if _same_file(database, path):
        raise BackupError(f"{path} is the database itself: write the backup to another file")
    copied: list[Contents] = []

    def write(temporary: Path) -> None:
        try:
            with closing(_open_read_only(database)) as source, closing(sqlite3.connect(temporary)) as copy:
                source.backup(copy)  # one step: a consistent snapshot, even while Kefu writes (WAL)
                # A standalone file: no -wal / -shm beside it when it is read or restored.
                copy.execute("PRAGMA journal_mode=DELETE")
                copied.append(_sqlite_contents(copy))
        except sqlite3.Error as exc:
            raise BackupError(f"cannot back up {database}: {exc}") from None
        if copied[0].revision is None:
            raise BackupError(f"{database} is not a Kefu database (no {ALEMBIC_TABLE} table): run `kefu db upgrade`")

    size = _write_atomically(path, write)
    return size, copied[0]


def _sqlite_contents(connection: sqlite3.Connection) -> Contents:
    tables = [name for (name,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    rows = sum(connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables)
    revision = None
    if ALEMBIC_TABLE in tables:
        found = connection.execute(f"SELECT version_num FROM {ALEMBIC_TABLE}").fetchone()
        revision = found[0] if found else None
    return Contents(tables=len(tables), rows=rows, revision=revision)


async def _backup_postgres(database_url: str, path: Path) -> tuple[int, Contents]:
    from crm_store.db import create_engine

    environment = libpq_environment(database_url)
    pg_dump = _tool("pg_dump")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            # One snapshot for the counts and for pg_dump: the report describes exactly what the file holds.
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            _check_dump_version(pg_dump, environment, await _server_major(conn))
            if not await conn.scalar(text(f"SELECT to_regclass('{ALEMBIC_TABLE}') IS NOT NULL")):
                raise BackupError(f"{_shown(database_url)} is not a Kefu database (no {ALEMBIC_TABLE} table): "
                                  "run `kefu db upgrade`")
            snapshot = await conn.scalar(text("SELECT pg_export_snapshot()"))
            contents = await conn.run_sync(_contents)
            command = [pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}"]

            def write(temporary: Path) -> None:
                _run_tool([*command, f"--file={temporary}"], environment, failed="pg_dump failed")

            size = await asyncio.to_thread(_write_atomically, path, write)
    finally:
        await engine.dispose()
    return size, contents


# --------------------------------------------------------------------------------------------------------------
# kefu restore
# --------------------------------------------------------------------------------------------------------------


async def check_backup(database_url: str, path: Path) -> Backup:
    """The backup at `path`, checked to be a readable Kefu backup of the same kind as the database."""
    kind, target = backup_kind(path), database_kind(database_url)
    if kind is not target:
        raise BackupError(f"{path} is a backup of {_kind_name(kind)} database, but KEFU_DATABASE_URL names "
                          f"{_kind_name(target)} database ({_shown(database_url)}): a backup restores only into "
                          "the same kind of database")
    if kind is BackupKind.SQLITE:
        if _same_file(_sqlite_path(database_url), path):
            raise BackupError(f"{path} is the database itself, not a backup of it")
        revision = await asyncio.to_thread(_check_sqlite_backup, path)
    else:
        revision = await asyncio.to_thread(_check_pg_backup, path, libpq_environment(database_url))
    return Backup(path=path, kind=kind, revision=revision)


async def restore_backup(database_url: str, backup: Backup) -> RestoreReport:
    """Replace everything in the database with the checked `backup`."""
    if backup.kind is BackupKind.SQLITE:
        await asyncio.to_thread(_restore_sqlite, backup.path, _sqlite_path(database_url))
    else:
        await asyncio.to_thread(_restore_postgres, backup.path, database_url)
    return RestoreReport(path=backup.path, contents=await database_contents(database_url), head=schema_head())


def _check_sqlite_backup(path: Path) -> str:
    try:
        with closing(_open_read_only(path)) as backup:
            problems = [row[0] for row in backup.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                detail = " ".join(line for line in str(problems[0]).splitlines() if not line.startswith("***"))
                raise BackupError(f"{path} is damaged: {detail}")
            revision = _sqlite_contents(backup).revision
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a readable SQLite backup: {exc}") from None
    if revision is None:
        raise BackupError(f"{path} is an SQLite database but not a Kefu backup (no {ALEMBIC_TABLE} table)")
    return revision


def _restore_sqlite(path: Path, database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The backup API writes the pages under the database's own lock: a connection Kefu holds open waits, then
        # reads the restored data; it never sees a half-copied file.
        with closing(_open_read_only(path)) as backup, closing(sqlite3.connect(database, timeout=30)) as target:
            backup.backup(target)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore into {database}: {exc}; nothing was changed") from None


def _check_pg_backup(path: Path, environment: dict[str, str]) -> str | None:
    pg_restore = _tool("pg_restore")
    listing = _run_tool([pg_restore, "--list", str(path)], environment, failed=f"{path} is not a readable backup")
    if not re.search(rf"^\d+; \d+ \d+ TABLE \S+ {ALEMBIC_TABLE} ", listing, re.MULTILINE):
        raise BackupError(f"{path} is a pg_dump archive but not a Kefu backup (no {ALEMBIC_TABLE} table)")
    script = _run_tool([pg_restore, "--data-only", f"--table={ALEMBIC_TABLE}", "--file=-", str(path)], environment,
                       failed=f"{path} is not a readable backup")
    found = re.search(rf"^COPY \S*{ALEMBIC_TABLE} .*FROM stdin;\n([^\n\\]+)\n", script, re.MULTILINE)
    return found.group(1).strip() if found else None


def _restore_postgres(path: Path, database_url: str) -> None:
    """pg_restore's script into one psql transaction that first empties Kefu's schema (DROP_SCHEMA_CONTENTS).

    psql commits when its input ends, so the input ends only after pg_restore has succeeded; on any failure psql is
    killed before that, and PostgreSQL rolls the whole transaction back.
    """
    environment = libpq_environment(database_url)
    pg_restore = _tool("pg_restore")
    psql = _tool("psql", beside=pg_restore)
    with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as psql_errors:
        reader = subprocess.Popen(
            [pg_restore, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--file=-", str(path)],
            stdout=subprocess.PIPE, stderr=restore_errors, env=environment,
        )
        writer = subprocess.Popen(
            [psql, "--no-psqlrc", "--quiet", "--no-password", "--single-transaction", "--set=ON_ERROR_STOP=1",
             f"--command={DROP_SCHEMA_CONTENTS}", "--file=-"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_errors, env=environment,
        )
        assert reader.stdout is not None and writer.stdin is not None
        try:
            fed = _feed(reader.stdout, writer.stdin)
            read_status = reader.wait()
            if fed and read_status == 0:
                writer.stdin.close()  # end of input: psql commits
            else:
                writer.kill()
            write_status = writer.wait()
        except BaseException:
            writer.kill()
            reader.kill()
            raise
        if fed and read_status != 0:
            raise BackupError(f"cannot read {path}; nothing was changed: {_first_error(restore_errors)}")
        if not fed or write_status != 0:  # psql stopped at an SQL error, or could not commit
            raise BackupError(f"restoring {path} failed; nothing was changed: {_first_error(psql_errors)}")


def _feed(source: IO[bytes], sink: IO[bytes]) -> bool:
    """Copy all of `source` into `sink`; False when the sink closed first (psql stopped at an error)."""
    try:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
        sink.flush()
    except BrokenPipeError:
        return False
    finally:
        source.close()
    return True


# --------------------------------------------------------------------------------------------------------------
# The database's contents, and the PostgreSQL client tools
# --------------------------------------------------------------------------------------------------------------


async def database_contents(database_url: str) -> Contents:
    """How many tables and rows the database holds, and its schema revision."""
    from crm_store.db import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_contents)
    finally:
        await engine.dispose()


def _contents(conn: Connection) -> Contents:
    tables = sorted(inspect(conn).get_table_names())
    quote = conn.dialect.identifier_preparer.quote
    rows = sum(int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one()) for name in tables)
    revision = None
    if ALEMBIC_TABLE in tables:
        revision = conn.execute(text(f"SELECT version_num FROM {ALEMBIC_TABLE}")).scalar()
    return Contents(tables=len(tables), rows=rows, revision=revision)


def libpq_environment(database_url: str) -> dict[str, str]:
    """The environment for libpq's tools (pg_dump, pg_restore, psql) to reach the database of a SQLAlchemy URL.

    Everything travels in PG* variables, the password too: never on a command line, where `ps` shows it.
    What the URL leaves out stays as the environment has it, as asyncpg does.
    """
    url = make_url(database_url)
    query = {key: value for key, value in url.query.items() if isinstance(value, str)}
    ssl = query.get("sslmode") or query.get("ssl")
    values = {
        "PGHOST": url.host or query.get("host"),
        "PGPORT": str(url.port) if url.port else query.get("port"),
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
        "PGSSLMODE": {"true": "require", "false": "disable"}.get(ssl.lower(), ssl) if ssl else None,
    }
    environment = dict(os.environ)
    environment.update({name: value for name, value in values.items() if value})
    environment.setdefault("PGCONNECT_TIMEOUT", "10")
    environment["PGAPPNAME"] = "kefu backup"
    return environment


def _tool(name: str, *, beside: str | None = None) -> str:
    """The path of a PostgreSQL client tool (the one beside `beside` first: tools of one version belong together)."""
    if beside is not None and (sibling := Path(beside).with_name(name)).is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} was not found on PATH: install the PostgreSQL client tools (Debian/Ubuntu: "
                          "apt-get install postgresql-client), of the server's major version or newer")
    return found


def _tool_major(tool: str, environment: dict[str, str]) -> int:
    output = _run_tool([tool, "--version"], environment, failed=f"{tool} --version failed")
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", output)
    if found is None:
        raise BackupError(f"cannot tell the version of {tool} from {output.strip()!r}")
    return int(found.group(1))


def _check_dump_version(pg_dump: str, environment: dict[str, str], server_major: int) -> None:
    tool_major = _tool_major(pg_dump, environment)
    if tool_major < server_major:
        raise BackupError(f"{pg_dump} is version {tool_major}, older than the PostgreSQL {server_major} server: "
                          f"install the client tools of version {server_major} or newer (postgresql-client-"
                          f"{server_major}) and put them first on PATH")


async def _server_major(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SHOW server_version_num"))) // 10000


def _run_tool(command: list[str], environment: dict[str, str], *, failed: str) -> str:
    """Run a client tool to the end; its output, or a BackupError with the first line of its complaint."""
    result = subprocess.run(command, env=environment, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise BackupError(f"{failed}: {_first_line(result.stderr) or f'exit status {result.returncode}'}")
    return result.stdout.decode("utf-8", errors="replace")


def _first_error(stream: IO[bytes]) -> str:
    stream.seek(0)
    return _first_line(stream.read()) or "no message"


def _first_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    return (errors or lines or [""])[0]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _kind_name(kind: BackupKind) -> str:
    return "an SQLite" if kind is BackupKind.SQLITE else "a PostgreSQL"


def _shown(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _size(size: int) -> str:
    value: float = size
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def schema_head() -> str | None:
    """The newest schema revision this Kefu knows (what `kefu db upgrade` brings a database to)."""
    from alembic.script import ScriptDirectory

    from crm_store.migrations import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()

