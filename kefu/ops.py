"""Operations of every Kefu process: logging set-up (text or JSON), /healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class OpsSettings(BaseSettings):
    """`KEFU_LOG_FORMAT` (text or json) and `KEFU_LOG_LEVEL`."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
