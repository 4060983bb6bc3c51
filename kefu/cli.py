"""The `kefu` command line: database migrations, CSV imports, agents and the all-in-one demo.

Only typer is imported at module level, so `kefu --help` stays fast: each command imports what it needs
(SQLAlchemy, the CRM store, later aiogram and torch) when it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from crm_store.enums import AgentRole  # a plain enum module: cheap to import

if TYPE_CHECKING:
    from crm_store.crm import CRM
    from crm_store.settings import StoreSettings

T = TypeVar("T")

app = typer.Typer(
    name="kefu",
    help="Kefu: customer-service bot, agent console and CRM store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold passwords
)
db_app = typer.Typer(help="Database schema (Alembic migrations) on KEFU_DATABASE_URL.", no_args_is_help=True)
import_app = typer.Typer(help="Import customers or orders from a CSV file.", no_args_is_help=True)
agent_app = typer.Typer(help="Console agents.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(agent_app, name="agent")

MAX_LISTED_ERRORS = 50


# --------------------------------------------------------------------------------------------------------------
# Running commands: settings, the event loop and expected failures
# --------------------------------------------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    """Print a one-line error to stderr and exit with status 1."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def _one_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable URL)"


def _explain(exc: BaseException, settings: StoreSettings | None) -> str | None:
    """The one-line message of an expected failure, or None for a bug (which keeps its traceback)."""
    from alembic.util.exc import CommandError
    from pydantic import ValidationError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from crm_store.errors import DomainError

    where = f" at {_shown_url(settings.database_url)}" if settings is not None else ""
    if isinstance(exc, DomainError):
        return str(exc)
    if isinstance(exc, ValidationError):  # a KEFU_* variable with a value that does not parse
        first = exc.errors()[0]
        return f"invalid setting KEFU_{str(first['loc'][0]).upper()}: {first['msg']}"
    if isinstance(exc, ArgumentError):
        url = _shown_url(settings.database_url) if settings is not None else ""
        return f"invalid database URL {url}: {_one_line(exc)}"
    if isinstance(exc, CommandError):  # Alembic: an unknown revision, for instance
        return _one_line(exc)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        redis_url = _shown_url(settings.redis_url) if settings is not None and settings.redis_url else "KEFU_REDIS_URL"
        return f"cannot reach Redis at {redis_url}: {_one_line(exc)}"
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return f"cannot use the database{where}: {_one_line(getattr(exc, 'orig', None) or exc)}"
    if isinstance(exc, DBAPIError) and exc.statement is None:  # refused while connecting: no such database, role...
        return f"cannot connect to the database{where}: {_one_line(exc.orig)}"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return f"lost the connection to the database{where}: {_one_line(exc.orig)}"
    if isinstance(exc, TimeoutError):  # before OSError, of which it is a subclass
        return f"timed out reaching the database{where}"
    if isinstance(exc, OSError):
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror or exc}"
        return f"cannot reach the database{where}: {exc.strerror or _one_line(exc) or type(exc).__name__}"
    if isinstance(exc, ValueError):  # bad input refused by a service (a short password, an unreadable file)
        return _one_line(exc)
    return None


def _load_settings() -> StoreSettings:
    from crm_store.settings import StoreSettings

    try:
        return StoreSettings()
    except ValueError as exc:
        fail(_explain(exc, None) or _one_line(exc))


def _run(work: Callable[[], Coroutine[Any, Any, T]], settings: StoreSettings | None) -> T:
    """Run a command's coroutine; expected failures become a one-line error and exit status 1."""
    try:
        return asyncio.run(work())
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        message = _explain(exc, settings)
        if message is None:
            raise
        fail(message)


async def _upgraded(settings: StoreSettings, revision: str = "head") -> str | None:
    from kefu.runtime import upgrade_database

    return await upgrade_database(settings.database_url, revision)


async def _with_crm(settings: StoreSettings, use: Callable[[CRM], Awaitable[T]]) -> T:
    """Bring the schema up to date (idempotent), then run `use` with a CRM that is closed afterwards."""
    from kefu.runtime import crm_session

    await _upgraded(settings)
    async with crm_session(settings) as crm:
        return await use(crm)


