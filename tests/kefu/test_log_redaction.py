"""Secrets and personal data never leave a Kefu process in clear: crm_store.redact's masking, the log formatters of
kefu.ops that apply it to every line (messages, tracebacks, JSON fields, other libraries' lines), the settings'
repr() and the CLI's errors; and end to end, the demo's in-process app logging a customer's e-mail and phone number
and a Telegram error that quotes the bot's token."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.settings import BotSettings
from console.settings import ConsoleSettings
from crm_store.redact import redact, redact_secrets
from crm_store.settings import StoreSettings
from kefu.cli_support import _explain, _shown_url
from kefu.ops import OpsSettings, configure_logging
from knowledge_base.settings import KbSettings
from nlu.settings import NluSettings
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
# A token of Telegram's shape: the bot's id, a colon, a 35-character secret.
TOKEN = "7012345678:AAFq3x_Gk9LmZpR2sT4uV6wX8yZ0aBcDeFg"
SECRET = TOKEN.split(":", 1)[1]
API_TOKEN = "kefu_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa_-ZyXwVu"


# --- redact(): what is masked ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        # e-mails keep their domain
        ("from anna.lee+shop@example.co.uk today", "from ***@example.co.uk today"),
        ("<Anna@Example.COM>, bob@mail.example.org.", "<***@Example.COM>, ***@mail.example.org."),
        ("客户 张三@例子.中国 来信", "客户 ***@例子.中国 来信"),
        # phones: international, grouped local formats, Chinese mobiles, after a phone-like key
        ("call +1 (555) 123-4567 now", "call *** now"),
        ("+44 20 7946 0958 / +8613800138000 / +86 138 0013 8000", "*** / *** / ***"),
        ("(555) 123-4567, 555-123-4567, 555 123 4567, 555-1234", "***, ***, ***, ***"),
        ("020 7946 0958 or 06 12 34 56 78 or 138 0013 8000", "*** or *** or ***"),
        ("手机13800138000请回电", "手机***请回电"),
        ("my number is 555 123 4567: call me", "my number is ***: call me"),
        ("phone=5551234567 'mobile': '12345678'", "phone=*** 'mobile': '***'"),
        # Telegram bot tokens, bare or in a Bot API URL: the bot's id stays
        (f"token {TOKEN}.", "token 7012345678:***."),
        (f"POST https://api.telegram.org/bot{TOKEN}/sendMessage",
         "POST https://api.telegram.org/bot7012345678:***/sendMessage"),
        ("123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11", "123456:***"),
        # Kefu's API tokens keep the prefix the console lists; bearer credentials
        (f"token {API_TOKEN} used", "token kefu_Zx9Yw8V*** used"),
        (f"Authorization: Bearer {API_TOKEN}", "Authorization: Bearer ***"),
        ("authorization='Basic dXNlcjpwYXNzd29yZA=='", "authorization='Basic ***'"),
        ("sent with bearer abcdef0123456789", "sent with bearer ***"),
        # link codes: deep link, chat command, web chat URL
        ("/start link_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "/start link_***"),
        ("/link AbCdEfGhIjKlMnOpQrStUvWxYz012345", "/link ***"),
        ("GET /webchat?link=AbCdEfGhIjKlMnOpQrStUv&lang=en", "GET /webchat?link=***&lang=en"),
        # passwords, secrets and session cookies in key=value, headers, JSON and dict reprs
        ("Cookie: kefu_session=abc123def456", "Cookie: ***"),
        ("set __Host-kefu_session=abc123; __Host-kefu_login_csrf=zzz",
         "set __Host-kefu_session=***; __Host-kefu_login_csrf=***"),
        ("{'password': 'hunter2', \"secret_token\": \"abc\"}", "{'password': '***', \"secret_token\": \"***\"}"),
        ("login?user=a&password=hunter2&next=/", "login?user=a&password=***&next=/"),
        ("X-Telegram-Bot-Api-Secret-Token: s3cret-header", "X-Telegram-Bot-Api-Secret-Token: ***"),
        ("KEFU_BOT_WEBHOOK_SECRET=change-me", "KEFU_BOT_WEBHOOK_SECRET=***"),
        # URL passwords (the user stays), Redis' password-only form and its ?password=
        ("postgresql+asyncpg://kefu:s3cr3t@postgres:5432/kefu", "postgresql+asyncpg://kefu:***@postgres:5432/kefu"),
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:p%40ss@cache.example.com:6380", "rediss://default:***@cache.example.com:6380"),
        ("redis://redis:6379/0?password=hunter2", "redis://redis:6379/0?password=***"),
    ],
)
def test_redact_masks(line: str, masked: str) -> None:
    assert redact(line) == masked
    assert redact(masked) == masked  # masking twice changes nothing (a traceback may pass two formatters)


# --- redact(): what stays readable ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "conversation=12345 message 678 update 987654321",
        "telegram: could not send to chat 7123456789",  # a Telegram chat id is kept (see crm_store.redact)
        "chat -1001234567890 (a supergroup)",
        "Update id=123456789 is handled. Duration 12 ms by bot id=7012345678",
        "2024-05-01T12:30:45.123Z",
        "2024-05-01 12:30:45,123 and 01-05-2024",
        "at 10:00 - 12:00, 12:30 555",
        "ts 1714567890123, stream entry 1714567890123-0",
        "total 1 234 567, $12 345.00, 1,234,567.89, 4.99",
        "ids 1000-2000, years 1999-2024, 10 20 30 40",
        "version 3.12.4, ip 192.168.100.200, offset +08:00",
        "uuid 3f2a1c9e-1234-5678-9abc-def012345678",
        "redis://redis:6379/0 and postgresql+asyncpg://postgres:5432/kefu",
        "sqlite+aiosqlite:///var/kefu.db",
        "session_hours=12 max_tokens=5 tokens: 3 password_reset requested",
        "telegram: getUpdates failed (timeout); retrying in 0.5s",
        "kefu_session kefu_login_csrf kefu_messages_in_total",
        "user@localhost, a@b.c, @kefu_tea_bot",
        "link_tokens.token_hash, /start, /link",
        "[conversation=12345] event bus: group delivery skips 1714567890123-0",
    ],
)
def test_redact_keeps_ids_times_amounts_and_names(line: str) -> None:
    assert redact(line) == line


def test_redact_secrets_keeps_personal_data_for_the_operator() -> None:
    line = "anna@example.com exists; postgresql://kefu:s3cr3t@db/kefu; call +1 555 123 4567; password=x"
    assert redact_secrets(line) == (
        "anna@example.com exists; postgresql://kefu:***@db/kefu; call +1 555 123 4567; password=***")


# --- the formatters -------------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sql = logging.getLogger("sqlalchemy.engine.Engine")
    sql_handlers = list(sql.handlers)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    sql.handlers[:] = sql_handlers


def _raise_and_log(logger: logging.Logger) -> None:
    try:
        raise ConnectionError(f"refused at https://api.telegram.org/bot{TOKEN}/getMe for anna@example.com")
    except ConnectionError:
        logger.exception("sending to %s failed", "+1 (555) 123-4567")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configured_logs_mask_messages_args_and_tracebacks(log_format: str, restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format=log_format, log_level="INFO"), process="bot", stream=stream)
    logger = logging.getLogger("kefu.test_log_redaction")

    logger.info("customer %s wrote from %s", "anna@example.com", "138 0013 8000")
    logger.info("conversation=%d update %d at %s", 12345, 987654321, "2024-05-01T12:30:45Z")
    _raise_and_log(logger)
    logger.warning("stack", stack_info=True, extra={"note": "redis://:hunter2@redis:6379/0"})

    out = stream.getvalue()
    for secret in ("anna@example.com", "138 0013 8000", "123-4567", SECRET, "hunter2"):
        assert secret not in out
    assert "***@example.com" in out and "bot7012345678:***/getMe" in out
    assert "conversation=12345 update 987654321 at 2024-05-01T12:30:45Z" in out  # ids and times stay readable
    assert "Traceback (most recent call last)" in out and "ConnectionError" in out
    if log_format == "json":
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines[0]["message"] == "customer ***@example.com wrote from ***"
        assert lines[2]["message"] == "sending to *** failed" and "ConnectionError: refused" in lines[2]["exc"]
        assert lines[3]["note"] == "redis://:***@redis:6379/0" and "stack" in lines[3]


def test_json_extra_fields_are_masked_at_any_depth_and_lines_stay_json(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format="json"), process="console", stream=stream)
    logging.getLogger("kefu.test_log_redaction").warning(
        'agent said password="hunter2" to "anna@example.com"',
        extra={"customer_email": "anna@example.com", "password": "hunter2", "api_token": API_TOKEN,
               "request": {"headers": {"Authorization": "Bearer abcdefgh12345678", "cookie": "kefu_session=zz"},
                           "phones": ["+1 555 123 4567", "conversation 12"]},
               "conversation": 12345, "empty_token": None},
    )
    (line,) = [json.loads(raw) for raw in stream.getvalue().splitlines()]  # still one valid JSON object
    assert line["message"] == 'agent said password="***" to "***@example.com"'
    assert line["customer_email"] == "***@example.com"
    assert line["password"] == "***" and line["api_token"] == "***"
    assert line["request"] == {"headers": {"Authorization": "***", "cookie": "***"},
                               "phones": ["***", "conversation 12"]}
    assert line["conversation"] == 12345 and line["empty_token"] is None


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_another_handler_rendered_first_is_masked_too(log_format: str, restore_logging: None) -> None:
    """logging caches a record's rendered traceback: a plain handler before Kefu's leaves it there unmasked."""
    plain = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(plain)
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format=log_format), process="worker", stream=stream)
    _raise_and_log(logging.getLogger("kefu.test_log_redaction"))
    assert SECRET in plain.stream.getvalue()  # the other handler rendered (and cached) it first
    assert SECRET not in stream.getvalue() and "anna@example.com" not in stream.getvalue()
    assert "7012345678:***" in stream.getvalue()


def test_other_libraries_lines_are_masked(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn's access lines, httpx's request lines, aiogram's, and SQLAlchemy's statements with KEFU_ECHO_SQL
    (which would otherwise print them on stdout through a handler of its own, unmasked)."""
    stream = io.StringIO()
    configure_logging(OpsSettings(log_format="text", log_level="INFO"), process="bot", stream=stream)
    logging.getLogger("uvicorn.access").warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET",
                                                "/webchat?link=AbCdEfGhIjKlMnOpQrStUv", "1.1", 200)
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST",
                                    f"https://api.telegram.org/bot{TOKEN}/sendMessage", "HTTP/1.1", 200, "OK")
    logging.getLogger("aiogram.dispatcher").error("Failed to fetch updates - %s: %s", "TelegramNetworkError",
                                                  f"HTTP Client says - ClientError: bot{TOKEN}")
    engine = create_engine("sqlite://", echo=True)
    with engine.connect() as conn:
        conn.execute(text("SELECT :text"), {"text": "I am anna@example.com, +1 555 123 4567"})
    engine.dispose()

    out = stream.getvalue()
    assert "link=***" in out and "AbCdEfGhIjKlMnOpQrStUv" not in out
    assert out.count("bot7012345678:***") == 2 and SECRET not in out
    assert "SELECT ?" in out and "I am ***@example.com, ***" in out and "anna@example.com" not in out
    assert capsys.readouterr().out == ""  # no second, unmasked copy of the SQL lines


