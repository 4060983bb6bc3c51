"""Operations of every Kefu process: logging set-up (text or JSON), /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic_settings import BaseSettings, SettingsConfigDict

from crm_store.observability import conversation_id_var
from crm_store.redact import redact

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]

# jieba and bm25s set DEBUG on their own loggers when imported: keep their lines off the root's handlers.
_CHATTY_LOGGERS = ("jieba", "bm25s")
_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process_name)s] %(name)s: %(message)s"
# Everything a LogRecord carries by itself; whatever else is on it came in through `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "process_name"}
# An `extra=` field by one of these names is a secret whatever it holds.
_SECRET_FIELD = re.compile(r"(?i)(password|passwd|secret|token|api_?key|session|cookie|authorization)$")


class OpsSettings(BaseSettings):
    """`KEFU_LOG_FORMAT` (text or json) and `KEFU_LOG_LEVEL`."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"


# --- logging ------------------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, process, pid, conversation_id, exc and `extra=` fields;
    e-mails, phones and secrets masked in every text (crm_store.redact)."""

    def __init__(self, *, process: str) -> None:
        super().__init__()
        self.process_name = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": self.process_name,
            "pid": record.process,
        }
        conversation_id = conversation_id_var.get()
        if conversation_id is not None:
            entry["conversation_id"] = conversation_id
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        for key, value in vars(record).items():
            if key in _RECORD_FIELDS or key in entry or key.startswith("_"):
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue  # an object the caller attached for another handler: not ours to render
            entry[key] = _redacted_field(key, value)
        # Masked before encoding: a mask applied to the encoded line could cut through an escaped quote.
        return json.dumps(entry, ensure_ascii=False, default=str)


def _redacted_field(key: str, value: Any) -> Any:
    """An `extra=` value with its texts masked, at any depth; the whole value when its name is a secret's."""
    if _SECRET_FIELD.search(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted_field(key, item) for item in value]
    return value


class _TextFormatter(logging.Formatter):
    """The usual one-line text, with the process name and, inside a log context, the conversation; e-mails, phones
    and secrets masked in the message, the traceback and the stack (crm_store.redact)."""

    def __init__(self, *, process: str) -> None:
        super().__init__(_TEXT_FORMAT)
        self.process_name = process

    def format(self, record: logging.LogRecord) -> str:
        record.process_name = self.process_name
        if record.exc_text:  # a traceback another handler's formatter rendered (and cached) unmasked
            record.exc_text = redact(record.exc_text)
        line = super().format(record)
        conversation_id = conversation_id_var.get()
        if conversation_id is None:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [conversation={conversation_id}]{newline}{rest}"

    # Only the parts that can carry a customer's data or a secret: the time, level and names are ours.
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = redact(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


def configure_logging(settings: OpsSettings, *, process: str, stream: TextIO | None = None) -> None:
    """Root logging as text or JSON lines on stderr (or `stream`); calling it again replaces, never doubles."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name("kefu-ops")
    formatter: logging.Formatter = (
        JsonFormatter(process=process) if settings.log_format == "json" else _TextFormatter(process=process)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "kefu-ops"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).propagate = False
    # KEFU_ECHO_SQL: SQLAlchemy gives its logger a handler of its own on stdout (unmasked, and every line twice)
    # unless it has one; with this one, the statements and their parameters go through the handler above.
    sql = logging.getLogger("sqlalchemy.engine.Engine")
    if not sql.handlers:
        sql.addHandler(logging.NullHandler())
    # uvicorn's own logging config (its default when a server is built without log_config=None) gives its loggers
    # handlers of their own, unmasked, and stops them propagating: bring their lines back through the handler above.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        for old in list(uv.handlers):
            uv.removeHandler(old)
        uv.propagate = True
    # aiogram logs every handled update at INFO ("Update id=... is handled"): a line per customer message.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)


# --- health, readiness, metrics ---------------------------------------------------------------------------------


def _short_reason(exc: BaseException) -> str:
    # The first line only: SQLAlchemy appends the statement and a link on later lines; never a traceback.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(reason)[:200]  # /readyz is public: never a URL's password


async def _run_check(name: str, check: Check, limit_s: float) -> str:
    try:
        async with asyncio.timeout(limit_s):
            await check()
    except TimeoutError:
        log.warning("readiness check %s timed out after %ss", name, limit_s)
        return f"error: timed out after {limit_s:g}s"
    except Exception as exc:
        log.warning("readiness check %s failed: %s", name, _short_reason(exc))
        return f"error: {_short_reason(exc)}"
    return "ok"


def ops_router(
    *, checks: dict[str, Check], process: str, before_metrics: Check | None = None, check_timeout: float = 2.0,
) -> APIRouter:
    """GET /healthz (liveness), /readyz (every check, concurrently, each within `check_timeout`) and /metrics."""
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "process": process}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        names = list(checks)
        results = await asyncio.gather(*(_run_check(name, checks[name], check_timeout) for name in names))
        outcome = dict(zip(names, results, strict=True))
        ready = all(result == "ok" for result in results)
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": outcome},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        if before_metrics is not None:
            try:
                await before_metrics()
            except Exception:
                # Stale gauges beat no metrics at all: the counters are still worth scraping.
                log.exception("refreshing metrics before /metrics failed")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def ops_app(
    *, checks: dict[str, Check], process: str, before_metrics: Check | None = None, check_timeout: float = 2.0,
) -> FastAPI:
    """An app with only the ops routes, for a process that serves no other HTTP (the worker)."""
    app = FastAPI(title=f"kefu {process}", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(
        ops_router(checks=checks, process=process, before_metrics=before_metrics, check_timeout=check_timeout)
    )
    return app


def database_check(db: Any) -> Check:
    """A readiness check of a crm_store.db.Database: `SELECT 1` on a pooled connection."""

    def select_one(sync_conn: Any) -> None:
        # On the driver's cursor, outside a SQLAlchemy transaction: Kefu's SQLite engine opens every transaction
        # with BEGIN IMMEDIATE, which would queue the check behind a long write and report a busy store as down.
        cursor = sync_conn.connection.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()

    async def check() -> None:
        async with db.engine.connect() as conn:
            await conn.run_sync(select_one)

    return check


def redis_check(client: Any) -> Check:
    """A readiness check of a redis.asyncio client: PING."""

    async def check() -> None:
        if not await client.ping():
            raise ConnectionError("PING was not answered with PONG")

    return check

