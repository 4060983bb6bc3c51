"""The `kefu` command line: database migrations, CSV imports, agents and the all-in-one demo.

Only typer is imported at module level, so `kefu --help` stays fast: each command imports what it needs
(SQLAlchemy, the CRM store, later aiogram and torch) when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from crm_store.enums import AgentRole  # a plain enum module: cheap to import
from kefu.cli_support import MAX_LISTED_ERRORS, _load_settings, _run, _shown_url, _upgraded, _with_crm, fail
from kefu.customer_cli import customer_app
from kefu.kb_cli import kb_app
from kefu.nlu_cli import nlu_app

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
app.add_typer(customer_app, name="customer")
app.add_typer(kb_app, name="kb")
app.add_typer(nlu_app, name="nlu")



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
    ctx: typer.Context,
    email: Annotated[str, typer.Option(help="The agent's e-mail, used to sign in.", show_default=False)],
    role: Annotated[AgentRole, typer.Option(help="What the agent may do.", show_default=False)],
    name: Annotated[str, typer.Option(help="Display name (default: the e-mail).")] = "",
    password: Annotated[
        str | None,
        typer.Option(help="At least 8 characters. Better left out: then it comes from KEFU_AGENT_PASSWORD (for "
                          "scripts) or is asked for (hidden), never in the shell history or `ps`.",
                     envvar="KEFU_AGENT_PASSWORD", show_default=False, show_envvar=True),
    ] = None,
    team: Annotated[str | None, typer.Option(help="Team name (created if new).", show_default=False)] = None,
) -> None:
    """Create a console agent."""
    import sys

    source = ctx.get_parameter_source("password")
    if password is not None and source is not None and source.name == "COMMANDLINE" and sys.stdin.isatty():
        # Typed by a person: it is in their shell history now. (Scripts are told in --help and the README.)
        typer.secho("Warning: --password stays in your shell history and shows in `ps`; leave it out to be asked "
                    "for it, or set KEFU_AGENT_PASSWORD.", err=True, fg=typer.colors.YELLOW)
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
# kefu backup / restore
# --------------------------------------------------------------------------------------------------------------

BackupFile = Annotated[Path, typer.Argument(help="The backup file (it holds personal data: mode 0600).",
                                            show_default=False)]


@app.command()
def backup(file: BackupFile) -> None:
    """Back up the whole database to FILE: SQLite, an online copy; PostgreSQL, pg_dump's custom format."""
    from kefu.backup import create_backup

    settings = _load_settings()
    typer.echo(_run(lambda: create_backup(settings.database_url, file), settings).summary())


@app.command()
def restore(
    file: BackupFile,
    yes: Annotated[bool, typer.Option("--yes", help="Replace the current data without asking.")] = False,
) -> None:
    """Replace every row in the database with the backup in FILE (made by `kefu backup`)."""
    import sys

    from kefu.backup import check_backup, restore_backup

    settings = _load_settings()
    checked = _run(lambda: check_backup(settings.database_url, file), settings)
    where = _shown_url(settings.database_url)
    if not yes and not sys.stdin.isatty():
        fail(f"restoring replaces every row in {where}: pass --yes to confirm (no terminal to ask on)")
    if not yes:
        typer.confirm(f"Replace every row in {where} with the backup {file}?", abort=True)
    for line in _run(lambda: restore_backup(settings.database_url, checked), settings).lines():
        typer.echo(line)


# --------------------------------------------------------------------------------------------------------------
# kefu bot / console / worker: the production processes
# --------------------------------------------------------------------------------------------------------------

Host = Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 in a container).")]


@app.command()
def bot(
    port: Annotated[int, typer.Option(help="Port of the web chat, Telegram's webhook and /healthz /readyz "
                                      "/metrics.")] = 8081,
    host: Host = "127.0.0.1",
) -> None:
    """The customer side: the Telegram bot (long polling, or its webhook with any number of replicas) and the web
    chat. Run `kefu db upgrade` first; set KEFU_REDIS_URL to run several processes."""
    _serve_role("bot", host, port)


@app.command()
def console(
    port: Annotated[int, typer.Option(help="Port of the agent console, its API and /healthz /readyz /metrics.")]
    = 8080,
    host: Host = "127.0.0.1",
) -> None:
    """The agent console and its REST API (any number of replicas behind a load balancer)."""
    _serve_role("console", host, port)