# --- settings and the CLI -------------------------------------------------------------------------------------------


def test_settings_never_show_a_configured_password_or_token(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "KEFU_DATABASE_URL": "postgresql+asyncpg://kefu:pg-S3cret@db:5432/kefu",
        "KEFU_REDIS_URL": "redis://:redis-S3cret@redis:6379/0?password=redis-S3cret",
        "KEFU_BOT_TELEGRAM_TOKEN": TOKEN,
        "KEFU_BOT_WEBHOOK_SECRET": "hook-S3cret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    built = [StoreSettings(), BotSettings(), ConsoleSettings(), KbSettings(), NluSettings(), OpsSettings()]
    shown = "\n".join(f"{settings!r}\n{settings}" for settings in built)
    for secret in ("pg-S3cret", "redis-S3cret", SECRET, "hook-S3cret"):
        assert secret not in shown
    assert "postgresql+asyncpg://kefu:***@db:5432/kefu" in shown and "redis://:***@redis:6379/0" in shown
    store, bot = built[0], built[1]
    assert store.database_url == secrets["KEFU_DATABASE_URL"]  # what the engine gets is untouched
    assert bot.telegram_token is not None and bot.telegram_token.get_secret_value() == TOKEN


def test_cli_errors_show_urls_without_their_passwords() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import ArgumentError

    settings = StoreSettings(database_url="postgresql+asyncpg://kefu:pg-S3cret@db:5432/kefu",
                             redis_url="redis://:redis-S3cret@redis:6379/0?password=redis-S3cret")
    messages = [
        _explain(RedisConnectionError("Error 111 connecting to redis:6379. Connection refused."), settings),
        _explain(ArgumentError("Could not parse SQLAlchemy URL from string 'postgresql//kefu:pg-S3cret@db'"),
                 settings),
        _explain(OSError("connect to postgresql://kefu:pg-S3cret@db:5432 refused"), settings),
        _shown_url("redis://default:redis-S3cret@redis:6379/0"),
    ]
    assert all(message for message in messages)
    for message in messages:
        assert "S3cret" not in str(message)
    assert messages[0] == ("cannot reach Redis at redis://:***@redis:6379/0?password=***: "
                           "Error 111 connecting to redis:6379. Connection refused.")


def kefu(*args: str, cwd: Path, env: dict[str, str], **run: Any) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "kefu.cli", *args], cwd=cwd, env=environment, text=True,
                          timeout=120, start_new_session=True, **run)


