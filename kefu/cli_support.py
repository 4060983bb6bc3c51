"""What every `kefu` command shares: settings, the event loop, and one-line errors for expected failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from crm_store.crm import CRM
    from crm_store.settings import StoreSettings

T = TypeVar("T")
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
    """A database or Redis URL without its password (user:***@, and ?password=*** as Redis also takes it)."""
    from sqlalchemy.engine import make_url

    from crm_store.redact import redact_secrets

    try:
        return redact_secrets(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return "(unreadable URL)"


def _explain(exc: BaseException, settings: StoreSettings | None) -> str | None:
    """The one-line message of an expected failure, or None for a bug (which keeps its traceback); never with a
    password or token in it (a driver's message may quote the URL it was given)."""
    from crm_store.redact import redact_secrets

    message = _explain_unmasked(exc, settings)
    return redact_secrets(message) if message is not None else None


def _explain_unmasked(exc: BaseException, settings: StoreSettings | None) -> str | None:
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