@app.command()
def worker(
    port: Annotated[int, typer.Option(help="Port of /healthz /readyz /metrics.")] = 8082,
    host: Host = "127.0.0.1",
) -> None:
    """Outbound delivery (agents' replies, surveys, campaign messages) through Redis Streams, and the timers
    (survey expiry). Any number of workers share the work; a dead one's messages are taken over."""
    _serve_role("worker", host, port)


def _serve_role(role: str, host: str, port: int) -> None:
    from kefu.serve import serve_role

    settings = _load_settings()
    if not settings.redis_url:
        fail(f"`kefu {role}` is one of several processes, which talk through Redis: set KEFU_REDIS_URL "
             "(or run everything in one process with `kefu demo`).")
    _run(lambda: serve_role(roles=frozenset({role}), host=host, port=port, store=settings,
                            say=lambda line: typer.echo(line, err=True)), settings)


# --------------------------------------------------------------------------------------------------------------
# kefu demo
# --------------------------------------------------------------------------------------------------------------


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the web chat and the console.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    reset: Annotated[bool, typer.Option("--reset", help="Delete the SQLite database first and start over.")] = False,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the web chat, the console and (with "
                                        "KEFU_BOT_TELEGRAM_TOKEN) the Telegram bot; --no-serve only sets up.")] = True,
    server_database: Annotated[bool, typer.Option(
        "--server-database", help="Load the sample shop, and its agents with printed passwords, into the database "
        "server KEFU_DATABASE_URL names (refused without it: the demo is for the embedded SQLite file).")] = False,
) -> None:
    """Set up the embedded database, load the sample shop (once), and run the bot and the console on one port."""
    from sqlalchemy.engine import make_url

    from kefu.sample_data import SHOP_NAME, load_sample_shop

    settings = _load_settings()
    if make_url(settings.database_url).get_backend_name() != "sqlite" and not server_database:
        # Its agents' passwords are printed and the same on every install: never into a real deployment by mistake.
        fail(f"kefu demo loads a sample shop whose agents' passwords it prints, so only into an SQLite file; "
             f"KEFU_DATABASE_URL is {_shown_url(settings.database_url)}. Unset it (the demo uses var/kefu.db), or "
             f"add --server-database to load the demo there anyway.")
    if reset:
        _delete_sqlite_database(settings)
    summary = _run(lambda: _with_crm(settings, load_sample_shop), settings)

    echo = typer.echo
    loaded = "loaded" if summary.created else "already loaded; nothing added"
    echo(f"Kefu demo: {SHOP_NAME} ({loaded})")
    echo(f"  database  {_shown_url(settings.database_url)}")
    echo(f"  {summary.customers} customers, {summary.orders} orders, {summary.tiers} loyalty tiers, "
         f"{summary.rewards} rewards, {summary.agents} agents, {summary.articles} FAQ articles, "
         f"{summary.courses} training courses (English and Chinese)")
    echo("")
    echo("Sign in as:")
    for agent in summary.demo_agents:
        echo(f"  {agent.role:<10}  {agent.email:<28}  password: {agent.password}")
    echo("")
    echo("Try next:")
    echo("  kefu import customers FILE     add your own customers from a CSV file")
    echo("  kefu import orders FILE        record orders; points and tiers follow")
    echo('  kefu kb search "how long does shipping take?"    ask the knowledge base in English')
    echo('  kefu kb search "我的积分怎么兑换礼品？"          ...or in Chinese')
    echo("  kefu demo --reset              start over with a fresh sample shop")
    if not serve:
        return
    from kefu.serve import serve as serve_all

    def started(stack: Any) -> None:
        echo("")
        echo(f"Web chat  http://{host}:{port}/webchat")
        echo(f"Console   http://{host}:{port}/")
        if stack.telegram is None:
            echo("Telegram  not configured: set KEFU_BOT_TELEGRAM_TOKEN to run the bot on Telegram too")
        else:
            echo("Telegram  " + ("webhook" if stack.webhook_path else "long polling") + " started")
        echo("Press Ctrl+C to stop.", err=False)

    _run(lambda: serve_all(host=host, port=port, store=settings, shop_name=SHOP_NAME, say=echo,
                           started=started), settings)


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