def test_cli_error_for_an_unreachable_database_hides_its_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://kefu:pg-S3cret@127.0.0.1:1/kefu"  # nothing listens on port 1
    result = kefu("db", "upgrade", cwd=tmp_path, env={"KEFU_DATABASE_URL": url}, capture_output=True)
    assert result.returncode == 1
    assert "pg-S3cret" not in result.stdout + result.stderr
    assert "postgresql+asyncpg://kefu:***@127.0.0.1:1/kefu" in result.stderr


def test_agent_create_takes_the_password_from_the_environment(fresh_database_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from kefu.runtime import crm_session

    url = fresh_database_url()
    result = kefu("agent", "create", "--email", "ops@example.com", "--role", "admin", cwd=tmp_path,
                  env={"KEFU_DATABASE_URL": url, "KEFU_AGENT_PASSWORD": "oolong-from-env"}, capture_output=True,
                  stdin=subprocess.DEVNULL)  # nothing to answer a prompt with: the variable must be enough
    assert result.returncode == 0, result.stderr
    assert "oolong-from-env" not in result.stdout + result.stderr and "Warning" not in result.stderr

    async def sign_in() -> Any:
        async with crm_session(StoreSettings(database_url=url)) as crm:
            return await crm.agents.authenticate(email="ops@example.com", password="oolong-from-env")

    assert asyncio.run(sign_in()) is not None


def test_agent_create_warns_a_person_who_types_password_on_the_command_line(tmp_path: Path) -> None:
    """At a terminal, --password lands in the shell history: the command says so (before its own error here)."""
    controller, terminal = pty.openpty()
    try:
        result = kefu("agent", "create", "--email", "x@example.com", "--role", "agent", "--password", "short",
                      cwd=tmp_path, env={"KEFU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"},
                      stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 1
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("Warning: --password stays in your shell history") and "KEFU_AGENT_PASSWORD" in warning
    assert error.startswith("Error: ") and "8 characters" in error


# --- end to end: the demo's app, a customer's message, a Telegram error quoting the token ---------------------------


async def test_a_running_bot_logs_neither_the_token_nor_a_customers_email_or_phone(
    db: Any, settings: StoreSettings, stream: str, restore_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    """The app `kefu demo` runs (its bot and worker), logging set up as `kefu bot`'s (JSON on stderr) with
    KEFU_ECHO_SQL: SQLAlchemy logs the customer's text with every statement that stores it, and a proxy in front of
    the Bot API answers a poll with an error that quotes the request's path, token and all. (An unreachable Rasa
    backend spares the test training Kefu's NLU: the bot answers from the knowledge base.)"""
    from kefu.serve import running_stack
    from tests.processes import free_port

    configure_logging(OpsSettings(log_format="json", log_level="INFO"), process="bot")  # on (captured) stderr
    store = StoreSettings(database_url=settings.database_url, redis_url=settings.redis_url, event_stream=stream,
                          echo_sql=True)
    nlu_settings = NluSettings(backend="rasa", rasa_url=f"http://127.0.0.1:{free_port()}", rasa_timeout_s=1)
    chat = 40_000 + uuid.uuid4().int % 10_000
    async with FakeTelegram(max_long_poll=0.5) as tg:
        bot_settings = BotSettings(telegram_token=TOKEN, telegram_api_base=tg.base_url)
        tg.fail_next("getUpdates", 502, description=f"Bad Gateway: no answer upstream for POST /bot{TOKEN}/getUpdates")
        tg.user_message(chat, "Hi! I'm anna.lee@example.com, call me on +1 (555) 123-4567 about my order")
        async with running_stack(store=store, bot_settings=bot_settings, nlu_settings=nlu_settings,
                                 roles=frozenset({"bot", "worker"}), say=lambda line: None):
            await tg.wait_for_messages(chat, 1, timeout=60)  # the bot answered: the message was stored and handled

    err = capsys.readouterr().err
    # Every line through logging is one JSON object; the others are the model loading's progress bars (tqdm) and
    # jieba's dictionary notes on a handler of its own, neither of which carries a customer's data or a secret.
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("getUpdates failed" in line["message"] for line in lines)
    assert any("INSERT INTO" in line["message"] for line in lines)
    for secret in (SECRET, "anna.lee@example.com", "anna.lee", "(555) 123-4567", "123-4567"):
        assert secret not in err, secret
    # The lines were there, masked: the failed poll with the bot's id, the statements with the customer's text.
    assert "/bot7012345678:***/getUpdates" in err
    assert "call me on *** about my order" in err and "***@example.com" in err
