"""Settings of the CRM store, read from the environment by the entry point (never at import time)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("var") / "kefu.db"
_URL_FIELDS = frozenset({"database_url", "redis_url"})


class StoreSettings(BaseSettings):
    """Where the CRM data lives and how events travel: `KEFU_DATABASE_URL`, `KEFU_REDIS_URL`, ..."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    database_url: str = Field(default=f"sqlite+aiosqlite:///{DEFAULT_SQLITE_PATH}")
    # Unset: the in-process event bus and memory storage (the embedded demo).
    redis_url: str | None = None
    event_stream: str = "kefu:events"
    # Region used to read phone numbers written without a country code.
    phone_region: str = "US"
    echo_sql: bool = False

    # Loyalty programme rules: points per whole unit of an order's amount, for orders in these statuses.
    points_per_currency_unit: float = 1.0
    points_earning_statuses: tuple[str, ...] = ("paid", "shipped", "completed")

    # Default SLA targets by ticket priority, in minutes (the console's SLA policy refines them).
    sla_minutes_urgent: int = 60
    sla_minutes_high: int = 4 * 60
    sla_minutes_normal: int = 24 * 60
    sla_minutes_low: int = 72 * 60

    # Reports: a "did you mean" suggestion whose best confidence is below this counts as an unanswered question
    # (an English suggestion's calibrated confidence runs from about 0.24 to 0.58; 0 counts none).
    report_weak_suggestion_below: float = 0.35

    def sla_target(self, priority: str) -> timedelta:
        return timedelta(minutes=getattr(self, f"sla_minutes_{priority}"))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URLs stay plain strings (every engine and client takes them so), but repr() and str(), which end up
        # in logs and tracebacks, show them without their passwords.
        from crm_store.redact import redact_secrets

        for name, value in super().__repr_args__():
            yield name, redact_secrets(value) if name in _URL_FIELDS and isinstance(value, str) else value
