"""The ops surface of every process: /healthz, /readyz (real database and Redis checks), /metrics and JSON logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import fakeredis.aioredis
import pytest
from httpx import ASGITransport, AsyncClient
from redis import asyncio as aioredis
from sqlalchemy import text

from crm_store.db import Database
from crm_store.observability import MESSAGES_IN, conversation_id_var, log_context
from kefu.ops import OpsSettings, configure_logging, database_check, ops_app, redis_check
from tests.conftest import REDIS_URL


async def passing() -> None:
    return None


async def failing() -> None:
    raise RuntimeError("connection refused by db.example\nTraceback (most recent call last): should not leak")


async def hanging() -> None:
    await asyncio.sleep(60)


def client_for(app) -> AsyncClient:  # type: ignore[no-untyped-def]
    return AsyncClient(transport=ASGITransport(app), base_url="http://ops")


async def test_healthz_answers_while_the_loop_runs() -> None:
    async with client_for(ops_app(checks={"broken": failing}, process="worker")) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "process": "worker"}


async def test_readyz_is_ready_when_every_check_passes() -> None:
    async with client_for(ops_app(checks={"database": passing, "redis": passing}, process="bot")) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_readyz_names_the_failed_check_without_a_traceback() -> None:
    async with client_for(ops_app(checks={"database": passing, "redis": failing}, process="bot")) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "error: RuntimeError: connection refused by db.example"
    assert "Traceback" not in response.text


async def test_readyz_times_out_a_hanging_check_and_runs_checks_concurrently() -> None:
    app = ops_app(checks={"a": hanging, "b": hanging, "c": passing}, process="worker", check_timeout=0.3)
    loop = asyncio.get_running_loop()
    async with client_for(app) as client:
        started = loop.time()
        response = await client.get("/readyz")
        elapsed = loop.time() - started
    assert response.status_code == 503
    assert response.json()["checks"] == {"a": "error: timed out after 0.3s", "b": "error: timed out after 0.3s",
                                         "c": "ok"}
    assert elapsed < 0.55  # two hanging checks in turn would take 0.6 s


async def test_metrics_exposes_the_kefu_counters() -> None:
    MESSAGES_IN.labels(channel="ops-test").inc()
    refreshed: list[bool] = []

    async def refresh() -> None:
        refreshed.append(True)

    async with client_for(ops_app(checks={}, process="bot", before_metrics=refresh)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'kefu_messages_in_total{channel="ops-test"}' in response.text
    assert "# TYPE kefu_handle_seconds histogram" in response.text
    assert refreshed == [True]


async def test_metrics_still_render_when_the_refresh_hook_fails(caplog: pytest.LogCaptureFixture) -> None:
    async def broken_refresh() -> None:
        raise ConnectionError("redis went away")

    async with client_for(ops_app(checks={}, process="worker", before_metrics=broken_refresh)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "kefu_messages_in" in response.text
    assert "redis went away" in caplog.text


# --- logging ------------------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_logs_carry_the_conversation_inside_a_log_context(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format="json", log_level="INFO"), process="bot", stream=stream)
    logger = logging.getLogger("kefu.test_ops")

    logger.info("outside")
    with log_context(conversation_id=42):
        logger.info("inside %s", "the context", extra={"channel": "telegram", "unserialisable": object()})
    logger.info("after")

    outside, inside, after = json_lines(stream)
    assert outside["message"] == "outside" and "conversation_id" not in outside
    assert inside["message"] == "inside the context"
    assert inside["conversation_id"] == 42
    assert inside["channel"] == "telegram"
    assert "unserialisable" not in inside
    assert inside["level"] == "INFO" and inside["logger"] == "kefu.test_ops"
    assert inside["process"] == "bot" and isinstance(inside["pid"], int)
    assert inside["ts"].endswith("Z")
    assert "conversation_id" not in after
    assert conversation_id_var.get() is None


def test_json_logs_include_the_exception(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format="json"), process="worker", stream=stream)
    try:
        raise ValueError("bad reply")
    except ValueError:
        logging.getLogger("kefu.test_ops").exception("delivery failed")

    (line,) = json_lines(stream)
    assert line["message"] == "delivery failed" and line["level"] == "ERROR"
    assert "Traceback (most recent call last)" in line["exc"]
    assert "ValueError: bad reply" in line["exc"]


def test_configure_logging_twice_does_not_double_lines(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(OpsSettings(log_format="text"), process="console", stream=first)
    configure_logging(OpsSettings(log_format="json", log_level="WARNING"), process="console", stream=second)
    logger = logging.getLogger("kefu.test_ops")

    logger.info("below the level")
    logger.warning("once")

    assert first.getvalue() == ""
    assert [line["message"] for line in json_lines(second)] == ["once"]
    assert logging.getLogger("jieba").propagate is False
    assert logging.getLogger("bm25s").propagate is False


def test_text_logs_name_the_process_and_the_conversation(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format="text"), process="console", stream=stream)
    with log_context(conversation_id=7):
        logging.getLogger("kefu.test_ops").warning("slow answer")
    line = stream.getvalue().strip()
    assert "[console]" in line and "WARNING" in line and "slow answer" in line and "[conversation=7]" in line


# --- real checks ----------------------------------------------------------------------------------------------------


async def test_database_check_against_the_test_database(db: Database) -> None:
    async with client_for(ops_app(checks={"database": database_check(db)}, process="console")) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


async def test_database_check_is_not_queued_behind_a_writer(db: Database, is_postgres: bool) -> None:
    if is_postgres:
        pytest.skip("SQLite's BEGIN IMMEDIATE is what could queue the check")
    # A write transaction held open: a check that began its own (IMMEDIATE) transaction would wait on it.
    async with db.engine.connect() as writer:
        await writer.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is now held
        await asyncio.wait_for(database_check(db)(), 1.0)


async def test_database_check_fails_on_an_unreachable_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = Database(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/kefu.db")
    (tmp_path / "missing-dir").rmdir()  # the engine made it; without it SQLite cannot open the file
    try:
        app = ops_app(checks={"database": database_check(broken)}, process="console")
        async with client_for(app) as client:
            response = await client.get("/readyz")
    finally:
        await broken.dispose()
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error: OperationalError")


async def test_redis_check_against_redis() -> None:
    client = aioredis.from_url(REDIS_URL) if REDIS_URL else fakeredis.aioredis.FakeRedis()
    try:
        async with client_for(ops_app(checks={"redis": redis_check(client)}, process="worker")) as http:
            response = await http.get("/readyz")
    finally:
        await client.aclose()
    assert response.status_code == 200
    assert response.json()["checks"] == {"redis": "ok"}


async def test_redis_check_fails_on_a_closed_port() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0")
    try:
        async with client_for(ops_app(checks={"redis": redis_check(client)}, process="worker")) as http:
            response = await http.get("/readyz")
    finally:
        await client.aclose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["redis"].startswith("error: ConnectionError")