# --------------------------------------------------------------------------------------------------------------
# kefu db
# --------------------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="The Alembic revision to reach.")] = "head",
) -> None:
    """Apply the migrations up to REVISION (creates the SQLite file and its folder when needed)."""
    settings = _load_settings()
    reached = _run(lambda: _upgraded(settings, revision), settings)
    typer.echo(f"Database {_shown_url(settings.database_url)} is at revision {reached or '(none)'}.")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database is at."""
    from crm_store.migrations import current_revision

    settings = _load_settings()
    revision = _run(lambda: current_revision(settings.database_url), settings)
    if revision is None:
        typer.echo(f"Database {_shown_url(settings.database_url)} has no schema yet: run `kefu db upgrade`.")
    else:
        typer.echo(f"Database {_shown_url(settings.database_url)} is at revision {revision}.")


# --------------------------------------------------------------------------------------------------------------
# kefu import
# --------------------------------------------------------------------------------------------------------------

CsvFile = Annotated[Path, typer.Argument(help="A CSV file (UTF-8, with a header row).", show_default=False)]


@import_app.command("customers")
def import_customers(file: CsvFile) -> None:
    """Create or update customers from FILE; bad rows are reported by line and skipped."""
    _import("customers", file)


@import_app.command("orders")
def import_orders(file: CsvFile) -> None:
    """Record orders from FILE (points are awarded by the loyalty rules); bad rows are reported and skipped."""
    _import("orders", file)


def _import(kind: str, path: Path) -> None:
    if not path.is_file():
        fail(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    settings = _load_settings()
    report = _run(lambda: _with_crm(settings, lambda crm: _import_with_progress(crm, kind, path)), settings)
    typer.echo(report.summary())
    for error in report.errors[:MAX_LISTED_ERRORS]:
        typer.echo(f"line {error.line}: {error.reason}")
    if len(report.errors) > MAX_LISTED_ERRORS:
        typer.echo(f"... and {len(report.errors) - MAX_LISTED_ERRORS} more")


async def _import_with_progress(crm: CRM, kind: str, path: Path) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crm_store import importing

    run_import = importing.import_customers if kind == "customers" else importing.import_orders
    with Progress(
        TextColumn(f"Importing {kind}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task(kind, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return await run_import(crm, path, progress=advance)


# --------------------------------------------------------------------------------------------------------------
# kefu agent
# --------------------------------------------------------------------------------------------------------------


@agent_app.command("create")
def agent_create(
    email: Annotated[str, typer.Option(help="The agent's e-mail, used to sign in.", show_default=False)],
    role: Annotated[AgentRole, typer.Option(help="What the agent may do.", show_default=False)],
    name: Annotated[str, typer.Option(help="Display name (default: the e-mail).")] = "",
    password: Annotated[
        str | None,
        typer.Option(help="At least 8 characters; asked for (hidden) when omitted, which keeps it out of the "
                          "shell history.", show_default=False),
    ] = None,
    team: Annotated[str | None, typer.Option(help="Team name (created if new).", show_default=False)] = None,
) -> None:
    """Create a console agent."""
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _load_settings()

    async def create(crm: CRM) -> Any:
        team_id = await crm.agents.create_team(name=team) if team else None
        return await crm.agents.create_agent(email=email, name=name, password=password, role=role.value,
                                             team_id=team_id)

    agent = _run(lambda: _with_crm(settings, create), settings)
    typer.echo(f"Created {agent.role} {agent.email} ({agent.name}), id {agent.id}.")


# --------------------------------------------------------------------------------------------------------------
# kefu demo
# --------------------------------------------------------------------------------------------------------------


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the agent console (once it exists).")] = 8000,
    reset: Annotated[bool, typer.Option("--reset", help="Delete the SQLite database first and start over.")] = False,
) -> None:
    """Set up the embedded database, load the sample shop (once) and show how to sign in."""
    from kefu.sample_data import SHOP_NAME, load_sample_shop

    settings = _load_settings()
    if reset:
        _delete_sqlite_database(settings)
    summary = _run(lambda: _with_crm(settings, load_sample_shop), settings)

    echo = typer.echo
    loaded = "loaded" if summary.created else "already loaded; nothing added"
    echo(f"Kefu demo: {SHOP_NAME} ({loaded})")
    echo(f"  database  {_shown_url(settings.database_url)}")
    echo(f"  {summary.customers} customers, {summary.orders} orders, {summary.tiers} loyalty tiers, "
         f"{summary.rewards} rewards, {summary.agents} agents")
    echo("")
    echo("Sign in as:")
    for agent in summary.demo_agents:
        echo(f"  {agent.role:<10}  {agent.email:<28}  password: {agent.password}")
    echo("")
    echo("Try next:")
    echo("  kefu import customers FILE     add your own customers from a CSV file")
    echo("  kefu import orders FILE        record orders; points and tiers follow")
    echo("  kefu agent create --email you@example.com --role admin")
    echo("  kefu demo --reset              start over with a fresh sample shop")
    echo("")
    echo(f"The agent console (http://127.0.0.1:{port}) and the bot are not part of Kefu yet; "
         "later versions of `kefu demo` start them.")


def _delete_sqlite_database(settings: StoreSettings) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        fail(f"--reset only deletes an SQLite database; KEFU_DATABASE_URL is {_shown_url(settings.database_url)}.")
    if not url.database or url.database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            Path(url.database + suffix).unlink(missing_ok=True)
        except OSError as exc:
            fail(f"cannot delete {url.database + suffix}: {exc.strerror or exc}")


if __name__ == "__main__":
    app(prog_name="kefu")
